#include "src/blas.h"

#include <climits>
#include <cstddef>
#include <cstdint>
#include <mutex>

#if defined(XENT_BLAS_OPENBLAS)
#include <cblas.h>
#include <dlfcn.h>
#include <strings.h>

#include <cstdlib>
#include <cstring>

#include "src/dtype.h"
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

// OpenBLAS built with DYNAMIC_ARCH (as Debian's) picks its kernels by CPU
// model number. A model newer than the library is unknown to it, and it then
// falls back to "Prescott" (SSE3 kernels): Debian 12's 0.3.21 on an Intel
// Xeon of family 6 model 0xCF (Emerald Rapids, AVX-512 with BF16) chose
// Prescott, and its sgemm ran 5x slower than with the SkylakeX/Cooperlake
// kernels the CPU can run (1024x1024x8000 f32 GEMMs, 1 thread: 1.52 s vs
// 0.32 s). Cores whose kernels stop short of AVX2 and FMA:
bool PreAvx2Core(const char* name) {
  static const char* const kNames[] = {"Unknown", "Katmai", "Coppermine",  "Northwood",    "Prescott",
                                       "Banias",  "Atom",   "Core2",       "Penryn",       "Dunnington",
                                       "Nehalem", "Athlon", "Opteron",     "Opteron_SSE3", "Barcelona",
                                       "Nano",    "Bobcat", "Sandybridge", "Bulldozer"};
  for (const char* n : kNames) {
    if (strcasecmp(name, n) == 0) return true;
  }
  return false;
}

// When OpenBLAS's choice is such a fallback on a CPU with AVX2 and FMA (or
// AVX-512), its dispatch runs again with OPENBLAS_CORETYPE set to the best
// kernel set the CPU can run (OpenBLAS's own override, exported by every
// DYNAMIC_ARCH build), once per process, before xent's first product. Not
// when the user set OPENBLAS_CORETYPE, nor with XENT_OPENBLAS_CORE=off (then
// OpenBLAS keeps its choice); OpenBLAS built for one CPU has no dispatch and
// is left as it is. (Another thread's OpenBLAS call during the switch would
// find no kernel table: the switch happens at xent's first linear
// cross-entropy call, where a program has not begun using this OpenBLAS
// from other threads, in the cases it applies to.)
void ChooseOpenBlasCore() {
#if defined(__x86_64__) || defined(__i386__)
  const char* opt = std::getenv("XENT_OPENBLAS_CORE");
  if (opt && (std::strcmp(opt, "off") == 0 || std::strcmp(opt, "0") == 0)) return;
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  const char* cur = openblas_get_corename();
  if (cur == nullptr || !PreAvx2Core(cur)) return;
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (!avx2) return;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&cblas_sgemm), &info) == 0 || info.dli_fname == nullptr) return;
  void* lib = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
  if (lib == nullptr) return;
  // The best kernel set this build has (a DYNAMIC_LIST build may lack some).
  const char* want = nullptr;
  if (avx512 && CpuHasAvx512Bf16() && dlsym(lib, "gotoblas_COOPERLAKE")) {
    want = "Cooperlake";
  } else if (avx512 && dlsym(lib, "gotoblas_SKYLAKEX")) {
    want = "SkylakeX";
  } else if (dlsym(lib, "gotoblas_HASWELL")) {
    want = "Haswell";
  }
  using Fn = void (*)();
  const auto quit = reinterpret_cast<Fn>(dlsym(lib, "gotoblas_dynamic_quit"));
  const auto init = reinterpret_cast<Fn>(dlsym(lib, "gotoblas_dynamic_init"));
  if (want != nullptr && quit != nullptr && init != nullptr) {
    setenv("OPENBLAS_CORETYPE", want, 0);
    quit();
    init();  // (0.3.21 given a name it lacks says so and picks by CPU features)
    unsetenv("OPENBLAS_CORETYPE");
  }
  dlclose(lib);
#endif
}

std::once_flag g_core_once;
std::mutex g_threads_mu;
int g_scopes = 0;  // live BlasSingleThread scopes
int g_saved = 1;   // OpenBLAS's thread count before the first one
}  // namespace

// openblas_set_num_threads is process-wide: the first scope saves the count
// and sets 1, the last restores it. A serial OpenBLAS build needs nothing.
BlasSingleThread::BlasSingleThread() {
  std::call_once(g_core_once, ChooseOpenBlasCore);
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
