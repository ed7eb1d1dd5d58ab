#include "capi/validate.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "capi/error.h"
#include "src/problem.h"

namespace xent {
namespace {

using abi::DTypeRule;
using abi::Field;
using abi::Len;
using abi::Role;

template <class T>
T Get(const unsigned char* args, uint16_t off) {
  T v;
  std::memcpy(&v, args + off, sizeof(v));
  return v;
}
template <class T>
void Put(void* problem, uint16_t off, const T& v) {
  if (off != abi::kNone) std::memcpy(static_cast<unsigned char*>(problem) + off, &v, sizeof(v));
}

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

bool IsFloat(int32_t d) { return d == XENT_F32 || d == XENT_BF16 || d == XENT_F16; }
bool IsIndex(int32_t d) { return d == XENT_I32 || d == XENT_I64; }

// ---------------------------------------------------------------------------
// Byte extents of buffers, for the overlap check.
struct Extent {
  const char* name = nullptr;
  uintptr_t begin = 0;
  size_t rows = 0;       // 0 = empty
  size_t row_bytes = 0;  // bytes used per row
  size_t pitch = 0;      // bytes between rows
  bool output = false;
  const char* in_place = nullptr;  // outputs: the input they may be exactly
};

// rows x cols elements of `esize` bytes, `stride` elements apart.
Extent MakeExtent(const char* name, const void* p, size_t rows, size_t cols, size_t stride, size_t esize, bool output) {
  Extent e;
  e.name = name;
  e.output = output;
  if (p == nullptr || rows == 0 || cols == 0) return e;
  size_t pitch, last, total, row_bytes;
  const bool ovf = __builtin_mul_overflow(stride, esize, &pitch) || __builtin_mul_overflow(rows - 1, pitch, &last) ||
                   __builtin_mul_overflow(cols, esize, &row_bytes) || __builtin_add_overflow(last, row_bytes, &total);
  uintptr_t end;
  XENT_CHECK(!ovf && !__builtin_add_overflow(reinterpret_cast<uintptr_t>(p), total, &end), XENT_ERROR_INVALID_SHAPE,
             "%s: %zu rows x %zu columns with stride %zu of %zu-byte elements overflows the address space", name, rows,
             cols, stride, esize);
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
    const Extent& first = a.begin <= b.begin ? a : b;
    const Extent& second = a.begin <= b.begin ? b : a;
    const uintptr_t delta = (second.begin - first.begin) % a.pitch;
    if (delta >= first.row_bytes && delta + second.row_bytes <= a.pitch) return false;
  }
  return true;
}

bool SameMatrix(const Extent& a, const Extent& b) {
  return a.rows > 0 && a.begin == b.begin && a.pitch == b.pitch && a.row_bytes == b.row_bytes;
}

// Every output must be disjoint from every other buffer, except an output
// that is exactly its allowed in-place input.
void CheckOverlaps(const std::vector<Extent>& items) {
  for (size_t i = 0; i < items.size(); ++i) {
    for (size_t j = 0; j < items.size(); ++j) {
      if (i == j || !items[i].output || (items[j].output && j < i)) continue;
      const Extent& o = items[i];
      const Extent& x = items[j];
      if (!Overlap(o, x)) continue;
      const bool ok = o.in_place != nullptr && std::strcmp(o.in_place, x.name) == 0 && SameMatrix(o, x);
      XENT_CHECK(ok, XENT_ERROR_ALIASING,
                 "%s overlaps %s (only an exact in-place alias with the same stride and element size is allowed)",
                 o.name, x.name);
    }
  }
}

// ---------------------------------------------------------------------------
// Scalar checks.
void CheckDomain(const char* name, float v, abi::Domain d) {
  const double x = static_cast<double>(v);
  switch (d) {
    case abi::Domain::kAny: return;
    case abi::Domain::kFinite:
      XENT_CHECK(std::isfinite(v), XENT_ERROR_INVALID_VALUE, "%s = %g is not finite", name, x);
      return;
    case abi::Domain::kNonNegative:
      XENT_CHECK(std::isfinite(v) && v >= 0.0f, XENT_ERROR_INVALID_VALUE, "%s = %g must be finite and >= 0", name, x);
      return;
    case abi::Domain::kUnit:
      XENT_CHECK(v >= 0.0f && v <= 1.0f, XENT_ERROR_INVALID_VALUE, "%s = %g is outside [0, 1]", name, x);
      return;
    case abi::Domain::kDivisorOrOff:
      CheckDomain(name, v, abi::Domain::kNonNegative);
      if (v == 0.0f) return;
      CheckDomain(name, v, abi::Domain::kDivisor);
      return;
    case abi::Domain::kDivisor:
      // The kernels multiply by the reciprocal, which must be finite.
      XENT_CHECK(std::isfinite(v) && v > 0.0f, XENT_ERROR_INVALID_VALUE, "%s = %g must be finite and > 0", name, x);
      XENT_CHECK(v >= FLT_MIN, XENT_ERROR_INVALID_VALUE, "%s = %g is below FLT_MIN = %g (1/%s overflows f32)", name, x,
                 static_cast<double>(FLT_MIN), name);
      return;
  }
}

// ---------------------------------------------------------------------------
// One validation: the op, its args, the values resolved so far.
class Validation {
 public:
  Validation(const abi::OpDesc& op, const unsigned char* args, void* problem)
      : op_(op), args_(args), problem_(problem), dtypes_(op.num_fields, DType::kAuto) {
    B_ = Get<size_t>(args, offsetof(xent_cross_entropy_args, batch));
    V_ = Get<size_t>(args, offsetof(xent_cross_entropy_args, num_classes));
  }

