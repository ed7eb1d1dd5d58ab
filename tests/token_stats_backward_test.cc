// The backward of the per-token statistics (xent_token_logprobs_backward,
// checked against the closed form and by finite differences of the float64
// objective) and the KL penalty estimators (xent_kl_penalty), on every SIMD
// target. The forward: tests/token_stats_test.cc.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tests/common/mat.h"
#include "tests/token_stats_reference.h"
#include "tests/token_stats_util.h"

namespace xent_test {
namespace {

// ---------------------------------------------------------------------------
// Backward.
struct GradCase {
  size_t B = 4, V = 37;
  DType dt = DType::kF32;
  int out = 0;  // 0 f32 buffer, 1 the logits' dtype, 2 in place
  float T = 1.0f, cap = 0.0f;
  bool g_lp = true, g_h = true, g_kl = false;
  size_t k = 0;             // indices with upstream gradients
  bool pass_stats = false;  // lse / entropy / ref_lse / kl from the forward
  int zero_row = -1;        // a row whose upstream gradients are all 0
  int ignore_row = -1;
  uint32_t seed = 7;
  double (*hook)(size_t, size_t) = nullptr;
  bool fd = true;        // also check by finite differences (f32 logits only)
  bool cluster = false;  // top-k columns side by side, several in one vector, at the edges
};

void RunGrad(const GradCase& c) {
  if (SkipLarge(c.B * c.V)) return;
  SCOPED_TRACE("B=" + std::to_string(c.B) + " V=" + std::to_string(c.V) + " dt=" + std::to_string(int(c.dt)) +
               " out=" + std::to_string(c.out) + " T=" + std::to_string(c.T) + " cap=" + std::to_string(c.cap) + " k=" +
               std::to_string(c.k) + " kl=" + std::to_string(c.g_kl) + " stats=" + std::to_string(c.pass_stats));
  const size_t B = c.B, V = c.V, K = c.k;
  Mat x(B, V, c.dt, V + 1, 2);
  const auto xv = Fill(x, 2.0, c.seed, c.hook);
  Mat ref(B, V, c.dt, V + 2, 0);
  const auto rv = Fill(ref, 0.7, c.seed + 1, c.hook, &xv);
  std::mt19937 rng(c.seed);
  std::vector<int64_t> y(B), idx(B * K);
  for (size_t i = 0; i < B; ++i) y[i] = static_cast<int64_t>(i) == c.ignore_row ? -100 : rng() % V;
  for (auto& v : idx) v = rng() % V;
  if (c.cluster) {
    // Next to each other, several in one vector (of any width), at the row's
    // first and last columns and a segment's edges, shifted by row.
    static const int64_t kCols[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 4095, 4096, 4097};
    constexpr size_t kN = sizeof(kCols) / sizeof(kCols[0]);
    for (size_t i = 0; i < B; ++i) {
      for (size_t j = 0; j < K; ++j) {
        int64_t col = j < kN ? kCols[j] + static_cast<int64_t>(i % 3) : static_cast<int64_t>(V - 1 - (j - kN));
        if (col >= static_cast<int64_t>(V)) col = static_cast<int64_t>(V) - 1 - col % 5;
        idx[i * K + j] = std::max<int64_t>(col, 0);
      }
    }
  }
  if (K >= 2) idx[1] = idx[0];  // a duplicate: the gradients add up
  const auto gl = RandomNormal(B, 1.0, c.seed + 2), gh = RandomNormal(B, 0.5, c.seed + 3),
             gk = RandomNormal(B, 1.0, c.seed + 4), gt = RandomNormal(B * K, 1.0, c.seed + 5);
  std::vector<float> g_lp(gl), g_h(gh), g_kl(gk), g_t(gt);
  if (c.zero_row >= 0) {
    const size_t z = static_cast<size_t>(c.zero_row);
    g_lp[z] = g_h[z] = g_kl[z] = 0.0f;
    for (size_t j = 0; j < K; ++j) g_t[z * K + j] = 0.0f;
  }
  xent_ref::TokSpec s;
  s.B = B;
  s.V = V;
  s.x = xv;
  s.ref = rv;
  s.y = y;
  s.temperature = c.T;
  s.softcap = c.cap;
  xent_ref::TokGradSpec gs;
  if (c.g_lp) gs.g_lp.assign(g_lp.begin(), g_lp.end());
  if (c.g_h) gs.g_h.assign(g_h.begin(), g_h.end());
  if (c.g_kl) gs.g_kl.assign(g_kl.begin(), g_kl.end());
  gs.k = K;
  gs.idx = idx;
  gs.g_k.assign(g_t.begin(), g_t.end());
  const auto want = xent_ref::TokenObjectiveGrad(s, gs);

  // The forward's statistics, when passed.
  Vec lse(B), ent(B), rlse(B), kl(B);
  if (c.pass_stats) {
    xent_token_logprobs_args f;
    XENT_ARGS_INIT(xent_token_logprobs_args, &f);
    f.batch = B;
    f.num_classes = V;
    f.logits = x.data();
    f.logits_stride = x.stride();
    f.logits_dtype = x.dt();
    f.temperature = c.T;
    f.softcap = c.cap;
    f.lse = lse.data();
    f.entropy = ent.data();
    f.ref_logits = ref.data();
    f.ref_logits_stride = ref.stride();
    f.ref_logits_dtype = ref.dt();
    f.ref_lse = rlse.data();
    f.kl = kl.data();
    ASSERT_EQ(xent_token_logprobs(&f), XENT_OK) << xent_last_error();
  }
  const DType odt = c.out == 0 ? DType::kF32 : c.dt;
  Mat gbuf(B, V, odt, V + 3, 4);
  Mat& g = c.out == 2 ? x : gbuf;
  xent_token_logprobs_backward_args a;
  ASSERT_EQ(XENT_ARGS_INIT(xent_token_logprobs_backward_args, &a), XENT_OK);
  a.batch = B;
  a.num_classes = V;
  a.logits = x.data();
  a.logits_stride = x.stride();
  a.logits_dtype = x.dt();
  a.target = y.data();
  a.temperature = c.T;
  a.softcap = c.cap;
  if (c.g_lp) a.grad_logprob = g_lp.data();
  if (c.g_h) a.grad_entropy = g_h.data();
  if (K) {
    a.topk = static_cast<int32_t>(K);
    a.topk_indices = idx.data();
    a.grad_topk_logprobs = g_t.data();
  }
  if (c.g_kl) {
    a.ref_logits = ref.data();
    a.ref_logits_stride = ref.stride();
    a.ref_logits_dtype = ref.dt();
    a.grad_kl = g_kl.data();
  }
  if (c.pass_stats) {
    a.lse = lse.data();
    a.entropy = ent.data();
    if (c.g_kl) {
      a.ref_lse = rlse.data();
      a.kl = kl.data();
    }
  }
  a.grad = g.data();
  a.grad_stride = g.stride();
  a.grad_dtype = static_cast<int32_t>(odt);
  ASSERT_EQ(xent_token_logprobs_backward(&a), XENT_OK) << xent_last_error();

  size_t bad = 0;
  for (size_t i = 0; i < B; ++i) {
    // Coefficients of the row's terms bound the f32 error: p times O(|lp|)
    // terms with relative error ~ the row rounding.
    double scale = std::fabs(g_lp[i]) + std::fabs(g_h[i]) * 4 + (c.g_kl ? std::fabs(g_kl[i]) * 4 : 0);
    for (size_t j = 0; j < K; ++j) scale += std::fabs(g_t[i * K + j]);
    const double rt = RowTol(xv, i, V, c.T, c.cap) * std::max(1.0, scale) / c.T;
    for (size_t j = 0; j < V; ++j) {
      const double w = want[i * V + j];
      const double tol = odt == DType::kF32 ? rt + 2e-6 * std::fabs(w) : Ulp(w, odt) + rt;
      const double got = g.get(i, j);
      if (static_cast<int>(i) == c.zero_row) {
        if (got != 0.0 && ++bad < 5) ADD_FAILURE() << "zero row " << i << "," << j << ": " << got;
        continue;
      }
      if (!Close(got, w, tol) && ++bad < 5) ADD_FAILURE() << i << "," << j << ": " << got << " want " << w;
    }
  }
  EXPECT_EQ(bad, 0u);
  EXPECT_TRUE(g.CanariesIntact() && ref.CanariesIntact());

  // Finite differences of the float64 objective on a few elements (the
  // closed form above is then checked too, independently of the kernel).
  if (c.fd && c.dt == DType::kF32) {
    const double h = 1e-5;
    for (size_t i = 0; i < B; ++i) {
      for (size_t j : {size_t{0}, V / 2, V - 1, static_cast<size_t>(y[i] < 0 ? 1 : y[i]),
                       static_cast<size_t>(K ? idx[i * K] : 2)}) {
        if (j >= V) continue;
        xent_ref::TokSpec sp = s, sm = s;
        sp.x[i * V + j] += h;
        sm.x[i * V + j] -= h;
        const double fd = (xent_ref::TokenObjective(sp, gs) - xent_ref::TokenObjective(sm, gs)) / (2 * h);
        EXPECT_NEAR(want[i * V + j], fd, 1e-6 + 1e-5 * std::fabs(fd)) << "closed form vs FD at " << i << "," << j;
      }
    }
  }
}

class TokenStatsBackwardTest : public AllTargets {};

TEST_P(TokenStatsBackwardTest, LogprobAndEntropy) {
  for (size_t V : {1, 5, 37, 300, 4099}) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (int out = 0; out < 3; ++out) {
        GradCase c;
        c.V = V;
        c.dt = dt;
        c.out = out;
        c.seed = static_cast<uint32_t>(V + 3 * out + static_cast<int>(dt));
        c.zero_row = V > 1 ? 2 : -1;
        c.ignore_row = 1;
        c.pass_stats = out == 1;
        RunGrad(c);
      }
    }
  }
}

