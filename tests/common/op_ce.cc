// Cross-entropy: what its inputs mean, its float64 reference and its bounds.
#include <algorithm>
#include <cmath>

#include "tests/common/op_util.h"
#include "tests/reference.h"

namespace xent_test {
namespace {

bool Soft(const Case& c) { return IsFloat(c.buf("target")->dtype()); }

// Logits ~ mean + sigma N(0, 1); hard targets uniform (every k-th row
// ignored, k = spec.ignore_every, from row 0); soft targets: rows of
// probabilities, a quarter of them exactly 0; weights in [0.1, 2]; row
// scales in [-2, 2].
void Fill(Case& c, Rng& rng) {
  const CaseSpec& s = c.spec();
  FillNormal(c.buf("logits"), rng, s.sigma, s.mean);
  Buffer* t = c.buf("target");
  if (Soft(c)) {
    std::vector<double> e(c.V());
    for (size_t i = 0; i < c.B(); ++i) {
      double sum = 0;
      for (size_t j = 0; j < c.V(); ++j) {
        e[j] = rng.Below(4) == 0 ? 0.0 : std::exp(2 * rng.Normal());
        sum += e[j];
      }
      for (size_t j = 0; j < c.V(); ++j) t->Set(i, j, sum > 0 ? e[j] / sum : 0.0);
    }
  } else {
    FillLabels(t, rng, c.V(), s.ignore_every, 0, c.I64("ignore_index"));
  }
  if (Buffer* w = c.buf("weight"))
    for (size_t j = 0; j < c.V(); ++j) w->Set(j, 0, rng.Uniform(0.1, 2.0));
  if (Buffer* r = c.buf("row_scale"))
    for (size_t i = 0; i < c.B(); ++i) r->Set(i, 0, rng.Uniform(-2.0, 2.0));
}

std::vector<Expected> Reference(const Case& c, Profile p) {
  const size_t B = c.B(), V = c.V();
  xent_ref::CeSpec s = RefSpec<xent_ref::CeSpec>(c);
  s.x = c.Values("logits");
  s.soft = Soft(c);
  if (s.soft)
    s.q = c.Values("target");
  else
    s.y = c.Indices("target");
  s.weight = c.Values("weight");
  s.row_scale = c.Values("row_scale");
  s.ignore_index = c.I64("ignore_index");
  s.reduction = c.I32("reduction");
  s.eps = c.F32("label_smoothing");
  s.z_loss = c.F32("z_loss");
  s.softcap = c.F32("softcap");
  s.grad_scale = c.F32("grad_scale");
  const xent_ref::CeOut r = xent_ref::CrossEntropy(s);
  const double cap = s.softcap, zmax = MaxAbs(s.x, cap);
  const DType gt = OutDType(c, "grad");
  std::vector<Tol> row, lse, grad;
  Tol loss;
  if (p == Profile::kContract) {
    // A loss near 0 is a difference of O(|z|) numbers; softcap's tanh has a
    // few ulp of error.
    const double row_abs = kRowAbs + (cap > 0 ? 8 : 2) * kEps * zmax;
    row.assign(1, Tol{kRowRel, row_abs});
    lse = row;
    loss = Tol{kLossRel, cap > 0 ? row_abs : 0.0};
    if (gt == DType::kF32) {
      grad.assign(1, Tol{0, kGradAbs * std::max(1.0, std::fabs(s.grad_scale)) * (cap > 0 ? 4 : 1)});
    } else {
      grad.assign(1, Tol{0, kGradAbs});
    }
  } else {
    if (!ZFinite(s.x, 1.0, cap)) return {};
    // 4x, scaled by weights, soft-target mass and z-loss.
    double wmax = 1.0, qsum_max = 1.0, rsmax = 1.0;
    for (double v : s.weight) wmax = std::max(wmax, v);
    for (double v : s.row_scale) rsmax = std::max(rsmax, std::fabs(v));
    if (s.soft) {
      for (size_t i = 0; i < B; ++i) {
        double q = 0;
        for (size_t j = 0; j < V; ++j) q += std::isfinite(s.q[i * V + j]) ? std::fabs(s.q[i * V + j]) : 0;
        qsum_max = std::max(qsum_max, q);
      }
    }
    const double zl = 1 + 2 * s.z_loss * zmax + s.z_loss * zmax * 1e-6 * zmax;
    const double row_abs = (8e-6 + (cap > 0 ? 32 : 8) * kEps * zmax) * wmax * qsum_max * zl;
    double rows_tol = 0, divisor = 0;
    for (size_t i = 0; i < B; ++i) {
      const double rt = 8e-6 * std::fabs(r.row_loss[i]) + row_abs;
      rows_tol += std::isfinite(rt) ? rt : 0;
      if (s.soft)
        divisor += 1;
      else if (s.y[i] != s.ignore_index)
        divisor += s.weight.empty() ? 1.0 : s.weight[static_cast<size_t>(s.y[i])];
    }
    const double div = s.reduction == 1 ? divisor : 1.0;
    row.assign(1, Tol{8e-6, row_abs});
    lse = row;
    loss = Tol{8e-6, rows_tol / div};
    const double gabs = std::fabs(s.grad_scale) * rsmax * wmax * qsum_max * zl / div;
    // The smallest nonzero per-row factor grad_scale / div * row_scale.
    double fmin = std::fabs(s.grad_scale) / div;
    double rsmin = 1.0;
    for (double v : s.row_scale)
      if (v != 0) rsmin = std::min(rsmin, std::fabs(v));
    fmin *= rsmin;
    grad.assign(1, Tol{8e-6 + ScaleRel(fmin), gabs * (4e-6 + 8 * kEps * zmax) * (cap > 0 ? 8 : 1)});
    // The smoothing / soft-target sum sum_c a_c (z_c - max z) accumulates in
    // f32 (xent.h): a row where its magnitude reaches FLT_MAX (within the
    // partial sums' rounding) may overflow to an infinite loss.
    if (s.eps > 0 || s.soft) {
      auto z = [&](double x) { return cap > 0 ? cap * std::tanh(x / cap) : x; };
      bool any = false;
      std::vector<Tol> rows(B, row[0]);
      for (size_t i = 0; i < B; ++i) {
        double m = -INFINITY, big = 0;
        for (size_t j = 0; j < V; ++j) m = std::max(m, z(s.x[i * V + j]));
        for (size_t j = 0; j < V; ++j) {
          const double w = s.weight.empty() ? 1.0 : s.weight[j];
          // The kernels' a_c: w_c (smoothing; eps / V applied to the sum) or
          // w_c ((1 - eps) q_c + eps / V) (probability targets).
          const double a = s.soft ? w * (std::fabs(s.q[i * V + j]) * (1 - s.eps) + s.eps / double(V)) : w;
          const double zm = m - z(s.x[i * V + j]);
          if (a != 0 && std::isfinite(zm)) big += std::fabs(a) * zm;
        }
        if (big >= 0.5 * 3.4028234663852886e38) rows[i].skip = any = true;
      }
      if (any) {
        row = rows;
        loss.skip = true;
      }
    }
    if (s.reduction == 1 && divisor == 0) {
      grad[0].skip = true;
      // Every weight w_y zero: sum / 0. A sum within the rows' rounding of 0
      // (a z-loss row of 1e-76 is 0 in f32) gives NaN as well as +-inf.
      double sum = 0;
      for (double l : r.row_loss) sum += l;
      if (std::fabs(sum) <= rows_tol) loss.skip = true;
    }
  }
  std::vector<Expected> out;
  if (c.has("loss")) out.push_back(Output(c, "loss", 1, 1, {r.loss}, {loss}));
  if (c.has("row_loss")) out.push_back(Output(c, "row_loss", B, 1, r.row_loss, row));
  if (c.has("lse")) out.push_back(Output(c, "lse", B, 1, r.lse, lse));
  if (c.has("grad")) out.push_back(Output(c, "grad", B, V, r.grad, grad));
  return out;
}

}  // namespace

const OpHooks& CrossEntropyHooks() {
  static const OpHooks h{&abi::kCrossEntropy,
                         MakeEntry(abi::kCrossEntropy, &xent_cross_entropy_args_init, &xent_cross_entropy), nullptr,
                         &Fill, &Reference};
  return h;
}

}  // namespace xent_test
