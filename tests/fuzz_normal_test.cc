// The fuzz harness' fast Box-Muller deviates (tests/fuzz/normal.h) against
// the formula they replace, xent_test::Rng::Normal (glibc's log and cos): the
// payloads of the corpus' inputs depend on it.
#include "tests/fuzz/normal.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tests/common/buffer.h"
#include "src/dtype.h"

namespace {

int64_t UlpDiff(double a, double b) {
  int64_t x, y;
  std::memcpy(&x, &a, sizeof x);
  std::memcpy(&y, &b, sizeof y);
  if ((x < 0) != (y < 0)) return a == b ? 0 : INT64_MAX;
  return std::llabs(x - y);
}

TEST(FuzzNormal, LogAndCosWithinAnUlpOfGlibc) {
  xent_test::Rng r(11);
  int64_t worst_log = 0, worst_cos = 0;
  for (int i = 0; i < 2000000; ++i) {
    // Rng::Uniform's values, the clamp, and every binade down to 2^-1000.
    const double u = i % 4 == 0 ? std::ldexp(1.0 + r.Uniform(), -1 - static_cast<int>(r.Below(1000)))
                                : std::max(r.Uniform(), 1e-300);
    worst_log = std::max(worst_log, UlpDiff(xent_fuzz::LogPositive(u), std::log(u)));
    const double x = 6.283185307179586 * r.Uniform();
    worst_cos = std::max(worst_cos, UlpDiff(xent_fuzz::CosSmall(x), std::cos(x)));
  }
  for (double u : {1.0, 0.5, 1e-300, 0.7071067811865476, 0.7071067811865475, 0.9999999999999999})
    worst_log = std::max(worst_log, UlpDiff(xent_fuzz::LogPositive(u), std::log(u)));
  // The ends and the multiples of pi/2 (the reduction's cancellation).
  for (double x : {0.0, 6.283185307179586 * 0.9999999999999999, 1.5707963267948966, 3.141592653589793, 4.71238898038469,
                   6.283185307179586, 0.7853981633974483, 2.356194490192345})
    for (double y : {x, std::nextafter(x, 0.0), std::nextafter(x, 7.0)})
      if (y <= 6.2832) worst_cos = std::max(worst_cos, UlpDiff(xent_fuzz::CosSmall(y), std::cos(y)));
  EXPECT_LE(worst_log, 1);
  EXPECT_LE(worst_cos, 1);
}

// The deviates as the payload stores them: rounded to f32, bf16 and f16 after
// the harness' mean + sigma * n, the same values as Rng::Normal's but for
// the rare deviate within an ulp of a rounding boundary.
TEST(FuzzNormal, PayloadsEqualRngNormals) {
  xent_test::Rng r(5);
  constexpr size_t kN = 1 << 21;
  std::vector<double> u(kN), v(kN), got(kN);
  for (size_t i = 0; i < kN; ++i) {
    u[i] = std::max(r.Uniform(), 1e-300);
    v[i] = r.Uniform();
  }
  xent_fuzz::BoxMuller(u.data(), v.data(), got.data(), kN);
  size_t differ = 0;
  for (size_t i = 0; i < kN; ++i) {
    const double want = std::sqrt(-2 * std::log(u[i])) * std::cos(6.283185307179586 * v[i]);
    ASSERT_LE(UlpDiff(got[i], want), 4) << i;
    // Every element: the vectorized loop gives the scalar functions' bits.
    ASSERT_EQ(got[i], std::sqrt(-2 * xent_fuzz::LogPositive(u[i])) * xent_fuzz::CosSmall(6.283185307179586 * v[i]));
    for (double sigma : {0.1, 1.0, 3.0, 300.0, 1e4})
      for (double mean : {0.0, 5.0, -50.0}) {
        const double a = mean + sigma * got[i], b = mean + sigma * want;
        differ += static_cast<float>(a) != static_cast<float>(b);
        differ += xent::BF16BitsFromF32(static_cast<float>(a)) != xent::BF16BitsFromF32(static_cast<float>(b));
        differ += xent::F16BitsFromF32(static_cast<float>(a)) != xent::F16BitsFromF32(static_cast<float>(b));
      }
  }
  // 94M roundings; measured 0 (and 0 in 560M f32 roundings of 20M deviates).
  EXPECT_LE(differ, 2u);
}

}  // namespace
