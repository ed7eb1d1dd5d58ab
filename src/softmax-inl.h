// Per-target row walkers shared by every softmax-based operation (CE, soft
// CE, softmax / log_softmax / lse / entropy, token log-probs).
//
// Statistics: for each fixed segment of a row, reference m = max z (0 if all
// z are -inf), s = sum exp(z - m) plus op-specific sums. The max pass of the
// next segment is interleaved with the exp pass of the current one, so the
// loads from memory overlap the exp arithmetic. Optionally e = exp(z - m) is
// stored (to a scratch row, or over the input when the output is in place);
// the output pass then reads e instead of recomputing it. Both give the same
// bits, since the output pass computes e exactly as the stats pass does:
// exp(z - SegRef) times the segment's factor SegFactor.
#if defined(XENT_SRC_SOFTMAX_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_SRC_SOFTMAX_INL_H_
#undef XENT_SRC_SOFTMAX_INL_H_
#else
#define XENT_SRC_SOFTMAX_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "src/engine.h"
#include "src/problem.h"
#include "src/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

// z = f(x): identity, softcap and/or 1/temperature. Increasing in x, so the
// max of z is f(max x).
struct ZMap {
  float cap = 0.0f, inv_cap = 0.0f, scale = 1.0f;
};

template <bool kCap, bool kScale>
HWY_INLINE VF ApplyZ(DF d, VF x, const ZMap& f) {
  if (kCap) x = SoftCap(d, x, f.cap, f.inv_cap);
  if (kScale) x = hn::Mul(x, hn::Set(d, f.scale));
  return x;
}
template <bool kCap, bool kScale>
HWY_INLINE float ApplyZScalar(float x, const ZMap& f) {
  const DF d;
  return hn::GetLane(ApplyZ<kCap, kScale>(d, hn::Set(d, x), f));
}

// Whether an accumulator takes the pair loop's two vectors in one call
// (Pair(d, j, zm0, e0, zm1, e1, c0, c1), columns j and j + N) instead of two
// Full calls.
template <class A, class = void>
struct HasPair : std::false_type {};
template <class A>
struct HasPair<A, std::void_t<decltype(&A::Pair)>> : std::true_type {};
// Whether an accumulator is told each segment's reference (SegRef(ref),
// before the segment's first Full / Pair / Tail call).
template <class A, class = void>
struct HasSegRef : std::false_type {};
template <class A>
struct HasSegRef<A, std::void_t<decltype(&A::SegRef)>> : std::true_type {};
// Whether an accumulator is given each segment's lane maxima before its walk
// (SegLanes(d, lanes, wide, nwide): each lane of `lanes` the max of some of
// the segment's columns, no column in two lanes, -inf where a lane has none,
// NaN dropped or kept; for the walk's first segment also the nwide = 4 N
// finer maxima they were reduced from, in the same sense, else wide =
// nullptr), e.g. to bound the segment's k-th largest logit from below.
template <class A, class = void>
struct HasSegLanes : std::false_type {};
template <class A>
struct HasSegLanes<A, std::void_t<decltype(&A::SegLanes)>> : std::true_type {};

// No other work in the walk.
struct NoRider {
  HWY_INLINE void Seg(size_t) {}
  HWY_INLINE void Pair(DF, size_t) {}
  HWY_INLINE void Rest(size_t, size_t) {}
};

// WalkStats with a rider: another row's pass over the same columns, done in
// the walk's loops so that its loads and stores (from cache, and to memory)
// run while the walk's loads of this row come in (see FusedRows in
// src/engine.h). Calls rider.Seg(s) before segment s, rider.Pair(d, j) for
// the pair of vectors at columns j and j + N, and rider.Rest(j0, j1) for the
// other columns [j0, j1) of a chunk, each before the walk stores e at those
// columns (the rider may read what is there first). The statistics are the
// same bits with any rider.

