// The C ABI's operations: each reads its args struct (versioned by size),
// validates it against its table entry (capi/op_table.h) into the operation's
// problem struct, and runs it; nothing but a status crosses the ABI (Guard).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

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
             p.scratch_bytes, need, p.V, p.H, LinearCrossEntropyDefaultScratch(p));
}

// A column shard (any vocab-parallel problem: offset, Vs, V): its columns lie
// within [0, V).
template <class Problem>
void ShardCheck(const Problem& p) {
  XENT_CHECK(p.offset <= p.V - p.Vs, XENT_ERROR_INVALID_SHAPE,
             "class_offset (%zu) + shard_classes (%zu) exceeds num_classes (%zu)", p.offset, p.Vs, p.V);
}

// How one op's gathered statistics look: its tag and the other layout's (the
// same op with the other flag), the flag's text for the message, and sizes.
struct GatherLayout {
  const char* op;        // the phase-1 function, for messages
  double tag, other;     // other == tag: the op has one layout
  const char* mismatch;  // printf format with %zu (the rank): the flag differs
  size_t per_rank, n;    // doubles per rank and per row
};

// The gathered statistics: P ranks' headers in rank order, each of this
// op's layout (the tag), B rows, and columns that tile [0, V); the caller's
// own shard among them (own_Vs > 0); each non-ignored row's target logit in
// the rank whose columns hold the target, and in no other. What a wrong
// gather (order, count, batch, a rank's different arguments) most likely
// breaks.
void CheckGather(const GatherLayout& g, size_t B, size_t V, size_t P, const double* stats, const Labels& target,
                 size_t own_offset, size_t own_Vs) {
  std::vector<size_t> begins(P + 1, 0);
  bool own = own_Vs == 0;
  for (size_t r = 0; r < P; ++r) {
    const double* h = stats + r * g.per_rank;
    const size_t begin = begins[r];
    const double t = ShardHeaderAt(h, kHdrTag), b = ShardHeaderAt(h, kHdrBatch);
    XENT_CHECK(g.other == g.tag || t != g.other, XENT_ERROR_INVALID_VALUE, g.mismatch, r);
    XENT_CHECK(t == g.tag, XENT_ERROR_INVALID_VALUE,
               "stats of rank %zu are not %s' (header %.17g): the stats must be num_shards (%zu) ranks' stats "
               "gathered in rank order, each of the size %s_doubles gives",
               r, g.op, t, P, g.op);
    XENT_CHECK(b == static_cast<double>(B), XENT_ERROR_INVALID_VALUE,
               "stats of rank %zu hold %.17g rows, not batch = %zu", r, b, B);
    const double off = ShardHeaderAt(h, kHdrOffset), width = ShardHeaderAt(h, kHdrWidth);
    XENT_CHECK(off == static_cast<double>(begin) && width >= 1 && off + width <= static_cast<double>(V) &&
                   width == static_cast<double>(static_cast<size_t>(width)),
               XENT_ERROR_INVALID_VALUE,
               "stats of rank %zu cover classes [%.17g, %.17g + %.17g), expected a shard starting at %zu "
               "within num_classes (%zu): the stats must be num_shards (%zu) shards' %s in rank order, tiling the "
               "classes",
               r, off, off, width, begin, V, P, g.op);
    const size_t w = static_cast<size_t>(width);
    own = own || (begin == own_offset && w == own_Vs);
    begins[r + 1] = begin + w;
  }
  XENT_CHECK(begins[P] == V, XENT_ERROR_INVALID_VALUE,
             "the stats of num_shards = %zu shards cover classes [0, %zu), not num_classes = %zu", P, begins[P], V);
  XENT_CHECK(own, XENT_ERROR_INVALID_VALUE,
             "no rank's stats cover this shard's classes [class_offset = %zu, + shard_classes = %zu)", own_offset,
             own_Vs);
  if (target.data == nullptr) return;
  for (size_t i = 0; i < B; ++i) {
    if (target.Ignored(i)) continue;
    const int64_t y = target.At(i);
    for (size_t r = 0; r < P; ++r) {
      double rec[2];
      std::memcpy(rec, stats + r * g.per_rank + kShardHeaderDoubles + i * g.n, sizeof(rec));
      float mzy[2];
      std::memcpy(mzy, &rec[kRowMZy], sizeof(mzy));
      const bool holds = y >= static_cast<int64_t>(begins[r]) && y < static_cast<int64_t>(begins[r + 1]);
      // A NaN row's zy may be NaN anywhere; otherwise only the holder's is a logit.
      XENT_CHECK(std::isnan(rec[kRowS]) || holds != std::isnan(mzy[1]), XENT_ERROR_INVALID_VALUE,
                 "target[%zu] = %lld %s rank %zu's classes [%zu, %zu), but its stats %s target logit for that "
                 "row (different targets in %s, or none?)",
                 i, static_cast<long long>(y), holds ? "lies in" : "lies outside", r, begins[r], begins[r + 1],
                 holds ? "hold no" : "hold a", g.op);
    }
  }
}

