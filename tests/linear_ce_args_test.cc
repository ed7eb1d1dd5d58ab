// Fused linear cross-entropy: bit-identical results for every thread count
// and host pool; bad input (a status, a message naming the argument, nothing
// written). Accuracy: linear_ce_test.cc.
#include <dlfcn.h>
#include <strings.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/mat.h"
#include "tests/linear_ce_case.h"

namespace xent_test {
namespace {

// ---------------------------------------------------------------------------
// Bit-identical outputs for 1, 2, 3 threads and a host pool that splits the
// tasks arbitrarily.
int HostPool(void* user, size_t n, xent_task_fn task, void* ctx, int32_t) {
  const size_t threads = *static_cast<size_t*>(user);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (;;) {
      const size_t b = next.fetch_add(3);
      if (b >= n) return;
      task(ctx, b, std::min(n, b + 3));
    }
  };
  std::vector<std::thread> pool;
  for (size_t i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  return 0;
}

std::vector<unsigned char> Outputs(LceCase& t) {
  std::vector<unsigned char> out;
  auto add = [&](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    out.insert(out.end(), b, b + n);
  };
  add(t.loss.data(), 4);
  add(t.row_loss.data(), 4 * t.c.B);
  add(t.lse.data(), 4 * t.c.B);
  for (size_t i = 0; i < t.c.B; ++i)
    for (size_t k = 0; k < t.c.H; ++k) {
      const float v = static_cast<float>(t.gh.get(i, k));
      add(&v, 4);
    }
  for (size_t v = 0; v < t.c.V; ++v) {
    const float b = static_cast<float>(t.gb.get(0, v));
    add(&b, 4);
    for (size_t k = 0; k < t.c.H; ++k) {
      const float g = static_cast<float>(t.gw.get(v, k));
      add(&g, 4);
    }
  }
  return out;
}

// (On the best target only: the GEMM tiling is target-independent, and the
// CE kernels' determinism per target is threads_test's.)
TEST(LinearCeThreads, BitIdenticalForAnyThreadCount) {
  if (!HaveBlas()) GTEST_SKIP() << "libxent built without a BLAS";
  for (DType dt : {DType::kF32, DType::kBF16}) {
    LceConfig c = Sized(37, 3100, 260, dt);
    c.eps = 0.1f;
    c.ignore_every = 5;
    c.want_lse = false;
    c.scratch = 8 * (c.V + c.H) * 4;
    std::vector<unsigned char> first;
    for (int32_t threads : {1, 2, 3, 0}) {
      c.num_threads = threads;
      LceCase t(c);
      ASSERT_EQ(t.Run(), XENT_OK) << xent_last_error();
      const auto out = Outputs(t);
      if (first.empty()) {
        first = out;
      } else {
        EXPECT_TRUE(out == first) << "num_threads = " << threads << " differs from 1 thread";
      }
    }
    for (size_t pool_threads : {2, 4}) {
      c.num_threads = 0;
      LceCase t(c);
      xent_linear_cross_entropy_args a;
      t.Args(&a);
      a.parallel_for = &HostPool;
      a.parallel_user = &pool_threads;
      ASSERT_EQ(xent_linear_cross_entropy(&a), XENT_OK) << xent_last_error();
      EXPECT_TRUE(Outputs(t) == first) << "host pool of " << pool_threads << " threads differs";
    }
  }
}

// ---------------------------------------------------------------------------
// scratch_bytes = 0 is the larger of XENT_LINEAR_CE_DEFAULT_SCRATCH_BYTES
// and a block of min(512, ceil(B / 4)) rows (xent.h). The rows per block set
// how the gradient sums over rows associate, so the outputs tell which budget
// a call used: the default's equal those of its budget passed explicitly and
// differ from those of the other candidates. (At least 4 x 128 MiB of rows
// and logits for the block rule to exceed the macro: main build only, not
// under the sanitizers' -O0.)
TEST(LinearCeScratch, DefaultIsABlockOf512RowsAtMostAQuarterOfTheBatch) {
  if (!HaveBlas()) GTEST_SKIP() << "libxent built without a BLAS";
  // 2040 rows: a quarter is 510 rows (4 blocks of 510; 512 rows per block
  // would make 512 x 3 + 504, 128 MiB 5 blocks of 408).
  LceConfig c = Sized(2040, 80000, 16);
  c.want_lse = false;
  const size_t row = (c.V + c.H) * sizeof(float);
  ASSERT_GT(510 * row, static_cast<size_t>(XENT_LINEAR_CE_DEFAULT_SCRATCH_BYTES));
  auto run = [&](size_t scratch) {
    c.scratch = scratch;
    LceCase t(c);
    EXPECT_EQ(t.Run(), XENT_OK) << xent_last_error();
    return Outputs(t);
  };
  const auto by_default = run(0);
  EXPECT_TRUE(by_default == run(510 * row)) << "scratch_bytes = 0 is not a block of B / 4 = 510 rows";
  EXPECT_FALSE(by_default == run(512 * row)) << "the block of 512 rows is not capped at a quarter of the batch";
  EXPECT_FALSE(by_default == run(XENT_LINEAR_CE_DEFAULT_SCRATCH_BYTES)) << "scratch_bytes = 0 is still 128 MiB";
}

// ---------------------------------------------------------------------------
// OpenBLAS's kernels after a call: on a CPU with AVX2 and FMA, never one of
// the pre-AVX2 kernel sets that OpenBLAS falls back to on a CPU model it does
// not know (src/blas.cc; Debian 12's OpenBLAS chose "Prescott" on an
// Emerald Rapids Xeon, 5x slower), unless the user chose the kernels.
TEST(LinearCeBlas, OpenBlasRunsKernelsTheCpuHas) {
  if (std::strcmp(xent_blas_backend(), "openblas") != 0) GTEST_SKIP() << "not OpenBLAS";
#if defined(__x86_64__) || defined(__i386__)
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("XENT_OPENBLAS_CORE"))
    GTEST_SKIP() << "OPENBLAS_CORETYPE or XENT_OPENBLAS_CORE set";
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) GTEST_SKIP() << "no AVX2 and FMA";
  using CoreName = char* (*)();
  const auto corename = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  ASSERT_NE(corename, nullptr) << "openblas_get_corename not found";
  if (dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init") == nullptr) GTEST_SKIP() << "OpenBLAS without runtime dispatch";
  LceCase t(Sized(3, 40, 16));
  ASSERT_EQ(t.Run(), XENT_OK) << xent_last_error();
  const std::string core = corename();
  for (const char* old : {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Sandybridge", "Atom", "Unknown"}) {
    EXPECT_NE(strcasecmp(core.c_str(), old), 0) << "OpenBLAS runs its " << core << " kernels on a CPU with AVX2";
  }
  std::printf("OpenBLAS kernels: %s\n", core.c_str());
#else
  GTEST_SKIP() << "x86 only";
#endif
}

// ---------------------------------------------------------------------------
// Bad input: a status, a message naming the argument, nothing written.
TEST(LinearCeArgs, BadInput) {
  if (!HaveBlas()) {
    LceConfig c;
    LceCase t(c);
    EXPECT_EQ(t.Run(), XENT_ERROR_UNSUPPORTED);
    EXPECT_NE(std::string(xent_last_error()).find("without a BLAS"), std::string::npos) << xent_last_error();
    return;
  }
  struct Bad {
    const char* what;
    xent_status status;
    void (*edit)(xent_linear_cross_entropy_args*, LceCase*);
  };
  const Bad bad[] = {
      {"hidden is NULL", XENT_ERROR_NULL_POINTER, [](auto* a, auto*) { a->hidden = nullptr; }},
      {"linear_weight is NULL", XENT_ERROR_NULL_POINTER, [](auto* a, auto*) { a->linear_weight = nullptr; }},
      {"target is NULL", XENT_ERROR_NULL_POINTER, [](auto* a, auto*) { a->target = nullptr; }},
      {"hidden_size = 0", XENT_ERROR_INVALID_SHAPE, [](auto* a, auto*) { a->hidden_size = 0; }},
      {"hidden_stride (39) < hidden_size (40)", XENT_ERROR_INVALID_SHAPE,
       [](auto* a, auto*) { a->hidden_stride = 39; }},
      {"linear_weight_stride (3) < hidden_size", XENT_ERROR_INVALID_SHAPE,
       [](auto* a, auto*) { a->linear_weight_stride = 3; }},
      {"linear_weight_dtype = 2 (XENT_BF16) differs from hidden_dtype", XENT_ERROR_INVALID_DTYPE,
       [](auto* a, auto*) { a->linear_weight_dtype = XENT_BF16; }},
      {"linear_bias_dtype = 3 (XENT_F16)", XENT_ERROR_INVALID_DTYPE,
       [](auto* a, auto*) { a->linear_bias_dtype = XENT_F16; }},
      {"grad_hidden_dtype = 2 (XENT_BF16)", XENT_ERROR_INVALID_DTYPE,
       [](auto* a, auto*) { a->grad_hidden_dtype = XENT_BF16; }},
      {"target[3] = 300 is outside [0, 300)", XENT_ERROR_TARGET_OUT_OF_RANGE,
       [](auto* a, auto* t) {
         t->y64[3] = 300;
         a->target = t->y64.data();
       }},
      {"reduction = 3", XENT_ERROR_INVALID_ENUM, [](auto* a, auto*) { a->reduction = XENT_REDUCTION_BATCHMEAN; }},
      {"accumulate = 8", XENT_ERROR_INVALID_ENUM, [](auto* a, auto*) { a->accumulate = 8; }},
      {"label_smoothing = 2", XENT_ERROR_INVALID_VALUE, [](auto* a, auto*) { a->label_smoothing = 2.0f; }},
      {"scratch_bytes = 100 cannot hold one row", XENT_ERROR_INVALID_VALUE,
       [](auto* a, auto*) { a->scratch_bytes = 100; }},
      {"grad_hidden overlaps hidden", XENT_ERROR_ALIASING,
       [](auto* a, auto*) {
         a->grad_hidden = const_cast<void*>(a->hidden);
         a->grad_hidden_stride = a->hidden_stride;
       }},
      {"grad_linear_weight overlaps grad_hidden", XENT_ERROR_ALIASING,
       [](auto* a, auto*) {
         a->grad_linear_weight = a->grad_hidden;
         a->grad_linear_weight_stride = a->grad_hidden_stride;
       }},
      {"grad_linear_bias overlaps linear_weight", XENT_ERROR_ALIASING,
       [](auto* a, auto*) { a->grad_linear_bias = const_cast<void*>(a->linear_weight); }},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.what);
    LceConfig c;
    c.B = 8;
    c.bias_dtype = DType::kF32;
    LceCase t(c);
    xent_linear_cross_entropy_args a;
    t.Args(&a);
    t.loss[0] = 123.0f;
    b.edit(&a, &t);
    EXPECT_EQ(xent_linear_cross_entropy(&a), b.status);
    const std::string msg = xent_last_error();
    const std::string key = std::string(b.what).substr(0, std::string(b.what).find(' '));
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
    EXPECT_EQ(t.loss[0], 123.0f);
    for (size_t i = 0; i < c.B; ++i)
      for (size_t k = 0; k < c.H; ++k) ASSERT_EQ(t.gh.get(i, k), t.gh0[i * c.H + k]);
    for (size_t v = 0; v < c.V; ++v) ASSERT_EQ(t.gb.get(0, v), t.gb0[v]);
  }
  // struct_size checks and defaults as every operation.
  xent_linear_cross_entropy_args a;
  EXPECT_EQ(xent_linear_cross_entropy_args_init(&a, sizeof(a) - 8), XENT_ERROR_INVALID_STRUCT);
  ASSERT_EQ(XENT_ARGS_INIT(xent_linear_cross_entropy_args, &a), XENT_OK);
  EXPECT_EQ(a.reduction, XENT_REDUCTION_MEAN);
  EXPECT_EQ(a.ignore_index, -100);
  EXPECT_EQ(a.grad_scale, 1.0f);
  EXPECT_EQ(a.hidden_dtype, XENT_F32);
  EXPECT_EQ(a.target_dtype, XENT_I64);
  EXPECT_EQ(a.scratch_bytes, 0u);
}

}  // namespace
}  // namespace xent_test
