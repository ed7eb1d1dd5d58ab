// GoogleTest glue for the shared scaffolding: run a test on every SIMD target
// of this machine, and report a case's problems as failures.
#ifndef XENT_TESTS_COMMON_GTEST_UTIL_H_
#define XENT_TESTS_COMMON_GTEST_UTIL_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/common/case.h"

namespace xent_test {

inline std::vector<std::string> Targets() {
  std::vector<const char*> names(64);
  const size_t n = xent_supported_targets(names.data(), names.size());
  return std::vector<std::string>(names.begin(), names.begin() + static_cast<long>(n));
}

// Runs the test once per supported target (forced through the C API, which
// steers libxent's own dispatch).
class AllTargets : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { ASSERT_EQ(xent_force_target(GetParam().c_str()), XENT_OK) << xent_last_error(); }
  void TearDown() override { xent_force_target(nullptr); }
};

#define XENT_INSTANTIATE_ALL_TARGETS(suite)                                             \
  INSTANTIATE_TEST_SUITE_P(Targets, suite, ::testing::ValuesIn(::xent_test::Targets()), \
                           [](const ::testing::TestParamInfo<std::string>& i) { return i.param; })

inline void ExpectNoProblems(const std::vector<std::string>& problems, const std::string& what) {
  for (const std::string& p : problems) ADD_FAILURE() << what << ": " << p;
}

// Runs a built case: expects XENT_OK, the invariants and every output within
// the contract's bounds of the float64 reference.
inline void ExpectRun(Case& c) {
  const xent_status rc = c.Run();
  ASSERT_EQ(rc, XENT_OK) << c.Describe() << ": " << xent_last_error();
  std::vector<std::string> problems;
  c.CheckWritten(&problems);
  c.Compare(c.Reference(Profile::kContract), Profile::kContract, &problems);
  ExpectNoProblems(problems, c.Describe());
}

// XENT_TEST_MAX_ELEMENTS=N skips the cases of more than N logits (B x V),
// counted and reported at exit: for emulated runs (qemu), where the float64
// reference of the large sweeps is most of the time and the kernels run the
// same code for every size past a few segments (the native runs keep them).
inline size_t& SkippedCases() {
  static size_t n = 0;
  return n;
}
inline size_t MaxElements() {
  static const size_t n = [] {
    const char* e = std::getenv("XENT_TEST_MAX_ELEMENTS");
    if (e == nullptr || *e == '\0') return SIZE_MAX;
    std::atexit([] {
      std::fprintf(stderr, "%zu cases of more than XENT_TEST_MAX_ELEMENTS=%s logits skipped\n", SkippedCases(),
                   std::getenv("XENT_TEST_MAX_ELEMENTS"));
    });
    return static_cast<size_t>(std::strtoull(e, nullptr, 10));
  }();
  return n;
}

// True (and counted) when a case of `logits` elements is over the limit.
inline bool SkipLarge(size_t logits) {
  if (logits <= MaxElements()) return false;
  ++SkippedCases();
  return true;
}

// The fused-rows tests' cases (RowsTogetherMatchRowsAlone, B rows of V):
// rows past the engine's first 16 segments (V > 32000) for f32 in place
// only, to hold their time; emulated and sanitizer runs
// (XENT_TEST_MAX_ELEMENTS) keep the rows of one and two segments (V <= 5003,
// aligned and not). True: skip the case.
inline bool SkipRowsCase(size_t B, size_t V, bool f32_in_place) {
  if (V > 32000 && !f32_in_place) return true;
  return V > 5003 && SkipLarge(B * V);
}

// The first of n elements of dtype dt (f32, bf16, f16) at a and b whose bits
// differ, a NaN's sign and payload aside (IEEE 754 leaves them to the order
// of the operations: x86's invalid operation makes -NaN, a NaN operand passes
// its own on); n when none.
inline size_t FirstBitsDiff(const void* a, const void* b, size_t n, DType dt) {
  const size_t es = dt == DType::kF32 ? 4 : 2;
  for (size_t i = 0; i < n; ++i) {
    uint32_t x = 0, y = 0;
    std::memcpy(&x, static_cast<const unsigned char*>(a) + i * es, es);
    std::memcpy(&y, static_cast<const unsigned char*>(b) + i * es, es);
    if (x == y) continue;
    const uint32_t abs_mask = es == 4 ? 0x7fffffffu : 0x7fffu;
    const uint32_t inf = es == 4 ? 0x7f800000u : dt == DType::kBF16 ? 0x7f80u : 0x7c00u;
    if ((x & abs_mask) > inf && (y & abs_mask) > inf) continue;
    return i;
  }
  return n;
}

inline void ExpectCase(const CaseSpec& spec) {
  if (SkipLarge(spec.B * spec.V)) return;
  Case c(spec);
  ExpectRun(c);
}

}  // namespace xent_test

#endif  // XENT_TESTS_COMMON_GTEST_UTIL_H_
