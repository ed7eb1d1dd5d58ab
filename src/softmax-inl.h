// Per-target row walkers shared by every softmax-based operation (CE, soft
// CE, softmax / log_softmax / lse / entropy, token log-probs).
//
// Statistics: for each fixed segment of a row, reference m = max z (0 if all
// z are -inf), s = sum exp(z - m) plus op-specific sums. The max pass of the
// next segment is interleaved with the exp pass of the current one, so the
// loads from memory overlap the exp arithmetic. Optionally e = exp(z - m) is
// stored (to a scratch row, or over the input when the output is in place);
// the output pass then reads e instead of recomputing it. Both give the same
// bits, since the output pass computes e exactly as the stats pass does.
#if defined(XENT_SRC_SOFTMAX_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_SRC_SOFTMAX_INL_H_
#undef XENT_SRC_SOFTMAX_INL_H_
#else
#define XENT_SRC_SOFTMAX_INL_H_
#endif

#include <algorithm>
#include <cmath>

#include "src/engine.h"
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

// Walks segments [s0, s1) of row x (V elements), chunk by chunk: the max of a
// chunk (streaming from memory), then exp(z - ref) over the chunk (from L1),
// where ref is the segment's running max, raised (with the sums rescaled)
// only when a chunk exceeds it. The accumulator's vectors are WalkStats'
// locals passed by reference (u0, u1: segment sums; c0, c1: chunk sums, all
// zero at the start of a segment). Calls, per segment,
//   acc.Rescale(d, shift, factor, S, u0, u1) when ref grows: shift = old - new
//       safe reference (<= 0), factor = exp(shift), S = sum of e so far (lanes)
//   acc(d, j, zm, e, valid, c0, c1) per vector (j = column in the row, zm =
//       z - ref with -inf in invalid lanes, e = exp(zm), valid = lane mask)
//   acc.ChunkEnd(d, u0, u1, c0, c1) after each chunk (chunk sums into segment
//       sums, chunk sums reset)
//   acc.End(d, SoftmaxSeg*, u0, u1)
// and fills m, s and ref[]. When e_out is non-null, e is stored at e_out[j].
// Software prefetch distance of the stats pass, in bytes (measured on
// AVX-512, 1 thread, 8192 x 32000: CE forward 0.58 -> 0.48 ns/logit, softmax
// 0.87 -> 0.72; distances of 2 or 8 KiB of f32 did no better).
constexpr size_t kPrefetchBytes = 4096;
template <typename T, bool kCap, bool kScale, class Acc>
HWY_INLINE void WalkStats(const T* x, size_t V, size_t s0, size_t s1, const ZMap& f, Acc& acc, SoftmaxSeg* out,
                          float* e_out) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const auto all = hn::FirstN(d, N);
  for (size_t s = s0; s < s1; ++s) {
    const size_t b = s * kSegment, n = std::min(kSegment, V - b);
    SoftmaxSeg* o = out + (s - s0);
    float M = kNegInf;  // running max of z over the segment
    VF S0 = hn::Zero(d), S1 = S0;
    // The accumulator's vectors live here, not in Acc: SVE vectors are
    // sizeless and cannot be struct members (u: segment sums, c: chunk sums).
    VF u0 = S0, u1 = S0, c0 = S0, c1 = S0;
    // The max of chunk c + 1 is taken in the loop that exponentiates chunk c
    // (software pipelining: its loads from memory overlap the exp arithmetic
    // on L1 data instead of waiting in a loop of their own).
    float raw_next = MaxOf(x + b, std::min(kChunk, n));
    for (size_t cb = 0, ci = 0; cb < n; cb += kChunk, ++ci) {
      const size_t cn = std::min(kChunk, n - cb);
      const T* xc = x + b + cb;
      const T* xn = xc + kChunk;
      const size_t nn = cb + kChunk < n ? std::min(kChunk, n - cb - kChunk) : 0;
      const bool fuse = cn == kChunk && nn == kChunk && kChunk % (2 * N) == 0;  // (max: same value either way)
      VF mx0 = hn::Set(d, kNegInf), mx1 = mx0;
      constexpr size_t kAhead = kPrefetchBytes / sizeof(T);  // elements
      if (cb + kAhead < n) PrefetchNext(xc + kAhead, kChunk);
      const float cz = ApplyZScalar<kCap, kScale>(raw_next, f);
      if (cz > M) {
        if (M != kNegInf) {  // rescale what was summed against the old ref
          const float shift = M - cz;
          const VF fac = ExpNonPositive(d, hn::Set(d, shift));
          acc.Rescale(d, shift, fac, hn::Add(S0, S1), u0, u1);
          S0 = hn::Mul(S0, fac);
          S1 = hn::Mul(S1, fac);
        } else {
          acc.Rescale(d, -cz, hn::Zero(d), hn::Zero(d), u0, u1);  // from ref 0: sums hold only -inf terms
        }
        M = cz;
      }
      o->ref[ci] = M;
      const VF vr = hn::Set(d, SafeRef(M));
      VF b0 = hn::Zero(d), b1 = b0;
      size_t i = 0;
      for (; i + 2 * N <= cn; i += 2 * N) {
        if (fuse) {
          mx0 = hn::Max(mx0, LoadF32(d, xn + i));
          mx1 = hn::Max(mx1, LoadF32(d, xn + i + N));
        }
        const VF z0 = hn::Sub(ApplyZ<kCap, kScale>(d, LoadF32(d, xc + i), f), vr);
        const VF z1 = hn::Sub(ApplyZ<kCap, kScale>(d, LoadF32(d, xc + i + N), f), vr);
        const VF e0 = ExpNonPositive(d, z0), e1 = ExpNonPositive(d, z1);
        b0 = hn::Add(b0, e0);
        b1 = hn::Add(b1, e1);
        if (e_out) {
          hn::StoreU(e0, d, e_out + b + cb + i);
          hn::StoreU(e1, d, e_out + b + cb + i + N);
        }
        acc(d, b + cb + i, z0, e0, all, c0, c1);
        acc(d, b + cb + i + N, z1, e1, all, c0, c1);
      }
      for (; i + N <= cn; i += N) {
        const VF z = hn::Sub(ApplyZ<kCap, kScale>(d, LoadF32(d, xc + i), f), vr);
        const VF e = ExpNonPositive(d, z);
        b0 = hn::Add(b0, e);
        if (e_out) hn::StoreU(e, d, e_out + b + cb + i);
        acc(d, b + cb + i, z, e, all, c0, c1);
      }
      if (i < cn) {
        const size_t r = cn - i;
        const auto valid = hn::FirstN(d, r);
        const VF x_t = LoadTailF32(d, xc + i, r, 0.0f);
        const VF z = hn::IfThenElse(valid, hn::Sub(ApplyZ<kCap, kScale>(d, x_t, f), vr), hn::Set(d, kNegInf));
        const VF e = ExpNonPositive(d, z);
        b1 = hn::Add(b1, e);
        if (e_out) StoreTailF32(d, e, e_out + b + cb + i, r);
        acc(d, b + cb + i, z, e, valid, c0, c1);
      }
      if (nn != 0) raw_next = fuse ? hn::GetLane(hn::MaxOfLanes(d, hn::Max(mx0, mx1))) : MaxOf(xn, nn);
      // Two-level sums (chunk sums into segment sums) bound the f32 error.
      S0 = hn::Add(S0, b0);
      S1 = hn::Add(S1, b1);
      acc.ChunkEnd(d, u0, u1, c0, c1);
    }
    o->m = M;
    o->s = hn::GetLane(hn::SumOfLanes(d, hn::Add(S0, S1)));
    acc.End(d, o, u0, u1);
  }
}

