// KL divergence and generalized Jensen-Shannon kernels for every SIMD target:
// the stats pass, the middle and output passes, and the fused distillation
// walk (src/kl.h). Included by src/kl_<dtype>.cc, one translation unit per
// logits dtype.
#if defined(XENT_SRC_KL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_SRC_KL_INL_H_
#undef XENT_SRC_KL_INL_H_
#else
#define XENT_SRC_KL_INL_H_
#endif

#include <type_traits>

#include "hwy/highway.h"
#include "src/engine.h"
#include "src/kl.h"
#include "src/simd-inl.h"
#include "src/softmax-inl.h"
#include "src/visit-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent {
namespace HWY_NAMESPACE {

// Sum over a segment of p (PROBS) or exp(p) (LOG_PROBS), two-level.
template <typename T>
HWY_NOINLINE float ProbSumSeg(const T* x, size_t n, bool log) {
  const DF d;
  const size_t N = hn::Lanes(d);
  VF acc = hn::Zero(d);
  for (size_t cb = 0; cb < n; cb += kChunk) {
    const size_t ce = std::min(n, cb + kChunk);
    VF c0 = hn::Zero(d);
    size_t i = cb;
    for (; i + N <= ce; i += N) {
      const VF v = LoadF32(d, x + i);
      c0 = hn::Add(c0, log ? ExpNaN(d, v) : v);
    }
    if (i < ce) {
      const VF v = LoadTailF32(d, x + i, ce - i, log ? kNegInf : 0.0f);
      c0 = hn::Add(c0, log ? ExpNaN(d, v) : v);
    }
    acc = hn::Add(acc, c0);
  }
  return hn::GetLane(hn::SumOfLanes(d, acc));
}

// (rider: see WalkStats; only for a side given as logits.)
template <typename T, class Rider = NoRider>
HWY_INLINE void SideStats(const T* x, DistKind kind, float inv_t, bool need_sum, size_t V, size_t s0, size_t s1,
                          KlSeg* out, bool is_q, float* e_out, Rider&& rider = Rider()) {
  if (kind == DistKind::kLogits) {
    ZMap f;
    f.scale = inv_t;
    constexpr size_t kBatch = 16;  // segments per walk
    SoftmaxSeg tmp[kBatch];
    NoAcc a;
    for (size_t s = s0; s < s1; s += kBatch) {
      const size_t e = std::min(s1, s + kBatch);
      if (inv_t != 1.0f) {
        WalkStats<T, false, true>(x, V, s, e, f, a, tmp, e_out, rider);
      } else {
        WalkStats<T, false, false>(x, V, s, e, f, a, tmp, e_out, rider);
      }
      for (size_t j = s; j < e; ++j) (is_q ? out[j - s0].q : out[j - s0].p) = tmp[j - s];
    }
  } else if (need_sum) {
    for (size_t s = s0; s < s1; ++s) {
      const size_t b = s * kSegment, n = std::min(kSegment, V - b);
      (is_q ? out[s - s0].qsum : out[s - s0].psum) = ProbSumSeg(x + b, n, kind == DistKind::kLogProbs);
    }
  }
}

template <typename T>
HWY_INLINE void KlStatsOf(const KlKernel& k, size_t row, size_t s0, size_t s1, KlSeg* out, float* scratch) {
  for (size_t s = s0; s < s1; ++s) out[s - s0] = KlSeg();
  SideStats(RowPtr<T>(k.q_in.data, k.q_in.stride, row), k.qk, k.inv_t, k.need_qsum, k.V, s0, s1, out, true, scratch);
  SideStats(RowPtr<T>(k.p_in.data, k.p_in.stride, row), k.pk, k.inv_t, k.need_psum, k.V, s0, s1, out, false,
            scratch ? scratch + k.V : nullptr);
}

// ---------------------------------------------------------------------------
// Elementwise quantities of one vector: a side's prob and logp, the terms.
// (Out-parameters, not structs: SVE vectors cannot be struct members.)

// log(x) with log 0 = -inf and log(negative) = NaN.
HWY_INLINE VF SafeLog(DF d, VF x) {
  const VF l = LogNaN(d, x);
  const VF nan = hn::Set(d, std::numeric_limits<float>::quiet_NaN());
  VF r = hn::IfThenElse(hn::Eq(x, hn::Zero(d)), hn::Set(d, kNegInf), l);
  r = hn::IfThenElse(hn::Lt(x, hn::Zero(d)), nan, r);
  return hn::IfThenElse(hn::Eq(x, hn::Set(d, std::numeric_limits<float>::infinity())), x, r);
}

// One side: logits use z = x / T, log p = (z - M) - log S, p = e F with
// e = exp(z - ref) as the stats pass computed it (stored, or recomputed
// bit-identically); log-probs use exp; probs use log.
HWY_INLINE void MakeSide(DF d, VF x, DistKind kind, float inv_t, float M, float ls, bool nan, const float* e, float ref,
                         VF vF, bool full, size_t r, VF& prob, VF& logp) {
  if (kind == DistKind::kLogits) {
    const VF z = inv_t != 1.0f ? hn::Mul(x, hn::Set(d, inv_t)) : x;
    logp = hn::Sub(hn::Sub(z, hn::Set(d, M)), hn::Set(d, ls));
    if (nan) logp = hn::Set(d, std::numeric_limits<float>::quiet_NaN());
    const VF ev = e != nullptr ? (full ? hn::LoadU(d, e) : LoadTailF32(d, e, r, 0.0f))
                               : ExpNonPositive(d, hn::Sub(z, hn::Set(d, ref)));
    prob = hn::Mul(ev, vF);
  } else if (kind == DistKind::kLogProbs) {
    logp = x;
    prob = ExpNaN(d, x);
  } else {
    prob = x;
    logp = SafeLog(d, x);
  }
}

// Loss term and d(loss)/d(log q), d(loss)/d(log p) of one vector.
HWY_INLINE void MakeTerms(DF d, VF q_prob, VF q_logp, VF p_prob, VF p_logp, KlMode mode, float beta, VF& term, VF& G,
                          VF& K, VF& dlq, VF& dlp) {
  const VF zero = hn::Zero(d);
  const auto p0 = hn::Eq(p_prob, zero), q0 = hn::Eq(q_prob, zero);
  dlq = dlp = zero;
  if (mode == KlMode::kForward) {
    const VF diff = hn::Sub(p_logp, q_logp);
    term = hn::IfThenZeroElse(p0, hn::Mul(p_prob, diff));
    G = hn::Neg(p_prob);
    K = hn::IfThenZeroElse(p0, hn::MulAdd(p_prob, diff, p_prob));
  } else if (mode == KlMode::kReverse) {
    const VF diff = hn::Sub(q_logp, p_logp);
    term = hn::IfThenZeroElse(q0, hn::Mul(q_prob, diff));
    G = hn::IfThenZeroElse(q0, hn::MulAdd(q_prob, diff, q_prob));
    K = hn::Neg(q_prob);
  } else {
    const VF b = hn::Set(d, beta), b1 = hn::Set(d, 1.0f - beta);
    const VF mix = hn::MulAdd(b, p_prob, hn::Mul(b1, q_prob));
    const VF lm = SafeLog(d, mix);
    // Masks on the weighted probabilities: a denormal beta can make b p
    // underflow to 0 with p > 0 (then the mixture may be 0 and lm = -inf).
    const VF bp = hn::Mul(b, p_prob), bq = hn::Mul(b1, q_prob);
    // log p - log m and log q - log m. Where a side is close to the mixture
    // (beta near 0 or 1, or a high temperature's near-uniform rows) log m is
    // within rounding of its log, and the plain difference cancels: at
    // beta = 1 - 6e-8, T = 100, the row loss came out -0.17 for 0.011 (a
    // fuzzfast finding). From dd = log q - log p without forming log m:
    //   log p - log m = -log1p((1 - beta) expm1(dd)),
    //   log q - log m = -log1p(beta expm1(-dd)), expm1(-dd) = -e / (1 + e),
    // used where the log1p argument is at most 1/2 in magnitude (the result
    // is then small, and log1p well conditioned); elsewhere the difference is
    // at least 0.4 and the plain form is accurate. An infinite or NaN
    // argument fails the test and takes the plain form.
    const VF e = hn::Expm1(d, hn::Sub(q_logp, p_logp));
    const VF xp = hn::Mul(b1, e), xq = hn::Neg(hn::Mul(b, hn::Div(e, hn::Add(hn::Set(d, 1.0f), e))));
    const VF half = hn::Set(d, 0.5f);
    dlp = hn::IfThenElse(hn::Le(hn::Abs(xp), half), hn::Neg(hn::Log1p(d, xp)), hn::Sub(p_logp, lm));
    dlq = hn::IfThenElse(hn::Le(hn::Abs(xq), half), hn::Neg(hn::Log1p(d, xq)), hn::Sub(q_logp, lm));
    const VF tp = hn::IfThenZeroElse(hn::Eq(bp, zero), hn::Mul(bp, dlp));
    const VF tq = hn::IfThenZeroElse(hn::Eq(bq, zero), hn::Mul(bq, dlq));
    term = hn::Add(tp, tq);
    G = tq;
    K = tp;
  }
  // A NaN on either side makes the term NaN, also where the other side's
  // zero probability would mask it (0 log 0 = 0 holds for numbers only).
  const VF nan = hn::Set(d, std::numeric_limits<float>::quiet_NaN());
  term = hn::IfThenElse(hn::Or(hn::IsNaN(q_logp), hn::IsNaN(p_logp)), nan, term);
}

// Stores v as f32 or as T at base[i] (r lanes when r < N).
template <typename T>
HWY_INLINE void StoreAs(DF d, VF v, const OutMat& m, size_t row, size_t i, size_t r) {
  const size_t N = hn::Lanes(d);
  if (m.dtype == DType::kF32) {
    float* p = RowPtrMut<float>(m.data, m.stride, row) + i;
    r == N ? StoreF32(d, v, p) : StoreTailF32(d, v, p, r);
  } else {
    T* p = RowPtrMut<T>(m.data, m.stride, row) + i;
    r == N ? StoreF32(d, v, p) : StoreTailF32(d, v, p, r);
  }
}

// Gradient w.r.t. the input of one side as given. dlm: log x - log m of
// this side (the mixture mode's, from MakeTerms).
HWY_INLINE VF SideGrad(DF d, VF Gl, VF s_prob, VF s_logp, VF x_raw, DistKind kind, float sum_g, float inv_t, VF scale,
                       KlMode mode, bool student, float beta, VF dlm, VF other_logp) {
  VF g;
  if (kind == DistKind::kLogits) {
    // (dL/dlog p_c - p_c sum_k dL/dlog p_k) / T
    g = hn::Mul(hn::NegMulAdd(s_prob, hn::Set(d, sum_g), Gl), hn::Set(d, inv_t));
  } else if (kind == DistKind::kLogProbs) {
    g = Gl;
  } else {
    // dL/dp = (dL/dlog p) / p, in forms without 0/0.
    const VF zero = hn::Zero(d);
    const bool fwd_side = (mode == KlMode::kForward) == student;  // dL/dlog = -other prob
    // A zero probability gets a zero gradient (a masked class stays
    // masked), except -other/0 = -inf where the loss itself is infinite.
    if (mode == KlMode::kMix) {
      const VF w = hn::Set(d, student ? 1.0f - beta : beta);
      g = hn::IfThenZeroElse(hn::Eq(hn::Mul(w, s_prob), zero), hn::Mul(w, dlm));
    } else if (fwd_side) {
      // dL/dlog x = -(other prob): dL/dx = -other / x, 0 where the other is 0.
      g = hn::IfThenZeroElse(hn::Eq(Gl, zero), hn::Div(Gl, x_raw));
    } else {
      g = hn::IfThenZeroElse(hn::Eq(s_prob, zero), hn::Add(hn::Sub(s_logp, other_logp), hn::Set(d, 1.0f)));
    }
  }
  return hn::Mul(g, scale);
}

// The middle or output pass of any kinds and mode: kQK, kPK (DistKind) and
// kMode (KlMode) fix them at compile time, -1 takes them from k at run time
// (KlPassOf: which combinations have their own instance).
template <typename T, int kQK = -1, int kPK = -1, int kMode = -1>
void PassT(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t s0, size_t s1, const float* scratch,
           bool middle) {
  const DistKind qkind = kQK >= 0 ? static_cast<DistKind>(kQK) : k.qk;
  const DistKind pkind = kPK >= 0 ? static_cast<DistKind>(kPK) : k.pk;
  const KlMode mode = kMode >= 0 ? static_cast<KlMode>(kMode) : k.mode;
  const DF d;
  const size_t N = hn::Lanes(d);
  const T* xq = RowPtr<T>(k.q_in.data, k.q_in.stride, row);
  const T* xp = RowPtr<T>(k.p_in.data, k.p_in.stride, row);
  const bool write_grads = (k.grads_in_middle == middle);
  const bool do_gq = write_grads && k.grad_q.data != nullptr;
  const bool do_gp = write_grads && k.grad_p.data != nullptr;
  const VF gs = hn::Set(d, r.gs), es = hn::Set(d, r.es);
  for (size_t s = s0; s < s1; ++s) {
    const size_t b = s * kSegment, n = std::min(kSegment, k.V - b);
    KlSeg& sg = segs[s];
    if (r.ignored) {
      for (size_t i = 0; i < n; i += N) {
        const size_t rr = std::min(N, n - i);
        if (middle && k.elem_loss.data) StoreAs<float>(d, hn::Zero(d), k.elem_loss, row, b + i, rr);
        if (do_gq) StoreAs<T>(d, hn::Zero(d), k.grad_q, row, b + i, rr);
        if (do_gp) StoreAs<T>(d, hn::Zero(d), k.grad_p, row, b + i, rr);
      }
      if (middle) sg.loss = sg.gq = sg.gp = 0.0f;
      continue;
    }
    const bool ql = qkind == DistKind::kLogits, pl = pkind == DistKind::kLogits;
    const VF vFq = hn::Set(d, ql ? SegFactor(sg.q, r.aq, r.Mq, r.nanq) : 0.0f);
    const VF vFp = hn::Set(d, pl ? SegFactor(sg.p, r.ap, r.Mp, r.nanp) : 0.0f);
    const float rq = ql ? SegRef(sg.q) : 0.0f, rp = pl ? SegRef(sg.p) : 0.0f;
    const float* eq = scratch ? scratch + b : nullptr;
    const float* ep = scratch ? scratch + k.V + b : nullptr;
    VF loss = hn::Zero(d), sumG = loss, sumK = loss;
    VF closs = loss, cG = loss, cK = loss;  // chunk sums (two-level)
    for (size_t i = 0; i < n; i += N) {
      const size_t rr = std::min(N, n - i);
      const bool full = rr == N;
      const VF x = full ? LoadF32(d, xq + b + i) : LoadTailF32(d, xq + b + i, rr, 0.0f);
      const VF t = full ? LoadF32(d, xp + b + i) : LoadTailF32(d, xp + b + i, rr, 0.0f);
      VF q_prob, q_logp, p_prob, p_logp, term, G, K, dlq, dlp;
      MakeSide(d, x, qkind, k.inv_t, r.Mq, r.lsq, r.nanq, eq ? eq + i : nullptr, rq, vFq, full, rr, q_prob, q_logp);
      MakeSide(d, t, pkind, k.inv_t, r.Mp, r.lsp, r.nanp, ep ? ep + i : nullptr, rp, vFp, full, rr, p_prob, p_logp);
      MakeTerms(d, q_prob, q_logp, p_prob, p_logp, mode, k.beta, term, G, K, dlq, dlp);
      if (middle) {
        if (full) {
          closs = hn::Add(closs, term);
          cG = hn::Add(cG, G);
          cK = hn::Add(cK, K);
        } else {  // (the lanes past the row's end)
          const auto valid = hn::FirstN(d, rr);
          closs = hn::Add(closs, hn::IfThenElseZero(valid, term));
          cG = hn::Add(cG, hn::IfThenElseZero(valid, G));
          cK = hn::Add(cK, hn::IfThenElseZero(valid, K));
        }
        if (k.elem_loss.data) StoreAs<float>(d, hn::Mul(term, es), k.elem_loss, row, b + i, rr);
      }
      if (do_gq) {
        StoreAs<T>(d, SideGrad(d, G, q_prob, q_logp, x, qkind, r.gq_sum, k.inv_t, gs, mode, true, k.beta, dlq, p_logp),
                   k.grad_q, row, b + i, rr);
      }
      if (do_gp) {
        StoreAs<T>(d, SideGrad(d, K, p_prob, p_logp, t, pkind, r.gp_sum, k.inv_t, gs, mode, false, k.beta, dlp, q_logp),
                   k.grad_p, row, b + i, rr);
      }
      if ((i + N) % kChunk == 0 || i + N >= n) {
        loss = hn::Add(loss, closs);
        sumG = hn::Add(sumG, cG);
        sumK = hn::Add(sumK, cK);
        closs = cG = cK = hn::Zero(d);
      }
    }
    if (middle) {
      sg.loss = hn::GetLane(hn::SumOfLanes(d, loss));
      sg.gq = hn::GetLane(hn::SumOfLanes(d, sumG));
      sg.gp = hn::GetLane(hn::SumOfLanes(d, sumK));
    }
  }
}

// Generalized JSD with both sides given as logits (KlMode::kMix): PassT's
// middle and output passes with the kinds and the mode fixed at compile time,
// and an output pass that reads the terms the middle pass left in the scratch
// rows instead of computing them again. The middle pass is the cost: per
// vector a log, an expm1, two log1p and six divisions (MakeTerms); PassT paid
// it in both passes (8192x32000 f32 fwd+grad, 1 thread, AVX2: 88 instructions
// and 28 ns per logit).
// The stash: when the row has an output pass and scratch rows, the middle
// pass overwrites each column of the scratch rows after reading it. With only
// the student's gradient, the teacher's row of exps takes
// G = (1 - beta) q (log q - log m); with only the teacher's, the student's row
// takes K = beta p (log p - log m); with both, G and K take the student's and
// the teacher's rows, and the output pass takes the exps again (ExpNonPositive
// of the same argument: the bits the stats pass stored). A term is the same
// bits from the stash or computed again (no scratch rows: RunSegmentSplit, or
// a failed allocation), and the same bits as PassT's.
enum class JsdStash { kNone, kG, kK, kBoth };

template <typename T>
HWY_NOINLINE void PassJsd(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t s0, size_t s1,
                          float* scratch, bool middle) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const T* xq = RowPtr<T>(k.q_in.data, k.q_in.stride, row);
  const T* xp = RowPtr<T>(k.p_in.data, k.p_in.stride, row);
  const bool gq = k.grad_q.data != nullptr, gp = k.grad_p.data != nullptr;
  // (Both sides logits: a gradient makes an output pass, none is written in
  // the middle one.)
  const JsdStash stash = scratch == nullptr || k.grads_in_middle ? JsdStash::kNone
                         : gq && gp                              ? JsdStash::kBoth
                         : gq                                    ? JsdStash::kG
                                                                 : JsdStash::kK;
  const VF gs = hn::Set(d, r.gs), es = hn::Set(d, r.es);
  const VF sgq = hn::Set(d, r.gq_sum), sgp = hn::Set(d, r.gp_sum), it = hn::Set(d, k.inv_t);
  for (size_t s = s0; s < s1; ++s) {
    const size_t b = s * kSegment, n = std::min(kSegment, k.V - b);
    KlSeg& sg = segs[s];
    const VF vFq = hn::Set(d, SegFactor(sg.q, r.aq, r.Mq, r.nanq));
    const VF vFp = hn::Set(d, SegFactor(sg.p, r.ap, r.Mp, r.nanp));
    const float rq = SegRef(sg.q), rp = SegRef(sg.p);
    float* const eq = scratch ? scratch + b : nullptr;
    float* const ep = scratch ? scratch + k.V + b : nullptr;
    // Both sides of column b + i: loads, probabilities and log-probabilities
    // (exps from the scratch rows when kE), the terms.
    const auto terms = [&](size_t i, size_t rr, auto has_e, VF& x, VF& t, VF& q_prob, VF& p_prob, VF& term, VF& G,
                           VF& K) HWY_ATTR __attribute__((always_inline)) {
      constexpr bool kE = decltype(has_e)::value;
      const bool full = rr == N;
      x = full ? LoadF32(d, xq + b + i) : LoadTailF32(d, xq + b + i, rr, 0.0f);
      t = full ? LoadF32(d, xp + b + i) : LoadTailF32(d, xp + b + i, rr, 0.0f);
      VF q_logp, p_logp, dlq, dlp;
      MakeSide(d, x, DistKind::kLogits, k.inv_t, r.Mq, r.lsq, r.nanq, kE ? eq + i : nullptr, rq, vFq, full, rr, q_prob,
               q_logp);
      MakeSide(d, t, DistKind::kLogits, k.inv_t, r.Mp, r.lsp, r.nanp, kE ? ep + i : nullptr, rp, vFp, full, rr, p_prob,
               p_logp);
      MakeTerms(d, q_prob, q_logp, p_prob, p_logp, KlMode::kMix, k.beta, term, G, K, dlq, dlp);
    };
    const auto put = [&](VF v, float* p, size_t rr) HWY_ATTR __attribute__((always_inline)) {
      rr == N ? hn::StoreU(v, d, p) : StoreTailF32(d, v, p, rr);
    };
    const auto get = [&](const float* p, size_t rr) HWY_ATTR __attribute__((always_inline)) {
      return rr == N ? hn::LoadU(d, p) : LoadTailF32(d, p, rr, 0.0f);
    };
    // (SideGrad's logits case.)
    const auto grad = [&](VF Gl, VF prob, VF sum) HWY_ATTR __attribute__((always_inline)) {
      return hn::Mul(hn::Mul(hn::NegMulAdd(prob, sum, Gl), it), gs);
    };
    if (middle) {
      VF loss = hn::Zero(d), sumG = loss, sumK = loss;
      VF closs = loss, cG = loss, cK = loss;  // chunk sums (two-level)
      const auto vec = [&](size_t i, size_t rr, auto has_e, auto st) HWY_ATTR __attribute__((always_inline)) {
        constexpr JsdStash kSt = decltype(st)::value;
        VF x, t, q_prob, p_prob, term, G, K;
        terms(i, rr, has_e, x, t, q_prob, p_prob, term, G, K);
        if (rr != N) {
          const auto valid = hn::FirstN(d, rr);
          term = hn::IfThenElseZero(valid, term);
          G = hn::IfThenElseZero(valid, G);
          K = hn::IfThenElseZero(valid, K);
        }
        closs = hn::Add(closs, term);
        cG = hn::Add(cG, G);
        cK = hn::Add(cK, K);
        if (k.elem_loss.data) StoreAs<float>(d, hn::Mul(term, es), k.elem_loss, row, b + i, rr);
        if constexpr (kSt == JsdStash::kG) put(G, ep + i, rr);
        if constexpr (kSt == JsdStash::kK) put(K, eq + i, rr);
        if constexpr (kSt == JsdStash::kBoth) put(G, eq + i, rr), put(K, ep + i, rr);
        if ((i + N) % kChunk == 0 || i + N >= n) {
          loss = hn::Add(loss, closs);
          sumG = hn::Add(sumG, cG);
          sumK = hn::Add(sumK, cK);
          closs = cG = cK = hn::Zero(d);
        }
      };
      const auto run = [&](auto has_e, auto st) HWY_ATTR __attribute__((always_inline)) {
        size_t i = 0;
        for (; i + N <= n; i += N) vec(i, N, has_e, st);
        if (i < n) vec(i, n - i, has_e, st);
      };
      using E = std::true_type;
      using NoE = std::false_type;
      switch (stash) {
        case JsdStash::kNone:
          scratch ? run(E(), std::integral_constant<JsdStash, JsdStash::kNone>())
                  : run(NoE(), std::integral_constant<JsdStash, JsdStash::kNone>());
          break;
        case JsdStash::kG: run(E(), std::integral_constant<JsdStash, JsdStash::kG>()); break;
        case JsdStash::kK: run(E(), std::integral_constant<JsdStash, JsdStash::kK>()); break;
        case JsdStash::kBoth: run(E(), std::integral_constant<JsdStash, JsdStash::kBoth>()); break;
      }
      sg.loss = hn::GetLane(hn::SumOfLanes(d, loss));
      sg.gq = hn::GetLane(hn::SumOfLanes(d, sumG));
      sg.gp = hn::GetLane(hn::SumOfLanes(d, sumK));
      continue;
    }
    // The output pass.
    const auto out = [&](size_t i, size_t rr, auto st) HWY_ATTR __attribute__((always_inline)) {
      constexpr JsdStash kSt = decltype(st)::value;
      VF q_prob, p_prob, G, K;
      if constexpr (kSt == JsdStash::kNone) {
        VF x, t, term;
        terms(i, rr, std::false_type(), x, t, q_prob, p_prob, term, G, K);
      } else if constexpr (kSt == JsdStash::kG) {
        q_prob = hn::Mul(get(eq + i, rr), vFq);
        G = get(ep + i, rr);
      } else if constexpr (kSt == JsdStash::kK) {
        p_prob = hn::Mul(get(ep + i, rr), vFp);
        K = get(eq + i, rr);
      } else {
        const bool full = rr == N;
        VF lp;
        const VF x = full ? LoadF32(d, xq + b + i) : LoadTailF32(d, xq + b + i, rr, 0.0f);
        const VF t = full ? LoadF32(d, xp + b + i) : LoadTailF32(d, xp + b + i, rr, 0.0f);
        MakeSide(d, x, DistKind::kLogits, k.inv_t, r.Mq, r.lsq, r.nanq, nullptr, rq, vFq, full, rr, q_prob, lp);
        MakeSide(d, t, DistKind::kLogits, k.inv_t, r.Mp, r.lsp, r.nanp, nullptr, rp, vFp, full, rr, p_prob, lp);
        G = get(eq + i, rr);
        K = get(ep + i, rr);
      }
      if (kSt != JsdStash::kK && gq) StoreAs<T>(d, grad(G, q_prob, sgq), k.grad_q, row, b + i, rr);
      if (kSt != JsdStash::kG && gp) StoreAs<T>(d, grad(K, p_prob, sgp), k.grad_p, row, b + i, rr);
    };
    const auto run_out = [&](auto st) HWY_ATTR __attribute__((always_inline)) {
      size_t i = 0;
      for (; i + N <= n; i += N) out(i, N, st);
      if (i < n) out(i, n - i, st);
    };
    switch (stash) {
      case JsdStash::kNone: run_out(std::integral_constant<JsdStash, JsdStash::kNone>()); break;
      case JsdStash::kG: run_out(std::integral_constant<JsdStash, JsdStash::kG>()); break;
      case JsdStash::kK: run_out(std::integral_constant<JsdStash, JsdStash::kK>()); break;
      case JsdStash::kBoth: run_out(std::integral_constant<JsdStash, JsdStash::kBoth>()); break;
    }
  }
}

