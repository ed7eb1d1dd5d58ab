// Per-token statistics kernels for F16 logits (src/token_stats-inl.h), every
// SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/token_stats_f16.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "src/token_stats-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

void TokStatsF16(const TokKernel& k, size_t row, size_t s0, size_t s1, TokSeg* out, float* e_out) {
  TokStatsOf<F16>(k, row, s0, s1, out, e_out);
}
void TokKlF16(const TokKernel& k, const TokKlRow& r, size_t row, size_t s0, size_t s1, TokSeg* segs) {
  TokKlOf<F16>(k, r, row, s0, s1, segs);
}
void TokGradF16(const TokGradKernel& k, const TokGradRow& c, const TokSeg* segs, size_t row, size_t s0, size_t s1,
                const float* e) {
  TokGradOf<F16>(k, c, segs, row, s0, s1, e);
}
bool TokFusedF16(const TokKernel& k, const TokGradKernel& gk, const TokGradRow& c, const TokSeg* segs, size_t row,
                 size_t nr, TokSeg* out, float* e) {
  return TokFusedOf<F16>(k, gk, c, segs, row, nr, out, e);
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
HWY_EXPORT(TokFusedF16);
TokKernelTables TokKernelsF16() {
  return {HWY_DISPATCH_TABLE(TokStatsF16), HWY_DISPATCH_TABLE(TokKlF16), HWY_DISPATCH_TABLE(TokGradF16),
          HWY_DISPATCH_TABLE(TokFusedF16)};
}
}  // namespace xent
#endif  // HWY_ONCE
