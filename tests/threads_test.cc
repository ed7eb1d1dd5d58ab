// Threading: results are bit-identical for any thread count, either built-in
// backend (OpenMP, oneTBB, serial: every variant of the library built here is
// loaded with dlopen) and a host pool (parallel_for callbacks that split and
// order tasks arbitrarily); concurrent calls from many threads; callback
// failures are reported.
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <atomic>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

#ifndef XENT_LIB_PATHS
#error "XENT_LIB_PATHS (comma-separated library paths) must be defined"
#endif

namespace xent_test {
namespace {

// The C API of one loaded library variant.
struct Lib {
  std::string path;
  void* handle = nullptr;
  const char* (*backend)();
  xent_status (*ce_init)(xent_cross_entropy_args*, size_t);
  xent_status (*ce)(const xent_cross_entropy_args*);
  xent_status (*sm_init)(xent_softmax_args*, size_t);
  xent_status (*sm)(const xent_softmax_args*);
  xent_status (*kl_init)(xent_divergence_args*, size_t);
  xent_status (*kl)(const xent_divergence_args*);
  xent_status (*bce_init)(xent_bce_args*, size_t);
  xent_status (*bce)(const xent_bce_args*);
  xent_status (*tl_init)(xent_token_logprobs_args*, size_t);
  xent_status (*tl)(const xent_token_logprobs_args*);
  const char* (*last_error)();
};

template <class F>
void Sym(void* h, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(h, name));
  ASSERT_NE(*out, nullptr) << name << ": " << dlerror();
}

std::vector<Lib>& Libs() {
  static std::vector<Lib> libs = [] {
    std::vector<Lib> v;
    std::string all = XENT_LIB_PATHS;
    size_t pos = 0;
    while (pos <= all.size()) {
      const size_t comma = all.find(',', pos);
      const std::string p = all.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      pos = comma == std::string::npos ? all.size() + 1 : comma + 1;
      if (p.empty()) continue;
      Lib l;
      l.path = p;
      l.handle = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!l.handle) {
        ADD_FAILURE() << "dlopen " << p << ": " << dlerror();
        continue;
      }
      Sym(l.handle, "xent_threading_backend", &l.backend);
      Sym(l.handle, "xent_cross_entropy_args_init", &l.ce_init);
      Sym(l.handle, "xent_cross_entropy", &l.ce);
      Sym(l.handle, "xent_softmax_args_init", &l.sm_init);
      Sym(l.handle, "xent_softmax", &l.sm);
      Sym(l.handle, "xent_divergence_args_init", &l.kl_init);
      Sym(l.handle, "xent_divergence", &l.kl);
      Sym(l.handle, "xent_bce_args_init", &l.bce_init);
      Sym(l.handle, "xent_bce_with_logits", &l.bce);
      Sym(l.handle, "xent_token_logprobs_args_init", &l.tl_init);
      Sym(l.handle, "xent_token_logprobs", &l.tl);
      Sym(l.handle, "xent_last_error", &l.last_error);
      v.push_back(l);
    }
    return v;
  }();
  return libs;
}

// Host pools for parallel_for.
struct Pool {
  int kind;  // 0: serial, tasks in reverse, one at a time; 1: std::threads, random splits
  uint32_t seed;
};
int PoolParallelFor(void* user, size_t n, xent_task_fn task, void* ctx, int32_t) {
  const Pool* pool = static_cast<const Pool*>(user);
  if (pool->kind == 0) {
    for (size_t i = n; i-- > 0;) task(ctx, i, i + 1);
    return 0;
  }
  // Random contiguous ranges handed to 3 threads through a shared queue.
  std::mt19937 rng(pool->seed);
  std::vector<std::pair<size_t, size_t>> ranges;
  for (size_t b = 0; b < n;) {
    const size_t len = 1 + rng() % std::max<size_t>(1, n / 3 + 1);
    ranges.emplace_back(b, std::min(n, b + len));
    b = std::min(n, b + len);
  }
  std::shuffle(ranges.begin(), ranges.end(), rng);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t k; (k = next.fetch_add(1)) < ranges.size();) task(ctx, ranges[k].first, ranges[k].second);
  };
  std::thread t1(worker), t2(worker);
  worker();
  t1.join();
  t2.join();
  return 0;
}

