// Softmax family (softmax, log_softmax, logsumexp, entropy), token
// log-probabilities, and the softmax / log_softmax backward.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/softmax.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

// Kernel argument types: defined once (outside the per-target namespaces) so
// that every target's kernel has the same signature.
#ifndef XENT_SRC_SOFTMAX_CC_TYPES_
#define XENT_SRC_SOFTMAX_CC_TYPES_
#include "src/engine.h"
#include "src/problem.h"
namespace xent {
// Row kernel arguments (plain data, shared by every target).
struct SoftmaxKernel {
  size_t V = 0;
  InMat logits;
  float scale = 1.0f;  // 1 / temperature
  bool entropy = false;
  OutMat probs, log_probs;
  bool stream = false;
  // Token log-probs.
  float cap = 0.0f, inv_cap = 0.0f;
  Labels target;
  int64_t class_offset = 0;  // a column shard's first class (target is global)
};

struct SoftmaxRow {
  float M = 0.0f;        // row max of z
  float a = 0.0f;        // 1 / S
  float lse_off = 0.0f;  // log S: log_probs = (z - M) - log S
  bool nan = false;
};

// ---------------------------------------------------------------------------
// Backward: per segment the sum of g y (PROBS) or of g (LOG_PROBS), then
// gx = (y (g - sum)) / T or (g - exp(y) sum) / T.
struct BackwardKernel {
  size_t V = 0;
  InMat y, g;
  bool log = false;
  OutMat gx;
  float inv_t = 1.0f;
};

}  // namespace xent
#endif  // XENT_SRC_SOFTMAX_CC_TYPES_

#include "hwy/highway.h"
#include "src/engine.h"
#include "src/simd-inl.h"
#include "src/softmax-inl.h"
#include "src/visit-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

// (rider: see WalkStats.)
template <typename T, bool kCap, bool kScale, class Rider = NoRider>
HWY_INLINE void StatsRow(const SoftmaxKernel& k, size_t row, size_t s0, size_t s1, SoftmaxSeg* out, float* e_out,
                         Rider&& rider = Rider()) {
  const T* x = RowPtr<T>(k.logits.data, k.logits.stride, row);
  ZMap f;
  f.cap = k.cap;
  f.inv_cap = k.inv_cap;
  f.scale = k.scale;
  // The target's z (token log-probs), read before the walk.
  int64_t y = -1;
  float zy = 0.0f;
  if (k.target.data != nullptr) {
    y = k.target.At(row) - k.class_offset;
    if (y >= static_cast<int64_t>(s0 * kSegment) && y < static_cast<int64_t>(std::min(k.V, s1 * kSegment))) {
      zy = ApplyZScalar<kCap, kScale>(LoadScalarF32(x, static_cast<size_t>(y), DTypeOf<T>()), f);
    } else {
      y = -1;
    }
  }
  if (k.entropy) {
    EntropyAcc a;
    WalkStats<T, kCap, kScale>(x, k.V, s0, s1, f, a, out, e_out, rider);
  } else {
    NoAcc a;
    WalkStats<T, kCap, kScale>(x, k.V, s0, s1, f, a, out, e_out, rider);
  }
  for (size_t s = s0; s < s1; ++s) out[s - s0].has_zy = 0;
  if (y >= 0) {
    SoftmaxSeg& o = out[static_cast<size_t>(y) / kSegment - s0];
    o.zy = zy;
    o.has_zy = 1;
  }
}

struct SoftmaxStatsFn {
  template <typename T, class Cap, class Scale>
  static HWY_INLINE void Run(const SoftmaxKernel& k, size_t row, size_t s0, size_t s1, SoftmaxSeg* out, float* e_out) {
    StatsRow<T, Cap::value, Scale::value>(k, row, s0, s1, out, e_out);
  }
};

