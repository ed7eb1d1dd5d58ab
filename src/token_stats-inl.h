// Per-token statistics kernels for every SIMD target: phase 1 (softmax
// statistics, entropy and the top-k candidates of each segment, in the one
// read of the row that WalkStats makes; the reference logits' statistics),
// the KL middle pass, and the backward's gradient pass. Included by
// src/token_stats_<dtype>.cc, one translation unit per logits dtype.
#if defined(XENT_SRC_TOKEN_STATS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_SRC_TOKEN_STATS_INL_H_
#undef XENT_SRC_TOKEN_STATS_INL_H_
#else
#define XENT_SRC_TOKEN_STATS_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "hwy/highway.h"
#include "src/engine.h"
#include "src/simd-inl.h"
#include "src/softmax-inl.h"
#include "src/token_stats.h"
#include "src/visit-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

// a[p, m) moves to a[p + 1, m + 1) by vectors, the highest first (a must
// have Lanes(d) elements of room past m): for K up to a vector's lanes one
// load and one store instead of a memmove call.
template <class D, typename T>
HWY_INLINE void ShiftUpOne(D d, T* a, size_t p, size_t m) {
  const size_t N = hn::Lanes(d);
  if (m <= p) return;
  for (size_t i = p + (m - p - 1) / N * N;; i -= N) {
    hn::StoreU(hn::LoadU(d, a + i), d, a + i + 1);
    if (i == p) break;
  }
}

// ---------------------------------------------------------------------------
// Top-k candidates of a run of segments: the K best logits seen so far, best
// first, best meaning larger, equal logits by increasing column, NaN as -inf
// (TopKKey: a row's top-k, NaN or not, is a function of its values alone,
// whatever the order they are seen in). Every new element has a larger
// column than those kept, so it goes after the entries whose key is >= its
// own: it is inserted at their count (a vector compare over the keys, no
// branch on the data) and the entries after it move by one. Ordering is on
// the logits as given: exact, and the same on every target. (The scalar
// insertion sort this replaces, or a binary search, mispredicted branches on
// every entering element, about K (1 + log(V / K)) of them per row: K = 64,
// 8192x32000 f32, 1 thread, the pass 1.05 -> 0.88 ns/logit.)
//
// A floor can rule logits out before the run is full: when K logits of the
// row are known to be >= v (K lane maxima of a segment, WalkStats' SegLanes),
// no logit < v is in the row's top-k, and `floor` is the float below v (only
// logits > floor can enter; v itself can, on a lower column). Most of a
// row's insertions come while the run fills and soon after, in its first
// segment; the floor cuts those (K = 5, 8192x32000 bf16, 1 thread: the pass
// 0.341-0.361 -> 0.321-0.342 ns/logit).
struct TopKRun {
  uint32_t K = 0, n = 0;
  float thr = kNegInf;    // the K-th key once n == K: only larger logits enter
  float floor = kNegInf;  // only larger logits can be in the row's top-k
  // What the walk compares each vector with: NaN while the run fills without
  // a floor (no logit is <= it, so every vector stops), else the larger of
  // floor and (once full) thr: a vector whose logits are all <= it, the
  // common case, passes with one compare; a NaN logit stops it and does not
  // enter, its key being -inf.
  float gate = std::numeric_limits<float>::quiet_NaN();
  // (Room for a vector past the K entries: ShiftUpOne.)
  HWY_ALIGN float key[kTopKMax + kMaxLanesF32] = {};
  float x[kTopKMax + kMaxLanesF32] = {};
  uint64_t col[kTopKMax + kMaxLanesF32] = {};

  bool Filling() const { return n < K; }
  void SetGate() {
    if (Filling()) {
      gate = floor == kNegInf ? std::numeric_limits<float>::quiet_NaN() : floor;
    } else {
      gate = std::max(thr, floor);
    }
  }
  // K logits of the row are >= v.
  void RaiseFloor(float v) {
    const float f = std::nextafter(v, kNegInf);
    if (f > floor) {
      floor = f;
      SetGate();
    }
  }
  void Add(float v, size_t c) {
    const float kv = TopKKey(v);
    const bool full = !Filling();
    if (full && !(kv > thr)) return;
    const uint32_t m = full ? K - 1 : n;  // entries that stay (full: the last one leaves)
    const DF d;
    const size_t N = hn::Lanes(d);
    const VF vk = hn::Set(d, kv);
    size_t p = 0;
    for (size_t i = 0; i < m; i += N) {
      p += hn::CountTrue(d, hn::And(hn::Ge(hn::Load(d, key + i), vk), hn::FirstN(d, m - i)));
    }
    ShiftUpOne(d, key, p, m);
    ShiftUpOne(d, x, p, m);
    ShiftUpOne(hn::ScalableTag<uint64_t>(), col, p, m);
    key[p] = kv;
    x[p] = v;
    col[p] = c;
    if (!full) ++n;
    if (n == K) {
      thr = key[K - 1];
      SetGate();
    }
  }
};

