// Per-token statistics (xent_token_logprobs: argmax, top-k, reference KL) and
// their arguments, on every SIMD target. The backward and the KL penalty:
// tests/token_stats_backward_test.cc.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "tests/common/mat.h"
#include "tests/token_stats_reference.h"
#include "tests/token_stats_util.h"

namespace xent_test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
bool SameBits(float a, float b) { return std::memcmp(&a, &b, sizeof(a)) == 0; }

// ---------------------------------------------------------------------------
// Forward.
struct StatCase {
  size_t B = 5, V = 17;
  DType dt = DType::kF32;
  float T = 1.0f, cap = 0.0f;
  size_t k = 5;  // 0: no top-k outputs
  bool argmax = true, ref = false, target = true, i32 = false;
  int ignore_every = 0;
  size_t pad = 0, offset = 0;
  double sigma = 3;
  uint32_t seed = 1;
  double (*hook)(size_t, size_t) = nullptr;
};

struct StatResult {
  Vec lp, ent, lse, am_lp, mass, rlp, rlse, kl, topk_lp;
  std::vector<int64_t> am, topk_i;
  explicit StatResult(size_t B, size_t k)
      : lp(B),
        ent(B),
        lse(B),
        am_lp(B),
        mass(B),
        rlp(B),
        rlse(B),
        kl(B),
        topk_lp(B * k),
        am(B, -7),
        topk_i(B * k, -7) {}
};

void CallStats(const StatCase& c, const Mat& x, const Mat* ref, const std::vector<int64_t>& y,
               const std::vector<int32_t>& y32, int32_t threads, StatResult* r) {
  xent_token_logprobs_args a;
  ASSERT_EQ(XENT_ARGS_INIT(xent_token_logprobs_args, &a), XENT_OK);
  a.batch = c.B;
  a.num_classes = c.V;
  a.logits = x.data();
  a.logits_stride = x.stride();
  a.logits_dtype = x.dt();
  if (c.target) {
    a.target = c.i32 ? static_cast<const void*>(y32.data()) : static_cast<const void*>(y.data());
    a.target_dtype = c.i32 ? XENT_I32 : XENT_I64;
    a.logprob = r->lp.data();
  }
  a.temperature = c.T;
  a.softcap = c.cap;
  a.entropy = r->ent.data();
  a.lse = r->lse.data();
  if (c.argmax) {
    a.argmax = r->am.data();
    a.argmax_logprob = r->am_lp.data();
  }
  if (c.k) {
    a.topk = static_cast<int32_t>(c.k);
    a.topk_logprobs = r->topk_lp.data();
    a.topk_indices = r->topk_i.data();
    a.topk_mass = r->mass.data();
  }
  if (ref) {
    a.ref_logits = ref->data();
    a.ref_logits_stride = ref->stride();
    a.ref_logits_dtype = ref->dt();
    a.ref_lse = r->rlse.data();
    a.kl = r->kl.data();
    if (c.target) a.ref_logprob = r->rlp.data();
  }
  a.num_threads = threads;
  ASSERT_EQ(xent_token_logprobs(&a), XENT_OK) << xent_last_error();
}