// Stored e: only worth it for probabilities; over the logits when probs is
// f32 in place and nothing else needs the logits afterwards (log_probs
// does), else the scratch row, or without one (few long rows split in
// segments) an f32 probs row apart from the logits, which the output pass
// reads column by column before it overwrites it.
HWY_INLINE float* ProbsEBuffer(const SoftmaxKernel& k, size_t row, float* scratch) {
  if (k.probs.data == nullptr) return nullptr;
  const bool f32 = k.probs.dtype == DType::kF32;
  const bool in_place = k.probs.data == k.logits.data;
  if ((in_place && f32 && k.log_probs.data == nullptr) || (scratch == nullptr && f32 && !in_place)) {
    return RowPtrMut<float>(k.probs.data, k.probs.stride, row);
  }
  return scratch;
}

void SoftmaxStats(const SoftmaxKernel& k, size_t row, size_t s0, size_t s1, SoftmaxSeg* out, float* scratch) {
  Visit<SoftmaxStatsFn>(Choose(FloatType{k.logits.dtype}, Flag{k.cap > 0.0f}, Flag{k.scale != 1.0f}), k, row, s0, s1,
                        out, ProbsEBuffer(k, row, scratch));
}

// Output pass for one segment: probs = e F, log_probs = (z - M) - log S.
template <typename T, typename TP, typename TL, bool kScale, bool kStream>
HWY_INLINE void SoftmaxOutVec(DF d, const T* x, const float* e_in, TP* probs, TL* log_probs, size_t i, size_t rr,
                              float scale, VF vr, VF vF, VF vM, VF vl) {
  const size_t N = hn::Lanes(d);
  const bool full = rr == N;
  VF z = hn::Zero(d);
  if (log_probs != nullptr || e_in == nullptr) {
    const VF xv = full ? LoadF32(d, x + i) : LoadTailF32(d, x + i, rr, 0.0f);
    ZMap f;
    f.scale = scale;
    z = ApplyZ<false, kScale>(d, xv, f);
  }
  if (probs != nullptr) {
    const VF e =
        e_in ? (full ? hn::LoadU(d, e_in + i) : LoadTailF32(d, e_in + i, rr, 0.0f)) : ExpNonPositive(d, hn::Sub(z, vr));
    const VF pv = hn::Mul(e, vF);
    if (!full) {
      StoreTailF32(d, pv, probs + i, rr);
    } else {
      StoreOut<TP, kStream>(d, pv, probs + i);
    }
  }
  if (log_probs != nullptr) {
    const VF lv = hn::Sub(hn::Sub(z, vM), vl);
    if (!full) {
      StoreTailF32(d, lv, log_probs + i, rr);
    } else {
      StoreOut<TL, kStream>(d, lv, log_probs + i);
    }
  }
}

// `want_stream` is a run-time flag (both loops compiled in once; as a
// template flag it doubled the instantiations for no speed).
template <typename T, typename TP, typename TL, bool kScale>
HWY_NOINLINE void SoftmaxOutSeg(const SoftmaxKernel& k, const SoftmaxRow& r, const SoftmaxSeg& sg, const T* x,
                                const float* e_in, TP* probs, TL* log_probs, size_t n, bool want_stream) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const VF vr = hn::Set(d, SegRef(sg)), vF = hn::Set(d, SegFactor(sg, r.a, r.M, r.nan));
  const VF vM = hn::Set(d, r.nan ? std::numeric_limits<float>::quiet_NaN() : r.M), vl = hn::Set(d, r.lse_off);
  // Streaming only to aligned rows.
  const bool stream = want_stream && (probs == nullptr || PeelToAlign(probs, n) == 0) &&
                      (log_probs == nullptr || PeelToAlign(log_probs, n) == 0);
  size_t i = 0;
  if (stream) {
    for (; i + N <= n; i += N)
      SoftmaxOutVec<T, TP, TL, kScale, true>(d, x, e_in, probs, log_probs, i, N, k.scale, vr, vF, vM, vl);
  } else {
    for (; i + N <= n; i += N)
      SoftmaxOutVec<T, TP, TL, kScale, false>(d, x, e_in, probs, log_probs, i, N, k.scale, vr, vF, vM, vl);
  }
  if (i < n) SoftmaxOutVec<T, TP, TL, kScale, false>(d, x, e_in, probs, log_probs, i, n - i, k.scale, vr, vF, vM, vl);
}

