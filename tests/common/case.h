// Test cases built from the operation table (capi/op_table.h): given an
// operation's description and a CaseSpec (shape, dtypes, strides, offsets,
// which optional inputs and outputs exist, in-place choices, option values,
// edge-case payloads), a Case allocates every buffer its fields call for,
// fills the inputs (the operation's hooks know what its inputs mean:
// probability rows, valid labels, distribution kinds), and fills the args
// struct through the table's offsets. After a call it checks the contract's
// invariants (inputs unchanged, nothing written outside the outputs' rows,
// every output element written, nothing written by a failed call) and
// compares every output with the float64 reference under the tolerance model
// (tests/common/tolerance.h).
#ifndef XENT_TESTS_COMMON_CASE_H_
#define XENT_TESTS_COMMON_CASE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "capi/op_table.h"
#include "tests/common/api.h"
#include "tests/common/buffer.h"
#include "tests/common/tolerance.h"
#include "xent/xent.h"

namespace xent_test {

namespace abi = xent::abi;

// What one field of the operation gets.
struct FieldSpec {
  int present = -1;            // -1: the table's default (required inputs only)
  DType dtype = DType::kAuto;  // buffers: the element dtype (kAuto: the table's rule)
  bool auto_dtype = false;     // outputs: write XENT_DTYPE_AUTO in the dtype field
  bool in_place = false;       // outputs: the buffer of the table's in-place input
  int64_t stride = -1;         // elements (-1: cols + the case's padding rule)
  bool pass_zero = false;      // write 0 in the stride field (packed rows, 1 index)
  bool broadcast = false;      // row weights: one row for every row (stride 0)
  int64_t offset = -1;         // bytes past the alignment boundary (-1: the case's)
  bool has_value = false;      // options
  double value = 0;
};

struct CaseSpec {
  CaseSpec(const abi::OpDesc& op, size_t B, size_t V);

  // Buffers (inputs, targets, labels, vectors, outputs).
  CaseSpec& With(const char* field, DType dtype = DType::kAuto);
  CaseSpec& Without(const char* field);
  CaseSpec& InPlace(const char* output);
  CaseSpec& Stride(const char* field, size_t stride, bool pass_zero = false);
  CaseSpec& Offset(const char* field, size_t bytes);
  CaseSpec& Broadcast(const char* field);
  // A buffer the caller owns (present; `layout`'s rows, cols and stride are
  // the caller's to get right): the benchmark's reused inputs and outputs.
  CaseSpec& View(const char* field, void* data, const Layout& layout);
  // Options (kF32, kEnum, kFlag, kI64, kReserved, kNumThreads).
  CaseSpec& Set(const char* field, double value);
  FieldSpec& operator[](const char* field);  // aborts on a name the table lacks

  const abi::OpDesc* op;
  size_t B, V;
  std::map<std::string, FieldSpec> fields;
  std::map<std::string, std::pair<void*, Layout>> views;
  size_t pad = 0;     // the first input's stride is V + pad; other matrices V + pad + k
  size_t offset = 0;  // byte misalignment of every void* matrix without its own
  Guard guard = Guard::kCanary;
  bool fill = true;  // fill the inputs with the operation's payloads
  // Payloads (see the operation's hooks): logits ~ mean + sigma N(0, 1), ...
  uint64_t seed = 1;
  double sigma = 3.0, mean = 0.0;
  double zero_fraction = -1;  // probabilities that are exactly 0 (-1: the op's default)
  int ignore_every = 0;       // labels: every k-th row ignore_index (the op's phase)
  int kind = -1;              // op-specific variant (e.g. softmax_backward: the forward of probs / log_probs)
  // Edge payloads: called for every input element after the fill; returns
  // the value to store (return v to keep it).
  std::function<double(const std::string& field, size_t i, size_t j, double v)> edit;
  // Threading.
  int32_t num_threads = 0;
  xent_parallel_for_fn parallel_for = nullptr;
  void* parallel_user = nullptr;
};

// The float64 reference of one output and its bounds.
struct Expected {
  std::string field;
  size_t rows = 0, cols = 0;
  std::vector<double> want;  // rows x cols
  std::vector<Tol> tol;      // one (all), rows (per row) or rows x cols (per element)
  const Tol& TolAt(size_t i, size_t j) const {
    return tol.size() == 1 ? tol[0] : (tol.size() == rows ? tol[i] : tol[i * cols + j]);
  }
};

class Case;

// What an operation adds to the table (tests/common/op_*.cc).
struct OpHooks {
  const abi::OpDesc* op;
  OpEntry entry;  // its C entry points
  // Default dtype of a buffer field the spec leaves at kAuto (nullptr: the table's).
  DType (*default_dtype)(const CaseSpec& s, const abi::Field& f);
  // Fills the inputs with values that mean what the operation expects.
  void (*fill)(Case& c, Rng& rng);
  // The reference of every requested output, with the bounds of profile p.
  std::vector<Expected> (*reference)(const Case& c, Profile p);
  // Fields ("a|b|...") these hooks cannot fill or check yet: never allocated,
  // whatever the spec asks (their own suite tests them). nullptr: none.
  const char* unsupported = nullptr;
};

const OpHooks& HooksOf(const abi::OpDesc& op);
// False for a field the op's hooks list as unsupported (never allocated).
bool Supported(const abi::OpDesc& op, const char* field);
const abi::Field& FieldOf(const abi::OpDesc& op, const std::string& name);  // aborts if absent

class Case {
 public:
  explicit Case(const CaseSpec& spec);
  Case(const Case&) = delete;
  Case& operator=(const Case&) = delete;