void RunStats(const StatCase& c) {
  if (SkipLarge(c.B * c.V)) return;  // XENT_TEST_MAX_ELEMENTS (emulated and sanitizer runs)
  SCOPED_TRACE("B=" + std::to_string(c.B) + " V=" + std::to_string(c.V) + " dt=" + std::to_string(int(c.dt)) +
               " T=" + std::to_string(c.T) + " cap=" + std::to_string(c.cap) + " k=" + std::to_string(c.k) +
               " ref=" + std::to_string(c.ref));
  const size_t B = c.B, V = c.V, K = c.k;
  Mat x(B, V, c.dt, V + c.pad, c.offset);
  const auto xv = Fill(x, c.sigma, c.seed, c.hook);
  Mat ref(B, V, c.dt, V + c.pad + 3, c.offset + 2);
  std::vector<double> rv;
  if (c.ref) rv = Fill(ref, 0.5, c.seed + 99, c.hook, &xv);  // the policy, perturbed
  std::mt19937 rng(c.seed);
  std::vector<int64_t> y(B);
  std::vector<int32_t> y32(B);
  for (size_t i = 0; i < B; ++i) {
    y[i] = (c.ignore_every && i % c.ignore_every == 1) ? -100 : static_cast<int64_t>(rng() % V);
    y32[i] = static_cast<int32_t>(y[i]);
  }
  xent_ref::TokSpec s;
  s.B = B;
  s.V = V;
  s.x = xv;
  if (c.ref) s.ref = rv;
  if (c.target) s.y = y;
  s.temperature = c.T;
  s.softcap = c.cap;
  s.k = K;
  const auto want = xent_ref::TokenStats(s);

  StatResult r(B, K);
  CallStats(c, x, c.ref ? &ref : nullptr, y, y32, 0, &r);
  for (size_t i = 0; i < B; ++i) {
    const double rt = RowTol(xv, i, V, c.T, c.cap);
    auto tol = [&](double w) { return rt + 2e-6 * std::fabs(w); };
    EXPECT_TRUE(Close(r.lse[i], want.lse[i], tol(want.lse[i])))
        << "lse[" << i << "] " << r.lse[i] << " want " << want.lse[i];
    EXPECT_TRUE(Close(r.ent[i], want.entropy[i], tol(want.entropy[i])))
        << "entropy[" << i << "] " << r.ent[i] << " want " << want.entropy[i];
    if (c.target) {
      EXPECT_TRUE(Close(r.lp[i], want.logprob[i], tol(want.logprob[i])))
          << "logprob[" << i << "] " << r.lp[i] << " want " << want.logprob[i];
    }
    if (c.argmax) {
      EXPECT_EQ(r.am[i], want.argmax[i]) << "argmax[" << i << "]";
      EXPECT_TRUE(Close(r.am_lp[i], want.argmax_logprob[i], tol(want.argmax_logprob[i]))) << i;
    }
    for (size_t j = 0; j < K; ++j) {
      EXPECT_EQ(r.topk_i[i * K + j], want.topk_indices[i * K + j]) << "topk_indices[" << i << ", " << j << "]";
      const double w = want.topk_logprobs[i * K + j];
      EXPECT_TRUE(Close(r.topk_lp[i * K + j], w, tol(w)))
          << "topk_logprobs[" << i << ", " << j << "] " << r.topk_lp[i * K + j] << " want " << w;
    }
    if (K) {
      EXPECT_TRUE(Close(r.mass[i], want.topk_mass[i], want.topk_mass[i] * 2 * rt + 1e-7))
          << "topk_mass[" << i << "] " << r.mass[i] << " want " << want.topk_mass[i];
    }
    if (c.ref) {
      const double rtq = std::max(rt, RowTol(rv, i, V, c.T, c.cap));
      EXPECT_TRUE(Close(r.rlse[i], want.ref_lse[i], rtq + 2e-6 * std::fabs(want.ref_lse[i]))) << i;
      if (c.target) {
        EXPECT_TRUE(Close(r.rlp[i], want.ref_logprob[i], rtq + 2e-6 * std::fabs(want.ref_logprob[i])))
            << "ref_logprob[" << i << "] " << r.rlp[i] << " want " << want.ref_logprob[i];
      }
      // KL = sum p (log p - log q): both log-probabilities carry a row
      // rounding error, weighted by p (sums to 1).
      EXPECT_TRUE(Close(r.kl[i], want.kl[i], 2 * rtq + 2e-6 * std::fabs(want.kl[i])))
          << "kl[" << i << "] " << r.kl[i] << " want " << want.kl[i];
    }
  }
  // One thread: the same bits (the top-k merge is in segment order too).
  StatResult r1(B, K);
  CallStats(c, x, c.ref ? &ref : nullptr, y, y32, 1, &r1);
  for (size_t i = 0; i < B; ++i) {
    EXPECT_TRUE(SameBits(r.lse[i], r1.lse[i]) && SameBits(r.ent[i], r1.ent[i]) && SameBits(r.lp[i], r1.lp[i]) &&
                SameBits(r.kl[i], r1.kl[i]) && SameBits(r.mass[i], r1.mass[i]) && r.am[i] == r1.am[i])
        << "row " << i << " differs with one thread";
  }
  for (size_t j = 0; j < B * K; ++j) {
    EXPECT_TRUE(SameBits(r.topk_lp[j], r1.topk_lp[j]) && r.topk_i[j] == r1.topk_i[j]) << j;
  }
  EXPECT_TRUE(x.CanariesIntact() && ref.CanariesIntact() && r.lp.CanariesIntact() && r.topk_lp.CanariesIntact() &&
              r.mass.CanariesIntact() && r.kl.CanariesIntact() && r.rlp.CanariesIntact() && r.am_lp.CanariesIntact());
}

