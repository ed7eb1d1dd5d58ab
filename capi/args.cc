#include "capi/args.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "capi/error.h"

namespace xent {

static_assert(sizeof(xent_cross_entropy_args) <= kArgsCapacity && sizeof(xent_bce_args) <= kArgsCapacity &&
                  sizeof(xent_divergence_args) <= kArgsCapacity && sizeof(xent_softmax_args) <= kArgsCapacity &&
                  sizeof(xent_softmax_backward_args) <= kArgsCapacity &&
                  sizeof(xent_token_logprobs_args) <= kArgsCapacity &&
                  sizeof(xent_linear_cross_entropy_args) <= kArgsCapacity &&
                  sizeof(xent_token_logprobs_backward_args) <= kArgsCapacity &&
                  sizeof(xent_kl_penalty_args) <= kArgsCapacity &&
                  sizeof(xent_cross_entropy_shard_stats_args) <= kArgsCapacity &&
                  sizeof(xent_cross_entropy_shard_finish_args) <= kArgsCapacity &&
                  sizeof(xent_token_logprobs_shard_stats_args) <= kArgsCapacity &&
                  sizeof(xent_token_logprobs_shard_finish_args) <= kArgsCapacity &&
                  sizeof(xent_token_logprobs_shard_backward_args) <= kArgsCapacity &&
                  sizeof(xent_kl_div_logits_shard_stats_args) <= kArgsCapacity &&
                  sizeof(xent_kl_div_logits_shard_finish_args) <= kArgsCapacity,
              "raise kArgsCapacity");

namespace {

template <class T>
void Put(unsigned char* args, uint16_t off, T v) {
  std::memcpy(args + off, &v, sizeof(v));
}

// Zeroes `size` bytes of args and writes the table's defaults of the fields
// that lie within them.
void FillDefaults(const abi::OpDesc& op, unsigned char* args, size_t size) {
  std::memset(args, 0, size);
  for (size_t i = 0; i < op.num_fields; ++i) {
    const abi::Field& f = op.fields[i];
    if (f.dtype_off != abi::kNone && f.dtype_off + sizeof(int32_t) <= size)
      Put(args, f.dtype_off, static_cast<int32_t>(f.def));
    switch (f.role) {
      case abi::Role::kF32:
        if (f.off + sizeof(float) <= size) Put(args, f.off, static_cast<float>(f.def));
        break;
      case abi::Role::kEnum:
      case abi::Role::kFlag:
      case abi::Role::kCount:
        if (f.off + sizeof(int32_t) <= size) Put(args, f.off, static_cast<int32_t>(f.def));
        break;
      case abi::Role::kI64:
        if (f.off + sizeof(int64_t) <= size) Put(args, f.off, static_cast<int64_t>(f.def));
        break;
      default: break;
    }
  }
}

}  // namespace

void ReadArgs(const abi::OpDesc& op, const void* user, unsigned char* out) {
  XENT_CHECK(user != nullptr, XENT_ERROR_NULL_POINTER, "args is NULL");
  const char* type = op.args_type;
  const size_t want = op.args_size;
  size_t size;
  std::memcpy(&size, user, sizeof(size));
  XENT_CHECK(size >= op.min_size, XENT_ERROR_INVALID_STRUCT,
             "args.struct_size = %zu is smaller than sizeof(%s) = %zu (initialize it with %s_init)", size, type,
             op.min_size, type);
  if (size < want) {
    // An older caller's struct (exactly the first published size; none came
    // in between yet): the fields it lacks take their defaults.
    XENT_CHECK(size == op.min_size, XENT_ERROR_INVALID_STRUCT,
               "args.struct_size = %zu is neither the first published sizeof(%s) = %zu nor this library's %zu", size,
               type, op.min_size, want);
    FillDefaults(op, out, want);
    std::memcpy(out, user, size);
    return;
  }
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

xent_status InitArgs(const abi::OpDesc& op, void* user, size_t struct_size) {
  return Guard([&] {
    XENT_CHECK(user != nullptr, XENT_ERROR_NULL_POINTER, "args is NULL");
    XENT_CHECK(struct_size >= op.min_size && struct_size <= kMaxStructSize, XENT_ERROR_INVALID_STRUCT,
               "struct_size = %zu is outside [%zu, %zu] for %s", struct_size, op.min_size, kMaxStructSize,
               op.args_type);
    XENT_CHECK(struct_size >= op.args_size || struct_size == op.min_size, XENT_ERROR_INVALID_STRUCT,
               "struct_size = %zu is neither the first published sizeof(%s) = %zu nor this library's %zu", struct_size,
               op.args_type, op.min_size, op.args_size);
    auto* args = static_cast<unsigned char*>(user);
    // Fields past sizeof are zero (unknown to this library); an older
    // caller's shorter struct gets the fields it has.
    FillDefaults(op, args, std::min(struct_size, op.args_size));
    if (struct_size > op.args_size) std::memset(args + op.args_size, 0, struct_size - op.args_size);
    Put(args, 0, struct_size);
    return XENT_OK;
  });
}

}  // namespace xent
