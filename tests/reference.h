// Float64 reference implementations: the plain textbook formulas, two passes,
// no tricks. Inputs are the exact values the library sees (after dtype
// rounding), as packed row-major doubles.
#ifndef XENT_TESTS_REFERENCE_H_
#define XENT_TESTS_REFERENCE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace xent_ref {

// The input every spec below starts from: B rows of V values, row-major.
struct Rows {
  size_t B = 0, V = 0;
  std::vector<double> x;  // B x V (logits, or a divergence's input)
};

struct CeSpec : Rows {
  bool soft = false;
  std::vector<int64_t> y;      // hard targets
  std::vector<double> q;       // soft targets, B x V
  std::vector<double> weight;  // empty = none
  std::vector<double> row_scale;
  int64_t ignore_index = -100;
  int reduction = 1;  // 0 none, 1 mean, 2 sum
  double eps = 0, z_loss = 0, softcap = 0, grad_scale = 1;
};
struct CeOut {
  std::vector<double> row_loss, lse, grad;  // grad B x V
  double loss = 0;
};
CeOut CrossEntropy(const CeSpec& s);

// Softmax family of z = x / temperature (after softcap when > 0), per row.
struct SoftmaxOut {
  std::vector<double> probs, log_probs;  // B x V
  std::vector<double> lse, entropy;      // B
};
SoftmaxOut Softmax(const std::vector<double>& x, size_t B, size_t V, double temperature, double softcap = 0);

// Token log-probs: z_y - lse (0 for ignored rows).
std::vector<double> TokenLogprobs(const std::vector<double>& x, const std::vector<int64_t>& y, size_t B, size_t V,
                                  double temperature, double softcap, int64_t ignore_index);

// Softmax backward: y forward output (probs or log-probs), g grad_output.
std::vector<double> SoftmaxBackward(const std::vector<double>& y, const std::vector<double>& g, size_t B, size_t V,
                                    bool log, double temperature);

// KL / JSD (see xent_divergence_args). kinds: 0 logits, 1 log-probs, 2 probs.
struct KlSpec : Rows {    // x: the input (Q)
  std::vector<double> t;  // target (P)
  int qk = 1, pk = 2;
  bool jsd = false;
  double beta = 0.5, temperature = 1;
  bool t2 = false;
  int reduction = 1;  // 0 none, 1 mean, 2 sum, 3 batchmean
  double grad_scale = 1;
  std::vector<int64_t> labels;  // empty = none
  int64_t ignore_index = -100;
};
struct KlOut {
  std::vector<double> row_loss, elem, gx, gt;
  double loss = 0;
};
KlOut Divergence(const KlSpec& s);
// Row loss only (for finite differences).
double DivergenceRowLoss(const KlSpec& s, const double* x, const double* t);

// BCE with logits (PyTorch's formula); weight: B x V (or empty), pos_weight: V.
struct BceOut {
  std::vector<double> elem, grad, row_loss;
  double loss = 0;
};
BceOut Bce(const std::vector<double>& x, const std::vector<double>& y, size_t B, size_t V,
           const std::vector<double>& weight, const std::vector<double>& pos_weight, int reduction, double grad_scale);

// log-sum-exp of a row (max-shifted), -inf for an all -inf row, NaN on NaN.
double LogSumExp(const double* x, size_t n);

}  // namespace xent_ref

#endif  // XENT_TESTS_REFERENCE_H_