class TokenStatsTest : public AllTargets {};

TEST_P(TokenStatsTest, SweepShapesAndDtypes) {
  // V around vector widths, chunk (256) and segment (4096) boundaries.
  for (size_t V : {1, 3, 17, 64, 257, 4097, 33001}) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      StatCase c;
      c.V = V;
      c.B = V > 5000 ? 3 : 5;
      c.dt = dt;
      c.k = std::min<size_t>(V, V > 100 ? 64 : 5);
      c.i32 = V % 2;
      c.ignore_every = 3;
      c.pad = V % 3;
      c.offset = dt == DType::kF32 ? 4 : 2;
      c.seed = static_cast<uint32_t>(V * 5 + static_cast<int>(dt));
      c.ref = V % 2 == 1;
      RunStats(c);
    }
  }
}

TEST_P(TokenStatsTest, TemperatureAndSoftcap) {
  for (float T : {1.0f, 0.6f, 1.7f}) {
    for (float cap : {0.0f, 12.0f}) {
      for (DType dt : {DType::kF32, DType::kBF16}) {
        StatCase c;
        c.V = 5003;
        c.B = 3;
        c.dt = dt;
        c.T = T;
        c.cap = cap;
        c.sigma = 6;  // some logits beyond the cap
        c.ref = true;
        c.k = 7;
        RunStats(c);
      }
    }
  }
}

TEST_P(TokenStatsTest, OnlyArgmaxOrOnlyTopkOrOnlyKl) {
  StatCase c;
  c.V = 1000;
  c.k = 0;  // argmax alone (K = 1 internally)
  RunStats(c);
  c.argmax = false;
  c.k = 3;
  RunStats(c);
  c.k = 0;
  c.ref = true;
  c.target = false;
  RunStats(c);
}

// Ties: equal logits are ordered by index, within a vector, across chunks,
// segments and the threads' segment groups.
double TiesHook(size_t i, size_t j) {
  if (i == 0) return 1.0;                                                             // every logit equal
  if (i == 1) return (j % 7 == 3) ? 2.0 : kNaN;                                       // many equal maxima
  if (i == 2) return (j == 9000 || j == 17 || j == 4096 || j == 12000) ? 5.0 : kNaN;  // across segments
  if (i == 3) return static_cast<double>(j % 5);                                      // periodic ties
  return kNaN;
}

// k <= the vector's lanes also takes the floor from each segment's lane
// maxima (TopKRun::floor): a logit equal to it still enters.
TEST_P(TokenStatsTest, TiesByLowerIndex) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (size_t k : {64, 4, 1}) {
      StatCase c;
      c.B = 5;
      c.V = 16500;
      c.dt = dt;
      c.k = k;
      c.hook = TiesHook;
      RunStats(c);
      c.B = 4;  // fewer rows than 2 x threads: segments split across threads
      c.V = 40000;
      RunStats(c);
    }
  }
}

