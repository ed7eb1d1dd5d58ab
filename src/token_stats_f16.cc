// Per-token statistics kernels for F16 logits (src/token_stats-inl.h), every
// SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/token_stats_f16.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "src/token_stats-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

void TokStatsF16(const TokKernel& k, size_t row, size_t s0, size_t s1, TokSeg* out) {
  TokStatsOf<F16>(k, row, s0, s1, out);
}
void TokKlF16(const TokKernel& k, const TokKlRow& r, size_t row, size_t s0, size_t s1, TokSeg* segs) {
  TokKlOf<F16>(k, r, row, s0, s1, segs);
}
void TokGradF16(const TokGradKernel& k, const TokGradRow& c, size_t row, size_t s0, size_t s1) {
  TokGradOf<F16>(k, c, row, s0, s1);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent {
HWY_EXPORT(TokStatsF16);
HWY_EXPORT(TokKlF16);
HWY_EXPORT(TokGradF16);
TokKernelTables TokKernelsF16() {
  return {HWY_DISPATCH_TABLE(TokStatsF16), HWY_DISPATCH_TABLE(TokKlF16), HWY_DISPATCH_TABLE(TokGradF16)};
}
}  // namespace xent
#endif  // HWY_ONCE
