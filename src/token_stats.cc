// Per-token statistics (argmax, top-k, the reference model's KL, with log
// p(y), entropy and lse) and their backward: the engine ops and
// RunTokenStats / RunTokenLogprobsBackward. The kernels are in
// src/token_stats-inl.h (one translation unit per logits dtype).
//
// Forward: phase 1 walks each segment once (WalkStats with an accumulator
// that adds the entropy sums and the segment's top-k candidates; the
// reference logits in a second walk); phase 2 merges the softmax partials in
// f64 and the candidate lists (both in segment order, so the result does not
// depend on the split); phase 3 writes the per-row outputs; a middle pass
// sums the KL terms when KL(p || q) is wanted (log p and log q need both
// rows' lse first).
// Backward: one output pass per row from the per-row coefficients; the
// statistics it needs and the caller did not pass are computed by the
// forward's phases first.
#include <algorithm>
#include <cmath>
#include <limits>

#include "src/dispatch.h"
#include "src/engine.h"
#include "src/problem.h"
#include "src/scratch.h"
#include "src/token_stats.h"

namespace xent {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

TokKernelTables TablesFor(DType t) {
  return t == DType::kBF16 ? TokKernelsBF16() : t == DType::kF16 ? TokKernelsF16() : TokKernelsF32();
}

// The merged statistics of a row: both softmax partials and the top-k list.
struct TokAccRow {
  SoftmaxAcc sm, ref;
  uint32_t n = 0;
  float x[kTopKMax];
  float z[kTopKMax];
  int64_t idx[kTopKMax];

  void Merge(const TokSeg& g) {
    sm.Merge(g.sm);
    if (g.has_ref) ref.Merge(g.ref);
    if (g.ntop == 0) return;
    // Two lists ordered by TopKKey (largest first), equal keys by column; the
    // segment's columns are all larger than the row's so far, so it wins
    // only when strictly larger.
    float nx[kTopKMax], nz[kTopKMax];
    int64_t ni[kTopKMax];
    uint32_t i = 0, j = 0, m = 0;
    const uint32_t K = g.k;
    while (m < K && (i < n || j < g.ntop)) {
      const bool take_seg = j < g.ntop && (i >= n || TopKKey(g.top_x[j]) > TopKKey(x[i]));
      if (take_seg) {
        nx[m] = g.top_x[j];
        nz[m] = g.top_z[j];
        ni[m] = static_cast<int64_t>(g.base + g.top_i[j]);
        ++j;
      } else {
        nx[m] = x[i];
        nz[m] = z[i];
        ni[m] = idx[i];
        ++i;
      }
      ++m;
    }
    std::copy(nx, nx + m, x);
    std::copy(nz, nz + m, z);
    std::copy(ni, ni + m, idx);
    n = m;
  }
};

// log p of a class with z = zc: z - lse, as -((M - z) + log S) (the form
// token log-probs use, so that equal classes give equal bits).
double LogProb(const SoftmaxAcc& a, float zc) { return -((a.M - static_cast<double>(zc)) + a.LogS()); }

struct TokRow {
  TokKlRow kl;
};

// ---------------------------------------------------------------------------
struct TokStatsOp {
  using Seg = TokSeg;
  using Acc = TokAccRow;
  using RowState = TokRow;

  const TokenLogprobsProblem* p = nullptr;
  TokKernel k;
  TokKernelTables kernels{};

  bool NeedsStats(size_t) const { return true; }
  size_t ScratchRows() const { return 0; }
  void Stats(size_t row, size_t s0, size_t s1, Seg* out, float*) const {
    kernels.stats[DispatchIndex()](k, row, s0, s1, out, nullptr);
  }
  static void Merge(Acc& acc, const Seg& g) { acc.Merge(g); }