// The distillation case: both sides logits, forward KL, loss pass with the
// student gradient (q - p sum_p) / T and no teacher gradient, without PassT's
// per-element generality:
//   log p - log q = (t / T - x / T) + off,  off = (Mq + log Sq) - (Mp + log Sp)
// (off rounded once from double; t / T - x / T in one fused multiply-subtract
// of the rounded x / T, as the statistics pass rounds it; the same bits with
// and without the stats pass's stored exps, so for any thread count).
// kStream stays a template flag here: the store choice is made per vector in
// the inner loop, where a run-time flag cost 5 % more instructions. Which
// outputs exist (elem_loss, the gradient) and whether the exps are stored are
// flags of the inner loop (a test and branch per vector each otherwise).
HWY_INLINE float DistillOffset(const KlRow& r) {
  return static_cast<float>((static_cast<double>(r.Mq) + static_cast<double>(r.lsq)) -
                            (static_cast<double>(r.Mp) + static_cast<double>(r.lsp)));
}

// One vector of the distillation pass: the loss term p (log p - log q) and
// the gradient (e_q A - p) gs / T, from the logits x (student) and t
// (teacher) and their exps as the stats pass took them.
HWY_INLINE void DistillVec(DF d, VF x, VF t, VF e_q, VF e_p, VF it, VF off, VF vFp, VF vA, VF gscale, bool nan_row,
                           VF& term, VF& g) {
  const VF p = hn::Mul(e_p, vFp);
  const VF diff = hn::Add(hn::MulSub(t, it, hn::Mul(x, it)), off);  // log p - log q
  term = hn::IfThenZeroElse(hn::Eq(p, hn::Zero(d)), hn::Mul(p, diff));
  // As MakeTerms: NaN is never masked by p = 0.
  if (nan_row) term = hn::Set(d, std::numeric_limits<float>::quiet_NaN());
  g = hn::Mul(hn::MulSub(e_q, vA, p), gscale);
}