// Every lane (r valid) of a vector, while the run fills.
static HWY_NOINLINE void TopKInsert(TopKRun& run, const float* v, size_t col, size_t r) {
  for (size_t l = 0; l < r; ++l) run.Add(v[l], col + l);
}
// The lanes above the gate only (full, or filling above a floor), by their
// mask bits (most such vectors have one). (One function for both cases, the
// mask chosen by Filling(), made K = 64 6-9 % slower.)
static HWY_NOINLINE void TopKInsertAbove(TopKRun& run, VF xv, size_t col) {
  const DF d;
  HWY_ALIGN float buf[kMaxLanesF32];
  uint8_t bits[(kMaxLanesF32 + 7) / 8] = {};
  hn::Store(xv, d, buf);
  hn::StoreMaskBits(d, hn::Gt(xv, hn::Set(d, run.gate)), bits);
  for (size_t w = 0; w < sizeof(bits); ++w) {
    for (unsigned m = bits[w]; m != 0; m &= m - 1) {
      const size_t l = w * 8 + static_cast<size_t>(__builtin_ctz(m));
      run.Add(buf[l], col + l);
    }
  }
}

// WalkStats accumulator: the entropy sums (EntropyAcc) and, when kTopK, the
// top-k candidates. A pair of vectors is first compared in z - ref, which
// WalkStats has computed anyway, with zgate = z(gate) - ref: z - ref is
// nondecreasing in the logit (a product by a positive scale, then a
// subtraction, each rounded), so a logit >= gate has z - ref >= zgate and
// "every lane below zgate" proves that no logit of the pair can enter. Only
// the pairs that fail it (rare once the run is full; all of them while it
// fills, zgate being NaN) reload their logits (from L1: WalkStats just read
// them) for the exact comparison with the gate, one compare per vector
// unless an element enters. (Reloading every pair cost 0.08-0.10 ns/logit at
// 1 thread, 8192x32000: two loads, and for bf16 two widenings, per pair.)
// Softcap (Highway's tanh, not proven nondecreasing) takes the exact
// comparison for every pair.
template <typename T, bool kCap, bool kScale, bool kTopK>
struct TokAcc {
  EntropyAcc ent;
  const T* x;
  size_t V;
  TopKRun* run;
  ZMap f;
  float ref = 0.0f;
  float zgate = std::numeric_limits<float>::quiet_NaN();

  HWY_INLINE void SegRef(float r) {
    ref = r;
    UpdateZGate();
  }
  // The segment's lane maxima are distinct logits of the row: K of them >= v
  // make v a floor. K <= N: from the N lanes, skipped with one compare when
  // fewer than K are above the gate already (most segments after the
  // first). N < K <= 4 N (K = 64 on AVX-512): from the walk's first
  // segment's 4 N finer maxima only (most insertions come there; a pass over
  // 4 N lanes per segment cost K = 5 3-4 %, hence not for K <= N).
  HWY_INLINE void SegLanes(DF d, VF lanes, const float* wide, size_t nwide) {
    if (!kTopK) return;
    const size_t N = hn::Lanes(d), K = run->K;
    const float above = run->Filling() ? run->floor : run->gate;
    HWY_ALIGN float keys[4 * kMaxLanesF32];
    const float* from = keys;
    size_t count = N;
    if (K <= N) {
      if (hn::CountTrue(d, hn::Gt(lanes, hn::Set(d, above))) < K) return;  // (NaN lanes: not counted)
      hn::Store(lanes, d, keys);
    } else {
      if (wide == nullptr || K > nwide) return;
      size_t n_above = 0;
      for (size_t l = 0; l < nwide; ++l) n_above += wide[l] > above ? 1 : 0;
      if (n_above < K) return;
      from = wide;
      count = nwide;
    }
    for (size_t l = 0; l < count; ++l) keys[l] = TopKKey(from[l]);
    std::nth_element(keys, keys + (K - 1), keys + count, [](float a, float b) { return a > b; });
    if (keys[K - 1] != kNegInf) run->RaiseFloor(keys[K - 1]);
    // (zgate: SegRef, next.)
  }
  HWY_INLINE void UpdateZGate() {
    if (kTopK && !kCap) zgate = ApplyZScalar<false, kScale>(run->gate, f) - ref;
  }
  HWY_INLINE void ChunkEnd(DF d, VF& u0, VF& u1, VF& c0, VF& c1) { ent.ChunkEnd(d, u0, u1, c0, c1); }
  HWY_INLINE void End(DF d, SoftmaxSeg* o, VF u0, VF u1) { ent.End(d, o, u0, u1); }
  HWY_INLINE void Full(DF d, size_t j, VF zm, VF e, VF& c0, VF& c1) {
    ent.Full(d, j, zm, e, c0, c1);
    if (kTopK) Candidates(d, j, LoadF32(d, x + j), hn::Lanes(d));
  }
  // Two vectors: the larger of each lane pair compared with zgate (most
  // pairs stop there once the run is full), then with the gate (a NaN may be
  // dropped by the max: once full it cannot enter; while filling, zgate and
  // the gate stop no pair).
  HWY_INLINE void Pair(DF d, size_t j, VF zm0, VF e0, VF zm1, VF e1, VF& c0, VF& c1) {
    ent.Full(d, j, zm0, e0, c0, c1);
    ent.Full(d, j + hn::Lanes(d), zm1, e1, c0, c1);
    if (!kTopK) return;
    if (!kCap && HWY_LIKELY(hn::AllTrue(d, hn::Lt(hn::Max(zm0, zm1), hn::Set(d, zgate))))) return;
    const VF x0 = LoadF32(d, x + j), x1 = LoadF32(d, x + j + hn::Lanes(d));
    if (hn::AllTrue(d, hn::Le(hn::Max(x0, x1), hn::Set(d, run->gate)))) return;
    Candidates(d, j, x0, hn::Lanes(d));
    Candidates(d, j + hn::Lanes(d), x1, hn::Lanes(d));
  }
  HWY_INLINE void Tail(DF d, size_t j, VF zm, VF e, size_t r, VF& c0, VF& c1) {
    ent.Tail(d, j, zm, e, r, c0, c1);
    if (kTopK) Candidates(d, j, LoadTailF32(d, x + j, r, kNegInf), r);
  }
  HWY_INLINE void Candidates(DF d, size_t j, VF xv, size_t r) {
    if (HWY_LIKELY(hn::AllTrue(d, hn::Le(xv, hn::Set(d, run->gate))))) return;
    if (run->Filling() && run->floor == kNegInf) {
      HWY_ALIGN float buf[kMaxLanesF32];
      hn::Store(xv, d, buf);
      TopKInsert(*run, buf, j, r);
    } else {
      TopKInsertAbove(*run, xv, j);  // (lanes past r hold -inf: never above)
    }
    UpdateZGate();
  }
};

