// Per-target SIMD helpers shared by the kernels: loads and stores with dtype
// conversion, row tails that never touch memory past the caller's buffer, and
// the exponential used on the softmax range.
//
// Included once per target by each kernel .cc (after foreach_target.h), hence
// the toggle guard instead of a plain include guard.
#if defined(XENT_SRC_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_SRC_SIMD_INL_H_
#undef XENT_SRC_SIMD_INL_H_
#else
#define XENT_SRC_SIMD_INL_H_
#endif

#include <cstdint>
#include <cstring>
#include <limits>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"
#include "src/dtype.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Largest number of f32 lanes of any target (tail buffers are this big).
constexpr size_t kMaxLanesF32 = HWY_MAX_BYTES / sizeof(float);

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// ---------------------------------------------------------------------------
// Storage types. bf16 and f16 rows are handled as raw 16-bit patterns; the
// conversion to and from f32 is done here so that every target rounds the
// same way (round to nearest even, NaN stays NaN, overflow gives inf).
struct BF16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};

template <typename T>
constexpr DType DTypeOf();
template <>
constexpr DType DTypeOf<float>() {
  return DType::kF32;
}
template <>
constexpr DType DTypeOf<BF16>() {
  return DType::kBF16;
}
template <>
constexpr DType DTypeOf<F16>() {
  return DType::kF16;
}

// Full vector of f32 from N elements at p (unaligned).
HWY_INLINE VF LoadF32(DF d, const float* HWY_RESTRICT p) { return hn::LoadU(d, p); }
HWY_INLINE VF LoadF32(DF d, const BF16* HWY_RESTRICT p) {
  const hn::Rebind<uint16_t, DF> du16;
  const hn::Rebind<uint32_t, DF> du32;
  const auto bits = hn::LoadU(du16, reinterpret_cast<const uint16_t*>(p));
  return hn::BitCast(d, hn::ShiftLeft<16>(hn::PromoteTo(du32, bits)));
}
#undef XENT_SOFT_F16
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX2
#define XENT_SOFT_F16 \
  1  // no F16C below AVX2: convert in software (Highway 1.0.3's emulation
     // truncates and maps inf/NaN to finite values)
#elif HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128
#define XENT_SOFT_F16 1
#else
#define XENT_SOFT_F16 0
#endif

HWY_INLINE VF LoadF32(DF d, const F16* HWY_RESTRICT p) {
#if XENT_SOFT_F16
  // Vector form of F32FromF16Bits in src/dtype.h.
  const hn::Rebind<uint16_t, DF> du16;
  const hn::Rebind<uint32_t, DF> du32;
  const hn::Rebind<int32_t, DF> di32;
  const auto h = hn::PromoteTo(du32, hn::LoadU(du16, reinterpret_cast<const uint16_t*>(p)));
  const auto sign = hn::ShiftLeft<16>(hn::And(h, hn::Set(du32, 0x8000u)));
  const auto exp = hn::And(hn::ShiftRight<10>(h), hn::Set(du32, 0x1Fu));
  const auto mant = hn::And(h, hn::Set(du32, 0x3FFu));
  const auto normal = hn::Or(hn::ShiftLeft<23>(hn::Add(exp, hn::Set(du32, 112u))), hn::ShiftLeft<13>(mant));
  const auto infnan = hn::Or(hn::Set(du32, 0x7F800000u), hn::ShiftLeft<13>(mant));
  const auto sub =
      hn::BitCast(du32, hn::Mul(hn::ConvertTo(d, hn::BitCast(di32, mant)), hn::Set(d, 1.0f / 16777216.0f)));
  auto r = hn::IfThenElse(hn::Eq(exp, hn::Zero(du32)), sub, normal);
  r = hn::IfThenElse(hn::Eq(exp, hn::Set(du32, 0x1Fu)), infnan, r);
  return hn::BitCast(d, hn::Or(r, sign));
#else
  const hn::Rebind<hwy::float16_t, DF> df16;
  return hn::PromoteTo(d, hn::LoadU(df16, reinterpret_cast<const hwy::float16_t*>(p)));
#endif
}