template <typename T, typename TP, typename TL>
void SoftmaxOutT(const SoftmaxKernel& k, const SoftmaxRow& r, const SoftmaxSeg* segs, size_t row, size_t s0, size_t s1,
                 const float* e_in) {
  const T* x = RowPtr<T>(k.logits.data, k.logits.stride, row);
  TP* probs = k.probs.data ? RowPtrMut<TP>(k.probs.data, k.probs.stride, row) : nullptr;
  TL* lp = k.log_probs.data ? RowPtrMut<TL>(k.log_probs.data, k.log_probs.stride, row) : nullptr;
  const bool scale = k.scale != 1.0f;
  for (size_t s = s0; s < s1; ++s) {
    const size_t b = s * kSegment, n = std::min(kSegment, k.V - b);
    const float* e = e_in ? e_in + b : nullptr;
    TP* pb = probs ? probs + b : nullptr;
    TL* lb = lp ? lp + b : nullptr;
    scale ? SoftmaxOutSeg<T, TP, TL, true>(k, r, segs[s], x + b, e, pb, lb, n, k.stream)
          : SoftmaxOutSeg<T, TP, TL, false>(k, r, segs[s], x + b, e, pb, lb, n, k.stream);
  }
  if (k.stream) hwy::FlushStream();
}

// Each output is f32 or the logits' dtype.
struct SoftmaxOutFn {
  template <typename T, class ProbsF32, class LogF32>
  static HWY_INLINE void Run(const SoftmaxKernel& k, const SoftmaxRow& r, const SoftmaxSeg* segs, size_t row, size_t s0,
                             size_t s1, const float* e_in) {
    SoftmaxOutT<T, OutType<ProbsF32, T>, OutType<LogF32, T>>(k, r, segs, row, s0, s1, e_in);
  }
};

void SoftmaxOut(const SoftmaxKernel& k, const SoftmaxRow& r, const SoftmaxSeg* segs, size_t row, size_t s0, size_t s1,
                float* scratch) {
  Visit<SoftmaxOutFn>(Choose(FloatType{k.logits.dtype}, Flag{k.probs.data == nullptr || k.probs.dtype == DType::kF32},
                             Flag{k.log_probs.data == nullptr || k.log_probs.dtype == DType::kF32}),
                      k, r, segs, row, s0, s1, ProbsEBuffer(k, row, scratch));
}

// The output phase of row r riding in the next row's stats walk (see
// WalkStats' riders): SoftmaxOutVec at the walk's columns, called before the
// walk stores the next row's e there (the same scratch row, or in place), so
// the same bits as SoftmaxOutSeg. Probabilities or log-probabilities, T = 1.
template <typename T, typename TP, typename TL, bool kStream>
struct SoftmaxRider {
  const SoftmaxRow* r;
  const SoftmaxSeg* segs;  // row r's
  const T* x;              // row r's logits
  const float* e;          // row r's e (probabilities only)
  TP* probs;               // row r's outputs (one of them)
  TL* lp;
  float ref = 0.0f, F = 0.0f;  // the current segment's

