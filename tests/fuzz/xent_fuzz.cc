// libFuzzer harness for the whole C ABI of libxent.
//
// One input = one call. The input is read front to back (zeros once it runs
// out) and chooses: the operation, the SIMD target (forced through
// xent_force_target, among xent_supported_targets()), the shape (B, V up to
// several 4096-element segments), row strides, byte misalignment of every
// buffer, dtypes, options, which optional outputs exist, in-place operation,
// threading (built-in backend, or a host parallel_for that splits, reverses,
// runs on threads, fails, skips or repeats tasks), at most one deliberately
// invalid argument, and the payload: pseudo-random values (seeded from the
// input) with NaN, +-inf, huge, denormal and raw bit patterns placed where the
// input says.
//
// Every buffer is its own exact-size heap allocation (so ASan sees any read or
// write past it); row padding holds NaN bit patterns (reading it shows up in
// the results) and outputs start as canary bytes (writing outside the rows
// shows up as a changed byte).
//
// Checks, per call:
// - no crash, no sanitizer report (the build adds ASan + UBSan);
// - valid arguments: XENT_OK (or XENT_ERROR_CALLBACK exactly when the host
//   pool misbehaved); the outputs agree with the float64 reference
//   (tests/reference.h) within tolerances derived from the header's accuracy
//   contract, scaled by the magnitudes involved; nothing is written outside
//   the outputs' rows; inputs are unchanged;
// - one invalid argument: exactly its documented status, a non-empty
//   xent_last_error(), and no output written.
// A failed check prints the details and aborts (libFuzzer saves the input).
//
// Reproduce: build with -Dfuzz=true and run `xent_fuzz CRASH_FILE` (libFuzzer)
// or `xent_fuzz_replay CRASH_FILE` (any compiler).
#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <strings.h>

#include "src/dtype.h"
#include "tests/reference.h"
#include "xent/xent.h"