// The run's entries in columns [b, b + n) into the segment's partial, with
// their z computed exactly as the stats pass computes z.
template <bool kCap, bool kScale>
HWY_INLINE void EmitTopK(const TopKRun& run, size_t b, size_t n, const ZMap& f, TokSeg* o) {
  uint32_t m = 0;
  for (uint32_t e = 0; e < run.n; ++e) {
    if (run.col[e] >= b && run.col[e] < b + n) {
      o->top_x[m] = run.x[e];
      o->top_i[m] = static_cast<uint16_t>(run.col[e] - b);
      ++m;
    }
  }
  o->ntop = m;
  const DF d;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  for (; i + N <= m; i += N) hn::StoreU(ApplyZ<kCap, kScale>(d, hn::LoadU(d, o->top_x + i), f), d, o->top_z + i);
  if (i < m) {
    StoreTailF32(d, ApplyZ<kCap, kScale>(d, LoadTailF32(d, o->top_x + i, m - i, 0.0f), f), o->top_z + i, m - i);
  }
}

// With a rider (TokFusedT): another row's gradient in the walk of the
// logits (see WalkStats).
template <typename T, bool kCap, bool kScale, bool kTopK, class Rider = NoRider>
void TokStatsT(const TokKernel& k, size_t row, size_t s0, size_t s1, TokSeg* out, float* e_out,
               Rider&& rider = Rider()) {
  const T* x = RowPtr<T>(k.logits.data, k.logits.stride, row);
  const T* xr = k.ref.data ? RowPtr<T>(k.ref.data, k.ref.stride, row) : nullptr;
  ZMap f;
  f.cap = k.cap;
  f.inv_cap = k.inv_cap;
  f.scale = k.scale;
  int64_t y = -1;
  if (k.target.data != nullptr && !k.target.Ignored(row)) y = k.target.At(row);
  // One walk over up to kBatch segments at a time (WalkStats takes each next
  // segment's max while it exponentiates the current one), then each
  // segment's bookkeeping. The run holds the top-k of the columns walked so
  // far; each segment gets the run's entries in its columns at the end, a
  // superset of its share of the row's top-k, which the merge needs.
  constexpr size_t kBatch = 16;
  SoftmaxSeg sm[kBatch], rs[kBatch];
  TopKRun run;
  run.K = k.K;
  for (size_t g0 = s0; g0 < s1; g0 += kBatch) {
    const size_t g1 = std::min(s1, g0 + kBatch);
    TokAcc<T, kCap, kScale, kTopK> acc{EntropyAcc(), x, k.V, &run, f};
    WalkStats<T, kCap, kScale>(x, k.V, g0, g1, f, acc, sm, e_out, rider);
    if (xr != nullptr) {
      NoAcc none;
      WalkStats<T, kCap, kScale>(xr, k.V, g0, g1, f, none, rs, nullptr);
    }
    for (size_t s = g0; s < g1; ++s) {
      TokSeg* o = out + (s - s0);
      const size_t b = s * kSegment, n = std::min(kSegment, k.V - b);
      o->base = b;
      o->k = k.K;
      o->ntop = 0;
      o->kl = 0.0f;
      o->has_ref = xr != nullptr ? 1 : 0;
      const bool has_y = y >= static_cast<int64_t>(b) && y < static_cast<int64_t>(b + n);
      SoftmaxSeg g = sm[s - g0];
      g.has_zy = has_y ? 1 : 0;
      if (has_y) g.zy = ApplyZScalar<kCap, kScale>(LoadScalarF32(x, static_cast<size_t>(y), DTypeOf<T>()), f);
      o->sm = g;
      if (xr != nullptr) {
        SoftmaxSeg gr = rs[s - g0];
        gr.has_zy = has_y ? 1 : 0;
        if (has_y) gr.zy = ApplyZScalar<kCap, kScale>(LoadScalarF32(xr, static_cast<size_t>(y), DTypeOf<T>()), f);
        o->ref = gr;
      }
    }
  }
  if (kTopK) {
    for (size_t s = s0; s < s1; ++s) {
      const size_t b = s * kSegment;
      EmitTopK<kCap, kScale>(run, b, std::min(kSegment, k.V - b), f, out + (s - s0));
    }
  }
}

struct TokStatsVisit {
  template <typename T, class Cap, class Scale, class TopK>
  static HWY_INLINE void Run(const TokKernel& k, size_t row, size_t s0, size_t s1, TokSeg* out, float* e_out) {
    TokStatsT<T, Cap::value, Scale::value, TopK::value>(k, row, s0, s1, out, e_out);
  }
};

