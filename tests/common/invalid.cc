#include "tests/common/invalid.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace xent_test {

std::vector<Mutation> Mutations(const Case& base) {
  using abi::Role;
  const abi::OpDesc& op = base.op();
  const size_t B = base.B(), V = base.V();
  const std::string v = std::to_string(V), v1 = std::to_string(V - 1);
  std::vector<Mutation> m;
  auto add = [&](const std::string& what, std::function<void(Case&)> f, xent_status st,
                 std::vector<std::string> frags) {
    m.push_back({what, std::move(f), st, std::move(frags)});
  };
  add("V = 0",
      [](Case& c) {
        const size_t z = 0;
        std::memcpy(c.args() + 2 * sizeof(size_t), &z, sizeof z);
      },
      XENT_ERROR_INVALID_SHAPE, {"num_classes = 0"});
  add("B x V overflows",
      [](Case& c) {
        const size_t b = SIZE_MAX / 8;
        std::memcpy(c.args() + sizeof(size_t), &b, sizeof b);
      },
      XENT_ERROR_INVALID_SHAPE, {"overflows"});
  std::vector<std::string> outputs, buffers;
  for (size_t i = 0; i < op.num_fields; ++i) {
    const abi::Field& f = op.fields[i];
    const std::string n = f.name;
    if (base.has(n)) buffers.push_back(n);
    if ((f.role == Role::kOutMat || f.role == Role::kOutVec) && base.has(n)) outputs.push_back(n);
    const bool matrix = f.role == Role::kInMat || f.role == Role::kOutMat || f.role == Role::kRowWeights ||
                        f.role == Role::kClassTarget;
    const bool needed = f.required || f.role == Role::kClassTarget || (f.needed_by != nullptr && base.has(f.needed_by));
    if (needed && base.has(n))
      add(n + " NULL", [n](Case& c) { c.SetPointer(n, nullptr); }, XENT_ERROR_NULL_POINTER, {n + " is NULL"});
    if (base.has(n) && !base.in_place(n)) {  // the field's own buffer
      const bool index = IsIndex(base.buf(n)->dtype());
      const bool broadcast = f.role == Role::kRowWeights && base.StrideArg(n) == 0;
      if (matrix && !index && !broadcast && f.stride_off != abi::kNone && V > 1)
        add(n + " short stride", [n, V](Case& c) { c.SetStrideField(n, V - 1); }, XENT_ERROR_INVALID_SHAPE,
            {n + "_stride (" + v1 + ") < num_classes (" + v + ")"});
      if (f.dtype_off != abi::kNone)
        add(n + " dtype 99", [n](Case& c) { c.SetDTypeField(n, 99); }, XENT_ERROR_INVALID_DTYPE, {n + "_dtype = 99"});
      if ((f.role == Role::kLabels || (f.role == Role::kClassTarget && index)) && B > 1)
        add(n + "[1] = V", [n, V](Case& c) { c.buf(n)->SetIndex(1, static_cast<int64_t>(V)); },
            XENT_ERROR_TARGET_OUT_OF_RANGE, {n + "[1] = " + v + " is outside [0, " + v + ")"});
    }
    switch (f.role) {
      case Role::kF32: {
        std::vector<std::pair<float, std::string>> bad;
        const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
        switch (f.domain) {
          case abi::Domain::kFinite: bad = {{nan, " = nan is not finite"}, {-inf, " = -inf is not finite"}}; break;
          case abi::Domain::kNonNegative:
            bad = {{-1.0f, " = -1 must be finite and >= 0"}, {inf, " = inf must be finite and >= 0"}};
            break;
          case abi::Domain::kUnit: bad = {{1.5f, " = 1.5 is outside [0, 1]"}, {nan, " = nan is outside [0, 1]"}}; break;
          case abi::Domain::kDivisor:
            bad = {{0.0f, " = 0 must be finite and > 0"}, {1e-40f, " = 9.99995e-41 is below FLT_MIN"}, {inf, " = inf"}};
            break;
          case abi::Domain::kDivisorOrOff:
            bad = {{-1.0f, " = -1 must be finite and >= 0"}, {1e-40f, " = 9.99995e-41 is below FLT_MIN"}};
            break;
          case abi::Domain::kAny: break;
        }
        for (const auto& b : bad)
          add(n + b.second, [n, v = b.first](Case& c) { c.SetArg<float>(n, v); }, XENT_ERROR_INVALID_VALUE,
              {n + b.second});
        break;
      }
      case Role::kEnum:
        for (int32_t v : {-1, 7, 99}) {
          if (v >= 0 && v < 32 && ((f.valid >> v) & 1u)) continue;
          add(n + " = " + std::to_string(v), [n, v](Case& c) { c.SetArg<int32_t>(n, v); }, XENT_ERROR_INVALID_ENUM,
              {n + " = " + std::to_string(v) + " is not " + f.valid_text});
        }
        break;
      case Role::kFlag:
        add(n + " = 2", [n](Case& c) { c.SetArg<int32_t>(n, 2); }, XENT_ERROR_INVALID_VALUE,
            {n + " = 2 is not 0 or 1"});
        break;
      case Role::kReserved:
        add(n + " = 1", [n](Case& c) { c.SetArg<int32_t>(n, 1); }, XENT_ERROR_INVALID_VALUE, {n + " = 1 must be 0"});
        break;
      case Role::kNumThreads:
        add(n + " = -1", [n](Case& c) { c.SetArg<int32_t>(n, -1); }, XENT_ERROR_INVALID_VALUE,
            {n + " = -1 must be >= 0"});
        break;
      default: break;
    }
  }
  // Every output over every other buffer (strides differ, so never an exact
  // in-place alias). The message names the output, and the other buffer when
  // the output lies within it (a larger one may overlap neighbors first) and
  // no in-place output shares it.
  for (const std::string& o : outputs) {
    for (const std::string& x : buffers) {
      if (x == o || B == 0 || base.in_place(o) || base.in_place(x) || base.buf(o) == base.buf(x)) continue;
      std::vector<std::string> frags = {"overlaps", o};
      bool shared = false;  // an in-place output on x overlaps the new one first
      for (const std::string& q : outputs) shared = shared || (base.in_place(q) && base.buf(q) == base.buf(x));
      if (!shared && base.buf(o)->span() <= base.buf(x)->span()) frags.push_back(x);
      add(
          o + " over " + x, [o, x](Case& c) { c.SetPointer(o, c.buf(x)->data()); }, XENT_ERROR_ALIASING, frags);
    }
  }
  if (op.needs_output) {
    add("no output",
        [outputs](Case& c) {
          for (const auto& o : outputs) c.SetPointer(o, nullptr);
        },
        XENT_ERROR_NULL_POINTER, {"no output requested: "});
  }
  return m;
}

}  // namespace xent_test
