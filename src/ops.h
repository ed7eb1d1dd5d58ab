// Internal interface between the C API (capi/) and the kernels (src/): plain
// structs holding arguments that capi/ has already validated, and the entry
// points that run an operation. No SIMD types here.
#ifndef XENT_SRC_OPS_H_
#define XENT_SRC_OPS_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "src/dtype.h"
#include "src/parallel.h"
#include "xent/xent.h"

namespace xent {

enum class Reduction : int32_t { kNone = 0, kMean = 1, kSum = 2, kBatchMean = 3 };
enum class DistKind : int32_t { kLogits = 0, kLogProbs = 1, kProbs = 2 };

// A B x V matrix (row stride in elements).
struct InMat {
  const void* data = nullptr;
  size_t stride = 0;
  DType dtype = DType::kF32;
};
struct OutMat {
  void* data = nullptr;
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

// ---------------------------------------------------------------------------
// Rows are processed in segments of kSegment elements (the unit of parallel
// work and of the deterministic merge), each made of chunks of kChunk elements
// (the unit of the streaming max-then-exp pass).
constexpr size_t kSegment = 4096;
constexpr size_t kChunk = 256;
constexpr size_t kChunksPerSegment = kSegment / kChunk;

// Softmax statistics of one segment of a row, relative to the segment max m
// (-inf when every element is -inf).
struct SoftmaxSeg {
  float m = 0.0f;
  float s = 0.0f;     // sum exp(z - m)
  float dot = 0.0f;   // sum a_c (z_c - m) for op-specific weights a_c >= 0
  float wsum = 0.0f;  // sum a_c
  float u = 0.0f;     // sum exp(z - m) (z - m)  (entropy)
  float zy = 0.0f;    // the target's z, when has_zy
  int32_t has_zy = 0;
  // Reference used for exp(z - ref) in each chunk (the running max after the
  // chunk; -inf while everything is -inf, where 0 is used). The output pass
  // recomputes or rescales e with exactly these.
  float ref[kChunksPerSegment];
};

// The reference actually subtracted: 0 for -inf (so exp(-inf - 0) = 0).
inline float SafeRef(float m) { return m == -std::numeric_limits<float>::infinity() ? 0.0f : m; }

// Left fold of segments in double precision; quantities relative to M.
struct SoftmaxAcc {
  double M = -std::numeric_limits<double>::infinity();
  double S = 0.0;  // sum exp(z - M)
  double D = 0.0;  // sum a_c (z_c - M)
  double W = 0.0;  // sum a_c
  double U = 0.0;  // sum exp(z - M) (z - M)
  float zy = std::numeric_limits<float>::quiet_NaN();
  bool nan = false;

