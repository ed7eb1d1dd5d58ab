// Fused linear cross-entropy (xent_linear_cross_entropy) against a float64
// computation of the same formula (f64 GEMMs + the cross-entropy reference),
// on every SIMD target: dtypes, options, blocks, strides, accumulation, edge
// cases. Thread counts, host pools and bad input: linear_ce_args_test.cc.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/mat.h"
#include "tests/linear_ce_case.h"
#include "tests/reference.h"

namespace xent_test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The float64 computation of the same formula, from the values the library
// sees, with |A| |B| products for the GEMM error bounds.
struct LceRef {
  xent_ref::CeOut ce;
  std::vector<double> gh, gw, gb;
  std::vector<double> gh_abs, gw_abs, gb_abs;  // sum |G| |operand|: error scale
  std::vector<double> logit_abs;               // per row: max_v sum_k |h w| + |b|
};

LceRef Reference(const LceCase& t) {
  const LceConfig& c = t.c;
  const size_t B = c.B, V = c.V, H = c.H;
  const std::vector<double> h = t.hidden.values(), w = t.weight_m.values();
  xent_ref::CeSpec s;
  s.B = B;
  s.V = V;
  s.x.assign(B * V, 0.0);
  LceRef r;
  r.logit_abs.assign(B, 0.0);
  for (size_t i = 0; i < B; ++i)
    for (size_t v = 0; v < V; ++v) {
      double acc = 0, ab = 0;
      for (size_t k = 0; k < H; ++k) {
        acc += h[i * H + k] * w[v * H + k];
        ab += std::fabs(h[i * H + k] * w[v * H + k]);
      }
      if (c.bias_dtype != DType::kAuto) {
        const double b = t.bias.get(0, v);
        acc += b;
        if (std::isfinite(b)) ab += std::fabs(b);
      }
      s.x[i * V + v] = acc;
      r.logit_abs[i] = std::max(r.logit_abs[i], ab);
    }
  s.y = t.y64;
  if (c.weight) s.weight.assign(t.cw.data(), t.cw.data() + V);
  if (c.row_scale) s.row_scale.assign(t.rs.data(), t.rs.data() + B);
  s.reduction = c.reduction;
  s.eps = c.eps;
  s.z_loss = c.z_loss;
  s.softcap = c.softcap;
  s.grad_scale = c.grad_scale;
  r.ce = xent_ref::CrossEntropy(s);
  const std::vector<double>& G = r.ce.grad;
  r.gh.assign(B * H, 0.0);
  r.gh_abs.assign(B * H, 0.0);
  r.gw.assign(V * H, 0.0);
  r.gw_abs.assign(V * H, 0.0);
  r.gb.assign(V, 0.0);
  r.gb_abs.assign(V, 0.0);
  for (size_t i = 0; i < B; ++i)
    for (size_t v = 0; v < V; ++v) {
      const double g = G[i * V + v];
      if (g == 0) continue;
      for (size_t k = 0; k < H; ++k) {
        r.gh[i * H + k] += g * w[v * H + k];
        r.gh_abs[i * H + k] += std::fabs(g * w[v * H + k]);
        r.gw[v * H + k] += g * h[i * H + k];
        r.gw_abs[v * H + k] += std::fabs(g * h[i * H + k]);
      }
      r.gb[v] += g;
      r.gb_abs[v] += std::fabs(g);
    }
  return r;
}

// The f32 error model: a K-term f32 dot product is within ~sqrt(K) 2^-24
// sum |a b| in practice (bound K 2^-24); the logits' error enters the
// gradient G through p (relative), hence the factor on the products too.
constexpr double kU = 1.0 / 16777216.0;

double GemmTol(double abs_sum, size_t K, DType out, double want) {
  double tol = (8.0 * std::sqrt(static_cast<double>(K)) + 64.0) * kU * abs_sum + 1e-9;
  if (out != DType::kF32) tol += Ulp(want, out);
  return tol;
}

