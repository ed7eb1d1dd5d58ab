// Vocab-parallel token log-probs (xent_token_logprobs_shard_stats / _finish,
// and xent_token_logprobs_backward on a shard with shard-local targets): P
// column shards simulated in one process, against xent_token_logprobs' bits
// (shards on the documented alignment) and the float64 reference (any
// split), on every SIMD target, 1 and 2 threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "src/dtype.h"
#include "src/problem.h"
#include "tests/common/gtest_util.h"
#include "tests/common/tolerance.h"
#include "tests/token_stats_reference.h"

namespace xent_test {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
using xent::DType;

struct TokProblem {
  size_t B = 3, V = 100;
  DType dt = DType::kF32;
  float T = 1, cap = 0;
  bool target = true;
  size_t ignore_every = 0;  // rows i % ignore_every == 1 ignored
  bool masked = false;      // every third column -inf (never a target)
  int32_t threads = 1;
  uint32_t seed = 1;
  std::vector<float> x;  // B x V, representable in dt
  std::vector<int64_t> y;
  std::vector<float> g_lp, g_h;  // upstream gradients

  void Fill() {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n(0.0f, 3.0f);
    x.resize(B * V);
    for (float& v : x) v = static_cast<float>(RoundTo(n(rng), dt));
    if (masked) {
      // Every third column -inf (never a target below).
      for (size_t i = 0; i < B; ++i)
        for (size_t j = 2; j < V; j += 3) x[i * V + j] = kNegInf;
    }
    std::uniform_int_distribution<int64_t> cls(0, static_cast<int64_t>(V) - 1);
    y.resize(B);
    for (size_t i = 0; i < B; ++i) {
      do {
        y[i] = cls(rng);
      } while (masked && y[i] % 3 == 2);
      if (ignore_every && i % ignore_every == 1) y[i] = -100;
    }
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    g_lp.resize(B);
    g_h.resize(B);
    for (size_t i = 0; i < B; ++i) {
      g_lp[i] = u(rng);
      g_h[i] = u(rng);
    }
  }
};

std::vector<unsigned char> Columns(const TokProblem& p, size_t c0, size_t w) {
  const size_t es = xent::DTypeSize(p.dt);
  std::vector<unsigned char> m(p.B * w * es);
  for (size_t i = 0; i < p.B; ++i)
    for (size_t j = 0; j < w; ++j) xent::StoreScalarF32(m.data(), i * w + j, p.dt, p.x[i * p.V + c0 + j]);
  return m;
}

struct Stats {
  std::vector<float> lp, ent, lse;
};

Stats WholeForward(const TokProblem& p) {
  std::vector<unsigned char> logits = Columns(p, 0, p.V);
  Stats s;
  s.lp.assign(p.B, 7.0f);
  s.ent.assign(p.B, 7.0f);
  s.lse.assign(p.B, 7.0f);
  xent_token_logprobs_args a;
  XENT_ARGS_INIT(xent_token_logprobs_args, &a);
  a.batch = p.B;
  a.num_classes = p.V;
  a.logits = logits.data();
  a.logits_dtype = static_cast<int32_t>(p.dt);
  a.target = p.target ? p.y.data() : nullptr;
  a.temperature = p.T;
  a.softcap = p.cap;
  a.logprob = p.target ? s.lp.data() : nullptr;
  a.entropy = s.ent.data();
  a.lse = s.lse.data();
  a.num_threads = p.threads;
  EXPECT_EQ(xent_token_logprobs(&a), XENT_OK) << xent_last_error();
  return s;
}

// xent_token_logprobs_backward over the whole rows with the given per-row
// lse / entropy.
std::vector<float> WholeBackward(const TokProblem& p, const Stats& s) {
  std::vector<unsigned char> logits = Columns(p, 0, p.V);
  std::vector<float> g(p.B * p.V, 7.0f);
  xent_token_logprobs_backward_args a;
  XENT_ARGS_INIT(xent_token_logprobs_backward_args, &a);
  a.batch = p.B;
  a.num_classes = p.V;
  a.logits = logits.data();
  a.logits_dtype = static_cast<int32_t>(p.dt);
  a.target = p.target ? p.y.data() : nullptr;
  a.temperature = p.T;
  a.softcap = p.cap;
  a.grad_logprob = p.target ? p.g_lp.data() : nullptr;
  a.grad_entropy = p.g_h.data();
  a.lse = s.lse.data();
  a.entropy = s.ent.data();
  a.grad = g.data();
  a.grad_dtype = XENT_F32;
  a.num_threads = p.threads;
  EXPECT_EQ(xent_token_logprobs_backward(&a), XENT_OK) << xent_last_error();
  return g;
}

xent_token_logprobs_shard_backward_args BackwardArgs(const TokProblem& p, const unsigned char* logits, size_t c0,
                                                     size_t w, const Stats& s, float* g) {
  xent_token_logprobs_shard_backward_args a;
  XENT_ARGS_INIT(xent_token_logprobs_shard_backward_args, &a);
  a.batch = p.B;
  a.num_classes = p.V;
  a.shard_classes = w;
  a.class_offset = c0;
  a.logits = logits;
  a.logits_dtype = static_cast<int32_t>(p.dt);
  a.target = p.target ? p.y.data() : nullptr;
  a.temperature = p.T;
  a.softcap = p.cap;
  a.grad_logprob = p.target ? p.g_lp.data() : nullptr;
  a.grad_entropy = p.g_h.data();
  a.lse = s.lse.data();
  a.entropy = s.ent.data();
  a.grad = g;
  a.grad_dtype = XENT_F32;
  a.num_threads = p.threads;
  return a;
}

// xent_token_logprobs_shard_backward over columns [c0, c0 + w).
std::vector<float> ShardBackward(const TokProblem& p, size_t c0, size_t w, const Stats& s) {
  std::vector<unsigned char> logits = Columns(p, c0, w);
  std::vector<float> g(p.B * w, 7.0f);
  const auto a = BackwardArgs(p, logits.data(), c0, w, s, g.data());
  EXPECT_EQ(xent_token_logprobs_shard_backward(&a), XENT_OK) << xent_last_error();
  return g;
}

xent_token_logprobs_shard_stats_args StatsArgs(const TokProblem& p, const unsigned char* logits, size_t c0, size_t w,
                                               bool with_entropy, double* out) {
  xent_token_logprobs_shard_stats_args a;
  XENT_ARGS_INIT(xent_token_logprobs_shard_stats_args, &a);
  a.batch = p.B;
  a.num_classes = p.V;
  a.shard_classes = w;
  a.class_offset = c0;
  a.logits = logits;
  a.logits_dtype = static_cast<int32_t>(p.dt);
  a.target = p.target ? p.y.data() : nullptr;
  a.temperature = p.T;
  a.softcap = p.cap;
  a.with_entropy = with_entropy ? 1 : 0;
  a.stats = out;
  a.num_threads = p.threads;
  return a;
}

// Every rank's stats, concatenated in rank order (the all-gather).
std::vector<double> Gather(const TokProblem& p, const std::vector<size_t>& bounds, bool with_entropy) {
  const size_t per = xent_token_logprobs_shard_stats_doubles(p.B, with_entropy ? 1 : 0);
  std::vector<double> all;
  for (size_t r = 0; r + 1 < bounds.size(); ++r) {
    const size_t c0 = bounds[r], w = bounds[r + 1] - c0;
    std::vector<unsigned char> logits = Columns(p, c0, w);
    std::vector<double> mine(per, 5.0);
    auto a = StatsArgs(p, logits.data(), c0, w, with_entropy, mine.data());
    EXPECT_EQ(xent_token_logprobs_shard_stats(&a), XENT_OK) << xent_last_error();
    all.insert(all.end(), mine.begin(), mine.end());
  }
  return all;
}

xent_token_logprobs_shard_finish_args FinishArgs(const TokProblem& p, const std::vector<double>& stats, size_t P,
                                                 bool with_entropy, Stats* s) {
  s->lp.assign(p.B, 7.0f);
  s->ent.assign(p.B, 7.0f);
  s->lse.assign(p.B, 7.0f);
  xent_token_logprobs_shard_finish_args a;
  XENT_ARGS_INIT(xent_token_logprobs_shard_finish_args, &a);
  a.batch = p.B;
  a.num_classes = p.V;
  a.target = p.target ? p.y.data() : nullptr;
  a.with_entropy = with_entropy ? 1 : 0;
  a.stats = stats.data();
  a.num_shards = P;
  a.logprob = p.target ? s->lp.data() : nullptr;
  a.entropy = with_entropy ? s->ent.data() : nullptr;
  a.lse = s->lse.data();
  return a;
}

Stats ShardForward(const TokProblem& p, const std::vector<size_t>& bounds, bool with_entropy = true) {
  const std::vector<double> stats = Gather(p, bounds, with_entropy);
  Stats s;
  auto a = FinishArgs(p, stats, bounds.size() - 1, with_entropy, &s);
  EXPECT_EQ(xent_token_logprobs_shard_finish(&a), XENT_OK) << xent_last_error();
  return s;
}

std::vector<size_t> Even(size_t V, size_t w) {
  std::vector<size_t> b;
  for (size_t c = 0; c < V; c += w) b.push_back(c);
  b.push_back(V);
  return b;
}

std::string Name(const TokProblem& p, const std::vector<size_t>& bounds) {
  std::string s = "B=" + std::to_string(p.B) + " V=" + std::to_string(p.V) +
                  " dt=" + std::to_string(static_cast<int>(p.dt)) + " T=" + std::to_string(p.T) +
                  " cap=" + std::to_string(p.cap) + " threads=" + std::to_string(p.threads) + " shards";
  for (size_t b : bounds) s += " " + std::to_string(b);
  return s;
}

bool SameBits(float a, float b) { return std::memcmp(&a, &b, sizeof(a)) == 0; }

// The gradient of each shard (local targets, finish's lse and entropy) is
// the whole call's columns with the same lse and entropy, bit for bit.
void ExpectShardGradients(const TokProblem& p, const std::vector<size_t>& bounds, const Stats& s,
                          const std::string& what) {
  const std::vector<float> whole = WholeBackward(p, s);
  for (size_t r = 0; r + 1 < bounds.size(); ++r) {
    const size_t c0 = bounds[r], w = bounds[r + 1] - c0;
    const std::vector<float> g = ShardBackward(p, c0, w, s);
    size_t bad = 0;
    for (size_t i = 0; i < p.B; ++i)
      for (size_t j = 0; j < w; ++j)
        if (!SameBits(g[i * w + j], whole[i * p.V + c0 + j]) && bad++ < 3)
          ADD_FAILURE() << what << ": grad[" << i << ", " << c0 + j << "] " << g[i * w + j] << " whole "
                        << whole[i * p.V + c0 + j];
  }
}

class VocabParallelTokenTest : public AllTargets {};

// Shards of 4096 * 2^k columns at multiples of it: xent_token_logprobs' bits
// (logprob, entropy, lse), every dtype, temperature and softcap, 1 and 2
// threads; the shards' gradients equal the whole call's.
TEST_P(VocabParallelTokenTest, AlignedShardsEqualWholeBits) {
  struct Split {
    size_t V, width;
  };
  const Split splits[] = {{5000, 5000}, {16384, 8192}, {3 * 4096, 4096}, {3 * 8192 - 100, 8192}};
  int k = 0;
  for (const Split& sp : splits) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (int32_t threads : {1, 2}) {
        ++k;
        TokProblem p;
        p.V = sp.V;
        p.B = threads == 2 && dt != DType::kF16 ? 9 : 3;
        p.dt = dt;
        p.threads = threads;
        p.T = k % 3 == 0 ? 0.7f : 1.0f;
        p.cap = k % 4 == 1 ? 15.0f : 0.0f;
        p.ignore_every = k % 2 == 0 ? 3 : 0;
        p.seed = static_cast<uint32_t>(k);
        p.Fill();
        const std::vector<size_t> bounds = Even(sp.V, sp.width);
        const std::string what = Name(p, bounds);
        const Stats whole = WholeForward(p);
        for (bool with_entropy : {true, false}) {
          const Stats s = ShardForward(p, bounds, with_entropy);
          for (size_t i = 0; i < p.B; ++i) {
            EXPECT_TRUE(SameBits(s.lse[i], whole.lse[i]))
                << what << ": lse[" << i << "] " << s.lse[i] << " vs " << whole.lse[i];
            EXPECT_TRUE(SameBits(s.lp[i], whole.lp[i]))
                << what << ": logprob[" << i << "] " << s.lp[i] << " vs " << whole.lp[i];
            if (with_entropy)
              EXPECT_TRUE(SameBits(s.ent[i], whole.ent[i]))
                  << what << ": entropy[" << i << "] " << s.ent[i] << " vs " << whole.ent[i];
            else
              EXPECT_EQ(s.ent[i], 7.0f) << "entropy untouched";
          }
          if (with_entropy) ExpectShardGradients(p, bounds, s, what);
        }
      }
    }
  }
}