  void Run() {
    CheckShape();
    Put(problem_, 0, B_);
    Put(problem_, sizeof(size_t), V_);
    for (size_t i = 0; i < op_.num_fields; ++i) Check(i);
    if (op_.needs_output) CheckSomeOutput();
    CheckOverlaps(extents_);
  }

 private:
  void CheckShape() const {
    XENT_CHECK(V_ > 0, XENT_ERROR_INVALID_SHAPE, "num_classes = 0 (need at least 1 class)");
    XENT_CHECK(!op_.one_class || V_ == 1, XENT_ERROR_INVALID_SHAPE,
               "num_classes = %zu must be 1 for %s (batch counts the values)", V_, op_.name);
    size_t bv;
    XENT_CHECK(!__builtin_mul_overflow(B_, V_, &bv) && bv <= (SIZE_MAX >> 4), XENT_ERROR_INVALID_SHAPE,
               "batch (%zu) x num_classes (%zu) overflows size_t", B_, V_);
  }

  bool Has(const char* name) const {
    for (size_t i = 0; i < op_.num_fields; ++i)
      if (std::strcmp(op_.fields[i].name, name) == 0) return true;
    return false;
  }
  size_t Index(const char* name) const {
    for (size_t i = 0; i < op_.num_fields; ++i)
      if (std::strcmp(op_.fields[i].name, name) == 0) return i;
    SetError("op table of %s has no field %s", op_.name, name);
    Throw(XENT_ERROR_INTERNAL);
  }
  const void* Pointer(const Field& f) const { return Get<const void*>(args_, f.off); }
  int32_t DTypeField(const Field& f) const { return Get<int32_t>(args_, f.dtype_off); }
  std::string Suffixed(const Field& f, const char* suffix) const { return std::string(f.name) + suffix; }

  size_t Len(abi::Len l) const {
    switch (l) {
      case abi::Len::kOne: return 1;
      case abi::Len::kB: return B_;
      case abi::Len::kV: return V_;
      case abi::Len::kH: return H_;
      case abi::Len::kVs: return Vs_;
      case abi::Len::kStats: {  // B x V fits in SIZE_MAX >> 4 (label_smoothing checked before)
        if (Has("with_entropy"))
          return TokShardStatsDoubles(B_, Get<int32_t>(args_, op_.fields[Index("with_entropy")].off) != 0);
        if (!Has("label_smoothing")) return KlShardStatsDoubles(B_);
        const float eps = Get<float>(args_, op_.fields[Index("label_smoothing")].off);
        return CeShardStatsDoubles(B_, eps);
      }
      case abi::Len::kBK:
      case abi::Len::kPStats: break;  // vector fields only: Len(const Field&)
    }
    return 0;
  }
  static const char* LenName(abi::Len l) {
    switch (l) {
      case abi::Len::kH: return "hidden_size";
      case abi::Len::kB: return "batch";
      case abi::Len::kVs: return "shard_classes";
      default: return "num_classes";
    }
  }