void Check(LceCase& t, const LceRef& r) {
  const LceConfig& c = t.c;
  const size_t B = c.B, V = c.V, H = c.H;
  double logit_err = 0;  // the logits' error bound (largest row)
  for (size_t i = 0; i < B; ++i)
    logit_err = std::max(logit_err, (4.0 * std::sqrt(static_cast<double>(H)) + 16.0) * kU * r.logit_abs[i]);
  // A row loss moves by at most ~2x the logits' error (lse and z_y), times
  // its weights and z-loss factor; plus the CE kernel's own bounds.
  const double wmax = c.weight ? 2.0 : 1.0;
  const double lf = (2.0 + 2.0 * c.z_loss * 20.0) * wmax;
  for (size_t i = 0; i < B; ++i) {
    const double want = r.ce.row_loss[i];
    EXPECT_TRUE(Close(t.row_loss[i], want, 4e-6 * std::fabs(want) + 4e-6 + lf * logit_err))
        << "row_loss[" << i << "] = " << t.row_loss[i] << " want " << want;
    if (c.want_lse) {
      EXPECT_TRUE(Close(t.lse[i], r.ce.lse[i], 4e-6 * std::fabs(r.ce.lse[i]) + 4e-6 + 2 * logit_err))
          << "lse[" << i << "] = " << t.lse[i] << " want " << r.ce.lse[i];
    }
  }
  const double div_rows = c.reduction == XENT_REDUCTION_MEAN ? 1.0 : static_cast<double>(B);
  EXPECT_TRUE(Close(t.loss[0], r.ce.loss, 4e-6 * std::fabs(r.ce.loss) + div_rows * lf * logit_err))
      << "loss = " << t.loss[0] << " want " << r.ce.loss;
  EXPECT_TRUE(t.loss.CanariesIntact() && t.row_loss.CanariesIntact() && t.lse.CanariesIntact());

  // Gradient tolerance: the GEMM's own error, plus the logits' error
  // carried by G (relative ~ logit_err), plus G's kernel error (1e-6 abs per
  // element of the f32 gradient, scaled by the divisor's share).
  double gmax = 0;
  for (double g : r.ce.grad) gmax = std::max(gmax, std::fabs(g));
  const bool bf16_grads = (!c.want_gh || Resolve(c.gh_dtype, c.dtype) == DType::kBF16) &&
                          (!c.want_gw || Resolve(c.gw_dtype, c.dtype) == DType::kBF16);
  const double g_rel = 2 * logit_err + 1e-5 + (Bf16GemmActive(c.dtype, bf16_grads) ? 1.0 / 256 : 0.0);
  auto check_mat = [&](const char* name, const Mat& m, const std::vector<double>& want,
                       const std::vector<double>& abs_sum, const std::vector<double>& init, size_t rows, size_t cols,
                       size_t K, bool add) {
    size_t bad = 0;
    for (size_t i = 0; i < rows; ++i)
      for (size_t j = 0; j < cols; ++j) {
        const double base = add ? init[i * cols + j] : 0.0;
        const double wv = want[i * cols + j] + base;
        double tol = GemmTol(abs_sum[i * cols + j], K, m.dtype(), wv) + g_rel * abs_sum[i * cols + j];
        if (add) tol += 2 * kU * std::fabs(base);
        if (!Close(m.get(i, j), wv, tol) && ++bad <= 5)
          ADD_FAILURE() << name << "[" << i << "][" << j << "] = " << m.get(i, j) << " want " << wv << " (tol " << tol
                        << ")";
      }
    EXPECT_EQ(bad, 0u) << name;
    EXPECT_TRUE(m.CanariesIntact()) << name << " written outside its elements";
  };
  (void)gmax;
  if (c.want_gh)
    check_mat("grad_hidden", t.gh, r.gh, r.gh_abs, t.gh0, B, H, V, c.accumulate & XENT_ACCUMULATE_GRAD_HIDDEN);
  if (c.want_gw)
    check_mat("grad_linear_weight", t.gw, r.gw, r.gw_abs, t.gw0, V, H, B,
              c.accumulate & XENT_ACCUMULATE_GRAD_LINEAR_WEIGHT);
  if (c.want_gb)
    check_mat("grad_linear_bias", t.gb, r.gb, r.gb_abs, t.gb0, 1, V, B,
              c.accumulate & XENT_ACCUMULATE_GRAD_LINEAR_BIAS);
  EXPECT_TRUE(t.hidden.CanariesIntact() && t.weight_m.CanariesIntact());
}

