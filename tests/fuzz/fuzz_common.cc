#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/fuzz_main.h"
#include "tests/fuzz/normal.h"

namespace xent_fuzz {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

bool g_edge = false;

void Fail(const char* fmt, ...) {
  std::fprintf(stderr, "\n=== xent_fuzz: CHECK FAILED\n  call: %s\n  ", g_ctx.c_str());
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "\n  xent_last_error: \"%s\"\n", xent_last_error());
  std::fflush(stderr);
  std::abort();
}

void Ctx(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  g_ctx += buf;
}

// ---------------------------------------------------------------------------
// Shapes: short rows (tails, single vectors), several chunks, one to three
// 4096-element segments; the edge flavor: sizes at chunk and segment edges.
size_t ChooseV(Input& in) {
  const uint8_t k = in.U8();
  if (g_edge) {
    static const size_t kEdges[] = {1,   2,   3,   7,   8,   9,   15,   16,   17,   31,   32,   33,   63,   64,   65,
                                    255, 256, 257, 511, 512, 513, 4095, 4096, 4097, 8191, 8192, 8193, 4351, 4352, 4353};
    return kEdges[k % (sizeof(kEdges) / sizeof(kEdges[0]))];
  }
  if (k < 170) return 1 + k % 70;
  if (k < 235) return 1 + in.U16() % 1100;
  return 4000 + in.U16() % 4400;
}

size_t ChooseB(Input& in, size_t V) {
  const uint8_t k = in.U8();
  if (V > 2000) return k % 4;
  return k % 9;
}

Head ReadHead(Input& in) {
  Head h;
  h.V = ChooseV(in);
  h.B = ChooseB(in, h.V);
  h.t = FloatDType(in.U8());
  return h;
}

size_t ChooseStride(Input& in, size_t V) {
  const uint8_t k = in.U8();
  if (k < 128) return 0;  // packed (stride 0 = V)
  return V + k % 9;
}

size_t ChooseOffset(Input& in) {
  const uint8_t k = in.U8();
  return k < 128 ? 0 : k % 8;  // byte misalignment: void* buffers take any address
}

float Pick(Input& in, std::initializer_list<float> palette) {
  const size_t i = in.U8() % palette.size();
  return *(palette.begin() + i);
}

// ---------------------------------------------------------------------------
Payload ChoosePayload(Input& in) {
  Payload p;
  p.rng = Rng(in.U32());
  static const double kSigma[] = {3, 1, 0.1, 10, 30, 300, 1e4, 3};
  p.sigma = kSigma[in.U8() % 8];
  static const double kMean[] = {0, 0, 0, 5, -50, 1e3, -1e5, 1e30};
  p.mean = kMean[in.U8() % 8];
  static const double kMask[] = {0, 0, 0.25, 0.9};
  p.mask = kMask[in.U8() % 4];
  return p;
}

namespace {

// N(0, 1) deviates: the original format's Box-Muller (its values are part of
// the format), or in the edge flavor an Irwin-Hall sum of four 16-bit
// uniforms (no log or cos per element: the throughput fuzzer's inputs are
// mostly payload).
double Normal(Rng& r) {
  if (!g_edge) return r.Normal();
  const uint64_t x = r.Next();
  const double s = static_cast<double>((x & 0xFFFF) + ((x >> 16) & 0xFFFF) + ((x >> 32) & 0xFFFF) + (x >> 48));
  return (s * (1.0 / 65536.0) - 2.0) * 1.7320508075688772;  // variance 4/12, scaled to 1
}

}  // namespace

double Draw(Payload& p, Dist d) {
  switch (d) {
    case Dist::kLogits: return p.mean + p.sigma * Normal(p.rng);
    case Dist::kProbs: return p.rng.Uniform() < p.mask ? 0.0 : p.rng.Uniform();
    case Dist::kLogProbs: return p.rng.Uniform() < p.mask ? -kInf : -std::fabs(p.sigma * Normal(p.rng));
    case Dist::kUnit: return p.rng.Uniform();
    case Dist::kSigned: return 2 * p.rng.Uniform() - 1;
  }
  return 0;
}