// Walks segments [s0, s1) of row x (V elements). Per segment: its reference
// m = max z (the segment's max was taken while the previous segment was
// exponentiated, so the loads from memory overlap the exp arithmetic; the
// memory kPrefetchBytes past those loads, in this row or the next when rows
// are contiguous, is prefetched in the same loop), then
// e = exp(z - m) over the segment from L1 (one exp per element), summed in
// two levels (per 256-element chunk, then per segment) to bound the f32 error.
// The accumulator's vectors are WalkStats' locals passed by reference (u0, u1:
// segment sums; c0, c1: chunk sums, zero at the start of a segment; SVE
// vectors cannot be struct members). Calls, per segment,
//   acc.Full(d, j, zm, e, c0, c1)     for a full vector at column j of the row
//       (zm = z - ref, e = exp(zm))
//       (or acc.Pair for two at once, when the accumulator has it)
//   acc.Tail(d, j, zm, e, r, c0, c1)  for the last r < N columns of the row
//       (zm = -inf and e = 0 in the other lanes)
//   acc.ChunkEnd(d, u0, u1, c0, c1)   after each chunk (chunk sums into
//       segment sums, chunk sums reset)
//   acc.End(d, SoftmaxSeg*, u0, u1)
// and fills m and s. When e_out is non-null, e is stored at e_out[j] (over the
// row itself when the output is f32 in place: the next segment is read
// before this one is overwritten); with kStoreZ, z is stored there instead
// (the cross-entropy gradient with softcap needs z for the softcap's slope,
// and takes e from it with one exp instead of a tanh and an exp).
template <typename T, bool kCap, bool kScale, bool kStoreZ = false, class Acc, class Rider>
HWY_INLINE void WalkStats(const T* x, size_t V, size_t s0, size_t s1, const ZMap& f, Acc& acc, SoftmaxSeg* out,
                          float* e_out, Rider& rider);
template <typename T, bool kCap, bool kScale, bool kStoreZ = false, class Acc>
HWY_INLINE void WalkStats(const T* x, size_t V, size_t s0, size_t s1, const ZMap& f, Acc& acc, SoftmaxSeg* out,
                          float* e_out) {
  NoRider none;
  WalkStats<T, kCap, kScale, kStoreZ>(x, V, s0, s1, f, acc, out, e_out, none);
}