  const CaseSpec& spec() const { return spec_; }
  const abi::OpDesc& op() const { return *spec_.op; }
  size_t B() const { return spec_.B; }
  size_t V() const { return spec_.V; }

  // The buffer of a field (an in-place output: its input's buffer), or NULL.
  Buffer* buf(const std::string& field);
  const Buffer* buf(const std::string& field) const;
  bool has(const std::string& field) const { return buf(field) != nullptr; }
  bool in_place(const std::string& output) const;
  // Fields in the order buffers were allocated (inputs first).
  const std::vector<std::string>& buffer_fields() const { return order_; }

  // Input values as the library sees them (dtype-rounded), packed rows x cols,
  // as of the last Seal() (so in-place calls keep their inputs).
  const std::vector<double>& Values(const std::string& field) const;
  // Class indices of a labels / class-target field (empty when absent or soft).
  std::vector<int64_t> Indices(const std::string& field) const;

  // The args struct, through the table's offsets.
  unsigned char* args() { return args_.data(); }
  const unsigned char* args() const { return args_.data(); }
  size_t args_capacity() const { return args_.size(); }
  template <class T>
  T Arg(const std::string& field) const;
  template <class T>
  void SetArg(const std::string& field, T v);
  float F32(const std::string& f) const { return Arg<float>(f); }
  int32_t I32(const std::string& f) const { return Arg<int32_t>(f); }
  int64_t I64(const std::string& f) const { return Arg<int64_t>(f); }
  // A pointer field (the buffer, or NULL) and a buffer's stride / dtype fields.
  void SetPointer(const std::string& field, const void* p);
  const void* Pointer(const std::string& field) const;
  void SetStrideField(const std::string& field, size_t v);
  size_t StrideArg(const std::string& field) const;
  void SetDTypeField(const std::string& field, int32_t v);

  // Records input values and every buffer's bytes (after filling inputs).
  void Seal();
  // Restores every buffer to its sealed bytes (outputs unwritten again).
  void Restore();
  // Calls the operation (snapshots every buffer first): Run = Prepare + Call.
  xent_status Run(const Api& api = Api::Linked());
  void Prepare();
  xent_status Call(const Api& api = Api::Linked()) const { return api.Call(op(), args_.data()); }

  // After Run: the contract's invariants; problems are appended as text.
  void CheckUntouched(std::vector<std::string>* problems) const;  // a failed call
  void CheckWritten(std::vector<std::string>* problems) const;    // a successful one
  // The reference of every requested output (computed from the sealed
  // inputs), and the comparison of every output with it.
  std::vector<Expected> Reference(Profile p) const;
  void Compare(const std::vector<Expected>& want, Profile p, std::vector<std::string>* problems,
               size_t max_reports = 5) const;
  // Output bytes (rows only), for bit-identity across settings.
  std::vector<unsigned char> OutputBytes() const;

  std::string Describe() const;

 private:
  void Allocate(const std::string& name, const abi::Field& f, const FieldSpec& fs, size_t index);
  const abi::Field& F(const std::string& name) const { return FieldOf(op(), name); }

  CaseSpec spec_;
  std::map<std::string, std::unique_ptr<Buffer>> bufs_;
  std::map<std::string, std::string> alias_;  // in-place output -> input
  std::vector<std::string> order_;
  mutable std::map<std::string, std::vector<double>> values_;  // decoded from sealed_ when asked
  std::map<std::string, std::vector<unsigned char>> sealed_, before_;
  std::vector<unsigned char> args_;
};

template <class T>
T Case::Arg(const std::string& field) const {
  T v;
  std::memcpy(&v, args_.data() + F(field).off, sizeof(T));
  return v;
}
template <class T>
void Case::SetArg(const std::string& field, T v) {
  std::memcpy(args_.data() + F(field).off, &v, sizeof(T));
}

// One case: build, run, expect XENT_OK, check invariants and every output
// against the reference (kContract). Returns the problems found.
std::vector<std::string> RunAndCheck(const CaseSpec& spec, const Api& api = Api::Linked());

}  // namespace xent_test

#endif  // XENT_TESTS_COMMON_CASE_H_