namespace {

using xent::DType;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---------------------------------------------------------------------------
// Reading the input.
class Input {
 public:
  Input(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  uint8_t U8() { return pos_ < n_ ? d_[pos_++] : 0; }
  uint16_t U16() { return static_cast<uint16_t>(U8() | (U8() << 8)); }
  uint32_t U32() { return static_cast<uint32_t>(U16()) | (static_cast<uint32_t>(U16()) << 16); }
  bool Bit() { return U8() & 1; }
  // Uniform-ish in [0, n).
  size_t Below(size_t n) { return n == 0 ? 0 : U16() % n; }
  size_t remaining() const { return n_ - std::min(pos_, n_); }

 private:
  const uint8_t* d_;
  size_t n_, pos_ = 0;
};

// Small deterministic PRNG for payloads (seeded from the input).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t Next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * (1.0 / 9007199254740992.0); }
  double Normal() {
    const double u = std::max(Uniform(), 1e-300), v = Uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
};

// ---------------------------------------------------------------------------
// Failure reporting.
std::string g_ctx;  // what the current call is (printed on failure)

[[noreturn]] void Fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
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

void Ctx(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void Ctx(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  g_ctx += buf;
}

// Known library issues the harness can step around while they are open, so
// fuzzing can go on locally: XENT_FUZZ_SKIP="id,id" (CI sets none). Ids:
//   status_enum  xent_status_string() with a value outside the enum's range
//                (UBSan: invalid enum load in capi/xent.cc)
//   kl_nan       xent_divergence: a NaN in PROBS input or LOG_PROBS target
//                does not make the row NaN (rows with a NaN not compared)
//   jsd_beta     xent_divergence JSD with a denormal beta: NaN where beta p
//                underflows in f32 (denormal beta not generated)
//   smb_nan      xent_softmax_backward LOG_PROBS: a NaN in the output y gives
//                a finite gradient (rows with a NaN y not compared)
// Denormal temperatures and softcaps are invalid (1/x overflows f32):
// generated only as bad options (INVALID_VALUE); FLT_MIN, the smallest
// accepted, is among the valid picks. status_enum, kl_nan, jsd_beta and
// smb_nan are fixed; the ids stay so older builds can still be fuzzed.
bool Skip(const char* id) {
  static const std::string list = [] {
    const char* e = std::getenv("XENT_FUZZ_SKIP");
    return std::string(",") + (e ? e : "") + ",";
  }();
  return list.find(std::string(",") + id + ",") != std::string::npos;
}

// ---------------------------------------------------------------------------
// Buffers: exact-size heap blocks at a byte offset.
constexpr unsigned char kCanary = 0xA5;

class Block {
 public:
  Block() = default;
  // `bytes` usable bytes starting `offset` bytes into the allocation.
  Block(size_t bytes, size_t offset, unsigned char fill) : bytes_(bytes), offset_(offset) {
    mem_.reset(new unsigned char[offset + std::max<size_t>(bytes, 1)]);
    std::memset(mem_.get(), fill, offset + std::max<size_t>(bytes, 1));
  }
  unsigned char* data() const { return mem_ ? mem_.get() + offset_ : nullptr; }
  size_t bytes() const { return bytes_; }
  std::vector<unsigned char> Snapshot() const {
    return mem_ ? std::vector<unsigned char>(data(), data() + bytes_) : std::vector<unsigned char>();
  }

 private:
  std::unique_ptr<unsigned char[]> mem_;
  size_t bytes_ = 0, offset_ = 0;
};

// Padding bit patterns: NaN in every float dtype (a kernel that reads padding
// produces NaN where the reference has a number).
void FillPadding(unsigned char* p, size_t n_elems, DType t) {
  for (size_t i = 0; i < n_elems; ++i) {
    if (t == DType::kF32) {
      const uint32_t v = 0x7FA00000u;  // signaling NaN
      std::memcpy(p + 4 * i, &v, 4);
    } else if (t == DType::kBF16) {
      const uint16_t v = 0x7FA0u;
      std::memcpy(p + 2 * i, &v, 2);
    } else {
      const uint16_t v = 0x7D00u;  // f16 signaling NaN
      std::memcpy(p + 2 * i, &v, 2);
    }
  }
}

// A B x V matrix of a float dtype with row stride S (elements).
class Mat {
 public:
  Mat() = default;
  Mat(size_t B, size_t V, size_t S, DType t, size_t offset, bool output)
      : B_(B), V_(V), S_(S), t_(t), es_(xent::DTypeSize(t)) {
    const size_t n = B ? (B - 1) * S + V : 0;
    block_ = Block(n * es_, offset, kCanary);
    if (!output) {  // inputs: padding is NaN
      for (size_t i = 0; i + 1 < B; ++i) FillPadding(block_.data() + (i * S + V) * es_, S - V, t);
    }
  }
  void* data() const { return block_.data(); }
  size_t stride() const { return S_; }
  DType dtype() const { return t_; }
  int32_t dt() const { return static_cast<int32_t>(t_); }
  bool valid() const { return block_.data() != nullptr; }
  double Get(size_t i, size_t j) const { return xent::LoadScalarF32(block_.data(), i * S_ + j, t_); }
  // Stores v rounded to the dtype, returns the stored value.
  double Set(size_t i, size_t j, double v) {
    xent::StoreScalarF32(block_.data(), i * S_ + j, t_, static_cast<float>(v));
    return Get(i, j);
  }
  void SetBits(size_t i, size_t j, uint32_t bits) {
    unsigned char* p = block_.data() + (i * S_ + j) * es_;
    if (es_ == 4) {
      std::memcpy(p, &bits, 4);
    } else {
      const uint16_t b = static_cast<uint16_t>(bits);
      std::memcpy(p, &b, 2);
    }
  }
  std::vector<double> Values() const {
    std::vector<double> v(B_ * V_);
    for (size_t i = 0; i < B_; ++i)
      for (size_t j = 0; j < V_; ++j) v[i * V_ + j] = Get(i, j);
    return v;
  }
  std::vector<unsigned char> Snapshot() const { return block_.Snapshot(); }
  // True when no byte outside the B x V elements differs from `before`.
  bool OutsideUnchanged(const std::vector<unsigned char>& before) const {
    const unsigned char* p = block_.data();
    for (size_t i = 0; i + 1 < B_; ++i) {
      const size_t a = (i * S_ + V_) * es_, b = ((i + 1) * S_) * es_;
      if (std::memcmp(p + a, before.data() + a, b - a) != 0) return false;
    }
    return true;
  }

 private:
  size_t B_ = 0, V_ = 0, S_ = 0;
  DType t_ = DType::kF32;
  size_t es_ = 4;
  Block block_;
};

// n floats (an optional vector output or input).
class Floats {
 public:
  Floats() = default;
  Floats(size_t n, size_t offset) : n_(n), block_(n * 4, offset, kCanary) {}
  float* data() const { return reinterpret_cast<float*>(block_.data()); }
  float Get(size_t i) const {
    float f;
    std::memcpy(&f, block_.data() + 4 * i, 4);
    return f;
  }
  void Set(size_t i, float v) { std::memcpy(block_.data() + 4 * i, &v, 4); }
  size_t size() const { return n_; }
  std::vector<unsigned char> Snapshot() const { return block_.Snapshot(); }

 private:
  size_t n_ = 0;
  Block block_;
};

// Class indices (I32 / I64) with an element stride.
class Indices {
 public:
  Indices() = default;
  Indices(size_t B, size_t stride, DType t, size_t offset)
      : stride_(stride), t_(t), block_(B ? ((B - 1) * stride + 1) * xent::DTypeSize(t) : 0, offset, 0x5A) {}
  void Set(size_t i, int64_t v) {
    unsigned char* p = block_.data() + i * stride_ * xent::DTypeSize(t_);
    if (t_ == DType::kI32) {
      const int32_t w = static_cast<int32_t>(v);
      std::memcpy(p, &w, 4);
    } else {
      std::memcpy(p, &v, 8);
    }
  }
  int64_t Get(size_t i) const { return xent::LoadIndex(block_.data(), i * stride_, t_); }
  const void* data() const { return block_.data(); }
  int32_t dt() const { return static_cast<int32_t>(t_); }
  std::vector<unsigned char> Snapshot() const { return block_.Snapshot(); }

 private:
  size_t stride_ = 1;
  DType t_ = DType::kI64;
  Block block_;
};

// ---------------------------------------------------------------------------
// Choices common to every operation.
DType FloatDType(uint8_t b) { return static_cast<DType>(1 + b % 3); }

size_t ChooseV(Input& in) {
  const uint8_t k = in.U8();
  if (k < 170) return 1 + k % 70;                 // short rows: tails, single vectors
  if (k < 235) return 1 + in.U16() % 1100;        // several chunks
  return 4000 + in.U16() % 4400;                  // one to three 4096-element segments
}

size_t ChooseB(Input& in, size_t V) {
  const uint8_t k = in.U8();
  if (V > 2000) return k % 4;
  return k % 9;
}

size_t ChooseStride(Input& in, size_t V) {
  const uint8_t k = in.U8();
  if (k < 128) return 0;  // packed (stride 0 = V)
  return V + k % 9;
}

size_t Resolve(size_t stride, size_t V) { return stride == 0 ? V : stride; }

size_t ChooseOffset(Input& in) {
  const uint8_t k = in.U8();
  return k < 128 ? 0 : k % 8;  // byte misalignment: void* buffers take any address
}
// float* arguments are C pointers to float: 4-byte aligned (a misaligned
// float* is undefined behavior in the caller already), 16-byte at most.
size_t ChooseFloatOffset(Input& in) { return ChooseOffset(in) & ~size_t{3}; }

// Option values: `palette` lists the valid choices.
float Pick(Input& in, std::initializer_list<float> palette) {
  const size_t i = in.U8() % palette.size();
  return *(palette.begin() + i);
}

constexpr float kDenorm = 1e-40f;

// Payload distributions.
enum class Dist { kLogits, kProbs, kLogProbs, kUnit, kSigned };

struct Payload {
  Rng rng{1};
  double sigma = 3;
  double mean = 0;
  double mask = 0;  // probability of an exact zero (probs) / -inf (log-probs)
};

double Draw(Payload& p, Dist d) {
  switch (d) {
    case Dist::kLogits: return p.mean + p.sigma * p.rng.Normal();
    case Dist::kProbs: return p.rng.Uniform() < p.mask ? 0.0 : p.rng.Uniform();
    case Dist::kLogProbs:
      return p.rng.Uniform() < p.mask ? -kInf : -std::fabs(p.sigma * p.rng.Normal());
    case Dist::kUnit: return p.rng.Uniform();
    case Dist::kSigned: return 2 * p.rng.Uniform() - 1;
  }
  return 0;
}

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

// Special values the input may place, per distribution (all are valid inputs
// of that kind: logits take any float; probabilities are in [0, 1];
// log-probabilities are <= 0 or NaN).
double Special(uint8_t code, Dist d, Input& in, uint32_t* raw_bits, bool* raw) {
  *raw = false;
  switch (d) {
    case Dist::kLogits:
    case Dist::kSigned: {
      switch (code % 16) {
        case 0: return kNaN;
        case 1: return kInf;
        case 2: return -kInf;
        case 3: return 3.0e38;
        case 4: return -3.0e38;
        case 5: return kDenorm;
        case 6: return -kDenorm;
        case 7: return -0.0;
        case 8: return 65504.0;
        case 9: return -1e30;
        case 10: return 1e30;
        case 11: return 88.7;
        case 12: return -104.0;
        case 13: {
          *raw = true;
          *raw_bits = in.U32();
          return 0;
        }
        case 14: return 1e-30;
        default: return 0.0;
      }
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

// Fills a matrix from the payload, then places up to `specials` specials.
std::vector<double> FillMat(Mat& m, size_t B, size_t V, Payload& p, Dist d, Input& in, bool specials) {
  for (size_t i = 0; i < B; ++i)
    for (size_t j = 0; j < V; ++j) m.Set(i, j, Draw(p, d));
  if (specials && B > 0) {
    const size_t n = in.U8() % 8;
    for (size_t k = 0; k < n; ++k) {
      const size_t i = in.Below(B), j = in.Below(V);
      uint32_t bits;
      bool raw;
      const double v = Special(in.U8(), d, in, &bits, &raw);
      if (raw) {
        m.SetBits(i, j, bits);
      } else {
        m.Set(i, j, v);
      }
    }
  }
  return m.Values();
}

// ---------------------------------------------------------------------------
// Comparison.
double Ulp(double v, DType t) {
  const int mant = t == DType::kF32 ? 23 : (t == DType::kBF16 ? 7 : 10);
  const int min_exp = t == DType::kF16 ? -14 : -126;
  int e;
  std::frexp(std::fabs(v), &e);
  const int exp = std::max(e - 1, min_exp);
  return std::ldexp(1.0, exp - mant);
}

double RoundTo(double v, DType t) {
  unsigned char b[4];
  xent::StoreScalarF32(b, 0, t, static_cast<float>(v));
  return xent::LoadScalarF32(b, 0, t);
}

// got vs want (double) for an output of dtype t with absolute tolerance tol
// (on top of the dtype's rounding). NaN == NaN; an infinite want (or one that
// overflows the dtype) needs the same infinity.
bool Agree(double got, double want, double tol, DType t) {
  if (!(tol >= 0)) tol = 0;  // a NaN scale (e.g. 0 / 0 with every row ignored)
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  if (std::isnan(got)) return false;
  const double rounded = RoundTo(want, t);
  if (std::isinf(rounded) || std::fabs(want) > 0.99 * (t == DType::kF16 ? 65504.0 : 3.4e38)) {
    // At the edge of the dtype's range: inf of the right sign, or close.
    if (std::isinf(got)) return (got > 0) == (want > 0);
  }
  if (std::isinf(got)) return false;
  const double dtol = t == DType::kF32 ? Ulp(want, t) : Ulp(want, t) + Ulp(want, DType::kF32);
  // Plus a few f32 denormal ulps: a chain of products that ends below 2^-126
  // (e.g. a denormal grad_scale) rounds at every step with 2^-149 absolute.
  return std::fabs(got - want) <= tol + dtol + 1e-42;
}

void CheckOut(const char* what, size_t i, size_t j, double got, double want, double tol, DType t) {
  if (!Agree(got, want, tol, t))
    Fail("%s[%zu][%zu] = %.9g, float64 reference %.9g (tolerance %.3g, dtype %d)", what, i, j, got, want, tol,
         static_cast<int>(t));
}

// The float computation of z = (softcap ? softcap tanh(x / softcap) : x) / T
// stays finite for every finite x (else f32 intermediates overflow where the
// float64 reference does not: outside the accuracy contract).
bool ZFinite(const std::vector<double>& x, double T, double softcap) {
  for (double v : x) {
    if (std::isnan(v) || (std::isinf(v) && softcap <= 0)) continue;  // softcap maps +-inf to +-softcap
    float z = static_cast<float>(v);
    if (softcap > 0) z = static_cast<float>(softcap) * std::tanh(z / static_cast<float>(softcap));
    z = z / static_cast<float>(T);
    if (!std::isfinite(z) || std::fabs(z) > 1e37f) return false;
    if (std::fabs(static_cast<float>(v) * (1.0f / static_cast<float>(T))) > 1e37f) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Host thread pools (xent_parallel_for_fn) with different behaviors.
enum class Pool { kNone, kInOrder, kReverse, kThreads, kFail, kSkipLast, kRepeatFirst };

struct PoolState {
  Pool mode = Pool::kNone;
  size_t pieces = 1;
  int32_t expect_hint = 0;
  bool called = false;
  bool bad_hint = false;
  size_t last_n = 0;
};

int HostPool(void* user, size_t n, xent_task_fn task, void* ctx, int32_t hint) {
  auto* st = static_cast<PoolState*>(user);
  st->called = true;
  st->last_n = n;
  if (hint != st->expect_hint) st->bad_hint = true;
  const size_t pieces = std::max<size_t>(1, std::min(st->pieces, n));
  auto range = [&](size_t k, size_t* b, size_t* e) {
    *b = n * k / pieces;
    *e = n * (k + 1) / pieces;
  };
  switch (st->mode) {
    case Pool::kInOrder:
      for (size_t k = 0; k < pieces; ++k) {
        size_t b, e;
        range(k, &b, &e);
        if (b < e) task(ctx, b, e);
      }
      return 0;
    case Pool::kReverse:
      for (size_t i = n; i-- > 0;) task(ctx, i, i + 1);
      return 0;
    case Pool::kThreads: {
      std::vector<std::thread> th;
      for (size_t k = 0; k < std::min<size_t>(pieces, 3); ++k) {
        th.emplace_back([=] {
          const size_t p = std::min<size_t>(pieces, 3);
          const size_t b = n * k / p, e = n * (k + 1) / p;
          if (b < e) task(ctx, b, e);
        });
      }
      for (auto& t : th) t.join();
      return 0;
    }
    case Pool::kFail: return 1;
    case Pool::kSkipLast:
      if (n > 1) task(ctx, 0, n - 1);
      return 0;
    case Pool::kRepeatFirst:
      task(ctx, 0, n);
      task(ctx, 0, 1);
      return 0;
    case Pool::kNone: break;
  }
  return 0;
}

struct Threading {
  int32_t num_threads = 0;
  PoolState pool;
  xent_parallel_for_fn fn = nullptr;
};

Threading ChooseThreading(Input& in) {
  Threading t;
  const uint8_t k = in.U8();
  t.num_threads = static_cast<int32_t>(k % 3);  // 0 = all, 1, 2
  const uint8_t m = in.U8();
  if (m < 160) return t;
  static const Pool kModes[] = {Pool::kInOrder, Pool::kReverse, Pool::kThreads, Pool::kFail, Pool::kSkipLast,
                                Pool::kRepeatFirst, Pool::kInOrder, Pool::kThreads};
  t.pool.mode = kModes[m % 8];
  t.pool.pieces = 1 + in.U8() % 5;
  t.pool.expect_hint = t.num_threads;
  t.fn = &HostPool;
  return t;
}

// Status the call must return given the pool's behavior (valid arguments).
// Returns true when the outputs must be checked.
bool CheckStatusValid(xent_status rc, const Threading& t) {
  const PoolState& p = t.pool;
  if (p.bad_hint) Fail("parallel_for got num_threads_hint != num_threads (%d)", t.num_threads);
  const bool misbehaved =
      p.called && (p.mode == Pool::kFail || ((p.mode == Pool::kSkipLast || p.mode == Pool::kRepeatFirst) && p.last_n > 0));
  if (misbehaved) {
    if (rc != XENT_ERROR_CALLBACK)
      Fail("host pool (mode %d) failed or did not run every task exactly once, but status = %d (want "
           "XENT_ERROR_CALLBACK)",
           static_cast<int>(p.mode), rc);
    if (xent_last_error()[0] == '\0') Fail("XENT_ERROR_CALLBACK without a message");
    return false;
  }
  if (rc != XENT_OK) Fail("valid arguments but status = %d (%s)", rc, xent_status_string(rc));
  if (xent_last_error()[0] != '\0') Fail("XENT_OK but xent_last_error() is not empty");
  return true;
}

// ---------------------------------------------------------------------------
// Deliberately invalid arguments: at most one per call.
enum class Bad {
  kNone,
  kStructSmall,    // struct_size < sizeof: INVALID_STRUCT
  kStructTail,     // larger struct with a non-zero unknown byte: INVALID_STRUCT
  kZeroClasses,    // num_classes = 0: INVALID_SHAPE
  kShortStride,    // an input stride in (0, V): INVALID_SHAPE
  kHugeBatch,      // batch x num_classes overflows: INVALID_SHAPE
  kDType,          // unknown dtype of an input: INVALID_DTYPE
  kThreads,        // num_threads < 0: INVALID_VALUE
  kNullInput,      // required input NULL: NULL_POINTER
  kOption,         // an option outside its domain: INVALID_VALUE / INVALID_ENUM
  kTarget,         // class index out of range: TARGET_OUT_OF_RANGE
  kAlias,          // an output overlapping an input: ALIASING
  kCount
};

Bad ChooseBad(Input& in) {
  const uint8_t k = in.U8();
  if (k < 192) return Bad::kNone;
  return static_cast<Bad>(1 + k % (static_cast<int>(Bad::kCount) - 1));
}

const char* BadName(Bad b) {
  static const char* n[] = {"none", "struct_small", "struct_tail", "zero_classes", "short_stride", "huge_batch",
                            "dtype", "threads", "null_input", "option", "target", "alias"};
  return n[static_cast<int>(b)];
}

// The struct passed to the library: the args, possibly with a bad size.
template <class T>
struct ArgsBox {
  alignas(16) unsigned char bytes[sizeof(T) + 64] = {};
  T* args() { return reinterpret_cast<T*>(bytes); }
  void Apply(Bad bad, Input& in) {
    if (bad == Bad::kStructSmall) {
      args()->struct_size = in.U8() % sizeof(T);
    } else if (bad == Bad::kStructTail) {
      const size_t extra = 1 + in.U8() % 64;
      args()->struct_size = sizeof(T) + extra;
      bytes[sizeof(T) + in.U8() % extra] = static_cast<unsigned char>(1 + in.U8() % 255);
    }
  }
};

// Snapshots of every buffer, to prove a failed call wrote nothing and a
// successful one wrote only its outputs, inside their rows.
class Watch {
 public:
  void Add(const char* name, std::function<std::vector<unsigned char>()> get) {
    items_.push_back({name, get, get()});
  }
  void ExpectUnchanged(const char* why) const {
    for (const auto& it : items_)
      if (it.get() != it.before) Fail("%s: %s was modified", why, it.name);
  }
  void ExpectUnchanged(const char* name, const char* why) const {
    for (const auto& it : items_)
      if (std::strcmp(it.name, name) == 0 && it.get() != it.before) Fail("%s: %s was modified", why, it.name);
  }
  const std::vector<unsigned char>& Before(const char* name) const {
    for (const auto& it : items_)
      if (std::strcmp(it.name, name) == 0) return it.before;
    Fail("internal: no snapshot %s", name);
  }

 private:
  struct Item {
    const char* name;
    std::function<std::vector<unsigned char>()> get;
    std::vector<unsigned char> before;
  };
  std::vector<Item> items_;
};

void CheckStatusBad(xent_status rc, xent_status want, Bad bad, const Watch& w) {
  if (rc != want)
    Fail("invalid argument (%s): status = %d (%s), want %d (%s)", BadName(bad), rc, xent_status_string(rc), want,
         xent_status_string(want));
  if (xent_last_error()[0] == '\0') Fail("error status without a message");
  w.ExpectUnchanged("failed call");
}

// ---------------------------------------------------------------------------
// Operations.
struct Common {
  Bad bad = Bad::kNone;
  Threading th;
  Payload payload;
};

// Cross-entropy (hard and soft targets).
void FuzzCrossEntropy(Input& in, Common& c) {
  const size_t V = ChooseV(in), B = ChooseB(in, V);
  const DType xt = FloatDType(in.U8());
  const size_t xs = ChooseStride(in, V);
  const uint8_t kind = in.U8();
  const bool soft = kind % 4 == 3;
  const DType qt = soft ? (in.Bit() ? DType::kF32 : xt) : (kind & 4 ? DType::kI32 : DType::kI64);
  const size_t ts = soft ? ChooseStride(in, V) : in.U8() % 3;  // index stride 0 (= 1), 1, 2
  const uint8_t outs = in.U8();
  const bool want_loss = outs & 1, want_row = outs & 2, want_lse = outs & 4, want_grad = outs & 8;
  const bool inplace = want_grad && (outs & 16);
  const DType gt = inplace ? xt : ((outs & 32) ? DType::kF32 : xt);
  const size_t gs = inplace ? xs : ChooseStride(in, V);
  const bool use_weight = in.U8() % 3 == 0, use_rs = in.U8() % 3 == 0;
  int64_t ignore = -100;
  {
    static const int64_t kIgn[] = {-100, -100, -1, 0, std::numeric_limits<int64_t>::min(), 7};
    ignore = kIgn[in.U8() % 6];
  }
  const int reduction = in.U8() % 3;
  const float eps = Pick(in, {0.0f, 0.0f, 0.1f, 0.5f, 1.0f, 1e-8f, kDenorm});
  const float z_loss = Pick(in, {0.0f, 0.0f, 1e-4f, 0.1f, 1.0f, kDenorm});
  float softcap = Pick(in, {0.0f, 0.0f, 0.0f, 30.0f, 1.0f, 5.0f, 1e-3f, 1e4f, FLT_MIN});
  const float grad_scale = Pick(in, {1.0f, 1.0f, -1.0f, 0.5f, 0.0f, 1e3f, 1e-3f, kDenorm, -2.5f});
  const size_t off = ChooseOffset(in);
  Ctx("cross_entropy B=%zu V=%zu dtype=%d stride=%zu soft=%d target_dtype=%d target_stride=%zu outs=%#x grad_dtype=%d "
      "grad_stride=%zu inplace=%d weight=%d row_scale=%d ignore=%lld red=%d eps=%g z=%g cap=%g gs=%g off=%zu",
      B, V, static_cast<int>(xt), xs, soft, static_cast<int>(qt), ts, outs, static_cast<int>(gt), gs, inplace,
      use_weight, use_rs, static_cast<long long>(ignore), reduction, eps, z_loss, softcap, grad_scale, off);

  Mat x(B, V, Resolve(xs, V), xt, off, false);
  xent_ref::CeSpec spec;
  spec.B = B;
  spec.V = V;
  spec.x = FillMat(x, B, V, c.payload, Dist::kLogits, in, true);
  Mat q;
  Indices y;
  if (soft) {
    q = Mat(B, V, Resolve(ts, V), qt, ChooseOffset(in), false);
    Payload qp = c.payload;
    qp.rng = Rng(c.payload.rng.Next());
    spec.q = FillMat(q, B, V, qp, Dist::kProbs, in, true);
    spec.soft = true;
  } else {
    y = Indices(B, ts == 0 ? 1 : ts, qt, ChooseOffset(in));
    spec.y.resize(B);
    for (size_t i = 0; i < B; ++i) {
      int64_t v = static_cast<int64_t>(c.payload.rng.Next() % V);
      if (c.payload.rng.Next() % 5 == 0) v = ignore;
      if (qt == DType::kI32 && (ignore < INT32_MIN || ignore > INT32_MAX) && v == ignore) v = 0;
      y.Set(i, v);
      spec.y[i] = y.Get(i);
    }
  }
  Floats w, rs;
  if (use_weight) {
    w = Floats(V, ChooseFloatOffset(in));
    spec.weight.resize(V);
    for (size_t j = 0; j < V; ++j) {
      const float v = c.payload.rng.Next() % 7 == 0 ? 0.0f : static_cast<float>(2 * c.payload.rng.Uniform());
      w.Set(j, v);
      spec.weight[j] = v;
    }
  }
  if (use_rs) {
    rs = Floats(B, ChooseFloatOffset(in));
    spec.row_scale.resize(B);
    for (size_t i = 0; i < B; ++i) {
      const float v = static_cast<float>(4 * c.payload.rng.Uniform() - 2);
      rs.Set(i, v);
      spec.row_scale[i] = v;
    }
  }
  Floats loss(1, ChooseFloatOffset(in)), row(B, ChooseFloatOffset(in)), lse(B, ChooseFloatOffset(in));
  Mat g;
  if (want_grad && !inplace) g = Mat(B, V, Resolve(gs, V), gt, ChooseOffset(in), true);

  ArgsBox<xent_cross_entropy_args> box;
  xent_cross_entropy_args* a = box.args();
  if (XENT_ARGS_INIT(xent_cross_entropy_args, a) != XENT_OK) Fail("args_init failed");
  a->batch = B;
  a->num_classes = V;
  a->logits = x.data();
  a->logits_stride = xs;
  a->logits_dtype = x.dt();
  a->target_dtype = static_cast<int32_t>(qt);
  a->target = soft ? q.data() : y.data();
  a->target_stride = ts;
  a->weight = use_weight ? w.data() : nullptr;
  a->row_scale = use_rs ? rs.data() : nullptr;
  a->ignore_index = ignore;
  a->reduction = reduction;
  a->label_smoothing = eps;
  a->z_loss = z_loss;
  a->softcap = softcap;
  a->grad_scale = grad_scale;
  a->loss = want_loss ? loss.data() : nullptr;
  a->row_loss = want_row ? row.data() : nullptr;
  a->lse = want_lse ? lse.data() : nullptr;
  if (want_grad) {
    a->grad = inplace ? x.data() : g.data();
    a->grad_stride = gs;
    a->grad_dtype = inplace ? XENT_DTYPE_AUTO : static_cast<int32_t>(gt);
  }
  a->num_threads = c.th.num_threads;
  a->parallel_for = c.th.fn;
  a->parallel_user = &c.th.pool;

  xent_status want_bad = XENT_OK;
  switch (c.bad) {
    case Bad::kStructSmall: case Bad::kStructTail: want_bad = XENT_ERROR_INVALID_STRUCT; break;
    case Bad::kZeroClasses: a->num_classes = 0; want_bad = XENT_ERROR_INVALID_SHAPE; break;
    case Bad::kShortStride:
      if (V > 1) { a->logits_stride = 1 + in.Below(V - 1); want_bad = XENT_ERROR_INVALID_SHAPE; }
      break;
    case Bad::kHugeBatch: a->batch = SIZE_MAX / 2 + in.U8(); want_bad = XENT_ERROR_INVALID_SHAPE; break;
    case Bad::kDType: {
      static const int32_t kBadDt[] = {0, 4, 5, 6, -1, 1000};
      a->logits_dtype = kBadDt[in.U8() % 6];
      want_bad = XENT_ERROR_INVALID_DTYPE;
      break;
    }
    case Bad::kThreads: a->num_threads = -1 - in.U8(); want_bad = XENT_ERROR_INVALID_VALUE; break;
    case Bad::kNullInput:
      if (in.Bit()) a->logits = nullptr; else a->target = nullptr;
      want_bad = XENT_ERROR_NULL_POINTER;
      break;
    case Bad::kOption:
      switch (in.U8() % 6) {
        case 0: a->reduction = 3 + in.U8() % 5; want_bad = XENT_ERROR_INVALID_ENUM; break;
        case 1: a->label_smoothing = in.Bit() ? 1.5f : -kDenorm; want_bad = XENT_ERROR_INVALID_VALUE; break;
        case 2: a->z_loss = in.Bit() ? NAN : -1.0f; want_bad = XENT_ERROR_INVALID_VALUE; break;
        case 3: a->softcap = Pick(in, {INFINITY, -1.0f, kDenorm}); want_bad = XENT_ERROR_INVALID_VALUE; break;
        case 4: a->grad_scale = in.Bit() ? NAN : -INFINITY; want_bad = XENT_ERROR_INVALID_VALUE; break;
        default: a->reserved0 = 1; want_bad = XENT_ERROR_INVALID_VALUE; break;
      }
      break;
    case Bad::kTarget:
      if (!soft && B > 0) {
        const size_t i = in.Below(B);
        int64_t v = in.Bit() ? static_cast<int64_t>(V) + in.U8() : -1 - static_cast<int64_t>(in.U8());
        if (v == ignore) v = static_cast<int64_t>(V);
        y.Set(i, v);
        if (y.Get(i) != ignore) want_bad = XENT_ERROR_TARGET_OUT_OF_RANGE;
      }
      break;
    case Bad::kAlias:
      if (B > 0 && (want_row || want_lse)) {
        // row_loss / lse inside the logits (f32 logits only, a float* cast).
        if (xt == DType::kF32) {
          float* inside = static_cast<float*>(x.data());
          if (want_row) a->row_loss = inside; else a->lse = inside;
          want_bad = XENT_ERROR_ALIASING;
        }
      } else if (want_grad && !inplace && B > 0 && V > 1) {
        a->grad = static_cast<unsigned char*>(x.data()) + xent::DTypeSize(gt);  // shifted: not an exact alias
        a->grad_stride = Resolve(xs, V) * xent::DTypeSize(xt) / xent::DTypeSize(gt);
        if (a->grad_stride < V) a->grad_stride = Resolve(xs, V);
        want_bad = XENT_ERROR_ALIASING;
      }
      break;
    default: break;
  }
  const Bad bad = want_bad == XENT_OK ? Bad::kNone : c.bad;
  box.Apply(bad, in);

  Watch watch;
  watch.Add("logits", [&] { return x.Snapshot(); });
  if (soft) watch.Add("target", [&] { return q.Snapshot(); }); else watch.Add("target", [&] { return y.Snapshot(); });
  if (use_weight) watch.Add("weight", [&] { return w.Snapshot(); });
  if (use_rs) watch.Add("row_scale", [&] { return rs.Snapshot(); });
  watch.Add("loss", [&] { return loss.Snapshot(); });
  watch.Add("row_loss", [&] { return row.Snapshot(); });
  watch.Add("lse", [&] { return lse.Snapshot(); });
  if (g.valid()) watch.Add("grad", [&] { return g.Snapshot(); });

  const xent_status rc = xent_cross_entropy(a);
  if (bad != Bad::kNone) return CheckStatusBad(rc, want_bad, bad, watch);
  if (!CheckStatusValid(rc, c.th)) return;

  // Unchanged: inputs (except in-place logits), unrequested outputs.
  if (!inplace) watch.ExpectUnchanged("logits", "successful call");
  watch.ExpectUnchanged("target", "successful call");
  watch.ExpectUnchanged("weight", "successful call");
  watch.ExpectUnchanged("row_scale", "successful call");
  if (!want_loss) watch.ExpectUnchanged("loss", "unrequested output");
  if (!want_row) watch.ExpectUnchanged("row_loss", "unrequested output");
  if (!want_lse) watch.ExpectUnchanged("lse", "unrequested output");
  const Mat& gm = inplace ? x : g;
  if (want_grad && !gm.OutsideUnchanged(inplace ? watch.Before("logits") : watch.Before("grad")))
    Fail("gradient written outside its rows (stride padding)");

  if (!ZFinite(spec.x, 1.0, softcap)) return;
  spec.ignore_index = ignore;
  spec.reduction = reduction;
  spec.eps = eps;
  spec.z_loss = z_loss;
  spec.softcap = softcap;
  spec.grad_scale = grad_scale;
  const xent_ref::CeOut want = xent_ref::CrossEntropy(spec);

  // Tolerances (see tests/ce_test.cc), scaled by weights, z-loss and |z|.
  double zmax = 1.0;
  for (double v : spec.x)
    if (std::isfinite(v)) zmax = std::max(zmax, softcap > 0 ? std::min<double>(std::fabs(v), softcap) : std::fabs(v));
  double wmax = 1.0;
  for (double v : spec.weight) wmax = std::max(wmax, v);
  double qsum_max = 1.0;  // soft targets: sum of the row's target mass
  if (soft) {
    for (size_t i = 0; i < B; ++i) {
      double s = 0;
      for (size_t j = 0; j < V; ++j) s += std::isfinite(spec.q[i * V + j]) ? std::fabs(spec.q[i * V + j]) : 0;
      qsum_max = std::max(qsum_max, s);
    }
  }
  const double zl = 1 + 2 * z_loss * zmax + z_loss * zmax * 1e-6 * zmax;
  const double row_abs = (8e-6 + (softcap > 0 ? 32 : 8) * 1.2e-7 * zmax) * wmax * qsum_max * zl;
  double rows_tol = 0;
  for (size_t i = 0; i < B; ++i) {
    const double rt = 8e-6 * std::fabs(want.row_loss[i]) + row_abs;
    rows_tol += std::isfinite(rt) ? rt : 0;
    if (want_row) CheckOut("row_loss", i, 0, row.Get(i), want.row_loss[i], rt, DType::kF32);
    if (want_lse) CheckOut("lse", i, 0, lse.Get(i), want.lse[i], 8e-6 * std::fabs(want.lse[i]) + row_abs, DType::kF32);
  }
  double divisor = 0;
  for (size_t i = 0; i < B; ++i) {
    if (soft) divisor += 1;
    else if (spec.y[i] != ignore) divisor += spec.weight.empty() ? 1.0 : spec.weight[static_cast<size_t>(spec.y[i])];
  }
  const double div = reduction == 1 ? divisor : 1.0;
  if (want_loss) CheckOut("loss", 0, 0, loss.Get(0), want.loss, 8e-6 * std::fabs(want.loss) + rows_tol / div, DType::kF32);
  if (want_grad && !(reduction == 1 && divisor == 0)) {
    double rsmax = 1.0;
    for (double v : spec.row_scale) rsmax = std::max(rsmax, std::fabs(v));
    const double gabs = std::fabs(static_cast<double>(grad_scale)) * rsmax * wmax * qsum_max * zl / div;
    const double gtol_abs = gabs * (4e-6 + 8 * 1.2e-7 * zmax) * (softcap > 0 ? 8 : 1);
    for (size_t i = 0; i < B; ++i)
      for (size_t j = 0; j < V; ++j) {
        const double wg = want.grad[i * V + j];
        CheckOut("grad", i, j, gm.Get(i, j), wg, 8e-6 * std::fabs(wg) + gtol_abs, gt);
      }
  }
}

// Softmax family.
void FuzzSoftmax(Input& in, Common& c) {
  const size_t V = ChooseV(in), B = ChooseB(in, V);
  const DType xt = FloatDType(in.U8());
  const size_t xs = ChooseStride(in, V);
  const uint8_t outs = in.U8();
  bool want_p = outs & 1, want_lp = outs & 2, want_lse = outs & 4, want_h = outs & 8;
  if (!(want_p || want_lp || want_lse || want_h) && c.bad != Bad::kNullInput) want_p = true;
  const int inplace = (outs >> 4) % 4;  // 1: probs in place, 2: log_probs in place
  const bool p_in = want_p && inplace == 1, lp_in = want_lp && inplace == 2;
  const DType pt = p_in ? xt : ((outs & 64) ? DType::kF32 : xt);
  const DType lpt = lp_in ? xt : ((outs & 128) ? DType::kF32 : xt);
  const size_t ps = p_in ? xs : ChooseStride(in, V), lps = lp_in ? xs : ChooseStride(in, V);
  float T = Pick(in, {1.0f, 1.0f, 0.5f, 2.0f, 1e-3f, 100.0f, FLT_MIN, 1e30f, 0.7f});
  const size_t off = ChooseOffset(in);
  Ctx("softmax B=%zu V=%zu dtype=%d stride=%zu outs=%#x probs(dtype=%d stride=%zu inplace=%d) log_probs(dtype=%d "
      "stride=%zu inplace=%d) T=%g off=%zu",
      B, V, static_cast<int>(xt), xs, outs, static_cast<int>(pt), ps, p_in, static_cast<int>(lpt), lps, lp_in, T,
      off);
  Mat x(B, V, Resolve(xs, V), xt, off, false);
  const std::vector<double> xv = FillMat(x, B, V, c.payload, Dist::kLogits, in, true);
  Mat p, lp;
  if (want_p && !p_in) p = Mat(B, V, Resolve(ps, V), pt, ChooseOffset(in), true);
  if (want_lp && !lp_in) lp = Mat(B, V, Resolve(lps, V), lpt, ChooseOffset(in), true);
  Floats lse(B, ChooseFloatOffset(in)), ent(B, ChooseFloatOffset(in));

  ArgsBox<xent_softmax_args> box;
  xent_softmax_args* a = box.args();
  if (XENT_ARGS_INIT(xent_softmax_args, a) != XENT_OK) Fail("args_init failed");
  a->batch = B;
  a->num_classes = V;
  a->logits = x.data();
  a->logits_stride = xs;
  a->logits_dtype = x.dt();
  a->temperature = T;
  if (want_p) {
    a->probs = p_in ? x.data() : p.data();
    a->probs_stride = ps;
    a->probs_dtype = p_in ? XENT_DTYPE_AUTO : static_cast<int32_t>(pt);
  }
  if (want_lp) {
    a->log_probs = lp_in ? x.data() : lp.data();
    a->log_probs_stride = lps;
    a->log_probs_dtype = lp_in ? XENT_DTYPE_AUTO : static_cast<int32_t>(lpt);
  }
  a->lse = want_lse ? lse.data() : nullptr;
  a->entropy = want_h ? ent.data() : nullptr;
  a->num_threads = c.th.num_threads;
  a->parallel_for = c.th.fn;
  a->parallel_user = &c.th.pool;

  xent_status want_bad = XENT_OK;
  switch (c.bad) {
    case Bad::kStructSmall: case Bad::kStructTail: want_bad = XENT_ERROR_INVALID_STRUCT; break;
    case Bad::kZeroClasses: a->num_classes = 0; want_bad = XENT_ERROR_INVALID_SHAPE; break;
    case Bad::kShortStride:
      if (V > 1) { a->logits_stride = 1 + in.Below(V - 1); want_bad = XENT_ERROR_INVALID_SHAPE; }
      break;
    case Bad::kHugeBatch: a->batch = SIZE_MAX / 3; want_bad = XENT_ERROR_INVALID_SHAPE; break;
    case Bad::kDType: a->logits_dtype = in.Bit() ? 0 : 9; want_bad = XENT_ERROR_INVALID_DTYPE; break;
    case Bad::kThreads: a->num_threads = INT32_MIN; want_bad = XENT_ERROR_INVALID_VALUE; break;
    case Bad::kNullInput:
      if (in.Bit()) a->logits = nullptr;
      else a->probs = a->log_probs = nullptr, a->lse = a->entropy = nullptr;
      want_bad = XENT_ERROR_NULL_POINTER;
      break;
    case Bad::kOption:
      if (in.Bit()) { a->temperature = Pick(in, {0.0f, -1.0f, NAN, INFINITY, kDenorm}); want_bad = XENT_ERROR_INVALID_VALUE; }
      else { a->reserved0 = 1 + in.U8(); want_bad = XENT_ERROR_INVALID_VALUE; }
      break;
    case Bad::kAlias:
      if (want_p && want_lp && !p_in && !lp_in && B > 0) {
        a->log_probs = a->probs;  // two outputs on one buffer
        a->log_probs_stride = a->probs_stride;
        a->log_probs_dtype = a->probs_dtype;
        want_bad = XENT_ERROR_ALIASING;
      } else if (want_lse && want_h && B > 0) {
        a->entropy = a->lse;
        want_bad = XENT_ERROR_ALIASING;
      }
      break;
    default: break;
  }
  const Bad bad = want_bad == XENT_OK ? Bad::kNone : c.bad;
  box.Apply(bad, in);
  Watch watch;
  watch.Add("logits", [&] { return x.Snapshot(); });
  if (p.valid()) watch.Add("probs", [&] { return p.Snapshot(); });
  if (lp.valid()) watch.Add("log_probs", [&] { return lp.Snapshot(); });
  watch.Add("lse", [&] { return lse.Snapshot(); });
  watch.Add("entropy", [&] { return ent.Snapshot(); });
  const xent_status rc = xent_softmax(a);
  if (bad != Bad::kNone) return CheckStatusBad(rc, want_bad, bad, watch);
  if (!CheckStatusValid(rc, c.th)) return;
  if (!p_in && !lp_in) watch.ExpectUnchanged("logits", "successful call");
  if (!want_lse) watch.ExpectUnchanged("lse", "unrequested output");
  if (!want_h) watch.ExpectUnchanged("entropy", "unrequested output");
  if (p.valid() && !p.OutsideUnchanged(watch.Before("probs"))) Fail("probs written outside its rows");
  if (lp.valid() && !lp.OutsideUnchanged(watch.Before("log_probs"))) Fail("log_probs written outside its rows");
  if ((p_in || lp_in) && !x.OutsideUnchanged(watch.Before("logits"))) Fail("in-place output written outside its rows");

  if (!ZFinite(xv, T, 0)) return;
  const xent_ref::SoftmaxOut want = xent_ref::Softmax(xv, B, V, T, 0);
  for (size_t i = 0; i < B; ++i) {
    double zmax = 1.0;
    for (size_t j = 0; j < V; ++j)
      if (std::isfinite(xv[i * V + j])) zmax = std::max(zmax, std::fabs(xv[i * V + j] / T));
    const double rt = 8e-6 + 8 * 1.2e-7 * zmax;
    if (want_lse) CheckOut("lse", i, 0, lse.Get(i), want.lse[i], 8e-6 * std::fabs(want.lse[i]) + rt, DType::kF32);
    if (want_h)
      CheckOut("entropy", i, 0, ent.Get(i), want.entropy[i], 8e-6 * std::fabs(want.entropy[i]) + rt, DType::kF32);
    for (size_t j = 0; j < V; ++j) {
      const size_t k = i * V + j;
      if (want_p)
        CheckOut("probs", i, j, (p_in ? x : p).Get(i, j), want.probs[k], 4e-6 + 8e-6 * std::fabs(want.probs[k]) +
                 8 * 1.2e-7 * zmax * std::fabs(want.probs[k]), pt);
      if (want_lp)
        CheckOut("log_probs", i, j, (lp_in ? x : lp).Get(i, j), want.log_probs[k],
                 8e-6 * std::fabs(want.log_probs[k]) + rt, lpt);
    }
  }
}

// Softmax backward.
void FuzzSoftmaxBackward(Input& in, Common& c) {
  const size_t V = ChooseV(in), B = ChooseB(in, V);
  const DType t = FloatDType(in.U8());
  const bool log = in.Bit();
  const size_t ys = ChooseStride(in, V), gs = ChooseStride(in, V);
  const uint8_t o = in.U8();
  const bool inplace = o & 1;
  const DType gxt = inplace ? t : ((o & 2) ? DType::kF32 : t);
  const size_t gxs = inplace ? gs : ChooseStride(in, V);
  float T = Pick(in, {1.0f, 1.0f, 0.5f, 2.0f, 1e-3f, 100.0f, FLT_MIN, 0.7f});
  Ctx("softmax_backward B=%zu V=%zu dtype=%d kind=%s y_stride=%zu g_stride=%zu gx(dtype=%d stride=%zu inplace=%d) T=%g",
      B, V, static_cast<int>(t), log ? "log_probs" : "probs", ys, gs, static_cast<int>(gxt), gxs, inplace, T);
  Mat y(B, V, Resolve(ys, V), t, ChooseOffset(in), false), g(B, V, Resolve(gs, V), t, ChooseOffset(in), false);
  Payload gp = c.payload;
  gp.rng = Rng(c.payload.rng.Next());
  const std::vector<double> yv = FillMat(y, B, V, c.payload, log ? Dist::kLogProbs : Dist::kProbs, in, true);
  const std::vector<double> gv = FillMat(g, B, V, gp, Dist::kLogits, in, true);
  Mat gx;
  if (!inplace) gx = Mat(B, V, Resolve(gxs, V), gxt, ChooseOffset(in), true);

  ArgsBox<xent_softmax_backward_args> box;
  xent_softmax_backward_args* a = box.args();
  if (XENT_ARGS_INIT(xent_softmax_backward_args, a) != XENT_OK) Fail("args_init failed");
  a->batch = B;
  a->num_classes = V;
  a->output = y.data();
  a->output_stride = ys;
  a->output_dtype = y.dt();
  a->output_kind = log ? XENT_DIST_LOG_PROBS : XENT_DIST_PROBS;
  a->grad_output = g.data();
  a->grad_output_stride = gs;
  a->grad_output_dtype = g.dt();
  a->temperature = T;
  a->grad_input = inplace ? g.data() : gx.data();
  a->grad_input_stride = gxs;
  a->grad_input_dtype = inplace ? XENT_DTYPE_AUTO : static_cast<int32_t>(gxt);
  a->num_threads = c.th.num_threads;
  a->parallel_for = c.th.fn;
  a->parallel_user = &c.th.pool;
  xent_status want_bad = XENT_OK;
  switch (c.bad) {
    case Bad::kStructSmall: case Bad::kStructTail: want_bad = XENT_ERROR_INVALID_STRUCT; break;
    case Bad::kZeroClasses: a->num_classes = 0; want_bad = XENT_ERROR_INVALID_SHAPE; break;
    case Bad::kShortStride:
      if (V > 1) { a->output_stride = 1 + in.Below(V - 1); want_bad = XENT_ERROR_INVALID_SHAPE; }
      break;
    case Bad::kHugeBatch: a->batch = SIZE_MAX; want_bad = XENT_ERROR_INVALID_SHAPE; break;
    case Bad::kDType:
      // grad_output's dtype must equal output's.
      a->grad_output_dtype = t == DType::kF32 ? XENT_BF16 : XENT_F32;
      want_bad = XENT_ERROR_INVALID_DTYPE;
      break;
    case Bad::kThreads: a->num_threads = -7; want_bad = XENT_ERROR_INVALID_VALUE; break;
    case Bad::kNullInput:
      switch (in.U8() % 3) {
        case 0: a->output = nullptr; break;
        case 1: a->grad_output = nullptr; break;
        default: a->grad_input = nullptr; break;
      }
      want_bad = XENT_ERROR_NULL_POINTER;
      break;
    case Bad::kOption:
      if (in.Bit()) { a->output_kind = in.Bit() ? XENT_DIST_LOGITS : 3; want_bad = XENT_ERROR_INVALID_ENUM; }
      else { a->temperature = -0.0f; want_bad = XENT_ERROR_INVALID_VALUE; }
      break;
    case Bad::kAlias:
      if (B > 0) {
        a->grad_input = const_cast<void*>(a->output);  // output y is not an allowed in-place input
        a->grad_input_stride = ys;
        a->grad_input_dtype = XENT_DTYPE_AUTO;
        want_bad = XENT_ERROR_ALIASING;
      }
      break;
    default: break;
  }
  const Bad bad = want_bad == XENT_OK ? Bad::kNone : c.bad;
  box.Apply(bad, in);
  Watch watch;
  watch.Add("output", [&] { return y.Snapshot(); });
  watch.Add("grad_output", [&] { return g.Snapshot(); });
  if (gx.valid()) watch.Add("grad_input", [&] { return gx.Snapshot(); });
  const xent_status rc = xent_softmax_backward(a);
  if (bad != Bad::kNone) return CheckStatusBad(rc, want_bad, bad, watch);
  if (!CheckStatusValid(rc, c.th)) return;
  watch.ExpectUnchanged("output", "successful call");
  if (!inplace) watch.ExpectUnchanged("grad_output", "successful call");
  const Mat& out = inplace ? g : gx;
  if (!out.OutsideUnchanged(watch.Before(inplace ? "grad_output" : "grad_input")))
    Fail("grad_input written outside its rows");

  // Domain: products and exp(y) stay within f32.
  for (double v : yv)
    if (std::isfinite(v) && (std::fabs(v) > 1e15 || (log && v > 80))) return;
  for (double v : gv)
    if (std::isfinite(v) && std::fabs(v) > 1e15) return;
  if (std::fabs(1.0 / T) > 1e15) return;
  const std::vector<double> want = xent_ref::SoftmaxBackward(yv, gv, B, V, log, T);
  for (size_t i = 0; i < B; ++i) {
    // An infinite grad_output (or +inf output) makes the row inf - inf in one
    // order of evaluation and +-inf in another: not defined, not compared.
    bool inf_row = false;
    for (size_t j = 0; j < V; ++j)
      inf_row = inf_row || std::isinf(gv[i * V + j]) || yv[i * V + j] == kInf ||
                (log && std::isnan(yv[i * V + j]) && Skip("smb_nan"));
    if (inf_row) continue;
    if (std::getenv("XENT_FUZZ_DUMP")) {
      std::fprintf(stderr, "row %zu:\n  output:", i);
      for (size_t j = 0; j < V; ++j) std::fprintf(stderr, " %.9g", yv[i * V + j]);
      std::fprintf(stderr, "\n  grad_output:");
      for (size_t j = 0; j < V; ++j) std::fprintf(stderr, " %.9g", gv[i * V + j]);
      std::fprintf(stderr, "\n");
    }
    double S = 0;
    for (size_t j = 0; j < V; ++j) {
      const double yy = yv[i * V + j], gg = gv[i * V + j];
      S += log ? std::fabs(gg) : std::fabs(gg * yy);
    }
    for (size_t j = 0; j < V; ++j) {
      const double yy = yv[i * V + j], gg = gv[i * V + j];
      const double M = log ? (std::fabs(gg) + std::exp(yy) * S) / T : (std::fabs(yy * gg) + std::fabs(yy) * S) / T;
      const double tol = std::isfinite(M) ? 1e-5 * M + 1e-30 : kInf;
      CheckOut("grad_input", i, j, out.Get(i, j), want[i * V + j], tol, gxt);
    }
  }
}

// Token log-probabilities.
void FuzzTokenLogprobs(Input& in, Common& c) {
  const size_t V = ChooseV(in), B = ChooseB(in, V);
  const DType xt = FloatDType(in.U8());
  const size_t xs = ChooseStride(in, V);
  const DType yt = in.Bit() ? DType::kI32 : DType::kI64;
  const size_t ys = in.U8() % 3;
  const uint8_t outs = in.U8();
  bool want_lp = outs & 1, want_h = outs & 2, want_lse = outs & 4;
  if (!(want_lp || want_h || want_lse) && c.bad != Bad::kNullInput) want_lp = true;
  const int64_t ignore = in.Bit() ? -100 : 0;
  float T = Pick(in, {1.0f, 1.0f, 0.5f, 2.0f, 1e-3f, 100.0f, FLT_MIN, 0.7f});
  float softcap = Pick(in, {0.0f, 0.0f, 30.0f, 1.0f, 1e-3f, 1e4f, FLT_MIN});
  Ctx("token_logprobs B=%zu V=%zu dtype=%d stride=%zu target_dtype=%d target_stride=%zu outs=%#x ignore=%lld T=%g "
      "cap=%g",
      B, V, static_cast<int>(xt), xs, static_cast<int>(yt), ys, outs, static_cast<long long>(ignore), T, softcap);
  Mat x(B, V, Resolve(xs, V), xt, ChooseOffset(in), false);
  const std::vector<double> xv = FillMat(x, B, V, c.payload, Dist::kLogits, in, true);
  Indices y(B, ys == 0 ? 1 : ys, yt, ChooseOffset(in));
  std::vector<int64_t> yv(B);
  for (size_t i = 0; i < B; ++i) {
    const int64_t v = c.payload.rng.Next() % 4 == 0 ? ignore : static_cast<int64_t>(c.payload.rng.Next() % V);
    y.Set(i, v);
    yv[i] = v;
  }
  Floats lp(B, ChooseFloatOffset(in)), h(B, ChooseFloatOffset(in)), lse(B, ChooseFloatOffset(in));
  ArgsBox<xent_token_logprobs_args> box;
  xent_token_logprobs_args* a = box.args();
  if (XENT_ARGS_INIT(xent_token_logprobs_args, a) != XENT_OK) Fail("args_init failed");
  a->batch = B;
  a->num_classes = V;
  a->logits = x.data();
  a->logits_stride = xs;
  a->logits_dtype = x.dt();
  a->target_dtype = static_cast<int32_t>(yt);
  a->target = (want_lp || in.Bit()) ? y.data() : nullptr;  // may be NULL without logprob
  a->target_stride = ys;
  a->ignore_index = ignore;
  a->temperature = T;
  a->softcap = softcap;
  a->logprob = want_lp ? lp.data() : nullptr;
  a->entropy = want_h ? h.data() : nullptr;
  a->lse = want_lse ? lse.data() : nullptr;
  a->num_threads = c.th.num_threads;
  a->parallel_for = c.th.fn;
  a->parallel_user = &c.th.pool;
  xent_status want_bad = XENT_OK;
  switch (c.bad) {
    case Bad::kStructSmall: case Bad::kStructTail: want_bad = XENT_ERROR_INVALID_STRUCT; break;
    case Bad::kZeroClasses: a->num_classes = 0; want_bad = XENT_ERROR_INVALID_SHAPE; break;
    case Bad::kShortStride:
      if (V > 1) { a->logits_stride = V - 1; want_bad = XENT_ERROR_INVALID_SHAPE; }
      break;
    case Bad::kHugeBatch: a->batch = SIZE_MAX / 2; want_bad = XENT_ERROR_INVALID_SHAPE; break;
    case Bad::kDType:
      if (want_lp) { a->target_dtype = XENT_F32; want_bad = XENT_ERROR_INVALID_DTYPE; }
      else { a->logits_dtype = XENT_I64; want_bad = XENT_ERROR_INVALID_DTYPE; }
      break;
    case Bad::kThreads: a->num_threads = -1; want_bad = XENT_ERROR_INVALID_VALUE; break;
    case Bad::kNullInput:
      if (want_lp && in.Bit()) a->target = nullptr;
      else if (in.Bit()) a->logits = nullptr;
      else a->logprob = a->entropy = a->lse = nullptr;
      want_bad = XENT_ERROR_NULL_POINTER;
      break;
    case Bad::kOption:
      switch (in.U8() % 3) {
        case 0: a->temperature = NAN; break;
        case 1: a->softcap = in.Bit() ? -kDenorm : kDenorm; break;
        default: a->reserved0 = -1; break;
      }
      want_bad = XENT_ERROR_INVALID_VALUE;
      break;
    case Bad::kTarget:
      if (want_lp && B > 0) {
        const size_t i = in.Below(B);
        y.Set(i, in.Bit() ? static_cast<int64_t>(V) : -5);
        want_bad = XENT_ERROR_TARGET_OUT_OF_RANGE;
      }
      break;
    case Bad::kAlias:
      if (want_lp && want_lse && B > 0) {
        a->lse = a->logprob;
        want_bad = XENT_ERROR_ALIASING;
      }
      break;
    default: break;
  }
  const Bad bad = want_bad == XENT_OK ? Bad::kNone : c.bad;
  box.Apply(bad, in);
  Watch watch;
  watch.Add("logits", [&] { return x.Snapshot(); });
  watch.Add("target", [&] { return y.Snapshot(); });
  watch.Add("logprob", [&] { return lp.Snapshot(); });
  watch.Add("entropy", [&] { return h.Snapshot(); });
  watch.Add("lse", [&] { return lse.Snapshot(); });
  const xent_status rc = xent_token_logprobs(a);
  if (bad != Bad::kNone) return CheckStatusBad(rc, want_bad, bad, watch);
  if (!CheckStatusValid(rc, c.th)) return;
  watch.ExpectUnchanged("logits", "successful call");
  watch.ExpectUnchanged("target", "successful call");
  if (!want_lp) watch.ExpectUnchanged("logprob", "unrequested output");
  if (!want_h) watch.ExpectUnchanged("entropy", "unrequested output");
  if (!want_lse) watch.ExpectUnchanged("lse", "unrequested output");
  if (!ZFinite(xv, T, softcap)) return;
  const xent_ref::SoftmaxOut sm = xent_ref::Softmax(xv, B, V, T, softcap);
  const std::vector<double> want = xent_ref::TokenLogprobs(xv, yv, B, V, T, softcap, ignore);
  for (size_t i = 0; i < B; ++i) {
    double zmax = 1.0;
    for (size_t j = 0; j < V; ++j) {
      double v = xv[i * V + j];
      if (!std::isfinite(v)) continue;
      if (softcap > 0) v = std::min<double>(std::fabs(v), softcap);
      zmax = std::max(zmax, std::fabs(v / T));
    }
    const double rt = 8e-6 + (softcap > 0 ? 32 : 8) * 1.2e-7 * zmax;
    if (want_lp) CheckOut("logprob", i, 0, lp.Get(i), want[i], 8e-6 * std::fabs(want[i]) + rt, DType::kF32);
    if (want_h) CheckOut("entropy", i, 0, h.Get(i), sm.entropy[i], 8e-6 * std::fabs(sm.entropy[i]) + rt, DType::kF32);
    if (want_lse) CheckOut("lse", i, 0, lse.Get(i), sm.lse[i], 8e-6 * std::fabs(sm.lse[i]) + rt, DType::kF32);
  }
}

// KL divergence / generalized JSD.
void FuzzDivergence(Input& in, Common& c) {
  const size_t V = ChooseV(in), B = ChooseB(in, V);
  const DType t = FloatDType(in.U8());
  const int qk = in.U8() % 3, pk = in.U8() % 3;
  const size_t xs = ChooseStride(in, V), ts = ChooseStride(in, V);
  const bool jsd = in.Bit();
  float beta = Pick(in, {0.5f, 0.0f, 1.0f, 0.1f, 0.9f, kDenorm, 1.0f - 6e-8f});
  if (beta == kDenorm && Skip("jsd_beta")) beta = 0.5f;
  float T = Pick(in, {1.0f, 1.0f, 2.0f, 0.5f, 1e-3f, 100.0f, FLT_MIN});
  const bool t2 = in.Bit();
  // With T^2 scaling, T^2 must be within f32's range (the header: the scale is
  // f32; below 2^-126 it is 0 and an infinite term times it is NaN where
  // float64 keeps inf): the smallest T picked is then 1e-15.
  if (t2 && T < 1e-15f) T = 1e-15f;
  const int reduction = in.U8() % 4;
  const float grad_scale = Pick(in, {1.0f, 1.0f, -1.0f, 0.0f, 1e3f, kDenorm});
  const uint8_t outs = in.U8();
  const bool want_loss = outs & 1, want_row = outs & 2, want_elem = outs & 4, want_gx = outs & 8,
             want_gt = outs & 16, gx_in = want_gx && (outs & 32);
  const DType gxt = gx_in ? t : ((outs & 64) ? DType::kF32 : t), gtt = (outs & 128) ? DType::kF32 : t;
  const size_t gxs = gx_in ? xs : ChooseStride(in, V), gts = ChooseStride(in, V), es = ChooseStride(in, V);
  const uint8_t lab = in.U8();
  const bool use_labels = lab & 1;
  const DType lt = lab & 2 ? DType::kI32 : DType::kI64;
  const size_t ls = (lab >> 2) % 3;
  const int64_t ignore = lab & 32 ? -100 : static_cast<int64_t>(V) + 3;  // an ignore_index need not be a class
  Ctx("divergence B=%zu V=%zu dtype=%d input_kind=%d target_kind=%d strides=%zu,%zu jsd=%d beta=%.9g T=%g t2=%d red=%d "
      "gs=%g outs=%#x gx(dtype=%d stride=%zu inplace=%d) gt(dtype=%d stride=%zu) elem_stride=%zu labels=%d(dtype=%d "
      "stride=%zu ignore=%lld)",
      B, V, static_cast<int>(t), qk, pk, xs, ts, jsd, beta, T, t2, reduction, grad_scale, outs,
      static_cast<int>(gxt), gxs, gx_in, static_cast<int>(gtt), gts, es, use_labels, static_cast<int>(lt), ls,
      static_cast<long long>(ignore));
  const Dist kDist[] = {Dist::kLogits, Dist::kLogProbs, Dist::kProbs};
  Mat x(B, V, Resolve(xs, V), t, ChooseOffset(in), false), tt(B, V, Resolve(ts, V), t, ChooseOffset(in), false);
  Payload tp = c.payload;
  tp.rng = Rng(c.payload.rng.Next());
  xent_ref::KlSpec s;
  s.B = B;
  s.V = V;
  s.x = FillMat(x, B, V, c.payload, kDist[qk], in, true);
  s.t = FillMat(tt, B, V, tp, kDist[pk], in, true);
  Indices labels;
  if (use_labels) {
    labels = Indices(B, ls == 0 ? 1 : ls, lt, ChooseOffset(in));
    for (size_t i = 0; i < B; ++i) {
      const int64_t v = c.payload.rng.Next() % 3 == 0 ? ignore : static_cast<int64_t>(c.payload.rng.Next() % V);
      labels.Set(i, v);
      s.labels.push_back(v);
    }
  }
  Floats loss(1, ChooseFloatOffset(in)), row(B, ChooseFloatOffset(in));
  Mat elem, gx, gtm;
  if (want_elem) elem = Mat(B, V, Resolve(es, V), DType::kF32, ChooseFloatOffset(in), true);
  if (want_gx && !gx_in) gx = Mat(B, V, Resolve(gxs, V), gxt, ChooseOffset(in), true);
  if (want_gt) gtm = Mat(B, V, Resolve(gts, V), gtt, ChooseOffset(in), true);

  ArgsBox<xent_divergence_args> box;
  xent_divergence_args* a = box.args();
  if (XENT_ARGS_INIT(xent_divergence_args, a) != XENT_OK) Fail("args_init failed");
  a->batch = B;
  a->num_classes = V;
  a->input = x.data();
  a->input_stride = xs;
  a->input_dtype = x.dt();
  a->input_kind = qk;
  a->target = tt.data();
  a->target_stride = ts;
  a->target_dtype = tt.dt();
  a->target_kind = pk;
  a->divergence = jsd ? XENT_DIVERGENCE_JSD : XENT_DIVERGENCE_KL;
  a->beta = beta;
  a->temperature = T;
  a->t2_scaling = t2;
  a->reduction = reduction;
  a->grad_scale = grad_scale;
  if (use_labels) {
    a->labels = labels.data();
    a->labels_stride = ls;
    a->labels_dtype = labels.dt();
    a->ignore_index = ignore;
  }
  a->loss = want_loss ? loss.data() : nullptr;
  a->row_loss = want_row ? row.data() : nullptr;
  if (want_elem) {
    a->elem_loss = static_cast<float*>(elem.data());
    a->elem_loss_stride = es;
  }
  if (want_gx) {
    a->grad_input = gx_in ? x.data() : gx.data();
    a->grad_input_stride = gxs;
    a->grad_input_dtype = gx_in ? XENT_DTYPE_AUTO : static_cast<int32_t>(gxt);
  }
  if (want_gt) {
    a->grad_target = gtm.data();
    a->grad_target_stride = gts;
    a->grad_target_dtype = static_cast<int32_t>(gtt);
  }
  a->num_threads = c.th.num_threads;
  a->parallel_for = c.th.fn;
  a->parallel_user = &c.th.pool;
  xent_status want_bad = XENT_OK;
  switch (c.bad) {
    case Bad::kStructSmall: case Bad::kStructTail: want_bad = XENT_ERROR_INVALID_STRUCT; break;
    case Bad::kZeroClasses: a->num_classes = 0; want_bad = XENT_ERROR_INVALID_SHAPE; break;
    case Bad::kShortStride:
      if (V > 1) { a->target_stride = 1 + in.Below(V - 1); want_bad = XENT_ERROR_INVALID_SHAPE; }
      break;
    case Bad::kHugeBatch: a->batch = SIZE_MAX / 5; want_bad = XENT_ERROR_INVALID_SHAPE; break;
    case Bad::kDType: a->target_dtype = t == DType::kF16 ? XENT_BF16 : XENT_F16; want_bad = XENT_ERROR_INVALID_DTYPE; break;
    case Bad::kThreads: a->num_threads = -2; want_bad = XENT_ERROR_INVALID_VALUE; break;
    case Bad::kNullInput:
      if (in.Bit()) a->input = nullptr; else a->target = nullptr;
      want_bad = XENT_ERROR_NULL_POINTER;
      break;
    case Bad::kOption:
      switch (in.U8() % 7) {
        case 0: a->input_kind = 3; want_bad = XENT_ERROR_INVALID_ENUM; break;
        case 1: a->divergence = 2; want_bad = XENT_ERROR_INVALID_ENUM; break;
        case 2: a->beta = 1.0f + 1e-7f; want_bad = XENT_ERROR_INVALID_VALUE; break;
        case 3: a->temperature = in.Bit() ? INFINITY : kDenorm; want_bad = XENT_ERROR_INVALID_VALUE; break;
        case 4: a->t2_scaling = 2; want_bad = XENT_ERROR_INVALID_VALUE; break;
        case 5: a->reduction = -1; want_bad = XENT_ERROR_INVALID_ENUM; break;
        default: a->reserved1 = 1; want_bad = XENT_ERROR_INVALID_VALUE; break;
      }
      break;
    case Bad::kTarget:
      if (use_labels && B > 0) {
        const size_t i = in.Below(B);
        labels.Set(i, static_cast<int64_t>(V));
        want_bad = XENT_ERROR_TARGET_OUT_OF_RANGE;
      }
      break;
    case Bad::kAlias:
      if (want_gt && B > 0) {
        a->grad_target = const_cast<void*>(a->target);  // target is not an allowed in-place input
        a->grad_target_stride = ts;
        a->grad_target_dtype = XENT_DTYPE_AUTO;
        want_bad = XENT_ERROR_ALIASING;
      }
      break;
    default: break;
  }
  const Bad bad = want_bad == XENT_OK ? Bad::kNone : c.bad;
  box.Apply(bad, in);
  Watch watch;
  watch.Add("input", [&] { return x.Snapshot(); });
  watch.Add("target", [&] { return tt.Snapshot(); });
  if (use_labels) watch.Add("labels", [&] { return labels.Snapshot(); });
  watch.Add("loss", [&] { return loss.Snapshot(); });
  watch.Add("row_loss", [&] { return row.Snapshot(); });
  if (elem.valid()) watch.Add("elem_loss", [&] { return elem.Snapshot(); });
  if (gx.valid()) watch.Add("grad_input", [&] { return gx.Snapshot(); });
  if (gtm.valid()) watch.Add("grad_target", [&] { return gtm.Snapshot(); });
  const xent_status rc = xent_divergence(a);
  if (bad != Bad::kNone) return CheckStatusBad(rc, want_bad, bad, watch);
  if (!CheckStatusValid(rc, c.th)) return;
  if (!gx_in) watch.ExpectUnchanged("input", "successful call");
  watch.ExpectUnchanged("target", "successful call");
  watch.ExpectUnchanged("labels", "successful call");
  if (!want_loss) watch.ExpectUnchanged("loss", "unrequested output");
  if (!want_row) watch.ExpectUnchanged("row_loss", "unrequested output");
  if (elem.valid() && !elem.OutsideUnchanged(watch.Before("elem_loss"))) Fail("elem_loss written outside its rows");
  if (gx.valid() && !gx.OutsideUnchanged(watch.Before("grad_input"))) Fail("grad_input written outside its rows");
  if (gx_in && !x.OutsideUnchanged(watch.Before("input"))) Fail("grad_input (in place) written outside its rows");
  if (gtm.valid() && !gtm.OutsideUnchanged(watch.Before("grad_target"))) Fail("grad_target written outside its rows");

  // Domain: logits sides stay finite after / T in f32.
  if ((qk == 0 && !ZFinite(s.x, T, 0)) || (pk == 0 && !ZFinite(s.t, T, 0))) return;
  s.qk = qk;
  s.pk = pk;
  s.jsd = jsd;
  s.beta = beta;
  s.temperature = T;
  s.t2 = t2;
  s.reduction = reduction;
  s.grad_scale = grad_scale;
  s.ignore_index = ignore;
  const xent_ref::KlOut want = xent_ref::Divergence(s);
  if (std::getenv("XENT_FUZZ_DUMP")) {  // debugging aid: the inputs as the library sees them
    for (size_t i = 0; i < B; ++i) {
      std::fprintf(stderr, "row %zu label %lld:\n  input:", i, use_labels ? static_cast<long long>(s.labels[i]) : 0LL);
      for (size_t j = 0; j < V; ++j) std::fprintf(stderr, " %.9g", s.x[i * V + j]);
      std::fprintf(stderr, "\n  target:");
      for (size_t j = 0; j < V; ++j) std::fprintf(stderr, " %.9g", s.t[i * V + j]);
      std::fprintf(stderr, "\n");
    }
  }
  // Tolerances (see tests/kl_test.cc), 4x, with the magnitude of the
  // log-probabilities involved.
  double lmax = 1.0;
  for (size_t k = 0; k < B * V; ++k) {
    for (double v : {s.x[k] / (qk == 0 ? T : 1.0f), s.t[k] / (pk == 0 ? T : 1.0f)})
      if (std::isfinite(v)) lmax = std::max(lmax, std::fabs(v));
    if (qk == 2 && s.x[k] > 0) lmax = std::max(lmax, std::fabs(std::log(s.x[k])));
    if (pk == 2 && s.t[k] > 0) lmax = std::max(lmax, std::fabs(std::log(s.t[k])));
  }
  const double t2f = t2 ? double(T) * T : 1.0;
  const double row_abs = 8e-6 * lmax * t2f * (jsd ? 2 : 1);
  size_t rows = 0;
  for (size_t i = 0; i < B; ++i) rows += (use_labels && s.labels[i] == ignore) ? 0 : 1;
  double div = 1;
  if (reduction == 1) div = double(rows) * V;
  if (reduction == 3) div = double(rows);
  std::vector<bool> nan_row(B, false);
  bool any_nan = false;
  if (Skip("kl_nan")) {
    for (size_t k = 0; k < B * V; ++k)
      if (std::isnan(s.x[k]) || std::isnan(s.t[k])) nan_row[k / V] = any_nan = true;
  }
  // Probabilities below f32's range: exp(log p) (or a softmax term more than
  // ~87 below the row's max) is 0 in f32 (the header flushes it) but not in
  // float64, and where the other side is 0 the element is 0 log 0 = 0 in one
  // and +inf in the other. Such rows are not compared.
  for (size_t i = 0; i < B; ++i) {
    for (int side = 0; side < 2; ++side) {
      const std::vector<double>& v = side ? s.t : s.x;
      const int kind = side ? pk : qk;
      double lo = kInf, hi = -kInf;
      for (size_t j = 0; j < V; ++j) {
        const double e = v[i * V + j];
        if (!std::isfinite(e)) continue;
        if (kind == 1 && e < -87.0) nan_row[i] = any_nan = true;
        if (kind == 2 && e > 0 && e < 1.2e-38) nan_row[i] = any_nan = true;
        lo = std::min(lo, e);
        hi = std::max(hi, e);
      }
      if (kind == 0 && hi - lo > 87.0 * T) nan_row[i] = any_nan = true;
    }
  }
  for (size_t i = 0; i < B; ++i)
    if (want_row && !nan_row[i])
      CheckOut("row_loss", i, 0, row.Get(i), want.row_loss[i], 8e-6 * std::fabs(want.row_loss[i]) + row_abs, DType::kF32);
  if (want_loss && !any_nan) CheckOut("loss", 0, 0, loss.Get(0), want.loss, 8e-6 * std::fabs(want.loss) + row_abs * B / div, DType::kF32);
  const double gabs = std::fabs(grad_scale) * t2f / div;
  for (size_t i = 0; i < B; ++i) {
    for (size_t j = 0; j < V; ++j) {
      const size_t k = i * V + j;
      if (want_elem && !nan_row[i]) CheckOut("elem_loss", i, j, elem.Get(i, j), want.elem[k], 8e-6 * std::fabs(want.elem[k]) + row_abs / 4, DType::kF32);
      auto gtol = [&](double w) { return 16e-6 * std::fabs(w) + 8e-6 * gabs * (jsd ? lmax : 1.0); };
      // An infinite (or NaN) row loss (p > 0 where q = 0): the gradient is not
      // defined by the header (reference: +-inf from inf - p inf, library may
      // give NaN); only the losses are compared.
      if (!std::isfinite(want.row_loss[i]) || nan_row[i]) continue;
      if (want_gx) CheckOut("grad_input", i, j, (gx_in ? x : gx).Get(i, j), want.gx[k], gtol(want.gx[k]), gxt);
      if (want_gt) CheckOut("grad_target", i, j, gtm.Get(i, j), want.gt[k], gtol(want.gt[k]), gtt);
    }
  }
}

// Binary cross-entropy with logits.
void FuzzBce(Input& in, Common& c) {
  const size_t V = ChooseV(in), B = ChooseB(in, V);
  const DType xt = FloatDType(in.U8());
  const DType yt = in.Bit() ? DType::kF32 : xt;
  const size_t xs = ChooseStride(in, V), ys = ChooseStride(in, V);
  const uint8_t wm = in.U8();
  const int wmode = wm % 3;  // 0 none, 1 per class (broadcast), 2 per element
  const size_t wstride = wmode == 2 ? V + wm / 3 % 3 : 0;
  const bool use_pw = wm & 64;
  const int reduction = in.U8() % 4;
  const float grad_scale = Pick(in, {1.0f, 1.0f, -1.0f, 0.0f, 1e3f, kDenorm});
  const uint8_t outs = in.U8();
  const bool want_loss = outs & 1, want_row = outs & 2, want_elem = outs & 4, want_grad = outs & 8,
             inplace = want_grad && (outs & 16);
  const DType gt = inplace ? xt : ((outs & 32) ? DType::kF32 : xt);
  const size_t gs = inplace ? xs : ChooseStride(in, V), es = ChooseStride(in, V);
  Ctx("bce B=%zu V=%zu dtype=%d target_dtype=%d strides=%zu,%zu weight_mode=%d weight_stride=%zu pos_weight=%d red=%d "
      "gs=%g outs=%#x grad(dtype=%d stride=%zu inplace=%d) elem_stride=%zu",
      B, V, static_cast<int>(xt), static_cast<int>(yt), xs, ys, wmode, wstride, use_pw, reduction, grad_scale, outs,
      static_cast<int>(gt), gs, inplace, es);
  Mat x(B, V, Resolve(xs, V), xt, ChooseOffset(in), false), y(B, V, Resolve(ys, V), yt, ChooseOffset(in), false);
  Payload yp = c.payload;
  yp.rng = Rng(c.payload.rng.Next());
  const std::vector<double> xv = FillMat(x, B, V, c.payload, Dist::kLogits, in, true);
  const std::vector<double> yv = FillMat(y, B, V, yp, Dist::kUnit, in, true);
  Floats w, pw;
  std::vector<double> wv, pwv;
  if (wmode == 1) {
    w = Floats(V, ChooseFloatOffset(in));
    for (size_t j = 0; j < V; ++j) w.Set(j, static_cast<float>(3 * c.payload.rng.Uniform()));
    for (size_t i = 0; i < B; ++i)
      for (size_t j = 0; j < V; ++j) wv.push_back(w.Get(j));
  } else if (wmode == 2) {
    w = Floats(B ? (B - 1) * wstride + V : 0, ChooseFloatOffset(in));
    for (size_t k = 0; k < w.size(); ++k) w.Set(k, static_cast<float>(3 * c.payload.rng.Uniform()));
    for (size_t i = 0; i < B; ++i)
      for (size_t j = 0; j < V; ++j) wv.push_back(w.Get(i * wstride + j));
  }
  if (use_pw) {
    pw = Floats(V, ChooseFloatOffset(in));
    for (size_t j = 0; j < V; ++j) {
      const float v = static_cast<float>(c.payload.rng.Next() % 5 == 0 ? 0.0 : 10 * c.payload.rng.Uniform());
      pw.Set(j, v);
      pwv.push_back(v);
    }
  }
  Floats loss(1, ChooseFloatOffset(in)), row(B, ChooseFloatOffset(in));
  Mat elem, g;
  if (want_elem) elem = Mat(B, V, Resolve(es, V), DType::kF32, ChooseFloatOffset(in), true);
  if (want_grad && !inplace) g = Mat(B, V, Resolve(gs, V), gt, ChooseOffset(in), true);

  ArgsBox<xent_bce_args> box;
  xent_bce_args* a = box.args();
  if (XENT_ARGS_INIT(xent_bce_args, a) != XENT_OK) Fail("args_init failed");
  a->batch = B;
  a->num_classes = V;
  a->logits = x.data();
  a->logits_stride = xs;
  a->logits_dtype = x.dt();
  a->target = y.data();
  a->target_stride = ys;
  a->target_dtype = y.dt();
  if (wmode) {
    a->weight = w.data();
    a->weight_stride = wstride;
  }
  a->pos_weight = use_pw ? pw.data() : nullptr;
  a->reduction = reduction;
  a->grad_scale = grad_scale;
  a->loss = want_loss ? loss.data() : nullptr;
  a->row_loss = want_row ? row.data() : nullptr;
  if (want_elem) {
    a->elem_loss = static_cast<float*>(elem.data());
    a->elem_loss_stride = es;
  }
  if (want_grad) {
    a->grad = inplace ? x.data() : g.data();
    a->grad_stride = gs;
    a->grad_dtype = inplace ? XENT_DTYPE_AUTO : static_cast<int32_t>(gt);
  }
  a->num_threads = c.th.num_threads;
  a->parallel_for = c.th.fn;
  a->parallel_user = &c.th.pool;
  xent_status want_bad = XENT_OK;
  switch (c.bad) {
    case Bad::kStructSmall: case Bad::kStructTail: want_bad = XENT_ERROR_INVALID_STRUCT; break;
    case Bad::kZeroClasses: a->num_classes = 0; want_bad = XENT_ERROR_INVALID_SHAPE; break;
    case Bad::kShortStride:
      if (V > 1 && wmode == 2) { a->weight_stride = V - 1; want_bad = XENT_ERROR_INVALID_SHAPE; }
      else if (V > 1) { a->target_stride = V - 1; want_bad = XENT_ERROR_INVALID_SHAPE; }
      break;
    case Bad::kHugeBatch: a->batch = SIZE_MAX / 7; want_bad = XENT_ERROR_INVALID_SHAPE; break;
    case Bad::kDType: a->target_dtype = XENT_I32; want_bad = XENT_ERROR_INVALID_DTYPE; break;
    case Bad::kThreads: a->num_threads = -3; want_bad = XENT_ERROR_INVALID_VALUE; break;
    case Bad::kNullInput:
      if (in.Bit()) a->logits = nullptr; else a->target = nullptr;
      want_bad = XENT_ERROR_NULL_POINTER;
      break;
    case Bad::kOption:
      if (in.Bit()) { a->reduction = 4; want_bad = XENT_ERROR_INVALID_ENUM; }
      else { a->grad_scale = INFINITY; want_bad = XENT_ERROR_INVALID_VALUE; }
      break;
    case Bad::kAlias:
      if (want_elem && B > 0) {
        // elem_loss over the f32 target (not an allowed in-place pair).
        if (yt == DType::kF32) {
          a->elem_loss = static_cast<float*>(y.data());
          a->elem_loss_stride = ys;
          want_bad = XENT_ERROR_ALIASING;
        }
      }
      break;
    default: break;
  }
  const Bad bad = want_bad == XENT_OK ? Bad::kNone : c.bad;
  box.Apply(bad, in);
  Watch watch;
  watch.Add("logits", [&] { return x.Snapshot(); });
  watch.Add("target", [&] { return y.Snapshot(); });
  if (wmode) watch.Add("weight", [&] { return w.Snapshot(); });
  if (use_pw) watch.Add("pos_weight", [&] { return pw.Snapshot(); });
  watch.Add("loss", [&] { return loss.Snapshot(); });
  watch.Add("row_loss", [&] { return row.Snapshot(); });
  if (elem.valid()) watch.Add("elem_loss", [&] { return elem.Snapshot(); });
  if (g.valid()) watch.Add("grad", [&] { return g.Snapshot(); });
  const xent_status rc = xent_bce_with_logits(a);
  if (bad != Bad::kNone) return CheckStatusBad(rc, want_bad, bad, watch);
  if (!CheckStatusValid(rc, c.th)) return;
  if (!inplace) watch.ExpectUnchanged("logits", "successful call");
  watch.ExpectUnchanged("target", "successful call");
  watch.ExpectUnchanged("weight", "successful call");
  watch.ExpectUnchanged("pos_weight", "successful call");
  if (!want_loss) watch.ExpectUnchanged("loss", "unrequested output");
  if (!want_row) watch.ExpectUnchanged("row_loss", "unrequested output");
  if (elem.valid() && !elem.OutsideUnchanged(watch.Before("elem_loss"))) Fail("elem_loss written outside its rows");
  if (g.valid() && !g.OutsideUnchanged(watch.Before("grad"))) Fail("grad written outside its rows");
  if (inplace && !x.OutsideUnchanged(watch.Before("logits"))) Fail("grad (in place) written outside its rows");

  const xent_ref::BceOut want = xent_ref::Bce(xv, yv, B, V, wv, pwv, reduction, grad_scale);
  double div = 1;
  if (reduction == 1) div = double(B) * V;
  if (reduction == 3) div = double(B);
  // Infinite logits: the header defines BCE there as the limit (tested in
  // tests/bce_test.cc); the reference's (1 - y) x + softplus(-x) form gives
  // NaN (-inf + inf): not compared.
  double total_tol = 0;
  bool any_inf = false;
  for (size_t i = 0; i < B; ++i) {
    double row_tol = 0;
    bool row_inf = false;
    for (size_t j = 0; j < V; ++j) {
      const size_t k = i * V + j;
      if (std::isinf(xv[k])) {
        row_inf = any_inf = true;
        continue;
      }
      // An element beyond f32's range is inf in f32 arithmetic (and so its
      // row's and the total sum) where float64 sums it: sums not compared.
      if (std::fabs(want.elem[k]) > 3.4e38) row_inf = any_inf = true;
      const double ww = wv.empty() ? 1.0 : wv[k], pp = pwv.empty() ? 1.0 : pwv[j];
      const double xx = std::isfinite(xv[k]) ? std::fabs(xv[k]) : 0;
      {
        // The library's f32 terms pw y softplus(-x) and (1 - y) softplus(x)
        // (times w): with targets outside [0, 1] they have opposite signs and
        // one can overflow f32 where their float64 sum does not (outside the
        // accuracy contract, as ZFinite for the softmax ops).
        const double yy = yv[k], sp = std::log1p(std::exp(-xx));
        const double t1 = pp * yy * (sp + std::max(-xv[k], 0.0)), t2 = (1 - yy) * (sp + std::max(xv[k], 0.0));
        const double big = std::max(std::fabs(t1), std::fabs(t2)) * std::max(1.0, std::fabs(ww));
        if (!(big < 1e37)) {
          row_inf = any_inf = true;
          continue;
        }
      }
      const double et = 8e-6 * std::fabs(want.elem[k]) + 4e-6 * ww * (1 + pp) * (1 + 1.2e-7 * xx);
      row_tol += std::isfinite(et) ? et : 0;
      if (want_elem) CheckOut("elem_loss", i, j, elem.Get(i, j), want.elem[k], et, DType::kF32);
      if (want_grad) {
        const double gtol = 8e-6 * std::fabs(want.grad[k]) + 4e-6 * ww * (1 + pp) * std::fabs(grad_scale) / div;
        CheckOut("grad", i, j, (inplace ? x : g).Get(i, j), want.grad[k], gtol, gt);
      }
    }
    // A row sum beyond f32's range: the row is summed in f32 (the header's
    // "reductions over rows in f64" are across rows), inf where float64 is not.
    if (std::fabs(want.row_loss[i]) > 3.4e38) row_inf = any_inf = true;
    if (want_row && !row_inf)
      CheckOut("row_loss", i, 0, row.Get(i), want.row_loss[i], 8e-6 * std::fabs(want.row_loss[i]) + row_tol, DType::kF32);
    total_tol += row_tol;
  }
  if (want_loss && !any_inf) CheckOut("loss", 0, 0, loss.Get(0), want.loss, 8e-6 * std::fabs(want.loss) + total_tol / div, DType::kF32);
}

// Everything else in the ABI: statuses, versions, targets, args_init.
void FuzzMisc(Input& in) {
  Ctx("misc");
  int32_t s = static_cast<int32_t>(in.U32());
  if (Skip("status_enum")) s &= 15;  // the enum's value range (0..12 used)
  const char* str = xent_status_string(static_cast<xent_status>(s));
  if (str == nullptr || str[0] == '\0') Fail("xent_status_string(%d) is empty", s);
  if (xent_version_number() != XENT_VERSION_NUMBER || std::strcmp(xent_version_string(), XENT_VERSION_STRING) != 0 ||
      xent_abi_version() != XENT_ABI_VERSION)
    Fail("version mismatch");
  if (xent_threading_backend() == nullptr || xent_max_threads() < 1) Fail("threading info");
  // A target name from the input (not NUL-terminated data: copy).
  char name[24] = {};
  const size_t n = in.U8() % sizeof(name);
  for (size_t i = 0; i + 1 < n; ++i) name[i] = static_cast<char>(in.U8());
  const char* names[64];
  const size_t count = xent_supported_targets(names, 64);
  const size_t cap = in.U8() % 4;
  const char* few[4];
  if (xent_supported_targets(cap ? few : nullptr, cap) != count) Fail("xent_supported_targets count changes");
  bool known = std::strlen(name) == 0 || strcasecmp(name, "auto") == 0;
  for (size_t i = 0; i < count && i < 64; ++i) known = known || strcasecmp(name, names[i]) == 0;
  if (strcasecmp(name, "avx512") == 0)
    for (size_t i = 0; i < count && i < 64; ++i) known = known || std::strcmp(names[i], "avx3") == 0;
  const xent_status rc = xent_force_target(in.Bit() ? nullptr : name);
  if (rc != XENT_OK && rc != XENT_ERROR_UNSUPPORTED_TARGET) Fail("xent_force_target: status %d", rc);
  if (rc == XENT_OK && xent_active_target() == nullptr) Fail("no active target");
  // args_init with arbitrary sizes into a 4 KiB buffer.
  static unsigned char buf[4096 + 64];
  const size_t size = in.U16() % (sizeof(buf) + 1);
  xent_status r;
  switch (in.U8() % 6) {
    case 0: r = xent_cross_entropy_args_init(reinterpret_cast<xent_cross_entropy_args*>(buf), size); break;
    case 1: r = xent_bce_args_init(reinterpret_cast<xent_bce_args*>(buf), size); break;
    case 2: r = xent_divergence_args_init(reinterpret_cast<xent_divergence_args*>(buf), size); break;
    case 3: r = xent_softmax_args_init(reinterpret_cast<xent_softmax_args*>(buf), size); break;
    case 4: r = xent_softmax_backward_args_init(reinterpret_cast<xent_softmax_backward_args*>(buf), size); break;
    default: r = xent_token_logprobs_args_init(nullptr, size); break;
  }
  (void)r;
  (void)known;
  xent_force_target(nullptr);
}

std::vector<std::string> g_targets;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (g_targets.empty()) {
    const char* names[64];
    const size_t n = std::min<size_t>(xent_supported_targets(names, 64), 64);
    for (size_t i = 0; i < n; ++i) g_targets.emplace_back(names[i]);
    if (g_targets.empty()) Fail("no supported targets");
  }
  g_ctx.clear();
  Input in(data, size);
  const uint8_t op = in.U8();
  const uint8_t tsel = in.U8();
  const char* target = tsel == 0 ? nullptr : g_targets[tsel % g_targets.size()].c_str();
  if (xent_force_target(target) != XENT_OK) Fail("xent_force_target(%s) failed", target ? target : "auto");
  Ctx("target=%s ", target ? target : "auto");
  Common c;
  c.bad = ChooseBad(in);
  c.th = ChooseThreading(in);
  c.payload = ChoosePayload(in);
  Ctx("threads=%d pool=%d pieces=%zu bad=%s sigma=%g mean=%g mask=%g | ", c.th.num_threads,
      static_cast<int>(c.th.pool.mode), c.th.pool.pieces, BadName(c.bad), c.payload.sigma, c.payload.mean,
      c.payload.mask);
  switch (op % 7) {
    case 0: FuzzCrossEntropy(in, c); break;
    case 1: FuzzSoftmax(in, c); break;
    case 2: FuzzSoftmaxBackward(in, c); break;
    case 3: FuzzTokenLogprobs(in, c); break;
    case 4: FuzzDivergence(in, c); break;
    case 5: FuzzBce(in, c); break;
    default: FuzzMisc(in); break;
  }
  return 0;
}
