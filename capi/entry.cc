// The C ABI's operations: each reads its args struct (versioned by size),
// validates it against its table entry (capi/op_table.h) into the operation's
// problem struct, and runs it; nothing but a status crosses the ABI (Guard).
#include <cstddef>
#include <cstdint>
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

// A column shard: its columns lie within [0, V).
void ShardCheck(const CrossEntropyShardProblem& p) {
  XENT_CHECK(p.offset <= p.V - p.Vs, XENT_ERROR_INVALID_SHAPE,
             "class_offset (%zu) + shard_classes (%zu) exceeds num_classes (%zu)", p.offset, p.Vs, p.V);
}

double StatAt(const double* stats, size_t rank, size_t B, size_t row, ShardStat k) {
  double v;
  std::memcpy(&v, stats + (rank * B + row) * kShardStatsDoubles + k, sizeof(v));  // (any alignment)
  return v;
}

// The gathered statistics: P shards in rank order that tile [0, V), each
// row of a rank recording the same columns, with valid flags, the smoothing
// sums when label_smoothing > 0, the target's logit in the shard that holds
// it; and p's own shard among them. What a wrong gather (order, count, batch,
// a rank's different arguments) most likely breaks.
void ShardFinishCheck(const CrossEntropyShardProblem& p) {
  ShardCheck(p);
  if (p.B == 0) return;
  size_t begin = 0;
  bool own = false;
  for (size_t r = 0; r < p.P; ++r) {
    const double off = StatAt(p.stats_in, r, p.B, 0, kStatOffset), width = StatAt(p.stats_in, r, p.B, 0, kStatWidth);
    XENT_CHECK(off == static_cast<double>(begin) && width >= 1 && off + width <= static_cast<double>(p.V),
               XENT_ERROR_INVALID_VALUE,
               "stats of rank %zu (row 0) cover classes [%.17g, %.17g + %.17g), expected a shard starting at %zu "
               "within num_classes (%zu): the stats must be num_shards (%zu) shards' xent_cross_entropy_shard_stats "
               "in rank order, tiling the classes",
               r, off, off, width, begin, p.V, p.P);
    const size_t w = static_cast<size_t>(width);
    own = own || (begin == p.offset && w == p.Vs);
    for (size_t i = 0; i < p.B; ++i) {
      const double o = StatAt(p.stats_in, r, p.B, i, kStatOffset), wi = StatAt(p.stats_in, r, p.B, i, kStatWidth);
      const double fl = StatAt(p.stats_in, r, p.B, i, kStatFlags);
      XENT_CHECK(o == off && wi == width && fl >= 0 && fl <= kStatAllFlags && fl == static_cast<uint32_t>(fl),
                 XENT_ERROR_INVALID_VALUE,
                 "stats of rank %zu, row %zu are not xent_cross_entropy_shard_stats of a batch of %zu rows "
                 "(columns [%.17g, %.17g + %.17g) where row 0 has [%zu, %zu + %zu), flags %.17g)",
                 r, i, p.B, o, o, wi, begin, begin, w, fl);
      const uint32_t flags = static_cast<uint32_t>(fl);
      XENT_CHECK(p.label_smoothing == 0.0f || (flags & kStatDot), XENT_ERROR_INVALID_VALUE,
                 "label_smoothing = %g, but the stats of rank %zu were computed with label_smoothing = 0",
                 static_cast<double>(p.label_smoothing), r);
      const int64_t y = p.target.At(i);
      const bool holds =
          y != p.target.ignore_index && y >= static_cast<int64_t>(begin) && y < static_cast<int64_t>(begin + w);
      XENT_CHECK(!holds || (flags & kStatHasZy), XENT_ERROR_INVALID_VALUE,
                 "target[%zu] = %lld lies in rank %zu's classes [%zu, %zu), but its stats hold no target logit "
                 "for that row (different targets in xent_cross_entropy_shard_stats?)",
                 i, static_cast<long long>(y), r, begin, begin + w);
    }
    begin += w;
  }
  XENT_CHECK(begin == p.V, XENT_ERROR_INVALID_VALUE,
             "the stats of num_shards = %zu shards cover classes [0, %zu), not num_classes = %zu", p.P, begin, p.V);
  XENT_CHECK(own, XENT_ERROR_INVALID_VALUE,
             "no rank's stats cover this shard's classes [class_offset = %zu, + shard_classes = %zu)", p.offset, p.Vs);
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

xent_status xent_cross_entropy_shard_stats_args_init(xent_cross_entropy_shard_stats_args* args, size_t struct_size) {
  return InitArgs(abi::kCrossEntropyShardStats, args, struct_size);
}
xent_status xent_cross_entropy_shard_stats(const xent_cross_entropy_shard_stats_args* args) {
  return Call(abi::kCrossEntropyShardStats, args, xent::RunCrossEntropyShardStats, nullptr, xent::ShardCheck);
}

xent_status xent_cross_entropy_shard_finish_args_init(xent_cross_entropy_shard_finish_args* args, size_t struct_size) {
  return InitArgs(abi::kCrossEntropyShardFinish, args, struct_size);
}
xent_status xent_cross_entropy_shard_finish(const xent_cross_entropy_shard_finish_args* args) {
  return Call(abi::kCrossEntropyShardFinish, args, xent::RunCrossEntropyShardFinish, nullptr, xent::ShardFinishCheck);
}

}  // extern "C"
