// Cross-entropy (class-index and probability targets): per-segment statistics
// and gradient kernels for every SIMD target, and the driver that runs them.

// Kernel argument types: defined once (outside the per-target namespaces) so
// that every target's kernel has the same signature.
#ifndef XENT_SRC_CE_CC_TYPES_
#define XENT_SRC_CE_CC_TYPES_
#include "src/engine.h"
#include "src/problem.h"
namespace xent {

// What the per-target kernels read.
struct CeKernel {
  size_t V = 0;
  InMat logits;
  bool soft = false;
  InMat q;         // soft targets
  Labels target;   // class indices
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

}  // namespace xent
#endif  // XENT_SRC_CE_CC_TYPES_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/ce.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "src/engine.h"
#include "src/simd-inl.h"
#include "src/softmax-inl.h"
#include "src/visit-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

// Shared by the target accumulators below: u0 = dot = sum a (z - ref), u1 =
// wsum = sum a (c0, c1: the chunk sums); a raised ref shifts dot by shift wsum.
struct DotWsumAcc {
  HWY_INLINE void ChunkEnd(DF d, VF& u0, VF& u1, VF& c0, VF& c1) {
    u0 = hn::Add(u0, c0);
    u1 = hn::Add(u1, c1);
    c0 = hn::Zero(d);
    c1 = c0;
  }
  HWY_INLINE void Rescale(DF d, float shift, VF, VF, VF& u0, VF& u1) { u0 = hn::MulAdd(hn::Set(d, shift), u1, u0); }
  HWY_INLINE void End(DF d, SoftmaxSeg* o, VF u0, VF u1) {
    o->dot = hn::GetLane(hn::SumOfLanes(d, u0));
    o->wsum = hn::GetLane(hn::SumOfLanes(d, u1));
  }
};

// Smoothing term of class-index targets: dot (u0) = sum w (z - ref), wsum
// (u1) = sum w (w = 1 when unweighted); c0, c1 the chunk sums.
template <bool kWeighted>
struct SmoothAcc : DotWsumAcc {
  const float* w;  // row of V weights (kWeighted)
  template <class M>
  HWY_INLINE void operator()(DF d, size_t j, VF zm, VF, M valid, VF& c0, VF& c1) {
    // Invalid (tail) lanes: zm = -inf -> masked to 0.
    VF wv;
    if (kWeighted) {
      const size_t r = hn::CountTrue(d, valid);
      wv = (r == hn::Lanes(d)) ? hn::LoadU(d, w + j) : LoadTailF32(d, w + j, r, 0.0f);
    } else {
      wv = hn::IfThenElseZero(valid, hn::Set(d, 1.0f));
    }
    c0 = hn::Add(c0, hn::IfThenElseZero(valid, kWeighted ? hn::Mul(wv, zm) : zm));
    c1 = hn::Add(c1, wv);
  }
};

// Probability targets: a = w (1 - eps) q + w eps / V; dot (u0) = sum a (z -
// ref) with 0 (z - ref) = 0 where a = 0, wsum (u1) = sum a.
template <typename TQ, bool kWeighted>
struct SoftAcc : DotWsumAcc {
  const TQ* q;
  const float* w;
  float keep, add;
  template <class M>
  HWY_INLINE void operator()(DF d, size_t j, VF zm, VF, M valid, VF& c0, VF& c1) {
    const size_t r = hn::CountTrue(d, valid);
    const bool full = r == hn::Lanes(d);
    const VF qv = full ? LoadF32(d, q + j) : LoadTailF32(d, q + j, r, 0.0f);
    VF a = hn::MulAdd(qv, hn::Set(d, keep), hn::Set(d, add));
    if (kWeighted) a = hn::Mul(a, full ? hn::LoadU(d, w + j) : LoadTailF32(d, w + j, r, 0.0f));
    a = hn::IfThenElseZero(valid, a);
    c0 = hn::Add(c0, hn::IfThenZeroElse(hn::Eq(a, hn::Zero(d)), hn::Mul(a, zm)));
    c1 = hn::Add(c1, a);
  }
};

template <typename T, typename TQ, bool kCap>
HWY_INLINE void SoftStats(const CeKernel& k, size_t row, const T* x, size_t s0, size_t s1, const ZMap& f,
                          SoftmaxSeg* out, float* e_out) {
  const TQ* q = RowPtr<TQ>(k.q.data, k.q.stride, row);
  const float keep = 1.0f - k.eps, add = k.eps / static_cast<float>(k.V);
  if (k.weight) {
    SoftAcc<TQ, true> a{{}, q, k.weight, keep, add};
    WalkStats<T, kCap, false>(x, k.V, s0, s1, f, a, out, e_out);
  } else {
    SoftAcc<TQ, false> a{{}, q, nullptr, keep, add};
    WalkStats<T, kCap, false>(x, k.V, s0, s1, f, a, out, e_out);
  }
}

template <typename T, bool kCap>
void StatsT(const CeKernel& k, size_t row, size_t s0, size_t s1, SoftmaxSeg* out, float* e_out) {
  const T* x = RowPtr<T>(k.logits.data, k.logits.stride, row);
  ZMap f;
  f.cap = k.softcap;
  f.inv_cap = k.inv_softcap;
  // The target's z, read before the walk (which may overwrite x with e).
  int64_t y = -1;
  float zy = 0.0f;
  if (!k.soft) {
    y = k.target.At(row);
    if (y >= static_cast<int64_t>(s0 * kSegment) && y < static_cast<int64_t>(std::min(k.V, s1 * kSegment))) {
      zy = ApplyZScalar<kCap, false>(LoadScalarF32(x, static_cast<size_t>(y), DTypeOf<T>()), f);
    } else {
      y = -1;
    }
  }
  if (k.soft) {
    k.q.dtype == DType::kF32 ? SoftStats<T, float, kCap>(k, row, x, s0, s1, f, out, e_out)
                             : SoftStats<T, T, kCap>(k, row, x, s0, s1, f, out, e_out);
  } else if (!k.dot) {
    NoAcc a;
    WalkStats<T, kCap, false>(x, k.V, s0, s1, f, a, out, e_out);
  } else if (k.weight == nullptr) {
    SmoothAcc<false> a;
    a.w = nullptr;
    WalkStats<T, kCap, false>(x, k.V, s0, s1, f, a, out, e_out);
  } else {
    SmoothAcc<true> a;
    a.w = k.weight;
    WalkStats<T, kCap, false>(x, k.V, s0, s1, f, a, out, e_out);
  }
  for (size_t s = s0; s < s1; ++s) out[s - s0].has_zy = 0;
  if (y >= 0) {
    SoftmaxSeg& o = out[static_cast<size_t>(y) / kSegment - s0];
    o.zy = zy;
    o.has_zy = 1;
  }
}

// Where the stats pass stores e and the gradient pass finds it: over the
// logits when the gradient is f32 in place, else the scratch row; nullptr
// (recompute) without a gradient or with softcap (its slope needs z).
HWY_INLINE float* EBuffer(const CeKernel& k, size_t row, float* scratch) {
  if (k.grad.data == nullptr || k.softcap > 0.0f) return nullptr;
  if (k.grad.data == k.logits.data && k.logits.dtype == DType::kF32) {
    return RowPtrMut<float>(k.grad.data, k.grad.stride, row);
  }
  return scratch;
}

struct CeStatsFn {
  template <typename T, class Cap>
  static HWY_INLINE void Run(const CeKernel& k, size_t row, size_t s0, size_t s1, SoftmaxSeg* out, float* e_out) {
    StatsT<T, Cap::value>(k, row, s0, s1, out, e_out);
  }
};

void CeStats(const CeKernel& k, size_t row, size_t s0, size_t s1, SoftmaxSeg* out, float* scratch) {
  Visit<CeStatsFn>(Choose(FloatType{k.logits.dtype}, Flag{k.softcap > 0.0f}), k, row, s0, s1, out,
                   EBuffer(k, row, scratch));
}

// ---------------------------------------------------------------------------
// Gradient of one segment: g = e F_c - b v_c [- delta at column y], times the
// softcap slope, where e = exp(z - ref_c) (read from e_in or recomputed
// exactly as the stats pass did), F_c = a exp(ref_c - M) per chunk, and the
// term b v_c is one of:
enum class GradTerm {
  kNone,        // no b term (no smoothing, class-index targets)
  kConst,       // b (smoothing, unweighted)
  kWeight,      // b w_c (smoothing, class weights)
  kWeightSoft,  // b w_c q'_c (probability targets, class weights)
  kSoft,        // b q'_c (probability targets)
};
template <typename T, typename TQ>
struct GradArgs {
  const CeKernel* k;
  const CeRowCoef* c;
  const T* x;
  const float* e_in;
  const TQ* q;
  const float* w;
  int64_t y_local;
};

// The gradient of the r (<= N) elements at i, with chunk ref vr and factor vF.
template <typename T, typename TQ, bool kCap, GradTerm kB>
HWY_INLINE VF GradVec(DF d, const GradArgs<T, TQ>& g, size_t i, size_t r, VF vr, VF vF) {
  const size_t N = hn::Lanes(d);
  const bool full = r == N;
  const CeKernel& k = *g.k;
  VF z = hn::Zero(d), e;
  if (g.e_in && !kCap) {
    e = full ? hn::LoadU(d, g.e_in + i) : LoadTailF32(d, g.e_in + i, r, 0.0f);
  } else {
    const VF xv = full ? LoadF32(d, g.x + i) : LoadTailF32(d, g.x + i, r, 0.0f);
    ZMap f;
    f.cap = k.softcap;
    f.inv_cap = k.inv_softcap;
    z = ApplyZ<kCap, false>(d, xv, f);
    e = ExpNonPositive(d, hn::Sub(z, vr));
  }
  const VF vb = hn::Set(d, g.c->b);
  VF gv;
  if (kB == GradTerm::kNone) {
    gv = hn::Mul(e, vF);
  } else if (kB == GradTerm::kConst) {
    gv = hn::MulSub(e, vF, vb);
  } else {
    VF v;
    if (kB == GradTerm::kWeight || kB == GradTerm::kWeightSoft) v = full ? hn::LoadU(d, g.w + i) : LoadTailF32(d, g.w + i, r, 0.0f);
    if (kB == GradTerm::kWeightSoft || kB == GradTerm::kSoft) {
      const VF qv = full ? LoadF32(d, g.q + i) : LoadTailF32(d, g.q + i, r, 0.0f);
      const VF qp = hn::MulAdd(qv, hn::Set(d, 1.0f - k.eps), hn::Set(d, k.eps / static_cast<float>(k.V)));
      v = (kB == GradTerm::kWeightSoft) ? hn::Mul(v, qp) : qp;
    }
    gv = hn::NegMulAdd(vb, v, hn::Mul(e, vF));
  }
  const int64_t yl = g.y_local - static_cast<int64_t>(i);
  if (HWY_UNLIKELY(yl >= 0 && yl < static_cast<int64_t>(N))) {
    const hn::RebindToSigned<DF> di;
    const auto at_y = hn::RebindMask(d, hn::Eq(hn::Iota(di, 0), hn::Set(di, static_cast<int32_t>(yl))));
    gv = hn::IfThenElse(at_y, hn::Sub(gv, hn::Set(d, g.c->delta)), gv);
  }
  if (kCap) gv = hn::Mul(gv, SoftCapSlope(d, z, k.inv_softcap));
  return gv;
}

// Same, for a vector that may straddle two chunks (after an unaligned head).
template <typename T, typename TQ, bool kCap, GradTerm kB>
HWY_INLINE VF GradVecAt(DF d, const GradArgs<T, TQ>& g, size_t i, size_t r, const float* refs, const float* fac) {
  const size_t c0 = i / kChunk, c1 = (i + r - 1) / kChunk;
  if (c0 == c1) return GradVec<T, TQ, kCap, kB>(d, g, i, r, hn::Set(d, refs[c0]), hn::Set(d, fac[c0]));
  const auto first = hn::FirstN(d, c1 * kChunk - i);
  return GradVec<T, TQ, kCap, kB>(d, g, i, r, hn::IfThenElse(first, hn::Set(d, refs[c0]), hn::Set(d, refs[c1])),
                                  hn::IfThenElse(first, hn::Set(d, fac[c0]), hn::Set(d, fac[c1])));
}

template <typename T, typename TG, typename TQ, bool kCap, GradTerm kB, bool kStream>
HWY_NOINLINE void GradSeg(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg& sg, const T* x,
                          const float* e_in, const TQ* q, const float* w, TG* g, size_t n, int64_t y_local,
                          const T* next) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const GradArgs<T, TQ> ga{&k, &c, x, e_in, q, w, y_local};
  float fac[kChunksPerSegment], refs[kChunksPerSegment];
  ChunkFactors(sg, n, c.a, c.M, c.nan, fac);
  const size_t chunks = (n + kChunk - 1) / kChunk;
  for (size_t ci = 0; ci < chunks; ++ci) refs[ci] = ChunkRef(sg, ci);
  const size_t peel = kStream ? PeelToAlign(g, n) : 0;
  if (peel == 0 || peel == n) {
    // Chunks are whole vectors: one ref and factor per inner loop. Streaming
    // only when the destination is aligned (peel == 0).
    const bool stream = kStream && peel == 0;
    for (size_t cb = 0, ci = 0; cb < n; cb += kChunk, ++ci) {
      const size_t ce = std::min(n, cb + kChunk);
      const VF vr = hn::Set(d, refs[ci]), vF = hn::Set(d, fac[ci]);
      // The next row's stats pass will stream this chunk from memory; fetch
      // it now, while this pass computes and writes (prefetches never fault).
      if (next) PrefetchNext(next + cb, ce - cb);
      size_t i = cb;
      if (stream) {
        for (; i + N <= ce; i += N) StoreOut<TG, true>(d, GradVec<T, TQ, kCap, kB>(d, ga, i, N, vr, vF), g + i);
      } else {
        for (; i + N <= ce; i += N) StoreF32(d, GradVec<T, TQ, kCap, kB>(d, ga, i, N, vr, vF), g + i);
      }
      if (i < ce) StoreTailF32(d, GradVec<T, TQ, kCap, kB>(d, ga, i, ce - i, vr, vF), g + i, ce - i);
    }
    return;
  }
  // Unaligned destination with streaming: peel the head, then aligned
  // vectors that may straddle chunks.
  StoreTailF32(d, GradVecAt<T, TQ, kCap, kB>(d, ga, 0, peel, refs, fac), g, peel);
  size_t i = peel;
  for (; i + N <= n; i += N) StoreOut<TG, true>(d, GradVecAt<T, TQ, kCap, kB>(d, ga, i, N, refs, fac), g + i);
  if (i < n) StoreTailF32(d, GradVecAt<T, TQ, kCap, kB>(d, ga, i, n - i, refs, fac), g + i, n - i);
}