// Any split (uneven, one column, shards holding no target, -inf columns,
// ignored rows, no targets at all): the float64 reference within the
// token log-probs' bounds; the gradients equal the whole call's columns.
TEST_P(VocabParallelTokenTest, UnalignedShardsMatchReference) {
  struct Case {
    size_t V;
    std::vector<size_t> bounds;
  };
  const Case cases[] = {
      {100, {0, 1, 37, 100}}, {300, {0, 100, 300}}, {9000, {0, 3000, 4100, 8999, 9000}}, {5000, {0, 2500, 5000}}};
  int k = 0;
  for (const Case& c : cases) {
    for (int opt = 0; opt < 4; ++opt) {
      ++k;
      TokProblem p;
      p.V = c.V;
      p.B = 5;
      p.dt = opt == 3 ? DType::kBF16 : DType::kF32;
      p.T = opt == 1 ? 2.0f : 1.0f;
      p.cap = opt == 2 ? 10.0f : 0.0f;
      p.masked = opt == 1;
      p.ignore_every = opt == 0 ? 2 : 0;
      p.target = opt != 2 || c.V != 300;
      p.threads = k % 2 ? 1 : 2;
      p.seed = static_cast<uint32_t>(100 + k);
      p.Fill();
      const std::string what = Name(p, c.bounds);
      const Stats s = ShardForward(p, c.bounds);
      xent_ref::TokSpec spec;
      spec.B = p.B;
      spec.V = p.V;
      spec.x.assign(p.x.begin(), p.x.end());
      if (p.target) spec.y = p.y;
      spec.temperature = p.T;
      spec.softcap = p.cap;
      const xent_ref::TokOut want = xent_ref::TokenStats(spec);
      for (size_t i = 0; i < p.B; ++i) {
        const double rt = RowTol(spec.x, i, p.V, p.T, p.cap);
        auto tol = [&](double w) { return rt + 2e-6 * std::fabs(w); };
        EXPECT_TRUE(Close(s.lse[i], want.lse[i], tol(want.lse[i])))
            << what << ": lse[" << i << "] " << s.lse[i] << " want " << want.lse[i];
        EXPECT_TRUE(Close(s.ent[i], want.entropy[i], tol(want.entropy[i])))
            << what << ": entropy[" << i << "] " << s.ent[i] << " want " << want.entropy[i];
        if (p.target) {
          EXPECT_TRUE(Close(s.lp[i], want.logprob[i], tol(want.logprob[i])))
              << what << ": logprob[" << i << "] " << s.lp[i] << " want " << want.logprob[i];
        }
      }
      ExpectShardGradients(p, c.bounds, s, what);
    }
  }
}

