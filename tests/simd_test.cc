// Unit tests of the SIMD helpers in src/simd-inl.h: the exponential that
// replaces hn::Exp on the softmax range (every float of its domain, on every
// target), and, per target, the bf16 / f16 conversions (against the scalar
// round-to-nearest-even reference, itself checked against the hardware where
// the CPU has F16C).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tests/simd_test.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "hwy/tests/hwy_gtest.h"
#include "src/simd-inl.h"

#if HWY_ONCE
#include <algorithm>
#include <fstream>
#include <string>
#include <thread>
#include <vector>
#if HWY_ARCH_X86
#include <immintrin.h>
#endif
#endif

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

// ExpNonPositive over n inputs (n a multiple of kMaxLanesF32), compared with
// `want` (non-negative floats, so bit patterns are ordered like the values):
// returns the largest distance in ulp (NaN results give a huge distance).
HWY_NOINLINE uint32_t ExpMaxUlp(const float* in, const float* want, size_t n) {
  const DF d;
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(d);
  auto worst = hn::Zero(di);
  for (size_t i = 0; i < n; i += N) {
    const auto got = hn::BitCast(di, ExpNonPositive(d, hn::LoadU(d, in + i)));
    const auto ref = hn::BitCast(di, hn::LoadU(d, want + i));
    worst = hn::Max(worst, hn::Abs(hn::Sub(got, ref)));
  }
  return static_cast<uint32_t>(hn::GetLane(hn::MaxOfLanes(di, worst)));
}

// The target's bound on ExpNonPositive's error in ulp, over [-87.3, 0] or
// (near) over [-41.5, 0]: the one-step reduction of targets with FMA is off
// by up to 2.4e-7 relative for the smallest results (src/simd-inl.h).
HWY_NOINLINE uint32_t ExpUlpBound(bool near) { return HWY_NATIVE_FMA ? (near ? 3u : 5u) : 2u; }

// The reference: exp in double (Highway's, within 1 ulp of double) rounded to
// float, over n inputs (a multiple of kMaxLanesF32).
HWY_NOINLINE void RefExpBlock(const float* in, float* out, size_t n) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;
  const size_t N = hn::Lanes(dd);
  for (size_t i = 0; i < n; i += N) {
    hn::StoreU(hn::DemoteTo(df, hn::Exp(dd, hn::PromoteTo(dd, hn::LoadU(df, in + i)))), df, out + i);
  }
}

// ExpNonPositive over n inputs (any n).
HWY_NOINLINE void ExpBlock(const float* in, float* out, size_t n) {
  const DF d;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(ExpNonPositive(d, hn::LoadU(d, in + i)), d, out + i);
  if (i < n) StoreTailF32(d, ExpNonPositive(d, LoadTailF32(d, in + i, n - i, 0.0f)), out + i, n - i);
}

// ExpNonPositive2 (two vectors side by side) against ExpNonPositive, bit
// for bit: the number of lanes that differ, over n inputs (n a multiple of
// 2 * kMaxLanesF32).
HWY_NOINLINE size_t ExpPairDiffers(const float* in, size_t n) {
  const DF d;
  const hn::RebindToUnsigned<DF> du;
  const size_t N = hn::Lanes(d);
  size_t differ = 0;
  for (size_t i = 0; i + 2 * N <= n; i += 2 * N) {
    VF a = hn::LoadU(d, in + i), b = hn::LoadU(d, in + i + N);
    const VF one_a = ExpNonPositive(d, a), one_b = ExpNonPositive(d, b);
    ExpNonPositive2(d, a, b);
    differ += hn::CountTrue(du, hn::Ne(hn::BitCast(du, a), hn::BitCast(du, one_a)));
    differ += hn::CountTrue(du, hn::Ne(hn::BitCast(du, b), hn::BitCast(du, one_b)));
  }
  return differ;
}