// f32 -> bf16 bits (in the low half of i32 lanes), round to nearest even.
HWY_INLINE hn::Vec<hn::Rebind<int32_t, DF>> BF16BitsI32(DF /*d*/, VF v) {
  const hn::Rebind<uint32_t, DF> du32;
  const hn::Rebind<int32_t, DF> di32;
  const auto u = hn::BitCast(du32, v);
  const auto lsb = hn::And(hn::ShiftRight<16>(u), hn::Set(du32, 1));
  const auto rounded = hn::ShiftRight<16>(hn::Add(u, hn::Add(lsb, hn::Set(du32, 0x7FFF))));
  const auto qnan = hn::Or(hn::ShiftRight<16>(u), hn::Set(du32, 0x40));
  // (IsNaN: Highway 1.0.3's Ne is an ordered compare on x86, false for NaN.)
  return hn::BitCast(di32, hn::IfThenElse(hn::RebindMask(du32, hn::IsNaN(v)), qnan, rounded));
}

// f32 -> f16 bits (low half of i32 lanes), round to nearest even.
HWY_INLINE hn::Vec<hn::Rebind<int32_t, DF>> F16BitsI32(DF d, VF v) {
  const hn::Rebind<int32_t, DF> di;
#if XENT_SOFT_F16
  // Vector form of F16BitsFromF32 in src/dtype.h. Magnitudes are < 2^31, so
  // signed compares are exact.
  const auto bits = hn::BitCast(di, v);
  const auto sign = hn::And(bits, hn::Set(di, static_cast<int32_t>(0x80000000u)));
  const auto u = hn::Xor(bits, sign);
  const auto big = hn::IfThenElse(hn::Gt(u, hn::Set(di, 0x7F800000)), hn::Set(di, 0x7E00), hn::Set(di, 0x7C00));
  const VF magic = hn::BitCast(d, hn::Set(di, ((127 - 15) + (23 - 10) + 1) << 23));
  const auto sub = hn::Sub(hn::BitCast(di, hn::Add(hn::BitCast(d, u), magic)), hn::BitCast(di, magic));
  const auto odd = hn::And(hn::ShiftRight<13>(u), hn::Set(di, 1));
  const auto norm = hn::ShiftRight<13>(hn::Add(hn::Add(u, hn::Set(di, ((15 - 127) * (1 << 23)) + 0xFFF)), odd));
  auto o = hn::IfThenElse(hn::Lt(u, hn::Set(di, 0x38800000)), sub, norm);
  o = hn::IfThenElse(hn::Gt(u, hn::Set(di, 0x477FFFFF)), big, o);
  return hn::Or(o, hn::BitCast(di, hn::ShiftRight<16>(hn::BitCast(hn::RebindToUnsigned<decltype(di)>(), sign))));
#else
  const hn::Rebind<hwy::float16_t, DF> df16;
  const hn::Rebind<uint16_t, DF> du16;
  return hn::BitCast(di, hn::PromoteTo(hn::Rebind<uint32_t, DF>(), hn::BitCast(du16, hn::DemoteTo(df16, v))));
#endif
}

// f32 -> bf16 bits as 16-bit lanes, round to nearest even. On the AVX-512
// targets, when the CPU has AVX512_BF16 (g_native_bf16, src/dtype.h), one
// vcvtneps2bf16 instead of the six-operation software rounding: the same bits
// for every input (NaN -> the input's upper half with the quiet bit set, as
// BF16BitsI32) except f32 subnormals, which the instruction treats as zero
// (+-0 for |x| < 2^-126, as oneDNN's and PyTorch's conversions where they use
// it; include/xent/xent.h states it). Tested on every f32 in
// tests/simd_test.cc. Keeping the software result for subnormals cost 12 %
// of the bf16 token backward (a vfpclassps and a branch per vector), so they
// are flushed. Inline assembly: Highway 1.0.3 has no AVX512_BF16 target, and
// a target attribute would have to be on every function inlining this one.
// Measured (1 thread, 8192x32000 bf16): token backward 0.38 -> 0.26
// ns/logit, in place 0.34 -> 0.23.
#undef XENT_NATIVE_BF16_ASM
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3 && (HWY_COMPILER_GCC || HWY_COMPILER_CLANG)
#define XENT_NATIVE_BF16_ASM 1
#else
#define XENT_NATIVE_BF16_ASM 0
#endif
HWY_INLINE hn::Vec<hn::Rebind<uint16_t, DF>> DemoteBF16Soft(DF d, VF v) {
  return hn::DemoteTo(hn::Rebind<uint16_t, DF>(), BF16BitsI32(d, v));
}
HWY_INLINE hn::Vec<hn::Rebind<uint16_t, DF>> DemoteBF16(DF d, VF v) {
#if XENT_NATIVE_BF16_ASM
  static_assert(sizeof(v.raw) == 64, "AVX-512 vectors of 16 floats");
  if (g_native_bf16) {
    __m256i r;
    asm("vcvtneps2bf16 %1, %0" : "=v"(r) : "v"(v.raw));
    return hn::Vec<hn::Rebind<uint16_t, DF>>{r};
  }
#endif
  return DemoteBF16Soft(d, v);
}