// Small k over several segments, where each segment's lane maxima give the
// run a floor before it is full; bf16 logits of a narrow spread repeat many
// values, so the floor often equals logits that must still enter.
TEST_P(TokenStatsTest, SmallKOverSegments) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (size_t k : {1, 4, 5, 16}) {
      StatCase c;
      c.B = 3;
      c.V = 33001;
      c.dt = dt;
      c.k = k;
      c.sigma = dt == DType::kBF16 ? 0.5 : 3;
      c.seed = static_cast<uint32_t>(k * 3 + static_cast<int>(dt));
      RunStats(c);
    }
  }
}

// Worst cases for the candidate list: increasing rows (every element
// enters), decreasing rows.
double MonotoneHook(size_t i, size_t j) {
  if (i == 0) return 1e-3 * static_cast<double>(j);
  if (i == 1) return -1e-3 * static_cast<double>(j);
  return kNaN;
}

TEST_P(TokenStatsTest, MonotoneRows) {
  StatCase c;
  c.B = 3;
  c.V = 9001;
  c.k = 64;
  c.hook = MonotoneHook;
  RunStats(c);
  c.k = 1;
  RunStats(c);
}

TEST_P(TokenStatsTest, MaskedClasses) {
  for (float cap : {0.0f, 20.0f}) {
    StatCase c;
    c.B = 4;
    c.V = 300;
    c.k = 10;
    c.cap = cap;
    c.hook = MaskHook;
    c.target = false;  // a target could be masked (logprob -inf): covered by the reference anyway
    c.ref = true;
    RunStats(c);
  }
}

// bf16 logits: the statistics reach f32 accuracy against the float64
// reference of the same bf16 values, at LLM vocabulary sizes.
TEST_P(TokenStatsTest, Bf16LogitsGiveF32Accuracy) {
  StatCase c;
  c.B = 4;
  c.V = 50257;
  c.dt = DType::kBF16;
  c.sigma = 4;
  c.k = 20;
  c.ref = true;
  RunStats(c);
}

TEST_P(TokenStatsTest, NanRowIsNanWithValidIndices) {
  const size_t B = 3, V = 200, K = 4;
  Mat x(B, V, DType::kF32);
  Fill(x, 2.0, 4);
  x.set(1, 77, kNaN);
  x.set(1, 1, kNaN);  // among the first k seen
  std::vector<int64_t> y = {1, 2, 3};
  Vec lp(B), ent(B), tlp(B * K), mass(B);
  std::vector<int64_t> ti(B * K, -7), am(B, -7);
  xent_token_logprobs_args a;
  XENT_ARGS_INIT(xent_token_logprobs_args, &a);
  a.batch = B;
  a.num_classes = V;
  a.logits = x.data();
  a.target = y.data();
  a.logprob = lp.data();
  a.entropy = ent.data();
  a.argmax = am.data();
  a.topk = K;
  a.topk_logprobs = tlp.data();
  a.topk_indices = ti.data();
  a.topk_mass = mass.data();
  ASSERT_EQ(xent_token_logprobs(&a), XENT_OK) << xent_last_error();
  EXPECT_TRUE(std::isnan(lp[1]) && std::isnan(ent[1]) && std::isnan(mass[1]));
  for (size_t j = 0; j < K; ++j) {
    EXPECT_TRUE(std::isnan(tlp[K + j]));
    EXPECT_TRUE(ti[K + j] >= 0 && ti[K + j] < static_cast<int64_t>(V));
    EXPECT_TRUE(std::isfinite(tlp[j]) && std::isfinite(tlp[2 * K + j]));
  }
  EXPECT_TRUE(am[1] >= 0 && am[1] < static_cast<int64_t>(V));
  // The indices are those of the order with NaN as -inf (whatever the target
  // or thread count): the row's k largest other logits.
  std::vector<std::pair<double, int64_t>> order;
  for (size_t c = 0; c < V; ++c)
    order.push_back({std::isnan(x.get(1, c)) ? -kInf : x.get(1, c), static_cast<int64_t>(c)});
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t j = 0; j < K; ++j) EXPECT_EQ(ti[K + j], order[j].second) << j;
}