template <typename T, typename TG, bool kStream>
HWY_NOINLINE void PassLogitsForward(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t s0, size_t s1,
                                    const float* scratch) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const T* xq = RowPtr<T>(k.q_in.data, k.q_in.stride, row);
  const T* xp = RowPtr<T>(k.p_in.data, k.p_in.stride, row);
  TG* gq = k.grad_q.data ? RowPtrMut<TG>(k.grad_q.data, k.grad_q.stride, row) : nullptr;
  float* el = k.elem_loss.data ? RowPtrMut<float>(k.elem_loss.data, k.elem_loss.stride, row) : nullptr;
  const VF zero = hn::Zero(d), es = hn::Set(d, r.es);
  const VF it = hn::Set(d, k.inv_t);
  const VF gscale = hn::Set(d, r.gs * k.inv_t);
  const VF off = hn::Set(d, DistillOffset(r));
  const bool nan_row = r.nanq || r.nanp;
  for (size_t s = s0; s < s1; ++s) {
    const size_t b = s * kSegment, n = std::min(kSegment, k.V - b);
    KlSeg& sg = segs[s];
    const float Fq = SegFactor(sg.q, r.aq, r.Mq, r.nanq);
    const VF vFp = hn::Set(d, SegFactor(sg.p, r.ap, r.Mp, r.nanp));
    // The gradient (q psum - p) / T as e_q (Fq psum) - p, times gs / T.
    const VF vA = hn::Set(d, Fq * r.psum);
    const VF rq = hn::Set(d, SegRef(sg.q)), rp = hn::Set(d, SegRef(sg.p));
    const float* eq = scratch ? scratch + b : nullptr;
    const float* ep = scratch ? scratch + k.V + b : nullptr;
    const bool stream = kStream && gq != nullptr && PeelToAlign(gq + b, n) == 0;
    VF loss = zero;
    for (size_t cb = 0; cb < n; cb += kChunk) {
      const size_t ce = std::min(n, cb + kChunk);
      // Fetch the next row's chunk for its stats pass while this one
      // computes, in the row's head only (InRowHead).
      if (InRowHead<T>(b + cb)) {
        PrefetchWalked(xq + k.q_in.stride + b + cb, ce - cb);
        PrefetchWalked(xp + k.p_in.stride + b + cb, ce - cb);
      }
      VF closs = zero;
      // The full vectors in one loop, the segment's last partial one after
      // it: one loop for both kept every invariant and the loss sum on the
      // stack on AVX2 (a store-to-load round trip per vector on the sum).
      const auto vec = [&](size_t i, size_t rr, auto has_e, auto has_el, auto has_g) HWY_ATTR
          __attribute__((always_inline)) {
        constexpr bool kE = decltype(has_e)::value, kEl = decltype(has_el)::value, kG = decltype(has_g)::value;
        const bool full = rr == N;
        const VF x = full ? LoadF32(d, xq + b + i) : LoadTailF32(d, xq + b + i, rr, 0.0f);
        const VF t = full ? LoadF32(d, xp + b + i) : LoadTailF32(d, xp + b + i, rr, 0.0f);
        const VF zq = hn::Mul(x, it);
        VF e_q, e_p;
        if constexpr (kE) {
          e_q = full ? hn::LoadU(d, eq + i) : LoadTailF32(d, eq + i, rr, 0.0f);
          e_p = full ? hn::LoadU(d, ep + i) : LoadTailF32(d, ep + i, rr, 0.0f);
        } else {
          e_q = hn::Sub(zq, rq);
          e_p = hn::Sub(hn::Mul(t, it), rp);
          ExpNonPositive2(d, e_q, e_p);  // (the two chains side by side)
        }
        VF term, g;
        DistillVec(d, x, t, e_q, e_p, it, off, vFp, vA, gscale, nan_row, term, g);
        closs = hn::Add(closs, full ? term : hn::IfThenElseZero(hn::FirstN(d, rr), term));
        if constexpr (kEl) {
          full ? StoreF32(d, hn::Mul(term, es), el + b + i) : StoreTailF32(d, hn::Mul(term, es), el + b + i, rr);
        }
        if constexpr (kG) {
          if (!full) {
            StoreTailF32(d, g, gq + b + i, rr);
          } else if (stream) {
            StoreOut<TG, true>(d, g, gq + b + i);
          } else {
            StoreF32(d, g, gq + b + i);
          }
        }
      };
      const auto run = [&](auto has_e, auto has_el, auto has_g) HWY_ATTR __attribute__((always_inline)) {
        size_t i = cb;
        for (; i + N <= ce; i += N) vec(i, N, has_e, has_el, has_g);
        if (i < ce) vec(i, ce - i, has_e, has_el, has_g);
      };
      const auto outputs = [&](auto has_e) HWY_ATTR __attribute__((always_inline)) {
        if (gq != nullptr) {
          el != nullptr ? run(has_e, std::true_type(), std::true_type())
                        : run(has_e, std::false_type(), std::true_type());
        } else {
          el != nullptr ? run(has_e, std::true_type(), std::false_type())
                        : run(has_e, std::false_type(), std::false_type());
        }
      };
      scratch != nullptr ? outputs(std::true_type()) : outputs(std::false_type());
      loss = hn::Add(loss, closs);
    }
    sg.loss = hn::GetLane(hn::SumOfLanes(d, loss));
    sg.gq = sg.gp = 0.0f;
  }
  if (kStream) hwy::FlushStream();
}

