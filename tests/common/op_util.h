// Helpers shared by the operations' hooks (tests/common/op_*.cc).
#ifndef XENT_TESTS_COMMON_OP_UTIL_H_
#define XENT_TESTS_COMMON_OP_UTIL_H_

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tests/common/case.h"

namespace xent_test {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The float computation of z = (softcap ? softcap tanh(x / softcap) : x) / T
// stays finite for every finite x (else f32 intermediates overflow where the
// float64 reference does not: outside the accuracy contract).
bool ZFinite(const std::vector<double>& x, double T, double softcap);

// max(1, |v| * scale) over the finite values of row i (of V), |v| capped at
// `cap` first when cap > 0.
double RowMaxAbs(const std::vector<double>& x, size_t i, size_t V, double scale, double cap = 0);
double MaxAbs(const std::vector<double>& x, double cap = 0);

// A float64 reference spec (xent_ref::CeSpec, KlSpec) with the case's shape.
template <class Spec>
Spec RefSpec(const Case& c) {
  Spec s;
  s.B = c.B();
  s.V = c.V();
  return s;
}

// An Expected output with one bound for all, per row or per element.
Expected Output(const Case& c, const char* field, size_t rows, size_t cols, std::vector<double> want,
                std::vector<Tol> tol);
// The dtype of an output buffer (f32 when absent).
DType OutDType(const Case& c, const char* field);

// Fills a float input with mean + sigma N(0, 1).
void FillNormal(Buffer* b, Rng& rng, double sigma, double mean = 0);
// Class labels: uniform in [0, V), every k-th row (i % k == phase)
// ignore_index.
void FillLabels(Buffer* b, Rng& rng, size_t V, int every, int phase, int64_t ignore_index);

}  // namespace xent_test

#endif  // XENT_TESTS_COMMON_OP_UTIL_H_
