// Vocab-parallel distillation KL (xent_kl_div_logits_shard_stats / _finish):
// P column shards of the student's and the teacher's logits simulated in one
// process, against the float64 reference and xent_divergence (any split:
// the shards' KL terms are taken against their own lse, so the result is
// within the accuracy contract, not bit for bit), on every SIMD target, 1
// and 2 threads.
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
#include "tests/reference.h"

namespace xent_test {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
using xent::DType;

struct KlProblem {
  size_t B = 4, V = 100;
  DType dt = DType::kF32;
  float T = 1;
  bool t2 = false;
  int reduction = XENT_REDUCTION_BATCHMEAN;
  float grad_scale = 1;
  size_t ignore_every = 0;  // labels: rows i % ignore_every == 1 ignored
  bool close = false;       // teacher = student + small noise (a small KL)
  int32_t threads = 1;
  uint32_t seed = 1;
  std::vector<float> x, t;  // student, teacher: B x V, representable in dt
  std::vector<int64_t> labels;

  void Fill() {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n(0.0f, 2.0f), small(0.0f, 0.05f);
    x.resize(B * V);
    t.resize(B * V);
    for (size_t k = 0; k < B * V; ++k) {
      x[k] = static_cast<float>(RoundTo(n(rng), dt));
      t[k] = static_cast<float>(RoundTo(close ? x[k] + small(rng) : n(rng), dt));
    }
    labels.assign(B, 0);
    for (size_t i = 0; i < B; ++i)
      if (ignore_every && i % ignore_every == 1) labels[i] = -100;
  }
};

std::vector<unsigned char> Columns(const KlProblem& p, const std::vector<float>& m, size_t c0, size_t w) {
  const size_t es = xent::DTypeSize(p.dt);
  std::vector<unsigned char> out(p.B * w * es + 1);
  for (size_t i = 0; i < p.B; ++i)
    for (size_t j = 0; j < w; ++j) xent::StoreScalarF32(out.data(), i * w + j, p.dt, m[i * p.V + c0 + j]);
  return out;
}

struct Out {
  float loss = 7.0f;
  std::vector<float> row, grad;  // grad: f32, B x the call's columns
};

Out Whole(const KlProblem& p) {
  std::vector<unsigned char> x = Columns(p, p.x, 0, p.V), t = Columns(p, p.t, 0, p.V);
  Out o;
  o.row.assign(p.B, 7.0f);
  o.grad.assign(p.B * p.V, 7.0f);
  xent_divergence_args a;
  XENT_ARGS_INIT(xent_divergence_args, &a);
  a.batch = p.B;
  a.num_classes = p.V;
  a.input = x.data();
  a.input_dtype = static_cast<int32_t>(p.dt);
  a.input_kind = XENT_DIST_LOGITS;
  a.target = t.data();
  a.target_dtype = static_cast<int32_t>(p.dt);
  a.target_kind = XENT_DIST_LOGITS;
  a.temperature = p.T;
  a.t2_scaling = p.t2;
  a.reduction = p.reduction;
  a.grad_scale = p.grad_scale;
  a.labels = p.ignore_every ? p.labels.data() : nullptr;
  a.loss = &o.loss;
  a.row_loss = o.row.data();
  a.grad_input = o.grad.data();
  a.grad_input_dtype = XENT_F32;
  a.num_threads = p.threads;
  EXPECT_EQ(xent_divergence(&a), XENT_OK) << xent_last_error();
  return o;
}

xent_kl_div_logits_shard_stats_args StatsArgs(const KlProblem& p, const unsigned char* x, const unsigned char* t,
                                              size_t c0, size_t w, double* out) {
  xent_kl_div_logits_shard_stats_args a;
  XENT_ARGS_INIT(xent_kl_div_logits_shard_stats_args, &a);
  a.batch = p.B;
  a.num_classes = p.V;
  a.shard_classes = w;
  a.class_offset = c0;
  a.input = x;
  a.input_dtype = static_cast<int32_t>(p.dt);
  a.target = t;
  a.target_dtype = static_cast<int32_t>(p.dt);
  a.temperature = p.T;
  a.stats = out;
  a.num_threads = p.threads;
  return a;
}

std::vector<double> Gather(const KlProblem& p, const std::vector<size_t>& bounds) {
  const size_t per = xent_kl_div_logits_shard_stats_doubles(p.B);
  std::vector<double> all;
  for (size_t r = 0; r + 1 < bounds.size(); ++r) {
    const size_t c0 = bounds[r], w = bounds[r + 1] - c0;
    std::vector<unsigned char> x = Columns(p, p.x, c0, w), t = Columns(p, p.t, c0, w);
    std::vector<double> mine(per, 5.0);
    auto a = StatsArgs(p, x.data(), t.data(), c0, w, mine.data());
    EXPECT_EQ(xent_kl_div_logits_shard_stats(&a), XENT_OK) << xent_last_error();
    all.insert(all.end(), mine.begin(), mine.end());
  }
  return all;
}

xent_kl_div_logits_shard_finish_args FinishArgs(const KlProblem& p, const unsigned char* x, const unsigned char* t,
                                                size_t c0, size_t w, const std::vector<double>& stats, size_t P,
                                                Out* o) {
  o->row.assign(p.B, 7.0f);
  o->grad.assign(p.B * w, 7.0f);
  o->loss = 7.0f;
  xent_kl_div_logits_shard_finish_args a;
  XENT_ARGS_INIT(xent_kl_div_logits_shard_finish_args, &a);
  a.batch = p.B;
  a.num_classes = p.V;
  a.shard_classes = w;
  a.class_offset = c0;
  a.input = x;
  a.input_dtype = static_cast<int32_t>(p.dt);
  a.target = t;
  a.target_dtype = static_cast<int32_t>(p.dt);
  a.temperature = p.T;
  a.t2_scaling = p.t2;
  a.reduction = p.reduction;
  a.grad_scale = p.grad_scale;
  a.labels = p.ignore_every ? p.labels.data() : nullptr;
  a.stats = stats.data();
  a.num_shards = P;
  a.loss = &o->loss;
  a.row_loss = o->row.data();
  a.grad_input = o->grad.data();
  a.grad_input_dtype = XENT_F32;
  a.num_threads = p.threads;
  return a;
}

// Every rank's finish: its Out (grad: its columns), and the gradients side
// by side (B x V).
struct ShardRun {
  std::vector<Out> ranks;
  std::vector<float> cat;
};

ShardRun Sharded(const KlProblem& p, const std::vector<size_t>& bounds) {
  const std::vector<double> stats = Gather(p, bounds);
  ShardRun run;
  run.cat.assign(p.B * p.V, 7.0f);
  const size_t P = bounds.size() - 1;
  for (size_t r = 0; r < P; ++r) {
    const size_t c0 = bounds[r], w = bounds[r + 1] - c0;
    std::vector<unsigned char> x = Columns(p, p.x, c0, w), t = Columns(p, p.t, c0, w);
    Out o;
    auto a = FinishArgs(p, x.data(), t.data(), c0, w, stats, P, &o);
    EXPECT_EQ(xent_kl_div_logits_shard_finish(&a), XENT_OK) << xent_last_error();
    for (size_t i = 0; i < p.B; ++i)
      for (size_t j = 0; j < w; ++j) run.cat[i * p.V + c0 + j] = o.grad[i * w + j];
    run.ranks.push_back(o);
  }
  return run;
}

bool SameBits(float a, float b) { return std::memcmp(&a, &b, sizeof(a)) == 0; }

std::string Name(const KlProblem& p, const std::vector<size_t>& bounds) {
  std::string s = "B=" + std::to_string(p.B) + " V=" + std::to_string(p.V) +
                  " dt=" + std::to_string(static_cast<int>(p.dt)) + " T=" + std::to_string(p.T) +
                  " red=" + std::to_string(p.reduction) + " close=" + std::to_string(p.close) + " shards";
  for (size_t b : bounds) s += " " + std::to_string(b);
  return s;
}

// The ranks agree (bits), and the float64 reference holds within the
// divergence's contract (tests/common/op_divergence.cc's bounds); the
// gradient also agrees with xent_divergence's.
void ExpectReference(const KlProblem& p, const std::vector<size_t>& bounds) {
  const std::string what = Name(p, bounds);
  const ShardRun run = Sharded(p, bounds);
  const Out& o = run.ranks[0];
  for (const Out& r : run.ranks) {
    EXPECT_TRUE(SameBits(r.loss, o.loss)) << what << ": ranks' losses differ";
    for (size_t i = 0; i < p.B; ++i) EXPECT_TRUE(SameBits(r.row[i], o.row[i])) << what << ": row " << i;
  }
  xent_ref::KlSpec s;
  s.B = p.B;
  s.V = p.V;
  s.x.assign(p.x.begin(), p.x.end());
  s.t.assign(p.t.begin(), p.t.end());
  s.qk = 0;
  s.pk = 0;
  s.temperature = p.T;
  s.t2 = p.t2;
  s.reduction = p.reduction;
  s.grad_scale = p.grad_scale;
  if (p.ignore_every) s.labels = p.labels;
  const xent_ref::KlOut r = xent_ref::Divergence(s);
  double lmax = 1.0;
  for (size_t k = 0; k < p.B * p.V; ++k)
    for (double v : {p.x[k] / double(p.T), p.t[k] / double(p.T)})
      if (std::isfinite(v)) lmax = std::max(lmax, std::fabs(v));
  const double t2 = p.t2 ? double(p.T) * p.T : 1.0;
  size_t rows = 0;
  for (size_t i = 0; i < p.B; ++i) rows += (p.ignore_every && p.labels[i] == -100) ? 0 : 1;
  double div = 1;
  if (p.reduction == XENT_REDUCTION_MEAN) div = double(rows) * p.V;
  if (p.reduction == XENT_REDUCTION_BATCHMEAN) div = double(rows);
  const double row_abs = 2e-6 * lmax * t2;
  const Tol row{kRowRel, row_abs}, loss{kLossRel, row_abs * p.B / div};
  const double gabs = std::fabs(p.grad_scale) * t2 / div / p.T;
  const Tol grad{4e-6, 2e-6 * gabs};
  if (p.reduction != XENT_REDUCTION_NONE) {
    EXPECT_TRUE(Agree(o.loss, r.loss, loss, DType::kF32, Profile::kContract))
        << what << ": loss " << o.loss << " want " << r.loss;
  }
  for (size_t i = 0; i < p.B; ++i)
    EXPECT_TRUE(Agree(o.row[i], r.row_loss[i], row, DType::kF32, Profile::kContract))
        << what << ": row_loss[" << i << "] " << o.row[i] << " want " << r.row_loss[i];
  const Out whole = Whole(p);
  size_t bad = 0;
  for (size_t k = 0; k < p.B * p.V; ++k) {
    const bool ok = Agree(run.cat[k], r.gx[k], grad, DType::kF32, Profile::kContract) &&
                    Agree(run.cat[k], whole.grad[k], Tol{8e-6, 4e-6 * gabs}, DType::kF32, Profile::kContract);
    if (!ok && bad++ < 5)
      ADD_FAILURE() << what << ": grad[" << k / p.V << ", " << k % p.V << "] " << run.cat[k] << " want " << r.gx[k]
                    << " xent_divergence " << whole.grad[k];
  }
}

std::vector<size_t> Even(size_t V, size_t w) {
  std::vector<size_t> b;
  for (size_t c = 0; c < V; c += w) b.push_back(c);
  b.push_back(V);
  return b;
}

class VocabParallelKlTest : public AllTargets {};

// Aligned and uneven splits (one column, a rank of many segments), every
// dtype, temperature with and without T^2 scaling, every reduction, ignored
// rows, grad_scale, a teacher close to the student (a small KL), 1 and 2
// threads.
TEST_P(VocabParallelKlTest, AnySplitMatchesTheReference) {
  struct Split {
    size_t V;
    std::vector<size_t> bounds;
  };
  const Split splits[] = {{100, {0, 1, 37, 100}},
                          {300, {0, 300}},
                          {9000, {0, 4096, 8192, 9000}},
                          {9000, {0, 3000, 4100, 8999, 9000}},
                          {16384, Even(16384, 8192)}};
  int k = 0;
  for (const Split& sp : splits) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      ++k;
      KlProblem p;
      p.V = sp.V;
      p.dt = dt;
      p.T = k % 3 == 0 ? 2.0f : (k % 3 == 1 ? 1.0f : 0.5f);
      p.t2 = k % 2 == 0;
      const int reds[] = {XENT_REDUCTION_BATCHMEAN, XENT_REDUCTION_SUM, XENT_REDUCTION_MEAN, XENT_REDUCTION_NONE};
      p.reduction = reds[k % 4];
      p.grad_scale = k % 5 == 0 ? 0.25f : 1.0f;
      p.ignore_every = k % 3 == 1 ? 3 : 0;
      p.close = k % 4 == 2;
      p.threads = k % 2 ? 1 : 2;
      p.B = p.threads == 2 ? 9 : 4;
      p.seed = static_cast<uint32_t>(k);
      p.Fill();
      ExpectReference(p, sp.bounds);
    }
  }
}