struct KlDistillFn {
  template <typename T, class GradF32, class Stream>
  static HWY_INLINE void Run(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t s0, size_t s1,
                             const float* scratch) {
    PassLogitsForward<T, OutType<GradF32, T>, Stream::value>(k, r, segs, row, s0, s1, scratch);
  }
};
// The distillation pass of row r riding in the next row's walk of its
// student logits (see WalkStats' riders): at each column, row r's values are
// read (its exps from the scratch rows) before the walk stores the next
// row's exps of the student there; the teacher's scratch row is overwritten
// by the walk of the teacher logits after it. The same operations in the same
// order as PassLogitsForward's (the loss summed per chunk of kChunk), so the
// same bits. Sums in vector registers: not for scalable vectors, which cannot
// be struct members.
#if !HWY_HAVE_SCALABLE
template <typename T, typename TG, bool kStream, bool kShift = false>
struct DistillRider {
  const KlRow* r;
  KlSeg* segs;  // row r's
  const T* xq;  // row r's student and teacher logits
  const T* xp;
  const float* eq;  // row r's exps (scratch)
  const float* ep;
  ShiftedStores<TG, kStream, kShift> g;  // row r's gradient
  size_t V;
  bool nan_row;
  VF it, off, gscale, vA, vFp, loss, closs;
  size_t seg = 0, end = 0;  // the current segment, the column after it
  bool open = false;