template <typename T, bool kCap, bool kScale, bool kStoreZ, class Acc, class Rider>
HWY_INLINE void WalkStats(const T* x, size_t V, size_t s0, size_t s1, const ZMap& f, Acc& acc, SoftmaxSeg* out,
                          float* e_out, Rider& rider) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const VF neg_inf = hn::Set(d, kNegInf);
  const size_t n0 = std::min(kSegment, V - s0 * kSegment);
  VF lanes = neg_inf;                      // (HasSegLanes) the segment's lane maxima
  HWY_ALIGN float wide[4 * kMaxLanesF32];  // and the first segment's finer ones
  float raw;                               // the first segment's max
  if constexpr (HasSegLanes<Acc>::value) {
    VF m0, m1, m2, m3;
    MaxLanes4(x + s0 * kSegment, n0, m0, m1, m2, m3);
    hn::Store(m0, d, wide);
    hn::Store(m1, d, wide + N);
    hn::Store(m2, d, wide + 2 * N);
    hn::Store(m3, d, wide + 3 * N);
    lanes = MaxOf4(m0, m1, m2, m3);
    raw = hn::GetLane(hn::MaxOfLanes(d, lanes));
  } else {
    raw = MaxOf(x + s0 * kSegment, n0);
  }
  for (size_t s = s0; s < s1; ++s) {
    const size_t b = s * kSegment, n = std::min(kSegment, V - b);
    const T* xs = x + b;
    const T* xn = xs + kSegment;                                              // the next segment
    const size_t nn = s + 1 < s1 ? std::min(kSegment, V - b - kSegment) : 0;  // its length (0: none)
    float* eo = e_out ? e_out + b : nullptr;
    SoftmaxSeg* o = out + (s - s0);
    o->m = ApplyZScalar<kCap, kScale>(raw, f);
    const VF vr = hn::Set(d, SafeRef(o->m));
    if constexpr (HasSegLanes<Acc>::value) acc.SegLanes(d, lanes, s == s0 ? wide : nullptr, 4 * N);
    if constexpr (HasSegRef<Acc>::value) acc.SegRef(SafeRef(o->m));
    rider.Seg(s);
    VF S0 = hn::Zero(d), S1 = S0, u0 = S0, u1 = S0, c0 = S0, c1 = S0;
    VF mx = neg_inf;   // (one accumulator: AVX2 has 16 registers, and max is exact in any order)
    size_t fused = 0;  // the next segment's max covers [0, fused)
    for (size_t cb = 0; cb < n; cb += kChunk) {
      const size_t ce = std::min(n, cb + kChunk);
      VF b0 = hn::Zero(d), b1 = b0;
      // A full chunk with a full chunk of the next segment at the same
      // offsets: take that chunk's max in this loop. (The sums do not depend
      // on it: the loop is the same either way, so a segment's statistics do
      // not depend on which segments the caller walks together.)
      const bool fuse = ce - cb == kChunk && cb + kChunk <= nn && kChunk % (2 * N) == 0;
      // The pairs of vectors, the loop compiled for each (fuse, eo) case: no
      // per-pair branch on them (2 of ~30 instructions per vector on AVX2),
      // and fewer live registers without the max.
      const auto pairs = [&](auto fuse_c, auto store_c, VF vref, VF& m, VF& p0, VF& q0, VF& q1) HWY_ATTR
          __attribute__((always_inline)) {
        size_t j = cb;
        for (; j + 2 * N <= ce; j += 2 * N) {
          PrefetchAhead(xn + j, 2 * N);
          if (fuse_c) m = hn::Max(m, hn::Max(LoadF32(d, xn + j), LoadF32(d, xn + j + N)));
          const VF a0 = ApplyZ<kCap, kScale>(d, LoadF32(d, xs + j), f);
          const VF a1 = ApplyZ<kCap, kScale>(d, LoadF32(d, xs + j + N), f);
          const VF z0 = hn::Sub(a0, vref), z1 = hn::Sub(a1, vref);
          const VF e0 = ExpNonPositive(d, z0), e1 = ExpNonPositive(d, z1);
          p0 = hn::Add(p0, hn::Add(e0, e1));  // one sum: a second was spilled on AVX2
          rider.Pair(d, b + j);
          if (store_c) {
            hn::StoreU(kStoreZ ? a0 : e0, d, eo + j);
            hn::StoreU(kStoreZ ? a1 : e1, d, eo + j + N);
          }
          if constexpr (HasPair<Acc>::value) {
            acc.Pair(d, b + j, z0, e0, z1, e1, q0, q1);
          } else {
            acc.Full(d, b + j, z0, e0, q0, q1);
            acc.Full(d, b + j + N, z1, e1, q0, q1);
          }
        }
        return j;
      };
      using Y = std::true_type;
      using No = std::false_type;
      size_t i;
      if (fuse) {
        i = eo ? pairs(Y(), Y(), vr, mx, b0, c0, c1) : pairs(Y(), No(), vr, mx, b0, c0, c1);
        fused = ce;
      } else {
        i = eo ? pairs(No(), Y(), vr, mx, b0, c0, c1) : pairs(No(), No(), vr, mx, b0, c0, c1);
      }
      if (i < ce) rider.Rest(b + i, b + ce);
      for (; i + N <= ce; i += N) {
        const VF a = ApplyZ<kCap, kScale>(d, LoadF32(d, xs + i), f);
        const VF z = hn::Sub(a, vr);
        const VF e = ExpNonPositive(d, z);
        b0 = hn::Add(b0, e);
        if (eo) hn::StoreU(kStoreZ ? a : e, d, eo + i);
        acc.Full(d, b + i, z, e, c0, c1);
      }
      if (i < ce) {
        const size_t r = ce - i;
        const VF a = ApplyZ<kCap, kScale>(d, LoadTailF32(d, xs + i, r, 0.0f), f);
        const VF z = hn::IfThenElse(hn::FirstN(d, r), hn::Sub(a, vr), neg_inf);
        const VF e = ExpNonPositive(d, z);
        b1 = hn::Add(b1, e);
        if (eo) StoreTailF32(d, kStoreZ ? a : e, eo + i, r);
        acc.Tail(d, b + i, z, e, r, c0, c1);
      }
      S0 = hn::Add(S0, b0);
      S1 = hn::Add(S1, b1);
      acc.ChunkEnd(d, u0, u1, c0, c1);
    }
    if (nn != 0) {
      // (Lane l of mx: the columns j + l and j + N + l of the fused pairs.
      // Those past `fused` are not in it: a subset is enough for SegLanes.)
      lanes = mx;
      raw = hn::GetLane(hn::MaxOfLanes(d, mx));
      if (fused < nn) raw = std::max(raw, MaxOf(xn + fused, nn - fused));
    }
    o->s = hn::GetLane(hn::SumOfLanes(d, hn::Add(S0, S1)));
    acc.End(d, o, u0, u1);
  }
}

