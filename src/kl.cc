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
// Here the engine op and the entry points; the kernels in src/kl-inl.h (the
// types they share with this file: src/kl.h).
#include <cstring>
#include <limits>
#include <memory>
#include <new>

#include "src/dispatch.h"
#include "src/engine.h"
#include "src/kl.h"
#include "src/problem.h"

namespace xent {

namespace {

constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();

struct KlAcc {
  SoftmaxAcc q, p;
  double psum = 0.0, qsum = 0.0;
};

struct KlOp {
  // (Stats and Middle or Output of segment s touch the scratch rows in its
  // columns only.)
  static constexpr bool kPipelined = true;
  using Seg = KlSeg;
  using Acc = KlAcc;
  using RowState = KlRow;
  const DivergenceProblem* pr;
  KlKernel k;
  KlKernelTables kernels;
  RowLossSink row_loss;
  double gscale;  // grad_scale * T^2? / divisor
  double lscale;  // T^2 or 1
  // Vocab-parallel (the rows are a column shard): phase 1 exports each row's
  // statistics and its shard-local KL to stats_out (src/problem.h's layout)
  // and writes nothing else; finish runs the gradient pass from `merged`, the
  // rows' statistics over all shards, with no statistics pass of its own:
  // every segment's exps are taken against the row's max.
  double* stats_out = nullptr;
  const KlAcc* merged = nullptr;