template <typename T>
HWY_INLINE void TokStatsOf(const TokKernel& k, size_t row, size_t s0, size_t s1, TokSeg* out, float* e_out) {
  VisitFixed<TokStatsVisit, T>(Choose(Flag{k.cap > 0.0f}, Flag{k.scale != 1.0f}, Flag{k.K > 0}), k, row, s0, s1, out,
                               e_out);
}

// ---------------------------------------------------------------------------
// Middle pass: KL(p || q) partials, sum p ((z - z') - D) per segment with p =
// exp((z - M) - L) (0 log 0 = 0: a zero p contributes 0), two-level sums.
template <typename T, bool kCap, bool kScale>
void TokKlT(const TokKernel& k, const TokKlRow& r, size_t row, size_t s0, size_t s1, TokSeg* segs) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const T* x = RowPtr<T>(k.logits.data, k.logits.stride, row);
  const T* xr = RowPtr<T>(k.ref.data, k.ref.stride, row);
  ZMap f;
  f.cap = k.cap;
  f.inv_cap = k.inv_cap;
  f.scale = k.scale;
  const VF vM = hn::Set(d, r.M), vL = hn::Set(d, r.L), vD = hn::Set(d, r.D), zero = hn::Zero(d);
  for (size_t s = s0; s < s1; ++s) {
    const size_t b = s * kSegment, n = std::min(kSegment, k.V - b);
    VF acc = zero;
    for (size_t cb = 0; cb < n; cb += kChunk) {
      const size_t ce = std::min(n, cb + kChunk);
      VF c = zero;
      // (Two vectors' exps side by side where two are left: ExpNonPositive2,
      // the same bits; the sum in the same order.)
      const auto arg = [&](size_t i, size_t rr, VF & z, VF & zq) HWY_ATTR __attribute__((always_inline)) {
        const bool full = rr == N;
        const VF xv = full ? LoadF32(d, x + b + i) : LoadTailF32(d, x + b + i, rr, 0.0f);
        const VF xrv = full ? LoadF32(d, xr + b + i) : LoadTailF32(d, xr + b + i, rr, 0.0f);
        z = ApplyZ<kCap, kScale>(d, xv, f);
        zq = ApplyZ<kCap, kScale>(d, xrv, f);
        return hn::Sub(hn::Sub(z, vM), vL);
      };
      const auto term = [&](VF p, VF z, VF zq) HWY_ATTR __attribute__((always_inline)) {
        return hn::IfThenZeroElse(hn::Eq(p, zero), hn::Mul(p, hn::Sub(hn::Sub(z, zq), vD)));
      };
      size_t i = cb;
      for (; i + 2 * N <= ce; i += 2 * N) {
        VF z0, zq0, z1, zq1, p0 = arg(i, N, z0, zq0), p1 = arg(i + N, N, z1, zq1);
        ExpNonPositive2(d, p0, p1);
        c = hn::Add(c, term(p0, z0, zq0));
        c = hn::Add(c, term(p1, z1, zq1));
      }
      for (; i < ce; i += N) {
        const size_t rr = std::min(N, ce - i);
        VF z, zq;
        const VF p = ExpNonPositive(d, arg(i, rr, z, zq));
        VF t = term(p, z, zq);
        if (rr != N) t = hn::IfThenElseZero(hn::FirstN(d, rr), t);
        c = hn::Add(c, t);
      }
      acc = hn::Add(acc, c);
    }
    segs[s].kl = hn::GetLane(hn::SumOfLanes(d, acc));
  }
}

struct TokKlVisit {
  template <typename T, class Cap, class Scale>
  static HWY_INLINE void Run(const TokKernel& k, const TokKlRow& r, size_t row, size_t s0, size_t s1, TokSeg* segs) {
    TokKlT<T, Cap::value, Scale::value>(k, r, row, s0, s1, segs);
  }
};

template <typename T>
HWY_INLINE void TokKlOf(const TokKernel& k, const TokKlRow& r, size_t row, size_t s0, size_t s1, TokSeg* segs) {
  VisitFixed<TokKlVisit, T>(Choose(Flag{k.cap > 0.0f}, Flag{k.scale != 1.0f}), k, r, row, s0, s1, segs);
}

// ---------------------------------------------------------------------------
// Gradient: with zc = softcap(x) (x without softcap), z = zc / T, lp = (z -
// M) - L, p = exp(lp):
//   g = (p (c0 + c1 lp + c2 (z - z')) [+ w at the delta columns]) dz/dx,
// dz/dx = (1 - (zc / cap)^2) / T with softcap, 1 / T without; p = 0 (a -inf
// logit, or below the f32 range) gives 0 before the deltas.
// The row's constants, copied once per segment into a local (scalars: SVE
// vectors cannot be struct members): read from the TokGradRow inside the
// loop, every one was loaded and broadcast again per vector, as the
// gradient's stores (may_alias vector stores) could have changed it (and the
// spills of its 16 vector registers on AVX2 came on top).
struct TokGradConst {
  float s, M, L, c0, c1, c2, cap, inv_cap;
  // (kE) e's zero (0; NaN in a NaN row: no lane then takes the zero
  // gradient) and the segment's reference (e = exp(z - ref)).
  float ez, ref;
};

