// Scalar dtype conversions, target-independent (compiled once, never inside a
// per-target namespace). Used for single elements (a target logit, a tail
// element) and by the float64 reference in tests. Rounding is IEEE
// round-to-nearest-even, as PyTorch's .to(torch.bfloat16 / torch.float16).
#ifndef XENT_SRC_DTYPE_H_
#define XENT_SRC_DTYPE_H_

#include <cstdint>
#include <cstdlib>
#include <cstring>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace xent {

enum class DType : int32_t { kAuto = 0, kF32 = 1, kBF16 = 2, kF16 = 3, kI32 = 4, kI64 = 5 };

inline size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kI32: return 4;
    case DType::kBF16:
    case DType::kF16: return 2;
    case DType::kI64: return 8;
    default: return 0;
  }
}

inline uint32_t BitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float FloatOf(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float F32FromBF16Bits(uint16_t b) { return FloatOf(static_cast<uint32_t>(b) << 16); }
inline uint16_t BF16BitsFromF32(float f) {
  uint32_t u = BitsOf(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Whether the AVX-512 targets' vector bf16 stores use the CPU's own
// conversion (vcvtneps2bf16, AVX512_BF16; src/simd-inl.h) instead of the
// software rounding above. Both give the same bits for every input except f32
// subnormals, which the instruction turns into +-0 (tested on every f32 in
// tests/simd_test.cc). Read once from CPUID; the environment variable
// XENT_NATIVE_BF16=0 turns it off.
inline bool CpuHasAvx512Bf16() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d) == 0) return false;
  return (a & (1u << 5)) != 0;  // CPUID.(EAX=7,ECX=1):EAX[5] = AVX512_BF16
#else
  return false;
#endif
}
inline bool NativeBF16Default() {
  const char* env = std::getenv("XENT_NATIVE_BF16");
  if (env != nullptr && env[0] == '0' && env[1] == '\0') return false;
  return CpuHasAvx512Bf16();
}
inline bool g_native_bf16 = NativeBF16Default();  // NOLINT(cppcoreguidelines-avoid-non-const-global-variables)

// Whether bf16 products of linear cross-entropy run as oneDNN's native bf16
// GEMMs (src/gemm_bf16.cc, a build with oneDNN) rather than widened to f32
// for the BLAS's sgemm: with AVX512_BF16 (and XENT_NATIVE_BF16 not 0), but
// not on an Intel CPU without AMX, where the bf16 dot products do not beat
// the f32 FMAs: on an Emerald Rapids Xeon (AVX512_BF16, no AMX), 2 threads,
// 4096x1024x32000 bf16, a step took 5.18-5.22 s on oneDNN 2.6.3's bf16 GEMMs
// and 3.06-3.08 s widened to OpenBLAS's sgemm (which is also the more
// accurate: the logits' gradient is not rounded to bf16 for the products).
// The environment variable XENT_BF16_GEMM=onednn or =f32 overrides the
// choice (onednn still needs AVX512_BF16).
inline bool CpuIsIntel() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &c, &d) == 0) return false;
  return b == 0x756E6547u && d == 0x49656E69u && c == 0x6C65746Eu;  // "GenuineIntel"
#else
  return false;
#endif
}
// AMX with bf16 tiles (CPUID.(EAX=7,ECX=0):EDX[22]) whose state the OS
// saves (XCR0 bits 17 and 18).
inline bool CpuHasAmxBf16() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0 || (d & (1u << 22)) == 0) return false;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0 || (c & (1u << 27)) == 0) return false;  // OSXSAVE
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & (3u << 17)) == (3u << 17);
#else
  return false;
#endif
}
inline bool Bf16GemmDefault() {
  const char* env = std::getenv("XENT_BF16_GEMM");
  if (env != nullptr && std::strcmp(env, "f32") == 0) return false;
  if (!NativeBF16Default()) return false;
  if (env != nullptr && std::strcmp(env, "onednn") == 0) return true;
  return !CpuIsIntel() || CpuHasAmxBf16();
}
inline const bool g_bf16_gemm = Bf16GemmDefault();

inline float F32FromF16Bits(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in f32
    const float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (exp == 31) return FloatOf(sign | 0x7F800000u | (mant << 13));  // inf / NaN
  return FloatOf(sign | ((exp + 112u) << 23) | (mant << 13));
}
// Round-to-nearest-even (F. Giesen's float_to_half_fast3_rtne).
inline uint16_t F16BitsFromF32(float f) {
  uint32_t u = BitsOf(f);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  uint32_t o;
  if (u >= 0x47800000u) {  // >= 65536 (rounds to inf), inf or NaN
    o = (u > 0x7F800000u) ? 0x7E00u : 0x7C00u;
  } else if (u < 0x38800000u) {  // below 2^-14: subnormal or zero in f16
    const float denorm_magic = FloatOf(((127 - 15) + (23 - 10) + 1) << 23);
    o = BitsOf(FloatOf(u) + denorm_magic) - BitsOf(denorm_magic);
  } else {
    const uint32_t mant_odd = (u >> 13) & 1u;
    u += (static_cast<uint32_t>(15 - 127) << 23) + 0xFFFu;
    u += mant_odd;
    o = u >> 13;
  }
  return static_cast<uint16_t>(o | (sign >> 16));
}

// Element i of a row of dtype t (unaligned-safe).
inline float LoadScalarF32(const void* base, size_t i, DType t) {
  const auto* p = static_cast<const unsigned char*>(base);
  switch (t) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return f;
    }
    case DType::kBF16: {
      uint16_t b;
      std::memcpy(&b, p + 2 * i, 2);
      return F32FromBF16Bits(b);
    }
    case DType::kF16: {
      uint16_t b;
      std::memcpy(&b, p + 2 * i, 2);
      return F32FromF16Bits(b);
    }
    default: return 0.0f;
  }
}
inline void StoreScalarF32(void* base, size_t i, DType t, float v) {
  auto* p = static_cast<unsigned char*>(base);
  switch (t) {
    case DType::kF32: std::memcpy(p + 4 * i, &v, 4); break;
    case DType::kBF16: {
      uint16_t b = BF16BitsFromF32(v);
      std::memcpy(p + 2 * i, &b, 2);
      break;
    }
    case DType::kF16: {
      uint16_t b = F16BitsFromF32(v);
      std::memcpy(p + 2 * i, &b, 2);
      break;
    }
    default: break;
  }
}
inline int64_t LoadIndex(const void* base, size_t i, DType t) {
  const auto* p = static_cast<const unsigned char*>(base);
  if (t == DType::kI32) {
    int32_t v;
    std::memcpy(&v, p + 4 * i, 4);
    return v;
  }
  int64_t v;
  std::memcpy(&v, p + 8 * i, 8);
  return v;
}

}  // namespace xent

#endif  // XENT_SRC_DTYPE_H_
