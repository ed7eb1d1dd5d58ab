// KL divergence and generalized JSD against the float64 reference, on every
// SIMD target; the reference's analytic gradients are themselves checked
// against finite differences of its loss.
#include <cmath>
#include <limits>
#include <string>

#include "tests/reference.h"
#include "tests/test_util.h"

namespace xent_test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Random row values of a distribution kind (0 logits, 1 log-probs, 2 probs);
// probs have exact zeros.
std::vector<double> KindValues(size_t B, size_t V, int kind, uint32_t seed, double zero_frac = 0.2) {
  const auto r = RandomNormal(B * V, 2.0, seed);
  std::vector<double> v(B * V);
  std::mt19937 rng(seed + 1);
  for (size_t i = 0; i < B; ++i) {
    if (kind == 0) {
      for (size_t j = 0; j < V; ++j) v[i * V + j] = r[i * V + j];
      continue;
    }
    double m = -kInf, s = 0;
    for (size_t j = 0; j < V; ++j) m = std::max(m, double(r[i * V + j]));
    std::vector<double> e(V);
    for (size_t j = 0; j < V; ++j) {
      e[j] = std::exp(r[i * V + j] - m);
      if (kind == 2 && V > 1 && std::uniform_real_distribution<double>(0, 1)(rng) < zero_frac) e[j] = 0;
      s += e[j];
    }
    if (s == 0) e[0] = s = 1;
    for (size_t j = 0; j < V; ++j) v[i * V + j] = kind == 1 ? std::log(e[j] / s) : e[j] / s;
  }
  return v;
}

struct KlCase {
  size_t B = 5, V = 17;
  int qk = 1, pk = 2;
  bool jsd = false;
  float beta = 0.5f, temperature = 1.0f;
  bool t2 = false;
  int reduction = XENT_REDUCTION_BATCHMEAN;
  float grad_scale = 1.0f;
  DType dt = DType::kF32, gdt = DType::kF32;
  bool labels = false, i32 = false, grad_x = true, grad_t = true, elem = true, inplace = false;
  size_t pad = 0, offset = 0;
  uint32_t seed = 1;
};

std::string Describe(const KlCase& c) {
  char b[300];
  std::snprintf(b, sizeof b, "B=%zu V=%zu qk=%d pk=%d jsd=%d beta=%g T=%g t2=%d red=%d dt=%d gdt=%d labels=%d inpl=%d",
                c.B, c.V, c.qk, c.pk, c.jsd, c.beta, c.temperature, c.t2, c.reduction, int(c.dt), int(c.gdt),
                c.labels, c.inplace);
  return b;
}

