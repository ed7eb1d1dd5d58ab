// Per-token statistics (xent_token_logprobs beyond log p(y) / entropy / lse:
// argmax, top-k, the reference model's KL) and their backward
// (xent_token_logprobs_backward): the kernels' arguments (target-independent,
// so every SIMD target's kernel has the same signature), the per-segment
// partials, and the per-dtype kernel tables. The kernels live in
// src/token_stats-inl.h, compiled once per logits dtype
// (src/token_stats_{f32,bf16,f16}.cc); the engine ops and the Run* functions
// in src/token_stats.cc.
#ifndef XENT_SRC_TOKEN_STATS_H_
#define XENT_SRC_TOKEN_STATS_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "src/engine.h"
#include "src/problem.h"
#include "xent/xent.h"

namespace xent {

constexpr size_t kTopKMax = XENT_TOPK_MAX;

// The top-k order's key: the logit, NaN as -inf (equal keys by increasing
// column), in the stats pass and in the merge alike.
inline float TopKKey(float v) { return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v; }

// What the statistics kernels read.
struct TokKernel {
  size_t V = 0;
  InMat logits;
  InMat ref;           // read when ref.data != nullptr
  Labels target;       // data == nullptr: no target z
  float scale = 1.0f;  // 1 / temperature
  float cap = 0.0f, inv_cap = 0.0f;
  uint32_t K = 0;  // top-k entries to keep (0: none); argmax alone is K = 1
};

// Phase-1 partials of one segment: the softmax statistics of the logits and
// of the reference logits, the segment's top-k candidates (ordered by logit,
// largest first, equal logits by index), and the middle pass's KL partial.
struct TokSeg {
  SoftmaxSeg sm;    // with the target's z (has_zy)
  SoftmaxSeg ref;   // with the target's reference z
  size_t base = 0;  // first column of the segment
  uint32_t k = 0;   // K of the call
  uint32_t ntop = 0;
  int32_t has_ref = 0;       // ref was read
  float kl = 0.0f;           // middle: sum over the segment of p ((z - z') - (lse - lse'))
  float top_x[kTopKMax];     // the logits as given (the order)
  float top_z[kTopKMax];     // their z (the log-probabilities)
  uint16_t top_i[kTopKMax];  // column - base
};

// Per-row constants of the KL middle pass: log p = (z - M) - L, and
// (z - z') - D is log p - log q.
struct TokKlRow {
  float M = 0.0f, L = 0.0f, D = 0.0f;
};

// What the gradient kernel reads.
struct TokGradKernel {
  size_t V = 0;
  InMat logits;
  InMat ref;  // read when ref.data != nullptr (the KL term)
  float scale = 1.0f;
  float cap = 0.0f, inv_cap = 0.0f;
  OutMat grad;
  bool stream = false;  // non-temporal gradient stores
  // The gradient pass is the only read of the rows (no stats pass, which
  // prefetches for itself, before it): it prefetches kPrefetchBytes ahead.
  bool prefetch = false;
  // The statistics were computed in this call (no KL term): p = e F per
  // segment, e = exp(z - m) as the stats walk computed it (stored in the
  // scratch row, or recomputed with the same bits) and F = exp(m - lse)
  // (TokGradRow::SegFactor); no second exp per logit, and the gradient can
  // ride in the next row's stats walk (TokFusedFn). Else p = exp(lp).
  bool seg_e = false;
};

// Per-row gradient coefficients: with lp = (z - M) - L and p = exp(lp),
//   d/dz_c = p_c (c0 + c1 lp_c + c2 (z_c - z'_c)) + w_j at column idx_j,
// times dz/dlogits. zero: the row's gradient is all zeros.
struct TokGradRow {
  float M = 0.0f, L = 0.0f;
  float c0 = 0.0f, c1 = 0.0f, c2 = 0.0f;
  bool zero = false;
  bool nan = false;  // (seg_e) a NaN logit in the row: every p is NaN
  double lse = 0.0;  // (seg_e) M + L in double
  uint32_t nd = 0;   // deltas, by increasing column (no duplicates)
  int64_t idx[kTopKMax + 1];
  float w[kTopKMax + 1];

  // (seg_e) F of a segment: p = e F there; 0 for a segment of -inf logits.
  float SegFactor(const SoftmaxSeg& g) const {
    if (nan) return std::numeric_limits<float>::quiet_NaN();
    if (g.m == -std::numeric_limits<float>::infinity()) return 0.0f;
    return static_cast<float>(std::exp(static_cast<double>(g.m) - lse));
  }
};

// Phase 1: the statistics of segments [s0, s1) of a row; e = exp(z - m)
// stored at e_out[column] when e_out is not null.
using TokStatsFn = void (*)(const TokKernel& k, size_t row, size_t s0, size_t s1, TokSeg* out, float* e_out);
// Middle: the KL partials of segments [s0, s1) (segs indexed by segment).
using TokKlFn = void (*)(const TokKernel& k, const TokKlRow& r, size_t row, size_t s0, size_t s1, TokSeg* segs);
// Output: the gradient of segments [s0, s1) of a row (seg_e: the row's
// segment partials, and its e by column, or nullptr to recompute it).
using TokGradFn = void (*)(const TokGradKernel& k, const TokGradRow& c, const TokSeg* segs, size_t row, size_t s0,
                           size_t s1, const float* e);
// (seg_e) The gradient of row `row` (its partials `segs`, its e at e[column])
// written in the statistics walk of row `nr` (partials to `out`, its e
// stored over e as the walk goes): the same bits as the gradient then the
// statistics. False, with nothing done, where the kernel does not take it.
using TokFusedFn = bool (*)(const TokKernel& k, const TokGradKernel& gk, const TokGradRow& c, const TokSeg* segs,
                            size_t row, size_t nr, TokSeg* out, float* e);

struct TokKernelTables {
  const TokStatsFn* stats;
  const TokKlFn* kl;
  const TokGradFn* grad;
  const TokFusedFn* fused;
};
TokKernelTables TokKernelsF32();
TokKernelTables TokKernelsBF16();
TokKernelTables TokKernelsF16();

}  // namespace xent

#endif  // XENT_SRC_TOKEN_STATS_H_
