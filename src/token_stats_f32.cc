// Per-token statistics kernels for F32 logits (src/token_stats-inl.h), every
// SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/token_stats_f32.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "src/token_stats-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

void TokStatsF32(const TokKernel& k, size_t row, size_t s0, size_t s1, TokSeg* out) {
  TokStatsOf<float>(k, row, s0, s1, out);
}
void TokKlF32(const TokKernel& k, const TokKlRow& r, size_t row, size_t s0, size_t s1, TokSeg* segs) {
  TokKlOf<float>(k, r, row, s0, s1, segs);
}
void TokGradF32(const TokGradKernel& k, const TokGradRow& c, size_t row, size_t s0, size_t s1) {
  TokGradOf<float>(k, c, row, s0, s1);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent {
HWY_EXPORT(TokStatsF32);
HWY_EXPORT(TokKlF32);
HWY_EXPORT(TokGradF32);
TokKernelTables TokKernelsF32() {
  return {HWY_DISPATCH_TABLE(TokStatsF32), HWY_DISPATCH_TABLE(TokKlF32), HWY_DISPATCH_TABLE(TokGradF32)};
}
}  // namespace xent
#endif  // HWY_ONCE