  // The current segment's loss, once its columns are done.
  HWY_INLINE void Close() {
    if (open) segs[seg].loss = hn::GetLane(hn::SumOfLanes(DF(), loss));
  }
  HWY_INLINE void Seg(size_t s) {
    const DF d;
    Close();
    open = true;
    seg = s;
    end = std::min(V, (s + 1) * kSegment);
    KlSeg& sg = segs[s];
    sg.gq = sg.gp = 0.0f;
    vA = hn::Set(d, SegFactor(sg.q, r->aq, r->Mq, r->nanq) * r->psum);
    vFp = hn::Set(d, SegFactor(sg.p, r->ap, r->Mp, r->nanp));
    loss = closs = hn::Zero(d);
  }
  HWY_INLINE void Vec(DF d, size_t j, size_t rr) {
    const size_t N = hn::Lanes(d);
    const bool full = rr == N;
    const VF x = full ? LoadF32(d, xq + j) : LoadTailF32(d, xq + j, rr, 0.0f);
    const VF t = full ? LoadF32(d, xp + j) : LoadTailF32(d, xp + j, rr, 0.0f);
    const VF e_q = full ? hn::LoadU(d, eq + j) : LoadTailF32(d, eq + j, rr, 0.0f);
    const VF e_p = full ? hn::LoadU(d, ep + j) : LoadTailF32(d, ep + j, rr, 0.0f);
    VF term, gv;
    DistillVec(d, x, t, e_q, e_p, it, off, vFp, vA, gscale, nan_row, term, gv);
    closs = hn::Add(closs, full ? term : hn::IfThenElseZero(hn::FirstN(d, rr), term));
    if (full) {
      g.Put(d, gv, j);
    } else {
      g.PutLast(d, gv, j, rr);  // (the row's last columns)
    }
  }
  HWY_INLINE void ChunkEnd(DF d) {
    loss = hn::Add(loss, closs);
    closs = hn::Zero(d);
  }
  HWY_INLINE void Pair(DF d, size_t j) {
    const size_t N = hn::Lanes(d);
    Vec(d, j, N);
    Vec(d, j + N, N);
    if ((j + 2 * N) % kChunk == 0 || j + 2 * N == end) ChunkEnd(d);
  }
  // The rest of a chunk, [j0, j1).
  HWY_INLINE void Rest(size_t j0, size_t j1) {
    const DF d;
    const size_t N = hn::Lanes(d);
    size_t j = j0;
    for (; j + N <= j1; j += N) Vec(d, j, N);
    if (j < j1) Vec(d, j, j1 - j);
    ChunkEnd(d);
  }
};