// Execution settings to compare.
struct Setting {
  const Lib* lib;
  int threads;
  const Pool* pool;
  std::string Name() const {
    return std::string(lib->backend()) + " threads=" + std::to_string(threads) +
           (pool ? " pool=" + std::to_string(pool->kind) : "");
  }
};

std::vector<Setting> Settings() {
  static const Pool serial_pool{0, 1}, thread_pool{1, 7};
  std::vector<Setting> s;
  for (const Lib& l : Libs()) {
    for (int t : {1, 2, 3, 7}) s.push_back({&l, t, nullptr});
    s.push_back({&l, 0, &serial_pool});
    s.push_back({&l, 4, &thread_pool});
  }
  return s;
}

template <class Args>
void ApplyExec(Args& a, const Setting& s) {
  a.num_threads = s.threads;
  if (s.pool) {
    a.parallel_for = &PoolParallelFor;
    a.parallel_user = const_cast<Pool*>(s.pool);
  }
}

// Runs `run` (which fills `out` bytes) for every setting; all must match
// the first bit for bit.
void ExpectSameBits(const std::function<std::vector<unsigned char>(const Setting&)>& run) {
  const auto settings = Settings();
  ASSERT_FALSE(settings.empty());
  const auto ref = run(settings[0]);
  ASSERT_FALSE(ref.empty());
  for (size_t i = 1; i < settings.size(); ++i) {
    const auto got = run(settings[i]);
    ASSERT_EQ(got.size(), ref.size());
    EXPECT_TRUE(std::memcmp(got.data(), ref.data(), ref.size()) == 0)
        << settings[i].Name() << " differs from " << settings[0].Name();
  }
}

template <class T>
void Append(std::vector<unsigned char>& out, const T* p, size_t n) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  out.insert(out.end(), b, b + n * sizeof(T));
}

// Nothing prints from inside xent, whatever the backend and thread count
// (oneTBB, for one, warns on stderr when asked for more workers than it has).
// First in the file: oneTBB warns once per process.
TEST(Threads, NoOutputOnStdoutOrStderr) {
  const size_t B = 256, V = 4096;
  std::vector<float> x(B * V, 0.5f), g(B * V);
  std::vector<int64_t> y(B, 1);
  for (const Lib& l : Libs()) {
    for (int threads : {7, 64}) {
      std::fflush(stdout);
      std::fflush(stderr);
      char path[] = "/tmp/xent_output_XXXXXX";
      const int fd = mkstemp(path);
      ASSERT_GE(fd, 0);
      const int saved_out = dup(1), saved_err = dup(2);
      dup2(fd, 1);
      dup2(fd, 2);
      xent_cross_entropy_args a;
      l.ce_init(&a, sizeof a);
      a.batch = B;
      a.num_classes = V;
      a.logits = x.data();
      a.target = y.data();
      a.grad = g.data();
      a.num_threads = threads;
      const xent_status st = l.ce(&a);
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
      EXPECT_EQ(size, 0) << l.backend() << " with " << threads << " threads printed something";
    }
  }
}

TEST(Threads, AllBackendsLoaded) {
  std::vector<std::string> names;
  for (const Lib& l : Libs()) names.push_back(l.backend());
  EXPECT_GE(names.size(), 1u);
  std::string all;
  for (const auto& n : names) all += n + " ";
  RecordProperty("backends", all);
  std::printf("library variants under test: %s\n", all.c_str());
  for (const auto& n : names) EXPECT_TRUE(n == "openmp" || n == "tbb" || n == "none") << n;
}

// Shapes that take both paths: many rows (split by rows) and few long rows
// (split inside rows).
struct Shape {
  size_t B, V;
};
const Shape kShapes[] = {{1, 262144}, {3, 70001}, {37, 5003}};

