// KL divergence kernels for F16 logits (src/kl-inl.h), every SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kl_f16.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "src/kl-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

void KlStatsF16(const KlKernel& k, size_t row, size_t s0, size_t s1, KlSeg* out, float* scratch) {
  KlStatsOf<F16>(k, row, s0, s1, out, scratch);
}
void KlPassF16(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t s0, size_t s1, float* scratch,
               bool middle) {
  KlPassOf<F16>(k, r, segs, row, s0, s1, scratch, middle);
}
bool KlFusedF16(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t nr, KlSeg* out, float* scratch) {
  return KlFusedOf<F16>(k, r, segs, row, nr, out, scratch);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent {
HWY_EXPORT(KlStatsF16);
HWY_EXPORT(KlPassF16);
HWY_EXPORT(KlFusedF16);
KlKernelTables KlKernelsF16() {
  return {HWY_DISPATCH_TABLE(KlStatsF16), HWY_DISPATCH_TABLE(KlPassF16), HWY_DISPATCH_TABLE(KlFusedF16)};
}
}  // namespace xent
#endif  // HWY_ONCE