// A row of only -inf (no mass) and a NaN row: NaN statistics, as the whole
// call's; the other rows unaffected.
TEST_P(VocabParallelTokenTest, MaskedAndNaNRows) {
  TokProblem p;
  p.B = 3;
  p.V = 8192 + 50;
  p.Fill();
  for (size_t j = 0; j < p.V; ++j) p.x[j] = kNegInf;
  p.x[2 * p.V + 8200] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<size_t> bounds = {0, 8192, p.V};
  const Stats whole = WholeForward(p), s = ShardForward(p, bounds);
  for (size_t i = 0; i < p.B; ++i) {
    EXPECT_TRUE(SameBits(s.lse[i], whole.lse[i]) || (std::isnan(s.lse[i]) && std::isnan(whole.lse[i]))) << i;
    EXPECT_TRUE(SameBits(s.ent[i], whole.ent[i]) || (std::isnan(s.ent[i]) && std::isnan(whole.ent[i]))) << i;
    EXPECT_TRUE(SameBits(s.lp[i], whole.lp[i]) || (std::isnan(s.lp[i]) && std::isnan(whole.lp[i]))) << i;
  }
  EXPECT_EQ(s.lse[0], kNegInf);
  EXPECT_TRUE(std::isnan(s.lse[2]));
  EXPECT_TRUE(std::isfinite(s.lse[1]) && std::isfinite(s.ent[1]) && std::isfinite(s.lp[1]));
}

