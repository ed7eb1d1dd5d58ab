// Threading: results are bit-identical for any thread count, either built-in
// backend (OpenMP, oneTBB, serial: every variant of the library built here is
// loaded with dlopen) and a host pool (parallel_for callbacks that split and
// order tasks arbitrarily); concurrent calls from many threads; callback
// failures are reported.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/gtest_util.h"
#include "tests/common/pool.h"

#ifndef XENT_LIB_PATHS
#error "XENT_LIB_PATHS (comma-separated library paths) must be defined"
#endif

namespace xent_test {
namespace {

const std::vector<Api>& Libs() {
  static const std::vector<Api> libs = [] {
    std::string error;
    std::vector<Api> v = Api::Load(XENT_LIB_PATHS, &error);
    if (!error.empty()) ADD_FAILURE() << error;
    return v;
  }();
  return libs;
}

// Execution settings to compare: every library variant with 1, 2, 3 and 7
// threads, a serial host pool (tasks in reverse) and a threaded one (random
// splits in random order).
struct Setting {
  const Api* lib;
  int32_t threads;
  PoolMode pool;
  bool use_pool;
  std::string Name() const {
    return std::string(lib->Backend()) + " threads=" + std::to_string(threads) +
           (use_pool ? " pool=" + std::to_string(static_cast<int>(pool)) : "");
  }
};

std::vector<Setting> Settings() {
  std::vector<Setting> s;
  for (const Api& l : Libs()) {
    for (int t : {1, 2, 3, 7}) s.push_back({&l, t, PoolMode::kInOrder, false});
    s.push_back({&l, 0, PoolMode::kReverse, true});
    s.push_back({&l, 4, PoolMode::kShuffled, true});
  }
  return s;
}

// Runs the case (from its sealed inputs) under every setting: every output
// must match the first setting's bit for bit.
void ExpectSameBits(Case& c) {
  SCOPED_TRACE(c.Describe());
  const auto settings = Settings();
  ASSERT_FALSE(settings.empty());
  std::vector<unsigned char> ref;
  for (size_t i = 0; i < settings.size(); ++i) {
    const Setting& s = settings[i];
    HostPool pool;
    pool.mode = s.pool;
    pool.seed = 7;
    c.Restore();
    c.SetArg<int32_t>("num_threads", s.threads);
    c.SetArg<xent_parallel_for_fn>("parallel_for", s.use_pool ? &HostPool::ParallelFor : nullptr);
    c.SetArg<void*>("parallel_user", &pool);
    ASSERT_EQ(c.Run(*s.lib), XENT_OK) << s.Name() << ": " << s.lib->LastError();
    const auto got = c.OutputBytes();
    if (i == 0) {
      ref = got;
      ASSERT_FALSE(ref.empty());
      continue;
    }
    ASSERT_EQ(got.size(), ref.size());
    EXPECT_TRUE(std::memcmp(got.data(), ref.data(), ref.size()) == 0)
        << s.Name() << " differs from " << settings[0].Name();
  }
}

// Nothing prints from inside xent, whatever the backend and thread count
// (oneTBB, for one, warns on stderr when asked for more workers than it has).
// First in the file: oneTBB warns once per process.
TEST(Threads, NoOutputOnStdoutOrStderr) {
  CaseSpec s(abi::kCrossEntropy, 256, 4096);
  s.With("grad");
  Case c(s);
  for (const Api& l : Libs()) {
    for (int threads : {7, 64}) {
      std::fflush(stdout);
      std::fflush(stderr);
      char path[] = "/tmp/xent_output_XXXXXX";
      const int fd = mkstemp(path);
      ASSERT_GE(fd, 0);
      const int saved_out = dup(1), saved_err = dup(2);
      dup2(fd, 1);
      dup2(fd, 2);
      c.SetArg<int32_t>("num_threads", threads);
      const xent_status st = c.Run(l);
      std::fflush(stdout);
      std::fflush(stderr);
      dup2(saved_out, 1);
      dup2(saved_err, 2);
      close(saved_out);
      close(saved_err);
      const off_t size = lseek(fd, 0, SEEK_END);
      close(fd);
      unlink(path);
      EXPECT_EQ(st, XENT_OK);
      EXPECT_EQ(size, 0) << l.Backend() << " with " << threads << " threads printed something";
    }
  }
}

TEST(Threads, AllBackendsLoaded) {
  std::string all;
  for (const Api& l : Libs()) all += std::string(l.Backend()) + " ";
  EXPECT_GE(Libs().size(), 1u);
  RecordProperty("backends", all);
  std::printf("library variants under test: %s\n", all.c_str());
  for (const Api& l : Libs()) {
    const std::string n = l.Backend();
    EXPECT_TRUE(n == "openmp" || n == "tbb" || n == "none") << n;
  }
}

// Shapes that take both paths: many rows (split by rows; with more than one
// thread, CE interleaves each row's gradient with the next row's statistics:
// src/engine.h, Pipelined) and few long rows (split inside rows with 2+
// threads; with one, rows of more than 32 segments of 4096 keep their
// partials in the engine's per-task buffer). XENT_THREADS_SHAPES=small
// keeps both paths with a fifth of the elements (the TSan build runs this
// file at -O1 on the scalar target).
struct Shape {
  size_t B, V;
};
const std::vector<Shape>& Shapes() {
  static const std::vector<Shape> shapes = [] {
    const char* e = std::getenv("XENT_THREADS_SHAPES");
    if (e != nullptr && std::string(e) == "small") return std::vector<Shape>{{1, 70001}, {3, 17000}, {37, 503}};
    return std::vector<Shape>{{1, 262144}, {3, 140001}, {37, 5003}};
  }();
  return shapes;
}

// Every output of the operation requested, with the options a test names.
CaseSpec Every(const abi::OpDesc& op, const Shape& sh, DType dt, uint64_t seed) {
  CaseSpec s(op, sh.B, sh.V);
  for (size_t i = 0; i < op.num_fields; ++i) {
    const abi::Field& f = op.fields[i];
    if (f.role == abi::Role::kOutMat || f.role == abi::Role::kOutVec) s.With(f.name, DType::kF32);
  }
  s.With(op.fields[0].name, dt);
  s.seed = seed;
  return s;
}

TEST(Threads, CrossEntropyBitIdentical) {
  for (const Shape& sh : Shapes()) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      // The stats pass leaves e (with softcap: z) where the gradient finds
      // it: the scratch row in row blocks, the f32 gradient row when few
      // long rows are split in segments (no scratch). Same bits either way.
      for (float cap : {0.0f, 30.0f}) {
        CaseSpec s = Every(abi::kCrossEntropy, sh, dt, 5);
        s.ignore_every = 4;  // (ignored rows inside the interleaved row blocks)
        Case c(s.Set("label_smoothing", 0.1).Set("z_loss", 1e-4).Set("softcap", cap));
        ExpectSameBits(c);
      }
    }
    // A bf16 gradient with softcap: z from the scratch row in row blocks, the
    // tanh taken again when split in segments (no scratch, and no f32
    // gradient row to keep z in).
    CaseSpec s = Every(abi::kCrossEntropy, sh, DType::kBF16, 9);
    Case c(s.With("grad", DType::kBF16).Set("softcap", 30));
    ExpectSameBits(c);
  }
}

