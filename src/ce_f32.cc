// Cross-entropy kernels for F32 logits (src/ce-inl.h), every SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/ce_f32.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "src/ce-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

void CeStatsF32(const CeKernel& k, size_t row, size_t s0, size_t s1, SoftmaxSeg* out, float* scratch) {
  CeStatsOf<float>(k, row, s0, s1, out, scratch);
}
void CeGradF32(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t s0, size_t s1,
               float* scratch) {
  CeGradOf<float>(k, c, segs, row, s0, s1, scratch);
}
bool CeFusedF32(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t next_row,
                SoftmaxSeg* next_segs, float* scratch) {
  return CeFusedOf<float>(k, c, segs, row, next_row, next_segs, scratch);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent {
HWY_EXPORT(CeStatsF32);
HWY_EXPORT(CeGradF32);
HWY_EXPORT(CeFusedF32);
CeKernelTables CeKernelsF32() {
  return {HWY_DISPATCH_TABLE(CeStatsF32), HWY_DISPATCH_TABLE(CeGradF32), HWY_DISPATCH_TABLE(CeFusedF32)};
}
}  // namespace xent
#endif  // HWY_ONCE