  // Elements of a vector field (B x k for Len::kBK, k the count field `from`).
  size_t Len(const Field& f) const {
    switch (f.len) {
      case abi::Len::kBK: {
        const int32_t k = Get<int32_t>(args_, op_.fields[Index(f.from)].off);
        size_t n;
        XENT_CHECK(!__builtin_mul_overflow(B_, static_cast<size_t>(k < 0 ? 0 : k), &n), XENT_ERROR_INVALID_SHAPE,
                   "%s: batch (%zu) x %s (%d) overflows size_t", f.name, B_, f.from, k);
        return n;
      }
      case abi::Len::kPStats: {
        const size_t P = Get<size_t>(args_, op_.fields[Index(f.from)].off);
        size_t n;
        XENT_CHECK(!__builtin_mul_overflow(P, Len(abi::Len::kStats), &n) && n <= (SIZE_MAX >> 4),
                   XENT_ERROR_INVALID_SHAPE, "%s: %s (%zu) x %zu doubles per rank overflows size_t", f.name, f.from, P,
                   Len(abi::Len::kStats));
        return n;
      }
      default: return Len(f.len);
    }
  }

  // Whether any / every field named in "a|b" is given (a non-NULL pointer).
  bool Given(const char* name) const { return Pointer(op_.fields[Index(name)]) != nullptr; }
  template <class F>
  void ForEachName(const char* names, F&& fn) const {
    std::string all(names);
    size_t b = 0;
    while (b <= all.size()) {
      const size_t e = std::min(all.find('|', b), all.size());
      fn(all.substr(b, e - b).c_str());
      b = e + 1;
    }
  }
  bool AnyGiven(const char* names) const {
    bool any = false;
    ForEachName(names, [&](const char* n) { any = any || Given(n); });
    return any;
  }
  // A given field that needs others: each of them must be given too.
  void CheckNeeds(const Field& f) const {
    if (f.needs == nullptr || Pointer(f) == nullptr) return;
    ForEachName(f.needs, [&](const char* n) {
      XENT_CHECK(Given(n), XENT_ERROR_NULL_POINTER, "%s is NULL, but %s needs it", n, f.name);
    });
  }

  // A matrix's row stride (its columns when it has no stride field).
  size_t Stride(const Field& f) const {
    const size_t cols = Len(f.cols);
    const size_t s = f.stride_off == abi::kNone ? 0 : Get<size_t>(args_, f.stride_off);
    if (s == 0) return cols;
    XENT_CHECK(s >= cols, XENT_ERROR_INVALID_SHAPE, "%s (%zu) < %s (%zu)", Suffixed(f, "_stride").c_str(), s,
               LenName(f.cols), cols);
    return s;
  }

  DType FloatDType(const Field& f, int32_t d) const {
    XENT_CHECK(IsFloat(d), XENT_ERROR_INVALID_DTYPE,
               "%s = %d (%s) is not a floating dtype (XENT_F32 = 1, XENT_BF16 = 2, XENT_F16 = 3)",
               Suffixed(f, "_dtype").c_str(), d, DTypeName(d));
    return static_cast<DType>(d);
  }

  // An input matrix's dtype under its rule.
  DType InputDType(const Field& f, int32_t d) const {
    const DType t = FloatDType(f, d);
    if (f.rule == DTypeRule::kFloat) return t;
    const size_t k = Index(f.from);
    const DType from = dtypes_[k];
    const int32_t fd = static_cast<int32_t>(from);
    if (f.rule == DTypeRule::kSameAsFrom) {
      XENT_CHECK(t == from, XENT_ERROR_INVALID_DTYPE, "%s = %d (%s) differs from %s = %d (%s)",
                 Suffixed(f, "_dtype").c_str(), d, DTypeName(d), Suffixed(op_.fields[k], "_dtype").c_str(), fd,
                 DTypeName(fd));
    } else {
      XENT_CHECK(t == DType::kF32 || t == from, XENT_ERROR_INVALID_DTYPE,
                 "%s = %d (%s): %s must be f32 or the dtype of %s (%s)", Suffixed(f, "_dtype").c_str(), d, DTypeName(d),
                 f.name, f.from, DTypeName(fd));
    }
    return t;
  }

