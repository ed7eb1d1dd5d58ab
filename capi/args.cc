#include "capi/args.h"

#include <cstdint>
#include <cstring>

#include "capi/error.h"

namespace xent {

static_assert(sizeof(xent_cross_entropy_args) <= kArgsCapacity && sizeof(xent_bce_args) <= kArgsCapacity &&
                  sizeof(xent_divergence_args) <= kArgsCapacity && sizeof(xent_softmax_args) <= kArgsCapacity &&
                  sizeof(xent_softmax_backward_args) <= kArgsCapacity &&
                  sizeof(xent_token_logprobs_args) <= kArgsCapacity &&
                  sizeof(xent_linear_cross_entropy_args) <= kArgsCapacity,
              "raise kArgsCapacity");

void ReadArgs(const abi::OpDesc& op, const void* user, unsigned char* out) {
  XENT_CHECK(user != nullptr, XENT_ERROR_NULL_POINTER, "args is NULL");
  const char* type = op.args_type;
  const size_t want = op.args_size;
  size_t size;
  std::memcpy(&size, user, sizeof(size));
  XENT_CHECK(size >= want, XENT_ERROR_INVALID_STRUCT,
             "args.struct_size = %zu is smaller than sizeof(%s) = %zu (initialize it with %s_init)", size, type, want,
             type);
  XENT_CHECK(size <= kMaxStructSize, XENT_ERROR_INVALID_STRUCT,
             "args.struct_size = %zu is implausibly large (uninitialized struct? use %s_init)", size, type);
  const auto* bytes = static_cast<const unsigned char*>(user);
  for (size_t i = want; i < size; ++i) {
    XENT_CHECK(bytes[i] == 0, XENT_ERROR_INVALID_STRUCT,
               "args.struct_size = %zu: byte %zu is set, but this library (xent %s) knows only the first %zu bytes "
               "of %s; a newer field is in use that it does not support",
               size, i, XENT_VERSION_STRING, want, type);
  }
  std::memcpy(out, user, want);
}

namespace {

template <class T>
void Put(unsigned char* args, uint16_t off, T v) {
  std::memcpy(args + off, &v, sizeof(v));
}

}  // namespace

xent_status InitArgs(const abi::OpDesc& op, void* user, size_t struct_size) {
  return Guard([&] {
    XENT_CHECK(user != nullptr, XENT_ERROR_NULL_POINTER, "args is NULL");
    XENT_CHECK(struct_size >= op.args_size && struct_size <= kMaxStructSize, XENT_ERROR_INVALID_STRUCT,
               "struct_size = %zu is outside [%zu, %zu] for %s", struct_size, op.args_size, kMaxStructSize,
               op.args_type);
    auto* args = static_cast<unsigned char*>(user);
    std::memset(args, 0, struct_size);
    for (size_t i = 0; i < op.num_fields; ++i) {
      const abi::Field& f = op.fields[i];
      if (f.dtype_off != abi::kNone) Put(args, f.dtype_off, static_cast<int32_t>(f.def));
      switch (f.role) {
        case abi::Role::kF32: Put(args, f.off, static_cast<float>(f.def)); break;
        case abi::Role::kEnum:
        case abi::Role::kFlag: Put(args, f.off, static_cast<int32_t>(f.def)); break;
        case abi::Role::kI64: Put(args, f.off, static_cast<int64_t>(f.def)); break;
        default: break;
      }
    }
    Put(args, 0, struct_size);
    return XENT_OK;
  });
}

}  // namespace xent
