// Per-token statistics kernels for BF16 logits (src/token_stats-inl.h), every
// SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/token_stats_bf16.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "src/token_stats-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

void TokStatsBF16(const TokKernel& k, size_t row, size_t s0, size_t s1, TokSeg* out) {
  TokStatsOf<BF16>(k, row, s0, s1, out);
}
void TokKlBF16(const TokKernel& k, const TokKlRow& r, size_t row, size_t s0, size_t s1, TokSeg* segs) {
  TokKlOf<BF16>(k, r, row, s0, s1, segs);
}
void TokGradBF16(const TokGradKernel& k, const TokGradRow& c, size_t row, size_t s0, size_t s1) {
  TokGradOf<BF16>(k, c, row, s0, s1);
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
TokKernelTables TokKernelsBF16() {
  return {HWY_DISPATCH_TABLE(TokStatsBF16), HWY_DISPATCH_TABLE(TokKlBF16), HWY_DISPATCH_TABLE(TokGradBF16)};
}
}  // namespace xent
#endif  // HWY_ONCE
