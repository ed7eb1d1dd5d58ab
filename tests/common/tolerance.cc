#include "tests/common/tolerance.h"

#include <algorithm>
#include <cmath>

namespace xent_test {

double Ulp(double v, DType t) {
  const int mant = t == DType::kF32 ? 23 : (t == DType::kBF16 ? 7 : 10);
  const int min_exp = t == DType::kF16 ? -14 : -126;
  int e;
  std::frexp(std::fabs(v), &e);  // |v| in [2^(e-1), 2^e)
  const int exp = v == 0 ? min_exp : std::max(e - 1, min_exp);
  return std::ldexp(1.0, exp - mant);
}

double RoundTo(double v, DType t) {
  unsigned char b[4];
  xent::StoreScalarF32(b, 0, t, static_cast<float>(v));
  return xent::LoadScalarF32(b, 0, t);
}

bool Close(double got, double want, double tol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  if (!std::isfinite(got)) return false;
  return std::fabs(got - want) <= tol;
}

double Bound(double want, const Tol& tol, DType t, Profile p) {
  double b = tol.rel * std::fabs(want) + tol.abs;
  if (!(b >= 0)) b = 0;  // a NaN scale (e.g. 0 / 0 with every row ignored)
  if (t != DType::kF32) b += Ulp(want, t);
  // The fuzz profile: the reference rounded to f32 (its last bit), and a few
  // f32 denormal ulps: a chain of products that ends below 2^-126 (e.g. a
  // denormal grad_scale) rounds at every step with 2^-149 absolute.
  if (p == Profile::kFuzz) b += Ulp(want, DType::kF32) + 1e-42;
  // On CPUs with AVX512_BF16 the library converts to bf16 with the CPU's
  // instruction, which gives +-0 for f32 results below 2^-126 (xent.h): a
  // want that close to 0 may read as 0 (fuzzfast: grad_scale 1e-40).
  if (t == DType::kBF16 && xent::g_native_bf16 && std::fabs(want) < std::numeric_limits<float>::min() + b)
    b = std::max(b, std::fabs(want));
  return b;
}

bool Agree(double got, double want, const Tol& tol, DType t, Profile p) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  if (std::isnan(got)) return false;
  if (p == Profile::kFuzz && std::isinf(got)) {
    // At the edge of the dtype's range: an infinity of the right sign.
    const double top = t == DType::kF16 ? 65504.0 : 3.4e38;
    return (std::isinf(RoundTo(want, t)) || std::fabs(want) > 0.99 * top) && (got > 0) == (want > 0);
  }
  if (std::isinf(got)) return false;
  return std::fabs(got - want) <= Bound(want, tol, t, p);
}

double RowTol(const std::vector<double>& x, size_t i, size_t V, double T, double cap) {
  double zmax = 1.0;
  for (size_t j = 0; j < V; ++j) {
    const double v = x[i * V + j];
    if (std::isfinite(v)) zmax = std::max(zmax, std::fabs(cap > 0 ? std::min(std::fabs(v), cap) : v) / T);
  }
  double t = 2e-6 + 2 * 1.2e-7 * zmax;
  if (cap > 0) t += 8 * 1.2e-7 * cap / T;
  return t;
}

}  // namespace xent_test
