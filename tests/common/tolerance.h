// The accuracy contract of include/xent/xent.h ("Accuracy"), as the tests
// check it:
//   reduced f32 losses   kLossRel relative
//   per-row values       kRowRel relative + kRowAbs absolute
//   f32 gradients        kGradAbs absolute + kGradRel relative
//   bf16/f16 outputs     one ulp of the correctly rounded result (Ulp) plus
//                        the f32 absolute bound
// A value that is a difference of large terms (a row loss of logits ~100, a
// log-probability) carries the rounding of those terms: the absolute part
// grows by a few f32 ulps (kEps) of the largest magnitude involved. Each
// operation's bounds (tests/common/op_*.cc) name those magnitudes.
//
// Two profiles of the model:
//   kContract  the gtest suites: inputs in the ranges the contract speaks of
//              (normal logits, normalized targets, weights ~1); the bounds
//              exactly as the contract and the suites state them.
//   kFuzz      any valid input (the fuzz harness, the soak): 4x the contract,
//              times the magnitudes extreme options bring (unnormalized
//              targets, z-loss 1, huge logits), plus the rounding of the
//              reference itself to f32 and a denormal floor; outputs outside
//              the contract's domain (f32 intermediates that overflow where
//              float64 does not) are not compared.
#ifndef XENT_TESTS_COMMON_TOLERANCE_H_
#define XENT_TESTS_COMMON_TOLERANCE_H_

#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "src/dtype.h"

namespace xent_test {

using xent::DType;

constexpr double kLossRel = 2e-6;
constexpr double kRowRel = 2e-6, kRowAbs = 2e-6;
constexpr double kGradRel = 2e-6, kGradAbs = 1e-6;
constexpr double kEps = 1.2e-7;  // one f32 ulp, relative (2^-23)

enum class Profile : unsigned char { kContract, kFuzz };

// Unit in the last place of |v| in dtype t (f32: 2^-23 relative; subnormal
// spacing below the smallest normal).
double Ulp(double v, DType t);
// v rounded to dtype t (round to nearest even).
double RoundTo(double v, DType t);

// |got - want| <= tol, NaN only as NaN, an infinity only as itself.
bool Close(double got, double want, double tol);

// A bound: rel |want| + abs, for an f32 output; for bf16/f16 outputs one ulp
// of the rounded result is added (the operation sets rel and abs for the
// output's dtype).
struct Tol {
  double rel = 0, abs = 0;
  bool skip = false;  // not compared (outside the contract's domain)
};

// Relative error of a gradient's scale factor (grad_scale, over the MEAN
// divisor, ...) once the library rounds it to f32: a subnormal factor keeps
// only a few significant bits (fuzzfast: grad_scale 1e-40 over 4353 classes,
// 0.6 % off in every element). 0 for a normal factor.
inline double ScaleRel(double factor) {
  const double a = std::fabs(factor);
  return (a > 0 && a < std::numeric_limits<float>::min()) ? 4 * std::numeric_limits<float>::denorm_min() / a : 0.0;
}

// f32 bound of a per-row statistic of row i (of V) of logits x at
// temperature T and softcap cap (0: off): the rounding of z = x / T and of
// z - max is relative to the row's largest |z|.
double RowTol(const std::vector<double>& x, size_t i, size_t V, double T, double cap);

// got vs want (float64) for an output of dtype t under `tol` and profile p.
// NaN == NaN; an infinite want needs the same infinity; kFuzz also accepts an
// infinity of the right sign where want is at the edge of t's range.
bool Agree(double got, double want, const Tol& tol, DType t, Profile p);
// The bound Agree applies to a finite want.
double Bound(double want, const Tol& tol, DType t, Profile p);

}  // namespace xent_test

#endif  // XENT_TESTS_COMMON_TOLERANCE_H_