// ---------------------------------------------------------------------------
// Rows of more than 32 segments (V > 131072) keep their partials in one
// buffer of one row's per task, and the engine gives such calls at most 64
// tasks (src/engine.h, RowsPerTask): 65 rows at 1 thread are tasks of 2 rows
// sharing that buffer. Each row's statistics are those of the row alone.
TEST_P(TokenStatsTest, LongRowsSharingATaskMatchRowsAlone) {
  const size_t B = 65, V = 131073, K = 5;
  if (SkipLarge(B * V)) return;  // XENT_TEST_MAX_ELEMENTS (emulated and sanitizer runs)
  Mat x(B, V, DType::kF32);
  Fill(x, 2.0, 9);
  std::vector<int64_t> y(B);
  for (size_t i = 0; i < B; ++i) y[i] = static_cast<int64_t>((i * 7919) % V);
  Vec lp(B), ent(B), tlp(B * K), one_lp(1), one_ent(1), one_tlp(K);
  std::vector<int64_t> ti(B * K), am(B), one_ti(K), one_am(1);
  auto run = [&](size_t rows, size_t row0, float* l, float* e, int64_t* a_m, float* t, int64_t* t_i) {
    xent_token_logprobs_args a;
    XENT_ARGS_INIT(xent_token_logprobs_args, &a);
    a.batch = rows;
    a.num_classes = V;
    a.logits = static_cast<const float*>(x.data()) + row0 * V;
    a.target = y.data() + row0;
    a.logprob = l;
    a.entropy = e;
    a.argmax = a_m;
    a.topk = K;
    a.topk_logprobs = t;
    a.topk_indices = t_i;
    a.num_threads = 1;
    return xent_token_logprobs(&a);
  };
  ASSERT_EQ(run(B, 0, lp.data(), ent.data(), am.data(), tlp.data(), ti.data()), XENT_OK) << xent_last_error();
  for (size_t i = 0; i < B; ++i) {
    ASSERT_EQ(run(1, i, one_lp.data(), one_ent.data(), one_am.data(), one_tlp.data(), one_ti.data()), XENT_OK)
        << xent_last_error();
    EXPECT_EQ(std::memcmp(&lp[i], one_lp.data(), 4), 0) << "logprob of row " << i;
    EXPECT_EQ(std::memcmp(&ent[i], one_ent.data(), 4), 0) << "entropy of row " << i;
    EXPECT_EQ(am[i], one_am[0]) << "argmax of row " << i;
    EXPECT_EQ(std::memcmp(&tlp[i * K], one_tlp.data(), 4 * K), 0) << "top-k log-probs of row " << i;
    EXPECT_EQ(std::memcmp(&ti[i * K], one_ti.data(), 8 * K), 0) << "top-k indices of row " << i;
  }
}

class TokenStatsArgsTest : public AllTargets {};

#define EXPECT_STATUS(call, status, text)                                                         \
  do {                                                                                            \
    const xent_status st_ = (call);                                                               \
    EXPECT_EQ(st_, status) << xent_last_error();                                                  \
    EXPECT_NE(std::string(xent_last_error()).find(text), std::string::npos) << xent_last_error(); \
  } while (0)

