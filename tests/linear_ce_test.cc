// Fused linear cross-entropy (xent_linear_cross_entropy) against a float64
// computation of the same formula (f64 GEMMs + the cross-entropy reference),
// on every SIMD target: dtypes, options, blocks, strides, accumulation, edge
// cases, bad input; bit-identical results for every thread count and host
// pool.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/reference.h"
#include "tests/common/mat.h"

namespace xent_test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

bool HaveBlas() { return std::strcmp(xent_blas_backend(), "none") != 0; }

struct LceConfig {
  size_t B = 24, V = 300, H = 40;
  DType dtype = DType::kF32;        // hidden and linear_weight
  DType bias_dtype = DType::kAuto;  // kAuto = no bias
  DType gh_dtype = DType::kAuto;    // gradient dtypes (kAuto = the input's)
  DType gw_dtype = DType::kAuto;
  DType gb_dtype = DType::kAuto;
  bool want_gh = true, want_gw = true, want_gb = true;
  bool want_lse = true;
  bool weight = false, row_scale = false, i32 = false;
  int reduction = XENT_REDUCTION_MEAN;
  float eps = 0, z_loss = 0, softcap = 0, grad_scale = 1;
  int ignore_every = 0;  // every k-th row ignored (k > 0)
  int accumulate = 0;    // XENT_ACCUMULATE_* bits; outputs start random
  size_t scratch = 0;    // scratch_bytes
  size_t pad = 0;        // extra row stride of every matrix
  size_t offset = 0;     // byte misalignment of every matrix
  double hidden_sigma = 1.0;
  size_t masked_classes = 0;  // bias = -inf on the first k classes (needs a bias)
  uint32_t seed = 1;
  int32_t num_threads = 0;
};

// A config of B rows, V classes and H hidden units (the rest the defaults).
LceConfig Sized(size_t B, size_t V, size_t H) {
  LceConfig c;
  c.B = B;
  c.V = V;
  c.H = H;
  return c;
}
// The same with the inputs and a bias in dtype dt.
LceConfig Sized(size_t B, size_t V, size_t H, DType dt) {
  LceConfig c = Sized(B, V, H);
  c.dtype = dt;
  c.bias_dtype = dt;
  return c;
}

std::string Describe(const LceConfig& c) {
  char buf[400];
  std::snprintf(buf, sizeof(buf),
                "B=%zu V=%zu H=%zu dt=%d bias=%d gh=%d gw=%d gb=%d lse=%d w=%d rs=%d red=%d eps=%g z=%g cap=%g "
                "gs=%g ign=%d acc=%d scratch=%zu pad=%zu off=%zu masked=%zu",
                c.B, c.V, c.H, static_cast<int>(c.dtype), static_cast<int>(c.bias_dtype), static_cast<int>(c.gh_dtype),
                static_cast<int>(c.gw_dtype), static_cast<int>(c.gb_dtype), c.want_lse, c.weight, c.row_scale,
                c.reduction, c.eps, c.z_loss, c.softcap, c.grad_scale, c.ignore_every, c.accumulate, c.scratch, c.pad,
                c.offset, c.masked_classes);
  return buf;
}

DType Resolve(DType out, DType in) { return out == DType::kAuto ? in : out; }

// Inputs and outputs of one call.
struct LceCase {
  LceConfig c;
  Mat hidden, weight_m, bias;
  std::vector<int64_t> y64;
  std::vector<int32_t> y32;
  Vec cw, rs;
  Mat gh, gw, gb;
  Vec loss, row_loss, lse;
  std::vector<double> gh0, gw0, gb0;  // initial output values (accumulate)

