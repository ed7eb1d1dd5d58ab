// The original fuzz format's normal deviates, fast: Box-Muller,
// sqrt(-2 log u) cos(6.283185307179586 v), as xent_test::Rng::Normal computes
// it with glibc's log and cos, but with fdlibm's reduction and polynomials
// written out (no calls, no branches the compiler cannot turn into selects),
// so a payload's deviates are computed several at a time. glibc's results are
// within half an ulp of the exact values and these within one, so the f32,
// bf16 or f16 payload built from them is the one Rng::Normal gives except
// where a deviate lies within an ulp of a rounding boundary: measured, one
// element in ~10^9 (tests/fuzz_normal_test.cc). The corpus' inputs, their
// meaning tied to their payloads, keep their values.
#ifndef XENT_TESTS_FUZZ_NORMAL_H_
#define XENT_TESTS_FUZZ_NORMAL_H_

#include <cstddef>

namespace xent_fuzz {

// out[i] = sqrt(-2 log u[i]) cos(6.283185307179586 v[i]) for u in (0, 1],
// v in [0, 1) (Rng::Uniform's range; u = max(Uniform(), 1e-300)).
void BoxMuller(const double* u, const double* v, double* out, size_t n);

// The two halves, for the accuracy test: log(x) for normal x > 0, cos(x) for
// x in [0, 6.2832] (the product 6.283185307179586 v).
double LogPositive(double x);
double CosSmall(double x);

}  // namespace xent_fuzz

#endif  // XENT_TESTS_FUZZ_NORMAL_H_
