// Per-token statistics kernels for F32 logits (src/token_stats-inl.h), every
// SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/token_stats_f32.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "src/token_stats-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

void TokStatsF32(const TokKernel& k, size_t row, size_t s0, size_t s1, TokSeg* out, float* e_out) {
  TokStatsOf<float>(k, row, s0, s1, out, e_out);
}
void TokKlF32(const TokKernel& k, const TokKlRow& r, size_t row, size_t s0, size_t s1, TokSeg* segs) {
  TokKlOf<float>(k, r, row, s0, s1, segs);
}
void TokGradF32(const TokGradKernel& k, const TokGradRow& c, const TokSeg* segs, size_t row, size_t s0, size_t s1,
                const float* e) {
  TokGradOf<float>(k, c, segs, row, s0, s1, e);
}
bool TokFusedF32(const TokKernel& k, const TokGradKernel& gk, const TokGradRow& c, const TokSeg* segs, size_t row,
                 size_t nr, TokSeg* out, float* e) {
  return TokFusedOf<float>(k, gk, c, segs, row, nr, out, e);
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
HWY_EXPORT(TokFusedF32);
TokKernelTables TokKernelsF32() {
  return {HWY_DISPATCH_TABLE(TokStatsF32), HWY_DISPATCH_TABLE(TokKlF32), HWY_DISPATCH_TABLE(TokGradF32),
          HWY_DISPATCH_TABLE(TokFusedF32)};
}
}  // namespace xent
#endif  // HWY_ONCE