namespace {

// Special values the input may place, per distribution (all are valid inputs
// of that kind: logits take any float; probabilities are in [0, 1];
// log-probabilities are <= 0 or NaN).
double Special(uint8_t code, Dist d, Input& in, uint32_t* raw_bits, bool* raw) {
  *raw = false;
  switch (d) {
    case Dist::kLogits:
    case Dist::kSigned: {
      static const double v[] = {kNaN,    kInf,  -kInf, 3.0e38, -3.0e38, kDenorm, -kDenorm, -0.0,
                                 65504.0, -1e30, 1e30,  88.7,   -104.0,  0.0,     1e-30,    0.0};
      if (code % 16 == 13) {
        *raw = true;
        *raw_bits = in.U32();
        return 0;
      }
      return v[code % 16];
    }
    case Dist::kProbs:
    case Dist::kUnit: {
      static const double v[] = {0.0, 1.0, kDenorm, 1e-30, kNaN, 0.5, 1e-45, 1.0 - 1e-7};
      return v[code % 8];
    }
    case Dist::kLogProbs: {
      static const double v[] = {-kInf, 0.0, kNaN, -1e30, -kDenorm, -104.0, -87.0, -1e-7};
      return v[code % 8];
    }
  }
  return 0;
}

// Whole-row patterns of the edge flavor, per distribution, for column j of V.
double RowPattern(int pattern, Dist d, size_t j, size_t V) {
  const bool mid = j == V / 2;
  switch (d) {
    case Dist::kLogits:
    case Dist::kSigned: {
      switch (pattern) {
        case 0: return -kInf;                              // masked row
        case 1: return mid ? 0.5 : -kInf;                  // one live class
        case 2: return mid ? kNaN : 0.25 * double(j % 7);  // one NaN
        case 3: return 1e30;                               // huge, equal
        case 4: return (j % 2) ? 3e38 : -3e38;             // alternating extremes
        case 5: return mid ? kInf : 1.0;                   // one +inf
        case 6: return 1e30 + 1e24 * double(j);            // huge, increasing
        default: return -1e30;
      }
    }
    case Dist::kProbs:
    case Dist::kUnit: {
      static const double v[] = {0.0, 0.0, 0.5, kDenorm, 1.0, 0.0, 1e-45, 1.0};
      if (pattern == 1) return mid ? 1.0 : 0.0;
      if (pattern == 2) return mid ? kNaN : 0.5;
      return v[pattern % 8];
    }
    case Dist::kLogProbs: {
      static const double v[] = {-kInf, -kInf, -1.0, -1e30, 0.0, -87.0, -104.0, -kDenorm};
      if (pattern == 1) return mid ? 0.0 : -kInf;
      if (pattern == 2) return mid ? kNaN : -1.0;
      return v[pattern % 8];
    }
  }
  return 0;
}

}  // namespace

Specials ReadSpecials(Input& in, size_t B, size_t V, Dist d, bool specials) {
  Specials sp;
  if (!specials || B == 0) return sp;
  const size_t n = in.U8() % 8;
  for (size_t k = 0; k < n; ++k) {
    Specials::One o;
    o.i = in.Below(B);
    o.j = in.Below(V);
    o.bits = 0;
    o.v = Special(in.U8(), d, in, &o.bits, &o.raw);
    sp.at.push_back(o);
  }
  if (g_edge && (in.U8() & 1)) {
    sp.row = static_cast<int>(in.Below(B));
    sp.pattern = in.U8() % 8;
  }
  return sp;
}

namespace {

// Draw's values for the original flavor's normal deviates, the generator's
// draws made in Draw's order and the deviates computed a block at a time
// (tests/fuzz/normal.h; they were half of the throughput fuzzer's time).
void FillNormal(Buffer* b, Payload& p, Dist d) {
  constexpr size_t kBlock = 256;
  double u[kBlock], v[kBlock], n[kBlock];
  bool masked[kBlock];
  const size_t cols = b->cols();
  for (size_t i = 0; i < b->rows(); ++i) {
    for (size_t j0 = 0; j0 < cols; j0 += kBlock) {
      const size_t m = std::min(kBlock, cols - j0);
      for (size_t k = 0; k < m; ++k) {
        masked[k] = d == Dist::kLogProbs && p.rng.Uniform() < p.mask;
        if (masked[k]) {
          u[k] = 1.0;
          v[k] = 0.0;
          continue;
        }
        u[k] = std::max(p.rng.Uniform(), 1e-300);  // Rng::Normal's draws
        v[k] = p.rng.Uniform();
      }
      BoxMuller(u, v, n, m);
      for (size_t k = 0; k < m; ++k)
        n[k] = d == Dist::kLogits ? p.mean + p.sigma * n[k] : (masked[k] ? -kInf : -std::fabs(p.sigma * n[k]));
      b->SetRow(i, j0, n, m);
    }
  }
}

}  // namespace