// Reference of chunk c as the output pass must subtract it.
HWY_INLINE float ChunkRef(const SoftmaxSeg& g, size_t c) { return SafeRef(g.ref[c]); }

// No extra sums.
struct NoAcc {
  HWY_INLINE void ChunkEnd(DF, VF&, VF&, VF&, VF&) {}
  HWY_INLINE void Rescale(DF, float, VF, VF, VF&, VF&) {}
  template <class M>
  HWY_INLINE void operator()(DF, size_t, VF, VF, M, VF&, VF&) {}
  HWY_INLINE void End(DF, SoftmaxSeg*, VF, VF) {}
};

// Entropy: u0 = sum e (z - ref), with 0 * (-inf) = 0 (c0: chunk sum).
struct EntropyAcc {
  HWY_INLINE void ChunkEnd(DF d, VF& u0, VF&, VF& c0, VF&) {
    u0 = hn::Add(u0, c0);
    c0 = hn::Zero(d);
  }
  HWY_INLINE void Rescale(DF d, float shift, VF fac, VF S, VF& u0, VF&) {
    // sum e' (z - ref') = fac (sum e (z - ref) + shift S); where fac = 0 the
    // old terms are all 0 (and shift S may have overflowed: 0 * inf = NaN).
    u0 = hn::IfThenZeroElse(hn::Eq(fac, hn::Zero(d)), hn::Mul(fac, hn::MulAdd(hn::Set(d, shift), S, u0)));
  }
  template <class M>
  HWY_INLINE void operator()(DF d, size_t, VF zm, VF e, M, VF& c0, VF&) {
    c0 = hn::MulAdd(e, hn::Max(zm, hn::Set(d, -104.0f)), c0);
  }
  HWY_INLINE void End(DF d, SoftmaxSeg* o, VF u0, VF) { o->u = hn::GetLane(hn::SumOfLanes(d, u0)); }
};