  HWY_INLINE void Seg(size_t s) {
    ref = SegRef(segs[s]);
    F = SegFactor(segs[s], r->a, r->M, r->nan);
  }
  template <bool kStreamVec>
  HWY_INLINE void Vec(DF d, size_t j, size_t rr) {
    const VF vM = hn::Set(d, r->nan ? std::numeric_limits<float>::quiet_NaN() : r->M);
    SoftmaxOutVec<T, TP, TL, false, kStreamVec>(d, x, e, probs, lp, j, rr, 1.0f, hn::Set(d, ref), hn::Set(d, F), vM,
                                                hn::Set(d, r->lse_off));
  }
  HWY_INLINE void Pair(DF d, size_t j) {
    const size_t N = hn::Lanes(d);
    Vec<kStream>(d, j, N);
    Vec<kStream>(d, j + N, N);
  }
  HWY_INLINE void Rest(size_t j0, size_t j1) {
    const DF d;
    const size_t N = hn::Lanes(d);
    size_t j = j0;
    for (; j + N <= j1; j += N) Vec<kStream>(d, j, N);
    if (j < j1) Vec<false>(d, j, j1 - j);
  }
};

template <class OutF32>
struct SoftmaxFusedFn {
  template <typename T, class Stream>
  static HWY_INLINE void Run(const SoftmaxKernel& k, const SoftmaxRow& r, const SoftmaxSeg* segs, size_t row, size_t nr,
                             SoftmaxSeg* out, const float* e, float* e_next) {
    using TO = OutType<OutF32, T>;
    const T* x = RowPtr<T>(k.logits.data, k.logits.stride, row);
    const size_t nseg = NumSegments(k.V);
    if (k.probs.data != nullptr) {
      TO* pr = RowPtrMut<TO>(k.probs.data, k.probs.stride, row);
      StatsRow<T, false, false>(k, nr, 0, nseg, out, e_next,
                                SoftmaxRider<T, TO, float, Stream::value>{&r, segs, x, e, pr, nullptr});
    } else {
      TO* lp = RowPtrMut<TO>(k.log_probs.data, k.log_probs.stride, row);
      StatsRow<T, false, false>(k, nr, 0, nseg, out, nullptr,
                                SoftmaxRider<T, float, TO, Stream::value>{&r, segs, x, nullptr, nullptr, lp});
    }
    if (Stream::value) hwy::FlushStream();
  }
};

// The output phase of row `row` and the stats phase of row `nr` in one walk;
// false, with nothing done, where it does not apply (the caller runs them one
// after the other): both outputs or the entropy asked, a temperature, f16
// logits, a NaN row, no scratch row for the probabilities, an output row not
// aligned for its non-temporal stores, or f32 stores to another buffer that
// are not streamed (FusedStoresOk).
bool SoftmaxFused(const SoftmaxKernel& k, const SoftmaxRow& r, const SoftmaxSeg* segs, size_t row, size_t nr,
                  SoftmaxSeg* out, float* scratch) {
  const bool probs = k.probs.data != nullptr;
  if (probs == (k.log_probs.data != nullptr) || k.entropy || k.scale != 1.0f || k.cap > 0.0f) return false;
  if (probs && scratch == nullptr) return false;
  // Nor a NaN row: GCC's AVX2 code of the rider's last vectors gave its NaNs
  // another sign than SoftmaxOutSeg's (compilers do not keep NaN signs).
  if (r.nan) return false;
  if (k.logits.dtype != DType::kF32 && k.logits.dtype != DType::kBF16) return false;
  const OutMat& o = probs ? k.probs : k.log_probs;
  const float* e = probs ? ProbsEBuffer(k, row, scratch) : nullptr;
  float* e_next = probs ? ProbsEBuffer(k, nr, scratch) : nullptr;
  if (probs && (e == nullptr || e_next == nullptr)) return false;
  if (!FusedStoresOk(o, row, k.stream, o.data == k.logits.data)) return false;
  const bool f32 = o.dtype == DType::kF32;
  const auto choices = Choose(Flag{k.stream});
  if (k.logits.dtype == DType::kF32) {
    VisitFixed<SoftmaxFusedFn<std::true_type>, float>(choices, k, r, segs, row, nr, out, e, e_next);
  } else if (f32) {
    VisitFixed<SoftmaxFusedFn<std::true_type>, BF16>(choices, k, r, segs, row, nr, out, e, e_next);
  } else {
    VisitFixed<SoftmaxFusedFn<std::false_type>, BF16>(choices, k, r, segs, row, nr, out, e, e_next);
  }
  return true;
}