TEST_P(VocabParallelTokenTest, EmptyBatch) {
  TokProblem p;
  p.B = 0;
  p.Fill();
  float dummy[4] = {};
  int64_t y = 0;
  std::vector<double> stats(2 * xent_token_logprobs_shard_stats_doubles(0, 1), 5.0);
  for (size_t r = 0; r < 2; ++r) {
    auto a = StatsArgs(p, reinterpret_cast<const unsigned char*>(dummy), r * 40, r ? 60 : 40, true,
                       stats.data() + r * xent_token_logprobs_shard_stats_doubles(0, 1));
    a.target = &y;
    EXPECT_EQ(xent_token_logprobs_shard_stats(&a), XENT_OK) << xent_last_error();
  }
  Stats s;
  auto a = FinishArgs(p, stats, 2, true, &s);
  float out[1] = {7.0f};
  a.target = &y;
  a.logprob = a.entropy = a.lse = out;
  EXPECT_EQ(xent_token_logprobs_shard_finish(&a), XENT_OK) << xent_last_error();
  EXPECT_EQ(out[0], 7.0f);
}

TEST(VocabParallelTokenStats, Size) {
  EXPECT_EQ(xent_token_logprobs_shard_stats_doubles(0, 0), 4u);
  EXPECT_EQ(xent_token_logprobs_shard_stats_doubles(1000, 0), 4u + 2000u);
  EXPECT_EQ(xent_token_logprobs_shard_stats_doubles(1000, 1), 4u + 3000u);
  EXPECT_EQ(xent_token_logprobs_shard_stats_doubles(SIZE_MAX / 4, 1), 0u);
}