// Factors A exp(ref_c - M) for the chunks of a segment (0 for a chunk without
// mass), in double; refs repeat, so exp is evaluated once per distinct ref.
HWY_INLINE void ChunkFactors(const SoftmaxSeg& g, size_t n, double A, double M, bool nan, float* fac) {
  const size_t chunks = (n + kChunk - 1) / kChunk;
  float prev = 0.0f;
  float prev_fac = 0.0f;
  bool have = false;
  for (size_t c = 0; c < chunks; ++c) {
    const float r = g.ref[c];
    if (nan) {
      fac[c] = static_cast<float>(A);  // NaN
    } else if (r == kNegInf) {
      fac[c] = 0.0f;
    } else if (have && r == prev) {
      fac[c] = prev_fac;
    } else {
      prev = r;
      prev_fac = static_cast<float>(A * std::exp(static_cast<double>(r) - M));
      have = true;
      fac[c] = prev_fac;
    }
  }
}

// Stores v (f32) to out[i..i+N) of dtype TG, streaming (non-temporal) when
// kStream (the caller aligned out + i to the vector size).
HWY_INLINE hn::Vec<hn::Rebind<int32_t, DF>> Bits16(DF d, VF v, const BF16*) { return BF16BitsI32(d, v); }
HWY_INLINE hn::Vec<hn::Rebind<int32_t, DF>> Bits16(DF d, VF v, const F16*) { return F16BitsI32(d, v); }

template <typename TG, bool kStream>
HWY_INLINE void StoreOut(DF d, VF v, TG* out) {
  if constexpr (kStream && std::is_same<TG, float>::value) {
    hn::Stream(v, d, out);
  } else if constexpr (kStream && !std::is_same<TG, float>::value) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
    // 16-bit lanes of a half-width vector fill a whole 128/256-bit register
    // here, which is what the streaming store writes.
    const hn::Rebind<uint16_t, DF> du16;
    hn::Stream(hn::DemoteTo(du16, Bits16(d, v, out)), du16, reinterpret_cast<uint16_t*>(out));
#else
    StoreF32(d, v, out);
#endif
  } else {
    StoreF32(d, v, out);
  }
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

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#endif  // XENT_SRC_SOFTMAX_INL_H_
