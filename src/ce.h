// Cross-entropy: the kernels' arguments (target-independent, so every SIMD
// target's kernel has the same signature) and the per-dtype kernel tables.
// The kernels live in src/ce-inl.h, compiled once per logits dtype
// (src/ce_f32.cc, ce_bf16.cc, ce_f16.cc: smaller translation units that
// build in parallel); the engine op and RunCrossEntropy in src/ce.cc.
#ifndef XENT_SRC_CE_H_
#define XENT_SRC_CE_H_

#include <cstddef>
#include <cstdint>

#include "src/engine.h"
#include "src/problem.h"
#include "src/scratch.h"

namespace xent {

// What the per-target kernels read.
struct CeKernel {
  size_t V = 0;              // the row's columns (a column shard's, vocab-parallel)
  int64_t class_offset = 0;  // the class index of column 0 (class-index targets)
  InMat logits;
  bool soft = false;
  InMat q;        // soft targets
  Labels target;  // class indices
  const float* weight = nullptr;
  float eps = 0.0f;      // label smoothing
  float softcap = 0.0f;  // 0 = off
  float inv_softcap = 0.0f;
  bool dot = false;     // accumulate the smoothing dot product
  bool stream = false;  // non-temporal gradient stores
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

// Phase 1 (statistics) and phase 4 (gradient) of one row's segments [s0, s1).
using CeStatsFn = void (*)(const CeKernel& k, size_t row, size_t s0, size_t s1, SoftmaxSeg* out, float* scratch);
using CeGradFn = void (*)(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t s0,
                          size_t s1, float* scratch);
// Phase 4 of row `row` and phase 1 of row `next_row` in one walk (src/engine.h,
// FusedRows); false, with nothing done, where that does not apply.
using CeFusedFn = bool (*)(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t next_row,
                           SoftmaxSeg* next_segs, float* scratch);

// A logits dtype's kernels: Highway dispatch tables, indexed by DispatchIndex().
struct CeKernelTables {
  const CeStatsFn* stats;
  const CeGradFn* grad;
  const CeFusedFn* fused;
};
CeKernelTables CeKernelsF32();
CeKernelTables CeKernelsBF16();
CeKernelTables CeKernelsF16();

// Entry points for operations built on cross-entropy (linear cross-entropy
// runs it on blocks of rows of a larger batch):
// The MEAN divisor of p's rows (sum of the kept rows' class weights, or B for
// probability targets); 1 for the other reductions.
double CrossEntropyDivisor(const CrossEntropyProblem& p);
// Phases 1-4 over p's B rows with the gradient divided by `divisor` (one
// computed over the whole batch); row losses go to `row_loss` (B values of
// each of its buffers, which may be null); p.loss and p.row_loss are not read.
xent_status RunCrossEntropyRows(const CrossEntropyProblem& p, double divisor, RowLossSink row_loss);
// Bytes of p.exec.workspace with which RunCrossEntropyRows of up to B rows
// of V classes allocates nothing (for callers that run it after writing
// outputs: a failed call must leave them untouched).
size_t CrossEntropyRowsWorkspaceBytes(size_t B, size_t V);

// Column tiles of whole rows (linear cross-entropy's order for a 16-bit
// grad_linear_weight without a V x H accumulator): p describes B rows of all
// p.V classes, but p.logits (and p.grad) hold only the columns [offset,
// offset + width) of them.
// Phases 1-2 over those columns, folded into acc[0..B) (SoftmaxAcc::Combine:
// call it for the tiles of a row in class order, acc default-constructed
// before the first). stats: CeShardStatsDoubles(B, p.label_smoothing)
// doubles of scratch. Writes no output of p.
xent_status CrossEntropyFoldColumns(const CrossEntropyProblem& p, size_t offset, size_t width, double* stats,
                                    SoftmaxAcc* acc);
// Phases 3-4 over those columns with each row's statistics over all V
// classes (`merged`, from CrossEntropyFoldColumns): p.lse and `row_loss`
// (each may be nullptr) and the columns' gradient, divided by `divisor`.
xent_status CrossEntropyColumnsWithStats(const CrossEntropyProblem& p, size_t offset, size_t width, double divisor,
                                         RowLossSink row_loss, const SoftmaxAcc* merged);

}  // namespace xent

#endif  // XENT_SRC_CE_H_
