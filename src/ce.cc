// Cross-entropy (class-index and probability targets): per-segment statistics
// and gradient kernels for every SIMD target, and the driver that runs them.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/ce.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "src/ops.h"
#include "src/rows.h"
#include "src/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

// Loads z = softcap(x) (or x) and, for the tail, sets lanes >= r to -inf.
template <typename T, bool kCap>
HWY_INLINE VF LoadZ(DF d, const T* p, const CeKernel& k) {
  const VF x = LoadF32(d, p);
  return kCap ? SoftCap(d, x, k.softcap, k.inv_softcap) : x;
}
template <typename T, bool kCap>
HWY_INLINE VF LoadZTail(DF d, const T* p, size_t r, const CeKernel& k) {
  VF x = LoadTailF32(d, p, r, 0.0f);
  if (kCap) x = SoftCap(d, x, k.softcap, k.inv_softcap);
  return hn::IfThenElse(hn::FirstN(d, r), x, hn::Set(d, kNegInf));
}

// Reference max of a segment: max z, or 0 when all z are -inf (so that
// exp(z - m) is 0, not NaN); NaN stays NaN.
template <typename T, bool kCap>
HWY_INLINE float SegmentRef(const T* x, size_t n, const CeKernel& k) {
  const float mx = MaxOf(x, n);  // softcap is increasing: max z = softcap(max x)
  const float mz = kCap ? SoftCapScalar(mx, k.softcap, k.inv_softcap) : mx;
  return mz == kNegInf ? 0.0f : mz;
}

constexpr size_t kInner = 16;  // 4-vector iterations per inner sum

// Inner block of HardStatsSeg over [i0, i1), a multiple of 4 vectors.
template <typename T, bool kCap, int kDot>
HWY_INLINE void HardStatsBlock(const CeKernel& k, const T* x, const float* w, size_t i0, size_t i1, VF vm, VF& s0,
                               VF& s1, VF& s2, VF& s3, VF& dt0, VF& dt1, VF& ws) {
  const DF d;
  const size_t N = hn::Lanes(d);
  for (size_t i = i0; i < i1; i += 4 * N) {
    const VF z0 = hn::Sub(LoadZ<T, kCap>(d, x + i, k), vm);
    const VF z1 = hn::Sub(LoadZ<T, kCap>(d, x + i + N, k), vm);
    const VF z2 = hn::Sub(LoadZ<T, kCap>(d, x + i + 2 * N, k), vm);
    const VF z3 = hn::Sub(LoadZ<T, kCap>(d, x + i + 3 * N, k), vm);
    s0 = hn::Add(s0, ExpNonPositive(d, z0));
    s1 = hn::Add(s1, ExpNonPositive(d, z1));
    s2 = hn::Add(s2, ExpNonPositive(d, z2));
    s3 = hn::Add(s3, ExpNonPositive(d, z3));
    if (kDot == 1) {
      dt0 = hn::Add(dt0, hn::Add(z0, z1));
      dt1 = hn::Add(dt1, hn::Add(z2, z3));
    } else if (kDot == 2) {
      const VF w0 = hn::LoadU(d, w + i), w1 = hn::LoadU(d, w + i + N);
      const VF w2 = hn::LoadU(d, w + i + 2 * N), w3 = hn::LoadU(d, w + i + 3 * N);
      dt0 = hn::MulAdd(w1, z1, hn::MulAdd(w0, z0, dt0));
      dt1 = hn::MulAdd(w3, z3, hn::MulAdd(w2, z2, dt1));
      ws = hn::Add(ws, hn::Add(hn::Add(w0, w1), hn::Add(w2, w3)));
    }
  }
}

