// Binary cross-entropy with logits, elementwise over B x V, in one pass:
// loss sums per segment, and optionally the elementwise loss and gradient.
#ifndef XENT_SRC_BCE_CC_TYPES_
#define XENT_SRC_BCE_CC_TYPES_
#include "src/engine.h"
#include "src/problem.h"
namespace xent {
struct BceKernel {
  size_t V = 0;
  InMat logits, target;
  const float* weight = nullptr;
  size_t weight_stride = 0;
  const float* pos_weight = nullptr;
  OutMat elem_loss, grad;
  float gscale = 1.0f;
};
struct BceSeg {
  float loss = 0.0f;
};
}  // namespace xent
#endif  // XENT_SRC_BCE_CC_TYPES_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/bce.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "src/engine.h"
#include "src/simd-inl.h"
#include "src/visit-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

// l = pw y softplus(-x) + (1 - y) softplus(x) (PyTorch's value),
// dl/dx = (1 - y) - (1 + (pw - 1) y) sigmoid(-x); both times the weight.
// Per vector: exp(-|x|), then log1p of it (the loss) and 1 / (1 + it) (the
// gradient), the rest from those (BceFinish).
template <typename TG>
struct BceArgs {
  const BceKernel* k;
  const float* w;
  const float* pw;
  float* el;
  TG* g;
};

template <typename TG>
HWY_INLINE void BceFinish(DF d, const BceArgs<TG>& a, size_t i, size_t r, VF xv, VF yv, VF e, VF L, VF inv, VF& acc) {
  const bool full = r == hn::Lanes(d);
  const VF one = hn::Set(d, 1.0f), zero = hn::Zero(d);
  const VF sp_neg = hn::Add(L, hn::Max(hn::Neg(xv), zero));  // softplus(-x)
  const VF sp_pos = hn::Add(L, hn::Max(xv, zero));           // softplus(x)
  VF lw = one;                                               // 1 + (pw - 1) y
  // pw y softplus(-x), as (y softplus(-x)) pw: pw y can underflow to 0
  // (y = 1e-45, pw = 0.4) where softplus(-x) = inf (x = -inf) and the
  // loss is +inf. It is 0 exactly where y or pw is.
  VF pos = hn::Mul(yv, sp_neg);
  auto pos_zero = hn::Eq(yv, zero);
  if (a.pw) {
    const VF pv = full ? hn::LoadU(d, a.pw + i) : LoadTailF32(d, a.pw + i, r, 1.0f);
    lw = hn::MulAdd(hn::Sub(pv, one), yv, one);
    pos = hn::Mul(pos, pv);
    pos_zero = hn::Or(pos_zero, hn::Eq(pv, zero));
  }
  const VF omy = hn::Sub(one, yv);
  // pw y softplus(-x) + (1 - y) softplus(x): PyTorch's value, written as a
  // sum of non-negative terms (its (1 - y) x + lw softplus(-x) cancels
  // for large |x|).
  // A term whose factor is 0 is 0, also against softplus = inf (x = -+inf):
  // infinite logits give the limit, not 0 * inf.
  VF l = hn::Add(hn::IfThenZeroElse(pos_zero, pos), hn::IfThenZeroElse(hn::Eq(omy, zero), hn::Mul(omy, sp_pos)));
  VF wv = one;
  if (a.w) {
    wv = full ? hn::LoadU(d, a.w + i) : LoadTailF32(d, a.w + i, r, 0.0f);
    l = hn::Mul(l, wv);
  }
  acc = hn::Add(acc, full ? l : hn::IfThenElseZero(hn::FirstN(d, r), l));
  if (a.el) full ? StoreF32(d, l, a.el + i) : StoreTailF32(d, l, a.el + i, r);
  if (a.g) {
    const VF sig_neg = hn::IfThenElse(hn::Ge(xv, zero), hn::Mul(e, inv), inv);  // sigmoid(-x)
    VF gv = hn::NegMulAdd(lw, sig_neg, omy);
    if (a.w) gv = hn::Mul(gv, wv);
    gv = hn::Mul(gv, hn::Set(d, a.k->gscale));
    full ? StoreF32(d, gv, a.g + i) : StoreTailF32(d, gv, a.g + i, r);
  }
}

