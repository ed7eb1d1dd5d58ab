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

#include <cstring>

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
// wsum = sum a (c0, c1: the chunk sums).
struct DotWsumAcc {
  HWY_INLINE void ChunkEnd(DF d, VF& u0, VF& u1, VF& c0, VF& c1) {
    u0 = hn::Add(u0, c0);
    u1 = hn::Add(u1, c1);
    c0 = hn::Zero(d);
    c1 = c0;
  }
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
  HWY_INLINE void Full(DF d, size_t j, VF zm, VF, VF& c0, VF& c1) {
    if (kWeighted) {
      const VF wv = hn::LoadU(d, w + j);
      c0 = hn::MulAdd(wv, zm, c0);
      c1 = hn::Add(c1, wv);
    } else {
      c0 = hn::Add(c0, zm);
      c1 = hn::Add(c1, hn::Set(d, 1.0f));
    }
  }
  HWY_INLINE void Tail(DF d, size_t j, VF zm, VF, size_t r, VF& c0, VF& c1) {
    // The other lanes: zm = -inf, masked to 0.
    const auto valid = hn::FirstN(d, r);
    const VF wv = kWeighted ? LoadTailF32(d, w + j, r, 0.0f) : hn::IfThenElseZero(valid, hn::Set(d, 1.0f));
    c0 = hn::Add(c0, hn::IfThenElseZero(valid, kWeighted ? hn::Mul(wv, zm) : zm));
    c1 = hn::Add(c1, wv);
  }
};

// Probability targets: a = w (1 - eps) q + w eps / V; dot (u0) = sum a (z -
// ref) with 0 (z - ref) = 0 where a = 0, wsum (u1) = sum a. Weighted, each
// term is ((1 - eps) q + eps / V) (z - ref), then times w: not a (z - ref),
// whose a = qk w can underflow to 0 (q = 1e-45, w = 0.4) and turn a -inf
// logit's infinite term into 0 (a finite loss where the float64 value and
// PyTorch's, whose product is log_softmax * target * weight, are +inf). a
// is 0 exactly when one of its factors is (qk = q when eps = 0, and at
// least eps / V otherwise).
template <typename TQ, bool kWeighted>
struct SoftAcc : DotWsumAcc {
  const TQ* q;
  const float* w;
  float keep, add;
  // `off`: lanes that take no part (past the row's end).
  template <class M>
  HWY_INLINE void Add(DF d, VF qv, VF wv, VF zm, M off, VF& c0, VF& c1) {
    const VF qk = hn::MulAdd(qv, hn::Set(d, keep), hn::Set(d, add));
    VF a = qk, t = hn::Mul(qk, zm);
    auto none = hn::Or(off, hn::Eq(qk, hn::Zero(d)));
    if (kWeighted) {
      a = hn::Mul(qk, wv);
      t = hn::Mul(t, wv);
      none = hn::Or(none, hn::Eq(wv, hn::Zero(d)));
    }
    c0 = hn::Add(c0, hn::IfThenZeroElse(none, t));
    c1 = hn::Add(c1, hn::IfThenZeroElse(off, a));
  }
  HWY_INLINE void Full(DF d, size_t j, VF zm, VF, VF& c0, VF& c1) {
    Add(d, LoadF32(d, q + j), kWeighted ? hn::LoadU(d, w + j) : zm, zm, hn::FirstN(d, 0), c0, c1);
  }
  HWY_INLINE void Tail(DF d, size_t j, VF zm, VF, size_t r, VF& c0, VF& c1) {
    // The other lanes: q = 0 and (weighted) w = 0, masked off.
    const VF wv = kWeighted ? LoadTailF32(d, w + j, r, 0.0f) : zm;
    Add(d, LoadTailF32(d, q + j, r, 0.0f), wv, zm, hn::Not(hn::FirstN(d, r)), c0, c1);
  }
};

