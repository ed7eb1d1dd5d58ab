// The C ABI: argument structs, validation with messages, status codes.
// Everything that crosses the ABI goes through Guard(): no exception escapes.
#include "xent/xent.h"

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cfloat>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "src/dispatch.h"
#include "src/ops.h"
#include "src/parallel.h"

namespace xent {
namespace {

thread_local char tls_error[512];

void SetError(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void SetError(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(tls_error, sizeof(tls_error), fmt, ap);
  va_end(ap);
}

// A failed check: status + message already set.
struct Fail {
  xent_status status;
};

[[noreturn]] void Throw(xent_status s) { throw Fail{s}; }

#define XENT_CHECK(cond, status, ...) \
  do {                                \
    if (!(cond)) {                    \
      SetError(__VA_ARGS__);          \
      Throw(status);                  \
    }                                 \
  } while (0)

template <class F>
xent_status Guard(F&& f) {
  tls_error[0] = '\0';
  try {
    const char* msg = nullptr;
    const xent_status ts = TargetStatus(&msg);
    XENT_CHECK(ts == XENT_OK, ts, "%s", msg);
    const xent_status rc = f();
    if (rc == XENT_ERROR_OUT_OF_MEMORY && tls_error[0] == '\0') SetError("out of memory for scratch");
    if (rc == XENT_ERROR_CALLBACK && tls_error[0] == '\0')
      SetError("parallel_for returned non-zero or did not run every task exactly once");
    return rc;
  } catch (const Fail& e) {
    return e.status;
  } catch (const std::bad_alloc&) {
    SetError("out of memory");
    return XENT_ERROR_OUT_OF_MEMORY;
  } catch (...) {
    SetError("internal error (unexpected exception)");
    return XENT_ERROR_INTERNAL;
  }
}

// ---------------------------------------------------------------------------
// Argument structs versioned by size (Linux copy_struct_from_user rules).
constexpr size_t kMaxStructSize = 4096;

template <class T>
T ReadArgs(const T* user, const char* type) {
  XENT_CHECK(user != nullptr, XENT_ERROR_NULL_POINTER, "args is NULL");
  size_t size;
  std::memcpy(&size, user, sizeof(size));
  XENT_CHECK(size >= sizeof(T), XENT_ERROR_INVALID_STRUCT,
             "args.struct_size = %zu is smaller than sizeof(%s) = %zu (initialize it with %s_init)", size, type,
             sizeof(T), type);
  XENT_CHECK(size <= kMaxStructSize, XENT_ERROR_INVALID_STRUCT,
             "args.struct_size = %zu is implausibly large (uninitialized struct? use %s_init)", size, type);
  const auto* bytes = reinterpret_cast<const unsigned char*>(user);
  for (size_t i = sizeof(T); i < size; ++i) {
    XENT_CHECK(bytes[i] == 0, XENT_ERROR_INVALID_STRUCT,
               "args.struct_size = %zu: byte %zu is set, but this library (xent %s) knows only the first %zu bytes "
               "of %s; a newer field is in use that it does not support",
               size, i, XENT_VERSION_STRING, sizeof(T), type);
  }
  T out;
  std::memcpy(&out, user, sizeof(T));
  return out;
}

template <class T>
xent_status InitArgs(T* args, size_t struct_size, const T& defaults, const char* type) {
  return Guard([&] {
    XENT_CHECK(args != nullptr, XENT_ERROR_NULL_POINTER, "args is NULL");
    XENT_CHECK(struct_size >= sizeof(T) && struct_size <= kMaxStructSize, XENT_ERROR_INVALID_STRUCT,
               "struct_size = %zu is outside [%zu, %zu] for %s", struct_size, sizeof(T), kMaxStructSize, type);
    std::memset(static_cast<void*>(args), 0, struct_size);
    std::memcpy(static_cast<void*>(args), &defaults, sizeof(T));
    args->struct_size = struct_size;
    return XENT_OK;
  });
}

// ---------------------------------------------------------------------------
// Validation helpers.
const char* DTypeName(int32_t d) {
  switch (d) {
    case XENT_DTYPE_AUTO: return "XENT_DTYPE_AUTO";
    case XENT_F32: return "XENT_F32";
    case XENT_BF16: return "XENT_BF16";
    case XENT_F16: return "XENT_F16";
    case XENT_I32: return "XENT_I32";
    case XENT_I64: return "XENT_I64";
    default: return "unknown";
  }
}

struct Extent {
  const char* name;
  uintptr_t begin = 0;
  size_t rows = 0;       // 0 = empty
  size_t row_bytes = 0;  // bytes used per row
  size_t pitch = 0;      // bytes between rows
  bool output = false;
};

// Byte extent of rows x cols elements of `esize` bytes, `stride` elements apart.
Extent MakeExtent(const char* name, const void* p, size_t rows, size_t cols, size_t stride, size_t esize,
                  bool output) {
  Extent e;
  e.name = name;
  e.output = output;
  if (p == nullptr || rows == 0 || cols == 0) return e;
  size_t pitch, last, total, row_bytes;
  const bool ovf = __builtin_mul_overflow(stride, esize, &pitch) || __builtin_mul_overflow(rows - 1, pitch, &last) ||
                   __builtin_mul_overflow(cols, esize, &row_bytes) || __builtin_add_overflow(last, row_bytes, &total);
  uintptr_t end;
  XENT_CHECK(!ovf && !__builtin_add_overflow(reinterpret_cast<uintptr_t>(p), total, &end), XENT_ERROR_INVALID_SHAPE,
             "%s: %zu rows x %zu columns with stride %zu of %zu-byte elements overflows the address space", name,
             rows, cols, stride, esize);
  e.begin = reinterpret_cast<uintptr_t>(p);
  e.rows = rows;
  e.row_bytes = row_bytes;
  e.pitch = pitch;
  return e;
}

bool Overlap(const Extent& a, const Extent& b) {
  if (a.rows == 0 || b.rows == 0) return false;
  const uintptr_t a_end = a.begin + (a.rows - 1) * a.pitch + a.row_bytes;
  const uintptr_t b_end = b.begin + (b.rows - 1) * b.pitch + b.row_bytes;
  if (a_end <= b.begin || b_end <= a.begin) return false;
  // Same pitch: rows interleave; disjoint when, within one pitch, the column
  // ranges do not meet.
  if (a.rows > 1 && b.rows > 1 && a.pitch == b.pitch && a.pitch > 0) {
    const uintptr_t P = a.pitch;
    const uintptr_t lo = a.begin <= b.begin ? a.begin : b.begin;
    const Extent& first = a.begin <= b.begin ? a : b;
    const Extent& second = a.begin <= b.begin ? b : a;
    const uintptr_t delta = (second.begin - lo) % P;
    if (delta >= first.row_bytes && delta + second.row_bytes <= P) return false;
  }
  return true;
}

bool SameMatrix(const Extent& a, const Extent& b) {
  return a.rows > 0 && a.begin == b.begin && a.pitch == b.pitch && a.row_bytes == b.row_bytes;
}

// Every output must be disjoint from every other extent, except an output
// that is exactly an allowed in-place input.
struct AliasCheck {
  std::vector<Extent> items;
  std::vector<std::pair<const char*, const char*>> inplace_ok;  // (output, input) names
  void Add(const Extent& e) { items.push_back(e); }
  void AllowInPlace(const char* out, const char* in) { inplace_ok.emplace_back(out, in); }
  void Run() const {
    for (size_t i = 0; i < items.size(); ++i) {
      for (size_t j = 0; j < items.size(); ++j) {
        if (i == j || !items[i].output || (items[j].output && j < i)) continue;
        const Extent& o = items[i];
        const Extent& x = items[j];
        if (!Overlap(o, x)) continue;
        bool ok = false;
        for (const auto& pr : inplace_ok) {
          if (std::strcmp(pr.first, o.name) == 0 && std::strcmp(pr.second, x.name) == 0 && SameMatrix(o, x)) ok = true;
        }
        XENT_CHECK(ok, XENT_ERROR_ALIASING,
                   "%s overlaps %s (only an exact in-place alias with the same stride and element size is allowed)",
                   o.name, x.name);
      }
    }
  }
};

DType CheckFloatDType(const char* name, int32_t d) {
  XENT_CHECK(d == XENT_F32 || d == XENT_BF16 || d == XENT_F16, XENT_ERROR_INVALID_DTYPE,
             "%s = %d (%s) is not a floating dtype (XENT_F32 = 1, XENT_BF16 = 2, XENT_F16 = 3)", name, d,
             DTypeName(d));
  return static_cast<DType>(d);
}

DType CheckIndexDType(const char* name, int32_t d) {
  XENT_CHECK(d == XENT_I32 || d == XENT_I64, XENT_ERROR_INVALID_DTYPE,
             "%s = %d (%s) is not an index dtype (XENT_I32 = 4, XENT_I64 = 5)", name, d, DTypeName(d));
  return static_cast<DType>(d);
}

// Output dtype: AUTO -> `from`; otherwise F32 or `from`.
DType CheckOutDType(const char* name, int32_t d, DType from) {
  if (d == XENT_DTYPE_AUTO) return from;
  const DType t = CheckFloatDType(name, d);
  XENT_CHECK(t == DType::kF32 || t == from, XENT_ERROR_INVALID_DTYPE,
             "%s = %d (%s): outputs are f32 or the input's dtype (%s)", name, d, DTypeName(d),
             DTypeName(static_cast<int32_t>(from)));
  return t;
}

size_t CheckStride(const char* name, size_t stride, size_t V) {
  if (stride == 0) return V;
  XENT_CHECK(stride >= V, XENT_ERROR_INVALID_SHAPE, "%s (%zu) < num_classes (%zu)", name, stride, V);
  return stride;
}

void CheckShape(size_t B, size_t V) {
  XENT_CHECK(V > 0, XENT_ERROR_INVALID_SHAPE, "num_classes = 0 (need at least 1 class)");
  size_t bv;
  XENT_CHECK(!__builtin_mul_overflow(B, V, &bv) && bv <= (SIZE_MAX >> 4), XENT_ERROR_INVALID_SHAPE,
             "batch (%zu) x num_classes (%zu) overflows size_t", B, V);
}

void CheckRequired(const void* p, const char* name) {
  XENT_CHECK(p != nullptr, XENT_ERROR_NULL_POINTER, "%s is NULL", name);
}

void CheckRequiredIfRows(const void* p, const char* name, size_t B) {
  XENT_CHECK(p != nullptr || B == 0, XENT_ERROR_NULL_POINTER, "%s is NULL", name);
}

void CheckFinite(const char* name, float v) {
  XENT_CHECK(std::isfinite(v), XENT_ERROR_INVALID_VALUE, "%s = %g is not finite", name, static_cast<double>(v));
}
void CheckNonNegative(const char* name, float v) {
  XENT_CHECK(std::isfinite(v) && v >= 0.0f, XENT_ERROR_INVALID_VALUE, "%s = %g must be finite and >= 0", name,
             static_cast<double>(v));
}
void CheckPositive(const char* name, float v) {
  XENT_CHECK(std::isfinite(v) && v > 0.0f, XENT_ERROR_INVALID_VALUE, "%s = %g must be finite and > 0", name,
             static_cast<double>(v));
}
// A divisor (temperature, softcap): the kernels multiply by its reciprocal,
// which must be finite, so denormals are out.
void CheckDivisor(const char* name, float v) {
  CheckPositive(name, v);
  XENT_CHECK(v >= FLT_MIN, XENT_ERROR_INVALID_VALUE, "%s = %g is below FLT_MIN = %g (1/%s overflows f32)", name,
             static_cast<double>(v), static_cast<double>(FLT_MIN), name);
}
void CheckUnit(const char* name, float v) {
  XENT_CHECK(v >= 0.0f && v <= 1.0f, XENT_ERROR_INVALID_VALUE, "%s = %g is outside [0, 1]", name,
             static_cast<double>(v));
}
void CheckZero(const char* name, int32_t v) {
  XENT_CHECK(v == 0, XENT_ERROR_INVALID_VALUE, "%s = %d must be 0", name, v);
}

Reduction CheckReduction(int32_t r, bool allow_batchmean) {
  XENT_CHECK(r >= 0 && r <= (allow_batchmean ? 3 : 2), XENT_ERROR_INVALID_ENUM,
             "reduction = %d is not one of XENT_REDUCTION_NONE (0), MEAN (1), SUM (2)%s", r,
             allow_batchmean ? ", BATCHMEAN (3)" : "");
  return static_cast<Reduction>(r);
}

Exec CheckExec(int32_t num_threads, xent_parallel_for_fn pf, void* user) {
  XENT_CHECK(num_threads >= 0, XENT_ERROR_INVALID_VALUE, "num_threads = %d must be >= 0 (0 = all cores)",
             num_threads);
  Exec e;
  e.num_threads = num_threads;
  e.parallel_for = pf;
  e.parallel_user = user;
  return e;
}

// Class indices: dtype, stride, and every value in [0, V) or ignore_index.
Labels CheckLabels(const char* name, const void* p, int32_t dtype, size_t stride, int64_t ignore_index, size_t B,
                   size_t V, AliasCheck* alias) {
  Labels l;
  l.data = p;
  l.dtype = CheckIndexDType(std::string(name).append("_dtype").c_str(), dtype);
  l.stride = stride == 0 ? 1 : stride;
  l.ignore_index = ignore_index;
  alias->Add(MakeExtent(name, p, B, 1, l.stride, DTypeSize(l.dtype), false));
  for (size_t i = 0; i < B; ++i) {
    const int64_t y = l.At(i);
    XENT_CHECK(y == ignore_index || (y >= 0 && static_cast<uint64_t>(y) < V), XENT_ERROR_TARGET_OUT_OF_RANGE,
               "%s[%zu] = %lld is outside [0, %zu) and is not ignore_index (%lld)", name, i,
               static_cast<long long>(y), V, static_cast<long long>(ignore_index));
  }
  return l;
}

InMat CheckInMat(const char* name, const void* p, int32_t dtype, size_t stride, size_t B, size_t V,
                 AliasCheck* alias) {
  InMat m;
  m.data = p;
  m.dtype = CheckFloatDType(std::string(name).append("_dtype").c_str(), dtype);
  m.stride = CheckStride(std::string(name).append("_stride").c_str(), stride, V);
  alias->Add(MakeExtent(name, p, B, V, m.stride, DTypeSize(m.dtype), false));
  return m;
}

OutMat CheckOutMat(const char* name, void* p, int32_t dtype, size_t stride, DType from, size_t B, size_t V,
                   AliasCheck* alias) {
  OutMat m;
  m.data = p;
  if (p == nullptr) return m;
  m.dtype = CheckOutDType(std::string(name).append("_dtype").c_str(), dtype, from);
  m.stride = CheckStride(std::string(name).append("_stride").c_str(), stride, V);
  alias->Add(MakeExtent(name, p, B, V, m.stride, DTypeSize(m.dtype), true));
  return m;
}

void AddVector(AliasCheck* alias, const char* name, const void* p, size_t n, bool output) {
  alias->Add(MakeExtent(name, p, 1, n, n, sizeof(float), output));
}

}  // namespace
}  // namespace xent

using namespace xent;  // NOLINT

// ---------------------------------------------------------------------------
// Status, version, targets, threading.
extern "C" {

const char* xent_status_string(xent_status status) {
  // A C caller may pass any int: read the bits as int (loading an enum
  // outside its enumerators' range is undefined in C++).
  static_assert(sizeof(status) == sizeof(int), "xent_status is int-sized");
  int v;
  std::memcpy(&v, &status, sizeof v);
  switch (v) {
    case static_cast<int>(XENT_OK): return "ok";
    case static_cast<int>(XENT_ERROR_NULL_POINTER): return "null pointer";
    case static_cast<int>(XENT_ERROR_INVALID_SHAPE): return "invalid shape";
    case static_cast<int>(XENT_ERROR_INVALID_VALUE): return "invalid value";
    case static_cast<int>(XENT_ERROR_TARGET_OUT_OF_RANGE): return "target out of range";
    case static_cast<int>(XENT_ERROR_INVALID_DTYPE): return "invalid dtype";
    case static_cast<int>(XENT_ERROR_INVALID_ENUM): return "invalid enum value";
    case static_cast<int>(XENT_ERROR_INVALID_STRUCT): return "invalid struct size";
    case static_cast<int>(XENT_ERROR_ALIASING): return "overlapping buffers";
    case static_cast<int>(XENT_ERROR_UNSUPPORTED_TARGET): return "unsupported SIMD target";
    case static_cast<int>(XENT_ERROR_OUT_OF_MEMORY): return "out of memory";
    case static_cast<int>(XENT_ERROR_CALLBACK): return "parallel_for callback failed";
    case static_cast<int>(XENT_ERROR_INTERNAL): return "internal error";
  }
  return "unknown status";
}

const char* xent_last_error(void) { return tls_error; }

const char* xent_version_string(void) { return XENT_VERSION_STRING; }
uint32_t xent_version_number(void) { return XENT_VERSION_NUMBER; }
uint32_t xent_abi_version(void) { return XENT_ABI_VERSION; }

const char* xent_threading_backend(void) { return ThreadingBackendName(); }
int32_t xent_max_threads(void) { return MaxThreads(); }

const char* xent_active_target(void) {
  try {
    return ActiveTargetName();
  } catch (...) {
    return "unknown";
  }
}

size_t xent_supported_targets(const char** names, size_t capacity) {
  try {
    return SupportedTargetNames(names, capacity);
  } catch (...) {
    return 0;
  }
}

xent_status xent_force_target(const char* name) {
  tls_error[0] = '\0';
  try {
    const char* msg = "";
    const xent_status rc = ForceTarget(name, &msg);
    if (rc != XENT_OK) SetError("%s", msg);
    return rc;
  } catch (...) {
    SetError("out of memory");
    return XENT_ERROR_OUT_OF_MEMORY;
  }
}

// ---------------------------------------------------------------------------
// Cross-entropy.
xent_status xent_cross_entropy_args_init(xent_cross_entropy_args* args, size_t struct_size) {
  xent_cross_entropy_args d;
  std::memset(&d, 0, sizeof(d));
  d.logits_dtype = XENT_F32;
  d.target_dtype = XENT_I64;
  d.ignore_index = -100;
  d.reduction = XENT_REDUCTION_MEAN;
  d.grad_scale = 1.0f;
  d.grad_dtype = XENT_DTYPE_AUTO;
  return InitArgs(args, struct_size, d, "xent_cross_entropy_args");
}

xent_status xent_cross_entropy(const xent_cross_entropy_args* user) {
  return Guard([&] {
    const auto a = ReadArgs(user, "xent_cross_entropy_args");
    const size_t B = a.batch, V = a.num_classes;
    CheckShape(B, V);
    CheckZero("reserved0", a.reserved0);
    AliasCheck alias;
    CeProblem p;
    p.B = B;
    p.V = V;
    CheckRequired(a.logits, "logits");
    p.logits = CheckInMat("logits", a.logits, a.logits_dtype, a.logits_stride, B, V, &alias);
    CheckRequired(a.target, "target");
    if (a.target_dtype == XENT_I32 || a.target_dtype == XENT_I64) {
      p.soft = false;
      p.target = CheckLabels("target", a.target, a.target_dtype, a.target_stride, a.ignore_index, B, V, &alias);
    } else {
      XENT_CHECK(a.target_dtype == XENT_F32 || a.target_dtype == XENT_BF16 || a.target_dtype == XENT_F16,
                 XENT_ERROR_INVALID_DTYPE,
                 "target_dtype = %d (%s) is neither an index dtype (XENT_I32, XENT_I64) nor a probability dtype "
                 "(XENT_F32, XENT_BF16, XENT_F16)",
                 a.target_dtype, DTypeName(a.target_dtype));
      p.soft = true;
      p.q = CheckInMat("target", a.target, a.target_dtype, a.target_stride, B, V, &alias);
      XENT_CHECK(p.q.dtype == DType::kF32 || p.q.dtype == p.logits.dtype, XENT_ERROR_INVALID_DTYPE,
                 "target_dtype = %d (%s): probability targets are f32 or the logits' dtype (%s)", a.target_dtype,
                 DTypeName(a.target_dtype), DTypeName(a.logits_dtype));
    }
    p.weight = a.weight;
    p.row_scale = a.row_scale;
    AddVector(&alias, "weight", a.weight, V, false);
    AddVector(&alias, "row_scale", a.row_scale, B, false);
    p.reduction = CheckReduction(a.reduction, false);
    CheckUnit("label_smoothing", a.label_smoothing);
    CheckNonNegative("z_loss", a.z_loss);
    CheckNonNegative("softcap", a.softcap);
    if (a.softcap != 0.0f) CheckDivisor("softcap", a.softcap);
    CheckFinite("grad_scale", a.grad_scale);
    p.eps = a.label_smoothing;
    p.z_loss = a.z_loss;
    p.softcap = a.softcap;
    p.grad_scale = a.grad_scale;
    p.loss = a.loss;
    p.row_loss = a.row_loss;
    p.lse = a.lse;
    AddVector(&alias, "loss", a.loss, 1, true);
    AddVector(&alias, "row_loss", a.row_loss, B, true);
    AddVector(&alias, "lse", a.lse, B, true);
    p.grad = CheckOutMat("grad", a.grad, a.grad_dtype, a.grad_stride, p.logits.dtype, B, V, &alias);
    alias.AllowInPlace("grad", "logits");
    alias.Run();
    const Exec exec = CheckExec(a.num_threads, a.parallel_for, a.parallel_user);
    return RunCrossEntropy(p, exec);
  });
}

// ---------------------------------------------------------------------------
// Softmax family.
xent_status xent_softmax_args_init(xent_softmax_args* args, size_t struct_size) {
  xent_softmax_args d;
  std::memset(&d, 0, sizeof(d));
  d.logits_dtype = XENT_F32;
  d.temperature = 1.0f;
  return InitArgs(args, struct_size, d, "xent_softmax_args");
}

xent_status xent_softmax(const xent_softmax_args* user) {
  return Guard([&] {
    const auto a = ReadArgs(user, "xent_softmax_args");
    const size_t B = a.batch, V = a.num_classes;
    CheckShape(B, V);
    CheckZero("reserved0", a.reserved0);
    AliasCheck alias;
    SoftmaxProblem p;
    p.B = B;
    p.V = V;
    CheckRequired(a.logits, "logits");
    p.logits = CheckInMat("logits", a.logits, a.logits_dtype, a.logits_stride, B, V, &alias);
    CheckDivisor("temperature", a.temperature);
    p.temperature = a.temperature;
    XENT_CHECK(a.probs || a.log_probs || a.lse || a.entropy, XENT_ERROR_NULL_POINTER,
               "no output requested: probs, log_probs, lse and entropy are all NULL");
    p.probs = CheckOutMat("probs", a.probs, a.probs_dtype, a.probs_stride, p.logits.dtype, B, V, &alias);
    p.log_probs =
        CheckOutMat("log_probs", a.log_probs, a.log_probs_dtype, a.log_probs_stride, p.logits.dtype, B, V, &alias);
    p.lse = a.lse;
    p.entropy = a.entropy;
    AddVector(&alias, "lse", a.lse, B, true);
    AddVector(&alias, "entropy", a.entropy, B, true);
    alias.AllowInPlace("probs", "logits");
    alias.AllowInPlace("log_probs", "logits");
    alias.Run();
    const Exec exec = CheckExec(a.num_threads, a.parallel_for, a.parallel_user);
    return RunSoftmax(p, exec);
  });
}

xent_status xent_softmax_backward_args_init(xent_softmax_backward_args* args, size_t struct_size) {
  xent_softmax_backward_args d;
  std::memset(&d, 0, sizeof(d));
  d.output_dtype = XENT_F32;
  d.output_kind = XENT_DIST_PROBS;
  d.grad_output_dtype = XENT_F32;
  d.temperature = 1.0f;
  return InitArgs(args, struct_size, d, "xent_softmax_backward_args");
}

xent_status xent_softmax_backward(const xent_softmax_backward_args* user) {
  return Guard([&] {
    const auto a = ReadArgs(user, "xent_softmax_backward_args");
    const size_t B = a.batch, V = a.num_classes;
    CheckShape(B, V);
    AliasCheck alias;
    SoftmaxBackwardProblem p;
    p.B = B;
    p.V = V;
    CheckRequired(a.output, "output");
    CheckRequired(a.grad_output, "grad_output");
    CheckRequired(a.grad_input, "grad_input");
    p.y = CheckInMat("output", a.output, a.output_dtype, a.output_stride, B, V, &alias);
    XENT_CHECK(a.output_kind == XENT_DIST_PROBS || a.output_kind == XENT_DIST_LOG_PROBS, XENT_ERROR_INVALID_ENUM,
               "output_kind = %d is not XENT_DIST_PROBS (2) or XENT_DIST_LOG_PROBS (1)", a.output_kind);
    p.log = a.output_kind == XENT_DIST_LOG_PROBS;
    p.g = CheckInMat("grad_output", a.grad_output, a.grad_output_dtype, a.grad_output_stride, B, V, &alias);
    XENT_CHECK(p.g.dtype == p.y.dtype, XENT_ERROR_INVALID_DTYPE,
               "grad_output_dtype = %d (%s) differs from output_dtype = %d (%s)", a.grad_output_dtype,
               DTypeName(a.grad_output_dtype), a.output_dtype, DTypeName(a.output_dtype));
    CheckDivisor("temperature", a.temperature);
    p.temperature = a.temperature;
    p.gx = CheckOutMat("grad_input", a.grad_input, a.grad_input_dtype, a.grad_input_stride, p.g.dtype, B, V, &alias);
    alias.AllowInPlace("grad_input", "grad_output");
    alias.Run();
    const Exec exec = CheckExec(a.num_threads, a.parallel_for, a.parallel_user);
    return RunSoftmaxBackward(p, exec);
  });
}

xent_status xent_token_logprobs_args_init(xent_token_logprobs_args* args, size_t struct_size) {
  xent_token_logprobs_args d;
  std::memset(&d, 0, sizeof(d));
  d.logits_dtype = XENT_F32;
  d.target_dtype = XENT_I64;
  d.ignore_index = -100;
  d.temperature = 1.0f;
  return InitArgs(args, struct_size, d, "xent_token_logprobs_args");
}

xent_status xent_token_logprobs(const xent_token_logprobs_args* user) {
  return Guard([&] {
    const auto a = ReadArgs(user, "xent_token_logprobs_args");
    const size_t B = a.batch, V = a.num_classes;
    CheckShape(B, V);
    CheckZero("reserved0", a.reserved0);
    AliasCheck alias;
    TokenLogprobsProblem p;
    p.B = B;
    p.V = V;
    CheckRequired(a.logits, "logits");
    p.logits = CheckInMat("logits", a.logits, a.logits_dtype, a.logits_stride, B, V, &alias);
    XENT_CHECK(a.logprob || a.entropy || a.lse, XENT_ERROR_NULL_POINTER,
               "no output requested: logprob, entropy and lse are all NULL");
    if (a.logprob) {
      CheckRequired(a.target, "target");
      p.target = CheckLabels("target", a.target, a.target_dtype, a.target_stride, a.ignore_index, B, V, &alias);
    }
    CheckDivisor("temperature", a.temperature);
    CheckNonNegative("softcap", a.softcap);
    if (a.softcap != 0.0f) CheckDivisor("softcap", a.softcap);
    p.temperature = a.temperature;
    p.softcap = a.softcap;
    p.logprob = a.logprob;
    p.entropy = a.entropy;
    p.lse = a.lse;
    AddVector(&alias, "logprob", a.logprob, B, true);
    AddVector(&alias, "entropy", a.entropy, B, true);
    AddVector(&alias, "lse", a.lse, B, true);
    alias.Run();
    const Exec exec = CheckExec(a.num_threads, a.parallel_for, a.parallel_user);
    return RunTokenLogprobs(p, exec);
  });
}

// ---------------------------------------------------------------------------
// KL divergence / generalized JSD.
xent_status xent_divergence_args_init(xent_divergence_args* args, size_t struct_size) {
  xent_divergence_args d;
  std::memset(&d, 0, sizeof(d));
  d.input_dtype = XENT_F32;
  d.input_kind = XENT_DIST_LOG_PROBS;
  d.target_dtype = XENT_F32;
  d.target_kind = XENT_DIST_PROBS;
  d.divergence = XENT_DIVERGENCE_KL;
  d.beta = 0.5f;
  d.temperature = 1.0f;
  d.reduction = XENT_REDUCTION_MEAN;
  d.grad_scale = 1.0f;
  d.ignore_index = -100;
  d.labels_dtype = XENT_I64;
  return InitArgs(args, struct_size, d, "xent_divergence_args");
}

namespace {
DistKind CheckKind(const char* name, int32_t k) {
  XENT_CHECK(k >= 0 && k <= 2, XENT_ERROR_INVALID_ENUM,
             "%s = %d is not XENT_DIST_LOGITS (0), XENT_DIST_LOG_PROBS (1) or XENT_DIST_PROBS (2)", name, k);
  return static_cast<DistKind>(k);
}
}  // namespace

xent_status xent_divergence(const xent_divergence_args* user) {
  return Guard([&] {
    const auto a = ReadArgs(user, "xent_divergence_args");
    const size_t B = a.batch, V = a.num_classes;
    CheckShape(B, V);
    CheckZero("reserved0", a.reserved0);
    CheckZero("reserved1", a.reserved1);
    AliasCheck alias;
    DivergenceProblem p;
    p.B = B;
    p.V = V;
    CheckRequired(a.input, "input");
    CheckRequired(a.target, "target");
    p.input = CheckInMat("input", a.input, a.input_dtype, a.input_stride, B, V, &alias);
    p.target = CheckInMat("target", a.target, a.target_dtype, a.target_stride, B, V, &alias);
    XENT_CHECK(p.target.dtype == p.input.dtype, XENT_ERROR_INVALID_DTYPE,
               "target_dtype = %d (%s) differs from input_dtype = %d (%s)", a.target_dtype,
               DTypeName(a.target_dtype), a.input_dtype, DTypeName(a.input_dtype));
    p.input_kind = CheckKind("input_kind", a.input_kind);
    p.target_kind = CheckKind("target_kind", a.target_kind);
    XENT_CHECK(a.divergence == XENT_DIVERGENCE_KL || a.divergence == XENT_DIVERGENCE_JSD, XENT_ERROR_INVALID_ENUM,
               "divergence = %d is not XENT_DIVERGENCE_KL (0) or XENT_DIVERGENCE_JSD (1)", a.divergence);
    p.jsd = a.divergence == XENT_DIVERGENCE_JSD;
    CheckUnit("beta", a.beta);
    CheckDivisor("temperature", a.temperature);
    XENT_CHECK(a.t2_scaling == 0 || a.t2_scaling == 1, XENT_ERROR_INVALID_VALUE, "t2_scaling = %d is not 0 or 1",
               a.t2_scaling);
    p.beta = a.beta;
    p.temperature = a.temperature;
    p.t2 = a.t2_scaling != 0;
    p.reduction = CheckReduction(a.reduction, true);
    CheckFinite("grad_scale", a.grad_scale);
    p.grad_scale = a.grad_scale;
    if (a.labels) {
      p.labels = CheckLabels("labels", a.labels, a.labels_dtype, a.labels_stride, a.ignore_index, B, V, &alias);
    }
    p.loss = a.loss;
    p.row_loss = a.row_loss;
    AddVector(&alias, "loss", a.loss, 1, true);
    AddVector(&alias, "row_loss", a.row_loss, B, true);
    p.elem_loss = CheckOutMat("elem_loss", a.elem_loss, XENT_F32, a.elem_loss_stride, DType::kF32, B, V, &alias);
    p.grad_input = CheckOutMat("grad_input", a.grad_input, a.grad_input_dtype, a.grad_input_stride, p.input.dtype,
                               B, V, &alias);
    p.grad_target = CheckOutMat("grad_target", a.grad_target, a.grad_target_dtype, a.grad_target_stride,
                                p.target.dtype, B, V, &alias);
    alias.AllowInPlace("grad_input", "input");
    alias.Run();
    const Exec exec = CheckExec(a.num_threads, a.parallel_for, a.parallel_user);
    return RunDivergence(p, exec);
  });
}

// ---------------------------------------------------------------------------
// Binary cross-entropy with logits.
xent_status xent_bce_args_init(xent_bce_args* args, size_t struct_size) {
  xent_bce_args d;
  std::memset(&d, 0, sizeof(d));
  d.logits_dtype = XENT_F32;
  d.target_dtype = XENT_F32;
  d.reduction = XENT_REDUCTION_MEAN;
  d.grad_scale = 1.0f;
  return InitArgs(args, struct_size, d, "xent_bce_args");
}

xent_status xent_bce_with_logits(const xent_bce_args* user) {
  return Guard([&] {
    const auto a = ReadArgs(user, "xent_bce_args");
    const size_t B = a.batch, V = a.num_classes;
    CheckShape(B, V);
    AliasCheck alias;
    BceProblem p;
    p.B = B;
    p.V = V;
    CheckRequired(a.logits, "logits");
    CheckRequired(a.target, "target");
    p.logits = CheckInMat("logits", a.logits, a.logits_dtype, a.logits_stride, B, V, &alias);
    p.target = CheckInMat("target", a.target, a.target_dtype, a.target_stride, B, V, &alias);
    XENT_CHECK(p.target.dtype == DType::kF32 || p.target.dtype == p.logits.dtype, XENT_ERROR_INVALID_DTYPE,
               "target_dtype = %d (%s): targets are f32 or the logits' dtype (%s)", a.target_dtype,
               DTypeName(a.target_dtype), DTypeName(a.logits_dtype));
    p.weight = a.weight;
    p.weight_stride = a.weight_stride;
    if (a.weight) {
      XENT_CHECK(a.weight_stride == 0 || a.weight_stride >= V, XENT_ERROR_INVALID_SHAPE,
                 "weight_stride (%zu) < num_classes (%zu) (0 broadcasts one row)", a.weight_stride, V);
      alias.Add(MakeExtent("weight", a.weight, a.weight_stride == 0 ? 1 : B, V, a.weight_stride, sizeof(float),
                           false));
    }
    p.pos_weight = a.pos_weight;
    AddVector(&alias, "pos_weight", a.pos_weight, V, false);
    p.reduction = CheckReduction(a.reduction, true);
    CheckFinite("grad_scale", a.grad_scale);
    p.grad_scale = a.grad_scale;
    p.loss = a.loss;
    p.row_loss = a.row_loss;
    AddVector(&alias, "loss", a.loss, 1, true);
    AddVector(&alias, "row_loss", a.row_loss, B, true);
    p.elem_loss = CheckOutMat("elem_loss", a.elem_loss, XENT_F32, a.elem_loss_stride, DType::kF32, B, V, &alias);
    p.grad = CheckOutMat("grad", a.grad, a.grad_dtype, a.grad_stride, p.logits.dtype, B, V, &alias);
    alias.AllowInPlace("grad", "logits");
    alias.Run();
    const Exec exec = CheckExec(a.num_threads, a.parallel_for, a.parallel_user);
    return RunBce(p, exec);
  });
}

}  // extern "C"