// -inf columns: masked in both (no effect), a shard where the student has
// no mass but the teacher has (KL = +inf, as the whole call), a row where
// the teacher has no mass at all and a NaN row (NaN, as the whole call).
TEST_P(VocabParallelKlTest, MaskedAndNaNRows) {
  KlProblem p;
  p.B = 4;
  p.V = 300;
  p.reduction = XENT_REDUCTION_NONE;
  p.Fill();
  for (size_t i = 0; i < p.B; ++i)
    for (size_t j = 5; j < p.V; j += 7) p.x[i * p.V + j] = p.t[i * p.V + j] = kNegInf;
  for (size_t j = 100; j < 300; ++j) p.x[1 * p.V + j] = kNegInf;  // row 1: student has nothing on rank 1
  for (size_t j = 0; j < 300; ++j) p.t[2 * p.V + j] = kNegInf;    // row 2: no teacher distribution
  p.x[3 * p.V + 150] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<size_t> bounds = {0, 100, 300};
  const ShardRun run = Sharded(p, bounds);
  const Out whole = Whole(p);
  const Out& o = run.ranks[0];
  EXPECT_TRUE(std::isfinite(o.row[0]));
  EXPECT_NEAR(o.row[0], whole.row[0], 1e-5 * std::max(1.0f, std::fabs(whole.row[0])));
  EXPECT_EQ(o.row[1], std::numeric_limits<float>::infinity());
  EXPECT_EQ(whole.row[1], std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(o.row[2]) && std::isnan(whole.row[2]));
  EXPECT_TRUE(std::isnan(o.row[3]) && std::isnan(whole.row[3]));
}