TEST(Threads, CrossEntropyBitIdentical) {
  for (const Shape sh : kShapes) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      SCOPED_TRACE("B=" + std::to_string(sh.B) + " V=" + std::to_string(sh.V));
      Mat x(sh.B, sh.V, dt);
      const auto r = RandomNormal(sh.B * sh.V, 3.0, 5);
      for (size_t i = 0; i < sh.B; ++i)
        for (size_t j = 0; j < sh.V; ++j) x.set(i, j, r[i * sh.V + j]);
      std::vector<int64_t> y(sh.B);
      for (size_t i = 0; i < sh.B; ++i) y[i] = static_cast<int64_t>((i * 7919) % sh.V);
      ExpectSameBits([&](const Setting& s) {
        std::vector<float> grad(sh.B * sh.V), row(sh.B), lse(sh.B);
        float loss;
        xent_cross_entropy_args a;
        s.lib->ce_init(&a, sizeof a);
        a.batch = sh.B;
        a.num_classes = sh.V;
        a.logits = x.data();
        a.logits_dtype = x.dt();
        a.target = y.data();
        a.label_smoothing = 0.1f;
        a.z_loss = 1e-4f;
        a.loss = &loss;
        a.row_loss = row.data();
        a.lse = lse.data();
        a.grad = grad.data();
        a.grad_dtype = XENT_F32;
        ApplyExec(a, s);
        EXPECT_EQ(s.lib->ce(&a), XENT_OK) << s.lib->last_error();
        std::vector<unsigned char> out;
        Append(out, grad.data(), grad.size());
        Append(out, row.data(), row.size());
        Append(out, lse.data(), lse.size());
        Append(out, &loss, 1);
        return out;
      });
    }
  }
}

TEST(Threads, SoftmaxTokenLogprobsBitIdentical) {
  for (const Shape sh : kShapes) {
    Mat x(sh.B, sh.V, DType::kF32);
    const auto r = RandomNormal(sh.B * sh.V, 2.0, 6);
    for (size_t i = 0; i < sh.B; ++i)
      for (size_t j = 0; j < sh.V; ++j) x.set(i, j, r[i * sh.V + j]);
    std::vector<int64_t> y(sh.B, 1);
    ExpectSameBits([&](const Setting& s) {
      std::vector<float> probs(sh.B * sh.V), lp(sh.B * sh.V), lse(sh.B), ent(sh.B), tlp(sh.B), tent(sh.B);
      xent_softmax_args a;
      s.lib->sm_init(&a, sizeof a);
      a.batch = sh.B;
      a.num_classes = sh.V;
      a.logits = x.data();
      a.temperature = 1.3f;
      a.probs = probs.data();
      a.log_probs = lp.data();
      a.lse = lse.data();
      a.entropy = ent.data();
      ApplyExec(a, s);
      EXPECT_EQ(s.lib->sm(&a), XENT_OK) << s.lib->last_error();
      xent_token_logprobs_args t;
      s.lib->tl_init(&t, sizeof t);
      t.batch = sh.B;
      t.num_classes = sh.V;
      t.logits = x.data();
      t.target = y.data();
      t.logprob = tlp.data();
      t.entropy = tent.data();
      ApplyExec(t, s);
      EXPECT_EQ(s.lib->tl(&t), XENT_OK) << s.lib->last_error();
      std::vector<unsigned char> out;
      Append(out, probs.data(), probs.size());
      Append(out, lp.data(), lp.size());
      Append(out, lse.data(), lse.size());
      Append(out, ent.data(), ent.size());
      Append(out, tlp.data(), tlp.size());
      Append(out, tent.data(), tent.size());
      return out;
    });
  }
}

