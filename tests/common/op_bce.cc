// BCE with logits: what its inputs mean, the float64 reference and the bounds.
#include "tests/common/op_util.h"
#include "tests/reference.h"

namespace xent_test {
namespace {

// Logits ~ mean + sigma N(0, 1); targets 0 (30 %), 1 (30 %) or uniform in
// [0, 1]; weights per class in [0.2, 2.2] (broadcast) or per element in
// [0, 2]; pos_weight in [0.5, 3.5].
void Fill(Case& c, Rng& rng) {
  const size_t B = c.B(), V = c.V();
  FillNormal(c.buf("logits"), rng, c.spec().sigma, c.spec().mean);
  Buffer* y = c.buf("target");
  for (size_t i = 0; i < B; ++i)
    for (size_t j = 0; j < V; ++j) {
      const double r = rng.Uniform();
      y->Set(i, j, r < 0.3 ? 0.0 : (r < 0.6 ? 1.0 : rng.Uniform()));
    }
  if (Buffer* w = c.buf("weight")) {
    const bool broadcast = c.StrideArg("weight") == 0;
    for (size_t i = 0; i < w->rows(); ++i)
      for (size_t j = 0; j < V; ++j) w->Set(i, j, broadcast ? 0.2 + 2 * rng.Uniform() : 2 * rng.Uniform());
  }
  if (Buffer* pw = c.buf("pos_weight"))
    for (size_t j = 0; j < V; ++j) pw->Set(j, 0, 0.5 + 3 * rng.Uniform());
}

std::vector<Expected> Reference(const Case& c, Profile p) {
  const size_t B = c.B(), V = c.V();
  const std::vector<double>& xv = c.Values("logits");
  const std::vector<double>& yv = c.Values("target");
  std::vector<double> wv;  // B x V (the broadcast row repeated)
  if (const Buffer* w = c.buf("weight")) {
    const std::vector<double>& raw = c.Values("weight");
    for (size_t i = 0; i < B; ++i)
      for (size_t j = 0; j < V; ++j) wv.push_back(raw[(w->rows() == 1 ? 0 : i) * V + j]);
  }
  const std::vector<double>& pwv = c.Values("pos_weight");
  const int reduction = c.I32("reduction");
  const double gs = c.F32("grad_scale");
  const xent_ref::BceOut r = xent_ref::Bce(xv, yv, B, V, wv, pwv, reduction, gs);
  double div = 1;
  if (reduction == XENT_REDUCTION_MEAN) div = double(B) * V;
  if (reduction == XENT_REDUCTION_BATCHMEAN) div = double(B);
  const DType gt = OutDType(c, "grad");
  std::vector<Tol> elem, grad, row;
  Tol loss;
  if (p == Profile::kContract) {
    double scale = 1;  // |x| (1 + pos_weight) |w| bound of the terms
    for (size_t k = 0; k < B * V; ++k) {
      const double t = (1 + std::fabs(xv[k])) * (1 + (pwv.empty() ? 1 : pwv[k % V])) * (wv.empty() ? 1 : wv[k]);
      scale = std::max(scale, t);
    }
    const double eabs = 2 * kEps * scale;
    elem.assign(1, Tol{kRowRel, eabs});
    row.assign(1, Tol{kRowRel, eabs * std::sqrt(static_cast<double>(V))});
    grad.assign(1, gt == DType::kF32 ? Tol{kGradRel, kGradAbs * std::fabs(gs)} : Tol{0, 1e-7});
    loss = Tol{kLossRel, eabs};
  } else {
    // Infinite logits: the header defines BCE there as the limit (tested in
    // tests/bce_test.cc); the reference's (1 - y) x + softplus(-x) form gives
    // NaN (-inf + inf): not compared.
    elem.resize(B * V);
    grad.resize(B * V);
    row.resize(B);
    double total_tol = 0;
    bool any_inf = false;
    for (size_t i = 0; i < B; ++i) {
      double row_tol = 0;
      bool row_inf = false;
      for (size_t j = 0; j < V; ++j) {
        const size_t k = i * V + j;
        elem[k].skip = grad[k].skip = true;
        if (std::isinf(xv[k])) {
          row_inf = any_inf = true;
          continue;
        }
        // An element beyond f32's range is inf in f32 arithmetic (and so its
        // row's and the total sum) where float64 sums it: sums not compared.
        if (std::fabs(r.elem[k]) > 3.4e38) row_inf = any_inf = true;
        const double ww = wv.empty() ? 1.0 : wv[k], pp = pwv.empty() ? 1.0 : pwv[j];
        const double xx = std::isfinite(xv[k]) ? std::fabs(xv[k]) : 0;
        // The library's f32 terms pw y softplus(-x) and (1 - y) softplus(x)
        // (times w): with targets outside [0, 1] they have opposite signs and
        // one can overflow f32 where their float64 sum does not.
        const double yy = yv[k], sp = std::log1p(std::exp(-xx));
        const double t1 = pp * yy * (sp + std::max(-xv[k], 0.0)), t2 = (1 - yy) * (sp + std::max(xv[k], 0.0));
        if (!(std::max(std::fabs(t1), std::fabs(t2)) * std::max(1.0, std::fabs(ww)) < 1e37)) {
          row_inf = any_inf = true;
          continue;
        }
        const double ea = 4e-6 * ww * (1 + pp) * (1 + kEps * xx);
        const double et = 8e-6 * std::fabs(r.elem[k]) + ea;
        row_tol += std::isfinite(et) ? et : 0;
        elem[k] = Tol{8e-6, ea};
        grad[k] = Tol{8e-6 + ScaleRel(gs / div), 4e-6 * ww * (1 + pp) * std::fabs(gs) / div};
      }
      // A row sum beyond f32's range: rows are summed in f32 (the header's
      // f64 reductions are across rows), inf where float64 is not.
      if (std::fabs(r.row_loss[i]) > 3.4e38) row_inf = any_inf = true;
      row[i] = Tol{8e-6, row_tol, row_inf};
      total_tol += row_tol;
    }
    loss = Tol{8e-6, total_tol / div, any_inf};
  }
  std::vector<Expected> out;
  if (c.has("loss")) out.push_back(Output(c, "loss", 1, 1, {r.loss}, {loss}));
  if (c.has("row_loss")) out.push_back(Output(c, "row_loss", B, 1, r.row_loss, row));
  if (c.has("elem_loss")) out.push_back(Output(c, "elem_loss", B, V, r.elem, elem));
  if (c.has("grad")) out.push_back(Output(c, "grad", B, V, r.grad, grad));
  return out;
}

}  // namespace

const OpHooks& BceHooks() {
  static const OpHooks h{&abi::kBce, MakeEntry(abi::kBce, &xent_bce_args_init, &xent_bce_with_logits), nullptr, &Fill,
                         &Reference};
  return h;
}

}  // namespace xent_test