  void AddExtent(const Field& f, const void* p, size_t rows, size_t cols, size_t stride, size_t esize, bool out) {
    Extent e = MakeExtent(f.name, p, rows, cols, stride, esize, out);
    e.in_place = f.in_place;
    extents_.push_back(e);
  }

  InMat ReadInMat(const Field& f, size_t i) {
    InMat m;
    m.data = Pointer(f);
    m.dtype = InputDType(f, DTypeField(f));
    m.stride = Stride(f);
    dtypes_[i] = m.dtype;
    AddExtent(f, m.data, Len(f.rows), Len(f.cols), m.stride, DTypeSize(m.dtype), false);
    return m;
  }

  Labels ReadLabels(const Field& f, int32_t d) {
    Labels l;
    l.data = Pointer(f);
    XENT_CHECK(IsIndex(d), XENT_ERROR_INVALID_DTYPE, "%s = %d (%s) is not an index dtype (XENT_I32 = 4, XENT_I64 = 5)",
               Suffixed(f, "_dtype").c_str(), d, DTypeName(d));
    l.dtype = static_cast<DType>(d);
    const size_t s = Get<size_t>(args_, f.stride_off);
    l.stride = s == 0 ? 1 : s;
    l.ignore_index = Get<int64_t>(args_, f.aux_off);
    AddExtent(f, l.data, B_, 1, l.stride, DTypeSize(l.dtype), false);
    for (size_t i = 0; i < B_; ++i) {
      const int64_t y = l.At(i);
      XENT_CHECK(y == l.ignore_index || (y >= 0 && static_cast<uint64_t>(y) < V_), XENT_ERROR_TARGET_OUT_OF_RANGE,
                 "%s[%zu] = %lld is outside [0, %zu) and is not ignore_index (%lld)", f.name, i,
                 static_cast<long long>(y), V_, static_cast<long long>(l.ignore_index));
    }
    return l;
  }

  void Required(const Field& f) const {
    XENT_CHECK(Pointer(f) != nullptr, XENT_ERROR_NULL_POINTER, "%s is NULL", f.name);
  }