// ---------------------------------------------------------------------------
// Bad input: a status, a message naming the argument and its value, outputs
// untouched.
struct BadTok : ::testing::Test {
  TokProblem p;
  std::vector<size_t> bounds{0, 100, 300};
  std::vector<double> stats;
  Stats s;
  void SetUp() override {
    p.V = 300;
    p.Fill();
    stats = Gather(p, bounds, true);
  }
  void ExpectFinishFails(const xent_token_logprobs_shard_finish_args& a, xent_status want, const char* text) {
    EXPECT_EQ(xent_token_logprobs_shard_finish(&a), want) << xent_last_error();
    EXPECT_NE(std::string(xent_last_error()).find(text), std::string::npos) << xent_last_error();
    for (size_t i = 0; i < p.B; ++i)
      EXPECT_TRUE(s.lp[i] == 7.0f && s.ent[i] == 7.0f && s.lse[i] == 7.0f) << "outputs untouched";
  }
};

TEST_F(BadTok, StatsArguments) {
  std::vector<unsigned char> logits = Columns(p, 100, 200);
  std::vector<double> out(xent_token_logprobs_shard_stats_doubles(p.B, 1), 5.0);
  const auto base = StatsArgs(p, logits.data(), 100, 200, true, out.data());
  auto expect = [&](const xent_token_logprobs_shard_stats_args& a, xent_status want, const char* text) {
    EXPECT_EQ(xent_token_logprobs_shard_stats(&a), want) << xent_last_error();
    EXPECT_NE(std::string(xent_last_error()).find(text), std::string::npos) << xent_last_error();
    for (double v : out) EXPECT_EQ(v, 5.0) << "stats untouched";
  };
  auto a = base;
  a.class_offset = 101;
  expect(a, XENT_ERROR_INVALID_SHAPE, "class_offset (101) + shard_classes (200) exceeds num_classes (300)");
  a = base;
  a.shard_classes = 0;
  expect(a, XENT_ERROR_INVALID_SHAPE, "shard_classes = 0");
  a = base;
  a.temperature = 0;
  expect(a, XENT_ERROR_INVALID_VALUE, "temperature");
  a = base;
  a.with_entropy = 2;
  expect(a, XENT_ERROR_INVALID_VALUE, "with_entropy = 2 is not 0 or 1");
  a = base;
  a.stats = nullptr;
  expect(a, XENT_ERROR_NULL_POINTER, "stats is NULL");
  a = base;
  a.reserved0 = 1;
  expect(a, XENT_ERROR_INVALID_VALUE, "reserved0");
  const int64_t y1 = p.y[1];
  p.y[1] = 300;
  expect(base, XENT_ERROR_TARGET_OUT_OF_RANGE, "target[1] = 300 is outside [0, 300)");
  p.y[1] = y1;
  a = base;
  a.stats = reinterpret_cast<double*>(logits.data());  // overlaps the logits
  EXPECT_EQ(xent_token_logprobs_shard_stats(&a), XENT_ERROR_ALIASING) << xent_last_error();
  EXPECT_EQ(xent_token_logprobs_shard_stats(nullptr), XENT_ERROR_NULL_POINTER);
}

