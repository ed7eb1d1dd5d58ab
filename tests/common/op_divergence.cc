// KL divergence and generalized JSD: what their inputs mean, the float64
// reference and the bounds.
#include "tests/common/op_util.h"
#include "tests/reference.h"

namespace xent_test {
namespace {

// Rows of a distribution kind (XENT_DIST_LOGITS: sigma N(0, 1); LOG_PROBS /
// PROBS: normalized, probabilities exactly 0 with zero_fraction (input 0.1,
// target 0.2 unless the spec says)); labels: class i % V, every k-th row
// (from row 1) ignored.
void FillSide(Buffer* b, int kind, double sigma, double zero_fraction, Rng& rng) {
  const size_t B = b->rows(), V = b->cols();
  std::vector<double> r(V), e(V);
  for (size_t i = 0; i < B; ++i) {
    for (double& v : r) v = sigma * rng.Normal();
    if (kind == XENT_DIST_LOGITS) {
      for (size_t j = 0; j < V; ++j) b->Set(i, j, r[j]);
      continue;
    }
    double m = -kInf, s = 0;
    for (double v : r) m = std::max(m, v);
    for (size_t j = 0; j < V; ++j) {
      e[j] = std::exp(r[j] - m);
      if (kind == XENT_DIST_PROBS && V > 1 && rng.Uniform() < zero_fraction) e[j] = 0;
      s += e[j];
    }
    if (s == 0) e[0] = s = 1;
    for (size_t j = 0; j < V; ++j) b->Set(i, j, kind == XENT_DIST_LOG_PROBS ? std::log(e[j] / s) : e[j] / s);
  }
}

void Fill(Case& c, Rng& rng) {
  const CaseSpec& s = c.spec();
  FillSide(c.buf("input"), c.I32("input_kind"), s.sigma, s.zero_fraction >= 0 ? s.zero_fraction : 0.1, rng);
  FillSide(c.buf("target"), c.I32("target_kind"), s.sigma, s.zero_fraction >= 0 ? s.zero_fraction : 0.2, rng);
  if (Buffer* l = c.buf("labels")) {
    for (size_t i = 0; i < c.B(); ++i) {
      const bool ignored = s.ignore_every > 0 && i % static_cast<size_t>(s.ignore_every) == 1;
      l->SetIndex(i, ignored ? c.I64("ignore_index") : static_cast<int64_t>(i % c.V()));
    }
  }
}

std::vector<Expected> Reference(const Case& c, Profile p) {
  const size_t B = c.B(), V = c.V();
  xent_ref::KlSpec s = RefSpec<xent_ref::KlSpec>(c);
  s.x = c.Values("input");
  s.t = c.Values("target");
  s.qk = c.I32("input_kind");
  s.pk = c.I32("target_kind");
  s.jsd = c.I32("divergence") == XENT_DIVERGENCE_JSD;
  s.beta = c.F32("beta");
  s.temperature = c.F32("temperature");
  s.t2 = c.I32("t2_scaling") != 0;
  s.reduction = c.I32("reduction");
  s.grad_scale = c.F32("grad_scale");
  s.labels = c.Indices("labels");
  s.ignore_index = c.I64("ignore_index");
  const double T = s.temperature;
  const float Tf = c.F32("temperature");
  if (p == Profile::kFuzz && ((s.qk == 0 && !ZFinite(s.x, T, 0)) || (s.pk == 0 && !ZFinite(s.t, T, 0)))) return {};
  const xent_ref::KlOut r = xent_ref::Divergence(s);
  // Tolerances grow with the magnitude of the log-probabilities involved.
  double lmax = 1.0;
  for (size_t k = 0; k < B * V; ++k) {
    for (double v : {s.x[k] / (s.qk == 0 ? Tf : 1.0f), s.t[k] / (s.pk == 0 ? Tf : 1.0f)})
      if (std::isfinite(v)) lmax = std::max(lmax, std::fabs(v));
    if (s.qk == 2 && s.x[k] > 0) lmax = std::max(lmax, std::fabs(std::log(s.x[k])));
    if (s.pk == 2 && s.t[k] > 0) lmax = std::max(lmax, std::fabs(std::log(s.t[k])));
  }
  const double t2 = s.t2 ? double(Tf) * Tf : 1.0;
  size_t rows = 0;
  for (size_t i = 0; i < B; ++i) rows += (!s.labels.empty() && s.labels[i] == s.ignore_index) ? 0 : 1;
  double div = 1;
  if (s.reduction == XENT_REDUCTION_MEAN) div = double(rows) * V;
  if (s.reduction == XENT_REDUCTION_BATCHMEAN) div = double(rows);
  const double gabs = std::fabs(s.grad_scale) * t2 / div;
  // A logits side's gradient is d/dlog-prob divided by T: so are its rounding
  // errors (an ulp of p in q sum_p - p at T = 0.001 is 1000 ulps of gabs;
  // fuzzfast found the missing factor).
  const double gabs_x = gabs / (s.qk == 0 ? T : 1.0), gabs_t = gabs / (s.pk == 0 ? T : 1.0);
  const DType gxt = OutDType(c, "grad_input"), gtt = OutDType(c, "grad_target");
  std::vector<Tol> row(B), elem(B), gx(B), gt(B);
  Tol loss;
  if (p == Profile::kContract) {
    const double row_abs = 2e-6 * lmax * t2 * (s.jsd ? 2 : 1);
    auto gtol = [&](DType d, double ga) {
      return d == DType::kF32 ? Tol{4e-6, 2e-6 * ga * (s.jsd ? lmax : 1.0)} : Tol{0, 1e-6 * ga};
    };
    for (size_t i = 0; i < B; ++i) {
      row[i] = Tol{kRowRel, row_abs};
      elem[i] = Tol{kRowRel, row_abs / 4};
      gx[i] = gtol(gxt, gabs_x);
      gt[i] = gtol(gtt, gabs_t);
    }
    loss = Tol{kLossRel, row_abs * B / div};
  } else {
    const double row_abs = 8e-6 * lmax * t2 * (s.jsd ? 2 : 1);
    // Probabilities below f32's range: exp(log p) (or a softmax term more than
    // ~87 below the row's max) is 0 in f32 (the header flushes it) but not in
    // float64, and where the other side is 0 the element is 0 log 0 = 0 in
    // one and +inf in the other. Such rows are not compared.
    std::vector<bool> nan_row(B, false);
    bool any_nan = false;
    for (size_t i = 0; i < B; ++i) {
      for (int side = 0; side < 2; ++side) {
        const std::vector<double>& v = side ? s.t : s.x;
        const int kind = side ? s.pk : s.qk;
        double lo = kInf, hi = -kInf;
        for (size_t j = 0; j < V; ++j) {
          const double e = v[i * V + j];
          if (!std::isfinite(e)) continue;
          if (kind == 1 && e < -87.0) nan_row[i] = any_nan = true;
          if (kind == 2 && e > 0 && e < 1.2e-38) nan_row[i] = any_nan = true;
          lo = std::min(lo, e);
          hi = std::max(hi, e);
        }
        if (kind == 0 && hi - lo > 87.0 * T) nan_row[i] = any_nan = true;
      }
    }
    for (size_t i = 0; i < B; ++i) {
      row[i] = Tol{8e-6, row_abs, bool(nan_row[i])};
      elem[i] = Tol{8e-6, row_abs / 4, bool(nan_row[i])};
      // An infinite (or NaN) row loss (p > 0 where q = 0): the gradient is
      // not defined by the header (reference: +-inf from inf - p inf, the
      // library may give NaN); only the losses are compared.
      const bool skip = nan_row[i] || !std::isfinite(r.row_loss[i]);
      // KL's target gradient is p (log p - log q - KL) / T: its rounding
      // error grows with the log-probabilities' magnitude too (fuzzfast: at
      // T = 0.5 and logits of sigma 10, 4.7e-6 against a bound of 4.3e-6).
      // So does a logits side's softmax, from its f32 x / T (logits around
      // -1e5 at T = 100: 1.6e-7 against 8.7e-8).
      // Relative to each element, a logits side's probabilities carry the
      // rounding of their f32 z = x / T, up to ~ulp(max |z|) (RowTol): the
      // whole of a probabilities input's gradient -p / q where q is tiny
      // (fuzzfast: logits around -1e5 at T = 100, q = 1e-30: 1.7e-5 of
      // -1.2e26 against a bound of 1.6e-5).
      double zrel = 0;
      if (s.qk == 0) zrel = std::max(zrel, RowTol(s.x, i, V, T, 0));
      if (s.pk == 0) zrel = std::max(zrel, RowTol(s.t, i, V, T, 0));
      gx[i] = Tol{16e-6 + zrel + ScaleRel(gabs), 8e-6 * gabs_x * (s.jsd ? lmax : 1.0 + lmax / 32), skip};
      gt[i] = Tol{16e-6 + zrel + ScaleRel(gabs), 8e-6 * gabs_t * (s.jsd ? lmax : std::max(1.0, lmax / 8)), skip};
    }
    loss = Tol{8e-6, row_abs * B / div, any_nan};
  }
  std::vector<Expected> out;
  if (c.has("loss")) out.push_back(Output(c, "loss", 1, 1, {r.loss}, {loss}));
  if (c.has("row_loss")) out.push_back(Output(c, "row_loss", B, 1, r.row_loss, row));
  if (c.has("elem_loss")) out.push_back(Output(c, "elem_loss", B, V, r.elem, elem));
  if (c.has("grad_input")) out.push_back(Output(c, "grad_input", B, V, r.gx, gx));
  if (c.has("grad_target")) out.push_back(Output(c, "grad_target", B, V, r.gt, gt));
  return out;
}

}  // namespace

const OpHooks& DivergenceHooks() {
  static const OpHooks h{&abi::kDivergence, MakeEntry(abi::kDivergence, &xent_divergence_args_init, &xent_divergence),
                         nullptr, &Fill, &Reference};
  return h;
}

}  // namespace xent_test