template <typename T>
HWY_NOINLINE float BackwardDotSeg(const T* y, const T* g, size_t n, bool log) {
  const DF d;
  const size_t N = hn::Lanes(d);
  VF acc = hn::Zero(d);
  for (size_t cb = 0; cb < n; cb += kChunk) {  // two-level sums
    const size_t ce = std::min(n, cb + kChunk);
    VF c0 = hn::Zero(d), c1 = c0;
    size_t i = cb;
    for (; i + 2 * N <= ce; i += 2 * N) {
      if (log) {
        c0 = hn::Add(c0, LoadF32(d, g + i));
        c1 = hn::Add(c1, LoadF32(d, g + i + N));
      } else {
        c0 = hn::MulAdd(LoadF32(d, g + i), LoadF32(d, y + i), c0);
        c1 = hn::MulAdd(LoadF32(d, g + i + N), LoadF32(d, y + i + N), c1);
      }
    }
    for (; i + N <= ce; i += N) {
      c0 = log ? hn::Add(c0, LoadF32(d, g + i)) : hn::MulAdd(LoadF32(d, g + i), LoadF32(d, y + i), c0);
    }
    if (i < ce) {
      const VF gv = LoadTailF32(d, g + i, ce - i, 0.0f);
      c1 = log ? hn::Add(c1, gv) : hn::MulAdd(gv, LoadTailF32(d, y + i, ce - i, 0.0f), c1);
    }
    acc = hn::Add(acc, hn::Add(c0, c1));
  }
  return hn::GetLane(hn::SumOfLanes(d, acc));
}

struct BackwardStatsFn {
  template <typename T>
  static HWY_INLINE void Run(const BackwardKernel& k, size_t row, size_t s0, size_t s1, float* out) {
    const T* y = RowPtr<T>(k.y.data, k.y.stride, row);
    const T* g = RowPtr<T>(k.g.data, k.g.stride, row);
    for (size_t s = s0; s < s1; ++s) {
      const size_t b = s * kSegment;
      out[s - s0] = BackwardDotSeg(y + b, g + b, std::min(kSegment, k.V - b), k.log);
    }
  }
};

void BackwardStats(const BackwardKernel& k, size_t row, size_t s0, size_t s1, float* out) {
  Visit<BackwardStatsFn>(Choose(FloatType{k.y.dtype}), k, row, s0, s1, out);
}

template <typename T, typename TG>
HWY_INLINE void BackwardOutVec(DF d, const T* y, const T* g, TG* gx, size_t i, size_t r, bool log, VF vd, VF vt) {
  const bool full = r == hn::Lanes(d);
  const VF yv = full ? LoadF32(d, y + i) : LoadTailF32(d, y + i, r, 0.0f);
  const VF gv = full ? LoadF32(d, g + i) : LoadTailF32(d, g + i, r, 0.0f);
  const VF out = log ? hn::Mul(hn::NegMulAdd(ExpNaN(d, yv), vd, gv), vt) : hn::Mul(hn::Mul(yv, hn::Sub(gv, vd)), vt);
  if (full) {
    StoreF32(d, out, gx + i);
  } else {
    StoreTailF32(d, out, gx + i, r);
  }
}

template <typename T, typename TG>
HWY_NOINLINE void BackwardOutSeg(const T* y, const T* g, TG* gx, size_t n, bool log, float dot, float inv_t) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const VF vd = hn::Set(d, dot), vt = hn::Set(d, inv_t);
  size_t i = 0;
  for (; i + N <= n; i += N) BackwardOutVec(d, y, g, gx, i, N, log, vd, vt);
  if (i < n) BackwardOutVec(d, y, g, gx, i, n - i, log, vd, vt);
}

