// The C ABI contract: status codes and messages for bad input, outputs left
// untouched on failure, args structs versioned by size, versions, targets.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <thread>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace xent_test {
namespace {

// Expects `status` and a message containing every fragment.
#define EXPECT_ERROR(call, status, ...)                                                      \
  do {                                                                                       \
    const xent_status rc_ = (call);                                                          \
    EXPECT_EQ(rc_, status) << #call << ": " << xent_last_error();                            \
    for (const char* frag : {__VA_ARGS__}) {                                                 \
      EXPECT_NE(std::string(xent_last_error()).find(frag), std::string::npos)                \
          << "message \"" << xent_last_error() << "\" lacks \"" << frag << "\"";             \
    }                                                                                        \
  } while (0)

struct CeFixture {
  size_t B = 20, V = 32000;
  std::vector<float> logits, grad;
  std::vector<int64_t> target;
  Vec loss{1, 123.0f}, row_loss{20, 123.0f};
  xent_cross_entropy_args a;
  CeFixture() : logits(B * V, 0.5f), grad(B * V, 7.0f), target(B, 1) {
    XENT_ARGS_INIT(xent_cross_entropy_args, &a);
    a.batch = B;
    a.num_classes = V;
    a.logits = logits.data();
    a.target = target.data();
    a.loss = loss.data();
    a.row_loss = row_loss.data();
    a.grad = grad.data();
  }
  // No output written.
  bool Untouched() const {
    if (loss[0] != 123.0f) return false;
    for (size_t i = 0; i < B; ++i)
      if (row_loss[i] != 123.0f) return false;
    for (float g : grad)
      if (g != 7.0f) return false;
    return loss.CanariesIntact() && row_loss.CanariesIntact();
  }
};

TEST(CApi, StatusStringsAndVersion) {
  for (int s = 0; s <= 12; ++s) {
    EXPECT_STRNE(xent_status_string(static_cast<xent_status>(s)), "unknown status") << s;
  }
  EXPECT_STREQ(xent_status_string(static_cast<xent_status>(999)), "unknown status");
  EXPECT_STREQ(xent_version_string(), XENT_VERSION_STRING);
  EXPECT_EQ(xent_version_number(), static_cast<uint32_t>(XENT_VERSION_NUMBER));
  EXPECT_EQ(xent_abi_version(), static_cast<uint32_t>(XENT_ABI_VERSION));
  const std::string backend = xent_threading_backend();
  EXPECT_TRUE(backend == "openmp" || backend == "tbb" || backend == "none") << backend;
  EXPECT_GE(xent_max_threads(), 1);
}

TEST(CApi, Targets) {
  const auto targets = Targets();
  ASSERT_FALSE(targets.empty());
#if defined(__x86_64__) || defined(__i386__)
  // The fallback is always there, last (SCALAR with GCC, EMU128 with clang).
  EXPECT_TRUE(targets.back() == "scalar" || targets.back() == "emu128") << targets.back();
#endif
  EXPECT_EQ(std::string(xent_active_target()), targets.front());  // best first, chosen by default
  for (const auto& t : targets) {
    ASSERT_EQ(xent_force_target(t.c_str()), XENT_OK) << xent_last_error();
    EXPECT_EQ(std::string(xent_active_target()), t);
  }
  // Case-insensitive; avx512 is an alias of avx3 (when supported).
  if (std::find(targets.begin(), targets.end(), "avx3") != targets.end()) {
    EXPECT_EQ(xent_force_target("AVX512"), XENT_OK);
    EXPECT_STREQ(xent_active_target(), "avx3");
  }
  const std::string before = xent_active_target();
  EXPECT_ERROR(xent_force_target("avx9000"), XENT_ERROR_UNSUPPORTED_TARGET, "avx9000", "supported:");
  EXPECT_EQ(std::string(xent_active_target()), before);  // unchanged
  EXPECT_EQ(xent_force_target("auto"), XENT_OK);
  EXPECT_EQ(std::string(xent_active_target()), targets.front());
  EXPECT_EQ(xent_force_target(nullptr), XENT_OK);
  EXPECT_EQ(xent_supported_targets(nullptr, 0), targets.size());
}

TEST(CApi, LastErrorIsPerThreadAndClearedOnSuccess) {
  CeFixture f;
  f.a.num_classes = 0;
  EXPECT_NE(xent_cross_entropy(&f.a), XENT_OK);
  EXPECT_STRNE(xent_last_error(), "");
  std::string other;
  std::thread t([&] { other = xent_last_error(); });
  t.join();
  EXPECT_EQ(other, "");  // another thread sees its own (empty) state
  f.a.num_classes = f.V;
  EXPECT_EQ(xent_cross_entropy(&f.a), XENT_OK);
  EXPECT_STREQ(xent_last_error(), "");
}

TEST(CApi, CrossEntropyBadInput) {
  {
    CeFixture f;
    f.target[17] = 32000;
    EXPECT_ERROR(xent_cross_entropy(&f.a), XENT_ERROR_TARGET_OUT_OF_RANGE, "target[17] = 32000 is outside [0, 32000)");
    EXPECT_TRUE(f.Untouched());
    f.target[17] = -1;
    EXPECT_ERROR(xent_cross_entropy(&f.a), XENT_ERROR_TARGET_OUT_OF_RANGE, "target[17] = -1");
    f.target[17] = -100;  // ignore_index: fine
    EXPECT_EQ(xent_cross_entropy(&f.a), XENT_OK) << xent_last_error();
  }
  auto check = [](void (*mutate)(CeFixture&), xent_status want, std::initializer_list<const char*> frags) {
    CeFixture f;
    mutate(f);
    const xent_status rc = xent_cross_entropy(&f.a);
    EXPECT_EQ(rc, want) << xent_last_error();
    for (const char* frag : frags)
      EXPECT_NE(std::string(xent_last_error()).find(frag), std::string::npos) << xent_last_error() << " / " << frag;
    EXPECT_TRUE(f.Untouched()) << xent_last_error();
  };
  check([](CeFixture& f) { f.a.logits = nullptr; }, XENT_ERROR_NULL_POINTER, {"logits is NULL"});
  check([](CeFixture& f) { f.a.target = nullptr; }, XENT_ERROR_NULL_POINTER, {"target is NULL"});
  check([](CeFixture& f) { f.a.num_classes = 0; }, XENT_ERROR_INVALID_SHAPE, {"num_classes = 0"});
  check([](CeFixture& f) { f.a.logits_stride = 100; }, XENT_ERROR_INVALID_SHAPE,
        {"logits_stride (100) < num_classes (32000)"});
  check([](CeFixture& f) { f.a.grad_stride = 5; }, XENT_ERROR_INVALID_SHAPE, {"grad_stride (5)"});
  check([](CeFixture& f) { f.a.logits_stride = SIZE_MAX / 2; }, XENT_ERROR_INVALID_SHAPE, {"overflows"});
  check([](CeFixture& f) { f.a.batch = SIZE_MAX / 4; }, XENT_ERROR_INVALID_SHAPE, {"overflows"});
  check([](CeFixture& f) { f.a.logits_dtype = 99; }, XENT_ERROR_INVALID_DTYPE, {"logits_dtype = 99"});
  check([](CeFixture& f) { f.a.logits_dtype = XENT_I32; }, XENT_ERROR_INVALID_DTYPE, {"logits_dtype = 4"});
  check([](CeFixture& f) { f.a.target_dtype = 42; }, XENT_ERROR_INVALID_DTYPE, {"target_dtype = 42"});
  check([](CeFixture& f) { f.a.grad_dtype = XENT_BF16; }, XENT_ERROR_INVALID_DTYPE,
        {"grad_dtype = 2", "f32 or the input's dtype"});
  check([](CeFixture& f) { f.a.reduction = 3; }, XENT_ERROR_INVALID_ENUM, {"reduction = 3"});
  check([](CeFixture& f) { f.a.reduction = -1; }, XENT_ERROR_INVALID_ENUM, {"reduction = -1"});
  check([](CeFixture& f) { f.a.label_smoothing = std::nanf(""); }, XENT_ERROR_INVALID_VALUE, {"label_smoothing = nan"});
  check([](CeFixture& f) { f.a.label_smoothing = 1.5f; }, XENT_ERROR_INVALID_VALUE, {"label_smoothing = 1.5"});
  check([](CeFixture& f) { f.a.z_loss = -1e-4f; }, XENT_ERROR_INVALID_VALUE, {"z_loss = -0.0001"});
  check([](CeFixture& f) { f.a.softcap = std::numeric_limits<float>::infinity(); }, XENT_ERROR_INVALID_VALUE,
        {"softcap = inf"});
  check([](CeFixture& f) { f.a.softcap = 1e-40f; }, XENT_ERROR_INVALID_VALUE,
        {"softcap = 9.99995e-41 is below FLT_MIN", "overflows f32"});
  check([](CeFixture& f) { f.a.grad_scale = std::nanf(""); }, XENT_ERROR_INVALID_VALUE, {"grad_scale = nan"});
  check([](CeFixture& f) { f.a.num_threads = -2; }, XENT_ERROR_INVALID_VALUE, {"num_threads = -2"});
  check([](CeFixture& f) { f.a.reserved0 = 1; }, XENT_ERROR_INVALID_VALUE, {"reserved0"});
  // Aliasing: gradient half-overlapping the logits; row_loss overlapping loss.
  check([](CeFixture& f) { f.a.grad = f.logits.data() + 5; }, XENT_ERROR_ALIASING, {"grad overlaps logits"});
  check([](CeFixture& f) { f.a.row_loss = f.a.loss; }, XENT_ERROR_ALIASING, {"overlaps"});
  check([](CeFixture& f) { f.a.grad = f.logits.data(); f.a.grad_stride = f.V + 1; f.a.batch = 2; },
        XENT_ERROR_ALIASING, {"grad overlaps logits"});
  // In place is allowed; different stride interleaving is detected precisely.
  {
    CeFixture f;
    f.a.grad = f.logits.data();
    EXPECT_EQ(xent_cross_entropy(&f.a), XENT_OK) << xent_last_error();
  }
  {
    // Two matrices interleaved in one buffer (stride 2V): disjoint, allowed.
    std::vector<float> buf(2 * 4 * 10, 0.25f);
    std::vector<int64_t> y(4, 3);
    xent_cross_entropy_args a;
    XENT_ARGS_INIT(xent_cross_entropy_args, &a);
    a.batch = 4;
    a.num_classes = 10;
    a.logits = buf.data();
    a.logits_stride = 20;
    a.grad = buf.data() + 10;
    a.grad_stride = 20;
    a.target = y.data();
    EXPECT_EQ(xent_cross_entropy(&a), XENT_OK) << xent_last_error();
    EXPECT_NEAR(buf[13], (0.1 - 1.0) / 4, 1e-6);  // grad row 0, class 3: (p - 1) / B
    EXPECT_EQ(buf[20], 0.25f);                     // logits row 1 untouched
  }
}

TEST(CApi, StructVersioning) {
  CeFixture f;
  EXPECT_ERROR(xent_cross_entropy(nullptr), XENT_ERROR_NULL_POINTER, "args is NULL");
  // Too small (an uninitialized or older-than-v1 struct).
  f.a.struct_size = 16;
  EXPECT_ERROR(xent_cross_entropy(&f.a), XENT_ERROR_INVALID_STRUCT, "struct_size = 16", "_init");
  f.a.struct_size = 1u << 20;
  EXPECT_ERROR(xent_cross_entropy(&f.a), XENT_ERROR_INVALID_STRUCT, "implausibly large");
  EXPECT_TRUE(f.Untouched());
  // A newer caller's larger struct: zero extra bytes are accepted, a set one
  // (a feature this library lacks) is refused.
  struct Bigger {
    xent_cross_entropy_args a;
    uint64_t future_field;
  } big;
  ASSERT_EQ(xent_cross_entropy_args_init(&big.a, sizeof(big)), XENT_OK);
  EXPECT_EQ(big.a.struct_size, sizeof(big));
  EXPECT_EQ(big.future_field, 0u);  // init zeroes what it does not know
  big.a.batch = f.B;
  big.a.num_classes = f.V;
  big.a.logits = f.logits.data();
  big.a.target = f.target.data();
  big.a.loss = f.loss.data();
  EXPECT_EQ(xent_cross_entropy(&big.a), XENT_OK) << xent_last_error();
  big.future_field = 1;
  EXPECT_ERROR(xent_cross_entropy(&big.a), XENT_ERROR_INVALID_STRUCT, "newer field");
  // init with a too-small size.
  xent_cross_entropy_args small;
  EXPECT_ERROR(xent_cross_entropy_args_init(&small, 8), XENT_ERROR_INVALID_STRUCT, "struct_size = 8");
  EXPECT_ERROR(xent_cross_entropy_args_init(nullptr, sizeof(small)), XENT_ERROR_NULL_POINTER, "args is NULL");
  // Defaults.
  xent_cross_entropy_args d;
  ASSERT_EQ(XENT_ARGS_INIT(xent_cross_entropy_args, &d), XENT_OK);
  EXPECT_EQ(d.ignore_index, -100);
  EXPECT_EQ(d.reduction, XENT_REDUCTION_MEAN);
  EXPECT_EQ(d.grad_scale, 1.0f);
  EXPECT_EQ(d.logits_dtype, XENT_F32);
  EXPECT_EQ(d.target_dtype, XENT_I64);
  EXPECT_EQ(d.num_threads, 0);
}

TEST(CApi, OtherOpsBadInput) {
  std::vector<float> x(6 * 10, 0.1f), t(6 * 10, 0.1f), out(6 * 10, 9.0f);
  std::vector<int64_t> y(6, 2);
  {
    xent_softmax_args a;
    XENT_ARGS_INIT(xent_softmax_args, &a);
    a.batch = 6;
    a.num_classes = 10;
    a.logits = x.data();
    EXPECT_ERROR(xent_softmax(&a), XENT_ERROR_NULL_POINTER, "no output requested");
    a.probs = out.data();
    a.temperature = 0.0f;
    EXPECT_ERROR(xent_softmax(&a), XENT_ERROR_INVALID_VALUE, "temperature = 0");
    a.temperature = 1e-40f;  // denormal: 1/T overflows f32
    EXPECT_ERROR(xent_softmax(&a), XENT_ERROR_INVALID_VALUE, "temperature = 9.99995e-41 is below FLT_MIN");
    a.temperature = FLT_MIN;  // the smallest accepted
    EXPECT_EQ(xent_softmax(&a), XENT_OK) << xent_last_error();
    std::fill(out.begin(), out.end(), 9.0f);
    a.temperature = 1.0f;
    a.log_probs = out.data() + 1;
    EXPECT_ERROR(xent_softmax(&a), XENT_ERROR_ALIASING, "probs overlaps log_probs");
    for (float v : out) EXPECT_EQ(v, 9.0f);
  }
  {
    xent_divergence_args a;
    XENT_ARGS_INIT(xent_divergence_args, &a);
    a.batch = 6;
    a.num_classes = 10;
    a.input = x.data();
    a.target = t.data();
    a.input_kind = 7;
    EXPECT_ERROR(xent_divergence(&a), XENT_ERROR_INVALID_ENUM, "input_kind = 7");
    a.input_kind = XENT_DIST_LOGITS;
    a.divergence = 5;
    EXPECT_ERROR(xent_divergence(&a), XENT_ERROR_INVALID_ENUM, "divergence = 5");
    a.divergence = XENT_DIVERGENCE_JSD;
    a.beta = 1.5f;
    EXPECT_ERROR(xent_divergence(&a), XENT_ERROR_INVALID_VALUE, "beta = 1.5");
    a.beta = 0.5f;
    a.target_dtype = XENT_BF16;
    EXPECT_ERROR(xent_divergence(&a), XENT_ERROR_INVALID_DTYPE, "target_dtype = 2");
    a.target_dtype = XENT_F32;
    y[3] = 10;
    a.labels = y.data();
    EXPECT_ERROR(xent_divergence(&a), XENT_ERROR_TARGET_OUT_OF_RANGE, "labels[3] = 10 is outside [0, 10)");
    y[3] = 2;
    a.t2_scaling = 2;
    EXPECT_ERROR(xent_divergence(&a), XENT_ERROR_INVALID_VALUE, "t2_scaling = 2");
    a.t2_scaling = 1;
    a.reduction = XENT_REDUCTION_BATCHMEAN;
    a.grad_target = t.data();  // output over an input that may not be aliased
    EXPECT_ERROR(xent_divergence(&a), XENT_ERROR_ALIASING, "grad_target overlaps target");
  }
  {
    xent_bce_args a;
    XENT_ARGS_INIT(xent_bce_args, &a);
    a.batch = 6;
    a.num_classes = 10;
    a.logits = x.data();
    EXPECT_ERROR(xent_bce_with_logits(&a), XENT_ERROR_NULL_POINTER, "target is NULL");
    a.target = t.data();
    a.weight = t.data();
    a.weight_stride = 3;
    EXPECT_ERROR(xent_bce_with_logits(&a), XENT_ERROR_INVALID_SHAPE, "weight_stride (3)");
  }
  {
    xent_token_logprobs_args a;
    XENT_ARGS_INIT(xent_token_logprobs_args, &a);
    a.batch = 6;
    a.num_classes = 10;
    a.logits = x.data();
    float lp[6];
    a.logprob = lp;
    EXPECT_ERROR(xent_token_logprobs(&a), XENT_ERROR_NULL_POINTER, "target is NULL");
    a.target = y.data();
    a.target_dtype = XENT_F32;
    EXPECT_ERROR(xent_token_logprobs(&a), XENT_ERROR_INVALID_DTYPE, "target_dtype = 1");
  }
  {
    xent_softmax_backward_args a;
    XENT_ARGS_INIT(xent_softmax_backward_args, &a);
    a.batch = 6;
    a.num_classes = 10;
    a.output = x.data();
    a.grad_output = t.data();
    a.grad_input = out.data();
    a.grad_output_dtype = XENT_F16;
    EXPECT_ERROR(xent_softmax_backward(&a), XENT_ERROR_INVALID_DTYPE, "differs from output_dtype");
    a.grad_output_dtype = XENT_F32;
    a.output_kind = XENT_DIST_LOGITS;
    EXPECT_ERROR(xent_softmax_backward(&a), XENT_ERROR_INVALID_ENUM, "output_kind = 0");
  }
}

// Misaligned pointers (not even element-aligned) simply work, as the
// per-op suites check in depth; here for each op once.
TEST(CApi, MisalignedPointersWork) {
  std::vector<unsigned char> buf(4 * 33 * 4 + 16);
  float* x = reinterpret_cast<float*>(buf.data() + 3);
  for (int i = 0; i < 4 * 33; ++i) {
    const float v = static_cast<float>(i % 7) * 0.3f;
    std::memcpy(reinterpret_cast<unsigned char*>(x) + 4 * i, &v, 4);
  }
  std::vector<unsigned char> ybuf(4 * 8 + 8);
  int64_t* y = reinterpret_cast<int64_t*>(ybuf.data() + 1);
  for (int i = 0; i < 4; ++i) {
    const int64_t v = i;
    std::memcpy(reinterpret_cast<unsigned char*>(y) + 8 * i, &v, 8);
  }
  float loss = 0;
  xent_cross_entropy_args a;
  XENT_ARGS_INIT(xent_cross_entropy_args, &a);
  a.batch = 4;
  a.num_classes = 33;
  a.logits = x;
  a.target = y;
  a.loss = &loss;
  a.grad = x;  // in place, misaligned
  EXPECT_EQ(xent_cross_entropy(&a), XENT_OK) << xent_last_error();
  EXPECT_TRUE(std::isfinite(loss) && loss > 0);
}

}  // namespace
}  // namespace xent_test
