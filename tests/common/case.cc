#include "tests/common/case.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace xent_test {

using abi::Field;
using abi::Role;

const Field& FieldOf(const abi::OpDesc& op, const std::string& name) {
  for (size_t i = 0; i < op.num_fields; ++i)
    if (name == op.fields[i].name) return op.fields[i];
  std::fprintf(stderr, "tests/common: the op table of %s has no field \"%s\"\n", op.name, name.c_str());
  std::abort();
}

namespace {

bool IsBufferRole(Role r) {
  switch (r) {
    case Role::kInMat:
    case Role::kOutMat:
    case Role::kClassTarget:
    case Role::kLabels:
    case Role::kRowWeights:
    case Role::kInVec:
    case Role::kOutVec: return true;
    default: return false;
  }
}
bool IsOutput(Role r) { return r == Role::kOutMat || r == Role::kOutVec; }

const char* DTypeText(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    default: return "auto";
  }
}

template <class T>
T Load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <class T>
void Store(unsigned char* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

}  // namespace

// ---------------------------------------------------------------------------
// An operation on per-row values (one_class: kl_penalty) has one class
// whatever the caller's shape says.
CaseSpec::CaseSpec(const abi::OpDesc& o, size_t b, size_t v) : op(&o), B(b), V(o.one_class ? 1 : v) {}

FieldSpec& CaseSpec::operator[](const char* field) {
  FieldOf(*op, field);  // the name must exist
  return fields[field];
}
CaseSpec& CaseSpec::With(const char* field, DType dtype) {
  FieldSpec& f = (*this)[field];
  f.present = 1;
  if (dtype != DType::kAuto) f.dtype = dtype;
  return *this;
}
CaseSpec& CaseSpec::Stride(const char* field, size_t stride, bool pass_zero) {
  (*this)[field].stride = static_cast<int64_t>(stride);
  (*this)[field].pass_zero = pass_zero;
  return *this;
}
CaseSpec& CaseSpec::View(const char* field, void* data, const Layout& layout) {
  views[field] = {data, layout};
  return With(field);
}
CaseSpec& CaseSpec::Without(const char* field) {
  (*this)[field].present = 0;
  return *this;
}
CaseSpec& CaseSpec::InPlace(const char* output) {
  (*this)[output].in_place = true;
  return With(output);
}
CaseSpec& CaseSpec::Broadcast(const char* field) {
  (*this)[field].broadcast = true;
  return With(field);
}
CaseSpec& CaseSpec::Offset(const char* field, size_t bytes) {
  (*this)[field].offset = static_cast<int64_t>(bytes);
  return *this;
}
CaseSpec& CaseSpec::Set(const char* field, double value) {
  (*this)[field].value = value;
  (*this)[field].has_value = true;
  return *this;
}