void RunLce(const LceConfig& c) {
  if (SkipLarge(c.B * c.V)) return;  // XENT_TEST_MAX_ELEMENTS: emulated and sanitizer runs
  SCOPED_TRACE(Describe(c));
  LceCase t(c);
  const LceRef r = Reference(t);
  ASSERT_EQ(t.Run(), XENT_OK) << xent_last_error();
  Check(t, r);
}

class LinearCeTest : public AllTargets {
 protected:
  void SetUp() override {
    AllTargets::SetUp();
    if (!HaveBlas()) GTEST_SKIP() << "libxent built without a BLAS";
  }
};

TEST_P(LinearCeTest, Shapes) {
  // V across the 2048-class tiles, H across the 512-column tiles, one row.
  const size_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 2047, 33}, {9, 2049, 513}, {32, 4200, 100}, {5, 40, 300}};
  for (const auto& s : shapes) {
    LceConfig c = Sized(s[0], s[1], s[2]);
    c.seed = static_cast<uint32_t>(s[0] * 7 + s[1] + s[2]);
    RunLce(c);
    c.bias_dtype = DType::kF32;
    RunLce(c);
  }
}

TEST_P(LinearCeTest, Dtypes) {
  for (DType dt : {DType::kBF16, DType::kF16}) {
    LceConfig c = Sized(21, 1100, 150, dt);
    c.seed = static_cast<uint32_t>(dt);
    RunLce(c);  // gradients in the inputs' dtype (grad_linear_weight summed in f32)
    c.gh_dtype = c.gw_dtype = c.gb_dtype = DType::kF32;
    c.bias_dtype = DType::kF32;
    RunLce(c);
    c.scratch = 5 * (c.V + c.H) * 4;  // blocks of 5 rows: sums over blocks
    RunLce(c);
    c.gw_dtype = DType::kAuto;  // no room for the f32 accumulator: tiles of classes
    RunLce(c);
  }
}

// A 16-bit grad_linear_weight: summed over the row blocks in an f32 V x H
// accumulator (for a bf16 one not accumulated into: split sums, the high
// halves in the output, 2 V H bytes) when it fits the budget beside a block
// of min(rows, 256) rows; else the tiled order (pass 1 statistics per tile of classes, pass 2
// gradients per tile: no V x H buffer). Both across their tiles: row blocks
// / groups, tasks of 128 rows, 512 hidden columns, 2048 and 256 classes.
TEST_P(LinearCeTest, SixteenBitWeightGradientOrders) {
  for (DType dt : {DType::kBF16, DType::kF16}) {
    // Accumulator: two blocks of 150 rows (the budget holds the accumulator
    // and 260 rows of the widened products, 180 of the native ones); bf16:
    // split sums, and the f32 accumulator when accumulating.
    LceConfig c = Sized(300, 1100, 64, dt);
    c.ignore_every = 0;
    c.eps = 0.1f;
    c.seed = 31 + static_cast<uint32_t>(dt);
    for (int acc : {0, XENT_ACCUMULATE_GRAD_LINEAR_WEIGHT}) {
      if (acc && dt != DType::kBF16) break;
      c.accumulate = acc;
      c.scratch = c.V * c.H * (dt == DType::kBF16 && !acc ? 2 : 4) + 260 * (c.V + c.H) * 4;
      RunLce(c);
    }
    // Tiled: 2 groups of rows (each one task of rows), 3 tiles of classes
    // (the last 104: one short task of classes), 2 tiles of hidden columns;
    // ignored rows skipped, or kept for lse. (bf16 only: both product paths
    // with the suite's XENT_NATIVE_BF16=0 run.)
    for (bool lse : {false, true}) {
      if (dt != DType::kBF16) break;
      c = Sized(290, 4200, 520, dt);
      c.ignore_every = 9;
      c.want_lse = lse;
      c.weight = lse;
      c.eps = 0.05f;
      c.z_loss = lse ? 1e-3f : 0.0f;
      c.softcap = lse ? 0.0f : 5.0f;
      c.accumulate = lse ? 7 : XENT_ACCUMULATE_GRAD_LINEAR_WEIGHT;  // (else split sums fit)
      const size_t kept = lse ? c.B : c.B - c.B / 9;
      const bool native = Bf16GemmActive(dt, true);  // else widened f32 products
      const size_t per_row = native ? 2048 * 6 + (kept == c.B ? 0 : c.H * 2) : (2048 + c.H) * 4;
      c.scratch = (kept + (native ? 1 : 2) * 2048) * c.H * 4 + kept * 128 + 200 * per_row;
      c.seed = 41 + (lse ? 1 : 0);
      RunLce(c);
    }
    // Tiled, one group of 600 rows: its logits and grad_hidden products in
    // 2 tasks of rows (512 + 88), the logits' x 4 tasks of 512 classes per
    // tile (the last tile's 1808 classes: a short one of 272). The budget
    // holds about 220 rows of V classes (so tiled) and the group's 600 rows
    // of a tile.
    if (dt == DType::kBF16) {
      c = Sized(600, 10000, 16, dt);
      c.scratch = 9u << 20;
      c.seed = 61;
      RunLce(c);
    }
    // Tiled, the smallest budget (one row): groups of 16 rows.
    c = Sized(40, 2100, 30, dt);
    c.scratch = (c.V + c.H) * 4;
    c.ignore_every = 4;
    c.masked_classes = 2050;  // a whole tile of classes at -inf
    c.seed = 51 + static_cast<uint32_t>(dt);
    RunLce(c);
  }
}

