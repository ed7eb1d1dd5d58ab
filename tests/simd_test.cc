// Per-target unit tests of the SIMD helpers in src/simd-inl.h: the
// exponential that replaces hn::Exp on the softmax range (accuracy over its
// whole domain), and the bf16 / f16 conversions (against the scalar
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
#if HWY_ARCH_X86
#include <immintrin.h>
#endif
#endif

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

// ulp distance between two positive floats (as ordered integers).
inline int64_t UlpDiff(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::abs(static_cast<int64_t>(ia) - static_cast<int64_t>(ib));
}

HWY_NOINLINE void TestExpNonPositive() {
  const DF d;
  const size_t N = hn::Lanes(d);
  HWY_ALIGN float in[kMaxLanesF32], out[kMaxLanesF32];
  int64_t max_ulp = 0;
  float worst = 0;
  // Every 13th float in [-87.3, 0] (about 85 million inputs), in lane
  // batches; the result is compared with exp in double rounded to float.
  uint32_t bits = 0x80000000u;  // -0.0
  const uint32_t last = 0xC2AE999Au;  // -87.3f
  size_t filled = 0;
  auto flush = [&](size_t n) {
    hn::Store(ExpNonPositive(d, hn::Load(d, in)), d, out);
    for (size_t i = 0; i < n; ++i) {
      const float want = static_cast<float>(std::exp(static_cast<double>(in[i])));
      const int64_t u = UlpDiff(out[i], want);
      if (u > max_ulp) {
        max_ulp = u;
        worst = in[i];
      }
    }
  };
  for (; bits <= last; bits += 13) {
    float x;
    std::memcpy(&x, &bits, 4);
    in[filled++] = x;
    if (filled == N) {
      flush(N);
      filled = 0;
    }
  }
  if (filled) {
    for (size_t i = filled; i < N; ++i) in[i] = 0.0f;
    flush(filled);
  }
  EXPECT_LE(max_ulp, 2) << "worst input " << worst;
  // Special values and the flush-to-zero edge.
  const float specials[] = {0.0f, -0.0f, -87.29f, -87.31f, -88.0f, -100.0f, -1e30f,
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()};
  for (float s : specials) {
    hn::Store(ExpNonPositive(d, hn::Set(d, s)), d, out);
    if (std::isnan(s)) {
      EXPECT_TRUE(std::isnan(out[0]));
    } else if (s < -87.3f) {
      EXPECT_EQ(out[0], 0.0f) << s;
    } else {
      EXPECT_LE(UlpDiff(out[0], static_cast<float>(std::exp(double(s)))), 2) << s;
    }
  }
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
// round-to-nearest-even reference on every 97th float bit pattern.
HWY_NOINLINE void TestStores() {
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
        ADD_FAILURE() << "input bits " << std::hex << (b + 97 * i) << " bf16 " << out_bf[i] << " want " << wb
                      << " f16 " << out_h[i] << " want " << wh;
      }
    }
  }
  EXPECT_EQ(bad, 0u);
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
HWY_EXPORT_AND_TEST_P(SimdTest, TestExpNonPositive);
HWY_EXPORT_AND_TEST_P(SimdTest, TestLoads);
HWY_EXPORT_AND_TEST_P(SimdTest, TestStores);
HWY_EXPORT_AND_TEST_P(SimdTest, TestTails);

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