TEST_P(VocabParallelKlTest, InPlaceGradientAndNoGradient) {
  KlProblem p;
  p.V = 5000;
  p.Fill();
  const std::vector<size_t> bounds = {0, 4096, 5000};
  const ShardRun run = Sharded(p, bounds);
  const std::vector<double> stats = Gather(p, bounds);
  for (size_t r = 0; r < 2; ++r) {
    const size_t c0 = bounds[r], w = bounds[r + 1] - c0;
    std::vector<unsigned char> x = Columns(p, p.x, c0, w), t = Columns(p, p.t, c0, w);
    Out o;
    auto a = FinishArgs(p, x.data(), t.data(), c0, w, stats, 2, &o);
    a.grad_input = x.data();  // in place
    a.grad_input_dtype = XENT_DTYPE_AUTO;
    ASSERT_EQ(xent_kl_div_logits_shard_finish(&a), XENT_OK) << xent_last_error();
    for (size_t k = 0; k < p.B * w; ++k) {
      float g;
      std::memcpy(&g, x.data() + k * 4, 4);
      ASSERT_TRUE(SameBits(g, run.ranks[r].grad[k])) << "in place, rank " << r << " element " << k;
    }
    a = FinishArgs(p, x.data(), t.data(), c0, w, stats, 2, &o);
    a.grad_input = nullptr;
    ASSERT_EQ(xent_kl_div_logits_shard_finish(&a), XENT_OK) << xent_last_error();
    EXPECT_TRUE(SameBits(o.loss, run.ranks[r].loss));
  }
}