  void Finish(size_t row, const Acc& acc, bool, RowState* st) const {
    const TokenLogprobsProblem& q = *p;
    const bool ignored = q.target.data != nullptr && q.target.Ignored(row);
    if (q.lse) q.lse[row] = static_cast<float>(acc.sm.Lse());
    if (q.entropy) q.entropy[row] = static_cast<float>(acc.sm.Entropy());
    if (q.logprob) q.logprob[row] = ignored ? 0.0f : static_cast<float>(LogProb(acc.sm, acc.sm.zy));
    if (q.argmax) q.argmax[row] = acc.idx[0];
    if (q.argmax_logprob) q.argmax_logprob[row] = static_cast<float>(LogProb(acc.sm, acc.z[0]));
    const size_t K = static_cast<size_t>(q.topk);
    if (K > 0 && (q.topk_logprobs || q.topk_indices || q.topk_mass)) {
      double mass = 0.0;
      for (size_t j = 0; j < K; ++j) {
        const double lp = LogProb(acc.sm, acc.z[j]);
        mass += std::exp(lp);
        if (q.topk_logprobs) q.topk_logprobs[row * K + j] = static_cast<float>(lp);
        if (q.topk_indices) q.topk_indices[row * K + j] = acc.idx[j];
      }
      if (q.topk_mass) q.topk_mass[row] = static_cast<float>(mass);
    }
    if (k.ref.data != nullptr) {
      const double lse_q = acc.ref.Lse();
      if (q.ref_lse) q.ref_lse[row] = static_cast<float>(lse_q);
      if (q.ref_logprob) q.ref_logprob[row] = ignored ? 0.0f : static_cast<float>(LogProb(acc.ref, acc.ref.zy));
      st->kl.M = static_cast<float>(acc.sm.M);
      st->kl.L = static_cast<float>(acc.sm.LogS());
      st->kl.D = static_cast<float>(acc.sm.Lse() - lse_q);
    }
  }

  bool HasMiddle() const { return p->kl != nullptr; }
  void Middle(size_t row, const RowState& st, Seg* segs, size_t s0, size_t s1, float*) const {
    kernels.kl[DispatchIndex()](k, st.kl, row, s0, s1, segs);
  }
  void FinishMiddle(size_t row, const Seg* segs, size_t nseg, RowState*) const {
    double kl = 0.0;
    for (size_t s = 0; s < nseg; ++s) kl += segs[s].kl;
    p->kl[row] = static_cast<float>(kl);
  }
  bool HasOutput() const { return false; }
  void Output(size_t, const RowState&, const Seg*, size_t, size_t, float*) const {}
};

}  // namespace

xent_status RunTokenStats(const TokenLogprobsProblem& p) {
  TokStatsOp op;
  op.p = &p;
  op.kernels = TablesFor(p.logits.dtype);
  op.k.V = p.V;
  op.k.logits = p.logits;
  if (p.ref_logprob || p.ref_lse || p.kl) op.k.ref = p.ref_logits;
  op.k.target = p.target;
  op.k.scale = 1.0f / p.temperature;
  op.k.cap = p.softcap;
  op.k.inv_cap = p.softcap > 0.0f ? 1.0f / p.softcap : 0.0f;
  const bool topk = p.topk > 0 && (p.topk_logprobs || p.topk_indices || p.topk_mass);
  op.k.K = topk ? static_cast<uint32_t>(p.topk) : ((p.argmax || p.argmax_logprob) ? 1u : 0u);
  return RunRows(op, p.B, p.V, p.exec);
}

// ---------------------------------------------------------------------------
namespace {

struct TokBwdRow {
  TokGradRow g;
  TokKlRow kl;         // the middle pass's (KL computed here)
  float gkl = 0.0f;    // upstream gradient of KL (0: no KL term)
  double c0_kl = 0.0;  // c0 before the KL term's -g_kl (D + KL)
  double D = 0.0;      // lse - lse_ref
};

struct TokBackwardOp {
  using Seg = TokSeg;
  using Acc = TokAccRow;
  using RowState = TokBwdRow;

  // Output of a segment reads and writes that segment's columns only (its
  // delta columns too, and e in the scratch row), Stats of a segment writes
  // e there in its columns only: the engine may interleave a row's gradient
  // with the next row's statistics (without the KL middle pass: HasMiddle),
  // or run them in one walk (OutputStats).
  static constexpr bool kPipelined = true;

  const TokenLogprobsBackwardProblem* p = nullptr;
  TokKernel k;  // statistics (when the caller's are missing)
  TokGradKernel gk;
  TokKernelTables kernels{};
  bool need_stats = false;  // some statistic the gradient needs was not passed
  bool kl_middle = false;   // KL itself is computed here