  explicit LceCase(const LceConfig& cfg) : c(cfg), cw(cfg.V), rs(cfg.B), loss(1), row_loss(cfg.B), lse(cfg.B) {
    const size_t B = c.B, V = c.V, H = c.H;
    std::mt19937 rng(c.seed);
    hidden = Mat(B, H, c.dtype, H + c.pad, c.offset);
    weight_m = Mat(V, H, c.dtype, H + c.pad, c.offset);
    const auto hv = RandomNormal(B * H, c.hidden_sigma, c.seed + 1);
    const auto wv = RandomNormal(V * H, 1.0 / std::sqrt(static_cast<double>(H)), c.seed + 2);
    for (size_t i = 0; i < B; ++i)
      for (size_t k = 0; k < H; ++k) hidden.set(i, k, hv[i * H + k]);
    for (size_t v = 0; v < V; ++v)
      for (size_t k = 0; k < H; ++k) weight_m.set(v, k, wv[v * H + k]);
    if (c.bias_dtype != DType::kAuto) {
      bias = Mat(1, V, c.bias_dtype, V, c.offset);
      const auto bv = RandomNormal(V, 0.5, c.seed + 3);
      for (size_t v = 0; v < V; ++v) bias.set(0, v, v < c.masked_classes ? -kInf : bv[v]);
    }
    y64.resize(B);
    y32.resize(B);
    for (size_t i = 0; i < B; ++i) {
      int64_t t = static_cast<int64_t>(c.masked_classes + rng() % (V - c.masked_classes));
      if (c.ignore_every > 0 && i % static_cast<size_t>(c.ignore_every) == 1) t = -100;
      y64[i] = t;
      y32[i] = static_cast<int32_t>(t);
    }
    std::uniform_real_distribution<float> u(0.2f, 2.0f), s(-2.0f, 2.0f);
    for (size_t v = 0; v < V; ++v) cw[v] = u(rng);
    for (size_t i = 0; i < B; ++i) rs[i] = s(rng);
    // (grad_linear_bias's AUTO dtype is linear_weight's.)
    const DType ghd = Resolve(c.gh_dtype, c.dtype), gwd = Resolve(c.gw_dtype, c.dtype),
                gbd = Resolve(c.gb_dtype, c.dtype);
    gh = Mat(B, H, ghd, H + c.pad + 1, c.offset);
    gw = Mat(V, H, gwd, H + c.pad + 2, c.offset);
    gb = Mat(1, V, gbd, V, c.offset);
    // Outputs start with random values: overwritten, or accumulated into.
    const auto r0 = RandomNormal(B * H + V * H + V, 0.1, c.seed + 4);
    gh0.resize(B * H);
    gw0.resize(V * H);
    gb0.resize(V);
    for (size_t i = 0; i < B; ++i)
      for (size_t k = 0; k < H; ++k) gh0[i * H + k] = gh.set(i, k, r0[i * H + k]);
    for (size_t v = 0; v < V; ++v)
      for (size_t k = 0; k < H; ++k) gw0[v * H + k] = gw.set(v, k, r0[B * H + v * H + k]);
    for (size_t v = 0; v < V; ++v) gb0[v] = gb.set(0, v, r0[B * H + V * H + v]);
  }

  void Args(xent_linear_cross_entropy_args* a) {
    ASSERT_EQ(XENT_ARGS_INIT(xent_linear_cross_entropy_args, a), XENT_OK);
    a->batch = c.B;
    a->num_classes = c.V;
    a->hidden_size = c.H;
    // Required pointers must be non-NULL even for B = 0.
    static const int64_t dummy = 0;
    a->hidden = c.B ? hidden.data() : &dummy;
    a->hidden_stride = hidden.stride();
    a->hidden_dtype = hidden.dt();
    a->linear_weight = weight_m.data();
    a->linear_weight_stride = weight_m.stride();
    a->linear_weight_dtype = weight_m.dt();
    if (c.bias_dtype != DType::kAuto) {
      a->linear_bias = bias.data();
      a->linear_bias_dtype = bias.dt();
    }
    a->target = c.B == 0 ? static_cast<const void*>(&dummy)
                : c.i32  ? static_cast<const void*>(y32.data())
                         : static_cast<const void*>(y64.data());
    a->target_dtype = c.i32 ? XENT_I32 : XENT_I64;
    a->weight = c.weight ? cw.data() : nullptr;
    a->row_scale = c.row_scale ? rs.data() : nullptr;
    a->reduction = c.reduction;
    a->label_smoothing = c.eps;
    a->z_loss = c.z_loss;
    a->softcap = c.softcap;
    a->grad_scale = c.grad_scale;
    a->accumulate = c.accumulate;
    a->scratch_bytes = c.scratch;
    a->loss = loss.data();
    a->row_loss = row_loss.data();
    a->lse = c.want_lse ? lse.data() : nullptr;
    if (c.want_gh) {
      a->grad_hidden = gh.data();
      a->grad_hidden_stride = gh.stride();
      a->grad_hidden_dtype = static_cast<int32_t>(c.gh_dtype);
    }
    if (c.want_gw) {
      a->grad_linear_weight = gw.data();
      a->grad_linear_weight_stride = gw.stride();
      a->grad_linear_weight_dtype = static_cast<int32_t>(c.gw_dtype);
    }
    if (c.want_gb) {
      a->grad_linear_bias = gb.data();
      a->grad_linear_bias_dtype = static_cast<int32_t>(c.gb_dtype);
    }
    a->num_threads = c.num_threads;
  }

  xent_status Run() {
    xent_linear_cross_entropy_args a;
    Args(&a);
    return xent_linear_cross_entropy(&a);
  }
};

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
  const double g_rel = 2 * logit_err + 1e-5;
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
    c.gw_dtype = DType::kAuto;
    RunLce(c);
  }
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

XENT_INSTANTIATE_ALL_TARGETS(LinearCeTest);

}  // namespace
}  // namespace xent_test
