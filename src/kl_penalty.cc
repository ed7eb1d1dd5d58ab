// KL penalty estimators per token (k1, k2, k3, |r|) and their gradient with
// respect to the policy's log-probability: n scalar values, no SIMD (the
// inputs are B values, not B x V; the caller's thread is enough).
#include <cmath>
#include <limits>

#include "src/problem.h"

namespace xent {

namespace {

// clamp(v, -c, c) for c > 0, NaN kept; `active` when v is strictly outside
// (torch.clamp passes the gradient on the closed range).
float Clamp(float v, float c, bool* active) {
  if (c <= 0.0f || std::isnan(v)) return v;
  if (v > c || v < -c) {
    *active = true;
    return v > c ? c : -c;
  }
  return v;
}

}  // namespace

xent_status RunKlPenalty(const KlPenaltyProblem& p) {
  for (size_t i = 0; i < p.B; ++i) {
    const float d = p.logprob[i] - p.ref_logprob[i];
    bool clamped = false;
    const float r = Clamp(-d, p.log_ratio_clamp, &clamped);
    float v, g;  // value and d(value)/d(logprob), unclamped value range
    switch (p.estimator) {
      case KlEstimator::kK1:
        v = -r;
        g = 1.0f;
        break;
      case KlEstimator::kK2:
        v = 0.5f * r * r;
        g = -r;
        break;
      case KlEstimator::kAbs:
        v = std::fabs(r);
        g = r > 0.0f ? -1.0f : (r < 0.0f ? 1.0f : (std::isnan(r) ? r : 0.0f));
        break;
      case KlEstimator::kK3:
      default: {
        // exp(r) - r - 1 = expm1(r) - r, without cancellation for small r.
        const double e = std::expm1(static_cast<double>(r));
        v = static_cast<float>(e - static_cast<double>(r));
        g = static_cast<float>(-e);
        break;
      }
    }
    v = Clamp(v, p.value_clamp, &clamped);
    if (clamped) g = std::isnan(g) ? g : 0.0f;
    if (p.straight_through) g = d;  // the K2 gradient, as verl's "k3+"
    if (p.grad_output) g *= p.grad_output[i];
    if (p.penalty) p.penalty[i] = v;
    if (p.grad_logprob) p.grad_logprob[i] = g;
  }
  return XENT_OK;
}

}  // namespace xent