// Class-index targets. kDot: 0 = no smoothing term, 1 = sum (z - m),
// 2 = sum w (z - m).
template <typename T, bool kCap, int kDot>
HWY_NOINLINE void HardStatsSeg(const CeKernel& k, const T* x, const float* w, size_t n,
                               SoftmaxSeg* out) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const float m = SegmentRef<T, kCap>(x, n, k);
  const VF vm = hn::Set(d, m);
  VF s0 = hn::Zero(d), s1 = s0, s2 = s0, s3 = s0, dt0 = s0, dt1 = s0, ws = s0;
  // Two-level summation: inner sums of at most kInner terms per lane, added
  // into the outer accumulators, keep the f32 rounding error near
  // (kInner + n / kInner) ulp instead of n / lanes ulp on narrow targets.
  const size_t full = n - n % (4 * N);
  size_t i = 0;
  while (i < full) {
    const size_t blk_end = std::min(full, i + kInner * 4 * N);
    VF b0 = hn::Zero(d), b1 = b0, b2 = b0, b3 = b0, e0 = b0, e1 = b0;
    HardStatsBlock<T, kCap, kDot>(k, x, w, i, blk_end, vm, b0, b1, b2, b3, e0, e1, ws);
    s0 = hn::Add(s0, b0);
    s1 = hn::Add(s1, b1);
    s2 = hn::Add(s2, b2);
    s3 = hn::Add(s3, b3);
    dt0 = hn::Add(dt0, e0);
    dt1 = hn::Add(dt1, e1);
    i = blk_end;
  }
  for (; i + N <= n; i += N) {
    const VF z = hn::Sub(LoadZ<T, kCap>(d, x + i, k), vm);
    s0 = hn::Add(s0, ExpNonPositive(d, z));
    if (kDot == 1) dt0 = hn::Add(dt0, z);
    if (kDot == 2) {
      const VF wv = hn::LoadU(d, w + i);
      dt0 = hn::MulAdd(wv, z, dt0);
      ws = hn::Add(ws, wv);
    }
  }
  if (i < n) {
    const size_t r = n - i;
    const auto valid = hn::FirstN(d, r);
    const VF z = hn::Sub(LoadZTail<T, kCap>(d, x + i, r, k), vm);
    s0 = hn::Add(s0, ExpNonPositive(d, z));
    if (kDot == 1) dt0 = hn::Add(dt0, hn::IfThenElseZero(valid, z));
    if (kDot == 2) {
      const VF wv = LoadTailF32(d, w + i, r, 0.0f);
      dt0 = hn::Add(dt0, hn::IfThenElseZero(valid, hn::Mul(wv, z)));
      ws = hn::Add(ws, wv);
    }
  }
  out->m = m;
  out->s = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
  if (kDot != 0) out->dot = hn::GetLane(hn::SumOfLanes(d, hn::Add(dt0, dt1)));
  out->wsum = (kDot == 2) ? hn::GetLane(hn::SumOfLanes(d, ws)) : static_cast<float>(n);
}

// Probability targets: q' = (1 - eps) q + eps / V, a_c = w_c q'_c;
// dot = sum a (z - m) with 0 (z - m) = 0 where a = 0 (even for z = -inf).
template <typename T, typename TQ, bool kCap, bool kW>
HWY_NOINLINE void SoftStatsSeg(const CeKernel& k, const T* x, const TQ* q, const float* w, size_t n,
                               SoftmaxSeg* out) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const float m = SegmentRef<T, kCap>(x, n, k);
  const VF vm = hn::Set(d, m);
  const VF keep = hn::Set(d, 1.0f - k.eps), add = hn::Set(d, k.eps / static_cast<float>(k.V));
  VF s0 = hn::Zero(d), s1 = s0, dt0 = s0, dt1 = s0, as0 = s0, as1 = s0;
  auto step = [&](VF z, VF qv, VF wv, VF& s, VF& dt, VF& as) {
    z = hn::Sub(z, vm);
    s = hn::Add(s, ExpNonPositive(d, z));
    VF a = hn::MulAdd(qv, keep, add);
    if (kW) a = hn::Mul(a, wv);
    dt = hn::Add(dt, hn::IfThenZeroElse(hn::Eq(a, hn::Zero(d)), hn::Mul(a, z)));
    as = hn::Add(as, a);
  };
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    step(LoadZ<T, kCap>(d, x + i, k), LoadF32(d, q + i), kW ? hn::LoadU(d, w + i) : vm, s0, dt0, as0);
    step(LoadZ<T, kCap>(d, x + i + N, k), LoadF32(d, q + i + N), kW ? hn::LoadU(d, w + i + N) : vm, s1,
         dt1, as1);
  }
  for (; i + N <= n; i += N) {
    step(LoadZ<T, kCap>(d, x + i, k), LoadF32(d, q + i), kW ? hn::LoadU(d, w + i) : vm, s0, dt0, as0);
  }
  if (i < n) {
    const size_t r = n - i;
    const auto valid = hn::FirstN(d, r);
    VF z = hn::Sub(LoadZTail<T, kCap>(d, x + i, r, k), vm);
    s1 = hn::Add(s1, ExpNonPositive(d, z));
    VF a = hn::MulAdd(LoadTailF32(d, q + i, r, 0.0f), keep, add);
    if (kW) a = hn::Mul(a, LoadTailF32(d, w + i, r, 0.0f));
    a = hn::IfThenElseZero(valid, a);
    dt1 = hn::Add(dt1, hn::IfThenZeroElse(hn::Eq(a, hn::Zero(d)), hn::Mul(a, z)));
    as1 = hn::Add(as1, a);
  }
  out->m = m;
  out->s = hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1)));
  out->dot = hn::GetLane(hn::SumOfLanes(d, hn::Add(dt0, dt1)));
  out->wsum = hn::GetLane(hn::SumOfLanes(d, hn::Add(as0, as1)));
}

