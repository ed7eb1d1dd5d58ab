// The RL operations' hooks: token log-probabilities' backward (the gradient
// of per-row log p(target) and entropy terms) and the KL penalty estimators
// between two per-token log-probabilities. What their inputs mean, their
// float64 references (tests/token_stats_reference.h) and their bounds.
#include "tests/common/op_util.h"
#include "tests/token_stats_reference.h"

namespace xent_test {
namespace {

// ---------------------------------------------------------------------------
// Token log-probabilities backward: logits ~ mean + sigma N(0, 1); targets
// uniform, every k-th row (from row 1) ignored; upstream gradients ~ N(0, 1)
// for log p(target) and N(0, 0.5) for the entropy; lse and entropy, when
// passed, are the forward's (float64, rounded to f32 as the library's
// forward writes them).
xent_ref::TokSpec TokSpecOf(const Case& c, const std::vector<double>& x) {
  xent_ref::TokSpec s;
  s.B = c.B();
  s.V = c.V();
  s.x = x;
  s.y = c.Indices("target");
  s.ignore_index = c.I64("ignore_index");
  s.temperature = c.F32("temperature");
  s.softcap = c.F32("softcap");
  return s;
}

void FillBackward(Case& c, Rng& rng) {
  const size_t B = c.B(), V = c.V();
  Buffer* lg = c.buf("logits");
  FillNormal(lg, rng, c.spec().sigma, c.spec().mean);
  if (Buffer* t = c.buf("target")) FillLabels(t, rng, V, c.spec().ignore_every, 1, c.I64("ignore_index"));
  if (Buffer* g = c.buf("grad_logprob")) FillNormal(g, rng, 1.0);
  if (Buffer* g = c.buf("grad_entropy")) FillNormal(g, rng, 0.5);
  Buffer* lse = c.buf("lse");
  Buffer* ent = c.buf("entropy");
  if (lse == nullptr && ent == nullptr) return;
  std::vector<double> x(B * V);  // the logits as the library reads them
  for (size_t i = 0; i < B; ++i)
    for (size_t j = 0; j < V; ++j) x[i * V + j] = lg->Get(i, j);
  xent_ref::TokSpec s = TokSpecOf(c, x);
  s.y.clear();
  const xent_ref::TokOut f = xent_ref::TokenStats(s);
  for (size_t i = 0; i < B; ++i) {
    if (lse) lse->Set(i, 0, f.lse[i]);
    if (ent) ent->Set(i, 0, f.entropy[i]);
  }
}

std::vector<Expected> RefBackward(const Case& c, Profile p) {
  const size_t B = c.B(), V = c.V();
  const std::vector<double>& x = c.Values("logits");
  const double T = c.F32("temperature"), cap = c.F32("softcap");
  if (p == Profile::kFuzz && !ZFinite(x, T, cap)) return {};
  const xent_ref::TokSpec s = TokSpecOf(c, x);
  xent_ref::TokGradSpec gs;
  if (c.has("grad_logprob") && c.has("target")) gs.g_lp = c.Values("grad_logprob");
  if (c.has("grad_entropy")) gs.g_h = c.Values("grad_entropy");
  std::vector<double> want = xent_ref::TokenObjectiveGrad(s, gs);
  // The saved forward statistics the call reads, when given (the library
  // then uses them as they are: the fill's f32-rounded float64 values).
  const bool given = c.has("lse") || c.has("entropy");
  const DType gt = OutDType(c, "grad");
  std::vector<Tol> tol(B);
  for (size_t i = 0; i < B; ++i) {
    // p times O(|log p|) terms, each with the rounding of the row's largest
    // z (and of the saved statistics): the row's bound times the upstream
    // coefficients (the entropy term's log p + H is up to a few zmax).
    const double zmax = RowMaxAbs(x, i, V, 1.0 / T, cap);
    const double coef = std::max(1.0, (gs.g_lp.empty() ? 0.0 : std::fabs(gs.g_lp[i])) +
                                          (gs.g_h.empty() ? 0.0 : 4 * std::fabs(gs.g_h[i]) * zmax));
    const double rt = RowTol(x, i, V, T, cap) + (given ? 2 * kEps * zmax : 0);
    if (p == Profile::kContract) {
      tol[i] = Tol{gt == DType::kF32 ? kGradRel : 0, rt * coef / T};
    } else {
      tol[i] = Tol{8e-6, 4 * rt * coef / T};
    }
  }
  return {Output(c, "grad", B, V, std::move(want), tol)};
}

// ---------------------------------------------------------------------------
// KL penalty: log-probabilities -|N(0, sigma)|; the reference model's equal
// to the policy's on every 5th row, else -|N(0, sigma)| (x10 on every 7th:
// large log-ratios, where the clamps act); upstream gradient ~ N(0, 1).
void FillKlPenalty(Case& c, Rng& rng) {
  const size_t B = c.B();
  Buffer* lp = c.buf("logprob");
  Buffer* rp = c.buf("ref_logprob");
  const double sigma = c.spec().sigma;
  for (size_t i = 0; i < B; ++i) {
    const double a = -std::fabs(sigma * rng.Normal());
    const double b = -std::fabs(sigma * rng.Normal()) * (i % 7 == 0 ? 10 : 1);
    lp->Set(i, 0, a);
    rp->Set(i, 0, i % 5 == 0 ? lp->Get(i, 0) : b);
  }
  if (Buffer* g = c.buf("grad_output")) FillNormal(g, rng, 1.0);
}

std::vector<Expected> RefKlPenalty(const Case& c, Profile p) {
  const size_t B = c.B();
  const std::vector<double>& lp = c.Values("logprob");
  const std::vector<double>& rp = c.Values("ref_logprob");
  const std::vector<double>& go = c.Values("grad_output");  // empty when absent
  const int kind = c.I32("estimator");
  const double rc = c.F32("log_ratio_clamp"), vc = c.F32("value_clamp");
  const bool st = c.I32("straight_through") != 0;
  std::vector<double> pen(B), grad(B);
  std::vector<Tol> pt(B), gt(B);
  const double k = p == Profile::kContract ? 1 : 4;
  for (size_t i = 0; i < B; ++i) {
    const xent_ref::KlPenaltyOut w = xent_ref::KlPenalty(lp[i], rp[i], kind, rc, vc, st);
    const double up = go.empty() ? 1.0 : go[i];
    pen[i] = w.value;
    grad[i] = w.grad * up;
    // The log-ratio d = logp - ref is rounded to f32 once: its error, times
    // the estimator's slope (e^-d for K3, up to e^clamp; |d| for K2).
    const double dtol = kEps * (std::fabs(lp[i]) + std::fabs(rp[i]));
    const double d = lp[i] - rp[i];
    const double slope = 1 + std::fabs(d) + std::exp(std::min(-d, rc > 0 ? rc : 80.0));
    if (p == Profile::kFuzz && !std::isfinite(slope * dtol)) {
      pt[i].skip = gt[i].skip = true;
      continue;
    }
    pt[i] = Tol{k * 2e-6, k * (2e-6 + 2 * dtol * slope)};
    gt[i] = Tol{k * 2e-6, k * (2e-6 + 2 * dtol * slope) * std::fabs(up)};
  }
  std::vector<Expected> out;
  if (c.has("penalty")) out.push_back(Output(c, "penalty", B, 1, pen, pt));
  if (c.has("grad_logprob")) out.push_back(Output(c, "grad_logprob", B, 1, grad, gt));
  return out;
}

}  // namespace

const OpHooks& TokenLogprobsBackwardHooks() {
  static const OpHooks h{
      &abi::kTokenLogprobsBackward,
      MakeEntry(abi::kTokenLogprobsBackward, &xent_token_logprobs_backward_args_init, &xent_token_logprobs_backward),
      nullptr, &FillBackward, &RefBackward,
      // The top-k and reference-model terms:
      // tests/token_stats_test.cc (float64 reference,
      // finite differences, every target) until these
      // hooks know them.
      "topk_indices|grad_topk_logprobs|ref_logits|grad_kl|ref_lse|kl"};
  return h;
}
const OpHooks& KlPenaltyHooks() {
  static const OpHooks h{&abi::kKlPenalty, MakeEntry(abi::kKlPenalty, &xent_kl_penalty_args_init, &xent_kl_penalty),
                         nullptr, &FillKlPenalty, &RefKlPenalty};
  return h;
}

}  // namespace xent_test
