// Helpers of the per-token statistics suites (token_stats_test.cc: the
// forward and its arguments; token_stats_backward_test.cc: the backward and
// the KL penalty) and of their case-builder hooks (RowTol:
// tests/common/op_token_stats.cc).
#ifndef XENT_TESTS_TOKEN_STATS_UTIL_H_
#define XENT_TESTS_TOKEN_STATS_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "tests/common/mat.h"

namespace xent_test {

// Stores random normal values (or hook(i, j) when it is not NaN) rounded to
// the matrix dtype; returns the stored values.
inline std::vector<double> Fill(Mat& m, double sigma, uint32_t seed, double (*hook)(size_t, size_t) = nullptr,
                                const std::vector<double>* base = nullptr) {
  const auto r = RandomNormal(m.rows() * m.cols(), sigma, seed);
  std::vector<double> v(m.rows() * m.cols());
  for (size_t i = 0; i < m.rows(); ++i)
    for (size_t j = 0; j < m.cols(); ++j) {
      double x = r[i * m.cols() + j];
      if (base) x += (*base)[i * m.cols() + j];
      if (hook) {
        const double h = hook(i, j);
        if (!std::isnan(h)) x = h;
      }
      v[i * m.cols() + j] = m.set(i, j, x);
    }
  return v;
}

// f32 bound of a per-row statistic: as tests/softmax_test.cc (the rounding
// of z = x / T and of z - max is relative to the row's largest |z|).
inline double RowTol(const std::vector<double>& x, size_t i, size_t V, double T, double cap) {
  double zmax = 1.0;
  for (size_t j = 0; j < V; ++j) {
    const double v = x[i * V + j];
    if (std::isfinite(v)) zmax = std::max(zmax, std::fabs(cap > 0 ? std::min(std::fabs(v), cap) : v) / T);
  }
  double t = 2e-6 + 2 * 1.2e-7 * zmax;
  if (cap > 0) t += 8 * 1.2e-7 * cap / T;
  return t;
}

// -inf masked classes: probability 0, never ahead of a finite logit; rows
// with fewer finite classes than k list the -inf ones by index.
inline double MaskHook(size_t i, size_t j) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  if (i == 0) return j % 3 == 0 ? nan : -inf;           // a third unmasked
  if (i == 1) return (j == 5 || j == 40) ? nan : -inf;  // two finite classes
  if (i == 2) return j == 0 ? -inf : nan;
  return nan;
}

}  // namespace xent_test

#endif  // XENT_TESTS_TOKEN_STATS_UTIL_H_