template <typename T, bool kCap>
void StatsT(const CeKernel& k, size_t row, size_t s0, size_t s1, SoftmaxSeg* out) {
  const T* x = RowPtr<T>(k.logits.data, k.logits.stride, row);
  int64_t y = -1;
  if (!k.soft) y = k.target.At(row);
  for (size_t s = s0; s < s1; ++s) {
    const size_t b = s * kSegment, n = std::min(kSegment, k.V - b);
    SoftmaxSeg* o = out + (s - s0);
    *o = SoftmaxSeg();
    const float* w = k.weight ? k.weight + b : nullptr;
    if (k.soft) {
      const bool wt = w != nullptr;
      if (k.q.dtype == DType::kF32) {
        const float* q = RowPtr<float>(k.q.data, k.q.stride, row) + b;
        wt ? SoftStatsSeg<T, float, kCap, true>(k, x + b, q, w, n, o)
           : SoftStatsSeg<T, float, kCap, false>(k, x + b, q, w, n, o);
      } else {
        const T* q = RowPtr<T>(k.q.data, k.q.stride, row) + b;
        wt ? SoftStatsSeg<T, T, kCap, true>(k, x + b, q, w, n, o)
           : SoftStatsSeg<T, T, kCap, false>(k, x + b, q, w, n, o);
      }
    } else if (!k.dot) {
      HardStatsSeg<T, kCap, 0>(k, x + b, w, n, o);
    } else if (w == nullptr) {
      HardStatsSeg<T, kCap, 1>(k, x + b, w, n, o);
    } else {
      HardStatsSeg<T, kCap, 2>(k, x + b, w, n, o);
    }
    if (y >= static_cast<int64_t>(b) && y < static_cast<int64_t>(b + n)) {
      const float xy = LoadScalarF32(x, static_cast<size_t>(y), DTypeOf<T>());
      o->zy = kCap ? SoftCapScalar(xy, k.softcap, k.inv_softcap) : xy;
      o->has_zy = 1;
    }
  }
}

void CeStats(const CeKernel& k, size_t row, size_t s0, size_t s1, SoftmaxSeg* out) {
  const bool cap = k.softcap > 0.0f;
  switch (k.logits.dtype) {
    case DType::kBF16:
      return cap ? StatsT<BF16, true>(k, row, s0, s1, out) : StatsT<BF16, false>(k, row, s0, s1, out);
    case DType::kF16:
      return cap ? StatsT<F16, true>(k, row, s0, s1, out) : StatsT<F16, false>(k, row, s0, s1, out);
    default:
      return cap ? StatsT<float, true>(k, row, s0, s1, out) : StatsT<float, false>(k, row, s0, s1, out);
  }
}

