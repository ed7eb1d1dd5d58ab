// Cross-entropy (class-index and probability targets): the engine op and
// RunCrossEntropy. The kernels are in src/ce-inl.h (one translation unit per
// logits dtype).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>

#include "src/ce.h"
#include "src/dispatch.h"
#include "src/engine.h"
#include "src/problem.h"
#include "src/scratch.h"

namespace xent {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A gradient coefficient in f32, saturated at +-FLT_MAX: an overflowing
// coefficient (z_loss of a logit near FLT_MAX times a large grad_scale) must
// not turn the classes whose exp(z - M) is 0 into 0 * inf = NaN; their
// gradient is 0 (the class at the max gets +-FLT_MAX for its overflowing
// value).
float SatF32(double x) {
  constexpr double kMax = std::numeric_limits<float>::max();
  return static_cast<float>(x > kMax ? kMax : x < -kMax ? -kMax : x);
}

struct CeOp : NoMiddle {
  using Seg = SoftmaxSeg;
  using Acc = SoftmaxAcc;
  using RowState = CeRowCoef;
  // (Stats and Output of segment s touch the e scratch in its columns only.)
  static constexpr bool kPipelined = true;

  const CrossEntropyProblem* p;
  CeKernel k;
  CeKernelTables kernels;
  RowLossSink row_loss;  // caller's and/or the reduction's; may be empty
  double inv_div;        // gradient divisor (mean), 1 otherwise
  double w_total;        // sum of class weights (V when unweighted)
  // Vocab-parallel (the row's columns are a shard of p->V classes): phase 1
  // exports each row's statistics to stats_out (src/problem.h's layout) and
  // writes nothing else; phase 2 finishes rows with `merged`, their
  // statistics over all shards, instead of the shard's own.
  double* stats_out = nullptr;
  const SoftmaxAcc* merged = nullptr;

  bool Ignored(size_t row) const { return !p->target.soft && p->target.labels.Ignored(row); }
  bool NeedsStats(size_t row) const {
    if (stats_out) return true;
    if (merged) return !Ignored(row) && HasOutput();  // only the gradient needs the shard's segments
    return !Ignored(row) || p->lse != nullptr;
  }
  size_t ScratchRows() const { return p->grad.data != nullptr ? 1 : 0; }
  void Stats(size_t row, size_t s0, size_t s1, Seg* out, float* scratch) const {
    kernels.stats[DispatchIndex()](k, row, s0, s1, out, scratch);
  }
  static void Merge(Acc& acc, const Seg& g) { acc.Merge(g); }
  bool HasOutput() const { return p->grad.data != nullptr; }
  void Output(size_t row, const RowState& st, const Seg* segs, size_t s0, size_t s1, float* scratch) const {
    kernels.grad[DispatchIndex()](k, st, segs, row, s0, s1, scratch);
  }
  bool OutputStats(size_t row, const RowState& st, const Seg* segs, size_t next_row, Seg* next_segs,
                   float* scratch) const {
    if (stats_out || merged) return false;
    return kernels.fused[DispatchIndex()](k, st, segs, row, next_row, next_segs, scratch);
  }

  void Finish(size_t row, const Acc& own, bool had_stats, RowState* st) const {
    if (stats_out) {
      Export(row, own);
      return;
    }
    const Acc& acc = merged ? merged[row] : own;
    const bool ignored = Ignored(row);
    const double lse = had_stats || merged ? acc.Lse() : kNaN;
    if (p->lse) p->lse[row] = static_cast<float>(lse);
    if (ignored) {
      if (row_loss) row_loss.Put(row, 0.0);
      st->zero = true;
      return;
    }
    const double eps = p->label_smoothing, V = static_cast<double>(p->V), logS = acc.LogS();
    double loss, a_coef;
    double g = static_cast<double>(p->grad_scale) * inv_div;
    if (p->row_scale) g *= p->row_scale[row];
    st->y = -1;
    st->delta = 0.0f;
    if (p->target.soft) {
      // sum_c a_c (lse - z_c) = W log S - D
      loss = acc.W * logS - acc.D;
      a_coef = acc.W;
      st->b = SatF32(g);
    } else {
      const int64_t y = p->target.labels.At(row);
      const double wy = p->weight ? p->weight[y] : 1.0;
      const double nll = (acc.M - static_cast<double>(acc.zy)) + logS;
      loss = (1.0 - eps) * wy * nll;
      a_coef = (1.0 - eps) * wy;
      if (eps > 0.0) {
        loss += eps / V * (w_total * logS - acc.D);
        a_coef += eps / V * w_total;
      }
      st->b = SatF32(g * eps / V);
      st->delta = SatF32(g * (1.0 - eps) * wy);
      // The target's column in this row's columns, or none.
      st->y = y >= k.class_offset && y - k.class_offset < static_cast<int64_t>(k.V) ? y - k.class_offset : -1;
    }
    if (p->z_loss != 0.0f) {
      loss += static_cast<double>(p->z_loss) * lse * lse;
      a_coef += 2.0 * static_cast<double>(p->z_loss) * lse;
    }
    if (row_loss) row_loss.Put(row, loss);
    // A row without mass (all -inf) or with NaN has an undefined softmax:
    // its whole gradient is NaN, as PyTorch's.
    st->nan = acc.nan || acc.S == 0.0;
    st->M = acc.M;
    st->a = st->nan ? std::numeric_limits<float>::quiet_NaN() : SatF32(g * a_coef / acc.S);
    st->zero = false;
  }

