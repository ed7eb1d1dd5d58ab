// One description per operation: every field of its public args struct, with
// its role, shape, dtype rule, domain, default and in-place partner, and where
// its validated value goes in the operation's problem struct (src/problem.h).
//
// This table is the single place that says what an args struct means. It
// drives the library's xent_*_args_init defaults and its validation and alias
// checks (capi/validate.cc), and the tests' case builders (tests/common/).
// Adding an operation: see ARCHITECTURE.md ("Adding an operation").
#ifndef XENT_CAPI_OP_TABLE_H_
#define XENT_CAPI_OP_TABLE_H_

#include <cstddef>
#include <cstdint>

#include "src/problem.h"
#include "xent/xent.h"

namespace xent {
namespace abi {

enum class Role : uint8_t {
  kInMat,         // const void*, B x V; stride and dtype fields
  kOutMat,        // void*, B x V, optional; stride and dtype fields
  kClassTarget,   // const void*: B class indices (I32/I64 dtype, index stride) or
                  // a B x V probability matrix (a float dtype; f32 or `from`'s)
  kLabels,        // const void*, B class indices (I32/I64), index stride, values in
                  // [0, V) or the ignore_index field (aux)
  kRowWeights,    // const float*, B x V with stride, or stride 0: one row for all
  kInVec,         // const float*, `len` values, optional
  kOutVec,        // float*, `len` values, optional
  kOutIdxVec,     // int64_t*, `len` class indices written, optional
  kInIdxVec,      // const int64_t*, `len` class indices, each in [0, V), optional
  kCount,         // int32_t in [0, valid] (and <= V when `le_v`): a length (top-k)
  kF32,           // float option, checked against `domain`
  kEnum,          // int32_t, one of the values in the `valid` bit mask
  kFlag,          // int32_t, 0 or 1
  kI64,           // int64_t option, any value (ignore_index)
  kReserved,      // int32_t, must be 0
  kNumThreads,    // int32_t >= 0
  kParallelFor,   // xent_parallel_for_fn, optional
  kParallelUser,  // void*, passed through
  kHiddenSize,    // size_t >= 1: the H of matrices with Len::kH columns (before them in the table)
  kSize,          // size_t option, any value
  kShardClasses,  // size_t >= 1: the Vs of matrices with Len::kVs columns (before them in the table)
  kShardCount,    // size_t >= 1: the P of Len::kPStats vectors (before them in the table)
  kOutF64Vec,     // double*, `len` values written
  kInF64Vec,      // const double*, `len` values
};

// Lengths: 1, the batch B, the classes V, the hidden size H (kHiddenSize),
// B x the value of the kCount field named by `from` (kBK), a column shard's
// classes Vs (kShardClasses), one rank's shard statistics
// (CeShardStatsDoubles of B and the label_smoothing field, or
// TokShardStatsDoubles of B and the with_entropy field, before them in the
// table, or KlShardStatsDoubles of B for an op with neither: kStats), P (kShardCount) x that (kPStats).
enum class Len : uint8_t { kOne, kB, kV, kH, kBK, kVs, kStats, kPStats };

enum class Domain : uint8_t {
  kAny,
  kFinite,
  kNonNegative,   // finite and >= 0
  kUnit,          // in [0, 1]
  kDivisor,       // finite, > 0 and >= FLT_MIN (its reciprocal is finite)
  kDivisorOrOff,  // 0 (off), or a divisor
};

enum class DTypeRule : uint8_t {
  kFloat,        // F32, BF16 or F16
  kFloatOrFrom,  // F32 or the dtype of input `from`
  kSameAsFrom,   // exactly the dtype of input `from`
  kOutFrom,      // output: AUTO (= `from`'s dtype), F32 or `from`'s dtype
  kF32,          // no dtype field: always f32
};

constexpr uint16_t kNone = 0xFFFF;

struct Field {
  const char* name = nullptr;
  Role role = Role::kReserved;
  uint16_t off = kNone;         // the field in the args struct
  uint16_t prob = kNone;        // its validated value in the problem struct
  uint16_t stride_off = kNone;  // matrices, labels: their stride field
  uint16_t dtype_off = kNone;   // matrices, labels, targets: their dtype field
  uint16_t aux_off = kNone;     // labels, class targets: the ignore_index field
  Len len = Len::kOne;
  Domain domain = Domain::kAny;
  DTypeRule rule = DTypeRule::kFloat;
  const char* from = nullptr;       // the input a dtype rule refers to
  const char* in_place = nullptr;   // outputs: the input they may be exactly
  const char* needed_by = nullptr;  // required (and read) only when one of these fields
                                    // ("a|b") is given
  const char* needs = nullptr;      // given, requires these fields ("a|b") to be given
  bool le_v = false;                // kCount: also <= V
  bool required = false;
  uint32_t valid = 0;                  // enums: accepted values, bit i = value i
  const char* valid_text = nullptr;    // enums: the accepted values, for messages
  double def = 0;                      // default: the option's value, or a matrix's dtype
  Len rows = Len::kB, cols = Len::kV;  // matrices (kInMat, kOutMat): rows x cols

