// The C ABI's operations: each reads its args struct (versioned by size),
// validates it against its table entry (capi/op_table.h) into the operation's
// problem struct, and runs it; nothing but a status crosses the ABI (Guard).
#include <cstddef>

#include "capi/args.h"
#include "capi/error.h"
#include "capi/op_table.h"
#include "capi/validate.h"
#include "src/problem.h"
#include "xent/xent.h"

namespace xent {
namespace {

template <class Problem>
xent_status Call(const abi::OpDesc& op, const void* user, xent_status (*run)(const Problem&)) {
  return Guard([&] {
    alignas(std::max_align_t) unsigned char args[kArgsCapacity];
    ReadArgs(op, user, args);
    Problem p;
    Validate(op, args, &p);
    return run(p);
  });
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