  // The row's record in the layout of src/problem.h (after the header).
  void Export(size_t row, const Acc& acc) const {
    const size_t n = CeShardRowDoubles(p->label_smoothing);
    double rec[4] = {};
    // M is the max of f32 logits (or -inf): exact in f32, as zy.
    const float mzy[2] = {static_cast<float>(acc.M), acc.has_zy ? acc.zy : std::numeric_limits<float>::quiet_NaN()};
    std::memcpy(&rec[kRowMZy], mzy, sizeof(mzy));
    rec[kRowS] = acc.nan ? kNaN : acc.S;
    rec[kRowD] = acc.D;
    rec[kRowW] = acc.W;
    std::memcpy(stats_out + kShardHeaderDoubles + row * n, rec, n * sizeof(double));  // (any alignment)
  }
};

// A row's statistics as a shard exported them (CeOp::Export); `holds`: the
// shard holds the row's (not ignored) target.
SoftmaxAcc Import(const double* rank_stats, size_t row, size_t n, bool holds) {
  double rec[4] = {};
  std::memcpy(rec, rank_stats + kShardHeaderDoubles + row * n, n * sizeof(double));
  float mzy[2];
  std::memcpy(mzy, &rec[kRowMZy], sizeof(mzy));
  SoftmaxAcc a;
  a.M = mzy[0];
  a.S = rec[kRowS];
  a.D = rec[kRowD];
  a.W = rec[kRowW];
  a.zy = mzy[1];
  a.has_zy = holds;
  a.nan = std::isnan(a.S);
  return a;
}

// The columns [offset, offset + width) of p's rows that a call runs on.
struct Columns {
  size_t offset, width;
};

// RunCrossEntropyRows over the columns `cols` of p's rows (p.logits and
// p.grad hold just those), with CeOp's vocab-parallel members.
xent_status RunColumns(const CrossEntropyProblem& p, Columns cols, double divisor, RowLossSink row_loss,
                       double* stats_out, const SoftmaxAcc* merged) {
  const bool soft = p.target.soft;
  CeOp op;
  op.p = &p;
  op.kernels = p.logits.dtype == DType::kBF16  ? CeKernelsBF16()
               : p.logits.dtype == DType::kF16 ? CeKernelsF16()
                                               : CeKernelsF32();
  op.k.V = cols.width;
  op.k.class_offset = static_cast<int64_t>(cols.offset);
  op.k.logits = p.logits;
  op.k.soft = soft;
  op.k.q = p.target.probs;
  op.k.target = p.target.labels;
  op.k.weight = p.weight ? p.weight + cols.offset : nullptr;
  op.k.eps = p.label_smoothing;
  op.k.softcap = p.softcap;
  op.k.inv_softcap = p.softcap > 0.0f ? 1.0f / p.softcap : 0.0f;
  op.k.dot = p.label_smoothing > 0.0f;
  op.k.grad = p.grad;
  // In place, the rows are in cache already: plain stores.
  op.k.stream = p.grad.data != nullptr && p.grad.data != p.logits.data && StreamOutputs(p.B, cols.width, p.grad);

  // Class weight total (smoothing with class weights), over all p.V classes.
  double w_total = static_cast<double>(p.V);
  if (p.weight) {
    w_total = 0.0;
    for (size_t c = 0; c < p.V; ++c) w_total += p.weight[c];
  }
  op.w_total = w_total;
  op.inv_div = 1.0 / divisor;  // inf when every row is ignored: all their gradients are 0
  op.row_loss = row_loss;
  op.stats_out = stats_out;
  op.merged = merged;
  return RunRows(op, p.B, cols.width, p.exec);
}

// The reduced loss from the row losses.
void Reduce(const CrossEntropyProblem& p, const RowLosses& losses, double divisor) {
  if (!p.loss) return;
  double sum = losses.Sum(p.B);
  if (p.reduction == Reduction::kMean) sum /= divisor;  // 0/0 = NaN as PyTorch
  *p.loss = static_cast<float>(sum);
}

// A column shard's problem as the cross-entropy problem over all V classes
// whose logits and gradient are just the shard's columns.
CrossEntropyProblem WholeRows(const CrossEntropyShardProblem& s) {
  CrossEntropyProblem p;
  p.B = s.B;
  p.V = s.V;
  p.logits = s.logits;
  p.target.labels = s.target;
  p.weight = s.weight;
  p.row_scale = s.row_scale;
  p.reduction = s.reduction;
  p.label_smoothing = s.label_smoothing;
  p.z_loss = s.z_loss;
  p.softcap = s.softcap;
  p.grad_scale = s.grad_scale;
  p.loss = s.loss;
  p.row_loss = s.row_loss;
  p.lse = s.lse;
  p.grad = s.grad;
  p.exec = s.exec;
  return p;
}

}  // namespace