  // Builders, so that a table row reads as a sentence.
  constexpr Field Stride(uint16_t o) const {
    Field f = *this;
    f.stride_off = o;
    return f;
  }
  constexpr Field DT(uint16_t o, int32_t d) const {
    Field f = *this;
    f.dtype_off = o;
    f.def = d;
    return f;
  }
  constexpr Field Rule(DTypeRule r, const char* input) const {
    Field f = *this;
    f.rule = r;
    f.from = input;
    return f;
  }
  constexpr Field Ignore(uint16_t o) const {
    Field f = *this;
    f.aux_off = o;
    return f;
  }
  constexpr Field Required() const {
    Field f = *this;
    f.required = true;
    return f;
  }
  constexpr Field InPlace(const char* input) const {
    Field f = *this;
    f.in_place = input;
    return f;
  }
  constexpr Field NeededBy(const char* output) const {
    Field f = *this;
    f.needed_by = output;
    return f;
  }
  constexpr Field Dims(Len r, Len c) const {
    Field f = *this;
    f.rows = r;
    f.cols = c;
    return f;
  }
  constexpr Field Needs(const char* fields) const {
    Field f = *this;
    f.needs = fields;
    return f;
  }
  constexpr Field Of(const char* count) const {
    Field f = *this;
    f.from = count;
    return f;
  }
};

constexpr Field Make(const char* name, Role role, uint16_t off, uint16_t prob) {
  Field f;
  f.name = name;
  f.role = role;
  f.off = off;
  f.prob = prob;
  return f;
}
constexpr Field InMatrix(const char* n, uint16_t off, uint16_t prob) { return Make(n, Role::kInMat, off, prob); }
constexpr Field OutMatrix(const char* n, uint16_t off, uint16_t prob, const char* from) {
  return Make(n, Role::kOutMat, off, prob).Rule(DTypeRule::kOutFrom, from);
}
constexpr Field Vec(const char* n, Role role, uint16_t off, uint16_t prob, Len len) {
  Field f = Make(n, role, off, prob);
  f.len = len;
  return f;
}
constexpr Field F32(const char* n, uint16_t off, uint16_t prob, Domain d, double def) {
  Field f = Make(n, Role::kF32, off, prob);
  f.domain = d;
  f.def = def;
  return f;
}
constexpr Field Enum(const char* n, uint16_t off, uint16_t prob, uint32_t valid, const char* text, int32_t def) {
  Field f = Make(n, Role::kEnum, off, prob);
  f.valid = valid;
  f.valid_text = text;
  f.def = def;
  return f;
}
constexpr Field Plain(const char* n, Role role, uint16_t off, uint16_t prob, double def = 0) {
  Field f = Make(n, role, off, prob);
  f.def = def;
  return f;
}
// A top-k length: 0 to XENT_TOPK_MAX (and <= V when le_v).
constexpr Field TopK(const char* n, uint16_t off, uint16_t prob, bool le_v) {
  Field f = Make(n, Role::kCount, off, prob);
  f.valid = XENT_TOPK_MAX;
  f.le_v = le_v;
  return f;
}

struct OpDesc {
  const char* name;       // "cross_entropy": the C function is xent_<name>
  const char* args_type;  // "xent_cross_entropy_args"
  size_t args_size;       // sizeof(the args struct)
  const Field* fields;
  size_t num_fields;
  bool needs_output;  // at least one output must be requested
  size_t min_size;    // sizeof the first published struct (older callers' may be
                      // this short: the fields past it take their defaults)
  bool one_class;     // num_classes must be 1 (per-row values only)
};

// Shared enum texts.
constexpr uint32_t kReductions = 0x7, kReductionsBatchMean = 0xF;
constexpr const char* kReductionText = "one of XENT_REDUCTION_NONE (0), MEAN (1), SUM (2)";
constexpr const char* kReductionBatchMeanText = "one of XENT_REDUCTION_NONE (0), MEAN (1), SUM (2), BATCHMEAN (3)";
constexpr const char* kKindText = "XENT_DIST_LOGITS (0), XENT_DIST_LOG_PROBS (1) or XENT_DIST_PROBS (2)";

// Offsets: A(field) in the args struct, P(member) in the problem struct.
#define XENT_OFF(type, member) static_cast<uint16_t>(offsetof(type, member))

// ---------------------------------------------------------------------------
#define A(f) XENT_OFF(xent_cross_entropy_args, f)
#define P(f) XENT_OFF(CrossEntropyProblem, f)
constexpr Field kCrossEntropyFields[] = {
    InMatrix("logits", A(logits), P(logits)).Stride(A(logits_stride)).DT(A(logits_dtype), XENT_F32).Required(),
    Make("target", Role::kClassTarget, A(target), P(target))
        .Stride(A(target_stride))
        .DT(A(target_dtype), XENT_I64)
        .Ignore(A(ignore_index))
        .Rule(DTypeRule::kFloatOrFrom, "logits")
        .Required(),
    Vec("weight", Role::kInVec, A(weight), P(weight), Len::kV),
    Vec("row_scale", Role::kInVec, A(row_scale), P(row_scale), Len::kB),
    Plain("ignore_index", Role::kI64, A(ignore_index), kNone, -100),
    Enum("reduction", A(reduction), P(reduction), kReductions, kReductionText, XENT_REDUCTION_MEAN),
    F32("label_smoothing", A(label_smoothing), P(label_smoothing), Domain::kUnit, 0),
    F32("z_loss", A(z_loss), P(z_loss), Domain::kNonNegative, 0),
    F32("softcap", A(softcap), P(softcap), Domain::kDivisorOrOff, 0),
    F32("grad_scale", A(grad_scale), P(grad_scale), Domain::kFinite, 1),
    Plain("reserved0", Role::kReserved, A(reserved0), kNone),
    Vec("loss", Role::kOutVec, A(loss), P(loss), Len::kOne),
    Vec("row_loss", Role::kOutVec, A(row_loss), P(row_loss), Len::kB),
    Vec("lse", Role::kOutVec, A(lse), P(lse), Len::kB),
    OutMatrix("grad", A(grad), P(grad), "logits")
        .Stride(A(grad_stride))
        .DT(A(grad_dtype), XENT_DTYPE_AUTO)
        .InPlace("logits"),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

#define A(f) XENT_OFF(xent_bce_args, f)
#define P(f) XENT_OFF(BceProblem, f)
constexpr Field kBceFields[] = {
    InMatrix("logits", A(logits), P(logits)).Stride(A(logits_stride)).DT(A(logits_dtype), XENT_F32).Required(),
    InMatrix("target", A(target), P(target))
        .Stride(A(target_stride))
        .DT(A(target_dtype), XENT_F32)
        .Rule(DTypeRule::kFloatOrFrom, "logits")
        .Required(),
    Make("weight", Role::kRowWeights, A(weight), P(weight)).Stride(A(weight_stride)),
    Vec("pos_weight", Role::kInVec, A(pos_weight), P(pos_weight), Len::kV),
    Enum("reduction", A(reduction), P(reduction), kReductionsBatchMean, kReductionBatchMeanText, XENT_REDUCTION_MEAN),
    F32("grad_scale", A(grad_scale), P(grad_scale), Domain::kFinite, 1),
    Vec("loss", Role::kOutVec, A(loss), P(loss), Len::kOne),
    Vec("row_loss", Role::kOutVec, A(row_loss), P(row_loss), Len::kB),
    Make("elem_loss", Role::kOutMat, A(elem_loss), P(elem_loss))
        .Stride(A(elem_loss_stride))
        .Rule(DTypeRule::kF32, nullptr),
    OutMatrix("grad", A(grad), P(grad), "logits")
        .Stride(A(grad_stride))
        .DT(A(grad_dtype), XENT_DTYPE_AUTO)
        .InPlace("logits"),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

#define A(f) XENT_OFF(xent_divergence_args, f)
#define P(f) XENT_OFF(DivergenceProblem, f)
constexpr Field kDivergenceFields[] = {
    InMatrix("input", A(input), P(input)).Stride(A(input_stride)).DT(A(input_dtype), XENT_F32).Required(),
    Enum("input_kind", A(input_kind), P(input_kind), 0x7, kKindText, XENT_DIST_LOG_PROBS),
    InMatrix("target", A(target), P(target))
        .Stride(A(target_stride))
        .DT(A(target_dtype), XENT_F32)
        .Rule(DTypeRule::kSameAsFrom, "input")
        .Required(),
    Enum("target_kind", A(target_kind), P(target_kind), 0x7, kKindText, XENT_DIST_PROBS),
    Enum("divergence", A(divergence), P(divergence), 0x3, "XENT_DIVERGENCE_KL (0) or XENT_DIVERGENCE_JSD (1)",
         XENT_DIVERGENCE_KL),
    F32("beta", A(beta), P(beta), Domain::kUnit, 0.5),
    F32("temperature", A(temperature), P(temperature), Domain::kDivisor, 1),
    Plain("t2_scaling", Role::kFlag, A(t2_scaling), P(t2_scaling)),
    Enum("reduction", A(reduction), P(reduction), kReductionsBatchMean, kReductionBatchMeanText, XENT_REDUCTION_MEAN),
    F32("grad_scale", A(grad_scale), P(grad_scale), Domain::kFinite, 1),
    Make("labels", Role::kLabels, A(labels), P(labels))
        .Stride(A(labels_stride))
        .DT(A(labels_dtype), XENT_I64)
        .Ignore(A(ignore_index)),
    Plain("ignore_index", Role::kI64, A(ignore_index), kNone, -100),
    Plain("reserved0", Role::kReserved, A(reserved0), kNone),
    Vec("loss", Role::kOutVec, A(loss), P(loss), Len::kOne),
    Vec("row_loss", Role::kOutVec, A(row_loss), P(row_loss), Len::kB),
    Make("elem_loss", Role::kOutMat, A(elem_loss), P(elem_loss))
        .Stride(A(elem_loss_stride))
        .Rule(DTypeRule::kF32, nullptr),
    OutMatrix("grad_input", A(grad_input), P(grad_input), "input")
        .Stride(A(grad_input_stride))
        .DT(A(grad_input_dtype), XENT_DTYPE_AUTO)
        .InPlace("input"),
    OutMatrix("grad_target", A(grad_target), P(grad_target), "target")
        .Stride(A(grad_target_stride))
        .DT(A(grad_target_dtype), XENT_DTYPE_AUTO),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("reserved1", Role::kReserved, A(reserved1), kNone),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

#define A(f) XENT_OFF(xent_softmax_args, f)
#define P(f) XENT_OFF(SoftmaxProblem, f)
constexpr Field kSoftmaxFields[] = {
    InMatrix("logits", A(logits), P(logits)).Stride(A(logits_stride)).DT(A(logits_dtype), XENT_F32).Required(),
    F32("temperature", A(temperature), P(temperature), Domain::kDivisor, 1),
    OutMatrix("probs", A(probs), P(probs), "logits")
        .Stride(A(probs_stride))
        .DT(A(probs_dtype), XENT_DTYPE_AUTO)
        .InPlace("logits"),
    OutMatrix("log_probs", A(log_probs), P(log_probs), "logits")
        .Stride(A(log_probs_stride))
        .DT(A(log_probs_dtype), XENT_DTYPE_AUTO)
        .InPlace("logits"),
    Vec("lse", Role::kOutVec, A(lse), P(lse), Len::kB),
    Vec("entropy", Role::kOutVec, A(entropy), P(entropy), Len::kB),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("reserved0", Role::kReserved, A(reserved0), kNone),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

#define A(f) XENT_OFF(xent_softmax_backward_args, f)
#define P(f) XENT_OFF(SoftmaxBackwardProblem, f)
constexpr Field kSoftmaxBackwardFields[] = {
    InMatrix("output", A(output), P(output)).Stride(A(output_stride)).DT(A(output_dtype), XENT_F32).Required(),
    Enum("output_kind", A(output_kind), P(output_kind), 0x6, "XENT_DIST_PROBS (2) or XENT_DIST_LOG_PROBS (1)",
         XENT_DIST_PROBS),
    InMatrix("grad_output", A(grad_output), P(grad_output))
        .Stride(A(grad_output_stride))
        .DT(A(grad_output_dtype), XENT_F32)
        .Rule(DTypeRule::kSameAsFrom, "output")
        .Required(),
    F32("temperature", A(temperature), P(temperature), Domain::kDivisor, 1),
    OutMatrix("grad_input", A(grad_input), P(grad_input), "grad_output")
        .Stride(A(grad_input_stride))
        .DT(A(grad_input_dtype), XENT_DTYPE_AUTO)
        .InPlace("grad_output")
        .Required(),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

#define A(f) XENT_OFF(xent_token_logprobs_args, f)
#define P(f) XENT_OFF(TokenLogprobsProblem, f)
constexpr Field kTokenLogprobsFields[] = {
    InMatrix("logits", A(logits), P(logits)).Stride(A(logits_stride)).DT(A(logits_dtype), XENT_F32).Required(),
    Make("target", Role::kLabels, A(target), P(target))
        .Stride(A(target_stride))
        .DT(A(target_dtype), XENT_I64)
        .Ignore(A(ignore_index))
        .NeededBy("logprob|ref_logprob"),
    Plain("ignore_index", Role::kI64, A(ignore_index), kNone, -100),
    F32("temperature", A(temperature), P(temperature), Domain::kDivisor, 1),
    F32("softcap", A(softcap), P(softcap), Domain::kDivisorOrOff, 0),
    Vec("logprob", Role::kOutVec, A(logprob), P(logprob), Len::kB),
    Vec("entropy", Role::kOutVec, A(entropy), P(entropy), Len::kB),
    Vec("lse", Role::kOutVec, A(lse), P(lse), Len::kB),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("reserved0", Role::kReserved, A(reserved0), kNone),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
    // Appended after 0.1.0.
    Vec("argmax", Role::kOutIdxVec, A(argmax), P(argmax), Len::kB),
    Vec("argmax_logprob", Role::kOutVec, A(argmax_logprob), P(argmax_logprob), Len::kB),
    TopK("topk", A(topk), P(topk), true),
    Plain("reserved1", Role::kReserved, A(reserved1), kNone),
    Vec("topk_logprobs", Role::kOutVec, A(topk_logprobs), P(topk_logprobs), Len::kBK).Of("topk"),
    Vec("topk_indices", Role::kOutIdxVec, A(topk_indices), P(topk_indices), Len::kBK).Of("topk"),
    Vec("topk_mass", Role::kOutVec, A(topk_mass), P(topk_mass), Len::kB),
    InMatrix("ref_logits", A(ref_logits), P(ref_logits))
        .Stride(A(ref_logits_stride))
        .DT(A(ref_logits_dtype), XENT_F32)
        .Rule(DTypeRule::kSameAsFrom, "logits"),
    Plain("reserved2", Role::kReserved, A(reserved2), kNone),
    Vec("ref_logprob", Role::kOutVec, A(ref_logprob), P(ref_logprob), Len::kB).Needs("ref_logits|target"),
    Vec("ref_lse", Role::kOutVec, A(ref_lse), P(ref_lse), Len::kB).Needs("ref_logits"),
    Vec("kl", Role::kOutVec, A(kl), P(kl), Len::kB).Needs("ref_logits"),
};
#undef A
#undef P

#define A(f) XENT_OFF(xent_token_logprobs_backward_args, f)
#define P(f) XENT_OFF(TokenLogprobsBackwardProblem, f)
constexpr Field kTokenLogprobsBackwardFields[] = {
    InMatrix("logits", A(logits), P(logits)).Stride(A(logits_stride)).DT(A(logits_dtype), XENT_F32).Required(),
    Make("target", Role::kLabels, A(target), P(target))
        .Stride(A(target_stride))
        .DT(A(target_dtype), XENT_I64)
        .Ignore(A(ignore_index))
        .NeededBy("grad_logprob"),
    Plain("ignore_index", Role::kI64, A(ignore_index), kNone, -100),
    F32("temperature", A(temperature), P(temperature), Domain::kDivisor, 1),
    F32("softcap", A(softcap), P(softcap), Domain::kDivisorOrOff, 0),
    Vec("grad_logprob", Role::kInVec, A(grad_logprob), P(grad_logprob), Len::kB),
    Vec("grad_entropy", Role::kInVec, A(grad_entropy), P(grad_entropy), Len::kB),
    Vec("lse", Role::kInVec, A(lse), P(lse), Len::kB),
    Vec("entropy", Role::kInVec, A(entropy), P(entropy), Len::kB),
    TopK("topk", A(topk), P(topk), false),
    Plain("reserved0", Role::kReserved, A(reserved0), kNone),
    Vec("topk_indices", Role::kInIdxVec, A(topk_indices), P(topk_indices), Len::kBK).Of("topk"),
    Vec("grad_topk_logprobs", Role::kInVec, A(grad_topk_logprobs), P(grad_topk_logprobs), Len::kBK)
        .Of("topk")
        .Needs("topk_indices"),
    InMatrix("ref_logits", A(ref_logits), P(ref_logits))
        .Stride(A(ref_logits_stride))
        .DT(A(ref_logits_dtype), XENT_F32)
        .Rule(DTypeRule::kSameAsFrom, "logits"),
    Plain("reserved1", Role::kReserved, A(reserved1), kNone),
    Vec("grad_kl", Role::kInVec, A(grad_kl), P(grad_kl), Len::kB).Needs("ref_logits"),
    Vec("ref_lse", Role::kInVec, A(ref_lse), P(ref_lse), Len::kB),
    Vec("kl", Role::kInVec, A(kl), P(kl), Len::kB),
    OutMatrix("grad", A(grad), P(grad), "logits")
        .Stride(A(grad_stride))
        .DT(A(grad_dtype), XENT_DTYPE_AUTO)
        .InPlace("logits")
        .Required(),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

#define A(f) XENT_OFF(xent_kl_penalty_args, f)
#define P(f) XENT_OFF(KlPenaltyProblem, f)
constexpr Field kKlPenaltyFields[] = {
    Vec("logprob", Role::kInVec, A(logprob), P(logprob), Len::kB).Required(),
    Vec("ref_logprob", Role::kInVec, A(ref_logprob), P(ref_logprob), Len::kB).Required(),
    Enum("estimator", A(estimator), P(estimator), 0xF,
         "one of XENT_KL_K1 (0), XENT_KL_K2 (1), XENT_KL_K3 (2), XENT_KL_ABS (3)", XENT_KL_K3),
    Plain("straight_through", Role::kFlag, A(straight_through), P(straight_through)),
    F32("log_ratio_clamp", A(log_ratio_clamp), P(log_ratio_clamp), Domain::kNonNegative, 0),
    F32("value_clamp", A(value_clamp), P(value_clamp), Domain::kNonNegative, 0),
    Vec("grad_output", Role::kInVec, A(grad_output), P(grad_output), Len::kB),
    Vec("penalty", Role::kOutVec, A(penalty), P(penalty), Len::kB),
    Vec("grad_logprob", Role::kOutVec, A(grad_logprob), P(grad_logprob), Len::kB),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("reserved0", Role::kReserved, A(reserved0), kNone),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

#define A(f) XENT_OFF(xent_linear_cross_entropy_args, f)
#define P(f) XENT_OFF(LinearCrossEntropyProblem, f)
constexpr Field kLinearCrossEntropyFields[] = {
    Plain("hidden_size", Role::kHiddenSize, A(hidden_size), P(H)),
    InMatrix("hidden", A(hidden), P(hidden))
        .Dims(Len::kB, Len::kH)
        .Stride(A(hidden_stride))
        .DT(A(hidden_dtype), XENT_F32)
        .Required(),
    InMatrix("linear_weight", A(linear_weight), P(linear_weight))
        .Dims(Len::kV, Len::kH)
        .Stride(A(linear_weight_stride))
        .DT(A(linear_weight_dtype), XENT_F32)
        .Rule(DTypeRule::kSameAsFrom, "hidden")
        .Required(),
    InMatrix("linear_bias", A(linear_bias), P(linear_bias))
        .Dims(Len::kOne, Len::kV)
        .DT(A(linear_bias_dtype), XENT_F32)
        .Rule(DTypeRule::kFloatOrFrom, "linear_weight"),
    Make("target", Role::kLabels, A(target), P(target))
        .Stride(A(target_stride))
        .DT(A(target_dtype), XENT_I64)
        .Ignore(A(ignore_index))
        .Required(),
    Vec("weight", Role::kInVec, A(weight), P(weight), Len::kV),
    Vec("row_scale", Role::kInVec, A(row_scale), P(row_scale), Len::kB),
    Plain("ignore_index", Role::kI64, A(ignore_index), kNone, -100),
    Enum("reduction", A(reduction), P(reduction), kReductions, kReductionText, XENT_REDUCTION_MEAN),
    F32("label_smoothing", A(label_smoothing), P(label_smoothing), Domain::kUnit, 0),
    F32("z_loss", A(z_loss), P(z_loss), Domain::kNonNegative, 0),
    F32("softcap", A(softcap), P(softcap), Domain::kDivisorOrOff, 0),
    F32("grad_scale", A(grad_scale), P(grad_scale), Domain::kFinite, 1),
    Enum("accumulate", A(accumulate), P(accumulate), 0xFF,
         "a bit mask of XENT_ACCUMULATE_GRAD_HIDDEN (1), XENT_ACCUMULATE_GRAD_LINEAR_WEIGHT (2) and "
         "XENT_ACCUMULATE_GRAD_LINEAR_BIAS (4)",
         0),
    Plain("scratch_bytes", Role::kSize, A(scratch_bytes), P(scratch_bytes)),
    Vec("loss", Role::kOutVec, A(loss), P(loss), Len::kOne),
    Vec("row_loss", Role::kOutVec, A(row_loss), P(row_loss), Len::kB),
    Vec("lse", Role::kOutVec, A(lse), P(lse), Len::kB),
    OutMatrix("grad_hidden", A(grad_hidden), P(grad_hidden), "hidden")
        .Dims(Len::kB, Len::kH)
        .Stride(A(grad_hidden_stride))
        .DT(A(grad_hidden_dtype), XENT_DTYPE_AUTO),
    OutMatrix("grad_linear_weight", A(grad_linear_weight), P(grad_linear_weight), "linear_weight")
        .Dims(Len::kV, Len::kH)
        .Stride(A(grad_linear_weight_stride))
        .DT(A(grad_linear_weight_dtype), XENT_DTYPE_AUTO),
    OutMatrix("grad_linear_bias", A(grad_linear_bias), P(grad_linear_bias), "linear_weight")
        .Dims(Len::kOne, Len::kV)
        .DT(A(grad_linear_bias_dtype), XENT_DTYPE_AUTO),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

// Vocab-parallel cross-entropy: the shard's B x Vs logits, global targets and
// class weights (V), the statistics (CeShardStatsDoubles(B, label_smoothing)).
#define A(f) XENT_OFF(xent_cross_entropy_shard_stats_args, f)
#define P(f) XENT_OFF(CrossEntropyShardProblem, f)
constexpr Field kCrossEntropyShardStatsFields[] = {
    Plain("shard_classes", Role::kShardClasses, A(shard_classes), P(Vs)),
    Plain("class_offset", Role::kSize, A(class_offset), P(offset)),
    InMatrix("logits", A(logits), P(logits))
        .Dims(Len::kB, Len::kVs)
        .Stride(A(logits_stride))
        .DT(A(logits_dtype), XENT_F32)
        .Required(),
    Make("target", Role::kLabels, A(target), P(target))
        .Stride(A(target_stride))
        .DT(A(target_dtype), XENT_I64)
        .Ignore(A(ignore_index))
        .Required(),
    Vec("weight", Role::kInVec, A(weight), P(weight), Len::kV),
    Plain("ignore_index", Role::kI64, A(ignore_index), kNone, -100),
    F32("label_smoothing", A(label_smoothing), P(label_smoothing), Domain::kUnit, 0),
    F32("softcap", A(softcap), P(softcap), Domain::kDivisorOrOff, 0),
    Vec("stats", Role::kOutF64Vec, A(stats), P(stats_out), Len::kStats).Required(),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("reserved0", Role::kReserved, A(reserved0), kNone),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

#define A(f) XENT_OFF(xent_cross_entropy_shard_finish_args, f)
#define P(f) XENT_OFF(CrossEntropyShardProblem, f)
constexpr Field kCrossEntropyShardFinishFields[] = {
    Plain("shard_classes", Role::kShardClasses, A(shard_classes), P(Vs)),
    Plain("class_offset", Role::kSize, A(class_offset), P(offset)),
    InMatrix("logits", A(logits), P(logits))
        .Dims(Len::kB, Len::kVs)
        .Stride(A(logits_stride))
        .DT(A(logits_dtype), XENT_F32)
        .Required(),
    Make("target", Role::kLabels, A(target), P(target))
        .Stride(A(target_stride))
        .DT(A(target_dtype), XENT_I64)
        .Ignore(A(ignore_index))
        .Required(),
    Vec("weight", Role::kInVec, A(weight), P(weight), Len::kV),
    Vec("row_scale", Role::kInVec, A(row_scale), P(row_scale), Len::kB),
    Plain("ignore_index", Role::kI64, A(ignore_index), kNone, -100),
    Enum("reduction", A(reduction), P(reduction), kReductions, kReductionText, XENT_REDUCTION_MEAN),
    F32("label_smoothing", A(label_smoothing), P(label_smoothing), Domain::kUnit, 0),
    F32("z_loss", A(z_loss), P(z_loss), Domain::kNonNegative, 0),
    F32("softcap", A(softcap), P(softcap), Domain::kDivisorOrOff, 0),
    F32("grad_scale", A(grad_scale), P(grad_scale), Domain::kFinite, 1),
    Plain("reserved0", Role::kReserved, A(reserved0), kNone),
    Plain("num_shards", Role::kShardCount, A(num_shards), P(P)),
    Vec("stats", Role::kInF64Vec, A(stats), P(stats_in), Len::kPStats).Of("num_shards").Required(),
    Vec("loss", Role::kOutVec, A(loss), P(loss), Len::kOne),
    Vec("row_loss", Role::kOutVec, A(row_loss), P(row_loss), Len::kB),
    Vec("lse", Role::kOutVec, A(lse), P(lse), Len::kB),
    OutMatrix("grad", A(grad), P(grad), "logits")
        .Dims(Len::kB, Len::kVs)
        .Stride(A(grad_stride))
        .DT(A(grad_dtype), XENT_DTYPE_AUTO)
        .InPlace("logits"),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

// Vocab-parallel token log-probs: the shard's B x Vs logits, optional global
// targets, the statistics (TokShardStatsDoubles(B, with_entropy)).
#define A(f) XENT_OFF(xent_token_logprobs_shard_stats_args, f)
#define P(f) XENT_OFF(TokenLogprobsShardProblem, f)
constexpr Field kTokenLogprobsShardStatsFields[] = {
    Plain("shard_classes", Role::kShardClasses, A(shard_classes), P(Vs)),
    Plain("class_offset", Role::kSize, A(class_offset), P(offset)),
    InMatrix("logits", A(logits), P(logits))
        .Dims(Len::kB, Len::kVs)
        .Stride(A(logits_stride))
        .DT(A(logits_dtype), XENT_F32)
        .Required(),
    Make("target", Role::kLabels, A(target), P(target))
        .Stride(A(target_stride))
        .DT(A(target_dtype), XENT_I64)
        .Ignore(A(ignore_index)),
    Plain("ignore_index", Role::kI64, A(ignore_index), kNone, -100),
    F32("temperature", A(temperature), P(temperature), Domain::kDivisor, 1),
    F32("softcap", A(softcap), P(softcap), Domain::kDivisorOrOff, 0),
    Plain("with_entropy", Role::kFlag, A(with_entropy), P(with_entropy)),
    Plain("reserved0", Role::kReserved, A(reserved0), kNone),
    Vec("stats", Role::kOutF64Vec, A(stats), P(stats_out), Len::kStats).Required(),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("reserved1", Role::kReserved, A(reserved1), kNone),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

#define A(f) XENT_OFF(xent_token_logprobs_shard_finish_args, f)
#define P(f) XENT_OFF(TokenLogprobsShardProblem, f)
constexpr Field kTokenLogprobsShardFinishFields[] = {
    Make("target", Role::kLabels, A(target), P(target))
        .Stride(A(target_stride))
        .DT(A(target_dtype), XENT_I64)
        .Ignore(A(ignore_index))
        .NeededBy("logprob"),
    Plain("ignore_index", Role::kI64, A(ignore_index), kNone, -100),
    Plain("with_entropy", Role::kFlag, A(with_entropy), P(with_entropy)),
    Plain("num_shards", Role::kShardCount, A(num_shards), P(P)),
    Vec("stats", Role::kInF64Vec, A(stats), P(stats_in), Len::kPStats).Of("num_shards").Required(),
    Vec("logprob", Role::kOutVec, A(logprob), P(logprob), Len::kB),
    Vec("entropy", Role::kOutVec, A(entropy), P(entropy), Len::kB),
    Vec("lse", Role::kOutVec, A(lse), P(lse), Len::kB),
};
#undef A
#undef P

#define A(f) XENT_OFF(xent_token_logprobs_shard_backward_args, f)
#define P(f) XENT_OFF(TokenLogprobsShardBackwardProblem, f)
constexpr Field kTokenLogprobsShardBackwardFields[] = {
    Plain("shard_classes", Role::kShardClasses, A(shard_classes), P(Vs)),
    Plain("class_offset", Role::kSize, A(class_offset), P(offset)),
    InMatrix("logits", A(logits), P(logits))
        .Dims(Len::kB, Len::kVs)
        .Stride(A(logits_stride))
        .DT(A(logits_dtype), XENT_F32)
        .Required(),
    Make("target", Role::kLabels, A(target), P(target))
        .Stride(A(target_stride))
        .DT(A(target_dtype), XENT_I64)
        .Ignore(A(ignore_index))
        .NeededBy("grad_logprob"),
    Plain("ignore_index", Role::kI64, A(ignore_index), kNone, -100),
    F32("temperature", A(temperature), P(temperature), Domain::kDivisor, 1),
    F32("softcap", A(softcap), P(softcap), Domain::kDivisorOrOff, 0),
    Vec("grad_logprob", Role::kInVec, A(grad_logprob), P(grad_logprob), Len::kB),
    Vec("grad_entropy", Role::kInVec, A(grad_entropy), P(grad_entropy), Len::kB).Needs("entropy"),
    Vec("lse", Role::kInVec, A(lse), P(lse), Len::kB).Required(),
    Vec("entropy", Role::kInVec, A(entropy), P(entropy), Len::kB),
    OutMatrix("grad", A(grad), P(grad), "logits")
        .Dims(Len::kB, Len::kVs)
        .Stride(A(grad_stride))
        .DT(A(grad_dtype), XENT_DTYPE_AUTO)
        .InPlace("logits")
        .Required(),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

// Vocab-parallel distillation KL: the shards' B x Vs student and teacher
// logits, the statistics (KlShardStatsDoubles(B)).
#define A(f) XENT_OFF(xent_kl_div_logits_shard_stats_args, f)
#define P(f) XENT_OFF(KlShardProblem, f)
constexpr Field kKlShardStatsFields[] = {
    Plain("shard_classes", Role::kShardClasses, A(shard_classes), P(Vs)),
    Plain("class_offset", Role::kSize, A(class_offset), P(offset)),
    InMatrix("input", A(input), P(input))
        .Dims(Len::kB, Len::kVs)
        .Stride(A(input_stride))
        .DT(A(input_dtype), XENT_F32)
        .Required(),
    InMatrix("target", A(target), P(target))
        .Dims(Len::kB, Len::kVs)
        .Stride(A(target_stride))
        .DT(A(target_dtype), XENT_F32)
        .Rule(DTypeRule::kSameAsFrom, "input")
        .Required(),
    F32("temperature", A(temperature), P(temperature), Domain::kDivisor, 1),
    Plain("reserved0", Role::kReserved, A(reserved0), kNone),
    Vec("stats", Role::kOutF64Vec, A(stats), P(stats_out), Len::kStats).Required(),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("reserved1", Role::kReserved, A(reserved1), kNone),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

#define A(f) XENT_OFF(xent_kl_div_logits_shard_finish_args, f)
#define P(f) XENT_OFF(KlShardProblem, f)
constexpr Field kKlShardFinishFields[] = {
    Plain("shard_classes", Role::kShardClasses, A(shard_classes), P(Vs)),
    Plain("class_offset", Role::kSize, A(class_offset), P(offset)),
    InMatrix("input", A(input), P(input))
        .Dims(Len::kB, Len::kVs)
        .Stride(A(input_stride))
        .DT(A(input_dtype), XENT_F32)
        .Required(),
    InMatrix("target", A(target), P(target))
        .Dims(Len::kB, Len::kVs)
        .Stride(A(target_stride))
        .DT(A(target_dtype), XENT_F32)
        .Rule(DTypeRule::kSameAsFrom, "input")
        .Required(),
    F32("temperature", A(temperature), P(temperature), Domain::kDivisor, 1),
    Plain("t2_scaling", Role::kFlag, A(t2_scaling), P(t2_scaling)),
    Enum("reduction", A(reduction), P(reduction), kReductionsBatchMean, kReductionBatchMeanText,
         XENT_REDUCTION_BATCHMEAN),
    F32("grad_scale", A(grad_scale), P(grad_scale), Domain::kFinite, 1),
    Make("labels", Role::kLabels, A(labels), P(labels))
        .Stride(A(labels_stride))
        .DT(A(labels_dtype), XENT_I64)
        .Ignore(A(ignore_index)),
    Plain("ignore_index", Role::kI64, A(ignore_index), kNone, -100),
    Plain("reserved0", Role::kReserved, A(reserved0), kNone),
    Plain("num_shards", Role::kShardCount, A(num_shards), P(P)),
    Vec("stats", Role::kInF64Vec, A(stats), P(stats_in), Len::kPStats).Of("num_shards").Required(),
    Vec("loss", Role::kOutVec, A(loss), P(loss), Len::kOne),
    Vec("row_loss", Role::kOutVec, A(row_loss), P(row_loss), Len::kB),
    OutMatrix("grad_input", A(grad_input), P(grad_input), "input")
        .Dims(Len::kB, Len::kVs)
        .Stride(A(grad_input_stride))
        .DT(A(grad_input_dtype), XENT_DTYPE_AUTO)
        .InPlace("input"),
    Plain("num_threads", Role::kNumThreads, A(num_threads), P(exec.num_threads)),
    Plain("parallel_for", Role::kParallelFor, A(parallel_for), P(exec.parallel_for)),
    Plain("parallel_user", Role::kParallelUser, A(parallel_user), P(exec.parallel_user)),
};
#undef A
#undef P

#undef XENT_OFF

template <size_t N>
constexpr OpDesc Op(const char* name, const char* type, size_t size, const Field (&fields)[N], bool needs_output,
                    size_t min_size = 0, bool one_class = false) {
  return OpDesc{name, type, size, fields, N, needs_output, min_size ? min_size : size, one_class};
}

constexpr OpDesc kCrossEntropy =
    Op("cross_entropy", "xent_cross_entropy_args", sizeof(xent_cross_entropy_args), kCrossEntropyFields, false);
constexpr OpDesc kBce = Op("bce_with_logits", "xent_bce_args", sizeof(xent_bce_args), kBceFields, false);
constexpr OpDesc kDivergence =
    Op("divergence", "xent_divergence_args", sizeof(xent_divergence_args), kDivergenceFields, false);
constexpr OpDesc kSoftmax = Op("softmax", "xent_softmax_args", sizeof(xent_softmax_args), kSoftmaxFields, true);
constexpr OpDesc kSoftmaxBackward = Op("softmax_backward", "xent_softmax_backward_args",
                                       sizeof(xent_softmax_backward_args), kSoftmaxBackwardFields, false);
// 0.1.0's struct ended at parallel_user (argmax and the rest were appended).
constexpr OpDesc kTokenLogprobs = Op("token_logprobs", "xent_token_logprobs_args", sizeof(xent_token_logprobs_args),
                                     kTokenLogprobsFields, true, offsetof(xent_token_logprobs_args, argmax));
constexpr OpDesc kTokenLogprobsBackward =
    Op("token_logprobs_backward", "xent_token_logprobs_backward_args", sizeof(xent_token_logprobs_backward_args),
       kTokenLogprobsBackwardFields, false);
constexpr OpDesc kKlPenalty =
    Op("kl_penalty", "xent_kl_penalty_args", sizeof(xent_kl_penalty_args), kKlPenaltyFields, true, 0, true);
// Not in kAllOps (below): its matrices are B x H and V x H, which the tests'
// case builders over B x V logits do not know yet.
constexpr OpDesc kLinearCrossEntropy = Op("linear_cross_entropy", "xent_linear_cross_entropy_args",
                                          sizeof(xent_linear_cross_entropy_args), kLinearCrossEntropyFields, false);

// Not in kAllOps: their logits are a column shard (B x shard_classes) and
// finish's statistics come from shard_stats, which the case builders do not
// model; tests/vocab_parallel_test.cc covers them.
constexpr OpDesc kCrossEntropyShardStats =
    Op("cross_entropy_shard_stats", "xent_cross_entropy_shard_stats_args", sizeof(xent_cross_entropy_shard_stats_args),
       kCrossEntropyShardStatsFields, true);
constexpr OpDesc kCrossEntropyShardFinish =
    Op("cross_entropy_shard_finish", "xent_cross_entropy_shard_finish_args",
       sizeof(xent_cross_entropy_shard_finish_args), kCrossEntropyShardFinishFields, false);

constexpr OpDesc kTokenLogprobsShardStats =
    Op("token_logprobs_shard_stats", "xent_token_logprobs_shard_stats_args",
       sizeof(xent_token_logprobs_shard_stats_args), kTokenLogprobsShardStatsFields, true);
constexpr OpDesc kTokenLogprobsShardFinish =
    Op("token_logprobs_shard_finish", "xent_token_logprobs_shard_finish_args",
       sizeof(xent_token_logprobs_shard_finish_args), kTokenLogprobsShardFinishFields, true);
constexpr OpDesc kTokenLogprobsShardBackward =
    Op("token_logprobs_shard_backward", "xent_token_logprobs_shard_backward_args",
       sizeof(xent_token_logprobs_shard_backward_args), kTokenLogprobsShardBackwardFields, false);
constexpr OpDesc kKlShardStats = Op("kl_div_logits_shard_stats", "xent_kl_div_logits_shard_stats_args",
                                    sizeof(xent_kl_div_logits_shard_stats_args), kKlShardStatsFields, true);
constexpr OpDesc kKlShardFinish = Op("kl_div_logits_shard_finish", "xent_kl_div_logits_shard_finish_args",
                                     sizeof(xent_kl_div_logits_shard_finish_args), kKlShardFinishFields, true);
// Every operation, for code that walks all of them (tests, fuzzing, bench):
// tests/common has hooks for each (its registry aborts on an operation
// without one). Appended only: the fuzz inputs index the first six.
constexpr const OpDesc* kAllOps[] = {
    &kCrossEntropy,          &kBce,      &kDivergence, &kSoftmax, &kSoftmaxBackward, &kTokenLogprobs,
    &kTokenLogprobsBackward, &kKlPenalty};

// Every args struct begins with struct_size, batch, num_classes; every
// problem struct with B, V.
#define XENT_CHECK_LAYOUT(Args, Problem)                                                                      \
  static_assert(offsetof(Args, batch) == sizeof(size_t) && offsetof(Args, num_classes) == 2 * sizeof(size_t), \
                #Args " begins with struct_size, batch, num_classes");                                        \
  static_assert(offsetof(Problem, B) == 0 && offsetof(Problem, V) == sizeof(size_t), #Problem " begins with B, V")
XENT_CHECK_LAYOUT(xent_cross_entropy_args, CrossEntropyProblem);
XENT_CHECK_LAYOUT(xent_bce_args, BceProblem);
XENT_CHECK_LAYOUT(xent_divergence_args, DivergenceProblem);
XENT_CHECK_LAYOUT(xent_softmax_args, SoftmaxProblem);
XENT_CHECK_LAYOUT(xent_softmax_backward_args, SoftmaxBackwardProblem);
XENT_CHECK_LAYOUT(xent_token_logprobs_args, TokenLogprobsProblem);
XENT_CHECK_LAYOUT(xent_linear_cross_entropy_args, LinearCrossEntropyProblem);
XENT_CHECK_LAYOUT(xent_token_logprobs_backward_args, TokenLogprobsBackwardProblem);
XENT_CHECK_LAYOUT(xent_kl_penalty_args, KlPenaltyProblem);
XENT_CHECK_LAYOUT(xent_cross_entropy_shard_stats_args, CrossEntropyShardProblem);
XENT_CHECK_LAYOUT(xent_cross_entropy_shard_finish_args, CrossEntropyShardProblem);
XENT_CHECK_LAYOUT(xent_token_logprobs_shard_stats_args, TokenLogprobsShardProblem);
XENT_CHECK_LAYOUT(xent_token_logprobs_shard_finish_args, TokenLogprobsShardProblem);
XENT_CHECK_LAYOUT(xent_token_logprobs_shard_backward_args, TokenLogprobsShardBackwardProblem);
XENT_CHECK_LAYOUT(xent_kl_div_logits_shard_stats_args, KlShardProblem);
XENT_CHECK_LAYOUT(xent_kl_div_logits_shard_finish_args, KlShardProblem);
static_assert(offsetof(xent_token_logprobs_args, argmax) ==
                  offsetof(xent_token_logprobs_args, parallel_user) + sizeof(void*),
              "0.1.0's xent_token_logprobs_args ended at parallel_user");
#undef XENT_CHECK_LAYOUT

}  // namespace abi
}  // namespace xent

#endif  // XENT_CAPI_OP_TABLE_H_