void RunKl(const KlCase& c) {
  SCOPED_TRACE(Describe(c));
  const size_t B = c.B, V = c.V;
  Mat x(B, V, c.dt, V + c.pad, c.offset), t(B, V, c.dt, V + c.pad + 1, c.offset);
  const auto xv0 = KindValues(B, V, c.qk, c.seed, 0.1);
  const auto tv0 = KindValues(B, V, c.pk, c.seed + 100);
  xent_ref::KlSpec s;
  s.B = B;
  s.V = V;
  s.x.resize(B * V);
  s.t.resize(B * V);
  for (size_t i = 0; i < B; ++i)
    for (size_t j = 0; j < V; ++j) {
      s.x[i * V + j] = x.set(i, j, xv0[i * V + j]);
      s.t[i * V + j] = t.set(i, j, tv0[i * V + j]);
    }
  s.qk = c.qk;
  s.pk = c.pk;
  s.jsd = c.jsd;
  s.beta = c.beta;
  s.temperature = c.temperature;
  s.t2 = c.t2;
  s.reduction = c.reduction;
  s.grad_scale = c.grad_scale;
  std::vector<int64_t> labels(B);
  std::vector<int32_t> labels32(B);
  if (c.labels) {
    for (size_t i = 0; i < B; ++i) {
      labels[i] = (i % 3 == 1) ? -100 : static_cast<int64_t>(i % V);
      labels32[i] = static_cast<int32_t>(labels[i]);
    }
    s.labels = labels;
  }
  const auto want = xent_ref::Divergence(s);

  const DType gdt = c.inplace ? c.dt : c.gdt;
  Mat gx(B, V, gdt, V + 3, c.offset), gt(B, V, gdt, V + 2, c.offset), elem(B, V, DType::kF32, V + 1, 0);
  Vec loss(1), row_loss(B);
  xent_divergence_args a;
  ASSERT_EQ(XENT_ARGS_INIT(xent_divergence_args, &a), XENT_OK);
  a.batch = B;
  a.num_classes = V;
  a.input = x.data();
  a.input_stride = x.stride();
  a.input_dtype = x.dt();
  a.input_kind = c.qk;
  a.target = t.data();
  a.target_stride = t.stride();
  a.target_dtype = t.dt();
  a.target_kind = c.pk;
  a.divergence = c.jsd ? XENT_DIVERGENCE_JSD : XENT_DIVERGENCE_KL;
  a.beta = c.beta;
  a.temperature = c.temperature;
  a.t2_scaling = c.t2;
  a.reduction = c.reduction;
  a.grad_scale = c.grad_scale;
  if (c.labels) {
    a.labels = c.i32 ? static_cast<const void*>(labels32.data()) : static_cast<const void*>(labels.data());
    a.labels_dtype = c.i32 ? XENT_I32 : XENT_I64;
  }
  a.loss = loss.data();
  a.row_loss = row_loss.data();
  if (c.elem) {
    a.elem_loss = static_cast<float*>(elem.data());
    a.elem_loss_stride = elem.stride();
  }
  Mat& gxo = c.inplace ? x : gx;
  if (c.grad_x) {
    a.grad_input = gxo.data();
    a.grad_input_stride = gxo.stride();
    a.grad_input_dtype = static_cast<int32_t>(gdt);
  }
  if (c.grad_t) {
    a.grad_target = gt.data();
    a.grad_target_stride = gt.stride();
    a.grad_target_dtype = static_cast<int32_t>(gdt);
  }
  ASSERT_EQ(xent_divergence(&a), XENT_OK) << xent_last_error();

  // Tolerances grow with the magnitude of the log-probabilities involved.
  double lmax = 1.0;
  for (size_t k = 0; k < B * V; ++k) {
    for (double v : {s.x[k] / (c.qk == 0 ? c.temperature : 1.0f), s.t[k] / (c.pk == 0 ? c.temperature : 1.0f)})
      if (std::isfinite(v)) lmax = std::max(lmax, std::fabs(v));
    if (c.qk == 2 && s.x[k] > 0) lmax = std::max(lmax, std::fabs(std::log(s.x[k])));
    if (c.pk == 2 && s.t[k] > 0) lmax = std::max(lmax, std::fabs(std::log(s.t[k])));
  }
  const double t2 = c.t2 ? double(c.temperature) * c.temperature : 1.0;
  const double row_abs = 2e-6 * lmax * t2 * (c.jsd ? 2 : 1);
  for (size_t i = 0; i < B; ++i) {
    EXPECT_TRUE(Close(row_loss[i], want.row_loss[i], 2e-6 * std::fabs(want.row_loss[i]) + row_abs))
        << "row_loss[" << i << "] = " << row_loss[i] << " want " << want.row_loss[i];
  }
  double div = 1;
  size_t rows = 0;
  for (size_t i = 0; i < B; ++i) rows += (c.labels && labels[i] == -100) ? 0 : 1;
  if (c.reduction == XENT_REDUCTION_MEAN) div = double(rows) * V;
  if (c.reduction == XENT_REDUCTION_BATCHMEAN) div = double(rows);
  EXPECT_TRUE(Close(loss[0], want.loss, 2e-6 * std::fabs(want.loss) + row_abs * B / div))
      << "loss = " << loss[0] << " want " << want.loss;
  size_t bad = 0;
  const double gabs = std::fabs(c.grad_scale) * t2 / div;
  for (size_t i = 0; i < B; ++i) {
    for (size_t j = 0; j < V; ++j) {
      const size_t k = i * V + j;
      if (c.elem && !Close(elem.get(i, j), want.elem[k], 2e-6 * std::fabs(want.elem[k]) + row_abs / 4) && ++bad < 5)
        ADD_FAILURE() << "elem[" << i << "][" << j << "] = " << elem.get(i, j) << " want " << want.elem[k];
      auto gtol = [&](double w) {
        if (gdt != DType::kF32) return Ulp(w, gdt) + 1e-6 * gabs;
        return 4e-6 * std::fabs(w) + 2e-6 * gabs * (c.jsd ? lmax : 1.0);
      };
      if (c.grad_x && !Close(gxo.get(i, j), want.gx[k], gtol(want.gx[k])) && ++bad < 5)
        ADD_FAILURE() << "grad_input[" << i << "][" << j << "] = " << gxo.get(i, j) << " want " << want.gx[k];
      if (c.grad_t && !Close(gt.get(i, j), want.gt[k], gtol(want.gt[k])) && ++bad < 5)
        ADD_FAILURE() << "grad_target[" << i << "][" << j << "] = " << gt.get(i, j) << " want " << want.gt[k];
    }
  }
  EXPECT_EQ(bad, 0u);
  EXPECT_TRUE(x.CanariesIntact() && t.CanariesIntact() && gx.CanariesIntact() && gt.CanariesIntact() &&
              elem.CanariesIntact() && loss.CanariesIntact() && row_loss.CanariesIntact());
}