  void Check(size_t i) {
    const Field& f = op_.fields[i];
    CheckNeeds(f);
    switch (f.role) {
      case Role::kInMat:
        if (f.required) Required(f);
        if (!f.required && Pointer(f) == nullptr) return;  // optional and absent: not read
        Put(problem_, f.prob, ReadInMat(f, i));
        return;
      case Role::kOutMat: {
        if (f.required) Required(f);
        OutMat m;
        m.data = Get<void*>(args_, f.off);
        if (m.data == nullptr) return;
        if (f.rule == DTypeRule::kF32) {
          m.dtype = DType::kF32;
        } else {
          const int32_t d = DTypeField(f);
          const DType from = dtypes_[Index(f.from)];
          if (d == XENT_DTYPE_AUTO) {
            m.dtype = from;
          } else {
            m.dtype = FloatDType(f, d);
            XENT_CHECK(m.dtype == DType::kF32 || m.dtype == from, XENT_ERROR_INVALID_DTYPE,
                       "%s = %d (%s): outputs are f32 or the input's dtype (%s)", Suffixed(f, "_dtype").c_str(), d,
                       DTypeName(d), DTypeName(static_cast<int32_t>(from)));
          }
        }
        m.stride = Stride(f);
        dtypes_[i] = m.dtype;
        AddExtent(f, m.data, Len(f.rows), Len(f.cols), m.stride, DTypeSize(m.dtype), true);
        Put(problem_, f.prob, m);
        return;
      }
      case Role::kClassTarget: {
        Required(f);
        ClassTarget t;
        const int32_t d = DTypeField(f);
        if (IsIndex(d)) {
          t.labels = ReadLabels(f, d);
        } else {
          XENT_CHECK(IsFloat(d), XENT_ERROR_INVALID_DTYPE,
                     "%s = %d (%s) is neither an index dtype (XENT_I32, XENT_I64) nor a probability dtype "
                     "(XENT_F32, XENT_BF16, XENT_F16)",
                     Suffixed(f, "_dtype").c_str(), d, DTypeName(d));
          t.soft = true;
          t.probs = ReadInMat(f, i);
        }
        Put(problem_, f.prob, t);
        return;
      }
      case Role::kLabels:
        if (f.required) Required(f);
        if (f.needed_by != nullptr) {
          if (!AnyGiven(f.needed_by)) return;  // not read at all
          std::string by(f.needed_by);
          std::replace(by.begin(), by.end(), '|', '/');
          XENT_CHECK(Pointer(f) != nullptr, XENT_ERROR_NULL_POINTER, "%s is NULL (needed by %s)", f.name, by.c_str());
        }
        if (Pointer(f) == nullptr) return;
        Put(problem_, f.prob, ReadLabels(f, DTypeField(f)));
        return;
      case Role::kRowWeights: {
        RowWeights w;
        w.data = Get<const float*>(args_, f.off);
        if (w.data == nullptr) return;
        w.stride = Get<size_t>(args_, f.stride_off);
        XENT_CHECK(w.stride == 0 || w.stride >= V_, XENT_ERROR_INVALID_SHAPE,
                   "%s (%zu) < num_classes (%zu) (0 broadcasts one row)", Suffixed(f, "_stride").c_str(), w.stride, V_);
        AddExtent(f, w.data, w.stride == 0 ? 1 : B_, V_, w.stride, sizeof(float), false);
        Put(problem_, f.prob, w);
        return;
      }
      case Role::kInVec:
      case Role::kOutVec:
      case Role::kOutIdxVec: {
        if (f.required) Required(f);
        const size_t n = Len(f);
        const size_t es = f.role == Role::kOutIdxVec ? sizeof(int64_t) : sizeof(float);
        AddExtent(f, Pointer(f), 1, n, n, es, f.role != Role::kInVec);
        Put(problem_, f.prob, Pointer(f));
        return;
      }
      case Role::kInIdxVec: {
        const size_t n = Len(f);
        const auto* v = static_cast<const int64_t*>(Pointer(f));
        AddExtent(f, v, 1, n, n, sizeof(int64_t), false);
        if (v != nullptr) {
          const size_t k = B_ ? n / B_ : 0;
          for (size_t i = 0; i < n; ++i) {
            int64_t y;
            std::memcpy(&y, v + i, sizeof(y));  // (any alignment)
            XENT_CHECK(y >= 0 && static_cast<uint64_t>(y) < V_, XENT_ERROR_TARGET_OUT_OF_RANGE,
                       "%s[%zu] (row %zu, column %zu) = %lld is outside [0, %zu)", f.name, i, i / k, i % k,
                       static_cast<long long>(y), V_);
          }
        }
        Put(problem_, f.prob, v);
        return;
      }
      case Role::kCount: {
        const int32_t v = Get<int32_t>(args_, f.off);
        XENT_CHECK(v >= 0 && static_cast<uint32_t>(v) <= f.valid, XENT_ERROR_INVALID_VALUE,
                   "%s = %d is outside [0, %u]", f.name, v, f.valid);
        XENT_CHECK(!f.le_v || static_cast<size_t>(v) <= V_, XENT_ERROR_INVALID_VALUE,
                   "%s = %d exceeds num_classes (%zu)", f.name, v, V_);
        Put(problem_, f.prob, v);
        return;
      }
      case Role::kF32: {
        const float v = Get<float>(args_, f.off);
        CheckDomain(f.name, v, f.domain);
        Put(problem_, f.prob, v);
        return;
      }
      case Role::kEnum: {
        const int32_t v = Get<int32_t>(args_, f.off);
        XENT_CHECK(v >= 0 && v < 32 && ((f.valid >> v) & 1u), XENT_ERROR_INVALID_ENUM, "%s = %d is not %s", f.name, v,
                   f.valid_text);
        Put(problem_, f.prob, v);
        return;
      }
      case Role::kFlag: {
        const int32_t v = Get<int32_t>(args_, f.off);
        XENT_CHECK(v == 0 || v == 1, XENT_ERROR_INVALID_VALUE, "%s = %d is not 0 or 1", f.name, v);
        Put(problem_, f.prob, v != 0);
        return;
      }
      case Role::kI64: return;  // read by the labels that use it
      case Role::kReserved: {
        const int32_t v = Get<int32_t>(args_, f.off);
        XENT_CHECK(v == 0, XENT_ERROR_INVALID_VALUE, "%s = %d must be 0", f.name, v);
        return;
      }
      case Role::kNumThreads: {
        const int32_t v = Get<int32_t>(args_, f.off);
        XENT_CHECK(v >= 0, XENT_ERROR_INVALID_VALUE, "%s = %d must be >= 0 (0 = all cores)", f.name, v);
        Put(problem_, f.prob, v);
        return;
      }
      case Role::kParallelFor: Put(problem_, f.prob, Get<xent_parallel_for_fn>(args_, f.off)); return;
      case Role::kParallelUser: Put(problem_, f.prob, Get<void*>(args_, f.off)); return;
      case Role::kHiddenSize: {
        H_ = Get<size_t>(args_, f.off);
        XENT_CHECK(H_ > 0, XENT_ERROR_INVALID_SHAPE, "%s = 0 (need at least 1)", f.name);
        size_t n;
        XENT_CHECK(!__builtin_mul_overflow(std::max(B_, V_), H_, &n) && n <= (SIZE_MAX >> 4), XENT_ERROR_INVALID_SHAPE,
                   "max(batch (%zu), num_classes (%zu)) x %s (%zu) overflows size_t", B_, V_, f.name, H_);
        Put(problem_, f.prob, H_);
        return;
      }
      case Role::kSize: Put(problem_, f.prob, Get<size_t>(args_, f.off)); return;
      case Role::kShardClasses:
        Vs_ = Get<size_t>(args_, f.off);
        XENT_CHECK(Vs_ > 0 && Vs_ <= V_, XENT_ERROR_INVALID_SHAPE, "%s = %zu is outside [1, num_classes = %zu]", f.name,
                   Vs_, V_);
        Put(problem_, f.prob, Vs_);
        return;
      case Role::kShardCount: {
        const size_t v = Get<size_t>(args_, f.off);
        XENT_CHECK(v > 0, XENT_ERROR_INVALID_SHAPE, "%s = 0 (need at least 1)", f.name);
        Put(problem_, f.prob, v);
        return;
      }
      case Role::kOutF64Vec:
      case Role::kInF64Vec:
        if (f.required) Required(f);
        AddExtent(f, Pointer(f), 1, Len(f), Len(f), sizeof(double), f.role == Role::kOutF64Vec);
        Put(problem_, f.prob, Pointer(f));
        return;
    }
  }