  void Fold(const SoftmaxSeg& g) {
    if (g.has_zy) zy = g.zy;
    const double w_before = W;
    W += g.wsum;
    if (std::isnan(g.s) || std::isnan(g.m)) {
      nan = true;
      return;
    }
    if (g.s == 0.0f) {  // all -inf: no mass, only the (infinite) dot term
      D += g.dot;
      return;
    }
    // g.dot and g.u are relative to g.m here (the segment has mass).
    const double m = g.m;
    if (M == -std::numeric_limits<double>::infinity()) {
      M = m;
      S = g.s;
      D += g.dot;
      U = g.u;
      return;
    }
    const double M2 = std::max(M, m);
    const double f_old = std::exp(M - M2), f_new = std::exp(m - M2);
    U = f_old * (U + (M - M2) * S) + f_new * (g.u + (m - M2) * g.s);
    S = S * f_old + g.s * f_new;
    D = D + (M - M2) * w_before + g.dot + (m - M2) * g.wsum;
    M = M2;
  }
  // log sum exp(z) - M, and the row's lse. NaN when any input was NaN.
  double LogS() const { return nan ? std::numeric_limits<double>::quiet_NaN() : std::log(S); }
  double Lse() const { return nan ? std::numeric_limits<double>::quiet_NaN() : M + std::log(S); }
  // Entropy of softmax(z): log S - U / S.
  double Entropy() const { return LogS() - U / S; }
};

// ---------------------------------------------------------------------------
// Cross-entropy.
struct CeProblem {
  size_t B = 0, V = 0;
  InMat logits;
  bool soft = false;
  InMat q;        // soft targets (probabilities)
  Labels target;  // hard targets
  const float* weight = nullptr;
  const float* row_scale = nullptr;
  Reduction reduction = Reduction::kMean;
  float eps = 0.0f, z_loss = 0.0f, softcap = 0.0f, grad_scale = 1.0f;
  float* loss = nullptr;
  float* row_loss = nullptr;
  float* lse = nullptr;
  OutMat grad;  // data == nullptr: no gradient
};

// What the per-target CE kernels read.
struct CeKernel {
  size_t V = 0;
  InMat logits;
  bool soft = false;
  InMat q;
  Labels target;
  const float* weight = nullptr;
  float eps = 0.0f;         // label smoothing
  float softcap = 0.0f;     // 0 = off
  float inv_softcap = 0.0f;
  bool dot = false;         // accumulate the smoothing dot product
  bool stream = false;      // non-temporal gradient stores
  OutMat grad;
};

// Per-row gradient coefficients: grad_c = exp(z_c - M) a - b w_c [- delta at y]
// (hard), or exp(z_c - M) a - b w_c q'_c (soft); times the softcap slope.
struct CeRowCoef {
  float M = 0.0f, a = 0.0f, b = 0.0f, delta = 0.0f;
  int64_t y = -1;     // column of delta, -1 for none
  bool zero = false;  // ignored row: all zeros
  bool nan = false;   // undefined softmax (NaN or all -inf): a is NaN
};

// Outputs at least this large (bytes; environment variable XENT_STREAM_BYTES,
// default 32 MiB) are written with non-temporal (streaming) stores: they
// cannot stay in cache anyway, and streaming saves the read-for-ownership.
size_t StreamThresholdBytes();
inline bool StreamOutputs(size_t B, size_t V, const OutMat& m) {
  return B * V * DTypeSize(m.dtype) >= StreamThresholdBytes();
}

xent_status RunCrossEntropy(const CeProblem& p, const Exec& exec);

// ---------------------------------------------------------------------------
// Softmax family.
struct SoftmaxProblem {
  size_t B = 0, V = 0;
  InMat logits;
  float temperature = 1.0f;
  OutMat probs, log_probs;  // data == nullptr: not wanted
  float* lse = nullptr;
  float* entropy = nullptr;
};
xent_status RunSoftmax(const SoftmaxProblem& p, const Exec& exec);

struct SoftmaxBackwardProblem {
  size_t B = 0, V = 0;
  InMat y;   // forward output
  bool log = false;  // y holds log-probabilities
  InMat g;   // grad_output (same dtype as y)
  OutMat gx; // grad_input
  float temperature = 1.0f;
};
xent_status RunSoftmaxBackward(const SoftmaxBackwardProblem& p, const Exec& exec);

struct TokenLogprobsProblem {
  size_t B = 0, V = 0;
  InMat logits;
  Labels target;  // data == nullptr allowed when logprob == nullptr
  float temperature = 1.0f, softcap = 0.0f;
  float* logprob = nullptr;
  float* entropy = nullptr;
  float* lse = nullptr;
};
xent_status RunTokenLogprobs(const TokenLogprobsProblem& p, const Exec& exec);

// ---------------------------------------------------------------------------
// KL divergence / generalized JSD.
struct DivergenceProblem {
  size_t B = 0, V = 0;
  InMat input;   // Q, student
  DistKind input_kind = DistKind::kLogProbs;
  InMat target;  // P, teacher
  DistKind target_kind = DistKind::kProbs;
  bool jsd = false;
  float beta = 0.5f, temperature = 1.0f;
  bool t2 = false;
  Reduction reduction = Reduction::kMean;
  float grad_scale = 1.0f;
  Labels labels;  // data == nullptr: no row mask
  float* loss = nullptr;
  float* row_loss = nullptr;
  OutMat elem_loss;  // f32
  OutMat grad_input, grad_target;
};
xent_status RunDivergence(const DivergenceProblem& p, const Exec& exec);

// ---------------------------------------------------------------------------
// Binary cross-entropy with logits.
struct BceProblem {
  size_t B = 0, V = 0;
  InMat logits, target;
  const float* weight = nullptr;
  size_t weight_stride = 0;  // 0 = one row for all rows
  const float* pos_weight = nullptr;
  Reduction reduction = Reduction::kMean;
  float grad_scale = 1.0f;
  float* loss = nullptr;
  float* row_loss = nullptr;
  OutMat elem_loss;
  OutMat grad;
};
xent_status RunBce(const BceProblem& p, const Exec& exec);

// Sum of row values in row order (double), the reduced loss of every op.
inline double SumRows(const float* v, size_t B) {
  double s = 0.0;
  for (size_t i = 0; i < B; ++i) s += v[i];
  return s;
}

}  // namespace xent

#endif  // XENT_SRC_OPS_H_
