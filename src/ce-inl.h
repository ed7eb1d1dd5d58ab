// Cross-entropy kernels for every SIMD target (class-index and probability
// targets): phase 1 (per-segment statistics with the smoothing or soft-target
// sums) and phase 4 (the gradient). Included by src/ce_<dtype>.cc, one
// translation unit per logits dtype.
#if defined(XENT_SRC_CE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_SRC_CE_INL_H_
#undef XENT_SRC_CE_INL_H_
#else
#define XENT_SRC_CE_INL_H_
#endif

#include "hwy/highway.h"
#include "src/ce.h"
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

// Phase 1 of the cross-entropy op for logits of type T.
template <typename T>
HWY_INLINE void CeStatsOf(const CeKernel& k, size_t row, size_t s0, size_t s1, SoftmaxSeg* out, float* scratch) {
  VisitFixed<CeStatsFn, T>(Choose(Flag{k.softcap > 0.0f}), k, row, s0, s1, out, EBuffer(k, row, scratch));
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

// Phase 4 (the gradient) of the cross-entropy op for logits of type T.
template <typename T>
HWY_INLINE void CeGradOf(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t s0,
                         size_t s1, float* scratch) {
  VisitFixed<CeGradFn, T>(Choose(Flag{k.grad.dtype == DType::kF32}, Flag{k.softcap > 0.0f}, Flag{k.stream}), k, c,
                          segs, row, s0, s1, EBuffer(k, row, scratch));
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#endif  // XENT_SRC_CE_INL_H_