HWY_INLINE void StoreF32(DF d, VF v, float* HWY_RESTRICT p) { hn::StoreU(v, d, p); }
HWY_INLINE void StoreF32(DF d, VF v, BF16* HWY_RESTRICT p) {
  const hn::Rebind<uint16_t, DF> du16;
  hn::StoreU(DemoteBF16(d, v), du16, reinterpret_cast<uint16_t*>(p));
}
HWY_INLINE void StoreF32(DF d, VF v, F16* HWY_RESTRICT p) {
  const hn::Rebind<uint16_t, DF> du16;
  hn::StoreU(hn::DemoteTo(du16, F16BitsI32(d, v)), du16, reinterpret_cast<uint16_t*>(p));
}

// Row tails: the last r < N elements. Loads copy into a stack buffer (never
// reading past p + r) and fill the other lanes with `pad`; stores convert the
// whole vector and copy out only r elements.
template <typename T>
HWY_INLINE VF LoadTailF32(DF d, const T* HWY_RESTRICT p, size_t r, float pad) {
  HWY_ALIGN T buf[kMaxLanesF32];
  r = HWY_MIN(r, kMaxLanesF32);
  if (r != 0) std::memcpy(buf, p, r * sizeof(T));  // (p may be null when r = 0)
  const VF v = LoadF32(d, buf);
  return hn::IfThenElse(hn::FirstN(d, r), v, hn::Set(d, pad));
}
template <typename T>
HWY_INLINE void StoreTailF32(DF d, VF v, T* HWY_RESTRICT p, size_t r) {
  HWY_ALIGN T buf[kMaxLanesF32];
  StoreF32(d, v, buf);
  r = HWY_MIN(r, kMaxLanesF32);
  if (r != 0) std::memcpy(p, buf, r * sizeof(T));
}

// Highway's Exp and Log with NaN propagated: Highway 1.0.3 does not promise
// NaN -> NaN (its range reduction converts to int), and a NaN input must give
// a NaN result, never a finite one.
HWY_INLINE VF ExpNaN(DF d, VF x) { return hn::IfThenElse(hn::IsNaN(x), x, hn::Exp(d, x)); }
HWY_INLINE VF LogNaN(DF d, VF x) { return hn::IfThenElse(hn::IsNaN(x), x, hn::Log(d, x)); }

