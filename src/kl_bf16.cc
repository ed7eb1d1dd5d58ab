// KL divergence kernels for BF16 logits (src/kl-inl.h), every SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kl_bf16.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "src/kl-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

void KlStatsBF16(const KlKernel& k, size_t row, size_t s0, size_t s1, KlSeg* out, float* scratch) {
  KlStatsOf<BF16>(k, row, s0, s1, out, scratch);
}
void KlPassBF16(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t s0, size_t s1, float* scratch,
                bool middle) {
  KlPassOf<BF16>(k, r, segs, row, s0, s1, scratch, middle);
}
bool KlFusedBF16(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t nr, KlSeg* out, float* scratch) {
  return KlFusedOf<BF16>(k, r, segs, row, nr, out, scratch);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent {
HWY_EXPORT(KlStatsBF16);
HWY_EXPORT(KlPassBF16);
HWY_EXPORT(KlFusedBF16);
KlKernelTables KlKernelsBF16() {
  return {HWY_DISPATCH_TABLE(KlStatsBF16), HWY_DISPATCH_TABLE(KlPassBF16), HWY_DISPATCH_TABLE(KlFusedBF16)};
}
}  // namespace xent
#endif  // HWY_ONCE