void FillMat(Buffer* b, Payload& p, Dist d, const Specials& sp) {
  if (!g_edge && (d == Dist::kLogits || d == Dist::kLogProbs)) {
    FillNormal(b, p, d);
  } else {
    for (size_t i = 0; i < b->rows(); ++i)
      for (size_t j = 0; j < b->cols(); ++j) b->Set(i, j, Draw(p, d));
  }
  for (const Specials::One& o : sp.at) {
    if (o.raw) {
      b->SetBits(o.i, o.j, o.bits);
    } else {
      b->Set(o.i, o.j, o.v);
    }
  }
  if (sp.row >= 0)
    for (size_t j = 0; j < b->cols(); ++j) b->Set(sp.row, j, RowPattern(sp.pattern, d, j, b->cols()));
}

void MatrixField(CaseSpec& s, const char* field, DType t, size_t stride_arg, size_t offset) {
  s.With(field, t).Stride(field, Resolve(stride_arg, s.V), stride_arg == 0).Offset(field, offset);
}
void IndexField(CaseSpec& s, const char* field, DType t, size_t stride_arg, size_t offset) {
  s.With(field, t).Stride(field, stride_arg == 0 ? 1 : stride_arg, stride_arg == 0).Offset(field, offset);
}
void VectorField(CaseSpec& s, const char* field, bool present, size_t offset) {
  if (present) s.With(field).Offset(field, offset);
}

// ---------------------------------------------------------------------------
Bad ChooseBad(Input& in) {
  const uint8_t k = in.U8();
  if (k < 192) return Bad::kNone;
  return static_cast<Bad>(1 + k % (static_cast<int>(Bad::kCount) - 1));
}

const char* BadName(Bad b) {
  static const char* n[] = {"none",  "struct_small", "struct_tail", "zero_classes", "short_stride", "huge_batch",
                            "dtype", "threads",      "null_input",  "option",       "target",       "alias"};
  return n[static_cast<int>(b)];
}

Threading ChooseThreading(Input& in) {
  Threading t;
  t.num_threads = static_cast<int32_t>(in.U8() % 3);  // 0 = all, 1, 2
  const uint8_t m = in.U8();
  if (m < 160) return t;
  static const PoolMode kModes[] = {PoolMode::kInOrder, PoolMode::kReverse,  PoolMode::kThreads,
                                    PoolMode::kFail,    PoolMode::kSkipLast, PoolMode::kRepeatFirst,
                                    PoolMode::kInOrder, PoolMode::kThreads};
  t.use_pool = true;
  t.pool.mode = kModes[m % 8];
  t.pool.pieces = 1 + in.U8() % 5;
  t.pool.expect_hint = t.num_threads;
  return t;
}

CaseSpec NewSpec(const xent::abi::OpDesc& op, size_t B, size_t V, Common& c) {
  CaseSpec s(op, B, V);
  s.guard = Guard::kExact;
  s.fill = false;
  s.num_threads = c.th.num_threads;
  s.parallel_for = c.th.use_pool ? &HostPool::ParallelFor : nullptr;
  s.parallel_user = &c.th.pool;
  return s;
}

void Alias(Case& cs, const char* output, const void* p, size_t stride, int32_t dtype) {
  cs.SetPointer(output, p);
  cs.SetStrideField(output, stride);
  if (dtype >= 0) cs.SetDTypeField(output, dtype);
}

namespace {

bool GenericBad(Case& cs, const Common& c, Input& in, const BadPlan& plan, xent_status* want) {
  const size_t V = cs.V();
  switch (c.bad) {
    case Bad::kStructSmall:
    case Bad::kStructTail: *want = XENT_ERROR_INVALID_STRUCT; return true;
    case Bad::kZeroClasses:
      SetClasses(cs, 0);
      *want = XENT_ERROR_INVALID_SHAPE;
      return true;
    case Bad::kShortStride:
      if (V > 1) {
        cs.SetStrideField(plan.stride_field, plan.stride_random ? 1 + in.Below(V - 1) : V - 1);
        *want = XENT_ERROR_INVALID_SHAPE;
      }
      return true;
    case Bad::kHugeBatch:
      SetBatch(cs, plan.huge_batch + (plan.huge_batch_plus_byte ? in.U8() : 0));
      *want = XENT_ERROR_INVALID_SHAPE;
      return true;
    case Bad::kThreads:
      cs.SetArg<int32_t>("num_threads", plan.threads - (plan.threads_minus_byte ? in.U8() : 0));
      *want = XENT_ERROR_INVALID_VALUE;
      return true;
    default: return c.bad == Bad::kNone;
  }
}

}  // namespace