  float GradLogprob(size_t row) const {
    if (p->grad_logprob == nullptr || p->target.Ignored(row)) return 0.0f;
    return p->grad_logprob[row];
  }
  float GradEntropy(size_t row) const { return p->grad_entropy ? p->grad_entropy[row] : 0.0f; }
  float GradKl(size_t row) const { return p->grad_kl ? p->grad_kl[row] : 0.0f; }
  // All upstream gradients of the row are 0 (NaN is not).
  bool RowZero(size_t row) const {
    if (GradLogprob(row) != 0.0f || GradEntropy(row) != 0.0f || GradKl(row) != 0.0f) return false;
    if (p->grad_topk_logprobs != nullptr) {
      const size_t K = static_cast<size_t>(p->topk);
      for (size_t j = 0; j < K; ++j)
        if (p->grad_topk_logprobs[row * K + j] != 0.0f) return false;
    }
    return true;
  }

  bool NeedsStats(size_t row) const { return need_stats && !RowZero(row); }
  // (seg_e) the row's e, from its stats walk to its gradient pass; without
  // seg_e the engine passes no scratch (nullptr: nothing stored or read).
  size_t ScratchRows() const { return gk.seg_e ? 1 : 0; }
  void Stats(size_t row, size_t s0, size_t s1, Seg* out, float* scratch) const {
    kernels.stats[DispatchIndex()](k, row, s0, s1, out, scratch);
  }
  static void Merge(Acc& acc, const Seg& g) { acc.Merge(g); }

  void Finish(size_t row, const Acc& acc, bool, RowState* st) const {
    TokGradRow& c = st->g;
    c.zero = RowZero(row);
    st->gkl = 0.0f;
    if (c.zero) return;
    const TokenLogprobsBackwardProblem& q = *p;
    double lse;
    if (q.lse) {
      lse = q.lse[row];
      c.M = q.lse[row];
      c.L = 0.0f;
    } else {
      lse = acc.sm.Lse();
      c.M = static_cast<float>(acc.sm.M);
      c.L = static_cast<float>(acc.sm.LogS());
    }
    c.lse = lse;
    c.nan = acc.sm.nan;
    // Deltas: the target and the given classes, by column, duplicates summed.
    const float glp = GradLogprob(row);
    double G = 0.0;
    uint32_t nd = 0;
    auto add = [&](int64_t col, float w) {
      G += w;
      uint32_t pos = nd;
      while (pos > 0 && c.idx[pos - 1] > col) --pos;
      if (pos > 0 && c.idx[pos - 1] == col) {
        c.w[pos - 1] += w;
        return;
      }
      for (uint32_t m = nd; m > pos; --m) {
        c.idx[m] = c.idx[m - 1];
        c.w[m] = c.w[m - 1];
      }
      c.idx[pos] = col;
      c.w[pos] = w;
      ++nd;
    };
    if (glp != 0.0f) {
      const int64_t col = q.target.At(row) - q.class_offset;
      if (col >= 0 && col < static_cast<int64_t>(q.V)) {
        add(col, glp);
      } else {
        G += glp;  // the target is in another column shard
      }
    }
    if (q.grad_topk_logprobs != nullptr) {
      const size_t K = static_cast<size_t>(q.topk);
      for (size_t j = 0; j < K; ++j) {
        const float w = q.grad_topk_logprobs[row * K + j];
        if (w != 0.0f) add(q.topk_indices[row * K + j], w);
      }
    }
    c.nd = nd;
    // c0 = -G - g_H H - g_kl (D + KL), c1 = -g_H, c2 = g_kl; a term whose
    // upstream gradient is 0 is absent (its statistic may be NaN).
    double c0 = -G;
    const float gh = GradEntropy(row);
    if (gh != 0.0f)
      c0 -= static_cast<double>(gh) * (q.entropy ? static_cast<double>(q.entropy[row]) : acc.sm.Entropy());
    c.c1 = -gh;
    const float gkl = GradKl(row);
    c.c2 = gkl;
    st->gkl = gkl;
    if (gkl != 0.0f) {
      const double lse_q = q.ref_lse ? static_cast<double>(q.ref_lse[row]) : acc.ref.Lse();
      st->D = lse - lse_q;
      st->c0_kl = c0;
      if (q.kl) c0 -= static_cast<double>(gkl) * (st->D + q.kl[row]);
      st->kl.M = c.M;
      st->kl.L = c.L;
      st->kl.D = static_cast<float>(st->D);
    }
    c.c0 = static_cast<float>(c0);
  }