// Two full vectors at a time, their exp, log1p and division side by side:
// one vector's chain of them is ~60 dependent operations, and one vector
// after the other the out-of-order window of an AVX2 core did not overlap
// two chains (AMD Zen 1, 1024x32000 f32, 1 thread: 6.4 -> 4.4 ns/logit).
template <typename T, typename TY, typename TG>
HWY_NOINLINE void BceSegment(const BceKernel& k, const T* x, const TY* y, const float* w, const float* pw, float* el,
                             TG* g, size_t n, BceSeg* out) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const VF one = hn::Set(d, 1.0f), zero = hn::Zero(d);
  const BceArgs<TG> a{&k, w, pw, el, g};
  VF total = zero;
  for (size_t cb = 0; cb < n; cb += kChunk) {  // two-level sums
    const size_t ce = std::min(n, cb + kChunk);
    VF acc = zero;
    size_t i = cb;
    // One pass, the only read of the rows: prefetch ahead, as the softmax
    // walks do (the hardware prefetcher alone falls behind a busy core).
    const auto prefetch = [&](size_t j, size_t r) HWY_ATTR __attribute__((always_inline)) {
      PrefetchAhead(x + j, r);
      PrefetchAhead(y + j, r);
      if (w && k.weight_stride != 0) PrefetchAhead(w + j, r);
    };
    for (; i + 2 * N <= ce; i += 2 * N) {
      prefetch(i, 2 * N);
      const VF x0 = LoadF32(d, x + i), x1 = LoadF32(d, x + i + N);
      const VF y0 = LoadF32(d, y + i), y1 = LoadF32(d, y + i + N);
      VF e0 = hn::Neg(hn::Abs(x0)), e1 = hn::Neg(hn::Abs(x1));
      ExpNonPositive2(d, e0, e1);  // exp(-|x|)
      const VF L0 = hn::Log1p(d, e0), L1 = hn::Log1p(d, e1);
      VF inv0 = zero, inv1 = zero;
      if (g) {
        inv0 = hn::Div(one, hn::Add(one, e0));
        inv1 = hn::Div(one, hn::Add(one, e1));
      }
      BceFinish(d, a, i, N, x0, y0, e0, L0, inv0, acc);
      BceFinish(d, a, i + N, N, x1, y1, e1, L1, inv1, acc);
    }
    for (; i < ce; i += N) {
      const size_t r = std::min(N, ce - i);
      const bool full = r == N;
      prefetch(i, r);
      const VF xv = full ? LoadF32(d, x + i) : LoadTailF32(d, x + i, r, 0.0f);
      const VF yv = full ? LoadF32(d, y + i) : LoadTailF32(d, y + i, r, 0.0f);
      const VF e = ExpNonPositive(d, hn::Neg(hn::Abs(xv)));  // exp(-|x|)
      const VF L = hn::Log1p(d, e);
      const VF inv = g ? hn::Div(one, hn::Add(one, e)) : zero;
      BceFinish(d, a, i, r, xv, yv, e, L, inv, acc);
    }
    total = hn::Add(total, acc);
  }
  out->loss = hn::GetLane(hn::SumOfLanes(d, total));
}

template <typename T, typename TY, typename TG>
void BceRowT(const BceKernel& k, size_t row, size_t s0, size_t s1, BceSeg* out) {
  const T* x = RowPtr<T>(k.logits.data, k.logits.stride, row);
  const TY* y = RowPtr<TY>(k.target.data, k.target.stride, row);
  const float* w = k.weight ? k.weight + row * k.weight_stride : nullptr;
  float* el = k.elem_loss.data ? RowPtrMut<float>(k.elem_loss.data, k.elem_loss.stride, row) : nullptr;
  TG* g = k.grad.data ? RowPtrMut<TG>(k.grad.data, k.grad.stride, row) : nullptr;
  for (size_t s = s0; s < s1; ++s) {
    const size_t b = s * kSegment, n = std::min(kSegment, k.V - b);
    BceSegment<T, TY, TG>(k, x + b, y + b, w ? w + b : nullptr, k.pos_weight ? k.pos_weight + b : nullptr,
                          el ? el + b : nullptr, g ? g + b : nullptr, n, out + (s - s0));
  }
}

// Targets and gradient are each f32 or the logits' dtype.
struct BceRowFn {
  template <typename T, class TargetF32, class GradF32>
  static HWY_INLINE void Run(const BceKernel& k, size_t row, size_t s0, size_t s1, BceSeg* out) {
    BceRowT<T, OutType<TargetF32, T>, OutType<GradF32, T>>(k, row, s0, s1, out);
  }
};

void BceRow(const BceKernel& k, size_t row, size_t s0, size_t s1, BceSeg* out) {
  Visit<BceRowFn>(Choose(FloatType{k.logits.dtype}, Flag{k.target.dtype == DType::kF32},
                         Flag{k.grad.data == nullptr || k.grad.dtype == DType::kF32}),
                  k, row, s0, s1, out);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <memory>
#include <new>

#include "src/dispatch.h"

namespace xent {

HWY_EXPORT(BceRow);

namespace {

struct BceAcc {
  double loss = 0.0;
};
struct BceRowState {};

struct BceOp : NoMiddle {
  using Seg = BceSeg;
  using Acc = BceAcc;
  using RowState = BceRowState;
  BceKernel k;
  RowLossSink row_loss;
  bool NeedsStats(size_t) const { return true; }
  size_t ScratchRows() const { return 0; }
  void Stats(size_t row, size_t s0, size_t s1, Seg* out, float*) const { XENT_DISPATCH(BceRow)(k, row, s0, s1, out); }
  static void Merge(Acc& acc, const Seg& g) { acc.loss += g.loss; }
  void Finish(size_t row, const Acc& acc, bool, RowState*) const {
    if (row_loss) row_loss.Put(row, acc.loss);
  }
  bool HasOutput() const { return false; }
  void Output(size_t, const RowState&, const Seg*, size_t, size_t, float*) const {}
};

}  // namespace

xent_status RunBce(const BceProblem& p) {
  BceOp op;
  op.k.V = p.V;
  op.k.logits = p.logits;
  op.k.target = p.target;
  op.k.weight = p.weight.data;
  op.k.weight_stride = p.weight.stride;
  op.k.pos_weight = p.pos_weight;
  op.k.elem_loss = p.elem_loss;
  op.k.grad = p.grad;
  double divisor = 1.0;
  if (p.reduction == Reduction::kMean) divisor = static_cast<double>(p.B) * static_cast<double>(p.V);
  if (p.reduction == Reduction::kBatchMean) divisor = static_cast<double>(p.B);
  op.k.gscale = static_cast<float>(static_cast<double>(p.grad_scale) / divisor);
  RowLosses losses;
  if (!losses.Init(p.row_loss, p.loss != nullptr, p.B)) return XENT_ERROR_OUT_OF_MEMORY;
  op.row_loss = losses.sink;
  const xent_status rc = RunRows(op, p.B, p.V, p.exec);
  if (rc != XENT_OK) return rc;
  if (p.loss) *p.loss = static_cast<float>(losses.Sum(p.B) / divisor);
  return XENT_OK;
}

}  // namespace xent
#endif  // HWY_ONCE