void RunWithBad(Case& cs, Common& c, Input& in, const BadPlan& plan, const std::function<xent_status()>& own) {
  xent_status want = XENT_OK;
  if (!GenericBad(cs, c, in, plan, &want)) want = own();
  RunChecked(cs, c, want, in);
}

void SetBatch(Case& c, size_t B) { std::memcpy(c.args() + sizeof(size_t), &B, sizeof B); }
void SetClasses(Case& c, size_t V) { std::memcpy(c.args() + 2 * sizeof(size_t), &V, sizeof V); }

// ---------------------------------------------------------------------------
namespace {

// The struct passed to the library: the args, possibly with a bad size.
void ApplyStructSize(Case& c, Bad bad, Input& in) {
  const size_t size = c.op().args_size;
  if (bad == Bad::kStructSmall) {
    size_t s = in.U8() % size;
    // The first published size is valid (an older caller's struct): one byte
    // less is not (fuzzfast found token_logprobs' grown struct accepted).
    if (s == c.op().min_size) --s;
    std::memcpy(c.args(), &s, sizeof s);
  } else if (bad == Bad::kStructTail) {
    const size_t extra = 1 + in.U8() % 64;
    const size_t s = size + extra;
    std::memcpy(c.args(), &s, sizeof s);
    c.args()[size + in.U8() % extra] = static_cast<unsigned char>(1 + in.U8() % 255);
  }
}

// Status of a call with valid arguments given the pool's behavior; true when
// the outputs must be checked.
bool StatusValid(xent_status rc, const Threading& t) {
  const HostPool& p = t.pool;
  if (p.bad_hint) Fail("parallel_for got num_threads_hint != num_threads (%d)", t.num_threads);
  if (t.use_pool && p.Misbehaved()) {
    if (rc != XENT_ERROR_CALLBACK)
      Fail(
          "host pool (mode %d) failed or did not run every task exactly once, but status = %d (want "
          "XENT_ERROR_CALLBACK)",
          static_cast<int>(p.mode), rc);
    if (xent_last_error()[0] == '\0') Fail("XENT_ERROR_CALLBACK without a message");
    return false;
  }
  if (rc != XENT_OK) Fail("valid arguments but status = %d (%s)", rc, xent_status_string(rc));
  if (xent_last_error()[0] != '\0') Fail("XENT_OK but xent_last_error() is not empty");
  return true;
}

const char* TargetName(const char* t) { return t ? t : "auto"; }

void FailOn(const std::vector<std::string>& problems, const Case& c, const char* target) {
  if (problems.empty()) return;
  std::string all;
  for (const std::string& p : problems) all += "\n    " + p;
  Fail("target %s, %s:%s", target, c.Describe().c_str(), all.c_str());
}

}  // namespace

void RunChecked(Case& c, Common& common, xent_status want_bad, Input& in) {
  const Bad bad = want_bad == XENT_OK ? Bad::kNone : common.bad;
  ApplyStructSize(c, bad, in);
  const xent_status rc = c.Run();
  if (bad != Bad::kNone) {
    if (rc != want_bad)
      Fail("invalid argument (%s): status = %d (%s), want %d (%s)", BadName(bad), rc, xent_status_string(rc), want_bad,
           xent_status_string(want_bad));
    if (xent_last_error()[0] == '\0') Fail("error status without a message");
    std::vector<std::string> problems;
    c.CheckUntouched(&problems);
    FailOn(problems, c, TargetName(g_target_a));
    return;
  }
  if (!StatusValid(rc, common.th)) return;
  std::vector<std::string> problems;
  c.CheckWritten(&problems);
  FailOn(problems, c, TargetName(g_target_a));
  std::vector<Expected> want;
  const bool reference = ReferenceSampled();
  if (reference) {
    want = c.Reference(Profile::kFuzz);
    c.Compare(want, Profile::kFuzz, &problems);
    FailOn(problems, c, TargetName(g_target_a));
  }
  if (g_target_b == nullptr) return;
  // The same call on a second target.
  c.Restore();
  common.th.pool.called = common.th.pool.bad_hint = false;
  if (xent_force_target(g_target_b) != XENT_OK) Fail("xent_force_target(%s) failed", g_target_b);
  const xent_status rc2 = c.Run();
  xent_force_target(g_target_a);
  if (!StatusValid(rc2, common.th)) return;
  c.CheckWritten(&problems);
  FailOn(problems, c, g_target_b);
  if (reference) {
    c.Compare(want, Profile::kFuzz, &problems);
    FailOn(problems, c, g_target_b);
  }
}

}  // namespace xent_fuzz