// ---------------------------------------------------------------------------
// exp(x) for x <= 0 (the softmax range: x = logit - row max), NaN -> NaN,
// x < -87.3 (results below 2^-126) -> exactly +0, so -inf -> 0.
// Max error 5 ulp over [-87.3, 0] on targets with FMA, 2 ulp on the others
// (tested on every input of that range, on every target, in
// tests/simd_test.cc; the test states each target's bound; the error above
// 2 ulp comes from the reduction for n <= -60, i.e. results below 1e-26).
// Reduction x = n ln2 + r, |r| <= ln2/2 (one fused multiply-add with FMA;
// Cody-Waite in two steps without), then a
// degree-5 polynomial 1 + r + c2 r^2 + ... + c5 r^5 (minimax for relative
// error on [-ln2/2, ln2/2] with the first two coefficients fixed at 1, so
// exp(0) = 1 exactly; approximation error 1.05e-7 relative), then 2^n: one
// masked vscalefps on AVX-512 (which also zeroes the flushed lanes), an
// exponent-field shift elsewhere. The domain needs no overflow handling,
// which is what makes it cheaper than hn::Exp (10 vector operations on
// AVX-512, 12 on AVX2, against 16 for the degree-7 version it replaces; the
// one-step reduction made CE forward 7-12 % faster in cache, 1 thread).
HWY_INLINE VF ExpNonPositive(DF d, VF x) {
  const VF kLog2e = hn::Set(d, 1.44269504088896341f);
  // 1.5 * 2^23 + 127: t = magic + round(x / ln2) is an integer of
  // [2^23, 2^24) whose low bits hold n + 127 (the exponent field of 2^n).
  // (No tie can round differently from a magic of 1.5 * 2^23: x / ln2 is a
  // product of two floats, a half-integer only for |x| >= 2^22.)
  VF kMagic = hn::Set(d, 12583039.0f);
#if HWY_ARCH_X86 && HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128 && (HWY_COMPILER_GCC || HWY_COMPILER_CLANG)
  // Opaque to the compiler: it would subtract by adding -magic, a second
  // constant register (the loops that call this spill at 16 registers).
  asm("" : "+v"(kMagic.raw));
#endif
  const VF t = hn::MulAdd(x, kLog2e, kMagic);
  const VF n = hn::Sub(t, kMagic);
#if HWY_NATIVE_FMA
  // One fused step: n ln2 is not rounded before the subtraction, so r is off
  // only by n (ln2 - ln2f), |n| <= 126: <= 2.4e-7 absolute.
  const VF r = hn::NegMulAdd(n, hn::Set(d, 0.693147182464599609375f), x);
#else
  // Without FMA, n ln2_hi is exact (ln2_hi = 0.693359375 has 9 significant bits).
  VF r = hn::NegMulAdd(n, hn::Set(d, 0.693359375f), x);
  r = hn::NegMulAdd(n, hn::Set(d, -2.12194440e-4f), r);
#endif
  VF p = hn::Set(d, 8.312524812e-03f);
  p = hn::MulAdd(p, r, hn::Set(d, 4.189011313e-02f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.666711447e-01f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.999923179e-01f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.0f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.0f));
  // Lanes flushed to 0: x < -87.3 (NaN is not: it propagates through p).
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  // The lanes kept, "not less than" with NaN true, in one compare: Not(Lt)
  // compiled to a compare and a knotw, both on port 0 with the FMAs.
  const __mmask16 keep = _mm512_cmp_ps_mask(x.raw, _mm512_set1_ps(-87.3f), _CMP_NLT_UQ);
  return VF{_mm512_maskz_scalef_ps(keep, p.raw, n.raw)};
#else
  const auto flush = hn::Lt(x, hn::Set(d, -87.3f));
  // t's bits are 0x4B400000 + n + 127; shifted left by 23, the magic's bits
  // leave the word and n + 127 lands in the exponent field: 2^n.
  const hn::RebindToUnsigned<DF> du;
  const VF scale = hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(du, t)));
  // (An and-not of the mask: one operation fewer than zeroing by the
  // complement, and no all-ones constant in a register.)
  return hn::IfThenZeroElse(flush, hn::Mul(p, scale));
#endif
}