// No extra sums.
struct NoAcc {
  HWY_INLINE void ChunkEnd(DF, VF&, VF&, VF&, VF&) {}
  HWY_INLINE void Full(DF, size_t, VF, VF, VF&, VF&) {}
  HWY_INLINE void Tail(DF, size_t, VF, VF, size_t, VF&, VF&) {}
  HWY_INLINE void End(DF, SoftmaxSeg*, VF, VF) {}
};

// Entropy: u0 = sum e (z - ref), with 0 * (-inf) = 0 (c0: chunk sum).
struct EntropyAcc {
  HWY_INLINE void ChunkEnd(DF d, VF& u0, VF&, VF& c0, VF&) {
    u0 = hn::Add(u0, c0);
    c0 = hn::Zero(d);
  }
  HWY_INLINE void Full(DF d, size_t, VF zm, VF e, VF& c0, VF&) {
    c0 = hn::MulAdd(e, hn::Max(zm, hn::Set(d, -104.0f)), c0);
  }
  HWY_INLINE void Tail(DF d, size_t j, VF zm, VF e, size_t, VF& c0, VF& c1) { Full(d, j, zm, e, c0, c1); }
  HWY_INLINE void End(DF d, SoftmaxSeg* o, VF u0, VF) { o->u = hn::GetLane(hn::SumOfLanes(d, u0)); }
};

// The segment's reference as the output pass must subtract it, and its factor
// A exp(ref - M) (0 for a segment without mass, NaN for a NaN row), in double.
HWY_INLINE float SegRef(const SoftmaxSeg& g) { return SafeRef(g.m); }
HWY_INLINE float SegFactor(const SoftmaxSeg& g, double A, double M, bool nan) {
  if (nan) return static_cast<float>(A);  // NaN
  // A segment of -inf only: e = 0 there, so 0, unless the row's coefficient
  // is NaN (a NaN target probability or class weight): then the whole row's
  // gradient is NaN, as PyTorch's (NaN * 0), not just the segments with mass
  // (fuzzfast: a soft target with NaN in a segment of -inf logits).
  if (g.m == kNegInf) return std::isnan(A) ? static_cast<float>(A) : 0.0f;
  return static_cast<float>(A * std::exp(static_cast<double>(g.m) - M));
}

// Stores v (f32) to out[i..i+N) of dtype TG, streaming (non-temporal) when
// kStream (the caller aligned out + i to the vector size).
HWY_INLINE hn::Vec<hn::Rebind<uint16_t, DF>> Demote16(DF d, VF v, const BF16*) { return DemoteBF16(d, v); }
HWY_INLINE hn::Vec<hn::Rebind<uint16_t, DF>> Demote16(DF d, VF v, const F16*) {
  return hn::DemoteTo(hn::Rebind<uint16_t, DF>(), F16BitsI32(d, v));
}

template <typename TG, bool kStream>
HWY_INLINE void StoreOut(DF d, VF v, TG* out) {
  if constexpr (kStream && std::is_same<TG, float>::value) {
    hn::Stream(v, d, out);
  } else if constexpr (kStream && !std::is_same<TG, float>::value) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
    // 16-bit lanes of a half-width vector fill a whole 128/256-bit register
    // here, which is what the streaming store writes.
    const hn::Rebind<uint16_t, DF> du16;
    hn::Stream(Demote16(d, v, out), du16, reinterpret_cast<uint16_t*>(out));
#else
    StoreF32(d, v, out);
#endif
  } else {
    StoreF32(d, v, out);
  }
}

