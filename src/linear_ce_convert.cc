// Row conversions for fused linear cross-entropy (src/linear_ce.h), every
// SIMD target: 16-bit operand tiles widened to f32 for the GEMMs, f32 results
// rounded into the caller's outputs (optionally added to what they hold).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/linear_ce_convert.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "src/dtype.h"
#include "src/linear_ce.h"
#include "src/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

template <typename T>
HWY_INLINE void WidenRowsT(const void* src, size_t src_stride, size_t rows, size_t cols, float* dst,
                           size_t dst_stride) {
  const DF d;
  const size_t N = hn::Lanes(d);
  for (size_t r = 0; r < rows; ++r) {
    const T* s = RowPtr<T>(src, src_stride, r);
    float* o = dst + r * dst_stride;
    size_t i = 0;
    for (; i + 2 * N <= cols; i += 2 * N) {
      hn::StoreU(LoadF32(d, s + i), d, o + i);
      hn::StoreU(LoadF32(d, s + i + N), d, o + i + N);
    }
    for (; i + N <= cols; i += N) hn::StoreU(LoadF32(d, s + i), d, o + i);
    if (i < cols) StoreTailF32(d, LoadTailF32(d, s + i, cols - i, 0.0f), o + i, cols - i);
  }
}

void WidenRowsImpl(DType t, const void* src, size_t src_stride, size_t rows, size_t cols, float* dst,
                   size_t dst_stride) {
  switch (t) {
    case DType::kBF16: return WidenRowsT<BF16>(src, src_stride, rows, cols, dst, dst_stride);
    case DType::kF16: return WidenRowsT<F16>(src, src_stride, rows, cols, dst, dst_stride);
    default: return WidenRowsT<float>(src, src_stride, rows, cols, dst, dst_stride);
  }
}

template <typename T>
HWY_INLINE void NarrowRowsT(const float* src, size_t src_stride, size_t rows, size_t cols, void* dst, size_t dst_stride,
                            bool add) {
  const DF d;
  const size_t N = hn::Lanes(d);
  for (size_t r = 0; r < rows; ++r) {
    const float* s = src + r * src_stride;
    T* o = RowPtrMut<T>(dst, dst_stride, r);
    size_t i = 0;
    if (add) {
      for (; i + N <= cols; i += N) StoreF32(d, hn::Add(LoadF32(d, o + i), hn::LoadU(d, s + i)), o + i);
      if (i < cols) {
        const size_t n = cols - i;
        StoreTailF32(d, hn::Add(LoadTailF32(d, o + i, n, 0.0f), LoadTailF32(d, s + i, n, 0.0f)), o + i, n);
      }
    } else {
      for (; i + N <= cols; i += N) StoreF32(d, hn::LoadU(d, s + i), o + i);
      if (i < cols) StoreTailF32(d, LoadTailF32(d, s + i, cols - i, 0.0f), o + i, cols - i);
    }
  }
}

void NarrowRowsImpl(const float* src, size_t src_stride, size_t rows, size_t cols, DType t, void* dst,
                    size_t dst_stride, bool add) {
  switch (t) {
    case DType::kBF16: return NarrowRowsT<BF16>(src, src_stride, rows, cols, dst, dst_stride, add);
    case DType::kF16: return NarrowRowsT<F16>(src, src_stride, rows, cols, dst, dst_stride, add);
    default: return NarrowRowsT<float>(src, src_stride, rows, cols, dst, dst_stride, add);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "src/dispatch.h"

namespace xent {
HWY_EXPORT(WidenRowsImpl);
HWY_EXPORT(NarrowRowsImpl);

void WidenRows(DType t, const void* src, size_t src_stride, size_t rows, size_t cols, float* dst, size_t dst_stride) {
  XENT_DISPATCH(WidenRowsImpl)(t, src, src_stride, rows, cols, dst, dst_stride);
}
void NarrowRows(const float* src, size_t src_stride, size_t rows, size_t cols, DType t, void* dst, size_t dst_stride,
                bool add) {
  XENT_DISPATCH(NarrowRowsImpl)(src, src_stride, rows, cols, t, dst, dst_stride, add);
}
}  // namespace xent
#endif  // HWY_ONCE
