// Allocation failure: every allocation a call makes can fail (the injection:
// tests/alloc/alloc_hook.h). For each library variant (OpenMP, oneTBB,
// serial; loaded with dlopen) and each scenario below, attempt n fails the
// n-th allocation of one call, for n = 1, 2, ... until a call makes fewer
// than n. Each attempt runs on a fresh thread with V one larger than the last
// attempt's (so the per-thread scratch of the calling thread and of every
// worker must grow: nothing is served from an earlier call's buffers), and
// then:
// - the call returns XENT_ERROR_OUT_OF_MEMORY (a message saying so, and no
//   buffer written), or XENT_OK when the failure was absorbed (a scratch row
//   xent can do without) with outputs bit-identical to the next call's;
// - the next call, with nothing failing, returns XENT_OK;
// - under AddressSanitizer, LeakSanitizer finds nothing at exit.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/alloc/alloc_hook.h"
#include "tests/common/gtest_util.h"
#include "tests/common/pool.h"
#include "tests/linear_ce_case.h"

#ifndef XENT_LIB_PATHS
#error "XENT_LIB_PATHS (comma-separated library paths) must be defined"
#endif

namespace xent_test {
namespace {

struct Scenario {
  std::string name;
  std::function<CaseSpec(size_t extra_v)> spec;
  bool long_rows = false;  // rows of more than 32 segments: see LongRows below
};

// Every output of the operation.
CaseSpec Every(const abi::OpDesc& op, size_t B, size_t V, int32_t threads) {
  CaseSpec s(op, B, V);
  for (size_t i = 0; i < op.num_fields; ++i) {
    const abi::Field& f = op.fields[i];
    if (f.role == abi::Role::kOutMat || f.role == abi::Role::kOutVec || f.role == abi::Role::kLabels) s.With(f.name);
  }
  s.num_threads = threads;
  return s;
}

std::vector<Scenario> Scenarios() {
  static HostPool pool;  // in order, 3 pieces: xent's tasks on the calling thread
  pool.mode = PoolMode::kInOrder;
  pool.pieces = 3;
  std::vector<Scenario> v;
  v.push_back({"cross_entropy reduced loss only (row-loss scratch), 1 thread", [](size_t n) {
                 CaseSpec s(abi::kCrossEntropy, 4, 100 + n);
                 s.With("loss").num_threads = 1;
                 return s;
               }});
  v.push_back({"cross_entropy few long rows split over 2 threads", [](size_t n) {
                 CaseSpec s(abi::kCrossEntropy, 1, 200000 + n);
                 s.With("loss").With("grad").num_threads = 2;
                 return s;
               }});
  v.push_back({"cross_entropy host pool", [](size_t n) {
                 CaseSpec s(abi::kCrossEntropy, 64, 1000 + n);
                 s.With("loss").With("grad").num_threads = 2;
                 s.parallel_for = &HostPool::ParallelFor;
                 s.parallel_user = &pool;
                 return s;
               }});
  for (const abi::OpDesc* op : abi::kAllOps) {
    v.push_back(
        {std::string(op->name) + " every output, all threads", [op](size_t n) { return Every(*op, 8, 300 + n, 0); }});
    v.push_back({std::string(op->name) + " rows of more than 32 segments, 1 thread",
                 [op](size_t n) { return Every(*op, 2, 140000 + n, 1); }, true});
  }
  return v;
}

struct Tally {
  size_t attempts = 0, oom = 0, absorbed = 0, exempt = 0;
};

// Attempt n of a scenario on a library: see the file comment.
bool Attempt(const Api& lib, const Scenario& sc, size_t n, size_t extra_v, Tally* t) {
  bool reached = false;
  std::thread th([&] {
    SCOPED_TRACE(std::string(lib.Backend()) + " / " + sc.name + " / allocation " + std::to_string(n));
    Case c(sc.spec(extra_v));
    c.Prepare();
    xent_alloc::Arm(n);
    const xent_status rc = c.Call(lib);
    const size_t count = xent_alloc::Disarm();
    const bool failed = xent_alloc::Failed();
    t->exempt += xent_alloc::Exempt();
    reached = count >= n;
    EXPECT_EQ(reached, failed);
    std::vector<std::string> problems;
    std::vector<unsigned char> first;
    if (rc == XENT_ERROR_OUT_OF_MEMORY) {
      ++t->oom;
      EXPECT_NE(std::string(lib.LastError()).find("out of memory"), std::string::npos) << lib.LastError();
      c.CheckUntouched(&problems);
    } else {
      ASSERT_EQ(rc, XENT_OK) << lib.LastError();
      t->absorbed += failed;
      first = c.OutputBytes();
    }
    c.Restore();
    ASSERT_EQ(c.Run(lib), XENT_OK) << "the call after the failure: " << lib.LastError();
    c.CheckWritten(&problems);
    if (rc == XENT_OK) {
      EXPECT_TRUE(first == c.OutputBytes()) << "outputs differ from the next call's";
    }
    ExpectNoProblems(problems, c.Describe());
  });
  th.join();
  if (reached) ++t->attempts;
  return reached;
}

// The sweep over every library variant and the scenarios with (or without)
// long rows; prints what it did.
void Sweep(bool long_rows) {
  std::string error;
  const std::vector<Api> libs = Api::Load(XENT_LIB_PATHS, &error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_FALSE(libs.empty());
  Tally all;
  size_t scenarios = 0;
  for (const Api& lib : libs) {
    size_t extra_v = 0;
    for (const Scenario& sc : Scenarios()) {
      if (sc.long_rows != long_rows) continue;
      Case warm(sc.spec(0));  // runtimes started, lazy state initialized
      ASSERT_EQ(warm.Run(lib), XENT_OK) << lib.LastError();
      Tally t;
      for (size_t n = 1; n <= 1000; ++n) {
        if (!Attempt(lib, sc, n, ++extra_v, &t)) break;
        if (::testing::Test::HasFatalFailure()) return;
      }
      std::printf("%-7s %-68s %3zu allocations failed: %3zu out of memory, %3zu absorbed (%zu exempt)\n", lib.Backend(),
                  sc.name.c_str(), t.attempts, t.oom, t.absorbed, t.exempt);
      EXPECT_GT(t.attempts, 0u) << sc.name << ": no allocation to fail";
      all.attempts += t.attempts;
      all.oom += t.oom;
      all.absorbed += t.absorbed;
      all.exempt += t.exempt;
      ++scenarios;
    }
  }
  std::printf(
      "allocation-failure sweep (%s level, %zu scenarios x library variants): %zu allocations failed, "
      "%zu calls returned XENT_ERROR_OUT_OF_MEMORY, %zu absorbed with identical results; %zu allocations "
      "exempt (libgomp, loader, libc, BLAS)\n",
      xent_alloc::Level(), scenarios, all.attempts, all.oom, all.absorbed, all.exempt);
  ::testing::Test::RecordProperty("allocations_failed", static_cast<int>(all.attempts));
}

TEST(AllocationFailure, EveryAllocationOfEveryScenario) { Sweep(false); }

// Rows of more than 32 segments (V > 131072) with many rows: the row engine
// (src/engine.h, RunRowBlocks) takes each thread's segment partials from a
// per-thread heap buffer inside the task; when that allocation fails, the
// task gives up (XENT_ERROR_OUT_OF_MEMORY), but tasks that ran before it, or
// after it (the next task on the thread retries the allocation, which then
// succeeds), have written their rows: a failed call with written outputs,
// against the header ("a call that fails leaves all outputs untouched").
TEST(AllocationFailure, LongRowsLeaveOutputsUntouched) { Sweep(true); }

// xent_linear_cross_entropy: several row blocks (a scratch budget of a few
// rows), so that outputs are written before the later blocks' work; ignored
// rows (zeroed after the blocks); a 16-bit weight (the widening buffers; its
// gradient's f32 accumulator, or the tiles of classes without room for it);
// rows of more than 32 segments (the engine's per-block statistics). Every
// allocation of a call fails in turn, as above: XENT_ERROR_OUT_OF_MEMORY with
// every output untouched, or XENT_OK with the next call's bits.
struct LceScenario {
  const char* name;
  LceConfig cfg;
};

std::vector<LceScenario> LceScenarios() {
  std::vector<LceScenario> v;
  LceConfig a;
  a.B = 10, a.V = 300, a.H = 24, a.ignore_every = 3, a.bias_dtype = DType::kF32, a.num_threads = 0;
  a.scratch = 3 * (a.V + a.H) * sizeof(float);
  v.push_back({"linear_cross_entropy f32, 4 row blocks, ignored rows, all threads", a});
  LceConfig b = a;
  b.dtype = DType::kBF16, b.bias_dtype = DType::kBF16, b.num_threads = 2;
  v.push_back({"linear_cross_entropy bf16 (widened weight tiles, tiles of classes), 2 threads", b});
  b.scratch = 0;  // the default budget: room for the accumulator, one block
  v.push_back({"linear_cross_entropy bf16 (widened weight tiles, f32 accumulator), 2 threads", b});
  LceConfig c;
  c.B = 5, c.V = 140000, c.H = 8, c.num_threads = 1, c.want_gb = false;
  c.scratch = 2 * (c.V + c.H) * sizeof(float);
  v.push_back({"linear_cross_entropy rows of more than 32 segments, 3 row blocks, 1 thread", c});
  return v;
}

// Every output's bytes.
std::vector<unsigned char> LceOutputs(const LceCase& k) {
  std::vector<unsigned char> out;
  auto add = [&out](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    out.insert(out.end(), b, b + n);
  };
  for (const Mat* m : {&k.gh, &k.gw, &k.gb}) {
    const std::vector<double> v = m->values();
    add(v.data(), v.size() * sizeof(double));
  }
  for (const Vec* v : {&k.loss, &k.row_loss, &k.lse}) add(v->data(), v->size() * sizeof(float));
  return out;
}

TEST(AllocationFailure, LinearCrossEntropyLeavesOutputsUntouched) {
  if (!HaveBlas()) GTEST_SKIP() << "built without a BLAS";
  std::string error;
  const std::vector<Api> libs = Api::Load(XENT_LIB_PATHS, &error);
  ASSERT_TRUE(error.empty()) << error;
  Tally all;
  for (const Api& lib : libs) {
    void* h = dlopen(lib.path().c_str(), RTLD_NOW | RTLD_NOLOAD);
    ASSERT_NE(h, nullptr) << lib.path();
    using Fn = xent_status (*)(const xent_linear_cross_entropy_args*);
    const auto fn = reinterpret_cast<Fn>(dlsym(h, "xent_linear_cross_entropy"));
    ASSERT_NE(fn, nullptr);
    for (const LceScenario& sc : LceScenarios()) {
      {
        LceCase warm(sc.cfg);  // runtimes started, lazy state initialized
        xent_linear_cross_entropy_args a;
        warm.Args(&a);
        ASSERT_EQ(fn(&a), XENT_OK) << lib.LastError();
      }
      Tally t;
      for (size_t n = 1; n <= 1000; ++n) {
        bool reached = false;
        std::thread th([&] {
          SCOPED_TRACE(std::string(lib.Backend()) + " / " + sc.name + " / allocation " + std::to_string(n));
          LceConfig cfg = sc.cfg;
          cfg.V += n;  // fresh per-thread scratch everywhere, as above
          cfg.scratch = cfg.scratch / (sc.cfg.V + sc.cfg.H) * (cfg.V + cfg.H);
          LceCase k(cfg);
          xent_linear_cross_entropy_args a;
          k.Args(&a);
          const std::vector<unsigned char> before = LceOutputs(k);
          xent_alloc::Arm(n);
          const xent_status rc = fn(&a);
          const size_t count = xent_alloc::Disarm();
          const bool failed = xent_alloc::Failed();
          t.exempt += xent_alloc::Exempt();
          reached = count >= n;
          EXPECT_EQ(reached, failed);
          std::vector<unsigned char> first;
          if (rc == XENT_ERROR_OUT_OF_MEMORY) {
            ++t.oom;
            EXPECT_NE(std::string(lib.LastError()).find("out of memory"), std::string::npos) << lib.LastError();
            EXPECT_TRUE(before == LceOutputs(k)) << "a call that failed wrote outputs";
          } else {
            ASSERT_EQ(rc, XENT_OK) << lib.LastError();
            t.absorbed += failed;
            first = LceOutputs(k);
          }
          ASSERT_EQ(fn(&a), XENT_OK) << "the call after the failure: " << lib.LastError();
          if (rc == XENT_OK) {
            EXPECT_TRUE(first == LceOutputs(k)) << "outputs differ from the next call's";
          }
        });
        th.join();
        if (::testing::Test::HasFatalFailure()) return;
        if (!reached) break;
        ++t.attempts;
      }
      std::printf("%-7s %-78s %3zu allocations failed: %3zu out of memory, %3zu absorbed (%zu exempt)\n", lib.Backend(),
                  sc.name, t.attempts, t.oom, t.absorbed, t.exempt);
      EXPECT_GT(t.attempts, 0u) << sc.name << ": no allocation to fail";
      all.attempts += t.attempts;
      all.oom += t.oom;
      all.absorbed += t.absorbed;
    }
  }
  std::printf(
      "linear cross-entropy allocation-failure sweep (%s level, %zu scenarios x library variants): %zu "
      "allocations failed, %zu calls returned XENT_ERROR_OUT_OF_MEMORY, %zu absorbed with identical results\n",
      xent_alloc::Level(), LceScenarios().size() * libs.size(), all.attempts, all.oom, all.absorbed);
}

}  // namespace
}  // namespace xent_test
