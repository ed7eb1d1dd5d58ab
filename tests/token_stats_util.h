// Helpers of the per-token statistics suites (token_stats_test.cc: the
// forward and its arguments; token_stats_backward_test.cc: the backward and
// the KL penalty).
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
