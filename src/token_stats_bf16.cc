// Per-token statistics kernels for BF16 logits (src/token_stats-inl.h), every
// SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/token_stats_bf16.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "src/token_stats-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

void TokStatsBF16(const TokKernel& k, size_t row, size_t s0, size_t s1, TokSeg* out, float* e_out) {
  TokStatsOf<BF16>(k, row, s0, s1, out, e_out);
}
void TokKlBF16(const TokKernel& k, const TokKlRow& r, size_t row, size_t s0, size_t s1, TokSeg* segs) {
  TokKlOf<BF16>(k, r, row, s0, s1, segs);
}
void TokGradBF16(const TokGradKernel& k, const TokGradRow& c, const TokSeg* segs, size_t row, size_t s0, size_t s1,
                 const float* e) {
  TokGradOf<BF16>(k, c, segs, row, s0, s1, e);
}
bool TokFusedBF16(const TokKernel& k, const TokGradKernel& gk, const TokGradRow& c, const TokSeg* segs, size_t row,
                  size_t nr, TokSeg* out, float* e) {
  return TokFusedOf<BF16>(k, gk, c, segs, row, nr, out, e);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent {
HWY_EXPORT(TokStatsBF16);
HWY_EXPORT(TokKlBF16);
HWY_EXPORT(TokGradBF16);
HWY_EXPORT(TokFusedBF16);
TokKernelTables TokKernelsBF16() {
  return {HWY_DISPATCH_TABLE(TokStatsBF16), HWY_DISPATCH_TABLE(TokKlBF16), HWY_DISPATCH_TABLE(TokGradBF16),
          HWY_DISPATCH_TABLE(TokFusedBF16)};
}
}  // namespace xent
#endif  // HWY_ONCE