// Each row's target entry of G (here -1/rows; the others ~p/rows, p ~ 1/V)
// stays out of the long sums of the gradient products: it is added to the
// products' sums afterwards (src/linear_ce.cc, TakeTargets). The gradients
// are then within about an ulp of the float64 result, where a dense f32
// product of the same G is several ulps off (each of the ~K additions after
// the large term rounds at its scale: ~0.3 sqrt(K) ulp). Measured here
// (root-mean-square error over the root-mean-square value, in 2^-24):
// with the target entries in the products (OpenBLAS) 5.0 for both
// gradients, without them 1.0 and 0.9. H = 4: the logits are exact to an
// ulp or two, so G's own error is of the order of 2^-24 p.
TEST_P(LinearCeTest, TargetTermsOutsideTheProducts) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    LceConfig c = Sized(2048, 4096, 4);
    c.dtype = dt;  // bf16 inputs with f32 gradients: the widened f32 products
    c.gh_dtype = c.gw_dtype = c.gb_dtype = DType::kF32;
    c.want_lse = false;
    c.seed = 61 + static_cast<uint32_t>(dt);
    if (SkipLarge(c.B * c.V)) return;
    SCOPED_TRACE(Describe(c));
    LceCase t(c);
    const LceRef r = Reference(t);
    ASSERT_EQ(t.Run(), XENT_OK) << xent_last_error();
    Check(t, r);
    // Root-mean-square error relative to the root-mean-square value.
    auto rms_rel = [](const Mat& m, const std::vector<double>& want, size_t rows, size_t cols) {
      double e2 = 0, w2 = 0;
      for (size_t i = 0; i < rows; ++i)
        for (size_t j = 0; j < cols; ++j) {
          const double w = want[i * cols + j], d = m.get(i, j) - w;
          e2 += d * d;
          w2 += w * w;
        }
      return std::sqrt(e2 / w2);
    };
    EXPECT_LT(rms_rel(t.gh, r.gh, c.B, c.H), 2 * kU) << "grad_hidden";
    EXPECT_LT(rms_rel(t.gw, r.gw, c.V, c.H), 2 * kU) << "grad_linear_weight";
  }
}