  bool NeedsStats(size_t) const { return true; }
  size_t ScratchRows() const { return merged ? 0 : 2; }
  void Stats(size_t row, size_t s0, size_t s1, Seg* out, float* scratch) const {
    if (merged) {
      for (size_t s = s0; s < s1; ++s) {
        out[s - s0] = KlSeg();
        out[s - s0].q.m = static_cast<float>(merged[row].q.M);
        out[s - s0].p.m = static_cast<float>(merged[row].p.M);
      }
      return;
    }
    kernels.stats[DispatchIndex()](k, row, s0, s1, out, scratch);
  }
  static void Merge(Acc& acc, const Seg& g) {
    acc.q.Merge(g.q);
    acc.p.Merge(g.p);
    acc.psum += g.psum;
    acc.qsum += g.qsum;
  }
  static void Side(const SoftmaxAcc& a, float* M, float* ls, float* inv_s, bool* nan) {
    *nan = a.nan || a.S == 0.0;
    *M = static_cast<float>(a.M);
    *ls = static_cast<float>(a.LogS());
    *inv_s = *nan ? kNaNf : static_cast<float>(1.0 / a.S);
  }
  void Finish(size_t row, const Acc& own, bool, RowState* st) const {
    const Acc& acc = merged ? merged[row] : own;
    if (stats_out) ExportStats(row, acc);
    if (k.qk == DistKind::kLogits) Side(acc.q, &st->Mq, &st->lsq, &st->aq, &st->nanq);
    if (k.pk == DistKind::kLogits) Side(acc.p, &st->Mp, &st->lsp, &st->ap, &st->nanp);
    st->psum = k.pk == DistKind::kLogits ? 1.0f : static_cast<float>(acc.psum);
    st->qsum = k.qk == DistKind::kLogits ? 1.0f : static_cast<float>(acc.qsum);
    st->ignored = pr->labels.Ignored(row);
    st->gs = st->ignored ? 0.0f : static_cast<float>(gscale);
    st->es = st->ignored ? 0.0f : static_cast<float>(lscale);
    // Sums of dL/dlog q and dL/dlog p known before pass 2.
    st->gq_sum = k.mode == KlMode::kForward ? -st->psum : 0.0f;
    st->gp_sum = k.mode == KlMode::kReverse ? -st->qsum : 0.0f;
  }
  bool HasMiddle() const { return true; }
  void Middle(size_t row, const RowState& st, Seg* segs, size_t s0, size_t s1, float* scratch) const {
    kernels.pass[DispatchIndex()](k, st, segs, row, s0, s1, scratch, true);
  }
  void FinishMiddle(size_t row, const Seg* segs, size_t nseg, RowState* st) const {
    if (merged) return;  // the row losses come from the merged statistics
    double loss = 0.0, gq = 0.0, gp = 0.0;
    for (size_t s = 0; s < nseg; ++s) {
      loss += segs[s].loss;
      gq += segs[s].gq;
      gp += segs[s].gp;
    }
    if (stats_out) {
      std::memcpy(Record(row) + 3, &loss, sizeof(loss));
      return;
    }
    if (row_loss) row_loss.Put(row, st->ignored ? 0.0 : loss * lscale);
    if (k.mode != KlMode::kForward) st->gq_sum = static_cast<float>(gq);
    if (k.mode != KlMode::kReverse) st->gp_sum = static_cast<float>(gp);
  }
  double* Record(size_t row) const { return stats_out + kShardHeaderDoubles + row * kKlShardRowDoubles; }
  // [Mq, Mp] [Sq] [Sp] (the KL follows in FinishMiddle); M is an f32 z or -inf.
  void ExportStats(size_t row, const Acc& acc) const {
    const float m[2] = {static_cast<float>(acc.q.M), static_cast<float>(acc.p.M)};
    double rec[3];
    std::memcpy(&rec[0], m, sizeof(m));
    rec[1] = acc.q.nan ? std::numeric_limits<double>::quiet_NaN() : acc.q.S;
    rec[2] = acc.p.nan ? std::numeric_limits<double>::quiet_NaN() : acc.p.S;
    std::memcpy(Record(row), rec, sizeof(rec));  // (any alignment)
  }
  bool OutputStats(size_t row, const RowState& st, Seg* segs, size_t next_row, Seg* next_segs, float* scratch) const {
    if (stats_out || merged) return false;
    return kernels.fused[DispatchIndex()](k, st, segs, row, next_row, next_segs, scratch);
  }
  bool HasOutput() const { return !k.grads_in_middle; }
  void Output(size_t row, const RowState& st, const Seg* segs, size_t s0, size_t s1, float* scratch) const {
    kernels.pass[DispatchIndex()](k, st, const_cast<Seg*>(segs), row, s0, s1, scratch, false);
  }
};

}  // namespace

namespace {

// The op and its kernel for problem p; the reduction's divisor (MEAN's
// counts mean_classes classes per row: p.V, or all shards' for a shard).
double Setup(const DivergenceProblem& p, KlOp* op_out, size_t mean_classes = 0) {
  KlOp& op = *op_out;
  op.pr = &p;
  KlKernel& k = op.k;
  k.V = p.V;
  k.q_in = p.input;
  op.kernels = p.input.dtype == DType::kBF16  ? KlKernelsBF16()
               : p.input.dtype == DType::kF16 ? KlKernelsF16()
                                              : KlKernelsF32();
  k.p_in = p.target;
  k.qk = p.input_kind;
  k.pk = p.target_kind;
  k.inv_t = 1.0f / p.temperature;
  k.mode = p.divergence == Divergence::kKl || p.beta == 0.0f ? KlMode::kForward
                                                             : (p.beta == 1.0f ? KlMode::kReverse : KlMode::kMix);
  k.beta = p.beta;
  k.elem_loss = p.elem_loss;
  k.grad_q = p.grad_input;
  k.grad_p = p.grad_target;
  // Gradients w.r.t. a side given as logits need the sum of dL/dlog over the
  // row; only forward KL (student) and reverse KL (teacher) know it before
  // the loss pass.
  const bool q_late = p.grad_input.data && k.qk == DistKind::kLogits && k.mode != KlMode::kForward;
  const bool p_late = p.grad_target.data && k.pk == DistKind::kLogits && k.mode != KlMode::kReverse;
  k.grads_in_middle = !(q_late || p_late);
  k.need_psum = p.grad_input.data && k.qk == DistKind::kLogits && k.mode == KlMode::kForward;
  k.need_qsum = p.grad_target.data && k.pk == DistKind::kLogits && k.mode == KlMode::kReverse;
  k.stream = p.grad_input.data && p.grad_input.data != p.input.data && StreamOutputs(p.B, p.V, p.grad_input);

  // Rows that count (labels mask) and the reduction divisor.
  size_t rows = p.B;
  if (p.labels.data) {
    rows = 0;
    for (size_t i = 0; i < p.B; ++i) rows += p.labels.Ignored(i) ? 0 : 1;
  }
  double divisor = 1.0;
  if (p.reduction == Reduction::kMean)
    divisor = static_cast<double>(rows) * static_cast<double>(mean_classes ? mean_classes : p.V);
  if (p.reduction == Reduction::kBatchMean) divisor = static_cast<double>(rows);
  const double t2 = p.t2_scaling ? static_cast<double>(p.temperature) * p.temperature : 1.0;
  op.lscale = t2;
  op.gscale = static_cast<double>(p.grad_scale) * t2 / divisor;
  return divisor;
}

// A shard's problem as xent_divergence's over its columns: both sides
// logits, forward KL.
DivergenceProblem ShardColumns(const KlShardProblem& s) {
  DivergenceProblem p;
  p.B = s.B;
  p.V = s.Vs;
  p.input = s.input;
  p.input_kind = DistKind::kLogits;
  p.target = s.target;
  p.target_kind = DistKind::kLogits;
  p.divergence = Divergence::kKl;
  p.temperature = s.temperature;
  p.t2_scaling = s.t2_scaling;
  p.reduction = s.reduction;
  p.grad_scale = s.grad_scale;
  p.labels = s.labels;
  p.grad_input = s.grad_input;
  p.exec = s.exec;
  return p;
}

}  // namespace

xent_status RunDivergence(const DivergenceProblem& p) {
  KlOp op;
  const double divisor = Setup(p, &op);
  RowLosses losses;
  if (!losses.Init(p.row_loss, p.loss != nullptr, p.B)) return XENT_ERROR_OUT_OF_MEMORY;
  op.row_loss = losses.sink;
  const xent_status rc = RunRows(op, p.B, p.V, p.exec);
  if (rc != XENT_OK) return rc;
  if (p.loss) *p.loss = static_cast<float>(losses.Sum(p.B) / divisor);
  return XENT_OK;
}

xent_status RunKlShardStats(const KlShardProblem& s) {
  DivergenceProblem p = ShardColumns(s);
  p.grad_input = OutMat();
  p.labels = Labels();
  KlOp op;
  Setup(p, &op);
  op.row_loss = RowLossSink();
  op.stats_out = s.stats_out;
  const xent_status rc = RunRows(op, p.B, p.V, p.exec);
  if (rc != XENT_OK) return rc;
  const double header[kShardHeaderDoubles] = {kTagKl, static_cast<double>(s.B), static_cast<double>(s.offset),
                                              static_cast<double>(s.Vs)};
  std::memcpy(s.stats_out, header, sizeof(header));
  return XENT_OK;
}

xent_status RunKlShardFinish(const KlShardProblem& s) {
  const DivergenceProblem p = ShardColumns(s);
  KlOp op;
  const double divisor = Setup(p, &op, s.V);
  // The row losses go to a buffer of ours until the gradient pass succeeded
  // (a failed call leaves the outputs untouched).
  RowLosses losses;
  std::unique_ptr<KlAcc[]> merged(new (std::nothrow) KlAcc[s.B]);
  if (!merged || !losses.Init(nullptr, true, s.B)) return XENT_ERROR_OUT_OF_MEMORY;
  const size_t per_rank = KlShardStatsDoubles(s.B);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < s.B; ++i) {
    auto side = [&](size_t r, int which) {
      double rec[3];
      std::memcpy(rec, s.stats_in + r * per_rank + kShardHeaderDoubles + i * kKlShardRowDoubles, sizeof(rec));
      float m[2];
      std::memcpy(m, &rec[0], sizeof(m));
      SoftmaxAcc a;
      a.M = m[which];
      a.S = rec[1 + which];
      a.nan = std::isnan(a.S);
      return a;
    };
    // Both sides' statistics over all shards, in the engine's tree over ranks.
    KlAcc& acc = merged[i];
    acc.q = TreeMerge<SoftmaxAcc>(s.P, [&](size_t r) { return side(r, 0); });
    acc.p = TreeMerge<SoftmaxAcc>(s.P, [&](size_t r) { return side(r, 1); });
    // KL = sum_r w_r (KL_r + (lse_p,r - lse_p) - (lse_q,r - lse_q)), w_r the
    // teacher's mass on rank r (ranks without any are skipped: their terms
    // are 0 x (-inf)); left to right over ranks.
    double kl = 0.0;
    if (acc.q.nan || acc.p.nan) {
      kl = std::numeric_limits<double>::quiet_NaN();
    } else if (acc.p.S == 0.0) {
      kl = std::numeric_limits<double>::quiet_NaN();  // no teacher distribution, as xent_divergence's NaN row
    } else {
      const double lse_p = acc.p.Lse(), lse_q = acc.q.Lse();
      for (size_t r = 0; r < s.P; ++r) {
        const SoftmaxAcc pr = side(r, 1), qr = side(r, 0);
        if (pr.S == 0.0) continue;
        double kl_r;
        std::memcpy(&kl_r, s.stats_in + r * per_rank + kShardHeaderDoubles + i * kKlShardRowDoubles + 3, sizeof(kl_r));
        if (qr.S == 0.0) {  // teacher mass where the student has none
          kl += kInf;
          continue;
        }
        const double lse_pr = pr.Lse(), w = std::exp(lse_pr - lse_p);
        kl += w * (kl_r + (lse_pr - lse_p) - (qr.Lse() - lse_q));
      }
    }
    if (s.B) losses.sums[i] = s.labels.Ignored(i) ? 0.0 : kl * op.lscale;
  }
  if (s.grad_input.data != nullptr) {
    op.merged = merged.get();
    op.row_loss = RowLossSink();
    const xent_status rc = RunRows(op, p.B, p.V, p.exec);
    if (rc != XENT_OK) return rc;
  }
  if (s.row_loss)
    for (size_t i = 0; i < s.B; ++i) s.row_loss[i] = static_cast<float>(losses.sums[i]);
  if (s.loss) *s.loss = static_cast<float>((s.B ? losses.Sum(s.B) : 0.0) / divisor);
  return XENT_OK;
}

}  // namespace xent