// Stores a and b (f32) to out[0, 2N) of dtype TG as two StoreOut calls
// would (the same bits). bf16 on AVX2: the two vectors' rounded bits in one
// pack and one cross-lane permute, and one 32-byte store (two 16-byte ones
// when streamed to a row aligned to 16 bytes only), instead of a pack, a
// permute and a store each. AVX2 (AMD EPYC, Zen 1), 8192x32000 bf16, 1
// thread, min of 5 in three A/B rounds: CE forward + gradient 1.91 -> 1.82
// ns/logit (5.85 -> 5.51 instructions per logit), in place 1.88 -> 1.79.
template <typename TG, bool kStream>
HWY_INLINE void StoreOut2(DF d, VF a, VF b, TG* out) {
#if HWY_ARCH_X86 && HWY_TARGET == HWY_AVX2
  if constexpr (std::is_same<TG, BF16>::value) {
    __m256i v = _mm256_packus_epi32(BF16BitsI32(d, a).raw, BF16BitsI32(d, b).raw);
    v = _mm256_permute4x64_epi64(v, 0xD8);  // (the pack interleaves the 128-bit halves)
    __m256i* p = reinterpret_cast<__m256i*>(out);
    if (!kStream) {
      _mm256_storeu_si256(p, v);
    } else if (reinterpret_cast<uintptr_t>(out) % 32 == 0) {
      _mm256_stream_si256(p, v);
    } else {
      _mm_stream_si128(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(v));
      _mm_stream_si128(reinterpret_cast<__m128i*>(out) + 1, _mm256_extracti128_si256(v, 1));
    }
    return;
  }
#endif
  const size_t N = hn::Lanes(d);
  StoreOut<TG, kStream>(d, a, out);
  StoreOut<TG, kStream>(d, b, out + N);
}

// Elements to process before out + i is aligned to a full vector (0 when the
// pointer cannot be aligned, e.g. misaligned by a fraction of an element).
template <typename TG>
HWY_INLINE size_t PeelToAlign(const TG* p, size_t n) {
  const DF d;
  const size_t vbytes = hn::Lanes(d) * sizeof(TG);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a % sizeof(TG) != 0) return n;  // never aligned: no streaming
  const size_t mis = a % vbytes;
  return mis == 0 ? 0 : std::min(n, (vbytes - mis) / sizeof(TG));
}

// Whether a fused walk (src/engine.h, FusedRows) may write row `row` of `o`
// (f32 or 16-bit) while it loads the next row: the row aligned for its
// non-temporal stores when `stream`; and f32 stores to another buffer than
// the input (not `in_place`) streamed: each line they write is read for
// ownership first, and in the walk those reads hold up the next row's loads
// (CE, 64x32000 f32, 1 thread: 0.405 -> 0.463-0.482 ns/logit fused; 16-bit
// outputs, half the lines, gain: 0.320 -> 0.271).
// (ShiftedStores, below.)
constexpr bool kShiftedStores = HWY_ARCH_X86 != 0;

// `shifted`: the caller's rider writes an f32 row through ShiftedStores (x86;
// the riders instantiate it for f32 logits only), which streams a row
// misaligned by whole elements too.
HWY_INLINE bool FusedStoresOk(const OutMat& o, size_t row, bool stream, bool in_place, bool shifted = false) {
  const bool f32 = o.dtype == DType::kF32;
  const size_t size = f32 ? sizeof(float) : sizeof(uint16_t);
  const uintptr_t a = reinterpret_cast<uintptr_t>(o.data) + row * o.stride * size;
  if (stream && a % (hn::Lanes(DF()) * size) != 0 && !(shifted && f32 && kShiftedStores && a % size == 0)) return false;
  return !f32 || stream || in_place;
}

// A fused walk's rider writes its row's output vector by vector, in column
// order, at columns j = 0, N, 2N, ... (Put), the last r < N columns last
// (PutLast), then End. Plain stores (kShift false): each vector at its
// columns, streamed when kStream.
template <typename TG, bool kStream, bool kShift = false>
struct ShiftedStores {
  TG* g;
  explicit ShiftedStores(TG* row) : g(row) {}
  HWY_INLINE void Put(DF d, VF v, size_t j) { StoreOut<TG, kStream>(d, v, g + j); }
  // The vectors of columns [j, j + N) and [j + N, j + 2 N).
  HWY_INLINE void Put2(DF d, VF a, VF b, size_t j) { StoreOut2<TG, kStream>(d, a, b, g + j); }
  HWY_INLINE void PutLast(DF d, VF v, size_t j, size_t r) { StoreTailF32(d, v, g + j, r); }
  HWY_INLINE void End(size_t) {}
};