// Loads of every bf16 and f16 bit pattern agree with the scalar conversion.
HWY_NOINLINE void TestLoads() {
  const DF d;
  const size_t N = hn::Lanes(d);
  HWY_ALIGN uint16_t src[kMaxLanesF32];
  HWY_ALIGN float out[kMaxLanesF32];
  for (uint32_t base = 0; base < 65536; base += static_cast<uint32_t>(N)) {
    for (size_t i = 0; i < N; ++i) src[i] = static_cast<uint16_t>(base + i);
    hn::Store(LoadF32(d, reinterpret_cast<const BF16*>(src)), d, out);
    for (size_t i = 0; i < N && base + i < 65536; ++i) {
      const float want = F32FromBF16Bits(src[i]);
      ASSERT_TRUE(std::memcmp(&out[i], &want, 4) == 0 || (std::isnan(want) && std::isnan(out[i])))
          << "bf16 " << src[i] << " got " << out[i] << " want " << want;
    }
    hn::Store(LoadF32(d, reinterpret_cast<const F16*>(src)), d, out);
    for (size_t i = 0; i < N && base + i < 65536; ++i) {
      const float want = F32FromF16Bits(src[i]);
      ASSERT_TRUE(std::memcmp(&out[i], &want, 4) == 0 || (std::isnan(want) && std::isnan(out[i])))
          << "f16 " << src[i] << " got " << out[i] << " want " << want;
    }
  }
}

// Stores (f32 -> bf16 / f16) agree bit for bit with the scalar
// round-to-nearest-even reference on every 97th float bit pattern (the
// software bf16 rounding; TestNativeBF16 compares the CPU's with it).
HWY_NOINLINE void TestStores() {
  const bool saved_native = g_native_bf16;
  g_native_bf16 = false;
  const DF d;
  const size_t N = hn::Lanes(d);
  HWY_ALIGN float in[kMaxLanesF32];
  HWY_ALIGN uint16_t out_bf[kMaxLanesF32], out_h[kMaxLanesF32];
  size_t bad = 0;
  for (uint64_t b = 0; b < (uint64_t{1} << 32); b += 97 * N) {
    for (size_t i = 0; i < N; ++i) {
      const uint32_t u = static_cast<uint32_t>(b + 97 * i);
      std::memcpy(&in[i], &u, 4);
    }
    const VF v = hn::Load(d, in);
    StoreF32(d, v, reinterpret_cast<BF16*>(out_bf));
    StoreF32(d, v, reinterpret_cast<F16*>(out_h));
    for (size_t i = 0; i < N; ++i) {
      const uint16_t wb = BF16BitsFromF32(in[i]), wh = F16BitsFromF32(in[i]);
      const bool nan = std::isnan(in[i]);
      // NaN payloads may differ; both must be NaN.
      const bool ok_b = nan ? std::isnan(F32FromBF16Bits(out_bf[i])) : out_bf[i] == wb;
      const bool ok_h = nan ? std::isnan(F32FromF16Bits(out_h[i])) : out_h[i] == wh;
      if ((!ok_b || !ok_h) && ++bad <= 5) {
        ADD_FAILURE() << "input bits " << std::hex << (b + 97 * i) << " bf16 " << out_bf[i] << " want " << wb << " f16 "
                      << out_h[i] << " want " << wh;
      }
    }
  }
  g_native_bf16 = saved_native;
  EXPECT_EQ(bad, 0u);
}