TEST(Threads, SoftmaxTokenLogprobsBitIdentical) {
  for (const Shape& sh : Shapes()) {
    CaseSpec s = Every(abi::kSoftmax, sh, DType::kF32, 6);
    Case sm(s.Set("temperature", 1.3));
    ExpectSameBits(sm);
    CaseSpec t = Every(abi::kTokenLogprobs, sh, DType::kF32, 6);
    Case tl(t.With("target"));
    ExpectSameBits(tl);
    Case sb(Every(abi::kSoftmaxBackward, sh, DType::kF32, 6));
    ExpectSameBits(sb);
  }
}

// The per-token backward: with the statistics recomputed (its output phase
// interleaved with the next row's statistics at 2+ threads), rows whose
// upstream gradients are all 0 (ignored targets, no entropy term: no
// statistics) among them, and with the caller's statistics (no stats pass).
TEST(Threads, TokenLogprobsBackwardBitIdentical) {
  for (const Shape& sh : Shapes()) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      CaseSpec s = Every(abi::kTokenLogprobsBackward, sh, dt, 10);
      s.ignore_every = 4;
      Case both(s.With("target").With("grad_logprob").With("grad_entropy").Set("temperature", 1.4));
      ExpectSameBits(both);
      CaseSpec z = Every(abi::kTokenLogprobsBackward, sh, dt, 11);
      z.ignore_every = 3;
      Case lp_only(z.With("target").With("grad_logprob"));
      ExpectSameBits(lp_only);
    }
    CaseSpec g = Every(abi::kTokenLogprobsBackward, sh, DType::kF32, 12);
    Case given(g.With("target").With("grad_logprob").With("grad_entropy").With("lse").With("entropy"));
    ExpectSameBits(given);
  }
}

