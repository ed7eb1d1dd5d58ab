// KL divergence kernels for F32 logits (src/kl-inl.h), every SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kl_f32.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "src/kl-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

void KlStatsF32(const KlKernel& k, size_t row, size_t s0, size_t s1, KlSeg* out, float* scratch) {
  KlStatsOf<float>(k, row, s0, s1, out, scratch);
}
void KlPassF32(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t s0, size_t s1, float* scratch,
               bool middle) {
  KlPassOf<float>(k, r, segs, row, s0, s1, scratch, middle);
}
bool KlFusedF32(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t nr, KlSeg* out, float* scratch) {
  return KlFusedOf<float>(k, r, segs, row, nr, out, scratch);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent {
HWY_EXPORT(KlStatsF32);
HWY_EXPORT(KlPassF32);
HWY_EXPORT(KlFusedF32);
KlKernelTables KlKernelsF32() {
  return {HWY_DISPATCH_TABLE(KlStatsF32), HWY_DISPATCH_TABLE(KlPassF32), HWY_DISPATCH_TABLE(KlFusedF32)};
}
}  // namespace xent
#endif  // HWY_ONCE