template <typename T, typename TQ, bool kCap>
HWY_INLINE void SoftStats(const CeKernel& k, size_t row, const T* x, size_t s0, size_t s1, const ZMap& f,
                          SoftmaxSeg* out, float* e_out) {
  const TQ* q = RowPtr<TQ>(k.q.data, k.q.stride, row);
  const float keep = 1.0f - k.eps, add = k.eps / static_cast<float>(k.V);
  if (k.weight) {
    SoftAcc<TQ, true> a{{}, q, k.weight, keep, add};
    WalkStats<T, kCap, false, kCap>(x, k.V, s0, s1, f, a, out, e_out);
  } else {
    SoftAcc<TQ, false> a{{}, q, nullptr, keep, add};
    WalkStats<T, kCap, false, kCap>(x, k.V, s0, s1, f, a, out, e_out);
  }
}

// The term b v_c of the gradient (GradSeg below).
enum class GradTerm {
  kNone,        // no b term (no smoothing, class-index targets)
  kConst,       // b (smoothing, unweighted)
  kWeight,      // b w_c (smoothing, class weights)
  kWeightSoft,  // b w_c q'_c (probability targets, class weights)
  kSoft,        // b q'_c (probability targets)
};

// With a rider (see WalkStats): class-index targets only, the accumulator
// the rider's kTerm implies (the caller checks; probability targets are
// compiled for NoRider alone).
template <typename T, bool kCap, class Rider = NoRider>
void StatsT(const CeKernel& k, size_t row, size_t s0, size_t s1, SoftmaxSeg* out, float* e_out,
            Rider&& rider = Rider()) {
  constexpr bool kPlain = std::is_same<std::decay_t<Rider>, NoRider>::value;
  const T* x = RowPtr<T>(k.logits.data, k.logits.stride, row);
  ZMap f;
  f.cap = k.softcap;
  f.inv_cap = k.inv_softcap;
  // The target's z, read before the walk (which may overwrite x with e).
  int64_t y = -1;
  float zy = 0.0f;
  if (!k.soft) {
    // A global class index; the row's columns start at class_offset (without
    // forming y - class_offset first: y may be any int64 ignore_index).
    const int64_t yg = k.target.At(row), off = k.class_offset;
    if (yg >= off + static_cast<int64_t>(s0 * kSegment) &&
        yg < off + static_cast<int64_t>(std::min(k.V, s1 * kSegment))) {
      y = yg - off;
      zy = ApplyZScalar<kCap, false>(LoadScalarF32(x, static_cast<size_t>(y), DTypeOf<T>()), f);
    }
  }
  if constexpr (!kPlain) {
    // The rider's gradient term says which sums the walk takes.
    constexpr GradTerm kB = std::decay_t<Rider>::kTerm;
    if constexpr (kB == GradTerm::kNone) {
      NoAcc a;
      WalkStats<T, kCap, false, kCap>(x, k.V, s0, s1, f, a, out, e_out, rider);
    } else {
      SmoothAcc<kB == GradTerm::kWeight> a;
      a.w = k.weight;
      WalkStats<T, kCap, false, kCap>(x, k.V, s0, s1, f, a, out, e_out, rider);
    }
  } else if (!k.soft && !k.dot) {
    NoAcc a;
    WalkStats<T, kCap, false, kCap>(x, k.V, s0, s1, f, a, out, e_out);
  } else if (k.soft) {
    k.q.dtype == DType::kF32 ? SoftStats<T, float, kCap>(k, row, x, s0, s1, f, out, e_out)
                             : SoftStats<T, T, kCap>(k, row, x, s0, s1, f, out, e_out);
  } else if (k.weight == nullptr) {
    SmoothAcc<false> a;
    a.w = nullptr;
    WalkStats<T, kCap, false, kCap>(x, k.V, s0, s1, f, a, out, e_out);
  } else {
    SmoothAcc<true> a;
    a.w = k.weight;
    WalkStats<T, kCap, false, kCap>(x, k.V, s0, s1, f, a, out, e_out);
  }
  for (size_t s = s0; s < s1; ++s) out[s - s0].has_zy = 0;
  if (y >= 0) {
    SoftmaxSeg& o = out[static_cast<size_t>(y) / kSegment - s0];
    o.zy = zy;
    o.has_zy = 1;
  }
}

// Whether the stats pass stores e over the logits (an f32 gradient in place).
HWY_INLINE bool EOverLogits(const CeKernel& k) { return k.grad.data == k.logits.data && k.logits.dtype == DType::kF32; }