// The reference's gradients agree with central differences of its loss.
TEST(KlReference, GradientsMatchFiniteDifferences) {
  for (int qk = 0; qk < 3; ++qk) {
    for (int pk = 0; pk < 3; ++pk) {
      for (double beta : {-1.0, 0.0, 0.3, 1.0}) {
        xent_ref::KlSpec s;
        s.B = 1;
        s.V = 6;
        s.qk = qk;
        s.pk = pk;
        s.jsd = beta >= 0;
        s.beta = beta < 0 ? 0.5 : beta;
        s.temperature = 1.7;
        s.reduction = 2;
        s.x = KindValues(1, 6, qk, 11, 0.0);
        s.t = KindValues(1, 6, pk, 12, 0.0);
        const auto r = xent_ref::Divergence(s);
        for (size_t j = 0; j < 6; ++j) {
          const double h = 1e-6;
          auto xp = s.x, xm = s.x, tp = s.t, tm = s.t;
          xp[j] += h;
          xm[j] -= h;
          tp[j] += h;
          tm[j] -= h;
          const double dx =
              (xent_ref::DivergenceRowLoss(s, xp.data(), s.t.data()) - xent_ref::DivergenceRowLoss(s, xm.data(), s.t.data())) / (2 * h);
          const double dt =
              (xent_ref::DivergenceRowLoss(s, s.x.data(), tp.data()) - xent_ref::DivergenceRowLoss(s, s.x.data(), tm.data())) / (2 * h);
          EXPECT_NEAR(r.gx[j], dx, 1e-5 * (1 + std::fabs(dx))) << qk << pk << beta << " j=" << j;
          EXPECT_NEAR(r.gt[j], dt, 1e-5 * (1 + std::fabs(dt))) << qk << pk << beta << " j=" << j;
        }
      }
    }
  }
}

class KlTest : public AllTargets {};

TEST_P(KlTest, KindsModes) {
  for (int qk = 0; qk < 3; ++qk) {
    for (int pk = 0; pk < 3; ++pk) {
      for (int m = 0; m < 5; ++m) {  // KL, JSD 0, 0.3, 0.5, 1
        KlCase c;
        c.qk = qk;
        c.pk = pk;
        c.jsd = m > 0;
        c.beta = m == 1 ? 0.0f : (m == 2 ? 0.3f : (m == 3 ? 0.5f : 1.0f));
        c.temperature = (qk == 0 || pk == 0) ? 2.0f : 1.0f;
        c.V = (m % 2) ? 300 : 17;
        c.seed = static_cast<uint32_t>(qk * 100 + pk * 10 + m);
        RunKl(c);
      }
    }
  }
}