TEST(Threads, DivergenceAndBceBitIdentical) {
  for (const Shape& sh : Shapes()) {
    CaseSpec s = Every(abi::kDivergence, sh, DType::kF32, 7);  // JSD with both gradients: three passes
    s.Set("input_kind", XENT_DIST_LOGITS).Set("target_kind", XENT_DIST_LOGITS).Set("divergence", XENT_DIVERGENCE_JSD);
    s.Set("beta", 0.3).Set("temperature", 2).Set("reduction", XENT_REDUCTION_BATCHMEAN);
    Case kl(s);
    ExpectSameBits(kl);
    // One gradient: the middle pass leaves its terms in the other side's
    // scratch row for the output pass (rows in blocks); recomputed without
    // scratch rows (few long rows split in segments).
    for (const char* without : {"grad_target", "grad_input"}) {
      Case one(CaseSpec(s).Without(without).Without("elem_loss"));
      ExpectSameBits(one);
    }
    // Distillation (forward KL of logits, student gradient only): its own
    // pass, with the statistics pass's stored exps (rows in blocks) and
    // without them (few long rows split in segments).
    for (bool elem : {false, true}) {
      CaseSpec ds = Every(abi::kDivergence, sh, DType::kF32, 9);
      ds.Set("input_kind", XENT_DIST_LOGITS).Set("target_kind", XENT_DIST_LOGITS).Set("temperature", 1.7);
      ds.Without("grad_target");
      if (!elem) ds.Without("elem_loss");
      Case dk(ds);
      ExpectSameBits(dk);
    }
    Case bce(Every(abi::kBce, sh, DType::kF32, 8));
    ExpectSameBits(bce);
  }
}

// Many threads calling at once, on distinct outputs, get the single-thread
// results.
TEST(Threads, ConcurrentCallers) {
  CaseSpec s(abi::kCrossEntropy, 16, 20000);
  s.With("loss").With("grad").sigma = 2;
  s.Set("num_threads", 1);
  Case ref(s);
  ASSERT_EQ(ref.Run(), XENT_OK);
  const auto want = ref.OutputBytes();
  std::vector<std::thread> ts;
  std::atomic<int> mismatches{0};
  for (int k = 0; k < 6; ++k) {
    ts.emplace_back([&, k] {
      Case c(CaseSpec(s).Set("num_threads", k % 3));
      for (int it = 0; it < 5; ++it) {
        c.Restore();
        if (c.Run() != XENT_OK || c.OutputBytes() != want) mismatches.fetch_add(1);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(Threads, CallbackFailuresAreReported) {
  CaseSpec s(abi::kCrossEntropy, 640, 1000);  // several tasks of 65 rows
  s.With("grad").Set("num_threads", 4);
  for (PoolMode mode : {PoolMode::kFail, PoolMode::kSkipLast, PoolMode::kOverrun}) {
    HostPool pool;
    pool.mode = mode;
    s.parallel_for = &HostPool::ParallelFor;
    s.parallel_user = &pool;
    Case c(s);
    EXPECT_EQ(c.Run(), XENT_ERROR_CALLBACK);
    EXPECT_TRUE(pool.Misbehaved());
    EXPECT_NE(std::string(xent_last_error()).find("parallel_for"), std::string::npos) << xent_last_error();
  }
}

}  // namespace
}  // namespace xent_test