struct KlFusedFn {
  template <typename T, class GradF32, class Stream>
  static HWY_INLINE void Run(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t nr, KlSeg* out,
                             float* scratch) {
    using TG = OutType<GradF32, T>;
    TG* g = RowPtrMut<TG>(k.grad_q.data, k.grad_q.stride, row);
    if constexpr (kShiftedStores && Stream::value && std::is_same<T, float>::value && std::is_same<TG, float>::value) {
      if (ShiftStreamed(g)) return RunT<T, TG, true, true>(k, r, segs, row, nr, out, scratch, g);
    }
    RunT<T, TG, Stream::value, false>(k, r, segs, row, nr, out, scratch, g);
  }
  template <typename T, typename TG, bool kStream, bool kShift>
  static HWY_INLINE void RunT(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t nr, KlSeg* out,
                              float* scratch, TG* g) {
    const DF d;
    DistillRider<T, TG, kStream, kShift> rider{&r,
                                               segs,
                                               RowPtr<T>(k.q_in.data, k.q_in.stride, row),
                                               RowPtr<T>(k.p_in.data, k.p_in.stride, row),
                                               scratch,
                                               scratch + k.V,
                                               ShiftedStores<TG, kStream, kShift>(g),
                                               k.V,
                                               r.nanq || r.nanp,
                                               hn::Set(d, k.inv_t),
                                               hn::Set(d, DistillOffset(r)),
                                               hn::Set(d, r.gs * k.inv_t),
                                               hn::Zero(d),
                                               hn::Zero(d),
                                               hn::Zero(d),
                                               hn::Zero(d)};
    const size_t nseg = NumSegments(k.V);
    for (size_t s = 0; s < nseg; ++s) out[s] = KlSeg();
    SideStats(RowPtr<T>(k.q_in.data, k.q_in.stride, nr), k.qk, k.inv_t, k.need_qsum, k.V, 0, nseg, out, true, scratch,
              rider);
    rider.Close();
    rider.g.End(k.V);
    if (kStream) hwy::FlushStream();
    SideStats(RowPtr<T>(k.p_in.data, k.p_in.stride, nr), k.pk, k.inv_t, k.need_psum, k.V, 0, nseg, out, false,
              scratch + k.V);
  }
};
#endif  // !HWY_HAVE_SCALABLE