// (kE) The constants of a segment: c0, c1 and c2 times the segment's F (p = e
// F, so g = e (c0 F + c1 F lp ...)) and c0 and c1 times 1 / T (the gradient's
// product by dz/dx folded in; the deltas' w too, in TokGradVec): two products
// per row segment instead of two per vector. F = 0 (a segment of -inf, or
// below the f32 range) gives 0 where e > 0 (lp is finite there), and e = 0
// gives 0 by the zero test.
// (The products in double: one rounding, and no overflow of c0 / T where the
// product with F is in range.)
HWY_INLINE TokGradConst TokGradConstE(const TokGradKernel& k, const TokGradRow& c, const SoftmaxSeg& sg) {
  const double F = c.SegFactor(sg), sF = k.scale * F;
  return TokGradConst{k.scale,
                      c.M,
                      c.L,
                      static_cast<float>(c.c0 * sF),
                      static_cast<float>(c.c1 * sF),
                      static_cast<float>(c.c2 * F),
                      k.cap,
                      k.inv_cap,
                      static_cast<float>(F * 0.0),
                      SafeRef(sg.m)};
}

// TokGradVec in two halves, so that TokGradVec2 can take the exps of two
// vectors side by side: TokGradIn loads the r (<= N) elements at i and gives
// zc, z, lp and either p (returns false) or the argument of p's exp (returns
// true); TokGradOut the gradient from them and p.
template <typename T, bool kCap, bool kE, bool kLoadE, bool kScale>
HWY_INLINE bool TokGradIn(DF d, const TokGradConst& q, const T* x, const float* e, size_t i, size_t r, VF& zc, VF& z,
                          VF& lp, VF& p) {
  const bool full = r == hn::Lanes(d);
  const VF xv = full ? LoadF32(d, x + i) : LoadTailF32(d, x + i, r, 0.0f);
  zc = kCap ? SoftCap(d, xv, q.cap, q.inv_cap) : xv;
  z = kScale ? hn::Mul(zc, hn::Set(d, q.s)) : zc;
  lp = hn::Sub(hn::Sub(z, hn::Set(d, q.M)), hn::Set(d, q.L));
  if constexpr (kE) {
    if (kLoadE || e != nullptr) {
      p = full ? hn::LoadU(d, e + i) : LoadTailF32(d, e + i, r, 0.0f);
      return false;
    }
    p = hn::Sub(z, hn::Set(d, q.ref));
  } else {
    p = lp;
  }
  return true;
}

template <typename T, bool kCap, bool kRef, bool kDelta, bool kE, bool kScale>
HWY_INLINE VF TokGradOut(DF d, const TokGradConst& q, const TokGradRow& c, const T* xr, size_t i, size_t r, size_t col0,
                         uint32_t& cur, VF zc, VF z, VF lp, VF p) {
  const bool full = r == hn::Lanes(d);
  const VF vs = hn::Set(d, q.s);
  const VF zero = kE ? hn::Set(d, q.ez) : hn::Zero(d);
  VF t = hn::MulAdd(hn::Set(d, q.c1), lp, hn::Set(d, q.c0));
  if (kRef) {
    const VF xq = full ? LoadF32(d, xr + i) : LoadTailF32(d, xr + i, r, 0.0f);
    const VF zq = hn::Mul(kCap ? SoftCap(d, xq, q.cap, q.inv_cap) : xq, vs);
    t = hn::MulAdd(hn::Set(d, q.c2), hn::Sub(z, zq), t);
  }
  VF g = hn::IfThenZeroElse(hn::Eq(p, zero), hn::Mul(p, t));
  if (kDelta) {
    const size_t col = col0 + i;
    while (cur < c.nd && c.idx[cur] < static_cast<int64_t>(col + r)) {
      const hn::RebindToSigned<DF> di;
      const int32_t lane = static_cast<int32_t>(c.idx[cur] - static_cast<int64_t>(col));
      const auto at = hn::RebindMask(d, hn::Eq(hn::Iota(di, 0), hn::Set(di, lane)));
      g = hn::IfThenElse(at, hn::Add(g, hn::Set(d, kE ? c.w[cur] * q.s : c.w[cur])), g);
      ++cur;
    }
  }
  if constexpr (kE) return kCap ? hn::Mul(g, SoftCapSlope(d, zc, q.inv_cap)) : g;
  return hn::Mul(g, kCap ? hn::Mul(SoftCapSlope(d, zc, q.inv_cap), vs) : vs);
}

// kDelta: the vector may hold a delta column (checked against the next one);
// the runs between the deltas take the unchecked form. kE (seg_e, q from
// TokGradConstE): p = e F, F in q's coefficients, e loaded from e[i] or, with
// e null (never when kLoadE), recomputed as the stats walk computed it
// (WalkStats: exp(z - ref), z = ApplyZ(x)). !kScale: T = 1 (z = x, the same
// bits without the product).
template <typename T, bool kCap, bool kRef, bool kDelta, bool kE, bool kLoadE = false, bool kScale = true>
HWY_INLINE VF TokGradVec(DF d, const TokGradConst& q, const TokGradRow& c, const T* x, const T* xr, const float* e,
                         size_t i, size_t r, size_t col0, uint32_t& cur) {
  VF zc, z, lp, p;
  if (TokGradIn<T, kCap, kE, kLoadE, kScale>(d, q, x, e, i, r, zc, z, lp, p)) p = ExpNonPositive(d, p);
  return TokGradOut<T, kCap, kRef, kDelta, kE, kScale>(d, q, c, xr, i, r, col0, cur, zc, z, lp, p);
}

