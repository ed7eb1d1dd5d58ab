// The "careful programmer" peer: plain scalar C++ loops (glibc expf/logf, no
// intrinsics, no xent code), compiled once with the project's release flags
// for the baseline ISA. Rows are split over threads with OpenMP when the
// build has it (a careful programmer parallelizes over rows, not inside one).
//
// Each operation makes the classic passes over a row: max, then
// exp(x - max) into a per-thread f32 row buffer while summing, then the
// outputs from the stored exps (one exp per logit and input; the row buffer
// stays in cache for every V of the benchmark). Results match xent's
// definitions (mean reductions; gradient of the reduced loss).
#ifndef XENT_BENCH_SCALAR_REF_H_
#define XENT_BENCH_SCALAR_REF_H_

#include <cstddef>
#include <cstdint>

namespace xent_bench {

enum class Dt { kF32, kBF16 };

inline size_t DtSize(Dt d) { return d == Dt::kF32 ? 4 : 2; }

struct RefProblem {
  size_t B = 0, V = 0;
  Dt dt = Dt::kF32;
  const void* x = nullptr;  // logits / student logits / softmax output y
  const void* t = nullptr;  // teacher logits / BCE target / grad_output
  const int64_t* labels = nullptr;
  void* out = nullptr;       // gradient / probs (B x V, dtype dt); may equal x
  float* row_out = nullptr;  // B values (token log-probs)
  int threads = 1;           // 0 = all
  float beta = 0.5f;         // JSD
};

// Each returns the reduced loss (0 when the operation has none).
double RefCeFwd(const RefProblem& p);
double RefCeFwdGrad(const RefProblem& p);                    // out = d(mean loss)/dx (may be x: in place)
double RefCeSoftcapFwdGrad(const RefProblem& p, float cap);  // z = cap tanh(x / cap), then as RefCeFwdGrad
double RefKlFwdGrad(const RefProblem& p);                    // KL(softmax(t) || softmax(x)), batchmean; out = d/dx
double RefJsdFwdGrad(const RefProblem& p);                   // generalized JSD (beta), batchmean; out = d/dx
double RefKlDivFwdGrad(const RefProblem& p);                 // sum t (log t - x) / B (x log-probs, t probs); out = d/dx
double RefTokenLogprobs(const RefProblem& p);                // row_out = x_y - lse
double RefSoftmax(const RefProblem& p);                      // out = softmax(x)
double RefSoftmaxBackward(const RefProblem& p);              // x = y (probs), t = g; out = y (g - sum g y)
double RefBceFwdGrad(const RefProblem& p);                   // mean BCE-with-logits; out = d/dx

bool RefHasOpenMP();

}  // namespace xent_bench

#endif  // XENT_BENCH_SCALAR_REF_H_