// The distillation pass of row `row` (phase 2, its gradient) and phase 1 of
// row `nr` in one walk; false, with nothing done, where it does not apply
// (the caller runs them one after the other): other modes or inputs, an
// ignored row, no gradient or an element-wise loss asked, no scratch rows, a
// gradient row not aligned for its non-temporal stores (but on x86, where
// ShiftedStores aligns them), f32 stores to another buffer that are not
// streamed (FusedStoresOk), and scalable vectors.
template <typename T>
HWY_INLINE bool KlFusedOf(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t nr, KlSeg* out,
                          float* scratch) {
#if HWY_HAVE_SCALABLE
  (void)k, (void)r, (void)segs, (void)row, (void)nr, (void)out, (void)scratch;
  return false;
#else
  if (k.qk != DistKind::kLogits || k.pk != DistKind::kLogits || k.mode != KlMode::kForward) return false;
  if (k.grad_q.data == nullptr || k.grad_p.data != nullptr || k.elem_loss.data != nullptr) return false;
  if (r.ignored || scratch == nullptr || k.V > kLocalSegments * kSegment) return false;
  if (!FusedStoresOk(k.grad_q, row, k.stream, k.grad_q.data == k.q_in.data, k.q_in.dtype == DType::kF32)) return false;
  const bool f32 = k.grad_q.dtype == DType::kF32;
  VisitFixed<KlFusedFn, T>(Choose(Flag{f32}, Flag{k.stream}), k, r, segs, row, nr, out, scratch);
  return true;
#endif
}