// The native bf16 conversion (AVX512_BF16, on the AVX-512 targets when the CPU
// has it) gives the software rounding's bits for every f32 input, NaNs
// (quiet bit set, payload kept) and infinities included, except subnormals:
// +-0 with the input's sign. A no-op elsewhere.
HWY_NOINLINE void TestNativeBF16() {
#if XENT_NATIVE_BF16_ASM
  if (!CpuHasAvx512Bf16()) return;
  const DF d;
  const hn::RebindToUnsigned<DF> du;
  const hn::Rebind<uint16_t, DF> du16;
  const size_t N = hn::Lanes(d);
  const bool saved = g_native_bf16;
  g_native_bf16 = true;
  const auto iota = hn::Iota(du, 0);
  HWY_ALIGN uint16_t got[kMaxLanesF32], want[kMaxLanesF32];
  size_t bad = 0, flushed = 0;
  for (uint64_t b = 0; b < (uint64_t{1} << 32); b += N) {
    const VF v = hn::BitCast(d, hn::Add(iota, hn::Set(du, static_cast<uint32_t>(b))));
    const auto native = DemoteBF16(d, v);
    const auto soft = DemoteBF16Soft(d, v);
    if (hn::AllTrue(du16, hn::Eq(native, soft))) continue;
    hn::Store(native, du16, got);
    hn::Store(soft, du16, want);
    for (size_t i = 0; i < N; ++i) {
      const uint32_t u = static_cast<uint32_t>(b + i);
      const bool subnormal = (u & 0x7F800000u) == 0 && (u & 0x7FFFFFu) != 0;
      if (got[i] == want[i]) continue;
      if (subnormal && got[i] == static_cast<uint16_t>((u >> 16) & 0x8000u)) {
        ++flushed;
      } else if (++bad <= 5) {
        ADD_FAILURE() << "input bits " << std::hex << u << " native " << got[i] << " software " << want[i];
      }
    }
  }
  g_native_bf16 = saved;
  EXPECT_EQ(bad, 0u);
  // The software rounding gives a nonzero bf16 for the subnormals of
  // magnitude bits 0x8001..0x7FFFFF: those are the ones flushed, both signs.
  EXPECT_EQ(flushed, 2 * size_t{0x7FFFFF - 0x8001 + 1});
#endif
}