// Split sums (a bf16 grad_linear_weight over two row blocks) are rounded
// once, to nearest: the output is the f32 sum rounded to bf16. Against the
// same call with an f32 output (the same products, summed in another order:
// a tie or a last-bit difference can flip a rounding), nearly every element
// equals it rounded (all but 1 of 70400 here); truncating the sums instead
// flips half (35251).
TEST_P(LinearCeTest, SplitSumsRoundToNearest) {
  if (Bf16GemmActive(DType::kBF16, true)) GTEST_SKIP() << "bf16 products: not the f32 output's products";
  LceConfig c = Sized(300, 1100, 64, DType::kBF16);
  c.ignore_every = 0;
  c.scratch = c.V * c.H * 2 + 260 * (c.V + c.H) * 4;  // two blocks
  c.gh_dtype = DType::kF32;
  LceCase split(c);
  ASSERT_EQ(split.Run(), XENT_OK) << xent_last_error();
  c.gw_dtype = DType::kF32;
  LceCase f32(c);
  ASSERT_EQ(f32.Run(), XENT_OK) << xent_last_error();
  size_t differ = 0;
  for (size_t v = 0; v < c.V; ++v)
    for (size_t k = 0; k < c.H; ++k) {
      const float want = xent::F32FromBF16Bits(xent::BF16BitsFromF32(static_cast<float>(f32.gw.get(v, k))));
      if (static_cast<float>(split.gw.get(v, k)) != want) ++differ;
    }
  EXPECT_LE(differ, c.V * c.H / 100) << "of " << c.V * c.H;  // (1 here)
}

TEST_P(LinearCeTest, Options) {
  for (int red : {XENT_REDUCTION_NONE, XENT_REDUCTION_MEAN, XENT_REDUCTION_SUM}) {
    for (int opt = 0; opt < 8; ++opt) {
      LceConfig c = Sized(19, 260, 24);
      c.reduction = red;
      c.weight = opt & 1;
      c.eps = (opt & 2) ? 0.1f : 0.0f;
      c.z_loss = (opt & 4) ? 1e-3f : 0.0f;
      c.softcap = (opt == 3 || opt == 6) ? 4.0f : 0.0f;
      c.row_scale = (opt == 5);
      c.grad_scale = (opt == 7) ? -0.75f : 1.0f;
      c.ignore_every = (opt % 3 == 0) ? 4 : 0;
      c.want_lse = (opt % 2 == 0);
      c.bias_dtype = (opt % 4 == 1) ? DType::kF32 : DType::kAuto;
      c.i32 = (opt == 2);
      c.hidden_sigma = 2.0;
      c.seed = static_cast<uint32_t>(red * 10 + opt);
      RunLce(c);
    }
  }
}

TEST_P(LinearCeTest, BlocksStridesAndAlignment) {
  // Blocks of 1, 4 and 7 rows (the budget), padded strides, odd addresses.
  for (size_t rows : {1, 4, 7}) {
    for (size_t off : {0, 2}) {
      LceConfig c = Sized(15, 2060, 100);
      c.scratch = rows * (c.V + c.H) * 4;
      c.pad = rows;
      c.offset = off;
      c.ignore_every = 3;
      c.want_lse = rows != 4;  // skipped ignored rows with 4
      c.bias_dtype = DType::kF32;
      c.eps = 0.05f;
      c.seed = static_cast<uint32_t>(rows * 10 + off);
      RunLce(c);
      c.dtype = DType::kBF16;
      c.bias_dtype = DType::kBF16;
      RunLce(c);
    }
  }
}

TEST_P(LinearCeTest, Accumulate) {
  for (int acc : {1, 2, 4, 7}) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      LceConfig c = Sized(13, 1300, 140, dt);
      c.accumulate = acc;
      c.ignore_every = 4;
      c.want_lse = false;  // skipped rows keep their grad_hidden when accumulating
      c.scratch = 6 * (c.V + c.H) * 4;
      c.seed = static_cast<uint32_t>(acc + 10 * static_cast<int>(dt));
      RunLce(c);
    }
  }
}

