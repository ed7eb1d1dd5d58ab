// Cross-entropy (class-index and probability targets): the engine op and
// RunCrossEntropy. The kernels are in src/ce-inl.h (one translation unit per
// logits dtype).
#include <limits>

#include "src/ce.h"
#include "src/dispatch.h"
#include "src/engine.h"
#include "src/problem.h"
#include "src/scratch.h"

namespace xent {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct CeOp : NoMiddle {
  using Seg = SoftmaxSeg;
  using Acc = SoftmaxAcc;
  using RowState = CeRowCoef;

  const CrossEntropyProblem* p;
  CeKernel k;
  CeKernelTables kernels;
  float* row_loss;  // caller's or scratch; may be null
  double inv_div;   // gradient divisor (mean), 1 otherwise
  double w_total;   // sum of class weights (V when unweighted)

  bool Ignored(size_t row) const { return !p->target.soft && p->target.labels.Ignored(row); }
  bool NeedsStats(size_t row) const { return !Ignored(row) || p->lse != nullptr; }
  size_t ScratchRows() const { return p->grad.data != nullptr ? 1 : 0; }
  void Stats(size_t row, size_t s0, size_t s1, Seg* out, float* scratch) const {
    kernels.stats[DispatchIndex()](k, row, s0, s1, out, scratch);
  }
  static void Merge(Acc& acc, const Seg& g) { acc.Merge(g); }
  bool HasOutput() const { return p->grad.data != nullptr; }
  void Output(size_t row, const RowState& st, const Seg* segs, size_t s0, size_t s1, float* scratch) const {
    kernels.grad[DispatchIndex()](k, st, segs, row, s0, s1, scratch);
  }

  void Finish(size_t row, const Acc& acc, bool had_stats, RowState* st) const {
    const bool ignored = Ignored(row);
    const double lse = had_stats ? acc.Lse() : kNaN;
    if (p->lse) p->lse[row] = static_cast<float>(lse);
    if (ignored) {
      if (row_loss) row_loss[row] = 0.0f;
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
      st->b = static_cast<float>(g);
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
      st->b = static_cast<float>(g * eps / V);
      st->delta = static_cast<float>(g * (1.0 - eps) * wy);
      st->y = y;
    }
    if (p->z_loss != 0.0f) {
      loss += static_cast<double>(p->z_loss) * lse * lse;
      a_coef += 2.0 * static_cast<double>(p->z_loss) * lse;
    }
    if (row_loss) row_loss[row] = static_cast<float>(loss);
    // A row without mass (all -inf) or with NaN has an undefined softmax:
    // its whole gradient is NaN, as PyTorch's.
    st->nan = acc.nan || acc.S == 0.0;
    st->M = acc.M;
    st->a = st->nan ? std::numeric_limits<float>::quiet_NaN() : static_cast<float>(g * a_coef / acc.S);
    st->zero = false;
  }
};

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

xent_status RunCrossEntropyRows(const CrossEntropyProblem& p, double divisor, float* row_loss) {
  const bool soft = p.target.soft;
  CeOp op;
  op.p = &p;
  op.kernels = p.logits.dtype == DType::kBF16  ? CeKernelsBF16()
               : p.logits.dtype == DType::kF16 ? CeKernelsF16()
                                               : CeKernelsF32();
  op.k.V = p.V;
  op.k.logits = p.logits;
  op.k.soft = soft;
  op.k.q = p.target.probs;
  op.k.target = p.target.labels;
  op.k.weight = p.weight;
  op.k.eps = p.label_smoothing;
  op.k.softcap = p.softcap;
  op.k.inv_softcap = p.softcap > 0.0f ? 1.0f / p.softcap : 0.0f;
  op.k.dot = p.label_smoothing > 0.0f;
  op.k.grad = p.grad;
  // In place, the rows are in cache already: plain stores.
  op.k.stream = p.grad.data != nullptr && p.grad.data != p.logits.data && StreamOutputs(p.B, p.V, p.grad);

  // Class weight total (smoothing with class weights).
  double w_total = static_cast<double>(p.V);
  if (p.weight) {
    w_total = 0.0;
    for (size_t c = 0; c < p.V; ++c) w_total += p.weight[c];
  }
  op.w_total = w_total;
  op.inv_div = 1.0 / divisor;  // inf when every row is ignored: all their gradients are 0
  op.row_loss = row_loss;
  return RunRows(op, p.B, p.V, p.exec);
}

xent_status RunCrossEntropy(const CrossEntropyProblem& p) {
  const double divisor = CrossEntropyDivisor(p);
  RowLosses losses;
  if (!losses.Init(p.row_loss, p.loss != nullptr, p.B)) return XENT_ERROR_OUT_OF_MEMORY;
  const xent_status rc = RunCrossEntropyRows(p, divisor, losses.data);
  if (rc != XENT_OK) return rc;

  if (p.loss) {
    double sum = losses.Sum(p.B);
    if (p.reduction == Reduction::kMean) sum /= divisor;  // 0/0 = NaN as PyTorch
    *p.loss = static_cast<float>(sum);
  }
  return XENT_OK;
}

}  // namespace xent