// Tails never touch memory past the r elements (checked by ASan builds) and
// keep the padding value in the other lanes.
HWY_NOINLINE void TestTails() {
  const DF d;
  const size_t N = hn::Lanes(d);
  std::vector<float> src(N);
  for (size_t i = 0; i < N; ++i) src[i] = static_cast<float>(i + 1);
  HWY_ALIGN float out[kMaxLanesF32];
  for (size_t r = 0; r < N; ++r) {
    std::vector<float> exact(src.begin(), src.begin() + static_cast<long>(r));  // heap, exact size
    hn::Store(LoadTailF32(d, exact.data(), r, -5.0f), d, out);
    for (size_t i = 0; i < N; ++i) EXPECT_EQ(out[i], i < r ? float(i + 1) : -5.0f);
    std::vector<float> dst(r, 0.0f);
    StoreTailF32(d, hn::Set(d, 3.0f), dst.data(), r);
    for (float v : dst) EXPECT_EQ(v, 3.0f);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent {
HWY_BEFORE_TEST(SimdTest);
HWY_EXPORT_AND_TEST_P(SimdTest, TestLoads);
HWY_EXPORT_AND_TEST_P(SimdTest, TestStores);
HWY_EXPORT_AND_TEST_P(SimdTest, TestTails);
HWY_EXPORT_AND_TEST_P(SimdTest, TestNativeBF16);

HWY_EXPORT(ExpBlock);

HWY_EXPORT(ExpMaxUlp);
HWY_EXPORT(ExpPairDiffers);
HWY_EXPORT(ExpUlpBound);
HWY_EXPORT(RefExpBlock);

float FloatFromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ulp distance between two floats of the same sign (as ordered integers).
int64_t UlpDiff(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::abs(static_cast<int64_t>(ia) - static_cast<int64_t>(ib));
}

// Index of a target in a HWY_EXPORT table (as src/dispatch.cc computes it).
size_t TableIndex(int64_t target) {
  const int64_t mask =
      (HWY_CHOSEN_TARGET_SHIFT(target) | HWY_CHOSEN_TARGET_MASK_SCALAR) & HWY_CHOSEN_TARGET_MASK_TARGETS;
  return hwy::Num0BitsBelowLS1Bit_Nonzero64(static_cast<uint64_t>(mask));
}

// ExpNonPositive on every float of its accuracy domain [-87.3, 0] (about
// 1.1e9 inputs), on every compiled target this CPU supports: within the
// target's bound (ExpUlpBound) of exp computed in double and rounded to float
// (spot-checked against the C library's exp below), and within its near
// bound for results above 1e-18 (x >= -41.5). The reference is computed once per block and shared
// by the targets; two threads split the range. Below -87.3 (results under 2^-126, flushed to exactly +0), at -inf,
// for NaN and at +0, a dense sample: every input next to the edge and every
// 101st bit pattern down to -inf, and the NaN patterns.
TEST(ExpNonPositive, EveryInputOfTheDomainOnEveryTarget) {
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  const uint32_t kFirst = 0x80000000u;        // -0.0f
  const uint32_t kLast = 0xC2AE999Au;         // -87.3f: the last input with a normal result
  const uint32_t kNearEnd = 0xC2260001u;      // past -41.5f
  constexpr size_t kBlock = size_t{1} << 16;  // a multiple of every target's lane count
  const size_t nthreads = 2;
  std::vector<std::vector<uint32_t>> worst(nthreads, std::vector<uint32_t>(targets.size(), 0));
  std::vector<std::vector<float>> worst_x(nthreads, std::vector<float>(targets.size(), 0.0f));
  std::vector<std::vector<uint32_t>> near(nthreads, std::vector<uint32_t>(targets.size(), 0));
  // (ExpNonPositive2's lanes that differ from ExpNonPositive's, on every 8th
  // block and on the edge inputs.)
  std::vector<std::vector<size_t>> pair_differ(nthreads, std::vector<size_t>(targets.size(), 0));
  auto run = [&](size_t tid, uint64_t first, uint64_t end) {  // bit patterns [first, end)
    std::vector<float> in(kBlock), want(kBlock), got(kBlock);
    for (uint64_t b = first; b < end; b += kBlock) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kBlock, end - b));
      for (size_t i = 0; i < kBlock; ++i) {
        const uint32_t u = static_cast<uint32_t>(b + i);
        in[i] = 0.0f;  // padding past n: exp(0) = 1
        if (i < n) std::memcpy(&in[i], &u, 4);
      }
      HWY_DYNAMIC_DISPATCH(RefExpBlock)(in.data(), want.data(), kBlock);
      for (size_t t = 0; t < targets.size(); ++t) {
        const size_t k = TableIndex(targets[t]);
        const uint32_t ulp = (*HWY_DISPATCH_TABLE(ExpMaxUlp)[k])(in.data(), want.data(), kBlock);
        if ((b - first) / kBlock % 8 == 0)
          pair_differ[tid][t] += (*HWY_DISPATCH_TABLE(ExpPairDiffers)[k])(in.data(), kBlock);
        if (b + n <= kNearEnd) near[tid][t] = std::max(near[tid][t], ulp);
        if (ulp <= worst[tid][t]) continue;
        worst[tid][t] = ulp;  // find the input (rare: only when the worst grows)
        (*HWY_DISPATCH_TABLE(ExpBlock)[k])(in.data(), got.data(), kBlock);
        for (size_t i = 0; i < kBlock; ++i) {
          if (!(UlpDiff(got[i], want[i]) < ulp)) {
            worst_x[tid][t] = in[i];
            break;
          }
        }
      }
    }
  };
  {  // The reference agrees with the C library's exp (in double, rounded).
    std::vector<float> in(kBlock), want(kBlock);
    size_t differ = 0;
    for (uint64_t b = kFirst; b + kBlock <= kLast; b += 1021 * kBlock) {
      for (size_t i = 0; i < kBlock; ++i) in[i] = FloatFromBits(static_cast<uint32_t>(b + i));
      HWY_DYNAMIC_DISPATCH(RefExpBlock)(in.data(), want.data(), kBlock);
      for (size_t i = 0; i < kBlock; ++i) differ += want[i] != static_cast<float>(std::exp(static_cast<double>(in[i])));
    }
    EXPECT_EQ(differ, 0u);
  }
  const uint64_t end = uint64_t{kLast} + 1, mid = kFirst + (end - kFirst) / 2;
  std::thread other(run, 1, mid, end);
  run(0, kFirst, mid);
  other.join();

  // The flush-to-zero range, -inf, NaN and +0.
  std::vector<float> edge;
  for (uint32_t u = kLast + 1; u < kLast + 100000; ++u) edge.push_back(FloatFromBits(u));
  for (uint64_t u = kLast + 1; u <= 0xFF800000u; u += 101) edge.push_back(FloatFromBits(static_cast<uint32_t>(u)));
  edge.push_back(-std::numeric_limits<float>::infinity());
  const size_t num_zero = edge.size();
  for (uint64_t u = 0xFF800001u; u <= 0xFFFFFFFFu; u += 4099) edge.push_back(FloatFromBits(static_cast<uint32_t>(u)));
  edge.push_back(std::numeric_limits<float>::quiet_NaN());
  edge.push_back(0.0f);
  std::vector<float> out(edge.size());
  for (size_t t = 0; t < targets.size(); ++t) {
    const char* name = hwy::TargetName(targets[t]);
    uint32_t w = 0, w_near = 0;
    float wx = 0.0f;
    for (size_t tid = 0; tid < nthreads; ++tid) {
      w_near = std::max(w_near, near[tid][t]);
      if (worst[tid][t] > w) {
        w = worst[tid][t];
        wx = worst_x[tid][t];
      }
    }
    const auto bound = HWY_DISPATCH_TABLE(ExpUlpBound)[TableIndex(targets[t])];
    EXPECT_LE(w, (*bound)(false)) << name << ": worst input " << wx;
    EXPECT_LE(w_near, (*bound)(true)) << name << ": over [-41.5, 0]";
    std::printf("%s: max error %u ulp over [-87.3, 0], %u over [-41.5, 0]\n", name, w, w_near);
    size_t differ = 0;
    for (size_t tid = 0; tid < nthreads; ++tid) differ += pair_differ[tid][t];
    std::vector<float> padded(edge);
    constexpr size_t kPair = 2 * HWY_MAX_BYTES / sizeof(float);  // two vectors of any target
    padded.resize((edge.size() + kPair - 1) / kPair * kPair, 0.0f);
    differ += (*HWY_DISPATCH_TABLE(ExpPairDiffers)[TableIndex(targets[t])])(padded.data(), padded.size());
    EXPECT_EQ(differ, 0u) << name << ": ExpNonPositive2 differs from ExpNonPositive";
    (*HWY_DISPATCH_TABLE(ExpBlock)[TableIndex(targets[t])])(edge.data(), out.data(), edge.size());
    size_t bad = 0;
    for (size_t i = 0; i < edge.size(); ++i) {
      const bool ok = i < num_zero ? (out[i] == 0.0f && !std::signbit(out[i]))
                                   : (i + 1 < edge.size() ? std::isnan(out[i]) : out[i] == 1.0f);
      if (!ok && ++bad <= 3) ADD_FAILURE() << name << ": exp(" << edge[i] << ") = " << out[i];
    }
  }
}