double CrossEntropyDivisor(const CrossEntropyProblem& p) {
  if (p.reduction != Reduction::kMean) return 1.0;
  if (p.target.soft) return static_cast<double>(p.B);
  double divisor = 0.0;
  for (size_t i = 0; i < p.B; ++i) {
    if (p.target.labels.Ignored(i)) continue;
    divisor += p.weight ? p.weight[p.target.labels.At(i)] : 1.0;
  }
  return divisor;
}

xent_status RunCrossEntropyRows(const CrossEntropyProblem& p, double divisor, RowLossSink row_loss) {
  return RunColumns(p, Columns{0, p.V}, divisor, row_loss, nullptr, nullptr);
}

size_t CrossEntropyRowsWorkspaceBytes(size_t B, size_t V) { return RowsWorkspaceBytes<CeOp>(B, V); }

xent_status CrossEntropyFoldColumns(const CrossEntropyProblem& p, size_t offset, size_t width, double* stats,
                                    SoftmaxAcc* acc) {
  const xent_status rc = RunColumns(p, Columns{offset, width}, 1.0, RowLossSink(), stats, nullptr);
  if (rc != XENT_OK) return rc;
  const size_t n = CeShardRowDoubles(p.label_smoothing);
  for (size_t i = 0; i < p.B; ++i) {
    const bool ignored = p.target.labels.Ignored(i);
    const int64_t y = ignored ? -1 : p.target.labels.At(i);
    const bool holds = !ignored && y >= static_cast<int64_t>(offset) && y < static_cast<int64_t>(offset + width);
    acc[i].Combine(Import(stats, i, n, holds));
  }
  return XENT_OK;
}

xent_status CrossEntropyColumnsWithStats(const CrossEntropyProblem& p, size_t offset, size_t width, double divisor,
                                         RowLossSink row_loss, const SoftmaxAcc* merged) {
  return RunColumns(p, Columns{offset, width}, divisor, row_loss, nullptr, merged);
}

xent_status RunCrossEntropy(const CrossEntropyProblem& p) {
  const double divisor = CrossEntropyDivisor(p);
  RowLosses losses;
  if (!losses.Init(p.row_loss, p.loss != nullptr, p.B)) return XENT_ERROR_OUT_OF_MEMORY;
  const xent_status rc = RunCrossEntropyRows(p, divisor, losses.sink);
  if (rc != XENT_OK) return rc;
  Reduce(p, losses, divisor);
  return XENT_OK;
}

xent_status RunCrossEntropyShardStats(const CrossEntropyShardProblem& s) {
  const CrossEntropyProblem p = WholeRows(s);
  const xent_status rc = RunColumns(p, Columns{s.offset, s.Vs}, 1.0, RowLossSink(), s.stats_out, nullptr);
  if (rc != XENT_OK) return rc;
  const double header[kShardHeaderDoubles] = {s.label_smoothing > 0.0f ? kTagCeDot : kTagCe, static_cast<double>(s.B),
                                              static_cast<double>(s.offset), static_cast<double>(s.Vs)};
  std::memcpy(s.stats_out, header, sizeof(header));
  return XENT_OK;
}

xent_status RunCrossEntropyShardFinish(const CrossEntropyShardProblem& s) {
  const CrossEntropyProblem p = WholeRows(s);
  // Each row's statistics over all shards, merged in the tree over shard
  // indices that the single-process engine uses over segments (TreeMerge).
  std::unique_ptr<SoftmaxAcc[]> merged(new (std::nothrow) SoftmaxAcc[s.B]);
  RowLosses losses;
  if (!merged || !losses.Init(p.row_loss, p.loss != nullptr, p.B)) return XENT_ERROR_OUT_OF_MEMORY;
  // The ranks' columns (capi checked that they tile [0, V)).
  const size_t n = CeShardRowDoubles(s.label_smoothing), per_rank = CeShardStatsDoubles(s.B, s.label_smoothing);
  std::unique_ptr<size_t[]> begin(new (std::nothrow) size_t[s.P + 1]);
  if (!begin) return XENT_ERROR_OUT_OF_MEMORY;
  ShardBegins(s.stats_in, s.P, per_rank, begin.get());
  for (size_t i = 0; i < s.B; ++i) {
    const int64_t y = s.target.At(i);
    const bool ignored = s.target.Ignored(i);
    merged[i] = TreeMerge<SoftmaxAcc>(s.P, [&](size_t r) {
      const bool holds = !ignored && y >= static_cast<int64_t>(begin[r]) && y < static_cast<int64_t>(begin[r + 1]);
      return Import(s.stats_in + r * per_rank, i, n, holds);
    });
  }
  const double divisor = CrossEntropyDivisor(p);
  const xent_status rc = RunColumns(p, Columns{s.offset, s.Vs}, divisor, losses.sink, nullptr, merged.get());
  if (rc != XENT_OK) return rc;
  Reduce(p, losses, divisor);
  return XENT_OK;
}

}  // namespace xent
