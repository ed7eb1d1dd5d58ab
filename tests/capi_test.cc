// The C ABI contract: status codes and messages for bad input, outputs left
// untouched on failure, args structs versioned by size, versions, targets.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/gtest_util.h"
#include "tests/common/invalid.h"

namespace xent_test {
namespace {

// Expects `status` and a message containing every fragment.
#define EXPECT_ERROR(call, status, ...)                                          \
  do {                                                                           \
    const xent_status rc_ = (call);                                              \
    EXPECT_EQ(rc_, status) << #call << ": " << xent_last_error();                \
    for (const char* frag : {__VA_ARGS__}) {                                     \
      EXPECT_NE(std::string(xent_last_error()).find(frag), std::string::npos)    \
          << "message \"" << xent_last_error() << "\" lacks \"" << frag << "\""; \
    }                                                                            \
  } while (0)

// An args struct of `op` from its args_init, with batch and num_classes.
template <class Args>
Args Init(const abi::OpDesc& op, size_t B, size_t V) {
  Args a;
  EXPECT_EQ(Api::Linked().Init(op, &a, sizeof a), XENT_OK);
  a.batch = B;
  a.num_classes = V;
  return a;
}

// Cross-entropy, B = 20 x V = 32000 logits 0.5, targets 1, with loss, row_loss
// and gradient.
std::unique_ptr<Case> CeCase() {
  CaseSpec s(abi::kCrossEntropy, 20, 32000);
  s.With("loss").With("row_loss").With("grad").Stride("logits", 32000).Stride("grad", 32000);
  s.fill = false;
  std::unique_ptr<Case> c(new Case(s));
  c->buf("logits")->Fill(0.5);
  for (size_t i = 0; i < 20; ++i) c->buf("target")->SetIndex(i, 1);
  c->Seal();
  return c;
}
xent_cross_entropy_args* CeArgs(Case& c) { return reinterpret_cast<xent_cross_entropy_args*>(c.args()); }

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
#if defined(__SSE4_2__) && defined(__PCLMUL__) && defined(__AES__) && !defined(__AVX2__)
  // A build for x86-64-v2 (-march, as CI's TSan builds): the baseline is SSE4.
  EXPECT_EQ(targets.back(), "sse4");
#elif !defined(__SSE4_2__)
  // The fallback is always there, last (SCALAR with GCC, EMU128 with clang).
  EXPECT_TRUE(targets.back() == "scalar" || targets.back() == "emu128") << targets.back();
#endif
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
  auto c = CeCase();
  CeArgs(*c)->num_classes = 0;
  EXPECT_NE(c->Run(), XENT_OK);
  EXPECT_STRNE(xent_last_error(), "");
  std::string other;
  std::thread t([&] { other = xent_last_error(); });
  t.join();
  EXPECT_EQ(other, "");  // another thread sees its own (empty) state
  CeArgs(*c)->num_classes = 32000;
  EXPECT_EQ(c->Run(), XENT_OK);
  EXPECT_STREQ(xent_last_error(), "");
}

// Runs the mutated cross-entropy case: the status, the message fragments, and
// no buffer written.
void ExpectCeError(const std::function<void(Case&, xent_cross_entropy_args&)>& mutate, xent_status want,
                   std::initializer_list<const char*> frags) {
  auto c = CeCase();
  mutate(*c, *CeArgs(*c));
  EXPECT_ERROR(c->Run(), want, "");
  for (const char* frag : frags)
    EXPECT_NE(std::string(xent_last_error()).find(frag), std::string::npos) << xent_last_error() << " / " << frag;
  std::vector<std::string> problems;
  c->CheckUntouched(&problems);
  ExpectNoProblems(problems, xent_last_error());
}

TEST(CApi, CrossEntropyBadInput) {
  {
    auto c = CeCase();
    c->buf("target")->SetIndex(17, 32000);
    EXPECT_ERROR(c->Run(), XENT_ERROR_TARGET_OUT_OF_RANGE, "target[17] = 32000 is outside [0, 32000)");
    std::vector<std::string> problems;
    c->CheckUntouched(&problems);
    ExpectNoProblems(problems, "target[17] = 32000");
    c->buf("target")->SetIndex(17, -1);
    EXPECT_ERROR(c->Run(), XENT_ERROR_TARGET_OUT_OF_RANGE, "target[17] = -1");
    c->buf("target")->SetIndex(17, -100);  // ignore_index: fine
    EXPECT_EQ(c->Run(), XENT_OK) << xent_last_error();
  }
  using A = xent_cross_entropy_args;
  ExpectCeError([](Case&, A& a) { a.logits = nullptr; }, XENT_ERROR_NULL_POINTER, {"logits is NULL"});
  ExpectCeError([](Case&, A& a) { a.target = nullptr; }, XENT_ERROR_NULL_POINTER, {"target is NULL"});
  ExpectCeError([](Case&, A& a) { a.num_classes = 0; }, XENT_ERROR_INVALID_SHAPE, {"num_classes = 0"});
  ExpectCeError([](Case&, A& a) { a.logits_stride = 100; }, XENT_ERROR_INVALID_SHAPE,
                {"logits_stride (100) < num_classes (32000)"});
  ExpectCeError([](Case&, A& a) { a.grad_stride = 5; }, XENT_ERROR_INVALID_SHAPE, {"grad_stride (5)"});
  ExpectCeError([](Case&, A& a) { a.logits_stride = SIZE_MAX / 2; }, XENT_ERROR_INVALID_SHAPE, {"overflows"});
  ExpectCeError([](Case&, A& a) { a.batch = SIZE_MAX / 4; }, XENT_ERROR_INVALID_SHAPE, {"overflows"});
  ExpectCeError([](Case&, A& a) { a.logits_dtype = 99; }, XENT_ERROR_INVALID_DTYPE, {"logits_dtype = 99"});
  ExpectCeError([](Case&, A& a) { a.logits_dtype = XENT_I32; }, XENT_ERROR_INVALID_DTYPE, {"logits_dtype = 4"});
  ExpectCeError([](Case&, A& a) { a.target_dtype = 42; }, XENT_ERROR_INVALID_DTYPE, {"target_dtype = 42"});
  ExpectCeError([](Case&, A& a) { a.grad_dtype = XENT_BF16; }, XENT_ERROR_INVALID_DTYPE,
                {"grad_dtype = 2", "f32 or the input's dtype"});
  ExpectCeError([](Case&, A& a) { a.reduction = 3; }, XENT_ERROR_INVALID_ENUM, {"reduction = 3"});
  ExpectCeError([](Case&, A& a) { a.reduction = -1; }, XENT_ERROR_INVALID_ENUM, {"reduction = -1"});
  ExpectCeError([](Case&, A& a) { a.label_smoothing = std::nanf(""); }, XENT_ERROR_INVALID_VALUE,
                {"label_smoothing = nan"});
  ExpectCeError([](Case&, A& a) { a.label_smoothing = 1.5f; }, XENT_ERROR_INVALID_VALUE, {"label_smoothing = 1.5"});
  ExpectCeError([](Case&, A& a) { a.z_loss = -1e-4f; }, XENT_ERROR_INVALID_VALUE, {"z_loss = -0.0001"});
  ExpectCeError([](Case&, A& a) { a.softcap = std::numeric_limits<float>::infinity(); }, XENT_ERROR_INVALID_VALUE,
                {"softcap = inf"});
  ExpectCeError([](Case&, A& a) { a.softcap = 1e-40f; }, XENT_ERROR_INVALID_VALUE,
                {"softcap = 9.99995e-41 is below FLT_MIN", "overflows f32"});
  ExpectCeError([](Case&, A& a) { a.grad_scale = std::nanf(""); }, XENT_ERROR_INVALID_VALUE, {"grad_scale = nan"});
  ExpectCeError([](Case&, A& a) { a.num_threads = -2; }, XENT_ERROR_INVALID_VALUE, {"num_threads = -2"});
  ExpectCeError([](Case&, A& a) { a.reserved0 = 1; }, XENT_ERROR_INVALID_VALUE, {"reserved0"});
  // Aliasing: gradient half-overlapping the logits; row_loss overlapping loss.
  ExpectCeError([](Case& c, A& a) { a.grad = c.buf("logits")->as<float>() + 5; }, XENT_ERROR_ALIASING,
                {"grad overlaps logits"});
  ExpectCeError([](Case&, A& a) { a.row_loss = a.loss; }, XENT_ERROR_ALIASING, {"overlaps"});
  ExpectCeError(
      [](Case& c, A& a) {
        a.grad = c.buf("logits")->data();
        a.grad_stride = 32001;
        a.batch = 2;
      },
      XENT_ERROR_ALIASING, {"grad overlaps logits"});
  // In place is allowed; different stride interleaving is detected precisely.
  {
    auto c = CeCase();
    CeArgs(*c)->grad = c->buf("logits")->data();
    EXPECT_EQ(c->Run(), XENT_OK) << xent_last_error();
  }
  {
    // Two matrices interleaved in one buffer (stride 2V): disjoint, allowed.
    std::vector<float> buf(2 * 4 * 10, 0.25f);
    std::vector<int64_t> y(4, 3);
    auto a = Init<xent_cross_entropy_args>(abi::kCrossEntropy, 4, 10);
    a.logits = buf.data();
    a.logits_stride = 20;
    a.grad = buf.data() + 10;
    a.grad_stride = 20;
    a.target = y.data();
    EXPECT_EQ(xent_cross_entropy(&a), XENT_OK) << xent_last_error();
    EXPECT_NEAR(buf[13], (0.1 - 1.0) / 4, 1e-6);  // grad row 0, class 3: (p - 1) / B
    EXPECT_EQ(buf[20], 0.25f);                    // logits row 1 untouched
  }
}

TEST(CApi, StructVersioning) {
  auto c = CeCase();
  EXPECT_ERROR(xent_cross_entropy(nullptr), XENT_ERROR_NULL_POINTER, "args is NULL");
  // Too small (an uninitialized or older-than-v1 struct).
  CeArgs(*c)->struct_size = 16;
  EXPECT_ERROR(c->Run(), XENT_ERROR_INVALID_STRUCT, "struct_size = 16", "_init");
  CeArgs(*c)->struct_size = 1u << 20;
  EXPECT_ERROR(c->Run(), XENT_ERROR_INVALID_STRUCT, "implausibly large");
  std::vector<std::string> problems;
  c->CheckUntouched(&problems);
  ExpectNoProblems(problems, "struct_size");
  // A newer caller's larger struct: zero extra bytes are accepted, a set one
  // (a feature this library lacks) is refused.
  struct Bigger {
    xent_cross_entropy_args a;
    uint64_t future_field;
  } big;
  ASSERT_EQ(xent_cross_entropy_args_init(&big.a, sizeof(big)), XENT_OK);
  EXPECT_EQ(big.a.struct_size, sizeof(big));
  EXPECT_EQ(big.future_field, 0u);  // init zeroes what it does not know
  big.a.batch = 20;
  big.a.num_classes = 32000;
  big.a.logits = c->buf("logits")->data();
  big.a.logits_stride = 32000;
  big.a.target = c->buf("target")->data();
  big.a.loss = c->buf("loss")->as<float>();
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
    auto a = Init<xent_softmax_args>(abi::kSoftmax, 6, 10);
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
    auto a = Init<xent_divergence_args>(abi::kDivergence, 6, 10);
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
    auto a = Init<xent_bce_args>(abi::kBce, 6, 10);
    a.logits = x.data();
    EXPECT_ERROR(xent_bce_with_logits(&a), XENT_ERROR_NULL_POINTER, "target is NULL");
    a.target = t.data();
    a.weight = t.data();
    a.weight_stride = 3;
    EXPECT_ERROR(xent_bce_with_logits(&a), XENT_ERROR_INVALID_SHAPE, "weight_stride (3)");
  }
  {
    auto a = Init<xent_token_logprobs_args>(abi::kTokenLogprobs, 6, 10);
    a.logits = x.data();
    float lp[6];
    a.logprob = lp;
    EXPECT_ERROR(xent_token_logprobs(&a), XENT_ERROR_NULL_POINTER, "target is NULL");
    a.target = y.data();
    a.target_dtype = XENT_F32;
    EXPECT_ERROR(xent_token_logprobs(&a), XENT_ERROR_INVALID_DTYPE, "target_dtype = 1");
  }
  {
    auto a = Init<xent_softmax_backward_args>(abi::kSoftmaxBackward, 6, 10);
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
  for (const abi::OpDesc* op : abi::kAllOps) {
    CaseSpec s(*op, 4, 33);
    s.offset = 3;
    for (size_t i = 0; i < op->num_fields; ++i) {
      const abi::Field& f = op->fields[i];
      if (f.role == abi::Role::kOutMat || f.role == abi::Role::kOutVec) s.With(f.name);
      if (f.role == abi::Role::kLabels || f.role == abi::Role::kClassTarget) s.With(f.name).Offset(f.name, 1);
    }
    ExpectCase(s);
  }
  // In place, misaligned, cross-entropy.
  CaseSpec s(abi::kCrossEntropy, 4, 33);
  s.With("loss").InPlace("grad").Offset("target", 1).offset = 3;
  Case c(s);
  ExpectRun(c);
  EXPECT_TRUE(std::isfinite(c.buf("loss")->Get(0)) && c.buf("loss")->Get(0) > 0);
}

// ---------------------------------------------------------------------------
// Every field of every operation as the table describes it: each invalid
// value gets its documented status and a message naming the field, and a
// failed call writes nothing; each allowed in-place pair works.
// Every buffer field present (row weights per element).
CaseSpec Full(const abi::OpDesc& op) {
  CaseSpec s(op, 3, 10);
  for (size_t i = 0; i < op.num_fields; ++i) {
    const abi::Field& f = op.fields[i];
    switch (f.role) {
      case abi::Role::kInMat:
      case abi::Role::kOutMat:
      case abi::Role::kClassTarget:
      case abi::Role::kLabels:
      case abi::Role::kRowWeights:
      case abi::Role::kInVec:
      case abi::Role::kOutVec: s.With(f.name); break;
      default: break;
    }
  }
  return s;
}

TEST(CApi, EveryFieldOfEveryOperation) {
  for (const abi::OpDesc* op : abi::kAllOps) {
    {
      Case base(Full(*op));
      ASSERT_EQ(base.Run(), XENT_OK) << base.Describe() << ": " << xent_last_error();
    }
    const Case shape(Full(*op));
    const std::vector<Mutation> all = Mutations(shape);
    EXPECT_GE(all.size(), 20u);
    for (const Mutation& mu : all) {
      SCOPED_TRACE(std::string(op->name) + ": " + mu.what);
      Case c(Full(*op));
      mu.apply(c);
      const xent_status rc = c.Run();
      EXPECT_EQ(rc, mu.want) << xent_last_error();
      for (const std::string& frag : mu.frags)
        EXPECT_NE(std::string(xent_last_error()).find(frag), std::string::npos)
            << "message \"" << xent_last_error() << "\" lacks \"" << frag << "\"";
      std::vector<std::string> problems;
      c.CheckUntouched(&problems);
      ExpectNoProblems(problems, mu.what);
    }
    // The allowed in-place pairs.
    for (size_t i = 0; i < op->num_fields; ++i) {
      const abi::Field& f = op->fields[i];
      if (f.in_place == nullptr) continue;
      CaseSpec s = Full(*op);
      ExpectCase(s.InPlace(f.name));
    }
  }
}

}  // namespace
}  // namespace xent_test