template <typename TG, bool kStream>
HWY_INLINE void ZeroRow(TG* g, size_t n) {
  const DF d;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  bool stream = kStream;
  if (kStream) {
    const size_t peel = PeelToAlign(g, n);
    if (peel == n) {
      stream = false;
    } else if (peel > 0) {
      StoreTailF32(d, hn::Zero(d), g, peel);
      i = peel;
    }
  }
  if (stream) {
    for (; i + N <= n; i += N) StoreOut<TG, true>(d, hn::Zero(d), g + i);
  } else {
    for (; i + N <= n; i += N) StoreF32(d, hn::Zero(d), g + i);
  }
  if (i < n) StoreTailF32(d, hn::Zero(d), g + i, n - i);
}

template <typename T, typename TG, bool kCap, bool kStream>
void GradT(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t s0, size_t s1,
           const float* e_in) {
  const T* x = RowPtr<T>(k.logits.data, k.logits.stride, row);
  TG* g = RowPtrMut<TG>(k.grad.data, k.grad.stride, row);
  for (size_t s = s0; s < s1; ++s) {
    const size_t b = s * kSegment, n = std::min(kSegment, k.V - b);
    if (c.zero) {
      ZeroRow<TG, kStream>(g + b, n);
      continue;
    }
    const SoftmaxSeg& sg = segs[s];
    const int64_t yl = c.y - static_cast<int64_t>(b);
    const float* w = k.weight ? k.weight + b : nullptr;
    const float* e = e_in ? e_in + b : nullptr;
    const T* nx = x + k.logits.stride + b;  // the next row (may be past the end: prefetch only)
    if (k.soft) {
      if (k.q.dtype == DType::kF32) {
        const float* q = RowPtr<float>(k.q.data, k.q.stride, row) + b;
        w ? GradSeg<T, TG, float, kCap, GradTerm::kWeightSoft, kStream>(k, c, sg, x + b, e, q, w, g + b, n, -1, nx)
          : GradSeg<T, TG, float, kCap, GradTerm::kSoft, kStream>(k, c, sg, x + b, e, q, w, g + b, n, -1, nx);
      } else {
        const T* q = RowPtr<T>(k.q.data, k.q.stride, row) + b;
        w ? GradSeg<T, TG, T, kCap, GradTerm::kWeightSoft, kStream>(k, c, sg, x + b, e, q, w, g + b, n, -1, nx)
          : GradSeg<T, TG, T, kCap, GradTerm::kSoft, kStream>(k, c, sg, x + b, e, q, w, g + b, n, -1, nx);
      }
    } else if (c.b == 0.0f) {
      GradSeg<T, TG, float, kCap, GradTerm::kNone, kStream>(k, c, sg, x + b, e, nullptr, w, g + b, n, yl, nx);
    } else if (w == nullptr) {
      GradSeg<T, TG, float, kCap, GradTerm::kConst, kStream>(k, c, sg, x + b, e, nullptr, w, g + b, n, yl, nx);
    } else {
      GradSeg<T, TG, float, kCap, GradTerm::kWeight, kStream>(k, c, sg, x + b, e, nullptr, w, g + b, n, yl, nx);
    }
  }
  if (kStream) hwy::FlushStream();
}