// exp of K vectors at once, in place (v[k] = ExpNonPositive(v[k]), the same
// operations, so the same bits), each step done for all K before the next:
// K independent chains side by side in the instruction stream. One
// vector's chain is ~12 dependent operations, ~50 cycles; where the
// out-of-order scheduler holds less than one loop iteration built on it
// (AMD Zen 1: a 256-bit operation is two micro-ops), one chain after the
// other (as the compiler emits two calls) leaves the FMA pipes idle.
// Scalable vectors cannot be array elements: there, K calls.
#if HWY_HAVE_SCALABLE
HWY_INLINE void ExpNonPositive2(DF d, VF& a, VF& b) {
  a = ExpNonPositive(d, a);
  b = ExpNonPositive(d, b);
}
#else
#define XENT_EACH(k) _Pragma("GCC unroll 8") for (size_t k = 0; k < K; ++k)
template <size_t K>
HWY_INLINE void ExpNonPositiveK(DF d, VF* HWY_RESTRICT v) {
  const VF kLog2e = hn::Set(d, 1.44269504088896341f);
  VF kMagic = hn::Set(d, 12583039.0f);
#if HWY_ARCH_X86 && HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128 && (HWY_COMPILER_GCC || HWY_COMPILER_CLANG)
  asm("" : "+v"(kMagic.raw));  // (as in ExpNonPositive)
#endif
  VF t[K], n[K], r[K], p[K];
  XENT_EACH(k) t[k] = hn::MulAdd(v[k], kLog2e, kMagic);
  XENT_EACH(k) n[k] = hn::Sub(t[k], kMagic);
#if HWY_NATIVE_FMA
  XENT_EACH(k) r[k] = hn::NegMulAdd(n[k], hn::Set(d, 0.693147182464599609375f), v[k]);
#else
  XENT_EACH(k) r[k] = hn::NegMulAdd(n[k], hn::Set(d, 0.693359375f), v[k]);
  XENT_EACH(k) r[k] = hn::NegMulAdd(n[k], hn::Set(d, -2.12194440e-4f), r[k]);
#endif
  XENT_EACH(k) p[k] = hn::MulAdd(hn::Set(d, 8.312524812e-03f), r[k], hn::Set(d, 4.189011313e-02f));
  XENT_EACH(k) p[k] = hn::MulAdd(p[k], r[k], hn::Set(d, 1.666711447e-01f));
  XENT_EACH(k) p[k] = hn::MulAdd(p[k], r[k], hn::Set(d, 4.999923179e-01f));
  XENT_EACH(k) p[k] = hn::MulAdd(p[k], r[k], hn::Set(d, 1.0f));
  XENT_EACH(k) p[k] = hn::MulAdd(p[k], r[k], hn::Set(d, 1.0f));
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  XENT_EACH(k) {
    const __mmask16 keep = _mm512_cmp_ps_mask(v[k].raw, _mm512_set1_ps(-87.3f), _CMP_NLT_UQ);
    v[k] = VF{_mm512_maskz_scalef_ps(keep, p[k].raw, n[k].raw)};
  }
#else
  const hn::RebindToUnsigned<DF> du;
  XENT_EACH(k) {
    const auto flush = hn::Lt(v[k], hn::Set(d, -87.3f));
    v[k] = hn::IfThenZeroElse(flush, hn::Mul(p[k], hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(du, t[k])))));
  }
#endif
}
#undef XENT_EACH
HWY_INLINE void ExpNonPositive2(DF d, VF& a, VF& b) {
  VF v[2] = {a, b};
  ExpNonPositiveK<2>(d, v);
  a = v[0];
  b = v[1];
}
#endif

// softcap * tanh(x / softcap) (Gemma 2 logit soft-capping), and the factor
// d/dx of it expressed through its result z: 1 - (z / softcap)^2.
HWY_INLINE VF SoftCap(DF d, VF x, float cap, float inv_cap) {
  return hn::Mul(hn::Set(d, cap), hn::Tanh(d, hn::Mul(x, hn::Set(d, inv_cap))));
}
HWY_INLINE VF SoftCapSlope(DF d, VF z, float inv_cap) {
  const VF t = hn::Mul(z, hn::Set(d, inv_cap));
  return hn::NegMulAdd(t, t, hn::Set(d, 1.0f));
}

// Row pointer helpers.
template <typename T>
HWY_INLINE const T* RowPtr(const void* base, size_t stride, size_t row) {
  return reinterpret_cast<const T*>(static_cast<const unsigned char*>(base) + row * stride * sizeof(T));
}
template <typename T>
HWY_INLINE T* RowPtrMut(void* base, size_t stride, size_t row) {
  return reinterpret_cast<T*>(static_cast<unsigned char*>(base) + row * stride * sizeof(T));
}

// Lane-wise max over n elements in four accumulators: each element goes to
// one lane of one of them (past n, -inf), so distinct lanes, of one
// accumulator or of two, hold distinct elements.
template <typename T>
HWY_INLINE void MaxLanes4(const T* HWY_RESTRICT x, size_t n, VF& m0, VF& m1, VF& m2, VF& m3) {
  const DF d;
  const size_t N = hn::Lanes(d);
  m0 = hn::Set(d, kNegInf);
  m1 = m0;
  m2 = m0;
  m3 = m0;
  size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    m0 = hn::Max(m0, LoadF32(d, x + i));
    m1 = hn::Max(m1, LoadF32(d, x + i + N));
    m2 = hn::Max(m2, LoadF32(d, x + i + 2 * N));
    m3 = hn::Max(m3, LoadF32(d, x + i + 3 * N));
  }
  for (; i + N <= n; i += N) m0 = hn::Max(m0, LoadF32(d, x + i));
  if (i < n) m1 = hn::Max(m1, LoadTailF32(d, x + i, n - i, kNegInf));
}
HWY_INLINE VF MaxOf4(VF m0, VF m1, VF m2, VF m3) { return hn::Max(hn::Max(m0, m1), hn::Max(m2, m3)); }