// ---------------------------------------------------------------------------
namespace {

// The names of a "a|b|c" list.
std::vector<std::string> Names(const char* list) {
  std::vector<std::string> out;
  std::string all(list);
  size_t b = 0;
  while (b <= all.size()) {
    const size_t e = std::min(all.find('|', b), all.size());
    out.push_back(all.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

const FieldSpec& SpecOf(const CaseSpec& s, const char* name) {
  static const FieldSpec kDefault;
  auto it = s.fields.find(name);
  return it == s.fields.end() ? kDefault : it->second;
}

}  // namespace

bool Supported(const abi::OpDesc& op, const char* field) {
  const char* list = HooksOf(op).unsupported;
  if (list == nullptr) return true;
  for (const std::string& n : Names(list)) {
    if (n == field) return false;
  }
  return true;
}

void Case::Allocate(const std::string& name, const Field& f, const FieldSpec& fs, size_t index) {
  const size_t B = spec_.B, V = spec_.V;
  bool present = fs.present == 1 || (fs.present == -1 && f.required);
  if (f.role == Role::kLabels && f.needed_by != nullptr && fs.present == -1) {
    present = false;
    for (const std::string& n : Names(f.needed_by)) present = present || SpecOf(spec_, n.c_str()).present == 1;
  }
  if (!Supported(op(), name.c_str())) present = false;
  if (!present) return;
  const OpHooks& hooks = HooksOf(op());
  if (fs.in_place) {
    alias_[name] = f.in_place;
    return;
  }
  auto view = spec_.views.find(name);
  if (view != spec_.views.end()) {
    bufs_[name].reset(new Buffer(Buffer::View(view->second.first, view->second.second)));
    order_.push_back(name);
    return;
  }
  DType dt = fs.dtype;
  if (dt == DType::kAuto && hooks.default_dtype != nullptr) dt = hooks.default_dtype(spec_, f);
  if (dt == DType::kAuto) {
    if (f.rule == abi::DTypeRule::kF32 || f.dtype_off == abi::kNone) {
      dt = DType::kF32;
    } else if (f.rule == abi::DTypeRule::kSameAsFrom || f.rule == abi::DTypeRule::kOutFrom) {
      dt = buf(f.from)->dtype();
    } else {
      dt = static_cast<DType>(static_cast<int32_t>(f.def));
    }
  }
  const bool float_ptr = f.role == Role::kInVec || f.role == Role::kOutVec || f.role == Role::kRowWeights ||
                         (f.role == Role::kOutMat && f.rule == abi::DTypeRule::kF32);
  Layout l;
  l.dtype = dt;
  l.offset = fs.offset >= 0 ? static_cast<size_t>(fs.offset) : (float_ptr || IsIndex(dt) ? 0 : spec_.offset);
  const size_t pad = spec_.pad + index;
  switch (f.role) {
    case Role::kInVec:
    case Role::kOutVec: {
      const size_t n = f.len == abi::Len::kOne ? 1 : (f.len == abi::Len::kB ? B : V);
      l.rows = n;
      l.cols = 1;
      l.stride = 1;
      break;
    }
    case Role::kLabels:
      l.rows = B;
      l.cols = 1;
      l.stride = fs.stride > 0 ? static_cast<size_t>(fs.stride) : 1;
      break;
    case Role::kClassTarget:
      if (IsIndex(dt)) {
        l.rows = B;
        l.cols = 1;
        l.stride = fs.stride > 0 ? static_cast<size_t>(fs.stride) : 1;
        break;
      }
      [[fallthrough]];
    default:
      l.rows = (f.role == Role::kRowWeights && fs.broadcast) ? 1 : B;
      l.cols = V;
      l.stride = fs.stride >= 0 ? static_cast<size_t>(fs.stride) : V + pad;
      break;
  }
  const Content content = IsOutput(f.role) ? Content::kOutput : Content::kInput;
  bufs_[name].reset(new Buffer(l, spec_.guard, content));
  order_.push_back(name);
}

Case::Case(const CaseSpec& spec) : spec_(spec) {
  const abi::OpDesc& o = op();
  size_t matrices = 0;
  for (size_t i = 0; i < o.num_fields; ++i) {
    const Field& f = o.fields[i];
    if (!IsBufferRole(f.role)) continue;
    Allocate(f.name, f, SpecOf(spec_, f.name), matrices);
    const Buffer* b = buf(f.name);
    if (b != nullptr && !in_place(f.name) && b->cols() == spec_.V && b->rows() == spec_.B) ++matrices;
  }
  // The args struct: defaults from args_init, then every field from the table.
  args_.assign(o.args_size + 64, 0);
  if (Api::Linked().Init(o, args_.data(), o.args_size) != XENT_OK) {
    std::fprintf(stderr, "tests/common: %s_init failed: %s\n", o.args_type, xent_last_error());
    std::abort();
  }
  Store(args_.data() + sizeof(size_t), spec_.B);
  Store(args_.data() + 2 * sizeof(size_t), spec_.V);
  for (size_t i = 0; i < o.num_fields; ++i) {
    const Field& f = o.fields[i];
    const FieldSpec& fs = SpecOf(spec_, f.name);
    if (IsBufferRole(f.role)) {
      const Buffer* b = buf(f.name);
      SetPointer(f.name, b ? b->data() : nullptr);
      if (b == nullptr) continue;
      if (f.stride_off != abi::kNone) {
        size_t s = b->stride();
        if (fs.pass_zero || (f.role == Role::kRowWeights && fs.broadcast)) s = 0;
        if (in_place(f.name)) s = Load<size_t>(args_.data() + F(alias_.at(f.name)).stride_off);
        SetStrideField(f.name, s);
      }
      if (f.dtype_off != abi::kNone) {
        const bool out = f.role == Role::kOutMat;
        SetDTypeField(f.name, out && (fs.auto_dtype || fs.dtype == DType::kAuto) ? XENT_DTYPE_AUTO : b->dt());
      }
      continue;
    }
    switch (f.role) {
      case Role::kF32:
        if (fs.has_value) SetArg<float>(f.name, static_cast<float>(fs.value));
        break;
      case Role::kEnum:
      case Role::kFlag:
      case Role::kReserved:
        if (fs.has_value) SetArg<int32_t>(f.name, static_cast<int32_t>(fs.value));
        break;
      case Role::kI64:
        if (fs.has_value) SetArg<int64_t>(f.name, static_cast<int64_t>(fs.value));
        break;
      case Role::kNumThreads:
        SetArg<int32_t>(f.name, fs.has_value ? static_cast<int32_t>(fs.value) : spec_.num_threads);
        break;
      case Role::kParallelFor: SetArg(f.name, spec_.parallel_for); break;
      case Role::kParallelUser: SetArg(f.name, spec_.parallel_user); break;
      default: break;
    }
  }
  if (!spec_.fill) return;
  Rng rng(spec_.seed);
  HooksOf(o).fill(*this, rng);
  if (spec_.edit) {
    for (const std::string& name : order_) {
      if (IsOutput(F(name).role)) continue;
      Buffer* b = buf(name);
      if (!IsFloat(b->dtype())) continue;
      for (size_t r = 0; r < b->rows(); ++r)
        for (size_t c = 0; c < b->cols(); ++c) b->Set(r, c, spec_.edit(name, r, c, b->Get(r, c)));
    }
  }
  Seal();
}

Buffer* Case::buf(const std::string& field) {
  auto a = alias_.find(field);
  auto it = bufs_.find(a == alias_.end() ? field : a->second);
  return it == bufs_.end() ? nullptr : it->second.get();
}
const Buffer* Case::buf(const std::string& field) const { return const_cast<Case*>(this)->buf(field); }
bool Case::in_place(const std::string& output) const { return alias_.count(output) != 0; }

const std::vector<double>& Case::Values(const std::string& field) const {
  static const std::vector<double> kEmpty;
  auto it = values_.find(field);
  if (it != values_.end()) return it->second;
  auto s = sealed_.find(field);
  if (s == sealed_.end() || IsOutput(F(field).role)) return kEmpty;
  return values_[field] = buf(field)->ValuesOf(s->second);
}

std::vector<int64_t> Case::Indices(const std::string& field) const {
  std::vector<int64_t> r;
  const Buffer* b = buf(field);
  if (b == nullptr || !IsIndex(b->dtype())) return r;
  for (double v : Values(field)) r.push_back(static_cast<int64_t>(v));
  return r;
}

void Case::SetPointer(const std::string& field, const void* p) { Store(args_.data() + F(field).off, p); }
const void* Case::Pointer(const std::string& field) const { return Load<const void*>(args_.data() + F(field).off); }
void Case::SetStrideField(const std::string& field, size_t v) { Store(args_.data() + F(field).stride_off, v); }
size_t Case::StrideArg(const std::string& field) const { return Load<size_t>(args_.data() + F(field).stride_off); }
void Case::SetDTypeField(const std::string& field, int32_t v) { Store(args_.data() + F(field).dtype_off, v); }

void Case::Seal() {
  values_.clear();
  sealed_.clear();
  if (spec_.guard == Guard::kNone) return;
  for (const std::string& name : order_) {
    Buffer* b = buf(name);
    b->Seal();
    sealed_[name] = b->Snapshot();
  }
}

void Case::Restore() {
  if (spec_.guard == Guard::kNone) return;
  for (const std::string& name : order_) buf(name)->Restore(sealed_.at(name));
}

void Case::Prepare() {
  before_.clear();
  if (spec_.guard != Guard::kNone)
    for (const std::string& name : order_) before_[name] = buf(name)->Snapshot();
}

xent_status Case::Run(const Api& api) {
  Prepare();
  return Call(api);
}

// ---------------------------------------------------------------------------
void Case::CheckUntouched(std::vector<std::string>* problems) const {
  for (const std::string& name : order_) {
    if (!buf(name)->SameAs(before_.at(name))) problems->push_back(name + " was modified by a failed call");
  }
}

void Case::CheckWritten(std::vector<std::string>* problems) const {
  for (const std::string& name : order_) {
    const Buffer* b = buf(name);
    const bool output = IsOutput(F(name).role);
    bool written_in_place = false;
    for (const auto& a : alias_) written_in_place |= a.second == name;
    if (output || written_in_place) {
      if (!b->OutsideRowsUnchanged()) problems->push_back(name + " written outside its rows (padding or guard)");
    } else if (!b->SameAs(before_.at(name))) {
      problems->push_back("input " + name + " was modified");
    }
    if (output) {
      const size_t n = b->Unwritten();
      if (n != 0) problems->push_back(name + ": " + std::to_string(n) + " elements not written");
    }
  }
}

std::vector<Expected> Case::Reference(Profile p) const { return HooksOf(op()).reference(*this, p); }

void Case::Compare(const std::vector<Expected>& want, Profile p, std::vector<std::string>* problems,
                   size_t max_reports) const {
  for (const Expected& e : want) {
    const Buffer* b = buf(e.field);
    if (b == nullptr) continue;
    size_t bad = 0;
    for (size_t i = 0; i < e.rows; ++i) {
      for (size_t j = 0; j < e.cols; ++j) {
        const Tol& t = e.TolAt(i, j);
        if (t.skip) continue;
        const double got = b->Get(i, j), w = e.want[i * e.cols + j];
        if (Agree(got, w, t, b->dtype(), p)) continue;
        if (++bad > max_reports) continue;
        char msg[320];
        std::snprintf(msg, sizeof msg, "%s[%zu][%zu] = %.9g, float64 reference %.9g (bound %.3g, dtype %s)",
                      e.field.c_str(), i, j, got, w, Bound(w, t, b->dtype(), p), DTypeText(b->dtype()));
        problems->push_back(msg);
      }
    }
    if (bad > max_reports)
      problems->push_back(e.field + ": " + std::to_string(bad - max_reports) + " more elements differ");
  }
}

std::vector<unsigned char> Case::OutputBytes() const {
  std::vector<unsigned char> out;
  for (size_t i = 0; i < op().num_fields; ++i) {
    const Field& f = op().fields[i];
    if (!IsOutput(f.role)) continue;
    const Buffer* b = buf(f.name);
    if (b == nullptr) continue;
    for (size_t r = 0; r < b->rows(); ++r) {
      const auto* p = static_cast<const unsigned char*>(b->data()) + r * b->stride() * b->elem_size();
      out.insert(out.end(), p, p + b->cols() * b->elem_size());
    }
  }
  return out;
}

std::string Case::Describe() const {
  std::string s = std::string(op().name) + " B=" + std::to_string(spec_.B) + " V=" + std::to_string(spec_.V);
  char tmp[160];
  for (size_t i = 0; i < op().num_fields; ++i) {
    const Field& f = op().fields[i];
    if (IsBufferRole(f.role)) {
      const Buffer* b = buf(f.name);
      if (b == nullptr) continue;
      if (in_place(f.name)) {
        std::snprintf(tmp, sizeof tmp, " %s=in-place", f.name);
      } else {
        std::snprintf(tmp, sizeof tmp, " %s(%s stride %zu +%zu)", f.name, DTypeText(b->dtype()), b->stride(),
                      b->offset());
      }
      s += tmp;
      continue;
    }
    switch (f.role) {
      case Role::kF32: std::snprintf(tmp, sizeof tmp, " %s=%.9g", f.name, F32(f.name)); break;
      case Role::kEnum:
      case Role::kFlag:
      case Role::kNumThreads: std::snprintf(tmp, sizeof tmp, " %s=%d", f.name, I32(f.name)); break;
      case Role::kI64: std::snprintf(tmp, sizeof tmp, " %s=%" PRId64, f.name, I64(f.name)); break;
      default: tmp[0] = '\0'; break;
    }
    s += tmp;
  }
  return s;
}

std::vector<std::string> RunAndCheck(const CaseSpec& spec, const Api& api) {
  Case c(spec);
  std::vector<std::string> problems;
  const xent_status rc = c.Run(api);
  if (rc != XENT_OK) {
    problems.push_back(std::string("status ") + xent_status_string(rc) + ": " + api.LastError());
    return problems;
  }
  c.CheckWritten(&problems);
  c.Compare(c.Reference(Profile::kContract), Profile::kContract, &problems);
  return problems;
}

}  // namespace xent_test