struct CeGradFn {
  template <typename T, class GradF32, class Cap, class Stream>
  static HWY_INLINE void Run(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t s0,
                             size_t s1, const float* e_in) {
    GradT<T, OutType<GradF32, T>, Cap::value, Stream::value>(k, c, segs, row, s0, s1, e_in);
  }
};

void CeGrad(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t s0, size_t s1,
            float* scratch) {
  Visit<CeGradFn>(Choose(FloatType{k.logits.dtype}, Flag{k.grad.dtype == DType::kF32}, Flag{k.softcap > 0.0f},
                         Flag{k.stream}),
                  k, c, segs, row, s0, s1, EBuffer(k, row, scratch));
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

struct CeOp : NoMiddle {
  using Seg = SoftmaxSeg;
  using Acc = SoftmaxAcc;
  using RowState = CeRowCoef;

  const CrossEntropyProblem* p;
  CeKernel k;
  float* row_loss;   // caller's or scratch; may be null
  double inv_div;    // gradient divisor (mean), 1 otherwise
  double w_total;    // sum of class weights (V when unweighted)

  bool Ignored(size_t row) const { return !p->target.soft && p->target.labels.Ignored(row); }
  bool NeedsStats(size_t row) const { return !Ignored(row) || p->lse != nullptr; }
  size_t ScratchRows() const { return p->grad.data != nullptr ? 1 : 0; }
  void Stats(size_t row, size_t s0, size_t s1, Seg* out, float* scratch) const {
    XENT_DISPATCH(CeStats)(k, row, s0, s1, out, scratch);
  }
  static void Merge(Acc& acc, const Seg& g) { acc.Merge(g); }
  bool HasOutput() const { return p->grad.data != nullptr; }
  void Output(size_t row, const RowState& st, const Seg* segs, size_t s0, size_t s1, float* scratch) const {
    XENT_DISPATCH(CeGrad)(k, st, segs, row, s0, s1, scratch);
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

xent_status RunCrossEntropy(const CrossEntropyProblem& p) {
  const bool soft = p.target.soft;
  CeOp op;
  op.p = &p;
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

  // Class weight total and the MEAN divisor (a pass over the B targets).
  double w_total = static_cast<double>(p.V);
  if (p.weight) {
    w_total = 0.0;
    for (size_t c = 0; c < p.V; ++c) w_total += p.weight[c];
  }
  op.w_total = w_total;
  double divisor = 1.0;
  if (p.reduction == Reduction::kMean) {
    if (soft) {
      divisor = static_cast<double>(p.B);
    } else {
      divisor = 0.0;
      for (size_t i = 0; i < p.B; ++i) {
        if (p.target.labels.Ignored(i)) continue;
        divisor += p.weight ? p.weight[p.target.labels.At(i)] : 1.0;
      }
    }
  }
  op.inv_div = 1.0 / divisor;  // inf when every row is ignored: all their gradients are 0

  RowLosses losses;
  if (!losses.Init(p.row_loss, p.loss != nullptr, p.B)) return XENT_ERROR_OUT_OF_MEMORY;
  op.row_loss = losses.data;

  const xent_status rc = RunRows(op, p.B, p.V, p.exec);
  if (rc != XENT_OK) return rc;

  if (p.loss) {
    double sum = losses.Sum(p.B);
    if (p.reduction == Reduction::kMean) sum /= divisor;  // 0/0 = NaN as PyTorch
    *p.loss = static_cast<float>(sum);
  }
  return XENT_OK;
}

}  // namespace xent
#endif  // HWY_ONCE