TEST_F(BadTok, FinishArguments) {
  auto a = FinishArgs(p, stats, 2, true, &s);
  a.num_shards = 0;
  ExpectFinishFails(a, XENT_ERROR_INVALID_SHAPE, "num_shards = 0");
  a = FinishArgs(p, stats, 2, true, &s);
  a.num_shards = 1;
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE, "cover classes [0, 100), not num_classes = 300");
  a = FinishArgs(p, stats, 2, true, &s);
  a.logprob = a.entropy = a.lse = nullptr;
  ExpectFinishFails(a, XENT_ERROR_NULL_POINTER, "no output requested");
  a = FinishArgs(p, stats, 2, true, &s);
  a.target = nullptr;
  ExpectFinishFails(a, XENT_ERROR_NULL_POINTER, "target is NULL (needed by logprob)");
  // Entropy from stats without the entropy sums.
  a = FinishArgs(p, stats, 2, false, &s);
  a.entropy = s.ent.data();
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE, "entropy is requested but with_entropy = 0");
  // The two calls' with_entropy differ.
  a = FinishArgs(p, stats, 2, false, &s);
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE,
                    "with_entropy = 0, but the stats of rank 0 were computed with with_entropy = 1");
  // Cross-entropy's stats are not token log-probs'.
  std::vector<double> ce(stats.size(), 0.0);
  {
    std::vector<unsigned char> l0 = Columns(p, 0, 100);
    xent_cross_entropy_shard_stats_args c;
    XENT_ARGS_INIT(xent_cross_entropy_shard_stats_args, &c);
    c.batch = p.B;
    c.num_classes = p.V;
    c.shard_classes = 100;
    c.logits = l0.data();
    c.target = p.y.data();
    c.stats = ce.data();
    ASSERT_EQ(xent_cross_entropy_shard_stats(&c), XENT_OK) << xent_last_error();
  }
  a = FinishArgs(p, ce, 2, true, &s);
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE, "stats of rank 0 are not xent_token_logprobs_shard_stats'");
  // Ranks swapped.
  const size_t per = xent_token_logprobs_shard_stats_doubles(p.B, 1);
  std::vector<double> swapped(stats.size());
  std::memcpy(swapped.data(), stats.data() + per, per * sizeof(double));
  std::memcpy(swapped.data() + per, stats.data(), per * sizeof(double));
  a = FinishArgs(p, swapped, 2, true, &s);
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE, "stats of rank 0 cover classes [100, 100 + 200)");
  // Different targets in the two phases.
  std::vector<int64_t> other = p.y;
  other[2] = p.y[2] < 100 ? 200 : 50;
  a = FinishArgs(p, stats, 2, true, &s);
  a.target = other.data();
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE, "(different targets in xent_token_logprobs_shard_stats, or none?)");
  // Stats computed without targets cannot give log-probs ...
  p.target = false;
  const std::vector<double> untargeted = Gather(p, bounds, true);
  p.target = true;
  a = FinishArgs(p, untargeted, 2, true, &s);
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE, "hold no target logit");
  // ... but entropy and lse.
  a = FinishArgs(p, untargeted, 2, true, &s);
  a.logprob = nullptr;
  EXPECT_EQ(xent_token_logprobs_shard_finish(&a), XENT_OK) << xent_last_error();
  EXPECT_EQ(xent_token_logprobs_shard_finish(nullptr), XENT_ERROR_NULL_POINTER);
}