TEST_P(TokenStatsBackwardTest, TemperatureSoftcapTopkAndKl) {
  for (float T : {1.0f, 0.7f}) {
    for (float cap : {0.0f, 5.0f}) {
      for (bool stats : {false, true}) {
        GradCase c;
        c.V = 1030;
        c.T = T;
        c.cap = cap;
        c.k = 5;
        c.g_kl = true;
        c.pass_stats = stats;
        c.zero_row = 3;
        RunGrad(c);
      }
    }
  }
}

TEST_P(TokenStatsBackwardTest, EachTermAlone) {
  GradCase c;
  c.V = 333;
  c.g_lp = true, c.g_h = false;
  RunGrad(c);
  c.g_lp = false, c.g_h = true;
  RunGrad(c);
  c.g_h = false, c.k = 4;
  RunGrad(c);
  c.k = 0, c.g_kl = true;
  RunGrad(c);
}

// The top-k gradients' delta columns side by side (the kernel checks only the
// vectors holding one), to a buffer (misaligned rows: a streaming peel) and in
// place.
TEST_P(TokenStatsBackwardTest, ClusteredTopkColumns) {
  for (size_t V : {40, 4099, 9000}) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      for (int out : {0, 1, 2}) {
        GradCase c;
        c.B = 4;
        c.V = V;
        c.dt = dt;
        c.out = out;
        c.k = 18;
        c.cluster = true;
        c.T = out == 1 ? 0.7f : 1.0f;
        c.fd = false;
        RunGrad(c);
      }
    }
  }
}