// Whether a streamed f32 row at g takes ShiftedStores<float, true, true>: its
// start not aligned to a vector (by whole elements; FusedStoresOk checked).
HWY_INLINE bool ShiftStreamed(const float* g) {
  return kShiftedStores && reinterpret_cast<uintptr_t>(g) % (hn::Lanes(DF()) * sizeof(float)) != 0;
}

#if HWY_ARCH_X86
// kShift (x86, streamed f32 rows whose start is not aligned to a vector: V =
// 50257, GPT-2's vocabulary, 15 rows in 16; FusedStoresOk refused them, and
// the rows took turns: 8192 x 50257 CE forward + gradient, 1 thread, 0.530-
// 0.542 ns/logit against ~0.456 at 50304): each vector is rotated by the
// row's misalignment and blended with the previous one, so the aligned
// vectors in between are streamed; the first h columns (those before the
// first aligned one) and the last N - h are ordinary stores. Two more
// operations per vector; the same values. A separate instance: the members
// of the plain one kept the aligned rows' riders as fast as before (a branch
// per vector and these members in every rider cost the bf16 token backward
// 7-12 %). (Vectors as members: x86's are; SVE's could not be.)
template <typename TG>
struct ShiftedStores<TG, true, true> {
  using DI = hn::RebindToSigned<DF>;
  TG* g;
  size_t h;  // > 0
  hn::Vec<DI> idx;
  hn::Mask<DF> low;   // the lanes of an aligned vector from the previous one
  VF carry;           // the previous vector, rotated
  bool done = false;  // PutLast stored the row's last columns

  explicit ShiftedStores(TG* row) : g(row) {
    const DF d;
    const DI di;
    const size_t N = hn::Lanes(d);
    const uintptr_t a = reinterpret_cast<uintptr_t>(row);
    h = N - (a % (N * sizeof(TG))) / sizeof(TG);
    // rot[i] = v[(i + h) mod N]; an aligned vector at column j + h - N takes
    // lanes i < N - h from the previous vector's rot and the rest from v's.
    idx = hn::And(hn::Add(hn::Iota(di, 0), hn::Set(di, static_cast<int32_t>(h))),
                  hn::Set(di, static_cast<int32_t>(N - 1)));
    low = hn::FirstN(d, N - h);
    carry = hn::Zero(d);
  }
  // The vector of columns [j, j + N).
  HWY_INLINE void Put(DF d, VF v, size_t j) {
    const size_t N = hn::Lanes(d);
    const VF rot = hn::TableLookupLanes(v, hn::IndicesFromVec(d, idx));
    if (j == 0) {
      StoreTailF32(d, v, g, h);
    } else {
      StoreOut<TG, true>(d, hn::IfThenElse(low, carry, rot), g + j + h - N);
    }
    carry = rot;
  }
  HWY_INLINE void Put2(DF d, VF a, VF b, size_t j) {
    Put(d, a, j);
    Put(d, b, j + hn::Lanes(d));
  }
  // The last r columns of the row, [j, j + r), r < N (none after).
  HWY_INLINE void PutLast(DF d, VF v, size_t j, size_t r) {
    if (j == 0) {
      StoreTailF32(d, v, g, r);
    } else {
      const size_t N = hn::Lanes(d);
      const VF rot = hn::TableLookupLanes(v, hn::IndicesFromVec(d, idx));
      const VF out = hn::IfThenElse(low, carry, rot);  // columns [j + h - N, j + h)
      if (r >= h) {
        StoreOut<TG, true>(d, out, g + j + h - N);
        StoreTailF32(d, rot, g + j + h, r - h);
      } else {
        StoreTailF32(d, out, g + j + h - N, N - h + r);
      }
    }
    done = true;
  }
  // After the row: the carried columns, unless PutLast ended it.
  HWY_INLINE void End(size_t V) {
    const DF d;
    const size_t N = hn::Lanes(d);
    if (!done && V >= N) StoreTailF32(d, carry, g + V - N + h, N - h);
  }
};
#endif

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#endif  // XENT_SRC_SOFTMAX_INL_H_