TEST_P(KlTest, SizesDtypesReductions) {
  for (size_t V : {1, 2, 16, 17, 1000, 4097, 32003}) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      KlCase c;
      c.V = V;
      c.B = V > 5000 ? 2 : 5;
      c.qk = 0;
      c.pk = 0;
      c.dt = dt;
      c.gdt = (V % 2) ? dt : DType::kF32;
      c.reduction = static_cast<int>(V % 4);
      c.labels = V > 2;
      c.i32 = V % 3 == 0;
      c.seed = static_cast<uint32_t>(V + 13 * static_cast<int>(dt));
      RunKl(c);
      c.qk = 1;
      c.pk = 2;
      c.grad_t = false;
      RunKl(c);
    }
  }
}

TEST_P(KlTest, DistillationOptions) {
  for (float T : {1.0f, 2.0f, 4.0f}) {
    for (bool t2 : {false, true}) {
      KlCase c;
      c.qk = 0;
      c.pk = 0;
      c.V = 5000;
      c.B = 3;
      c.temperature = T;
      c.t2 = t2;
      c.grad_t = false;
      c.grad_scale = 0.5f;
      c.labels = t2;  // ignored rows mixed with the fast path
      c.pad = 5;
      c.offset = 2;
      RunKl(c);
      c.inplace = true;
      c.elem = false;
      RunKl(c);
    }
  }
}

TEST_P(KlTest, DistillationBf16) {
  KlCase c;
  c.qk = 0;
  c.pk = 0;
  c.V = 5000;
  c.B = 4;
  c.dt = DType::kBF16;
  c.gdt = DType::kBF16;
  c.grad_t = false;
  c.labels = true;
  RunKl(c);
  c.gdt = DType::kF32;
  c.temperature = 2.0f;
  RunKl(c);
}

TEST_P(KlTest, LargeVocab) {
  KlCase c;
  c.qk = 0;
  c.pk = 0;
  c.B = 2;
  c.V = 262144;
  c.grad_t = false;
  c.elem = false;
  RunKl(c);
}

// Masked classes: zero teacher probabilities and -inf logits on both sides.
TEST_P(KlTest, ZeroProbabilitiesAndMaskedLogits) {
  const size_t V = 8;
  Mat x(2, V, DType::kF32), t(2, V, DType::kF32), gx(2, V, DType::kF32);
  const double xv[2][8] = {{0.1, -kInf, 2.0, 0.3, -kInf, 1.0, 0.0, -1.0}, {1, 2, 3, 4, 5, 6, 7, 8}};
  const double tv[2][8] = {{1.0, -kInf, 0.5, -kInf, 2.0, 1.0, -kInf, 0.0}, {8, 7, 6, 5, 4, 3, 2, 1}};
  for (size_t i = 0; i < 2; ++i)
    for (size_t j = 0; j < V; ++j) {
      x.set(i, j, xv[i][j]);
      t.set(i, j, tv[i][j]);
    }
  Vec row_loss(2);
  xent_divergence_args a;
  XENT_ARGS_INIT(xent_divergence_args, &a);
  a.batch = 2;
  a.num_classes = V;
  a.input = x.data();
  a.target = t.data();
  a.input_kind = XENT_DIST_LOGITS;
  a.target_kind = XENT_DIST_LOGITS;
  a.row_loss = row_loss.data();
  a.grad_input = gx.data();
  a.reduction = XENT_REDUCTION_SUM;
  ASSERT_EQ(xent_divergence(&a), XENT_OK) << xent_last_error();
  // Row 0: the teacher puts mass on class 4 where the student is -inf: KL = +inf.
  EXPECT_EQ(row_loss[0], std::numeric_limits<float>::infinity());
  // Where both are -inf (class 1): 0 log 0 = 0, gradient 0.
  EXPECT_EQ(gx.get(0, 1), 0.0);
  EXPECT_TRUE(std::isfinite(row_loss[1]));
  for (size_t j = 0; j < V; ++j) EXPECT_TRUE(std::isfinite(gx.get(1, j)));
}