// Where the stats pass stores e (with softcap: z, which the softcap's slope
// needs) and the gradient pass finds it: over the logits when the gradient
// is f32 in place; else the scratch row, or without one (few long rows split
// in segments) the f32 gradient row itself, which the gradient pass reads
// column by column before it overwrites it; nullptr (recompute) without a
// gradient, or with neither.
HWY_INLINE float* EBuffer(const CeKernel& k, size_t row, float* scratch) {
  if (k.grad.data == nullptr) return nullptr;
  const bool f32_grad = k.grad.dtype == DType::kF32;
  if (EOverLogits(k) || (scratch == nullptr && f32_grad)) {
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
// Gradient of one segment: g = e F - b v_c [- delta at column y], times the
// softcap slope, where e = exp(z - ref) (read from e_in, or recomputed exactly
// as the stats pass did; with softcap, from z read from e_in), F = a
// exp(ref - M) for the segment, and the term b v_c is one of:
// (GradTerm: above StatsT.)
template <typename T, typename TQ>
struct GradArgs {
  const CeKernel* k;
  const CeRowCoef* c;
  const T* x;
  const float* e_in;
  const TQ* q;
  const float* w;
};

// GradVec's halves, so that a loop can take two vectors' exps side by side
// (GradRun): the exp's argument z - ref (z, the scaled logits, for the
// softcap slope), then the gradient from e = exp(z - ref).
template <typename T, typename TQ, bool kCap>
HWY_INLINE VF GradArg(DF d, const GradArgs<T, TQ>& g, size_t i, size_t r, VF vr, VF& z) {
  const size_t N = hn::Lanes(d);
  if (kCap && g.e_in) {
    // z as the stats pass stored it (ApplyZ of the same logits: the same
    // bits as computing it here, without the tanh).
    z = r == N ? hn::LoadU(d, g.e_in + i) : LoadTailF32(d, g.e_in + i, r, 0.0f);
    return hn::Sub(z, vr);
  }
  const VF xv = r == N ? LoadF32(d, g.x + i) : LoadTailF32(d, g.x + i, r, 0.0f);
  ZMap f;
  f.cap = g.k->softcap;
  f.inv_cap = g.k->inv_softcap;
  z = ApplyZ<kCap, false>(d, xv, f);
  return hn::Sub(z, vr);
}

template <typename T, typename TQ, bool kCap, GradTerm kB, bool kY>
HWY_INLINE VF GradFrom(DF d, const GradArgs<T, TQ>& g, size_t i, size_t r, VF e, VF z, VF vF, size_t y_lane = 0) {
  const size_t N = hn::Lanes(d);
  const bool full = r == N;
  const CeKernel& k = *g.k;
  const VF vb = hn::Set(d, g.c->b);
  VF gv;
  if (kB == GradTerm::kNone) {
    gv = hn::Mul(e, vF);
  } else if (kB == GradTerm::kConst) {
    gv = hn::MulSub(e, vF, vb);
  } else {
    VF v;
    if (kB == GradTerm::kWeight || kB == GradTerm::kWeightSoft) {
      v = full ? hn::LoadU(d, g.w + i) : LoadTailF32(d, g.w + i, r, 0.0f);
    }
    if (kB == GradTerm::kWeightSoft || kB == GradTerm::kSoft) {
      const VF qv = full ? LoadF32(d, g.q + i) : LoadTailF32(d, g.q + i, r, 0.0f);
      const VF qp = hn::MulAdd(qv, hn::Set(d, 1.0f - k.eps), hn::Set(d, k.eps / static_cast<float>(k.V)));
      v = (kB == GradTerm::kWeightSoft) ? hn::Mul(v, qp) : qp;
    }
    gv = hn::NegMulAdd(vb, v, hn::Mul(e, vF));
  }
  if (kY) {
    const hn::RebindToSigned<DF> di;
    const auto at_y = hn::RebindMask(d, hn::Eq(hn::Iota(di, 0), hn::Set(di, static_cast<int32_t>(y_lane))));
    gv = hn::IfThenElse(at_y, hn::Sub(gv, hn::Set(d, g.c->delta)), gv);
  }
  if (kCap) gv = hn::Mul(gv, SoftCapSlope(d, z, k.inv_softcap));
  return gv;
}

// The gradient of the r (<= N) elements at i; with kY, the delta is
// subtracted at lane y_lane (before the softcap slope: d(loss)/dz times dz/dx).
template <typename T, typename TQ, bool kCap, GradTerm kB, bool kY>
HWY_INLINE VF GradVec(DF d, const GradArgs<T, TQ>& g, size_t i, size_t r, VF vr, VF vF, size_t y_lane = 0) {
  const size_t N = hn::Lanes(d);
  VF z = hn::Zero(d), e;
  if (g.e_in && !kCap) {
    e = r == N ? hn::LoadU(d, g.e_in + i) : LoadTailF32(d, g.e_in + i, r, 0.0f);
  } else {
    e = ExpNonPositive(d, GradArg<T, TQ, kCap>(d, g, i, r, vr, z));
  }
  return GradFrom<T, TQ, kCap, kB, kY>(d, g, i, r, e, z, vF, y_lane);
}

// One vector of r <= N elements at i, checked for the target.
template <typename T, typename TG, typename TQ, bool kCap, GradTerm kB>
HWY_INLINE void GradOne(DF d, const GradArgs<T, TQ>& ga, TG* g, size_t i, size_t r, VF vr, VF vF, int64_t y_local,
                        bool stream) {
  const int64_t yl = y_local - static_cast<int64_t>(i);
  const VF gv = (yl >= 0 && yl < static_cast<int64_t>(r))
                    ? GradVec<T, TQ, kCap, kB, true>(d, ga, i, r, vr, vF, static_cast<size_t>(yl))
                    : GradVec<T, TQ, kCap, kB, false>(d, ga, i, r, vr, vF);
  if (r < hn::Lanes(d)) {
    StoreTailF32(d, gv, g + i, r);
  } else if (stream) {
    StoreOut<TG, true>(d, gv, g + i);
  } else {
    StoreF32(d, gv, g + i);
  }
}

// Full vectors [i, end) (end - i a multiple of N), none holding the target;
// with `next`, the next row's logits at the same columns are prefetched for
// its stats pass (past the last row is harmless: prefetches never fault).
template <typename T, typename TG, typename TQ, bool kCap, GradTerm kB, bool kStream>
HWY_INLINE void GradRun(DF d, const GradArgs<T, TQ>& ga, TG* g, size_t i, size_t end, VF vr, VF vF, const T* next) {
  const size_t N = hn::Lanes(d);
  if (kCap || ga.e_in == nullptr) {
    // Recomputed exps (softcap, or no stored ones): two vectors' side by
    // side (ExpNonPositive2, the same bits as two ExpNonPositive calls).
    for (; i + 2 * N <= end; i += 2 * N) {
      if (next) PrefetchWalked(next + i, 2 * N);
      VF z0, z1;
      VF e0 = GradArg<T, TQ, kCap>(d, ga, i, N, vr, z0), e1 = GradArg<T, TQ, kCap>(d, ga, i + N, N, vr, z1);
      ExpNonPositive2(d, e0, e1);
      StoreOut2<TG, kStream>(d, GradFrom<T, TQ, kCap, kB, false>(d, ga, i, N, e0, z0, vF),
                             GradFrom<T, TQ, kCap, kB, false>(d, ga, i + N, N, e1, z1, vF), g + i);
    }
  }
  for (; i < end; i += N) {
    if (next) PrefetchWalked(next + i, N);
    StoreOut<TG, kStream>(d, GradVec<T, TQ, kCap, kB, false>(d, ga, i, N, vr, vF), g + i);
  }
}

// `want_stream` (the op's non-temporal stores) is a run-time flag: both loops
// are compiled in once, instead of twice (a template flag doubled this TU's
// instantiations and compile time for no speed).
template <typename T, typename TG, typename TQ, bool kCap, GradTerm kB>
HWY_NOINLINE void GradSeg(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg& sg, const T* x, const float* e_in,
                          const TQ* q, const float* w, TG* g, size_t n, int64_t y_local, const T* next,
                          bool want_stream) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const GradArgs<T, TQ> ga{&k, &c, x, e_in, q, w};
  const VF vr = hn::Set(d, SegRef(sg)), vF = hn::Set(d, SegFactor(sg, c.a, c.M, c.nan));
  // Full vectors start at `head`: the first aligned output when streaming
  // (the elements before it are one partial vector), else 0.
  size_t head = want_stream ? PeelToAlign(g, n) : 0;
  const bool stream = want_stream && head < n;
  if (!stream) head = 0;
  const size_t full_end = head + (n - head) / N * N;
  if (head > 0) GradOne<T, TG, TQ, kCap, kB>(d, ga, g, 0, head, vr, vF, y_local, false);
  // The target's vector takes the checked path; the others run unchecked.
  size_t y_vec = full_end;
  if (y_local >= static_cast<int64_t>(head) && y_local < static_cast<int64_t>(full_end)) {
    y_vec = head + (static_cast<size_t>(y_local) - head) / N * N;
  }
  if (stream) {
    GradRun<T, TG, TQ, kCap, kB, true>(d, ga, g, head, y_vec, vr, vF, next);
  } else {
    GradRun<T, TG, TQ, kCap, kB, false>(d, ga, g, head, y_vec, vr, vF, next);
  }
  if (y_vec < full_end) {
    GradOne<T, TG, TQ, kCap, kB>(d, ga, g, y_vec, N, vr, vF, y_local, stream);
    if (stream) {
      GradRun<T, TG, TQ, kCap, kB, true>(d, ga, g, y_vec + N, full_end, vr, vF, next);
    } else {
      GradRun<T, TG, TQ, kCap, kB, false>(d, ga, g, y_vec + N, full_end, vr, vF, next);
    }
  }
  if (full_end < n) GradOne<T, TG, TQ, kCap, kB>(d, ga, g, full_end, n - full_end, vr, vF, y_local, false);
}

template <typename TG>
HWY_INLINE void ZeroRow(TG* g, size_t n, bool want_stream) {
  const DF d;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  bool stream = want_stream;
  if (want_stream) {
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

template <typename T, typename TG, bool kCap>
void GradT(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t s0, size_t s1,
           const float* e_in) {
  const T* x = RowPtr<T>(k.logits.data, k.logits.stride, row);
  TG* g = RowPtrMut<TG>(k.grad.data, k.grad.stride, row);
  for (size_t s = s0; s < s1; ++s) {
    const size_t b = s * kSegment, n = std::min(kSegment, k.V - b);
    if (c.zero) {
      ZeroRow<TG>(g + b, n, k.stream);
      continue;
    }
    const SoftmaxSeg& sg = segs[s];
    const int64_t yl = c.y - static_cast<int64_t>(b);
    const float* w = k.weight ? k.weight + b : nullptr;
    const float* e = e_in ? e_in + b : nullptr;
    const T* nx = InRowHead<T>(b) ? x + k.logits.stride + b : nullptr;  // the next row's head
    if (k.soft) {
      if (k.q.dtype == DType::kF32) {
        const float* q = RowPtr<float>(k.q.data, k.q.stride, row) + b;
        w ? GradSeg<T, TG, float, kCap, GradTerm::kWeightSoft>(k, c, sg, x + b, e, q, w, g + b, n, -1, nx, k.stream)
          : GradSeg<T, TG, float, kCap, GradTerm::kSoft>(k, c, sg, x + b, e, q, w, g + b, n, -1, nx, k.stream);
      } else {
        const T* q = RowPtr<T>(k.q.data, k.q.stride, row) + b;
        w ? GradSeg<T, TG, T, kCap, GradTerm::kWeightSoft>(k, c, sg, x + b, e, q, w, g + b, n, -1, nx, k.stream)
          : GradSeg<T, TG, T, kCap, GradTerm::kSoft>(k, c, sg, x + b, e, q, w, g + b, n, -1, nx, k.stream);
      }
    } else if (c.b == 0.0f) {
      GradSeg<T, TG, float, kCap, GradTerm::kNone>(k, c, sg, x + b, e, nullptr, w, g + b, n, yl, nx, k.stream);
    } else if (w == nullptr) {
      GradSeg<T, TG, float, kCap, GradTerm::kConst>(k, c, sg, x + b, e, nullptr, w, g + b, n, yl, nx, k.stream);
    } else {
      GradSeg<T, TG, float, kCap, GradTerm::kWeight>(k, c, sg, x + b, e, nullptr, w, g + b, n, yl, nx, k.stream);
    }
  }
  if (k.stream) hwy::FlushStream();
}

struct CeGradFn {
  template <typename T, class GradF32, class Cap>
  static HWY_INLINE void Run(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t s0,
                             size_t s1, const float* e_in) {
    GradT<T, OutType<GradF32, T>, Cap::value>(k, c, segs, row, s0, s1, e_in);
  }
};

// Phase 4 (the gradient) of the cross-entropy op for logits of type T.
template <typename T>
HWY_INLINE void CeGradOf(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t s0,
                         size_t s1, float* scratch) {
  VisitFixed<CeGradFn, T>(Choose(Flag{k.grad.dtype == DType::kF32}, Flag{k.softcap > 0.0f}), k, c, segs, row, s0, s1,
                          EBuffer(k, row, scratch));
}

// ---------------------------------------------------------------------------
// Two rows in one walk (src/engine.h, FusedRows): the gradient of row r
// written while the statistics walk of row r + 1 reads that row, column by
// column. Where the rows take turns instead (the gradient pass from cache,
// then the next row's walk from memory), one core's stores to memory and its
// loads from memory do not overlap: 8192x32000 f32, 1 thread, forward +
// gradient in place 0.40 -> ~0.34 ns/logit in a model of the two loops (the
// walks interleaved per 16 KiB segment gain nothing; per 1 KiB nearly all).
//
// The gradient of class-index targets without softcap, g = e F - b v_c (F:
// the segment's factor; b v_c: label smoothing's term, v_c = 1 or the class
// weight), from e as the walk of row r stored it; the target's column gets
// - delta after the walk (from its e, read before the walk of row r + 1 may
// overwrite it). The same bits as GradT.
template <typename TG, bool kStream, GradTerm kB, bool kShift = false>
struct CeGradRider {
  static constexpr GradTerm kTerm = kB;
  const SoftmaxSeg* segs;  // row r's
  const CeRowCoef* c;
  const float* e;                        // row r's e (the scratch row, or the row itself in place)
  ShiftedStores<TG, kStream, kShift> g;  // row r's gradient
  const float* w;                        // class weights (kWeight)
  float F = 0.0f;                        // the current segment's factor

  // e F - b v, as GradVec computes it (v: the weights of r <= N columns at j).
  static HWY_INLINE VF Term(DF d, VF ev, VF vF, float b, const float* wj, size_t r) {
    if constexpr (kB == GradTerm::kNone) {
      return hn::Mul(ev, vF);
    } else if constexpr (kB == GradTerm::kConst) {
      return hn::MulSub(ev, vF, hn::Set(d, b));
    } else {
      const VF v = r == hn::Lanes(d) ? hn::LoadU(d, wj) : LoadTailF32(d, wj, r, 0.0f);
      return hn::NegMulAdd(hn::Set(d, b), v, hn::Mul(ev, vF));
    }
  }
  HWY_INLINE void Seg(size_t s) { F = SegFactor(segs[s], c->a, c->M, c->nan); }
  HWY_INLINE void Pair(DF d, size_t j) {
    const size_t N = hn::Lanes(d);
    const VF vF = hn::Set(d, F);
    const VF g0 = Term(d, hn::LoadU(d, e + j), vF, c->b, w + j, N);
    const VF g1 = Term(d, hn::LoadU(d, e + j + N), vF, c->b, w + j + N, N);
    g.Put2(d, g0, g1, j);
  }
  HWY_INLINE void Rest(size_t j0, size_t j1) {
    const DF d;
    const size_t N = hn::Lanes(d);
    const VF vF = hn::Set(d, F);
    size_t j = j0;
    for (; j + N <= j1; j += N) g.Put(d, Term(d, hn::LoadU(d, e + j), vF, c->b, w + j, N), j);
    if (j < j1) {
      const size_t r = j1 - j;
      g.PutLast(d, Term(d, LoadTailF32(d, e + j, r, 0.0f), vF, c->b, w + j, r), j, r);
    }
  }
};

template <GradTerm kB>
struct CeFusedFn {
  template <typename T, class GradF32, class Stream>
  static HWY_INLINE void Run(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t nr,
                             SoftmaxSeg* out, const float* e, float* e_next) {
    using TG = OutType<GradF32, T>;
    TG* g = RowPtrMut<TG>(k.grad.data, k.grad.stride, row);
    if constexpr (kShiftedStores && Stream::value && std::is_same<T, float>::value && std::is_same<TG, float>::value) {
      if (ShiftStreamed(g)) return RunT<T, TG, true, true>(k, c, segs, nr, out, e, e_next, g);
    }
    RunT<T, TG, Stream::value, false>(k, c, segs, nr, out, e, e_next, g);
  }
  template <typename T, typename TG, bool kStream, bool kShift>
  static HWY_INLINE void RunT(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t nr, SoftmaxSeg* out,
                              const float* e, float* e_next, TG* g) {
    using Rider = CeGradRider<TG, kStream, kB, kShift>;
    const DF d;
    // The target's e, before the walk overwrites it (a copy: in place, the
    // caller's rows need not be float-aligned).
    float ey = 0.0f;
    if (c.y >= 0) std::memcpy(&ey, e + c.y, sizeof(ey));
    Rider rider{segs, &c, e, ShiftedStores<TG, kStream, kShift>(g), k.weight};
    StatsT<T, false>(k, nr, 0, NumSegments(k.V), out, e_next, rider);
    rider.g.End(k.V);
    if (kStream) hwy::FlushStream();
    if (c.y >= 0) {
      const size_t y = static_cast<size_t>(c.y);
      const VF vF = hn::Set(d, SegFactor(segs[y / kSegment], c.a, c.M, c.nan));
      const VF gy = Rider::Term(d, hn::Set(d, ey), vF, c.b, k.weight ? k.weight + y : nullptr, 1);
      StoreTailF32(d, hn::Sub(gy, hn::Set(d, c.delta)), g + y, 1);
    }
  }
};

// Phase 4 of row `row` and phase 1 of row `nr` in one walk; false, with
// nothing done, where it does not apply (the caller runs them one after the
// other): probability targets, softcap (its slope needs z), a row whose
// gradient scale is 0 under smoothing, an ignored row, no scratch row (but
// in place over f32 logits), a gradient row not aligned for its non-temporal
// stores (but on x86, where ShiftedStores aligns them), or f32 stores to
// another buffer that are not streamed (FusedStoresOk).
template <typename T>
HWY_INLINE bool CeFusedOf(const CeKernel& k, const CeRowCoef& c, const SoftmaxSeg* segs, size_t row, size_t nr,
                          SoftmaxSeg* out, float* scratch) {
  if (k.soft || k.softcap > 0.0f || c.zero || k.grad.data == nullptr) return false;
  // Without a scratch row (a failed allocation) only in place over f32 logits.
  if (scratch == nullptr && !EOverLogits(k)) return false;
  // The gradient's b term (GradT's choice) must match the sums the walk of
  // row nr takes (StatsT's): b = 0 without smoothing; with smoothing (dot),
  // b != 0 unless the row's gradient scale is 0.
  if ((c.b != 0.0f) != k.dot) return false;
  const float* e = EBuffer(k, row, scratch);
  float* e_next = EBuffer(k, nr, scratch);
  if (e == nullptr || e_next == nullptr) return false;
  if (!FusedStoresOk(k.grad, row, k.stream, k.grad.data == k.logits.data, std::is_same<T, float>::value)) return false;
  const bool f32 = k.grad.dtype == DType::kF32;
  const auto choices = Choose(Flag{f32}, Flag{k.stream});
  if (!k.dot) {
    VisitFixed<CeFusedFn<GradTerm::kNone>, T>(choices, k, c, segs, row, nr, out, e, e_next);
  } else if (k.weight == nullptr) {
    VisitFixed<CeFusedFn<GradTerm::kConst>, T>(choices, k, c, segs, row, nr, out, e, e_next);
  } else {
    VisitFixed<CeFusedFn<GradTerm::kWeight>, T>(choices, k, c, segs, row, nr, out, e, e_next);
  }
  return true;
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#endif  // XENT_SRC_CE_INL_H_