#if HWY_ARCH_X86
}  // namespace xent
#include <cpuid.h>
namespace xent {
// The scalar f16 reference agrees with the F16C hardware conversion.
__attribute__((target("f16c"))) static uint16_t HardwareF16(float f) {
  return static_cast<uint16_t>(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0));
}
static bool HasF16C() {
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
// CPUID's AVX512_BF16 bit, which turns the native bf16 stores on, agrees with
// what the kernel reports (so they are not silently off where they should run).
TEST(NativeBF16, DetectedAsTheKernelReports) {
  std::ifstream in("/proc/cpuinfo");
  if (!in) GTEST_SKIP() << "no /proc/cpuinfo";
  std::string line;
  bool flags_seen = false, has = false;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    flags_seen = true;
    has = (line + " ").find(" avx512_bf16 ") != std::string::npos;
    break;
  }
  if (!flags_seen) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  EXPECT_EQ(CpuHasAvx512Bf16(), has);
}
TEST(ScalarReference, F16MatchesHardware) {
  if (!HasF16C()) GTEST_SKIP() << "no F16C on this CPU";
  size_t bad = 0;
  for (uint64_t b = 0; b < (uint64_t{1} << 32); b += 11) {
    const uint32_t u = static_cast<uint32_t>(b);
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isnan(f)) continue;
    if (F16BitsFromF32(f) != HardwareF16(f) && ++bad <= 5) ADD_FAILURE() << std::hex << u;
  }
  EXPECT_EQ(bad, 0u);
}
#endif
}  // namespace xent
#endif