TEST_F(BadTok, BackwardArguments) {
  std::vector<unsigned char> logits = Columns(p, 100, 200);
  std::vector<float> g(p.B * 200, 5.0f);
  Stats st;
  st.lse.assign(p.B, 1.0f);
  st.ent.assign(p.B, 1.0f);
  const auto base = BackwardArgs(p, logits.data(), 100, 200, st, g.data());
  auto expect = [&](const xent_token_logprobs_shard_backward_args& a, xent_status want, const char* text) {
    EXPECT_EQ(xent_token_logprobs_shard_backward(&a), want) << xent_last_error();
    EXPECT_NE(std::string(xent_last_error()).find(text), std::string::npos) << xent_last_error();
    for (float v : g) EXPECT_EQ(v, 5.0f) << "grad untouched";
  };
  auto a = base;
  a.class_offset = 101;
  expect(a, XENT_ERROR_INVALID_SHAPE, "class_offset (101) + shard_classes (200) exceeds num_classes (300)");
  a = base;
  a.lse = nullptr;
  expect(a, XENT_ERROR_NULL_POINTER, "lse is NULL");
  a = base;
  a.entropy = nullptr;
  expect(a, XENT_ERROR_NULL_POINTER, "entropy is NULL, but grad_entropy needs it");
  a = base;
  a.target = nullptr;
  expect(a, XENT_ERROR_NULL_POINTER, "target is NULL (needed by grad_logprob)");
  a = base;
  a.grad_stride = 199;
  expect(a, XENT_ERROR_INVALID_SHAPE, "grad_stride (199) < shard_classes (200)");
  p.y[0] = 300;
  expect(base, XENT_ERROR_TARGET_OUT_OF_RANGE, "target[0] = 300 is outside [0, 300)");
  EXPECT_EQ(xent_token_logprobs_shard_backward(nullptr), XENT_ERROR_NULL_POINTER);
}

XENT_INSTANTIATE_ALL_TARGETS(VocabParallelTokenTest);

}  // namespace
}  // namespace xent_test