// Gradient of one segment. kB: 0 = no b term, 1 = constant b, 2 = b w_c,
// 3 = b w_c q'_c (soft), 4 = b q'_c (soft, no weights).
template <typename T, typename TG, typename TQ, bool kCap, int kB>
HWY_NOINLINE void GradSeg(const CeKernel& k, const CeRowCoef& c, const T* x, const TQ* q, const float* w,
                          TG* g, size_t n, int64_t y_local) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const VF vM = hn::Set(d, c.M), va = hn::Set(d, c.a), vb = hn::Set(d, c.b);
  const VF keep = hn::Set(d, 1.0f - k.eps), add = hn::Set(d, k.eps / static_cast<float>(k.V));
  const auto lanes = hn::Iota(hn::RebindToSigned<DF>(), 0);
  auto grad = [&](size_t i, VF z, VF qv, VF wv) {
    const VF e = ExpNonPositive(d, hn::Sub(z, vM));
    VF gv;
    if (kB == 0) {
      gv = hn::Mul(e, va);
    } else if (kB == 1) {
      gv = hn::MulSub(e, va, vb);
    } else if (kB == 2) {
      gv = hn::NegMulAdd(vb, wv, hn::Mul(e, va));
    } else {
      VF a = hn::MulAdd(qv, keep, add);
      if (kB == 3) a = hn::Mul(a, wv);
      gv = hn::NegMulAdd(vb, a, hn::Mul(e, va));
    }
    const int64_t yl = y_local - static_cast<int64_t>(i);
    if (yl >= 0 && yl < static_cast<int64_t>(N)) {
      const auto at_y = hn::RebindMask(d, hn::Eq(lanes, hn::Set(hn::RebindToSigned<DF>(), static_cast<int32_t>(yl))));
      gv = hn::IfThenElse(at_y, hn::Sub(gv, hn::Set(d, c.delta)), gv);
    }
    if (kCap) gv = hn::Mul(gv, SoftCapSlope(d, z, k.inv_softcap));
    return gv;
  };
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const VF z = LoadZ<T, kCap>(d, x + i, k);
    const VF qv = (kB >= 3) ? LoadF32(d, q + i) : vM;
    const VF wv = (kB == 2 || kB == 3) ? hn::LoadU(d, w + i) : vM;
    StoreF32(d, grad(i, z, qv, wv), g + i);
  }
  if (i < n) {
    const size_t r = n - i;
    const VF z = LoadZTail<T, kCap>(d, x + i, r, k);
    const VF qv = (kB >= 3) ? LoadTailF32(d, q + i, r, 0.0f) : vM;
    const VF wv = (kB == 2 || kB == 3) ? LoadTailF32(d, w + i, r, 0.0f) : vM;
    StoreTailF32(d, grad(i, z, qv, wv), g + i, r);
  }
}

template <typename TG>
HWY_INLINE void ZeroRow(TG* g, size_t n) {
  const DF d;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  for (; i + N <= n; i += N) StoreF32(d, hn::Zero(d), g + i);
  if (i < n) StoreTailF32(d, hn::Zero(d), g + i, n - i);
}

template <typename T, typename TG, bool kCap>
void GradT(const CeKernel& k, const CeRowCoef& c, size_t row, size_t s0, size_t s1) {
  const T* x = RowPtr<T>(k.logits.data, k.logits.stride, row);
  TG* g = RowPtrMut<TG>(k.grad.data, k.grad.stride, row);
  for (size_t s = s0; s < s1; ++s) {
    const size_t b = s * kSegment, n = std::min(kSegment, k.V - b);
    if (c.zero) {
      ZeroRow(g + b, n);
      continue;
    }
    const int64_t yl = c.y - static_cast<int64_t>(b);
    const float* w = k.weight ? k.weight + b : nullptr;
    if (k.soft) {
      if (k.q.dtype == DType::kF32) {
        const float* q = RowPtr<float>(k.q.data, k.q.stride, row) + b;
        w ? GradSeg<T, TG, float, kCap, 3>(k, c, x + b, q, w, g + b, n, -1)
          : GradSeg<T, TG, float, kCap, 4>(k, c, x + b, q, w, g + b, n, -1);
      } else {
        const T* q = RowPtr<T>(k.q.data, k.q.stride, row) + b;
        w ? GradSeg<T, TG, T, kCap, 3>(k, c, x + b, q, w, g + b, n, -1)
          : GradSeg<T, TG, T, kCap, 4>(k, c, x + b, q, w, g + b, n, -1);
      }
    } else if (c.b == 0.0f) {
      GradSeg<T, TG, float, kCap, 0>(k, c, x + b, nullptr, w, g + b, n, yl);
    } else if (w == nullptr) {
      GradSeg<T, TG, float, kCap, 1>(k, c, x + b, nullptr, w, g + b, n, yl);
    } else {
      GradSeg<T, TG, float, kCap, 2>(k, c, x + b, nullptr, w, g + b, n, yl);
    }
  }
}

template <typename T, typename TG>
void GradCapT(const CeKernel& k, const CeRowCoef& c, size_t row, size_t s0, size_t s1) {
  if (k.softcap > 0.0f) {
    GradT<T, TG, true>(k, c, row, s0, s1);
  } else {
    GradT<T, TG, false>(k, c, row, s0, s1);
  }
}

