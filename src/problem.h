// The interface between the C API (capi/) and the kernels (src/): one plain
// struct per operation holding its arguments after capi/ has validated them
// (capi/op_table.h maps every field of the public args struct to a member
// here), and the function that runs it. No SIMD types, no engine internals.
#ifndef XENT_SRC_PROBLEM_H_
#define XENT_SRC_PROBLEM_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "src/dtype.h"
#include "src/parallel.h"
#include "xent/xent.h"

namespace xent {

// The public enums, as stored in the args structs' int32_t fields.
enum class Reduction : int32_t { kNone = 0, kMean = 1, kSum = 2, kBatchMean = 3 };
enum class DistKind : int32_t { kLogits = 0, kLogProbs = 1, kProbs = 2 };
enum class Divergence : int32_t { kKl = 0, kJsd = 1 };

// A B x V matrix (row stride in elements).
struct InMat {
  const void* data = nullptr;
  size_t stride = 0;
  DType dtype = DType::kF32;
};
struct OutMat {
  void* data = nullptr;  // nullptr: not wanted
  size_t stride = 0;
  DType dtype = DType::kF32;
};

// Class indices (one per row), or none.
struct Labels {
  const void* data = nullptr;
  size_t stride = 1;
  DType dtype = DType::kI64;
  int64_t ignore_index = -100;
  int64_t At(size_t row) const { return LoadIndex(data, row * stride, dtype); }
  bool Ignored(size_t row) const { return data != nullptr && At(row) == ignore_index; }
};

// Cross-entropy targets: class indices, or a B x V matrix of probabilities.
struct ClassTarget {
  bool soft = false;
  Labels labels;  // !soft
  InMat probs;    // soft
};

// BCE weights: a B x V f32 matrix, or (stride 0) one row for every row.
struct RowWeights {
  const float* data = nullptr;
  size_t stride = 0;
};

// ---------------------------------------------------------------------------
struct CrossEntropyProblem {
  size_t B = 0, V = 0;
  InMat logits;
  ClassTarget target;
  const float* weight = nullptr;
  const float* row_scale = nullptr;
  Reduction reduction = Reduction::kMean;
  float label_smoothing = 0.0f, z_loss = 0.0f, softcap = 0.0f, grad_scale = 1.0f;
  float* loss = nullptr;
  float* row_loss = nullptr;
  float* lse = nullptr;
  OutMat grad;
  Exec exec;
};
xent_status RunCrossEntropy(const CrossEntropyProblem& p);

// Vocab-parallel cross-entropy (both phases): the logits (and grad) are the
// shard's B x Vs columns [offset, offset + Vs) of the B x V matrix; target
// and weight are global.
struct CrossEntropyShardProblem {
  size_t B = 0, V = 0;
  size_t Vs = 0, offset = 0;
  InMat logits;
  Labels target;
  const float* weight = nullptr;
  const float* row_scale = nullptr;
  Reduction reduction = Reduction::kMean;
  float label_smoothing = 0.0f, z_loss = 0.0f, softcap = 0.0f, grad_scale = 1.0f;
  double* stats_out = nullptr;       // phase 1: CeShardStatsDoubles(B, label_smoothing)
  const double* stats_in = nullptr;  // phase 2: P x that, rank order
  size_t P = 0;
  float* loss = nullptr;
  float* row_loss = nullptr;
  float* lse = nullptr;
  OutMat grad;
  Exec exec;
};
// One rank's statistics (doubles, any alignment; the caller gathers them as
// raw bytes): a header of kShardHeaderDoubles - a tag naming the op and the
// layout, B, and the shard's columns (offset, width), which capi checks
// against the other ranks' - then B rows of CeShardRowDoubles each:
//   [M, zy as two f32] [S] (+ [D] [W] with label smoothing)
// M is an f32 logit (or -inf) and zy one, so f32 holds them exactly; S, D, W
// are f64 sums. Flags take no words: a NaN row has S = NaN, and zy is NaN
// when the shard does not hold the row's target (finish derives which shard
// holds it from the target and the headers, and checks zy there). The header
// is per rank, so a row costs 16 bytes (32 with smoothing) in the gather.
enum ShardHeader : size_t { kHdrTag, kHdrBatch, kHdrOffset, kHdrWidth, kShardHeaderDoubles };
enum ShardRow : size_t { kRowMZy, kRowS, kRowD, kRowW };
// Tags: arbitrary, exact in a double, unlike each other and small values.
constexpr double kTagCe = 1480803585.0;     // 0x58434501 "XCE", 1
constexpr double kTagCeDot = 1480803586.0;  // with D and W
inline size_t CeShardRowDoubles(float label_smoothing) { return label_smoothing > 0.0f ? 4 : 2; }
// A header field of one rank's stats (any alignment).
inline double ShardHeaderAt(const double* rank_stats, ShardHeader k) {
  double v;
  std::memcpy(&v, rank_stats + k, sizeof(v));
  return v;
}
// One rank's doubles; the caller checked that B x 4 fits.
inline size_t CeShardStatsDoubles(size_t B, float label_smoothing) {
  return kShardHeaderDoubles + B * CeShardRowDoubles(label_smoothing);
}
// The ranks' first columns from P ranks' stats of per_rank doubles each (capi
// checked that they tile [0, V)): begin[0 .. P], begin[P] = V.
inline void ShardBegins(const double* stats, size_t P, size_t per_rank, size_t* begin) {
  begin[0] = 0;
  for (size_t r = 0; r < P; ++r)
    begin[r + 1] = begin[r] + static_cast<size_t>(ShardHeaderAt(stats + r * per_rank, kHdrWidth));
}
xent_status RunCrossEntropyShardStats(const CrossEntropyShardProblem& p);
xent_status RunCrossEntropyShardFinish(const CrossEntropyShardProblem& p);

// Vocab-parallel token log-probs: shard_stats (logits = the shard's B x Vs
// columns, target global) and shard_finish (stats_in only). Their rows:
//   [M, zy as two f32] [S] (+ [U] with_entropy)
// in the layout above (U where the cross-entropy's D is), U = sum exp(z - M)
// (z - M), zy the target's z (temperature and softcap applied).
struct TokenLogprobsShardProblem {
  size_t B = 0, V = 0;
  size_t Vs = 0, offset = 0;
  InMat logits;
  Labels target;  // data == nullptr: none
  float temperature = 1.0f, softcap = 0.0f;
  bool with_entropy = false;
  double* stats_out = nullptr;
  const double* stats_in = nullptr;
  size_t P = 0;
  float* logprob = nullptr;
  float* entropy = nullptr;
  float* lse = nullptr;
  Exec exec;
};
constexpr double kTagTok = 1480803587.0;     // token log-probs
constexpr double kTagTokEnt = 1480803588.0;  // with U
inline size_t TokShardRowDoubles(bool with_entropy) { return with_entropy ? 3 : 2; }
inline size_t TokShardStatsDoubles(size_t B, bool with_entropy) {
  return kShardHeaderDoubles + B * TokShardRowDoubles(with_entropy);
}
struct TokenLogprobsShardBackwardProblem {
  size_t B = 0, V = 0;
  size_t Vs = 0, offset = 0;
  InMat logits;
  Labels target;
  float temperature = 1.0f, softcap = 0.0f;
  const float* grad_logprob = nullptr;
  const float* grad_entropy = nullptr;
  const float* lse = nullptr;
  const float* entropy = nullptr;
  OutMat grad;
  Exec exec;
};
xent_status RunTokenLogprobsShardBackward(const TokenLogprobsShardBackwardProblem& p);
xent_status RunTokenLogprobsShardStats(const TokenLogprobsShardProblem& p);
xent_status RunTokenLogprobsShardFinish(const TokenLogprobsShardProblem& p);

struct BceProblem {
  size_t B = 0, V = 0;
  InMat logits, target;
  RowWeights weight;
  const float* pos_weight = nullptr;
  Reduction reduction = Reduction::kMean;
  float grad_scale = 1.0f;
  float* loss = nullptr;
  float* row_loss = nullptr;
  OutMat elem_loss;  // f32
  OutMat grad;
  Exec exec;
};
xent_status RunBce(const BceProblem& p);

struct DivergenceProblem {
  size_t B = 0, V = 0;
  InMat input;  // Q, student
  DistKind input_kind = DistKind::kLogProbs;
  InMat target;  // P, teacher
  DistKind target_kind = DistKind::kProbs;
  Divergence divergence = Divergence::kKl;
  float beta = 0.5f, temperature = 1.0f;
  bool t2_scaling = false;
  Reduction reduction = Reduction::kMean;
  float grad_scale = 1.0f;
  Labels labels;  // data == nullptr: no row mask
  float* loss = nullptr;
  float* row_loss = nullptr;
  OutMat elem_loss;  // f32
  OutMat grad_input, grad_target;
  Exec exec;
};
xent_status RunDivergence(const DivergenceProblem& p);

// Vocab-parallel distillation KL (both phases): input / target are the
// shards' B x Vs student / teacher logits. Rows of the stats:
//   [Mq, Mp as two f32] [Sq] [Sp] [KL of the shard's own distributions]
struct KlShardProblem {
  size_t B = 0, V = 0;
  size_t Vs = 0, offset = 0;
  InMat input, target;
  float temperature = 1.0f;
  bool t2_scaling = false;
  Reduction reduction = Reduction::kBatchMean;
  float grad_scale = 1.0f;
  Labels labels;
  double* stats_out = nullptr;
  const double* stats_in = nullptr;
  size_t P = 0;
  float* loss = nullptr;
  float* row_loss = nullptr;
  OutMat grad_input;
  Exec exec;
};
constexpr double kTagKl = 1480803589.0;
constexpr size_t kKlShardRowDoubles = 4;
inline size_t KlShardStatsDoubles(size_t B) { return kShardHeaderDoubles + B * kKlShardRowDoubles; }
xent_status RunKlShardStats(const KlShardProblem& p);
xent_status RunKlShardFinish(const KlShardProblem& p);

struct SoftmaxProblem {
  size_t B = 0, V = 0;
  InMat logits;
  float temperature = 1.0f;
  OutMat probs, log_probs;
  float* lse = nullptr;
  float* entropy = nullptr;
  Exec exec;
};
xent_status RunSoftmax(const SoftmaxProblem& p);

struct SoftmaxBackwardProblem {
  size_t B = 0, V = 0;
  InMat output;                             // the forward's y
  DistKind output_kind = DistKind::kProbs;  // kProbs or kLogProbs
  InMat grad_output;
  float temperature = 1.0f;
  OutMat grad_input;
  Exec exec;
};
xent_status RunSoftmaxBackward(const SoftmaxBackwardProblem& p);

struct TokenLogprobsProblem {
  size_t B = 0, V = 0;
  InMat logits;
  Labels target;  // data == nullptr when neither logprob nor ref_logprob is wanted
  float temperature = 1.0f, softcap = 0.0f;
  float* logprob = nullptr;
  float* entropy = nullptr;
  float* lse = nullptr;
  Exec exec;
  // Per-token statistics (src/token_stats.cc).
  int64_t* argmax = nullptr;
  float* argmax_logprob = nullptr;
  int32_t topk = 0;
  float* topk_logprobs = nullptr;   // B x topk
  int64_t* topk_indices = nullptr;  // B x topk
  float* topk_mass = nullptr;
  InMat ref_logits;  // data == nullptr: none
  float* ref_logprob = nullptr;
  float* ref_lse = nullptr;
  float* kl = nullptr;
};
xent_status RunTokenLogprobs(const TokenLogprobsProblem& p);
// The per-token statistics pass (argmax, top-k, reference KL and the rest).
xent_status RunTokenStats(const TokenLogprobsProblem& p);

struct TokenLogprobsBackwardProblem {
  size_t B = 0, V = 0;
  InMat logits;
  Labels target;  // data == nullptr when grad_logprob == nullptr
  float temperature = 1.0f, softcap = 0.0f;
  const float* grad_logprob = nullptr;
  const float* grad_entropy = nullptr;
  const float* lse = nullptr;
  const float* entropy = nullptr;
  int32_t topk = 0;
  const int64_t* topk_indices = nullptr;      // B x topk
  const float* grad_topk_logprobs = nullptr;  // B x topk
  InMat ref_logits;
  const float* grad_kl = nullptr;
  const float* ref_lse = nullptr;
  const float* kl = nullptr;
  OutMat grad;
  Exec exec;
  // A column shard's first class (vocab-parallel): target holds global
  // indices; a target outside [class_offset, class_offset + V) adds its
  // -g_lp p term but no one-hot.
  int64_t class_offset = 0;
};
xent_status RunTokenLogprobsBackward(const TokenLogprobsBackwardProblem& p);

enum class KlEstimator : int32_t { kK1 = 0, kK2 = 1, kK3 = 2, kAbs = 3 };

struct KlPenaltyProblem {
  size_t B = 0, V = 0;
  const float* logprob = nullptr;
  const float* ref_logprob = nullptr;
  KlEstimator estimator = KlEstimator::kK3;
  bool straight_through = false;
  float log_ratio_clamp = 0.0f, value_clamp = 0.0f;
  const float* grad_output = nullptr;
  float* penalty = nullptr;
  float* grad_logprob = nullptr;
  Exec exec;
};
xent_status RunKlPenalty(const KlPenaltyProblem& p);

// Fused linear cross-entropy: hidden (B x H), linear_weight (V x H) and
// linear_bias (1 x V; data == nullptr when absent) as InMat (stride in
// elements), the class-index cross-entropy's options, three gradients.
struct LinearCrossEntropyProblem {
  size_t B = 0, V = 0, H = 0;
  InMat hidden, linear_weight, linear_bias;
  Labels target;
  const float* weight = nullptr;
  const float* row_scale = nullptr;
  Reduction reduction = Reduction::kMean;
  float label_smoothing = 0.0f, z_loss = 0.0f, softcap = 0.0f, grad_scale = 1.0f;
  int32_t accumulate = 0;    // XENT_ACCUMULATE_* bits
  size_t scratch_bytes = 0;  // 0 = default
  float* loss = nullptr;
  float* row_loss = nullptr;
  float* lse = nullptr;
  OutMat grad_hidden, grad_linear_weight, grad_linear_bias;
  Exec exec;
};
xent_status RunLinearCrossEntropy(const LinearCrossEntropyProblem& p);
// The smallest scratch_bytes that holds one row of p's block of logits and
// its operand tiles (a smaller budget is an error).
size_t LinearCrossEntropyMinScratch(const LinearCrossEntropyProblem& p);
// The budget that scratch_bytes = 0 stands for: the larger of
// XENT_LINEAR_CE_DEFAULT_SCRATCH_BYTES and min(512, ceil(B / 4)) rows of
// 4 (V + H) bytes (xent.h).
size_t LinearCrossEntropyDefaultScratch(const LinearCrossEntropyProblem& p);

}  // namespace xent

#endif  // XENT_SRC_PROBLEM_H_
