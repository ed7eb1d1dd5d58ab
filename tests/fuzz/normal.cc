// fdlibm's (Sun Microsystems, 1993: "Permission to use, copy, modify, and
// distribute this software is freely granted, provided that this notice is
// preserved.") log (musl's form of e_log.c), medium-range argument reduction
// (e_rem_pio2.c, both rounds always) and cos/sin kernels (k_cos.c, k_sin.c),
// each within one ulp, branch-free so that BoxMuller's loop vectorizes.
#include "tests/fuzz/normal.h"

#include <cmath>
#include <cstdint>
#include <cstring>

// The project's -ffp-contract=off matters here: an FMA would change the last
// bits by machine, and the payload must not depend on it.

// Payload arithmetic, not the library's: no UBSan checks (they kept the fuzz
// build from inlining and vectorizing it; the inputs are in range by
// construction and the test covers the ranges).
#define XENT_PAYLOAD_MATH __attribute__((no_sanitize("undefined")))

namespace xent_fuzz {

namespace {

XENT_PAYLOAD_MATH inline uint64_t Bits(double x) {
  uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}
XENT_PAYLOAD_MATH inline double FromBits(uint64_t b) {
  double x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

XENT_PAYLOAD_MATH inline double Log(double x) {
  constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  constexpr double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01, Lg3 = 2.857142874366239149e-01,
                   Lg4 = 2.222219843214978396e-01, Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                   Lg7 = 1.479819860511658591e-01;
  // x = 2^k (1 + f) with sqrt(2)/2 < 1 + f < sqrt(2).
  const uint64_t ix = Bits(x);
  const uint32_t hx = static_cast<uint32_t>(ix >> 32) + (0x3ff00000 - 0x3fe6a09e);
  const double dk = static_cast<double>(static_cast<int32_t>(hx >> 20) - 0x3ff);
  const uint64_t mx = (static_cast<uint64_t>((hx & 0x000fffff) + 0x3fe6a09e) << 32) | (ix & 0xffffffffu);
  const double f = FromBits(mx) - 1.0;
  const double hfsq = 0.5 * f * f;
  const double s = f / (2.0 + f);
  const double z = s * s, w = z * z;
  const double t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
  const double t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
  const double R = t2 + t1;
  return s * (hfsq + R) + dk * ln2_lo - hfsq + f + dk * ln2_hi;
}

// cos(x + y) for |x| <= pi/4, y the tail of x.
XENT_PAYLOAD_MATH inline double KernelCos(double x, double y) {
  constexpr double C1 = 4.16666666666666019037e-02, C2 = -1.38888888888741095749e-03, C3 = 2.48015872894767294178e-05,
                   C4 = -2.75573143513906633035e-07, C5 = 2.08757232129817482790e-09, C6 = -1.13596475577881948265e-11;
  const uint32_t ix = static_cast<uint32_t>(Bits(x) >> 32) & 0x7fffffffu;
  const double z = x * x;
  const double r = z * (C1 + z * (C2 + z * (C3 + z * (C4 + z * (C5 + z * C6)))));
  // fdlibm's split of 1 - z/2 for |x| >= 0.3 (qx = 0 is its formula below 0.3).
  const double qx = ix < 0x3FD33333u   ? 0.0
                    : ix > 0x3fe90000u ? 0.28125
                                       : FromBits(static_cast<uint64_t>(ix - 0x00200000u) << 32);
  const double hz = 0.5 * z - qx;
  const double a = 1.0 - qx;
  return a - (hz - (z * r - x * y));
}

// sin(x + y) for |x| <= pi/4.
XENT_PAYLOAD_MATH inline double KernelSin(double x, double y) {
  constexpr double S1 = -1.66666666666666324348e-01, S2 = 8.33333333332248946124e-03, S3 = -1.98412698298579493134e-04,
                   S4 = 2.75573137070700676789e-06, S5 = -2.50507602534068634195e-08, S6 = 1.58969099521155010221e-10;
  const double z = x * x, v = z * x;
  const double r = S2 + z * (S3 + z * (S4 + z * (S5 + z * S6)));
  return x - ((z * (0.5 * y - v * r) - y) - v * S1);
}

XENT_PAYLOAD_MATH inline double Cos(double x) {
  constexpr double invpio2 = 6.36619772367581382433e-01, pio2_1 = 1.57079632673412561417e+00,
                   pio2_2 = 6.07710050630396597660e-11, pio2_2t = 2.02226624879595063154e-21;
  constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  // x - n pi/2 with pi/2 to 119 bits (fdlibm's two rounds; n <= 4 here).
  const double fn = (x * invpio2 + kRound) - kRound;
  const int n = static_cast<int>(fn);
  const double t = x - fn * pio2_1;
  double w = fn * pio2_2;
  const double r = t - w;
  w = fn * pio2_2t - ((t - r) - w);
  const double y0 = r - w;
  const double y1 = (r - y0) - w;
  // Quadrants 0-3: cos, -sin, -cos, sin (every lane computes both kernels).
  const double k = (n & 1) ? KernelSin(y0, y1) : KernelCos(y0, y1);
  return ((n + 1) & 2) ? -k : k;
}

}  // namespace

double LogPositive(double x) { return Log(x); }
double CosSmall(double x) { return Cos(x); }

namespace {

// The loop, compiled twice: for the build's baseline and with AVX2's wider
// vectors (no FMA: the same operations, the same bits).
XENT_PAYLOAD_MATH __attribute__((always_inline)) inline void BoxMullerLoop(const double* u, const double* v,
                                                                           double* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = std::sqrt(-2 * Log(u[i])) * Cos(6.283185307179586 * v[i]);
}
XENT_PAYLOAD_MATH void BoxMullerBaseline(const double* u, const double* v, double* out, size_t n) {
  BoxMullerLoop(u, v, out, n);
}
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define XENT_PAYLOAD_AVX2 1
XENT_PAYLOAD_MATH __attribute__((target("avx2"))) void BoxMullerAvx2(const double* u, const double* v, double* out,
                                                                     size_t n) {
  BoxMullerLoop(u, v, out, n);
}
#endif

}  // namespace

void BoxMuller(const double* u, const double* v, double* out, size_t n) {
#ifdef XENT_PAYLOAD_AVX2
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return BoxMullerAvx2(u, v, out, n);
#endif
  BoxMullerBaseline(u, v, out, n);
}

}  // namespace xent_fuzz