void ShardFinishCheck(const CrossEntropyShardProblem& p) {
  ShardCheck(p);
  const bool dot = p.label_smoothing > 0.0f;
  char mismatch[256];
  std::snprintf(mismatch, sizeof(mismatch),
                "label_smoothing = %g, but the stats of rank %%zu were computed with label_smoothing %s 0 (their "
                "size differs: every rank's calls need the same label_smoothing)",
                static_cast<double>(p.label_smoothing), dot ? "=" : ">");
  const GatherLayout g{"xent_cross_entropy_shard_stats",
                       dot ? kTagCeDot : kTagCe,
                       dot ? kTagCe : kTagCeDot,
                       mismatch,
                       CeShardStatsDoubles(p.B, p.label_smoothing),
                       CeShardRowDoubles(p.label_smoothing)};
  CheckGather(g, p.B, p.V, p.P, p.stats_in, p.target, p.offset, p.Vs);
}

void KlShardFinishCheck(const KlShardProblem& p) {
  ShardCheck(p);
  const GatherLayout g{
      "xent_kl_div_logits_shard_stats", kTagKl, kTagKl, "", KlShardStatsDoubles(p.B), kKlShardRowDoubles};
  CheckGather(g, p.B, p.V, p.P, p.stats_in, Labels(), p.offset, p.Vs);
}

void TokShardFinishCheck(const TokenLogprobsShardProblem& p) {
  XENT_CHECK(p.entropy == nullptr || p.with_entropy, XENT_ERROR_INVALID_VALUE,
             "entropy is requested but with_entropy = 0 (the stats need the entropy sums: pass with_entropy = 1 to "
             "xent_token_logprobs_shard_stats and to finish)");
  const bool e = p.with_entropy;
  const char* mismatch = e ? "with_entropy = 1, but the stats of rank %zu were computed with with_entropy = 0 (every "
                             "rank's calls need the same with_entropy)"
                           : "with_entropy = 0, but the stats of rank %zu were computed with with_entropy = 1 (every "
                             "rank's calls need the same with_entropy)";
  const GatherLayout g{"xent_token_logprobs_shard_stats", e ? kTagTokEnt : kTagTok, e ? kTagTok : kTagTokEnt, mismatch,
                       TokShardStatsDoubles(p.B, e),      TokShardRowDoubles(e)};
  const Labels target = p.logprob != nullptr ? p.target : Labels();
  CheckGather(g, p.B, p.V, p.P, p.stats_in, target, 0, 0);
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
  return Call(abi::kCrossEntropyShardStats, args, xent::RunCrossEntropyShardStats, nullptr,
              xent::ShardCheck<xent::CrossEntropyShardProblem>);
}