struct BackwardOutFn {
  template <typename T, class OutF32>
  static HWY_INLINE void Run(const BackwardKernel& k, float dot, size_t row, size_t s0, size_t s1) {
    using TG = OutType<OutF32, T>;
    const T* y = RowPtr<T>(k.y.data, k.y.stride, row);
    const T* g = RowPtr<T>(k.g.data, k.g.stride, row);
    TG* gx = RowPtrMut<TG>(k.gx.data, k.gx.stride, row);
    for (size_t s = s0; s < s1; ++s) {
      const size_t b = s * kSegment;
      BackwardOutSeg(y + b, g + b, gx + b, std::min(kSegment, k.V - b), k.log, dot, k.inv_t);
    }
  }
};

void BackwardOut(const BackwardKernel& k, float dot, size_t row, size_t s0, size_t s1) {
  Visit<BackwardOutFn>(Choose(FloatType{k.y.dtype}, Flag{k.gx.dtype == DType::kF32}), k, dot, row, s0, s1);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <cstring>
#include <memory>
#include <new>

#include "src/dispatch.h"

namespace xent {

HWY_EXPORT(SoftmaxStats);
HWY_EXPORT(SoftmaxOut);
HWY_EXPORT(SoftmaxFused);
HWY_EXPORT(BackwardStats);
HWY_EXPORT(BackwardOut);

namespace {

constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();

// Softmax family and token log-probs share the statistics.
struct SoftmaxOp : NoMiddle {
  using Seg = SoftmaxSeg;
  using Acc = SoftmaxAcc;
  using RowState = SoftmaxRow;
  // (Stats and Output of segment s touch the e scratch in its columns only.)
  static constexpr bool kPipelined = true;
  SoftmaxKernel k;
  const SoftmaxProblem* sp = nullptr;
  const TokenLogprobsProblem* tp = nullptr;
  // Vocab-parallel token log-probs, phase 1: each row's statistics go to
  // stats_out (src/problem.h's layout) and nothing else is written.
  const TokenLogprobsShardProblem* shard = nullptr;

  bool NeedsStats(size_t) const { return true; }
  size_t ScratchRows() const { return (sp && sp->probs.data) ? 1 : 0; }
  void Stats(size_t row, size_t s0, size_t s1, Seg* out, float* scratch) const {
    XENT_DISPATCH(SoftmaxStats)(k, row, s0, s1, out, scratch);
  }
  static void Merge(Acc& acc, const Seg& g) { acc.Merge(g); }
  void Finish(size_t row, const Acc& acc, bool, RowState* st) const {
    if (shard) {
      ExportTokenRow(*shard, row, acc);
      return;
    }
    const double lse = acc.Lse();
    float* lse_out = sp ? sp->lse : tp->lse;
    float* ent_out = sp ? sp->entropy : tp->entropy;
    if (lse_out) lse_out[row] = static_cast<float>(lse);
    if (ent_out) ent_out[row] = static_cast<float>(acc.Entropy());
    if (tp && tp->logprob) {
      tp->logprob[row] =
          tp->target.Ignored(row) ? 0.0f : static_cast<float>(-((acc.M - static_cast<double>(acc.zy)) + acc.LogS()));
    }
    st->nan = acc.nan || acc.S == 0.0;
    st->M = static_cast<float>(acc.M);
    st->a = st->nan ? kNaNf : static_cast<float>(1.0 / acc.S);
    st->lse_off = static_cast<float>(acc.LogS());
  }
  // The row's record (after the header): [M, zy] [S] (+ [U]).
  static void ExportTokenRow(const TokenLogprobsShardProblem& q, size_t row, const Acc& acc) {
    const bool holds = acc.has_zy && !q.target.Ignored(row);
    // M is the max of f32 z (or -inf): exact in f32, as zy.
    const float mzy[2] = {static_cast<float>(acc.M), holds ? acc.zy : kNaNf};
    double rec[3] = {};
    std::memcpy(&rec[kRowMZy], mzy, sizeof(mzy));
    rec[kRowS] = acc.nan ? std::numeric_limits<double>::quiet_NaN() : acc.S;
    rec[2] = acc.U;
    const size_t n = TokShardRowDoubles(q.with_entropy);
    std::memcpy(q.stats_out + kShardHeaderDoubles + row * n, rec, n * sizeof(double));  // (any alignment)
  }
  bool HasOutput() const { return sp && (sp->probs.data || sp->log_probs.data); }
  void Output(size_t row, const RowState& st, const Seg* segs, size_t s0, size_t s1, float* scratch) const {
    XENT_DISPATCH(SoftmaxOut)(k, st, segs, row, s0, s1, scratch);
  }
  bool OutputStats(size_t row, const RowState& st, const Seg* segs, size_t next_row, Seg* next_segs,
                   float* scratch) const {
    if (!HasOutput()) return false;
    return XENT_DISPATCH(SoftmaxFused)(k, st, segs, row, next_row, next_segs, scratch);
  }
};

}  // namespace

xent_status RunSoftmax(const SoftmaxProblem& p) {
  SoftmaxOp op;
  op.sp = &p;
  op.k.V = p.V;
  op.k.logits = p.logits;
  op.k.scale = 1.0f / p.temperature;
  op.k.entropy = p.entropy != nullptr;
  op.k.probs = p.probs;
  op.k.log_probs = p.log_probs;
  const bool inplace = p.probs.data == p.logits.data || p.log_probs.data == p.logits.data;
  op.k.stream = !inplace && ((p.probs.data && StreamOutputs(p.B, p.V, p.probs)) ||
                             (p.log_probs.data && StreamOutputs(p.B, p.V, p.log_probs)));
  return RunRows(op, p.B, p.V, p.exec);
}

xent_status RunTokenLogprobs(const TokenLogprobsProblem& p) {
  // Any statistic beyond log p(y), entropy and lse: src/token_stats.cc.
  if (p.argmax || p.argmax_logprob || p.topk_logprobs || p.topk_indices || p.topk_mass || p.ref_logprob || p.ref_lse ||
      p.kl)
    return RunTokenStats(p);
  SoftmaxOp op;
  op.tp = &p;
  op.k.V = p.V;
  op.k.logits = p.logits;
  op.k.scale = 1.0f / p.temperature;
  op.k.entropy = p.entropy != nullptr;
  op.k.cap = p.softcap;
  op.k.inv_cap = p.softcap > 0.0f ? 1.0f / p.softcap : 0.0f;
  op.k.target = p.logprob ? p.target : Labels();
  return RunRows(op, p.B, p.V, p.exec);
}

namespace {

struct DotSeg {
  float dot = 0.0f;
};
struct DotAcc {
  double sum = 0.0;
};
struct DotRow {
  float dot = 0.0f;
};

struct BackwardOp : NoMiddle {
  using Seg = DotSeg;
  using Acc = DotAcc;
  using RowState = DotRow;
  BackwardKernel k;
  bool NeedsStats(size_t) const { return true; }
  size_t ScratchRows() const { return 0; }
  void Stats(size_t row, size_t s0, size_t s1, Seg* out, float*) const {
    float tmp[64];
    for (size_t s = s0; s < s1; s += 64) {
      const size_t e = std::min(s1, s + 64);
      XENT_DISPATCH(BackwardStats)(k, row, s, e, tmp);
      for (size_t j = s; j < e; ++j) out[j - s0].dot = tmp[j - s];
    }
  }
  static void Merge(Acc& acc, const Seg& g) { acc.sum += g.dot; }
  void Finish(size_t, const Acc& acc, bool, RowState* st) const { st->dot = static_cast<float>(acc.sum); }
  bool HasOutput() const { return true; }
  void Output(size_t row, const RowState& st, const Seg*, size_t s0, size_t s1, float*) const {
    XENT_DISPATCH(BackwardOut)(k, st.dot, row, s0, s1);
  }
};

}  // namespace

xent_status RunSoftmaxBackward(const SoftmaxBackwardProblem& p) {
  BackwardOp op;
  op.k.V = p.V;
  op.k.y = p.output;
  op.k.g = p.grad_output;
  op.k.log = p.output_kind == DistKind::kLogProbs;
  op.k.gx = p.grad_input;
  op.k.inv_t = 1.0f / p.temperature;
  return RunRows(op, p.B, p.V, p.exec);
}

xent_status RunTokenLogprobsShardStats(const TokenLogprobsShardProblem& p) {
  SoftmaxOp op;
  op.shard = &p;
  op.k.V = p.Vs;
  op.k.logits = p.logits;
  op.k.scale = 1.0f / p.temperature;
  op.k.entropy = p.with_entropy;
  op.k.cap = p.softcap;
  op.k.inv_cap = p.softcap > 0.0f ? 1.0f / p.softcap : 0.0f;
  op.k.target = p.target;
  op.k.class_offset = static_cast<int64_t>(p.offset);
  const xent_status rc = RunRows(op, p.B, p.Vs, p.exec);
  if (rc != XENT_OK) return rc;
  const double header[kShardHeaderDoubles] = {p.with_entropy ? kTagTokEnt : kTagTok, static_cast<double>(p.B),
                                              static_cast<double>(p.offset), static_cast<double>(p.Vs)};
  std::memcpy(p.stats_out, header, sizeof(header));
  return XENT_OK;
}

xent_status RunTokenLogprobsShardFinish(const TokenLogprobsShardProblem& p) {
  const size_t n = TokShardRowDoubles(p.with_entropy), per_rank = TokShardStatsDoubles(p.B, p.with_entropy);
  std::unique_ptr<size_t[]> begin(new (std::nothrow) size_t[p.P + 1]);
  if (!begin) return XENT_ERROR_OUT_OF_MEMORY;
  ShardBegins(p.stats_in, p.P, per_rank, begin.get());
  for (size_t i = 0; i < p.B; ++i) {
    const bool has_target = p.target.data != nullptr && !p.target.Ignored(i);
    const int64_t y = has_target ? p.target.At(i) : -1;
    // The row's statistics over all shards, merged in the tree over shard
    // indices that the single-process engine uses over segments.
    const SoftmaxAcc acc = TreeMerge<SoftmaxAcc>(p.P, [&](size_t r) {
      double rec[3] = {};
      std::memcpy(rec, p.stats_in + r * per_rank + kShardHeaderDoubles + i * n, n * sizeof(double));
      float mzy[2];
      std::memcpy(mzy, &rec[kRowMZy], sizeof(mzy));
      SoftmaxAcc a;
      a.M = mzy[0];
      a.S = rec[kRowS];
      a.U = rec[2];
      a.zy = mzy[1];
      a.has_zy = has_target && y >= static_cast<int64_t>(begin[r]) && y < static_cast<int64_t>(begin[r + 1]);
      a.nan = std::isnan(a.S);
      return a;
    });
    // xent_token_logprobs' formulas (SoftmaxOp::Finish).
    if (p.lse) p.lse[i] = static_cast<float>(acc.Lse());
    if (p.entropy) p.entropy[i] = static_cast<float>(acc.Entropy());
    if (p.logprob)
      p.logprob[i] = has_target ? static_cast<float>(-((acc.M - static_cast<double>(acc.zy)) + acc.LogS())) : 0.0f;
  }
  return XENT_OK;
}

}  // namespace xent
#endif  // HWY_ONCE