// The full vectors at i and i + N, no delta among them: TokGradVec's bits,
// with the two exps side by side (ExpNonPositive2; measured in TokGradRun).
template <typename T, bool kCap, bool kRef, bool kE>
HWY_INLINE void TokGradVec2(DF d, const TokGradConst& q, const TokGradRow& c, const T* x, const T* xr, const float* e,
                            size_t i, VF& ga, VF& gb) {
  const size_t N = hn::Lanes(d);
  VF zca, za, lpa, pa, zcb, zb, lpb, pb;
  const bool ex = TokGradIn<T, kCap, kE, false, true>(d, q, x, e, i, N, zca, za, lpa, pa);
  TokGradIn<T, kCap, kE, false, true>(d, q, x, e, i + N, N, zcb, zb, lpb, pb);
  if (ex) ExpNonPositive2(d, pa, pb);
  uint32_t none = 0;
  ga = TokGradOut<T, kCap, kRef, false, kE, true>(d, q, c, xr, i, N, 0, none, zca, za, lpa, pa);
  gb = TokGradOut<T, kCap, kRef, false, kE, true>(d, q, c, xr, i + N, N, 0, none, zcb, zb, lpb, pb);
}

// A bf16 gradient on x86 without AVX-512 goes through an f32 stage of 16
// vectors in L1: computed and rounded in one loop, each vector's chain (exp,
// products, the six-operation bf16 rounding, pack, store) was too long for
// the out-of-order window to overlap enough vectors (bf16 took 1.7x f32's
// time in cache, half the bytes); in two loops each chain is short. 8192 x
// 32000 to a buffer, AVX2 (AMD EPYC), 1 thread, min of 5, A/B: 0.97-1.10 ->
// 0.75 ns/logit, in place 0.93-0.95 -> 0.72. f16 (F16C's one conversion on
// AVX2) measured no gain; AVX-512 keeps one loop (32 registers, and
// vcvtneps2bf16 on CPUs with AVX512_BF16).
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
constexpr bool kStageBF16 = true;
#else
constexpr bool kStageBF16 = false;
#endif

// With pf (the inputs of the vectors at i, which may be nullptr), what lies
// kPrefetchBytes past them is prefetched as the loop goes. vec2(j, a, b):
// the vectors at j and j + N as vec(j) and vec(j + N) give them, two exps
// side by side (TokGradVec2): on AVX2 (AMD EPYC, Zen 1, whose scheduler
// holds less than one vector's chain of 256-bit operations), 8192x32000,
// 1 thread, min of 5 in three A/B rounds: f32 to a buffer 1.57 -> 1.35
// ns/logit, in place 1.54 -> 1.29, bf16 2.12 -> 1.93. (The statistics
// walk's pair loop measured -4 % to +3 % and +5 % instructions with it:
// kept as is.)
template <typename TG, bool kStream, typename T, typename F, typename F2>
HWY_INLINE void TokGradRun(DF d, TG* g, size_t i, size_t end, const F& vec, const F2& vec2, const T* pf,
                           const T* pf_ref) {
  const size_t N = hn::Lanes(d);
  const auto fetch = [&](size_t j, size_t n) HWY_ATTR __attribute__((always_inline)) {
    if (pf) {
      PrefetchAhead(pf + j, n);
      if (pf_ref) PrefetchAhead(pf_ref + j, n);
    }
  };
  if constexpr (kStageBF16 && std::is_same<TG, BF16>::value) {
    constexpr size_t kStage = 16;
    HWY_ALIGN float buf[kStage * kMaxLanesF32];
    while (i < end) {
      const size_t m = HWY_MIN(kStage, (end - i) / N);
      size_t v = 0;
      for (; v + 2 <= m; v += 2) {
        fetch(i + v * N, 2 * N);
        VF a, b;
        vec2(i + v * N, a, b);
        hn::Store(a, d, buf + v * N);
        hn::Store(b, d, buf + v * N + N);
      }
      if (v < m) {
        fetch(i + v * N, N);
        hn::Store(vec(i + v * N), d, buf + v * N);
      }
      for (v = 0; v + 2 <= m; v += 2) {
        StoreOut2<TG, kStream>(d, hn::Load(d, buf + v * N), hn::Load(d, buf + v * N + N), g + i + v * N);
      }
      if (v < m) StoreOut<TG, kStream>(d, hn::Load(d, buf + v * N), g + i + v * N);
      i += m * N;
    }
  } else {
    for (; i + 2 * N <= end; i += 2 * N) {
      fetch(i, 2 * N);
      VF a, b;
      vec2(i, a, b);
      StoreOut2<TG, kStream>(d, a, b, g + i);
    }
    if (i < end) {
      fetch(i, N);
      StoreOut<TG, kStream>(d, vec(i), g + i);
    }
  }
}