template <typename T>
HWY_INLINE void KlPassOf(const KlKernel& k, const KlRow& r, KlSeg* segs, size_t row, size_t s0, size_t s1,
                         float* scratch, bool middle) {
  const bool distill = middle && k.qk == DistKind::kLogits && k.pk == DistKind::kLogits && k.mode == KlMode::kForward &&
                       k.grad_p.data == nullptr && !r.ignored;
  if (distill) {
    const bool f32g = k.grad_q.data == nullptr || k.grad_q.dtype == DType::kF32;
    return VisitFixed<KlDistillFn, T>(Choose(Flag{f32g}, Flag{k.stream}), k, r, segs, row, s0, s1, scratch);
  }
  if (!r.ignored && k.qk == DistKind::kLogits && k.pk == DistKind::kLogits && k.mode == KlMode::kMix) {
    return PassJsd<T>(k, r, segs, row, s0, s1, scratch, middle);
  }
  // Input log-probabilities (torch.nn.functional.kl_div's input, Liger's
  // JSD's sides), the target's probabilities or log-probabilities, each mode:
  // the kinds and mode fixed at compile time.
  if (k.qk == DistKind::kLogProbs && k.pk != DistKind::kLogits) {
    const bool lp = k.pk == DistKind::kLogProbs;
    constexpr int kL = static_cast<int>(DistKind::kLogProbs), kP = static_cast<int>(DistKind::kProbs);
    switch (k.mode) {
      case KlMode::kForward:
        return lp ? PassT<T, kL, kL, 0>(k, r, segs, row, s0, s1, scratch, middle)
                  : PassT<T, kL, kP, 0>(k, r, segs, row, s0, s1, scratch, middle);
      case KlMode::kReverse:
        return lp ? PassT<T, kL, kL, 1>(k, r, segs, row, s0, s1, scratch, middle)
                  : PassT<T, kL, kP, 1>(k, r, segs, row, s0, s1, scratch, middle);
      case KlMode::kMix:
        return lp ? PassT<T, kL, kL, 2>(k, r, segs, row, s0, s1, scratch, middle)
                  : PassT<T, kL, kP, 2>(k, r, segs, row, s0, s1, scratch, middle);
    }
  }
  PassT<T>(k, r, segs, row, s0, s1, scratch, middle);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace xent
HWY_AFTER_NAMESPACE();

#endif  // XENT_SRC_KL_INL_H_
