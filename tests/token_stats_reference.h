// Float64 references of the per-token statistics (xent_token_logprobs with
// argmax / top-k / reference KL), their backward, and the KL penalty
// estimators: the textbook formulas, two passes, no tricks. Inputs are the
// exact values the library sees (after dtype rounding), packed row-major.
#ifndef XENT_TESTS_TOKEN_STATS_REFERENCE_H_
#define XENT_TESTS_TOKEN_STATS_REFERENCE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tests/reference.h"

namespace xent_ref {

struct TokSpec : Rows {     // x: the logits
  std::vector<double> ref;  // B x V reference logits, or empty
  std::vector<int64_t> y;   // B targets, or empty
  int64_t ignore_index = -100;
  double temperature = 1, softcap = 0;
  size_t k = 0;  // top-k
};

struct TokOut {
  std::vector<double> lse, entropy, logprob;     // B (logprob 0 for ignored rows)
  std::vector<int64_t> argmax;                   // B
  std::vector<double> argmax_logprob;            // B
  std::vector<int64_t> topk_indices;             // B x k
  std::vector<double> topk_logprobs, topk_mass;  // B x k, B
  std::vector<double> ref_lse, ref_logprob, kl;  // B (with ref)
  std::vector<double> logp;                      // B x V log-probabilities
};
TokOut TokenStats(const TokSpec& s);

// The objective whose gradient xent_token_logprobs_backward writes: per row
// g_lp logprob + g_h entropy + sum_j g_k[j] logp[idx[j]] + g_kl kl. Empty
// vectors are 0; idx / gk are B x k.
struct TokGradSpec {
  std::vector<double> g_lp, g_h, g_kl;
  size_t k = 0;
  std::vector<int64_t> idx;
  std::vector<double> g_k;
};
double TokenObjective(const TokSpec& s, const TokGradSpec& g);
// Its gradient w.r.t. the logits (B x V), in closed form.
std::vector<double> TokenObjectiveGrad(const TokSpec& s, const TokGradSpec& g);

// KL penalty: kind 0 K1, 1 K2, 2 K3, 3 ABS; clamps 0 = off.
struct KlPenaltyOut {
  double value = 0, grad = 0;
};
KlPenaltyOut KlPenalty(double logp, double ref, int kind, double ratio_clamp, double value_clamp,
                       bool straight_through);

}  // namespace xent_ref

#endif  // XENT_TESTS_TOKEN_STATS_REFERENCE_H_
