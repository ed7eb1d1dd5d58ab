#include "src/blas.h"

#include <climits>
#include <cstddef>
#include <cstdint>
#include <mutex>

#if defined(XENT_BLAS_OPENBLAS)
#include <cblas.h>
#elif defined(XENT_BLAS_BLIS)
#include <blis.h>
#endif

namespace xent {

#if defined(XENT_BLAS_OPENBLAS)

const char* BlasBackendName() { return "openblas"; }

size_t BlasMaxIndex() { return static_cast<size_t>(sizeof(blasint) >= 8 ? INT64_MAX : INT_MAX); }

void Sgemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda,
           const float* b, size_t ldb, float beta, float* c, size_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

namespace {
std::mutex g_threads_mu;
int g_scopes = 0;  // live BlasSingleThread scopes
int g_saved = 1;   // OpenBLAS's thread count before the first one
}  // namespace

// openblas_set_num_threads is process-wide: the first scope saves the count
// and sets 1, the last restores it. A serial OpenBLAS build needs nothing.
BlasSingleThread::BlasSingleThread() {
  if (openblas_get_parallel() == 0) return;
  std::lock_guard<std::mutex> lock(g_threads_mu);
  if (g_scopes++ == 0) {
    g_saved = openblas_get_num_threads();
    if (g_saved != 1) openblas_set_num_threads(1);
  }
}
BlasSingleThread::~BlasSingleThread() {
  if (openblas_get_parallel() == 0) return;
  std::lock_guard<std::mutex> lock(g_threads_mu);
  if (--g_scopes == 0 && g_saved != 1) openblas_set_num_threads(g_saved);
}

#elif defined(XENT_BLAS_BLIS)

const char* BlasBackendName() { return "blis"; }

size_t BlasMaxIndex() { return static_cast<size_t>(INT64_MAX); }

void Sgemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda,
           const float* b, size_t ldb, float beta, float* c, size_t ldc) {
  if (m == 0 || n == 0) return;
  // BLIS's expert interface takes a thread count per call (no global state).
  rntm_t rntm = BLIS_RNTM_INITIALIZER;
  bli_rntm_set_num_threads(1, &rntm);
  float al = alpha, be = beta;
  // Row-major: row stride = the leading dimension, column stride 1; a
  // transposed operand is passed as such (BLIS takes general strides).
  bli_sgemm_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
               static_cast<dim_t>(m), static_cast<dim_t>(n), static_cast<dim_t>(k), &al, const_cast<float*>(a),
               static_cast<inc_t>(lda), 1, const_cast<float*>(b), static_cast<inc_t>(ldb), 1, &be, c,
               static_cast<inc_t>(ldc), 1, nullptr, &rntm);
}

BlasSingleThread::BlasSingleThread() {}
BlasSingleThread::~BlasSingleThread() {}

#else

const char* BlasBackendName() { return "none"; }
size_t BlasMaxIndex() { return 0; }
void Sgemm(bool, bool, size_t, size_t, size_t, float, const float*, size_t, const float*, size_t, float, float*,
           size_t) {}
BlasSingleThread::BlasSingleThread() {}
BlasSingleThread::~BlasSingleThread() {}

#endif

}  // namespace xent
