// bf16 x bf16 -> f32 GEMMs through oneDNN's matmul (src/blas.h).
//
// Each call builds its primitive from a descriptor (oneDNN's primitive cache
// makes a repeated shape cost ~10 us against the ~10 ms of a tile's product)
// with a user-managed scratchpad: the cache hands the same primitive to every
// thread asking for that shape, and only with one scratchpad per thread are
// concurrent executions correct (with the library's scratchpad two threads
// running one primitive gave wrong products; measured). oneDNN's OpenMP
// runtime runs single-threaded inside xent's OpenMP workers (nested
// parallelism is off); from other threads (oneTBB, host pools, the caller's
// thread) the calling thread's OpenMP thread count is 1 during the call and
// restored after.
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "src/blas.h"
#include "src/dtype.h"

#if defined(XENT_ONEDNN)
#include <dnnl.h>
extern "C" {
int omp_get_max_threads(void);
void omp_set_num_threads(int);
}
#endif

namespace xent {

#if defined(XENT_ONEDNN)

namespace {

dnnl_engine_t Engine() {
  static dnnl_engine_t engine = [] {
    dnnl_engine_t e = nullptr;
    if (dnnl_engine_create(&e, dnnl_cpu, 0) != dnnl_success) return static_cast<dnnl_engine_t>(nullptr);
    return e;
  }();
  return engine;
}

// The calling thread's stream and scratchpad (kept for the thread's life).
struct ThreadState {
  dnnl_stream_t stream = nullptr;
  std::vector<unsigned char> scratch;
  ~ThreadState() {
    if (stream) dnnl_stream_destroy(stream);
  }
};

struct Desc {
  dnnl_memory_desc_t md;
  bool Init(size_t rows, size_t cols, size_t row_stride, size_t col_stride, dnnl_data_type_t t) {
    dnnl_dims_t dims = {static_cast<dnnl_dim_t>(rows), static_cast<dnnl_dim_t>(cols)};
    dnnl_dims_t strides = {static_cast<dnnl_dim_t>(row_stride), static_cast<dnnl_dim_t>(col_stride)};
    return dnnl_memory_desc_init_by_strides(&md, 2, dims, t, strides) == dnnl_success;
  }
};

// RAII holders of oneDNN handles.
template <class T, dnnl_status_t (*kDestroy)(T)>
struct Handle {
  T h = nullptr;
  ~Handle() {
    if (h) kDestroy(h);
  }
};

bool Run(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, const void* a, size_t lda, const void* b, size_t ldb,
         bool accumulate, float* c, size_t ldc) {
  const dnnl_engine_t engine = Engine();
  if (engine == nullptr) return false;
  Desc src, wei, dst;
  if (!src.Init(m, k, trans_a ? 1 : lda, trans_a ? lda : 1, dnnl_bf16) ||
      !wei.Init(k, n, trans_b ? 1 : ldb, trans_b ? ldb : 1, dnnl_bf16) || !dst.Init(m, n, ldc, 1, dnnl_f32))
    return false;
  dnnl_matmul_desc_t mm;
  if (dnnl_matmul_desc_init(&mm, &src.md, &wei.md, nullptr, &dst.md) != dnnl_success) return false;
  Handle<dnnl_primitive_attr_t, dnnl_primitive_attr_destroy> attr;
  if (dnnl_primitive_attr_create(&attr.h) != dnnl_success ||
      dnnl_primitive_attr_set_scratchpad_mode(attr.h, dnnl_scratchpad_mode_user) != dnnl_success)
    return false;
  if (accumulate) {
    Handle<dnnl_post_ops_t, dnnl_post_ops_destroy> po;
    if (dnnl_post_ops_create(&po.h) != dnnl_success || dnnl_post_ops_append_sum(po.h, 1.0f) != dnnl_success ||
        dnnl_primitive_attr_set_post_ops(attr.h, po.h) != dnnl_success)
      return false;
  }
  Handle<dnnl_primitive_desc_t, dnnl_primitive_desc_destroy> pd;
  if (dnnl_primitive_desc_create(&pd.h, &mm, attr.h, engine, nullptr) != dnnl_success) return false;
  Handle<dnnl_primitive_t, dnnl_primitive_destroy> prim;
  if (dnnl_primitive_create(&prim.h, pd.h) != dnnl_success) return false;

  thread_local ThreadState ts;
  if (ts.stream == nullptr && dnnl_stream_create(&ts.stream, engine, dnnl_stream_default_flags) != dnnl_success) {
    ts.stream = nullptr;
    return false;
  }
  const dnnl_memory_desc_t* sp_md = dnnl_primitive_desc_query_md(pd.h, dnnl_query_scratchpad_md, 0);
  const size_t sp_bytes = sp_md ? dnnl_memory_desc_get_size(sp_md) : 0;
  if (ts.scratch.size() < sp_bytes) {
    try {
      ts.scratch.resize(sp_bytes);
    } catch (const std::bad_alloc&) {
      return false;
    }
  }

  Handle<dnnl_memory_t, dnnl_memory_destroy> ms, mw, md, msp;
  if (dnnl_memory_create(&ms.h, &src.md, engine, const_cast<void*>(a)) != dnnl_success ||
      dnnl_memory_create(&mw.h, &wei.md, engine, const_cast<void*>(b)) != dnnl_success ||
      dnnl_memory_create(&md.h, &dst.md, engine, c) != dnnl_success)
    return false;
  if (sp_bytes > 0 && dnnl_memory_create(&msp.h, sp_md, engine, ts.scratch.data()) != dnnl_success) return false;
  dnnl_exec_arg_t args[4] = {
      {DNNL_ARG_SRC, ms.h}, {DNNL_ARG_WEIGHTS, mw.h}, {DNNL_ARG_DST, md.h}, {DNNL_ARG_SCRATCHPAD, msp.h}};
  const int nargs = sp_bytes > 0 ? 4 : 3;

  const int saved = omp_get_max_threads();
  if (saved != 1) omp_set_num_threads(1);
  const bool ok = dnnl_primitive_execute(prim.h, ts.stream, nargs, args) == dnnl_success &&
                  dnnl_stream_wait(ts.stream) == dnnl_success;
  if (saved != 1) omp_set_num_threads(saved);
  return ok;
}

// Whether oneDNN runs a bf16 matmul here: probed once with a small product.
bool Probe() {
  uint16_t a[4], b[4];
  for (int i = 0; i < 4; ++i) a[i] = b[i] = BF16BitsFromF32(static_cast<float>(i + 1));
  float c[4] = {};
  if (!Run(false, false, 2, 2, 2, a, 2, b, 2, false, c, 2)) return false;
  // [[1 2] [3 4]]^2 = [[7 10] [15 22]]
  return c[0] == 7.0f && c[1] == 10.0f && c[2] == 15.0f && c[3] == 22.0f;
}

}  // namespace

bool Bf16GemmAvailable() {
  if (!g_native_bf16 || !g_bf16_gemm) return false;
  static const bool ok = Probe();
  return ok;
}

bool Bf16Gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, const uint16_t* a, size_t lda,
              const uint16_t* b, size_t ldb, bool accumulate, float* c, size_t ldc) {
  if (m == 0 || n == 0) return true;
  if (k == 0) {
    if (!accumulate)
      for (size_t i = 0; i < m; ++i)
        for (size_t j = 0; j < n; ++j) c[i * ldc + j] = 0.0f;
    return true;
  }
  return Run(trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc);
}

#else

bool Bf16GemmAvailable() { return false; }
bool Bf16Gemm(bool, bool, size_t, size_t, size_t, const uint16_t*, size_t, const uint16_t*, size_t, bool, float*,
              size_t) {
  return false;
}

#endif

}  // namespace xent
