// The BLAS behind fused linear cross-entropy (OpenBLAS or BLIS, chosen at
// build time with the meson option `blas`, or none): an f32 GEMM that runs on
// the calling thread only, so that xent can own the threading and split the
// work into fixed tiles (results then never depend on the thread count).
#ifndef XENT_SRC_BLAS_H_
#define XENT_SRC_BLAS_H_

#include <cstddef>
#include <cstdint>

namespace xent {

// "openblas", "blis" or "none".
const char* BlasBackendName();

// Row-major C (m x n, row stride ldc) = alpha op(A) op(B) + beta C, where
// op(A) is m x k (A is k x m with row stride lda when trans_a) and op(B) is
// k x n (B is n x k when trans_b). beta = 0 overwrites C (NaN in C is not
// propagated). Runs single-threaded on the calling thread (inside a
// BlasSingleThread scope for OpenBLAS). Sizes and strides must be at most
// kBlasMaxIndex. Only called when BlasBackendName() is not "none".
void Sgemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda,
           const float* b, size_t ldb, float beta, float* c, size_t ldc);

// The largest size or stride Sgemm takes (the BLAS's index type: 32-bit for
// Debian's OpenBLAS).
size_t BlasMaxIndex();

// bf16 x bf16 -> f32 products through oneDNN (meson option onednn), as
// Sgemm (row-major, op(A) m x k, op(B) k x n; a and b are bf16 bit patterns)
// with beta 1 (accumulate) or 0. Single-threaded on the calling thread, and
// bit-identical for a given shape whatever thread calls it. Only when
// Bf16GemmAvailable(): built with oneDNN, the CPU has AVX512_BF16 (native
// bf16 dot products) and XENT_NATIVE_BF16 is not 0, and a probe product
// came out right. Returns false when oneDNN failed (e.g. out of memory).
bool Bf16GemmAvailable();
bool Bf16Gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, const uint16_t* a, size_t lda,
              const uint16_t* b, size_t ldb, bool accumulate, float* c, size_t ldc);

// While one is alive, the BLAS's own threads are off: OpenBLAS's thread count
// is 1 from the first live scope of the process to the last (then restored to
// what it was). BLIS is called with a per-call thread count of 1 and needs
// nothing.
class BlasSingleThread {
 public:
  BlasSingleThread();
  ~BlasSingleThread();
  BlasSingleThread(const BlasSingleThread&) = delete;
  BlasSingleThread& operator=(const BlasSingleThread&) = delete;
};

}  // namespace xent

#endif  // XENT_SRC_BLAS_H_
