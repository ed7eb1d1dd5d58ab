// The C ABI's operations: each reads its args struct (versioned by size),
// validates it against its table entry (capi/op_table.h) into the operation's
// problem struct, and runs it; nothing but a status crosses the ABI (Guard).
#include <cstddef>
#include <cstring>

#include "capi/args.h"
#include "capi/error.h"
#include "capi/op_table.h"
#include "capi/validate.h"
#include "src/blas.h"
#include "src/problem.h"
#include "xent/xent.h"

namespace xent {
namespace {

template <class Problem>
xent_status Call(const abi::OpDesc& op, const void* user, xent_status (*run)(const Problem&),
                 void (*available)() = nullptr, void (*check)(const Problem&) = nullptr) {
  return Guard([&] {
    alignas(std::max_align_t) unsigned char args[kArgsCapacity];
    ReadArgs(op, user, args);
    if (available) available();
    Problem p;
    Validate(op, args, &p);
    if (check) check(p);
    return run(p);
  });
}

// Linear cross-entropy: needs a BLAS, and a scratch budget that holds a row.
void LinearCeAvailable() {
  XENT_CHECK(std::strcmp(BlasBackendName(), "none") != 0, XENT_ERROR_UNSUPPORTED,
             "xent_linear_cross_entropy: this libxent was built without a BLAS (meson option blas=none); "
             "rebuild it with -Dblas=openblas or -Dblas=blis");
}
void LinearCeCheck(const LinearCrossEntropyProblem& p) {
  // What goes to the BLAS as a size or a leading dimension.
  const size_t max = BlasMaxIndex();
  XENT_CHECK(p.V <= max && p.H <= max, XENT_ERROR_INVALID_SHAPE,
             "num_classes = %zu or hidden_size = %zu exceeds the BLAS's index range (%zu)", p.V, p.H, max);
  XENT_CHECK(p.linear_weight.dtype != DType::kF32 || p.linear_weight.stride <= max, XENT_ERROR_INVALID_SHAPE,
             "linear_weight_stride = %zu exceeds the BLAS's index range (%zu)", p.linear_weight.stride, max);
  XENT_CHECK(p.grad_linear_weight.data == nullptr || p.grad_linear_weight.dtype != DType::kF32 ||
                 p.grad_linear_weight.stride <= max,
             XENT_ERROR_INVALID_SHAPE, "grad_linear_weight_stride = %zu exceeds the BLAS's index range (%zu)",
             p.grad_linear_weight.stride, max);
  const size_t need = LinearCrossEntropyMinScratch(p);
  XENT_CHECK(p.scratch_bytes == 0 || p.scratch_bytes >= need, XENT_ERROR_INVALID_VALUE,
             "scratch_bytes = %zu cannot hold one row of logits and its operand tiles (%zu bytes for "
             "num_classes = %zu, hidden_size = %zu); raise it or pass 0 for the default (%zu)",
             p.scratch_bytes, need, p.V, p.H, static_cast<size_t>(XENT_LINEAR_CE_DEFAULT_SCRATCH_BYTES));
}

}  // namespace
}  // namespace xent

using xent::Call;
using xent::InitArgs;
namespace abi = xent::abi;

extern "C" {

xent_status xent_cross_entropy_args_init(xent_cross_entropy_args* args, size_t struct_size) {
  return InitArgs(abi::kCrossEntropy, args, struct_size);
}
xent_status xent_cross_entropy(const xent_cross_entropy_args* args) {
  return Call(abi::kCrossEntropy, args, xent::RunCrossEntropy);
}

xent_status xent_bce_args_init(xent_bce_args* args, size_t struct_size) {
  return InitArgs(abi::kBce, args, struct_size);
}
xent_status xent_bce_with_logits(const xent_bce_args* args) { return Call(abi::kBce, args, xent::RunBce); }

xent_status xent_divergence_args_init(xent_divergence_args* args, size_t struct_size) {
  return InitArgs(abi::kDivergence, args, struct_size);
}
xent_status xent_divergence(const xent_divergence_args* args) {
  return Call(abi::kDivergence, args, xent::RunDivergence);
}

xent_status xent_softmax_args_init(xent_softmax_args* args, size_t struct_size) {
  return InitArgs(abi::kSoftmax, args, struct_size);
}
xent_status xent_softmax(const xent_softmax_args* args) { return Call(abi::kSoftmax, args, xent::RunSoftmax); }

xent_status xent_softmax_backward_args_init(xent_softmax_backward_args* args, size_t struct_size) {
  return InitArgs(abi::kSoftmaxBackward, args, struct_size);
}
xent_status xent_softmax_backward(const xent_softmax_backward_args* args) {
  return Call(abi::kSoftmaxBackward, args, xent::RunSoftmaxBackward);
}

xent_status xent_token_logprobs_args_init(xent_token_logprobs_args* args, size_t struct_size) {
  return InitArgs(abi::kTokenLogprobs, args, struct_size);
}
xent_status xent_token_logprobs(const xent_token_logprobs_args* args) {
  return Call(abi::kTokenLogprobs, args, xent::RunTokenLogprobs);
}

xent_status xent_linear_cross_entropy_args_init(xent_linear_cross_entropy_args* args, size_t struct_size) {
  return InitArgs(abi::kLinearCrossEntropy, args, struct_size);
}
xent_status xent_linear_cross_entropy(const xent_linear_cross_entropy_args* args) {
  return Call(abi::kLinearCrossEntropy, args, xent::RunLinearCrossEntropy, xent::LinearCeAvailable,
              xent::LinearCeCheck);
}

xent_status xent_token_logprobs_backward_args_init(xent_token_logprobs_backward_args* args, size_t struct_size) {
  return InitArgs(abi::kTokenLogprobsBackward, args, struct_size);
}
xent_status xent_token_logprobs_backward(const xent_token_logprobs_backward_args* args) {
  return Call(abi::kTokenLogprobsBackward, args, xent::RunTokenLogprobsBackward);
}

xent_status xent_kl_penalty_args_init(xent_kl_penalty_args* args, size_t struct_size) {
  return InitArgs(abi::kKlPenalty, args, struct_size);
}
xent_status xent_kl_penalty(const xent_kl_penalty_args* args) {
  return Call(abi::kKlPenalty, args, xent::RunKlPenalty);
}

}  // extern "C"
