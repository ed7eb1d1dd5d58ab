// Cross-entropy kernels for BF16 logits (src/ce-inl.h), every SIMD target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/ce_bf16.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "src/ce-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

void CeStatsBF16(const CeKernel& k, size_t row, size_t s0, size_t s1, SoftmaxSeg* out, float* scratch) {
  CeStatsOf<BF16>(k, row, s0, s1, out, scratch);
}
void CeGradBF16(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t s0, size_t s1,
                float* scratch) {
  CeGradOf<BF16>(k, c, segs, row, s0, s1, scratch);
}
bool CeFusedBF16(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t next_row,
                 SoftmaxSeg* next_segs, float* scratch) {
  return CeFusedOf<BF16>(k, c, segs, row, next_row, next_segs, scratch);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent {
HWY_EXPORT(CeStatsBF16);
HWY_EXPORT(CeGradBF16);
HWY_EXPORT(CeFusedBF16);
CeKernelTables CeKernelsBF16() {
  return {HWY_DISPATCH_TABLE(CeStatsBF16), HWY_DISPATCH_TABLE(CeGradBF16), HWY_DISPATCH_TABLE(CeFusedBF16)};
}
}  // namespace xent
#endif  // HWY_ONCE
