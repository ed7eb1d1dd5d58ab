// The softmax family, token log-probabilities and softmax backward: what their
// inputs mean, their float64 references and their bounds.
#include <algorithm>
#include <cmath>

#include "tests/common/op_util.h"
#include "tests/reference.h"

namespace xent_test {
namespace {

// ---------------------------------------------------------------------------
// Softmax: logits ~ mean + sigma N(0, 1).
void FillSoftmax(Case& c, Rng& rng) { FillNormal(c.buf("logits"), rng, c.spec().sigma, c.spec().mean); }

std::vector<Expected> RefSoftmax(const Case& c, Profile p) {
  const size_t B = c.B(), V = c.V();
  const std::vector<double>& x = c.Values("logits");
  const double T = c.F32("temperature");
  if (p == Profile::kFuzz && !ZFinite(x, T, 0)) return {};
  const xent_ref::SoftmaxOut r = xent_ref::Softmax(x, B, V, T);
  std::vector<Tol> row(B), probs(B), lp(B);
  const DType pt = OutDType(c, "probs"), lpt = OutDType(c, "log_probs");
  for (size_t i = 0; i < B; ++i) {
    const double zmax = RowMaxAbs(x, i, V, 1.0 / T);
    if (p == Profile::kContract) {
      const double rt = kRowAbs + 2 * kEps * zmax;
      row[i] = Tol{kRowRel, rt};
      probs[i] = pt == DType::kF32 ? Tol{kGradRel, kGradAbs} : Tol{0, 1e-7};
      lp[i] = lpt == DType::kF32 ? Tol{kRowRel, rt} : Tol{0, 1e-7};
    } else {
      const double rt = 8e-6 + 8 * kEps * zmax;
      row[i] = Tol{8e-6, rt};
      // An error rt in log p is a factor exp(+-rt) on p: a relative bound of
      // expm1(rt), not rt (rt is large when z = x / T reaches ~1e6 and beyond,
      // where f32 spacing of z is ~0.1 or more: fuzzfast, logits ~ -1e5 at
      // T = 0.001, z spaced by 8, p 0.5 for 0.0004).
      probs[i] = Tol{std::expm1(std::min(rt, 80.0)), 4e-6};
      lp[i] = Tol{8e-6, rt};
    }
  }
  std::vector<Expected> out;
  if (c.has("probs")) out.push_back(Output(c, "probs", B, V, r.probs, probs));
  if (c.has("log_probs")) out.push_back(Output(c, "log_probs", B, V, r.log_probs, lp));
  if (c.has("lse")) out.push_back(Output(c, "lse", B, 1, r.lse, row));
  if (c.has("entropy")) out.push_back(Output(c, "entropy", B, 1, r.entropy, row));
  return out;
}

// ---------------------------------------------------------------------------
// Token log-probabilities: logits ~ mean + sigma N(0, 1); targets uniform,
// every k-th row (from row 1) ignored.
void FillTokenLogprobs(Case& c, Rng& rng) {
  FillNormal(c.buf("logits"), rng, c.spec().sigma, c.spec().mean);
  if (Buffer* t = c.buf("target")) FillLabels(t, rng, c.V(), c.spec().ignore_every, 1, c.I64("ignore_index"));
}

std::vector<Expected> RefTokenLogprobs(const Case& c, Profile p) {
  const size_t B = c.B(), V = c.V();
  const std::vector<double>& x = c.Values("logits");
  const double T = c.F32("temperature"), cap = c.F32("softcap");
  if (p == Profile::kFuzz && !ZFinite(x, T, cap)) return {};
  const xent_ref::SoftmaxOut sm = xent_ref::Softmax(x, B, V, T, cap);
  std::vector<int64_t> y = c.Indices("target");
  std::vector<double> lp(B, 0.0);
  if (!y.empty()) lp = xent_ref::TokenLogprobs(x, y, B, V, T, cap, c.I64("ignore_index"));
  std::vector<Tol> tol(B);
  for (size_t i = 0; i < B; ++i) {
    if (p == Profile::kContract) {
      double rt = kRowAbs + 2 * kEps * RowMaxAbs(x, i, V, 1.0 / T);
      if (cap > 0) rt += 8 * kEps * cap / T;
      tol[i] = Tol{kRowRel, rt};
    } else {
      // softcap's x / cap rounds to 2^-149 absolute where it is subnormal:
      // an error of z of cap / T times that (tiny logits, tiny temperature).
      const double sub = cap > 0 ? 4 * 0x1p-149 * cap / T : 0;
      tol[i] = Tol{8e-6, 8e-6 + (cap > 0 ? 32 : 8) * kEps * RowMaxAbs(x, i, V, 1.0 / T, cap) + sub};
    }
  }
  std::vector<Expected> out;
  if (c.has("logprob")) out.push_back(Output(c, "logprob", B, 1, lp, tol));
  if (c.has("entropy")) out.push_back(Output(c, "entropy", B, 1, sm.entropy, tol));
  if (c.has("lse")) out.push_back(Output(c, "lse", B, 1, sm.lse, tol));
  return out;
}

// ---------------------------------------------------------------------------
// Softmax backward: output = softmax or log_softmax (as output_kind says) of
// sigma N(0, 1) logits; grad_output ~ N(0, 1).
void FillSoftmaxBackward(Case& c, Rng& rng) {
  const size_t B = c.B(), V = c.V();
  const bool log = c.I32("output_kind") == XENT_DIST_LOG_PROBS;
  std::vector<double> z(B * V);
  for (double& v : z) v = c.spec().sigma * rng.Normal();
  const xent_ref::SoftmaxOut sm = xent_ref::Softmax(z, B, V, 1.0);
  Buffer* y = c.buf("output");
  for (size_t i = 0; i < B; ++i)
    for (size_t j = 0; j < V; ++j) y->Set(i, j, log ? sm.log_probs[i * V + j] : sm.probs[i * V + j]);
  FillNormal(c.buf("grad_output"), rng, 1.0);
}

std::vector<Expected> RefSoftmaxBackward(const Case& c, Profile p) {
  const size_t B = c.B(), V = c.V();
  const bool log = c.I32("output_kind") == XENT_DIST_LOG_PROBS;
  const std::vector<double>& y = c.Values("output");
  const std::vector<double>& g = c.Values("grad_output");
  const double T = c.F32("temperature");
  const DType gt = OutDType(c, "grad_input");
  std::vector<Tol> tol;
  if (p == Profile::kContract) {
    tol.assign(1, gt == DType::kF32 ? Tol{kGradRel, 4e-6} : Tol{0, 1e-7});
  } else {
    // Domain: products and exp(y) stay within f32.
    for (double v : y)
      if (std::isfinite(v) && (std::fabs(v) > 1e15 || (log && v > 80))) return {};
    for (double v : g)
      if (std::isfinite(v) && std::fabs(v) > 1e15) return {};
    if (std::fabs(1.0 / T) > 1e15) return {};
    tol.resize(B * V);
    for (size_t i = 0; i < B; ++i) {
      // An infinite grad_output (or +inf output) makes the row inf - inf in
      // one order of evaluation and +-inf in another: not compared.
      bool inf_row = false;
      double S = 0;
      for (size_t j = 0; j < V; ++j) {
        const double yy = y[i * V + j], gg = g[i * V + j];
        inf_row = inf_row || std::isinf(gg) || yy == kInf;
        S += log ? std::fabs(gg) : std::fabs(gg * yy);
      }
      for (size_t j = 0; j < V; ++j) {
        const double yy = y[i * V + j], gg = g[i * V + j];
        const double M = log ? (std::fabs(gg) + std::exp(yy) * S) / T : (std::fabs(yy * gg) + std::fabs(yy) * S) / T;
        tol[i * V + j] = Tol{0, std::isfinite(M) ? 1e-5 * M + 1e-30 : kInf, inf_row};
      }
    }
  }
  return {Output(c, "grad_input", B, V, xent_ref::SoftmaxBackward(y, g, B, V, log, T), tol)};
}

}  // namespace

const OpHooks& SoftmaxHooks() {
  static const OpHooks h{&abi::kSoftmax, MakeEntry(abi::kSoftmax, &xent_softmax_args_init, &xent_softmax), nullptr,
                         &FillSoftmax, &RefSoftmax};
  return h;
}
const OpHooks& TokenLogprobsHooks() {
  static const OpHooks h{&abi::kTokenLogprobs,
                         MakeEntry(abi::kTokenLogprobs, &xent_token_logprobs_args_init, &xent_token_logprobs), nullptr,
                         &FillTokenLogprobs, &RefTokenLogprobs,
                         // The per-token statistics appended after 0.1.0:
                         // tests/token_stats_test.cc (float64 reference,
                         // every target) until these hooks know them.
                         "argmax|argmax_logprob|topk_logprobs|topk_indices|topk_mass|ref_logits|ref_logprob|"
                         "ref_lse|kl"};
  return h;
}
const OpHooks& SoftmaxBackwardHooks() {
  static const OpHooks h{&abi::kSoftmaxBackward,
                         MakeEntry(abi::kSoftmaxBackward, &xent_softmax_backward_args_init, &xent_softmax_backward),
                         nullptr, &FillSoftmaxBackward, &RefSoftmaxBackward};
  return h;
}

}  // namespace xent_test