TEST(Threads, DivergenceAndBceBitIdentical) {
  for (const Shape sh : kShapes) {
    Mat x(sh.B, sh.V, DType::kF32), t(sh.B, sh.V, DType::kF32), yb(sh.B, sh.V, DType::kF32);
    const auto r1 = RandomNormal(sh.B * sh.V, 2.0, 7), r2 = RandomNormal(sh.B * sh.V, 2.0, 8);
    for (size_t i = 0; i < sh.B; ++i)
      for (size_t j = 0; j < sh.V; ++j) {
        x.set(i, j, r1[i * sh.V + j]);
        t.set(i, j, r2[i * sh.V + j]);
        yb.set(i, j, (i + j) % 3 == 0 ? 1.0 : 0.25);
      }
    ExpectSameBits([&](const Setting& s) {
      std::vector<float> gx(sh.B * sh.V), gt(sh.B * sh.V), row(sh.B), gb(sh.B * sh.V), rowb(sh.B);
      float loss, lossb;
      xent_divergence_args a;  // JSD with both gradients: three passes
      s.lib->kl_init(&a, sizeof a);
      a.batch = sh.B;
      a.num_classes = sh.V;
      a.input = x.data();
      a.target = t.data();
      a.input_kind = XENT_DIST_LOGITS;
      a.target_kind = XENT_DIST_LOGITS;
      a.divergence = XENT_DIVERGENCE_JSD;
      a.beta = 0.3f;
      a.temperature = 2.0f;
      a.reduction = XENT_REDUCTION_BATCHMEAN;
      a.loss = &loss;
      a.row_loss = row.data();
      a.grad_input = gx.data();
      a.grad_target = gt.data();
      ApplyExec(a, s);
      EXPECT_EQ(s.lib->kl(&a), XENT_OK) << s.lib->last_error();
      xent_bce_args b;
      s.lib->bce_init(&b, sizeof b);
      b.batch = sh.B;
      b.num_classes = sh.V;
      b.logits = x.data();
      b.target = yb.data();
      b.loss = &lossb;
      b.row_loss = rowb.data();
      b.grad = gb.data();
      ApplyExec(b, s);
      EXPECT_EQ(s.lib->bce(&b), XENT_OK) << s.lib->last_error();
      std::vector<unsigned char> out;
      Append(out, gx.data(), gx.size());
      Append(out, gt.data(), gt.size());
      Append(out, row.data(), row.size());
      Append(out, &loss, 1);
      Append(out, gb.data(), gb.size());
      Append(out, rowb.data(), rowb.size());
      Append(out, &lossb, 1);
      return out;
    });
  }
}

// Many threads calling at once, on distinct outputs, get the single-thread
// results.
TEST(Threads, ConcurrentCallers) {
  const size_t B = 16, V = 20000;
  Mat x(B, V, DType::kF32);
  const auto r = RandomNormal(B * V, 2.0, 9);
  for (size_t i = 0; i < B; ++i)
    for (size_t j = 0; j < V; ++j) x.set(i, j, r[i * V + j]);
  std::vector<int64_t> y(B, 3);
  auto run = [&](std::vector<float>& grad, float* loss, int threads) {
    xent_cross_entropy_args a;
    XENT_ARGS_INIT(xent_cross_entropy_args, &a);
    a.batch = B;
    a.num_classes = V;
    a.logits = x.data();
    a.target = y.data();
    a.loss = loss;
    a.grad = grad.data();
    a.num_threads = threads;
    return xent_cross_entropy(&a);
  };
  std::vector<float> ref_grad(B * V);
  float ref_loss;
  ASSERT_EQ(run(ref_grad, &ref_loss, 1), XENT_OK);
  std::vector<std::thread> ts;
  std::atomic<int> mismatches{0};
  for (int k = 0; k < 6; ++k) {
    ts.emplace_back([&, k] {
      for (int it = 0; it < 5; ++it) {
        std::vector<float> g(B * V);
        float l;
        if (run(g, &l, k % 3) != XENT_OK || l != ref_loss ||
            std::memcmp(g.data(), ref_grad.data(), g.size() * sizeof(float)) != 0)
          mismatches.fetch_add(1);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

int FailingParallelFor(void*, size_t, xent_task_fn, void*, int32_t) { return 3; }
int SkippingParallelFor(void*, size_t n, xent_task_fn task, void* ctx, int32_t) {
  if (n > 1) task(ctx, 0, n - 1);  // forgets the last task
  return 0;
}
int OverrunParallelFor(void*, size_t n, xent_task_fn task, void* ctx, int32_t) {
  task(ctx, 0, n + 5);  // a range past the end must not run
  return 0;
}

TEST(Threads, CallbackFailuresAreReported) {
  const size_t B = 640, V = 1000;  // several tasks of 65 rows
  std::vector<float> x(B * V, 0.0f), g(B * V);
  std::vector<int64_t> y(B, 0);
  for (auto pf : {&FailingParallelFor, &SkippingParallelFor, &OverrunParallelFor}) {
    xent_cross_entropy_args a;
    XENT_ARGS_INIT(xent_cross_entropy_args, &a);
    a.batch = B;
    a.num_classes = V;
    a.logits = x.data();
    a.target = y.data();
    a.grad = g.data();
    a.num_threads = 4;
    a.parallel_for = pf;
    EXPECT_EQ(xent_cross_entropy(&a), XENT_ERROR_CALLBACK);
    EXPECT_NE(std::string(xent_last_error()).find("parallel_for"), std::string::npos) << xent_last_error();
  }
}

}  // namespace
}  // namespace xent_test
