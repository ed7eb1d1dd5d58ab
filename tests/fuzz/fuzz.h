// The fuzz harness' machinery, shared by the per-operation decoders
// (fuzz_<op>.cc): reading the input, the choices every operation makes
// (shape, strides, offsets, payloads, threading, one invalid argument), and
// running a case with every check (tests/common does the buffers, the args
// struct through the operation table, the invariants and the reference).
//
// Input format: see fuzz_main.cc. Each decoder reads its bytes in a fixed
// order; the corpus (tests/fuzz/corpus) depends on it, so an existing
// decoder's order of reads must not change.
#ifndef XENT_TESTS_FUZZ_FUZZ_H_
#define XENT_TESTS_FUZZ_FUZZ_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "tests/common/case.h"
#include "tests/common/pool.h"

namespace xent_fuzz {

using namespace xent_test;  // NOLINT

constexpr float kDenorm = 1e-40f;

class Input {
 public:
  Input(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  uint8_t U8() { return pos_ < n_ ? d_[pos_++] : 0; }
  uint16_t U16() { return static_cast<uint16_t>(U8() | (U8() << 8)); }
  uint32_t U32() { return static_cast<uint32_t>(U16()) | (static_cast<uint32_t>(U16()) << 16); }
  bool Bit() { return U8() & 1; }
  // Uniform-ish in [0, n).
  size_t Below(size_t n) { return n == 0 ? 0 : U16() % n; }

 private:
  const uint8_t* d_;
  size_t n_, pos_ = 0;
};

// The edge-biased flavor (byte 0 >= 128): shapes at chunk and segment edges,
// whole rows of -inf, NaN or huge values.
extern bool g_edge;

// Failure reporting: the current call's description, then abort (libFuzzer
// keeps the input).
[[noreturn]] void Fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void Ctx(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ---------------------------------------------------------------------------
// Choices.
inline DType FloatDType(uint8_t b) { return static_cast<DType>(1 + b % 3); }
size_t ChooseV(Input& in);
size_t ChooseB(Input& in, size_t V);
// The first choices of every operation: V, B and its first matrix's dtype.
struct Head {
  size_t V, B;
  DType t;
};
Head ReadHead(Input& in);
size_t ChooseStride(Input& in, size_t V);  // 0 (packed) or V + k
inline size_t Resolve(size_t stride, size_t V) { return stride == 0 ? V : stride; }
size_t ChooseOffset(Input& in);  // byte misalignment of a void* buffer
// float* arguments are C pointers to float: 4-byte aligned (a misaligned
// float* is undefined behavior in the caller already), 16-byte at most.
inline size_t ChooseFloatOffset(Input& in) { return ChooseOffset(in) & ~size_t{3}; }
// An option value: `palette` lists the valid choices.
float Pick(Input& in, std::initializer_list<float> palette);

// Payloads: pseudo-random values seeded from the input, with special values
// (NaN, +-inf, huge, denormal, raw bit patterns) placed where it says.
enum class Dist { kLogits, kProbs, kLogProbs, kUnit, kSigned };
struct Payload {
  Rng rng{1};
  double sigma = 3, mean = 0;
  double mask = 0;  // probability of an exact zero (probs) / -inf (log-probs)
};
Payload ChoosePayload(Input& in);
double Draw(Payload& p, Dist d);

struct Specials {
  struct One {
    size_t i, j;
    bool raw;
    uint32_t bits;
    double v;
  };
  std::vector<One> at;
  int row = -1;  // edge flavor: a whole row of one pattern
  int pattern = 0;
};
// Reads where specials go (before the values are drawn: the reads depend on
// B, V and the input only).
Specials ReadSpecials(Input& in, size_t B, size_t V, Dist d, bool specials = true);
// Draws every element from the payload, then places the specials.
void FillMat(Buffer* b, Payload& p, Dist d, const Specials& sp);

// Buffer fields of the case spec from the decoded choices.
void MatrixField(CaseSpec& s, const char* field, DType t, size_t stride_arg, size_t offset);
void IndexField(CaseSpec& s, const char* field, DType t, size_t stride_arg, size_t offset);
void VectorField(CaseSpec& s, const char* field, bool present, size_t offset);

// ---------------------------------------------------------------------------
// Deliberately invalid arguments: at most one per call.
enum class Bad {
  kNone,
  kStructSmall,  // struct_size < sizeof: INVALID_STRUCT
  kStructTail,   // larger struct with a non-zero unknown byte: INVALID_STRUCT
  kZeroClasses,  // num_classes = 0: INVALID_SHAPE
  kShortStride,  // an input stride in (0, V): INVALID_SHAPE
  kHugeBatch,    // batch x num_classes overflows: INVALID_SHAPE
  kDType,        // unknown dtype of an input: INVALID_DTYPE
  kThreads,      // num_threads < 0: INVALID_VALUE
  kNullInput,    // required input NULL: NULL_POINTER
  kOption,       // an option outside its domain: INVALID_VALUE / INVALID_ENUM
  kTarget,       // class index out of range: TARGET_OUT_OF_RANGE
  kAlias,        // an output overlapping an input: ALIASING
  kCount
};
Bad ChooseBad(Input& in);
const char* BadName(Bad b);

struct Threading {
  int32_t num_threads = 0;
  bool use_pool = false;
  HostPool pool;
};
Threading ChooseThreading(Input& in);

struct Common {
  Bad bad = Bad::kNone;
  Threading th;
  Payload payload;
};

// B and V of the args struct (every args struct begins with struct_size,
// batch, num_classes).
void SetBatch(Case& c, size_t B);
void SetClasses(Case& c, size_t V);

// A spec for the decoders: exact-size buffers, no fill, the input's threading.
CaseSpec NewSpec(const xent::abi::OpDesc& op, size_t B, size_t V, Common& c);

// The invalid arguments every operation has, as each operation's decoder
// reads them (the corpus depends on these reads).
struct BadPlan {
  const char* stride_field;   // kShortStride: this field's stride ...
  bool stride_random;         // ... 1 + Below(V - 1) (else V - 1)
  size_t huge_batch;          // kHugeBatch: this batch ...
  bool huge_batch_plus_byte;  // ... + U8()
  int32_t threads;            // kThreads: this num_threads ...
  bool threads_minus_byte;    // ... - U8()
};
// An output placed over another buffer (an ALIASING case): its pointer,
// stride field and (unless -1) dtype field.
void Alias(Case& cs, const char* output, const void* p, size_t stride, int32_t dtype = -1);

// Applies c.bad: the kinds every operation has (and kStructSmall /
// kStructTail) as `plan` says, else the operation's own (`own` applies them
// and returns the status they must give, XENT_OK when none applies); then
// RunChecked.
void RunWithBad(Case& cs, Common& c, Input& in, const BadPlan& plan, const std::function<xent_status()>& own);

// Every check of one call: the struct-size mutation (reads the input), the
// call on the chosen target and on a second one, the status (the invalid
// argument's, or XENT_OK / XENT_ERROR_CALLBACK as the host pool behaved), the
// invariants, and the float64 reference (on a sample of the inputs).
void RunChecked(Case& c, Common& common, xent_status want_bad, Input& in);

// The operations (fuzz_<op>.cc).
void FuzzCrossEntropy(Input& in, Common& c);
void FuzzSoftmax(Input& in, Common& c);
void FuzzSoftmaxBackward(Input& in, Common& c);
void FuzzTokenLogprobs(Input& in, Common& c);
void FuzzDivergence(Input& in, Common& c);
void FuzzBce(Input& in, Common& c);

}  // namespace xent_fuzz

#endif  // XENT_TESTS_FUZZ_FUZZ_H_