// Max over n elements (lane-wise in four accumulators, then across lanes).
template <typename T>
HWY_INLINE float MaxOf(const T* HWY_RESTRICT x, size_t n) {
  const DF d;
  VF m0, m1, m2, m3;
  MaxLanes4(x, n, m0, m1, m2, m3);
  return hn::GetLane(hn::MaxOfLanes(d, MaxOf4(m0, m1, m2, m3)));
}

// Software prefetches go into L2 (__builtin_prefetch locality 2, prefetcht1
// on x86), never into L1: the walk reads the lines much later (its current
// segment, the next one's max and the 32 KiB between would not all stay in
// a 48 KiB L1d), and a prefetch into L2 frees its fill buffer sooner. On the
// Emerald Rapids VM, 8192x32000, A/B in the same runs, min ns/logit, L1 ->
// L2: CE forward f32 1 thread 0.356-0.368 -> 0.328-0.338, 2 threads
// 0.192-0.204 -> 0.179-0.183; forward + gradient f32 1 thread 0.642-0.688 ->
// 0.576-0.592; in place 0.469-0.475 -> 0.445-0.451; bf16 unchanged. (An
// earlier AVX-512 VM measured L2 ~5 % slower, while the gradient passes still
// prefetched whole next rows; an AMD EPYC measured it 5 % slower too.)
//
// The cache lines of `bytes` bytes at c (harmless past the end of a buffer:
// prefetches never fault). Four lines per iteration: a loop of one took 4
// instructions per line, 0.5 per logit of a two-input pass on AVX2.
HWY_INLINE void PrefetchLines(const char* c, size_t bytes) {
  size_t b = 0;
  for (; b + 256 <= bytes; b += 256) {
    __builtin_prefetch(c + b, 0, 2);
    __builtin_prefetch(c + b + 64, 0, 2);
    __builtin_prefetch(c + b + 128, 0, 2);
    __builtin_prefetch(c + b + 192, 0, 2);
  }
  for (; b < bytes; b += 64) __builtin_prefetch(c + b, 0, 2);
}

// The lines of n elements at p as a loop walks them, one prefetch per line:
// for fewer than 64 bytes, only when they start a new line.
template <typename T>
HWY_INLINE void PrefetchWalked(const T* p, size_t n) {
  const char* c = reinterpret_cast<const char*>(p);
  const size_t bytes = n * sizeof(T);
  if (bytes >= 64 || reinterpret_cast<uintptr_t>(c) % 64 < bytes) PrefetchLines(c, bytes);
}

// How far ahead of its loads from memory the statistics walk (WalkStats)
// prefetches. Without it one thread streams at ~60 % of the read bandwidth
// (the hardware prefetcher does not run far enough ahead of a loop this
// busy): CE forward f32 8192x32000, 1 thread, 51-56 -> 36-38 ms, in-place
// forward + gradient 80 -> 49-54 ms on the 2-core AVX-512 VM (distances
// 8-64 KiB all within noise of each other).
constexpr size_t kPrefetchBytes = 32 * 1024;

// The n elements kPrefetchBytes past p.
template <typename T>
HWY_INLINE void PrefetchAhead(const T* p, size_t n) {
  PrefetchWalked(p + kPrefetchBytes / sizeof(T), n);
}

// Whether column `col` of a row lies in its first kPrefetchBytes, which the
// row's stats walk does not prefetch itself: the gradient pass over the row
// before prefetches them. (Prefetching the whole next row there held the line
// fill buffers the gradient pass's own loads need: without the rest,
// 8192x32000 in place f32, 2 threads, 0.33-0.34 -> 0.26 ns/logit.)
template <typename T>
constexpr bool InRowHead(size_t col) {
  return col * sizeof(T) < kPrefetchBytes;
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#endif  // XENT_SRC_SIMD_INL_H_