void CeGrad(const CeKernel& k, const CeRowCoef& c, size_t row, size_t s0, size_t s1) {
  const bool f32 = k.grad.dtype == DType::kF32;
  switch (k.logits.dtype) {
    case DType::kBF16:
      return f32 ? GradCapT<BF16, float>(k, c, row, s0, s1) : GradCapT<BF16, BF16>(k, c, row, s0, s1);
    case DType::kF16:
      return f32 ? GradCapT<F16, float>(k, c, row, s0, s1) : GradCapT<F16, F16>(k, c, row, s0, s1);
    default:
      return GradCapT<float, float>(k, c, row, s0, s1);
  }
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

HWY_EXPORT(CeStats);
HWY_EXPORT(CeGrad);

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct CeOp {
  using Seg = SoftmaxSeg;
  using Acc = SoftmaxAcc;
  using RowState = CeRowCoef;

  const CeProblem* p;
  CeKernel k;
  float* row_loss;   // caller's or scratch; may be null
  double inv_div;    // gradient divisor (mean), 1 otherwise
  double w_total;    // sum of class weights (V when unweighted)

  bool Ignored(size_t row) const { return !p->soft && p->target.At(row) == p->target.ignore_index; }
  bool NeedsStats(size_t row) const { return !Ignored(row) || p->lse != nullptr; }
  void Stats(size_t row, size_t s0, size_t s1, Seg* out) const {
    XENT_DISPATCH(CeStats)(k, row, s0, s1, out);
  }
  static void Fold(Acc& acc, const Seg& g) { acc.Fold(g); }
  bool HasOutput() const { return p->grad.data != nullptr; }
  void Output(size_t row, const RowState& st, size_t s0, size_t s1) const {
    XENT_DISPATCH(CeGrad)(k, st, row, s0, s1);
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
    const double eps = p->eps, V = static_cast<double>(p->V), logS = acc.LogS();
    double loss, a_coef;
    double g = static_cast<double>(p->grad_scale) * inv_div;
    if (p->row_scale) g *= p->row_scale[row];
    st->y = -1;
    st->delta = 0.0f;
    if (p->soft) {
      // sum_c a_c (lse - z_c) = W log S - D
      loss = acc.W * logS - acc.D;
      a_coef = acc.W;
      st->b = static_cast<float>(g);
    } else {
      const int64_t y = p->target.At(row);
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
    const double S = acc.nan ? kNaN : acc.S;
    st->M = static_cast<float>(acc.nan ? kNaN : acc.M);
    st->a = static_cast<float>(g * a_coef / S);
    st->zero = false;
  }
};

}  // namespace

xent_status RunCrossEntropy(const CeProblem& p, const Exec& exec) {
  CeOp op;
  op.p = &p;
  op.k.V = p.V;
  op.k.logits = p.logits;
  op.k.soft = p.soft;
  op.k.q = p.q;
  op.k.target = p.target;
  op.k.weight = p.weight;
  op.k.eps = p.eps;
  op.k.softcap = p.softcap;
  op.k.inv_softcap = p.softcap > 0.0f ? 1.0f / p.softcap : 0.0f;
  op.k.dot = p.eps > 0.0f;
  op.k.grad = p.grad;

  // Class weight total and the MEAN divisor (a pass over the B targets).
  double w_total = static_cast<double>(p.V);
  if (p.weight) {
    w_total = 0.0;
    for (size_t c = 0; c < p.V; ++c) w_total += p.weight[c];
  }
  op.w_total = w_total;
  double divisor = 1.0;
  if (p.reduction == Reduction::kMean) {
    if (p.soft) {
      divisor = static_cast<double>(p.B);
    } else {
      divisor = 0.0;
      for (size_t i = 0; i < p.B; ++i) {
        const int64_t y = p.target.At(i);
        if (y != p.target.ignore_index) divisor += p.weight ? p.weight[y] : 1.0;
      }
    }
  }
  op.inv_div = 1.0 / divisor;  // inf when every row is ignored: all their gradients are 0

  std::unique_ptr<float[]> scratch;
  op.row_loss = p.row_loss;
  if (p.loss != nullptr && op.row_loss == nullptr && p.B > 0) {
    scratch.reset(new (std::nothrow) float[p.B]);
    if (!scratch) return XENT_ERROR_OUT_OF_MEMORY;
    op.row_loss = scratch.get();
  }

  const xent_status rc = RunRows(op, p.B, p.V, exec);
  if (rc != XENT_OK) return rc;

  if (p.loss) {
    double sum = 0.0;
    for (size_t i = 0; i < p.B; ++i) sum += op.row_loss[i];
    if (p.reduction == Reduction::kMean) sum /= divisor;  // 0/0 = NaN as PyTorch
    *p.loss = static_cast<float>(sum);
  }
  return XENT_OK;
}

}  // namespace xent
#endif  // HWY_ONCE
