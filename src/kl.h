// KL divergence and generalized Jensen-Shannon between two distributions per
// row, each given as logits, log-probabilities or probabilities.
//
// Pass 1 (stats): online max / sum-of-exp of each side given as logits (exp
// values kept in the scratch rows), sums of probabilities of the others.
// Pass 2 (middle): elementwise terms, row loss, and the gradients that need
// no row sum from this pass (the distillation case: student logits, forward
// KL). Pass 3 (output): the remaining gradients, which need sums of pass 2.
// In the distillation case a row's pass 2 runs inside the next row's stats
// walk when it can (KlFused, the engine's FusedRows). For JSD of two logit
// batches pass 2 leaves its terms in the scratch rows for pass 3 (PassJsd).
//
// This header: the kernels' arguments (target-independent, so every SIMD
// target's kernel has the same signature) and the per-dtype kernel tables.
// The kernels live in src/kl-inl.h, compiled once per logits dtype
// (src/kl_f32.cc, kl_bf16.cc, kl_f16.cc: smaller translation units that build
// in parallel); the engine op and RunDivergence in src/kl.cc.
#ifndef XENT_SRC_KL_H_
#define XENT_SRC_KL_H_

#include <cstddef>
#include <cstdint>

#include "src/engine.h"
#include "src/problem.h"

namespace xent {

enum class KlMode : int32_t { kForward = 0, kReverse = 1, kMix = 2 };

struct KlKernel {
  size_t V = 0;
  InMat q_in, p_in;  // input (student Q), target (teacher P)
  DistKind qk = DistKind::kLogProbs, pk = DistKind::kProbs;
  float inv_t = 1.0f;
  KlMode mode = KlMode::kForward;
  float beta = 0.0f;
  bool need_psum = false, need_qsum = false;
  OutMat elem_loss, grad_q, grad_p;
  bool grads_in_middle = false;  // else pass 3
  bool stream = false;           // non-temporal stores for grad_q (fast path)
};

struct KlSeg {
  SoftmaxSeg q, p;  // stats of the sides given as logits
  float psum = 0.0f, qsum = 0.0f;
  float loss = 0.0f;
  float gq = 0.0f, gp = 0.0f;  // sums of dL/dlog q, dL/dlog p (pass 2)
};

// Per-row constants.
struct KlRow {
  float Mq = 0.0f, lsq = 0.0f, aq = 0.0f;  // q side: max, log S, 1/S
  float Mp = 0.0f, lsp = 0.0f, ap = 0.0f;
  bool nanq = false, nanp = false;
  float psum = 1.0f, qsum = 1.0f;
  float gs = 0.0f;  // gradient scale (0 for ignored rows)
  float es = 1.0f;  // element-loss scale (T^2 or 1; 0 ignored)
  float gq_sum = 0.0f, gp_sum = 0.0f;
  bool ignored = false;
};

// Pass 1 of one row's segments [s0, s1).
using KlStatsFn = void (*)(const KlKernel& k, size_t row, size_t s0, size_t s1, KlSeg* out, float* scratch);
// Pass 2 (middle) or 3 (output) of one row's segments [s0, s1).
using KlPassFn = void (*)(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t s0, size_t s1,
                          float* scratch, bool middle);
// Pass 2 of row `row` and pass 1 of row `nr` in one walk (src/engine.h,
// FusedRows); false, with nothing done, where that does not apply.
using KlFusedFn = bool (*)(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t nr, KlSeg* out,
                           float* scratch);

// A logits dtype's kernels: Highway dispatch tables, indexed by DispatchIndex().
struct KlKernelTables {
  const KlStatsFn* stats;
  const KlPassFn* pass;
  const KlFusedFn* fused;
};
KlKernelTables KlKernelsF32();
KlKernelTables KlKernelsBF16();
KlKernelTables KlKernelsF16();

}  // namespace xent

#endif  // XENT_SRC_KL_H_