TEST_P(TokenStatsBackwardTest, MaskedClassesAndLongRowsSplitAcrossThreads) {
  GradCase c;
  c.B = 2;  // few long rows: statistics and gradient per segment group
  c.V = 20000;
  c.hook = MaskHook;
  c.k = 3;
  c.g_kl = true;
  c.fd = false;
  RunGrad(c);
  c.out = 2;
  c.dt = DType::kBF16;
  RunGrad(c);
}

// The statistics recomputed in the call (no lse / entropy passed): one row's
// gradient and the next row's statistics run in one walk when they can
// (src/engine.h, FusedRows; 1 thread too); a row alone never does, and alone
// with 2 threads (rows of 2+ segments) it takes the segment split, which
// recomputes e instead of storing it. All three give the same bits. Rows of
// aligned and misaligned starts, 16-bit gradients, in place, temperature,
// top-k deltas at the row's edges, an ignored row, a row without upstream
// gradients, a masked row and a NaN row (NaN at every column, -inf's too;
// the _streaming run of this suite
// covers the non-temporal stores).
TEST_P(TokenStatsBackwardTest, RowsTogetherMatchRowsAlone) {
  const size_t B = 21, K = 3;
  for (size_t V : {1024, 5003, 12288, 70001}) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      for (DType gdt : {DType::kF32, dt}) {
        for (bool in_place : {false, true}) {
          if (in_place && gdt != dt) continue;
          if (SkipRowsCase(B, V, dt == DType::kF32 && in_place)) continue;
          for (float temperature : {1.0f, 2.0f}) {
            SCOPED_TRACE("V=" + std::to_string(V) + " dtype=" + std::to_string(static_cast<int>(dt)) +
                         " grad=" + std::to_string(static_cast<int>(gdt)) + (in_place ? " in place" : "") +
                         " T=" + std::to_string(temperature));
            Mat x(B, V, dt), g(B, V, gdt), one_x(1, V, dt), one_g(1, V, gdt);
            Fill(x, 2.0, static_cast<uint32_t>(V) + 1);
            for (size_t c = 0; c < V; c += 3) x.set(8, c, -std::numeric_limits<double>::infinity());
            x.set(11, V / 2, std::numeric_limits<double>::quiet_NaN());
            x.set(11, 3, -std::numeric_limits<double>::infinity());  // NaN too (PyTorch's)
            std::mt19937 rng(static_cast<uint32_t>(V));
            std::vector<int64_t> y(B), idx(B * K);
            for (size_t i = 0; i < B; ++i) {
              y[i] = static_cast<int64_t>(rng() % V);
              idx[i * K] = 0;
              idx[i * K + 1] = static_cast<int64_t>(V - 1);
              idx[i * K + 2] = static_cast<int64_t>(rng() % V);
            }
            y[5] = -100;
            std::vector<float> g_lp = RandomNormal(B, 1.0, 3), g_h = RandomNormal(B, 0.5, 4),
                               g_t = RandomNormal(B * K, 1.0, 5);
            g_lp[7] = g_h[7] = 0.0f;
            for (size_t j = 0; j < K; ++j) g_t[7 * K + j] = 0.0f;
            const size_t es = xent::DTypeSize(dt), gs = xent::DTypeSize(gdt);
            const Mat x0 = x;
            auto run = [&](size_t rows, size_t row0, const void* lx, void* gr, int threads) {
              xent_token_logprobs_backward_args a;
              XENT_ARGS_INIT(xent_token_logprobs_backward_args, &a);
              a.batch = rows;
              a.num_classes = V;
              a.logits = lx;
              a.logits_dtype = static_cast<int32_t>(dt);
              a.target = y.data() + row0;
              a.temperature = temperature;
              a.grad_logprob = g_lp.data() + row0;
              a.grad_entropy = g_h.data() + row0;
              a.topk = static_cast<int32_t>(K);
              a.topk_indices = idx.data() + row0 * K;
              a.grad_topk_logprobs = g_t.data() + row0 * K;
              a.grad = gr;
              a.grad_dtype = static_cast<int32_t>(gdt);
              a.num_threads = threads;
              return xent_token_logprobs_backward(&a);
            };
            ASSERT_EQ(run(B, 0, x.data(), in_place ? x.data() : g.data(), 1), XENT_OK) << xent_last_error();
            const auto* all_g = static_cast<const unsigned char*>(in_place ? x.data() : g.data());
            for (size_t i = 0; i < B; ++i) {
              std::memcpy(one_x.data(), static_cast<const unsigned char*>(x0.data()) + i * V * es, V * es);
              ASSERT_EQ(run(1, i, one_x.data(), in_place ? one_x.data() : one_g.data(), i % 2 == 0 ? 1 : 2), XENT_OK)
                  << xent_last_error();
              const void* got = in_place ? one_x.data() : one_g.data();
              EXPECT_EQ(FirstBitsDiff(all_g + i * V * gs, got, V, gdt), V) << "gradient of row " << i;
            }
            const Mat& out = in_place ? x : g;
            size_t not_nan = 0;
            for (size_t c = 0; c < V; ++c) not_nan += std::isnan(out.get(11, c)) ? 0 : 1;
            EXPECT_EQ(not_nan, 0u) << "the NaN row's gradient";
            EXPECT_EQ(out.get(7, 1), 0.0);
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
class KlPenaltyTest : public AllTargets {};

TEST_P(KlPenaltyTest, EstimatorsClampsAndGradients) {
  const size_t n = 40;
  std::vector<float> lp(n), rp(n), go(n);
  const auto a0 = RandomNormal(n, 3.0, 1), b0 = RandomNormal(n, 3.0, 2), c0 = RandomNormal(n, 1.0, 3);
  for (size_t i = 0; i < n; ++i) {
    lp[i] = -std::fabs(static_cast<float>(a0[i]));
    rp[i] = i % 5 == 0 ? lp[i] : -std::fabs(static_cast<float>(b0[i])) * (i % 7 == 0 ? 10.0f : 1.0f);
    go[i] = static_cast<float>(c0[i]);
  }
  for (int kind = 0; kind < 4; ++kind) {
    for (bool clamps : {false, true}) {
      for (bool st : {false, true}) {
        for (bool upstream : {false, true}) {
          SCOPED_TRACE("kind=" + std::to_string(kind) + " clamps=" + std::to_string(clamps) +
                       " st=" + std::to_string(st) + " upstream=" + std::to_string(upstream));
          Vec pen(n), grad(n);
          xent_kl_penalty_args a;
          ASSERT_EQ(XENT_ARGS_INIT(xent_kl_penalty_args, &a), XENT_OK);
          a.batch = n;
          a.num_classes = 1;
          a.logprob = lp.data();
          a.ref_logprob = rp.data();
          a.estimator = kind;
          a.straight_through = st;
          a.log_ratio_clamp = clamps ? 20.0f : 0.0f;
          a.value_clamp = clamps ? 10.0f : 0.0f;
          if (upstream) a.grad_output = go.data();
          a.penalty = pen.data();
          a.grad_logprob = grad.data();
          ASSERT_EQ(xent_kl_penalty(&a), XENT_OK) << xent_last_error();
          for (size_t i = 0; i < n; ++i) {
            const auto w = xent_ref::KlPenalty(lp[i], rp[i], kind, a.log_ratio_clamp, a.value_clamp, st);
            const double gw = w.grad * (upstream ? go[i] : 1.0);
            // d = logp - ref is rounded to f32 once.
            const double dtol = 1.2e-7 * (std::fabs(lp[i]) + std::fabs(rp[i]));
            EXPECT_TRUE(
                Close(pen[i], w.value, 2e-6 * std::fabs(w.value) + 2e-6 + dtol * (1 + std::exp(-lp[i] + rp[i]))))
                << i << ": " << pen[i] << " want " << w.value;
            EXPECT_TRUE(Close(grad[i], gw, 2e-6 * std::fabs(gw) + 2e-6 + dtol * std::fabs(go[i]) * 30))
                << i << ": grad " << grad[i] << " want " << gw;
            // The gradient is the derivative of the value (away from clamp
            // edges and |.|'s kink), unless straight-through.
            if (!st && std::fabs(lp[i] - rp[i]) > 1e-2) {
              const double h = 1e-4;
              const double fd =
                  (xent_ref::KlPenalty(lp[i] + h, rp[i], kind, a.log_ratio_clamp, a.value_clamp, false).value -
                   xent_ref::KlPenalty(lp[i] - h, rp[i], kind, a.log_ratio_clamp, a.value_clamp, false).value) /
                  (2 * h);
              if (std::fabs(w.value) < 9.99 || !clamps) {
                EXPECT_NEAR(w.grad, fd, 1e-4 * (1 + std::fabs(fd))) << i;
              }
            }
          }
          EXPECT_TRUE(pen.CanariesIntact() && grad.CanariesIntact());
        }
      }
    }
  }
}

XENT_INSTANTIATE_ALL_TARGETS(TokenStatsBackwardTest);
XENT_INSTANTIATE_ALL_TARGETS(KlPenaltyTest);

}  // namespace
}  // namespace xent_test