// `want_stream` is a run-time flag (both loops compiled in once; as a
// template flag it doubled the instantiations for no speed). The full
// vectors between the delta columns (the target's, the top-k's: a few per
// row) run without the per-vector delta check; the vectors holding one, the
// peel and the tail, with it. With TokGradConst, measured on AVX2 (AMD EPYC,
// no AVX-512), 8192x32000 to a buffer, min of 5 in A/B runs: bf16 1 thread
// 1.07 -> 0.94 ns/logit, f32 2 threads 0.43 -> 0.31.
template <typename T, typename TG, bool kCap, bool kRef, bool kE>
HWY_NOINLINE void TokGradSeg(const TokGradKernel& k, const TokGradRow& c, const SoftmaxSeg& sg, const T* x, const T* xr,
                             const float* e, TG* g, size_t col0, size_t n, bool want_stream) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const TokGradConst q =
      kE ? TokGradConstE(k, c, sg) : TokGradConst{k.scale, c.M, c.L, c.c0, c.c1, c.c2, k.cap, k.inv_cap, 0.0f, 0.0f};
  uint32_t cur = 0;
  while (cur < c.nd && c.idx[cur] < static_cast<int64_t>(col0)) ++cur;
  size_t i = 0;
  const size_t peel = want_stream ? PeelToAlign(g, n) : 0;
  const bool stream = want_stream && peel < n;
  if (stream && peel > 0) {
    StoreTailF32(d, TokGradVec<T, kCap, kRef, true, kE>(d, q, c, x, xr, e, 0, peel, col0, cur), g, peel);
    i = peel;
  }
  const auto plain = [&](size_t j) HWY_ATTR __attribute__((always_inline)) {
    uint32_t none = 0;
    return TokGradVec<T, kCap, kRef, false, kE>(d, q, c, x, xr, e, j, N, col0, none);
  };
  const auto pair = [&](size_t j, VF & a, VF & b) HWY_ATTR __attribute__((always_inline)) {
    TokGradVec2<T, kCap, kRef, kE>(d, q, c, x, xr, e, j, a, b);
  };
  const size_t full_end = i + (n - i) / N * N;
  const T* pf = k.prefetch ? x : nullptr;
  const T* pf_ref = k.prefetch && kRef ? xr : nullptr;
  while (i < full_end) {
    // Deltas before column col0 + i are applied (cur points past them).
    size_t stop = full_end;
    if (cur < c.nd && c.idx[cur] < static_cast<int64_t>(col0 + full_end)) {
      stop = i + (static_cast<size_t>(c.idx[cur] - static_cast<int64_t>(col0)) - i) / N * N;
    }
    if (stream) {
      TokGradRun<TG, true>(d, g, i, stop, plain, pair, pf, pf_ref);
    } else {
      TokGradRun<TG, false>(d, g, i, stop, plain, pair, pf, pf_ref);
    }
    i = stop;
    if (i < full_end) {
      const VF v = TokGradVec<T, kCap, kRef, true, kE>(d, q, c, x, xr, e, i, N, col0, cur);
      if (stream) {
        StoreOut<TG, true>(d, v, g + i);
      } else {
        StoreF32(d, v, g + i);
      }
      i += N;
    }
  }
  if (i < n) StoreTailF32(d, TokGradVec<T, kCap, kRef, true, kE>(d, q, c, x, xr, e, i, n - i, col0, cur), g + i, n - i);
}

template <typename TG>
HWY_NOINLINE void TokZeroSeg(TG* g, size_t n, bool want_stream) {
  const DF d;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  const size_t peel = want_stream ? PeelToAlign(g, n) : 0;
  const bool stream = want_stream && peel < n;
  if (stream && peel > 0) {
    StoreTailF32(d, hn::Zero(d), g, peel);
    i = peel;
  }
  if (stream) {
    for (; i + N <= n; i += N) StoreOut<TG, true>(d, hn::Zero(d), g + i);
  } else {
    for (; i + N <= n; i += N) StoreF32(d, hn::Zero(d), g + i);
  }
  if (i < n) StoreTailF32(d, hn::Zero(d), g + i, n - i);
}

template <typename T, typename TG, bool kCap, bool kRef, bool kE>
void TokGradT(const TokGradKernel& k, const TokGradRow& c, const TokSeg* segs, size_t row, size_t s0, size_t s1,
              const float* e) {
  const T* x = RowPtr<T>(k.logits.data, k.logits.stride, row);
  const T* xr = kRef ? RowPtr<T>(k.ref.data, k.ref.stride, row) : nullptr;
  TG* g = RowPtrMut<TG>(k.grad.data, k.grad.stride, row);
  for (size_t s = s0; s < s1; ++s) {
    const size_t b = s * kSegment, n = std::min(kSegment, k.V - b);
    if (c.zero) {
      TokZeroSeg<TG>(g + b, n, k.stream);
    } else {
      // (kE: segs are the row's; else not read)
      TokGradSeg<T, TG, kCap, kRef, kE>(k, c, kE ? segs[s].sm : SoftmaxSeg(), x + b, kRef ? xr + b : nullptr,
                                        e != nullptr ? e + b : nullptr, g + b, b, n, k.stream);
    }
  }
  if (k.stream) hwy::FlushStream();
}

struct TokGradVisit {
  template <typename T, class GradF32, class Cap, class Ref, class E>
  static HWY_INLINE void Run(const TokGradKernel& k, const TokGradRow& c, const TokSeg* segs, size_t row, size_t s0,
                             size_t s1, const float* e) {
    TokGradT<T, OutType<GradF32, T>, Cap::value, Ref::value && !E::value, E::value>(k, c, segs, row, s0, s1, e);
  }
};

// (seg_e has no KL term: kRef and kE never meet.)
template <typename T>
HWY_INLINE void TokGradOf(const TokGradKernel& k, const TokGradRow& c, const TokSeg* segs, size_t row, size_t s0,
                          size_t s1, const float* e) {
  VisitFixed<TokGradVisit, T>(
      Choose(Flag{k.grad.dtype == DType::kF32}, Flag{k.cap > 0.0f}, Flag{k.ref.data != nullptr}, Flag{k.seg_e}), k, c,
      segs, row, s0, s1, e);
}