TEST_P(LinearCeTest, IgnoredRowsAndEmptyBatch) {
  for (bool lse : {false, true}) {
    for (int red : {XENT_REDUCTION_MEAN, XENT_REDUCTION_SUM}) {
      LceConfig c = Sized(6, 50, 10);
      c.reduction = red;
      c.want_lse = lse;
      c.bias_dtype = DType::kF32;
      LceCase t(c);
      std::fill(t.y64.begin(), t.y64.end(), -100);  // every row ignored
      ASSERT_EQ(t.Run(), XENT_OK) << xent_last_error();
      if (red == XENT_REDUCTION_MEAN) {
        EXPECT_TRUE(std::isnan(t.loss[0]));
      } else {
        EXPECT_EQ(t.loss[0], 0.0f);
      }
      for (size_t i = 0; i < c.B; ++i) {
        EXPECT_EQ(t.row_loss[i], 0.0f);
        if (lse) {
          EXPECT_TRUE(std::isfinite(t.lse[i]));
        }
        for (size_t k = 0; k < c.H; ++k) EXPECT_EQ(t.gh.get(i, k), 0.0) << i << " " << k;
      }
      for (size_t v = 0; v < c.V; ++v) {
        EXPECT_EQ(t.gb.get(0, v), 0.0);
        for (size_t k = 0; k < c.H; ++k) EXPECT_EQ(t.gw.get(v, k), 0.0);
      }
    }
  }
  // B = 0: MEAN NaN, SUM 0, parameter gradients zero.
  for (int red : {XENT_REDUCTION_MEAN, XENT_REDUCTION_SUM}) {
    LceConfig c = Sized(0, 30, 8, DType::kBF16);
    c.reduction = red;
    LceCase t(c);
    ASSERT_EQ(t.Run(), XENT_OK) << xent_last_error();
    EXPECT_TRUE(red == XENT_REDUCTION_MEAN ? std::isnan(t.loss[0]) : t.loss[0] == 0.0f);
    for (size_t v = 0; v < c.V; ++v) {
      EXPECT_EQ(t.gb.get(0, v), 0.0);
      for (size_t k = 0; k < c.H; ++k) EXPECT_EQ(t.gw.get(v, k), 0.0);
    }
  }
}

TEST_P(LinearCeTest, MaskedClassesByBias) {
  // linear_bias = -inf masks classes: probability and every gradient of
  // theirs exactly 0; with label smoothing the loss is infinite (as xent_cross_entropy).
  for (DType dt : {DType::kF32, DType::kBF16}) {
    LceConfig c = Sized(11, 1500, 20, dt);
    c.masked_classes = 1100;
    c.weight = true;
    c.seed = 5;
    RunLce(c);
    LceCase t(c);
    ASSERT_EQ(t.Run(), XENT_OK) << xent_last_error();
    for (size_t v = 0; v < c.masked_classes; ++v) {
      ASSERT_EQ(t.gb.get(0, v), 0.0) << v;
      for (size_t k = 0; k < c.H; ++k) ASSERT_EQ(t.gw.get(v, k), 0.0) << v << " " << k;
    }
    c.eps = 0.1f;
    LceCase s(c);
    ASSERT_EQ(s.Run(), XENT_OK) << xent_last_error();
    EXPECT_EQ(s.loss[0], std::numeric_limits<float>::infinity());
  }
}

TEST_P(LinearCeTest, NanPropagates) {
  LceConfig c = Sized(4, 70, 9);
  LceCase t(c);
  t.hidden.set(2, 3, std::numeric_limits<double>::quiet_NaN());
  ASSERT_EQ(t.Run(), XENT_OK) << xent_last_error();
  EXPECT_TRUE(std::isnan(t.row_loss[2]));
  EXPECT_TRUE(std::isfinite(t.row_loss[1]));
  EXPECT_TRUE(std::isnan(t.loss[0]));
  for (size_t k = 0; k < c.H; ++k) {
    EXPECT_TRUE(std::isnan(t.gh.get(2, k)));
    EXPECT_TRUE(std::isfinite(t.gh.get(1, k)));
  }
}

XENT_INSTANTIATE_ALL_TARGETS(LinearCeTest);

}  // namespace
}  // namespace xent_test