TEST(VocabParallelKlStats, Size) {
  EXPECT_EQ(xent_kl_div_logits_shard_stats_doubles(0), 4u);
  EXPECT_EQ(xent_kl_div_logits_shard_stats_doubles(1000), 4u + 4000u);
  EXPECT_EQ(xent_kl_div_logits_shard_stats_doubles(SIZE_MAX / 4), 0u);
}

TEST(VocabParallelKlBad, Arguments) {
  KlProblem p;
  p.V = 300;
  p.Fill();
  const std::vector<size_t> bounds = {0, 100, 300};
  const std::vector<double> stats = Gather(p, bounds);
  std::vector<unsigned char> x = Columns(p, p.x, 100, 200), t = Columns(p, p.t, 100, 200);
  std::vector<double> out(xent_kl_div_logits_shard_stats_doubles(p.B), 5.0);
  auto sa = StatsArgs(p, x.data(), t.data(), 100, 200, out.data());
  sa.class_offset = 101;
  EXPECT_EQ(xent_kl_div_logits_shard_stats(&sa), XENT_ERROR_INVALID_SHAPE);
  EXPECT_NE(std::string(xent_last_error()).find("class_offset (101) + shard_classes (200) exceeds num_classes (300)"),
            std::string::npos)
      << xent_last_error();
  sa = StatsArgs(p, x.data(), t.data(), 100, 200, out.data());
  sa.target_dtype = XENT_BF16;
  EXPECT_EQ(xent_kl_div_logits_shard_stats(&sa), XENT_ERROR_INVALID_DTYPE) << xent_last_error();
  sa = StatsArgs(p, x.data(), t.data(), 100, 200, out.data());
  sa.target = nullptr;
  EXPECT_EQ(xent_kl_div_logits_shard_stats(&sa), XENT_ERROR_NULL_POINTER) << xent_last_error();
  for (double v : out) EXPECT_EQ(v, 5.0) << "stats untouched";

  Out o;
  auto expect = [&](const xent_kl_div_logits_shard_finish_args& a, xent_status want, const char* text) {
    EXPECT_EQ(xent_kl_div_logits_shard_finish(&a), want) << xent_last_error();
    EXPECT_NE(std::string(xent_last_error()).find(text), std::string::npos) << xent_last_error();
    EXPECT_EQ(o.loss, 7.0f);
    for (float v : o.row) EXPECT_EQ(v, 7.0f) << "row_loss untouched";
    for (float v : o.grad) EXPECT_EQ(v, 7.0f) << "grad untouched";
  };
  auto a = FinishArgs(p, x.data(), t.data(), 100, 200, stats, 2, &o);
  a.num_shards = 1;
  expect(a, XENT_ERROR_INVALID_VALUE, "cover classes [0, 100), not num_classes = 300");
  // Cross-entropy's statistics are not these.
  std::vector<double> ce(stats.size(), 0.0);
  {
    std::vector<unsigned char> l0 = Columns(p, p.x, 0, 100);
    xent_cross_entropy_shard_stats_args c;
    XENT_ARGS_INIT(xent_cross_entropy_shard_stats_args, &c);
    c.batch = p.B;
    c.num_classes = p.V;
    c.shard_classes = 100;
    c.logits = l0.data();
    c.target = p.labels.data();
    c.stats = ce.data();
    ASSERT_EQ(xent_cross_entropy_shard_stats(&c), XENT_OK) << xent_last_error();
  }
  a = FinishArgs(p, x.data(), t.data(), 100, 200, ce, 2, &o);
  expect(a, XENT_ERROR_INVALID_VALUE, "stats of rank 0 are not xent_kl_div_logits_shard_stats'");
  a = FinishArgs(p, x.data(), t.data(), 100, 200, stats, 2, &o);
  a.reduction = 7;
  expect(a, XENT_ERROR_INVALID_ENUM, "reduction = 7 is not one of");
  std::vector<double> both(p.B * 200);  // the gradient over the stats
  std::copy(stats.begin(), stats.end(), both.begin());
  a = FinishArgs(p, x.data(), t.data(), 100, 200, both, 2, &o);
  a.grad_input = both.data();
  expect(a, XENT_ERROR_ALIASING, "grad_input overlaps stats");
  a = FinishArgs(p, x.data(), t.data(), 0, 200, stats, 2, &o);
  expect(a, XENT_ERROR_INVALID_VALUE, "no rank's stats cover this shard's classes");
  EXPECT_EQ(xent_kl_div_logits_shard_finish(nullptr), XENT_ERROR_NULL_POINTER);
}

XENT_INSTANTIATE_ALL_TARGETS(VocabParallelKlTest);

}  // namespace
}  // namespace xent_test