TEST_P(TokenStatsArgsTest, BadInputNamesTheArgumentAndWritesNothing) {
  const size_t B = 2, V = 10;
  Mat x(B, V, DType::kF32), r16(B, V, DType::kBF16);
  Fill(x, 1.0, 1);
  std::vector<int64_t> y = {1, 2};
  Vec tlp(B * 70, 42.0f), kl(B, 42.0f);
  std::vector<int64_t> ti(B * 70, 42);
  auto base = [&] {
    xent_token_logprobs_args a;
    XENT_ARGS_INIT(xent_token_logprobs_args, &a);
    a.batch = B;
    a.num_classes = V;
    a.logits = x.data();
    a.target = y.data();
    a.topk_logprobs = tlp.data();
    return a;
  };
  auto a = base();
  a.topk = 11;
  EXPECT_STATUS(xent_token_logprobs(&a), XENT_ERROR_INVALID_VALUE, "topk = 11 exceeds num_classes (10)");
  a.topk = 65;
  EXPECT_STATUS(xent_token_logprobs(&a), XENT_ERROR_INVALID_VALUE, "topk = 65 is outside [0, 64]");
  a.topk = -1;
  EXPECT_STATUS(xent_token_logprobs(&a), XENT_ERROR_INVALID_VALUE, "topk = -1");
  a = base();
  a.topk = 3;
  a.kl = kl.data();
  EXPECT_STATUS(xent_token_logprobs(&a), XENT_ERROR_NULL_POINTER, "ref_logits is NULL, but kl needs it");
  a.ref_logits = r16.data();
  a.ref_logits_dtype = XENT_BF16;
  EXPECT_STATUS(xent_token_logprobs(&a), XENT_ERROR_INVALID_DTYPE, "ref_logits_dtype = 2 (XENT_BF16) differs");
  a = base();
  a.topk = 3;
  a.reserved1 = 1;
  EXPECT_STATUS(xent_token_logprobs(&a), XENT_ERROR_INVALID_VALUE, "reserved1 = 1 must be 0");
  a = base();
  a.topk = 3;
  a.topk_indices = ti.data();
  a.topk_logprobs = reinterpret_cast<float*>(ti.data()) + 1;  // overlaps topk_indices
  EXPECT_STATUS(xent_token_logprobs(&a), XENT_ERROR_ALIASING, "overlaps");
  a = base();
  a.target = nullptr;
  a.topk = 2;
  a.ref_logits = x.data();
  a.ref_logprob = kl.data();
  EXPECT_STATUS(xent_token_logprobs(&a), XENT_ERROR_NULL_POINTER, "target is NULL");
  for (size_t i = 0; i < tlp.size(); ++i) EXPECT_EQ(tlp[i], 42.0f);
  for (size_t i = 0; i < B; ++i) EXPECT_EQ(kl[i], 42.0f);
  for (auto v : ti) EXPECT_EQ(v, 42);

  // Backward.
  Mat g(B, V, DType::kF32);
  g.fill(7.0);
  std::vector<float> gl = {1, 1}, gt(B * 3, 1.0f);
  std::vector<int64_t> idx = {0, 1, 2, 3, 4, 10};
  xent_token_logprobs_backward_args b;
  XENT_ARGS_INIT(xent_token_logprobs_backward_args, &b);
  b.batch = B;
  b.num_classes = V;
  b.logits = x.data();
  b.grad_logprob = gl.data();
  b.grad = g.data();
  EXPECT_STATUS(xent_token_logprobs_backward(&b), XENT_ERROR_NULL_POINTER, "target is NULL");
  b.target = y.data();
  b.topk = 3;
  b.grad_topk_logprobs = gt.data();
  EXPECT_STATUS(xent_token_logprobs_backward(&b), XENT_ERROR_NULL_POINTER,
                "topk_indices is NULL, but grad_topk_logprobs needs it");
  b.topk_indices = idx.data();
  EXPECT_STATUS(xent_token_logprobs_backward(&b), XENT_ERROR_TARGET_OUT_OF_RANGE,
                "topk_indices[5] (row 1, column 2) = 10 is outside [0, 10)");
  idx[5] = 9;
  b.grad_kl = gl.data();
  EXPECT_STATUS(xent_token_logprobs_backward(&b), XENT_ERROR_NULL_POINTER, "ref_logits is NULL, but grad_kl needs it");
  b.grad_kl = nullptr;
  b.grad = nullptr;
  EXPECT_STATUS(xent_token_logprobs_backward(&b), XENT_ERROR_NULL_POINTER, "grad is NULL");
  for (size_t i = 0; i < B; ++i)
    for (size_t j = 0; j < V; ++j) EXPECT_EQ(g.get(i, j), 7.0);
  b.grad = g.data();
  EXPECT_EQ(xent_token_logprobs_backward(&b), XENT_OK) << xent_last_error();

  // KL penalty.
  std::vector<float> v = {-1, -2};
  Vec pen(B, 42.0f);
  xent_kl_penalty_args k;
  XENT_ARGS_INIT(xent_kl_penalty_args, &k);
  k.batch = B;
  k.num_classes = 2;
  k.logprob = v.data();
  k.ref_logprob = v.data();
  k.penalty = pen.data();
  EXPECT_STATUS(xent_kl_penalty(&k), XENT_ERROR_INVALID_SHAPE, "num_classes = 2 must be 1 for kl_penalty");
  k.num_classes = 1;
  k.estimator = 4;
  EXPECT_STATUS(xent_kl_penalty(&k), XENT_ERROR_INVALID_ENUM, "estimator = 4");
  k.estimator = XENT_KL_K3;
  k.value_clamp = -1;
  EXPECT_STATUS(xent_kl_penalty(&k), XENT_ERROR_INVALID_VALUE, "value_clamp = -1");
  k.value_clamp = 0;
  k.ref_logprob = nullptr;
  EXPECT_STATUS(xent_kl_penalty(&k), XENT_ERROR_NULL_POINTER, "ref_logprob is NULL");
  k.ref_logprob = v.data();
  k.penalty = nullptr;
  EXPECT_STATUS(xent_kl_penalty(&k), XENT_ERROR_NULL_POINTER, "no output requested");
  EXPECT_EQ(pen[0], 42.0f);
  EXPECT_TRUE(pen.CanariesIntact());
}