// A denormal beta: beta p underflows in f32 where p > 0; with q = 0 there the
// mixture is 0 and the term must be 0 (not 0 * inf), as must the gradients.
TEST_P(KlTest, JsdDenormalBeta) {
  for (int qk : {1, 2}) {
    for (int pk : {0, 2}) {
      KlCase c;
      c.qk = qk;
      c.pk = pk;
      c.jsd = true;
      c.beta = 1e-40f;
      c.V = 300;
      c.seed = static_cast<uint32_t>(qk * 10 + pk);
      RunKl(c);
      c.beta = 1.0f - 6e-8f;  // 1 - beta rounds near the bottom of f32's spacing
      RunKl(c);
    }
  }
}

// NaN on either side makes the row NaN, also where the other side's zero
// probability would mask the term; other rows are untouched by it.
TEST_P(KlTest, NaNPropagates) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const size_t B = 3, V = 7;
  for (int qk = 0; qk < 3; ++qk) {
    for (int pk = 0; pk < 3; ++pk) {
      for (int mode = 0; mode < 3; ++mode) {  // KL with grad_target, KL without (fast path for logits), JSD
        const bool jsd = mode == 2, with_gt = mode != 1;
        SCOPED_TRACE("qk=" + std::to_string(qk) + " pk=" + std::to_string(pk) + " mode=" + std::to_string(mode));
        auto zero_of = [](int kind) { return kind == 2 ? 0.0 : -kInf; };  // probability 0 in each kind
        auto xv = KindValues(B, V, qk, 7, 0.0), tv = KindValues(B, V, pk, 8, 0.0);
        xv[0 * V + 3] = nan;  // row 0: NaN input where the target is 0
        tv[0 * V + 3] = zero_of(pk);
        tv[1 * V + 2] = nan;  // row 1: NaN target where the input is 0
        xv[1 * V + 2] = zero_of(qk);
        Mat x(B, V, DType::kF32), t(B, V, DType::kF32), gx(B, V, DType::kF32), gt(B, V, DType::kF32);
        for (size_t k = 0; k < B * V; ++k) {
          x.set(k / V, k % V, xv[k]);
          t.set(k / V, k % V, tv[k]);
        }
        Vec row_loss(B), loss(1);
        xent_divergence_args a;
        XENT_ARGS_INIT(xent_divergence_args, &a);
        a.batch = B;
        a.num_classes = V;
        a.input = x.data();
        a.target = t.data();
        a.input_kind = qk;
        a.target_kind = pk;
        a.divergence = jsd ? XENT_DIVERGENCE_JSD : XENT_DIVERGENCE_KL;
        a.row_loss = row_loss.data();
        a.loss = loss.data();
        Mat elem(B, V, DType::kF32);
        a.elem_loss = static_cast<float*>(elem.data());
        a.grad_input = gx.data();
        if (with_gt) a.grad_target = gt.data();
        ASSERT_EQ(xent_divergence(&a), XENT_OK) << xent_last_error();
        // The NaN elements themselves, where the other side's 0 would mask.
        EXPECT_TRUE(std::isnan(elem.get(0, 3))) << elem.get(0, 3);
        EXPECT_TRUE(std::isnan(elem.get(1, 2))) << elem.get(1, 2);
        EXPECT_TRUE(std::isnan(row_loss[0])) << row_loss[0];
        EXPECT_TRUE(std::isnan(row_loss[1])) << row_loss[1];
        EXPECT_TRUE(std::isfinite(row_loss[2])) << row_loss[2];
        EXPECT_TRUE(std::isnan(loss[0]));
        for (size_t j = 0; j < V; ++j) {
          EXPECT_TRUE(std::isfinite(gx.get(2, j)) && std::isfinite(gt.get(2, j)) && std::isfinite(elem.get(2, j))) << j;
        }
      }
    }
  }
}

XENT_INSTANTIATE_ALL_TARGETS(KlTest);

}  // namespace
}  // namespace xent_test