  static bool IsOutput(const Field& f) {
    return f.role == Role::kOutMat || f.role == Role::kOutVec || f.role == Role::kOutIdxVec ||
           f.role == Role::kOutF64Vec;
  }

  // "no output requested: a, b and c are all NULL".
  void CheckSomeOutput() const {
    std::string names;
    size_t n = 0, count = 0;
    for (size_t i = 0; i < op_.num_fields; ++i) {
      const Field& f = op_.fields[i];
      if (!IsOutput(f)) continue;
      if (Pointer(f) != nullptr) return;
      ++count;
    }
    for (size_t i = 0; i < op_.num_fields; ++i) {
      const Field& f = op_.fields[i];
      if (!IsOutput(f)) continue;
      ++n;
      if (n > 1) names += n == count ? " and " : ", ";
      names += f.name;
    }
    XENT_CHECK(false, XENT_ERROR_NULL_POINTER, "no output requested: %s are all NULL", names.c_str());
  }

  const abi::OpDesc& op_;
  const unsigned char* args_;
  void* problem_;
  size_t B_ = 0, V_ = 0, H_ = 0, Vs_ = 0;
  std::vector<DType> dtypes_;  // resolved dtype of each matrix field
  std::vector<Extent> extents_;
};

}  // namespace

void Validate(const abi::OpDesc& op, const unsigned char* args, void* problem) { Validation(op, args, problem).Run(); }

}  // namespace xent