  bool HasMiddle() const { return kl_middle; }
  void Middle(size_t row, const RowState& st, Seg* segs, size_t s0, size_t s1, float*) const {
    if (st.g.zero || st.gkl == 0.0f) return;
    kernels.kl[DispatchIndex()](k, st.kl, row, s0, s1, segs);
  }
  void FinishMiddle(size_t, const Seg* segs, size_t nseg, RowState* st) const {
    if (st->g.zero || st->gkl == 0.0f) return;
    double kl = 0.0;
    for (size_t s = 0; s < nseg; ++s) kl += segs[s].kl;
    st->g.c0 = static_cast<float>(st->c0_kl - static_cast<double>(st->gkl) * (st->D + kl));
  }

  bool HasOutput() const { return true; }
  void Output(size_t row, const RowState& st, const Seg* segs, size_t s0, size_t s1, float* scratch) const {
    kernels.grad[DispatchIndex()](gk, st.g, segs, row, s0, s1, scratch);
  }
  bool OutputStats(size_t row, const RowState& st, const Seg* segs, size_t next_row, Seg* next_segs,
                   float* scratch) const {
    return kernels.fused[DispatchIndex()](k, gk, st.g, segs, row, next_row, next_segs, scratch);
  }
};

}  // namespace

xent_status RunTokenLogprobsBackward(const TokenLogprobsBackwardProblem& p) {
  TokBackwardOp op;
  op.p = &p;
  op.kernels = TablesFor(p.logits.dtype);
  const float scale = 1.0f / p.temperature;
  const float inv_cap = p.softcap > 0.0f ? 1.0f / p.softcap : 0.0f;
  const bool kl_term = p.grad_kl != nullptr;
  op.kl_middle = kl_term && p.kl == nullptr;
  const bool need_ref_stats = kl_term && (p.ref_lse == nullptr || p.kl == nullptr);
  op.need_stats = p.lse == nullptr || (p.grad_entropy != nullptr && p.entropy == nullptr) || need_ref_stats;
  op.k.V = p.V;
  op.k.logits = p.logits;
  if (need_ref_stats) op.k.ref = p.ref_logits;
  op.k.scale = scale;
  op.k.cap = p.softcap;
  op.k.inv_cap = inv_cap;
  op.k.K = 0;
  // The KL middle pass reads the reference logits whenever it runs.
  if (op.kl_middle) op.k.ref = p.ref_logits;
  op.gk.V = p.V;
  op.gk.logits = p.logits;
  if (kl_term) op.gk.ref = p.ref_logits;
  op.gk.scale = scale;
  op.gk.cap = p.softcap;
  op.gk.inv_cap = inv_cap;
  op.gk.grad = p.grad;
  op.gk.stream = p.grad.data != p.logits.data && StreamOutputs(p.B, p.V, p.grad);
  op.gk.prefetch = !op.need_stats && !op.kl_middle;
  op.gk.seg_e = op.need_stats && !kl_term;
  return RunRows(op, p.B, p.V, p.exec);
}

xent_status RunTokenLogprobsShardBackward(const TokenLogprobsShardBackwardProblem& s) {
  TokenLogprobsBackwardProblem p;
  p.B = s.B;
  p.V = s.Vs;
  p.logits = s.logits;
  p.target = s.target;
  p.temperature = s.temperature;
  p.softcap = s.softcap;
  p.grad_logprob = s.grad_logprob;
  p.grad_entropy = s.grad_entropy;
  p.lse = s.lse;
  p.entropy = s.entropy;
  p.grad = s.grad;
  p.exec = s.exec;
  p.class_offset = static_cast<int64_t>(s.offset);
  return RunTokenLogprobsBackward(p);
}

}  // namespace xent