// A caller built against 0.1.0 passes the shorter struct: accepted, the
// appended fields take their defaults; a size in between is refused.
TEST_P(TokenStatsArgsTest, StructSizeOfTheFirstRelease) {
  const size_t old_size = offsetof(xent_token_logprobs_args, argmax);
  std::vector<unsigned char> mem(sizeof(xent_token_logprobs_args), 0xEE);
  auto* a = reinterpret_cast<xent_token_logprobs_args*>(mem.data());
  ASSERT_EQ(xent_token_logprobs_args_init(a, old_size), XENT_OK) << xent_last_error();
  for (size_t i = old_size; i < mem.size(); ++i) ASSERT_EQ(mem[i], 0xEE) << "init wrote past the old struct";
  EXPECT_EQ(a->struct_size, old_size);
  Mat x(2, 9, DType::kF32);
  Fill(x, 1.0, 3);
  Vec ent(2);
  a->batch = 2;
  a->num_classes = 9;
  a->logits = x.data();
  a->entropy = ent.data();
  EXPECT_EQ(xent_token_logprobs(a), XENT_OK) << xent_last_error();
  EXPECT_TRUE(std::isfinite(ent[0]));
  a->struct_size = old_size + 8;
  EXPECT_STATUS(xent_token_logprobs(a), XENT_ERROR_INVALID_STRUCT, "neither the first published");
  EXPECT_EQ(xent_token_logprobs_args_init(a, old_size + 8), XENT_ERROR_INVALID_STRUCT);
  a->struct_size = old_size - 8;
  EXPECT_STATUS(xent_token_logprobs(a), XENT_ERROR_INVALID_STRUCT, "is smaller than");
}

XENT_INSTANTIATE_ALL_TARGETS(TokenStatsTest);
XENT_INSTANTIATE_ALL_TARGETS(TokenStatsArgsTest);

}  // namespace
}  // namespace xent_test