size_t xent_cross_entropy_shard_stats_doubles(size_t batch, float label_smoothing) {
  // 0 when the size does not fit size_t (no buffer can hold it).
  if (batch > (SIZE_MAX - xent::kShardHeaderDoubles) / 4) return 0;
  return xent::CeShardStatsDoubles(batch, label_smoothing);
}

xent_status xent_token_logprobs_shard_stats_args_init(xent_token_logprobs_shard_stats_args* args, size_t struct_size) {
  return InitArgs(abi::kTokenLogprobsShardStats, args, struct_size);
}
xent_status xent_token_logprobs_shard_stats(const xent_token_logprobs_shard_stats_args* args) {
  return Call(abi::kTokenLogprobsShardStats, args, xent::RunTokenLogprobsShardStats, nullptr,
              xent::ShardCheck<xent::TokenLogprobsShardProblem>);
}

size_t xent_token_logprobs_shard_stats_doubles(size_t batch, int32_t with_entropy) {
  if (batch > (SIZE_MAX - xent::kShardHeaderDoubles) / 4) return 0;
  return xent::TokShardStatsDoubles(batch, with_entropy != 0);
}

xent_status xent_token_logprobs_shard_finish_args_init(xent_token_logprobs_shard_finish_args* args,
                                                       size_t struct_size) {
  return InitArgs(abi::kTokenLogprobsShardFinish, args, struct_size);
}
xent_status xent_token_logprobs_shard_finish(const xent_token_logprobs_shard_finish_args* args) {
  return Call(abi::kTokenLogprobsShardFinish, args, xent::RunTokenLogprobsShardFinish, nullptr,
              xent::TokShardFinishCheck);
}

xent_status xent_token_logprobs_shard_backward_args_init(xent_token_logprobs_shard_backward_args* args,
                                                         size_t struct_size) {
  return InitArgs(abi::kTokenLogprobsShardBackward, args, struct_size);
}
xent_status xent_token_logprobs_shard_backward(const xent_token_logprobs_shard_backward_args* args) {
  return Call(abi::kTokenLogprobsShardBackward, args, xent::RunTokenLogprobsShardBackward, nullptr,
              xent::ShardCheck<xent::TokenLogprobsShardBackwardProblem>);
}

xent_status xent_kl_div_logits_shard_stats_args_init(xent_kl_div_logits_shard_stats_args* args, size_t struct_size) {
  return InitArgs(abi::kKlShardStats, args, struct_size);
}
xent_status xent_kl_div_logits_shard_stats(const xent_kl_div_logits_shard_stats_args* args) {
  return Call(abi::kKlShardStats, args, xent::RunKlShardStats, nullptr, xent::ShardCheck<xent::KlShardProblem>);
}

size_t xent_kl_div_logits_shard_stats_doubles(size_t batch) {
  if (batch > (SIZE_MAX - xent::kShardHeaderDoubles) / 4) return 0;
  return xent::KlShardStatsDoubles(batch);
}

xent_status xent_kl_div_logits_shard_finish_args_init(xent_kl_div_logits_shard_finish_args* args, size_t struct_size) {
  return InitArgs(abi::kKlShardFinish, args, struct_size);
}
xent_status xent_kl_div_logits_shard_finish(const xent_kl_div_logits_shard_finish_args* args) {
  return Call(abi::kKlShardFinish, args, xent::RunKlShardFinish, nullptr, xent::KlShardFinishCheck);
}

xent_status xent_cross_entropy_shard_finish_args_init(xent_cross_entropy_shard_finish_args* args, size_t struct_size) {
  return InitArgs(abi::kCrossEntropyShardFinish, args, struct_size);
}
xent_status xent_cross_entropy_shard_finish(const xent_cross_entropy_shard_finish_args* args) {
  return Call(abi::kCrossEntropyShardFinish, args, xent::RunCrossEntropyShardFinish, nullptr, xent::ShardFinishCheck);
}

}  // extern "C"
