// Fused linear cross-entropy: the row-wise dtype conversions its driver
// (src/linear_ce.cc) needs around the BLAS's f32 GEMMs. Per-target kernels in
// src/linear_ce_convert.cc.
#ifndef XENT_SRC_LINEAR_CE_H_
#define XENT_SRC_LINEAR_CE_H_

#include <cstddef>

#include "src/dtype.h"

namespace xent {

// dst (rows x cols f32, row stride dst_stride) = src (rows x cols of dtype t,
// row stride src_stride) widened to f32 (exact).
void WidenRows(DType t, const void* src, size_t src_stride, size_t rows, size_t cols, float* dst, size_t dst_stride);

// dst (rows x cols of dtype t) = src (f32), or src + dst when add (in f32),
// rounded to nearest even for 16-bit t.
void NarrowRows(const float* src, size_t src_stride, size_t rows, size_t cols, DType t, void* dst, size_t dst_stride,
                bool add);

}  // namespace xent

#endif  // XENT_SRC_LINEAR_CE_H_