// ---------------------------------------------------------------------------
// Two rows in one walk (src/engine.h, FusedRows; CE's CeGradRider has the
// measurements): row r's gradient (seg_e, no softcap) written while the
// statistics walk of row r + 1 reads that row, column by column, from row
// r's logits (L2) and its e (the scratch row, read before the walk stores
// row r + 1's e there). The same TokGradVec as TokGradSeg: the same bits
// (kScale: T != 1).
template <typename T, typename TG, bool kStream, bool kScale, bool kShift = false>
struct TokGradRider {
  const TokGradKernel* k;
  const TokGradRow* c;
  const TokSeg* segs;                    // row r's
  const T* x;                            // row r's logits
  const float* e;                        // row r's e
  ShiftedStores<TG, kStream, kShift> g;  // row r's gradient
  TokGradConst q;
  uint32_t cur = 0;  // the next delta

  HWY_INLINE void Seg(size_t s) { q = TokGradConstE(*k, *c, segs[s].sm); }
  template <bool kDelta>
  HWY_INLINE void Vec(DF d, size_t j) {
    g.Put(d, TokGradVec<T, false, false, kDelta, true, true, kScale>(d, q, *c, x, nullptr, e, j, hn::Lanes(d), 0, cur),
          j);
  }
  HWY_INLINE void Pair(DF d, size_t j) {
    const size_t N = hn::Lanes(d);
    if (HWY_UNLIKELY(cur < c->nd && c->idx[cur] < static_cast<int64_t>(j + 2 * N))) {
      Vec<true>(d, j);
      Vec<true>(d, j + N);
    } else {
      uint32_t none = 0;
      const VF a = TokGradVec<T, false, false, false, true, true, kScale>(d, q, *c, x, nullptr, e, j, N, 0, none);
      const VF b = TokGradVec<T, false, false, false, true, true, kScale>(d, q, *c, x, nullptr, e, j + N, N, 0, none);
      g.Put2(d, a, b, j);
    }
  }
  HWY_INLINE void Rest(size_t j0, size_t j1) {
    const DF d;
    const size_t N = hn::Lanes(d);
    size_t j = j0;
    for (; j + N <= j1; j += N) Vec<true>(d, j);
    if (j < j1) {
      g.PutLast(d, TokGradVec<T, false, false, true, true, true, kScale>(d, q, *c, x, nullptr, e, j, j1 - j, 0, cur), j,
                j1 - j);
    }
  }
};

template <typename T, typename TG, bool kScale, bool kStream, bool kShift>
void TokFusedRunT(const TokKernel& k, const TokGradKernel& gk, const TokGradRow& c, const TokSeg* segs, size_t row,
                  size_t nr, TokSeg* out, float* e, TG* g) {
  TokGradRider<T, TG, kStream, kScale, kShift> rider{&gk,
                                                     &c,
                                                     segs,
                                                     RowPtr<T>(gk.logits.data, gk.logits.stride, row),
                                                     e,
                                                     ShiftedStores<TG, kStream, kShift>(g),
                                                     TokGradConst{}};
  TokStatsT<T, false, kScale, false>(k, nr, 0, NumSegments(k.V), out, e, rider);
  rider.g.End(k.V);
  if (kStream) hwy::FlushStream();
}

template <typename T, typename TG, bool kScale, bool kStream>
void TokFusedT(const TokKernel& k, const TokGradKernel& gk, const TokGradRow& c, const TokSeg* segs, size_t row,
               size_t nr, TokSeg* out, float* e) {
  TG* g = RowPtrMut<TG>(gk.grad.data, gk.grad.stride, row);
  if constexpr (kShiftedStores && kStream && std::is_same<T, float>::value && std::is_same<TG, float>::value) {
    if (ShiftStreamed(g)) return TokFusedRunT<T, TG, kScale, true, true>(k, gk, c, segs, row, nr, out, e, g);
  }
  TokFusedRunT<T, TG, kScale, kStream, false>(k, gk, c, segs, row, nr, out, e, g);
}

struct TokFusedVisit {
  template <typename T, class GradF32, class Scale, class Stream>
  static HWY_INLINE void Run(const TokKernel& k, const TokGradKernel& gk, const TokGradRow& c, const TokSeg* segs,
                             size_t row, size_t nr, TokSeg* out, float* e) {
    TokFusedT<T, OutType<GradF32, T>, Scale::value, Stream::value>(k, gk, c, segs, row, nr, out, e);
  }
};

// The gradient of row `row` and the statistics of row `nr` in one walk;
// false, with nothing done, where it does not apply (the caller runs them
// one after the other): no seg_e, softcap (not instantiated), top-k or
// reference logits in the walk, a row whose gradient is all zeros, no
// scratch row, or stores FusedStoresOk refuses (a row misaligned for its
// non-temporal stores: not on x86, where ShiftedStores aligns them).
template <typename T>
HWY_INLINE bool TokFusedOf(const TokKernel& k, const TokGradKernel& gk, const TokGradRow& c, const TokSeg* segs,
                           size_t row, size_t nr, TokSeg* out, float* e) {
  if (!gk.seg_e || gk.cap > 0.0f || k.K != 0 || k.ref.data != nullptr || gk.ref.data != nullptr || c.zero) return false;
  if (e == nullptr ||
      !FusedStoresOk(gk.grad, row, gk.stream, gk.grad.data == gk.logits.data, std::is_same<T, float>::value))
    return false;
  VisitFixed<TokFusedVisit, T>(Choose(Flag{gk.grad.dtype == DType::kF32}, Flag{k.scale != 1.0f}, Flag{gk.stream}), k,
                               gk, c, segs, row, nr, out, e);
  return true;
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#endif  // XENT_SRC_TOKEN_STATS_INL_H_
