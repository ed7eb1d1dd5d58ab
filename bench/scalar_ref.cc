// Scalar C++ reference peer; see scalar_ref.h.
#include "scalar_ref.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace xent_bench {
namespace {

inline float Load(const float* p, size_t i) { return p[i]; }
inline float Load(const uint16_t* p, size_t i) {
  const uint32_t u = static_cast<uint32_t>(p[i]) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline void Store(float* p, size_t i, float v) { p[i] = v; }
inline void Store(uint16_t* p, size_t i, float v) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  p[i] = static_cast<uint16_t>(u >> 16);
}

// Per-thread f32 row buffers (grown once, reused).
float* RowBuf(size_t which, size_t n) {
  thread_local std::vector<float> buf[2];
  if (buf[which].size() < n) buf[which].resize(n);
  return buf[which].data();
}

int Threads(int t) {
#ifdef _OPENMP
  return t > 0 ? t : omp_get_max_threads();
#else
  (void)t;
  return 1;
#endif
}

// Runs f(row) for every row, split over threads; sums the returned doubles in
// row order per thread (the order does not matter for a benchmark).
template <class F>
double ForRows(const RefProblem& p, F&& f) {
  double total = 0.0;
  const long long B = static_cast<long long>(p.B);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) reduction(+ : total) num_threads(Threads(p.threads))
#endif
  for (long long i = 0; i < B; ++i) total += f(static_cast<size_t>(i));
  return total;
}

// e[c] = exp(x[c] - max) for a row, their sum, and the row's lse.
struct ExpStats {
  float sum, lse;
};
// Sums are accumulated in double (a careful programmer's choice for rows of
// 10^5 terms; the scalar add chain costs the same latency as in float).
template <class T>
ExpStats ExpRow(const T* x, size_t V, float* e) {
  float m = -std::numeric_limits<float>::infinity();
  for (size_t c = 0; c < V; ++c) m = std::fmax(m, Load(x, c));
  double s = 0.0;
  for (size_t c = 0; c < V; ++c) {
    e[c] = std::exp(Load(x, c) - m);
    s += e[c];
  }
  return {static_cast<float>(s), m + static_cast<float>(std::log(s))};
}

// Row i of a B x V buffer.
template <class T>
T* Row(const void* base, size_t i, size_t V) {
  return const_cast<T*>(static_cast<const T*>(base)) + i * V;
}

// log sum exp of a row (max, then the sum of exps; nothing stored).
template <class T>
double Lse(const T* r, size_t V) {
  float m = -std::numeric_limits<float>::infinity();
  for (size_t c = 0; c < V; ++c) m = std::fmax(m, Load(r, c));
  double s = 0.0;
  for (size_t c = 0; c < V; ++c) s += std::exp(Load(r, c) - m);
  return m + std::log(s);
}

template <class T>
double CeFwd(const RefProblem& p) {
  const double sum = ForRows(p, [&](size_t i) {
    const T* r = Row<const T>(p.x, i, p.V);
    return Lse(r, p.V) - Load(r, static_cast<size_t>(p.labels[i]));
  });
  return sum / static_cast<double>(p.B);
}

template <class T>
double CeFwdGrad(const RefProblem& p) {
  const float scale = 1.0f / static_cast<float>(p.B);
  const double sum = ForRows(p, [&](size_t i) {
    const T* r = Row<const T>(p.x, i, p.V);
    T* gr = Row<T>(p.out, i, p.V);
    float* e = RowBuf(0, p.V);
    const size_t y = static_cast<size_t>(p.labels[i]);
    const float xy = Load(r, y);  // before an in-place gradient overwrites it
    const ExpStats st = ExpRow(r, p.V, e);
    const float k = scale / st.sum;  // softmax = e / sum, times the mean's 1/B
    for (size_t c = 0; c < p.V; ++c) Store(gr, c, e[c] * k);
    Store(gr, y, e[y] * k - scale);
    return static_cast<double>(st.lse - xy);
  });
  return sum / static_cast<double>(p.B);
}

// Cross-entropy of z = cap tanh(x / cap) (Gemma 2's logit softcap): z in
// one row buffer, the exps in the other; the gradient is the softmax's times
// dz/dx = 1 - (z / cap)^2.
template <class T>
double CeSoftcapFwdGrad(const RefProblem& p, float cap) {
  const float scale = 1.0f / static_cast<float>(p.B), inv = 1.0f / cap;
  const double sum = ForRows(p, [&](size_t i) {
    const T* r = Row<const T>(p.x, i, p.V);
    T* gr = Row<T>(p.out, i, p.V);
    float* z = RowBuf(0, p.V);
    float* e = RowBuf(1, p.V);
    for (size_t c = 0; c < p.V; ++c) z[c] = cap * std::tanh(Load(r, c) * inv);
    const ExpStats st = ExpRow(z, p.V, e);
    const size_t y = static_cast<size_t>(p.labels[i]);
    const float k = scale / st.sum;
    for (size_t c = 0; c < p.V; ++c) {
      const float t = z[c] * inv;
      Store(gr, c, (e[c] * k - (c == y ? scale : 0.0f)) * (1.0f - t * t));
    }
    return static_cast<double>(st.lse - z[y]);
  });
  return sum / static_cast<double>(p.B);
}

// Row i of a student (x) and teacher (t) logit batch and the gradient, with
// both sides' exps in the two row buffers (eq: student, ep: teacher).
template <class T>
struct TwoSides {
  const T* s;
  const T* t;
  T* gr;
  float *eq, *ep;
  float lq, lp, iq, ip;  // log-sum-exps and inverse sums
  TwoSides(const RefProblem& p, size_t i)
      : s(Row<const T>(p.x, i, p.V)),
        t(Row<const T>(p.t, i, p.V)),
        gr(Row<T>(p.out, i, p.V)),
        eq(RowBuf(0, p.V)),
        ep(RowBuf(1, p.V)) {
    const ExpStats stq = ExpRow(s, p.V, eq), stp = ExpRow(t, p.V, ep);
    lq = stq.lse;
    lp = stp.lse;
    iq = 1.0f / stq.sum;
    ip = 1.0f / stp.sum;
  }
};

template <class T>
double KlFwdGrad(const RefProblem& p) {
  const float scale = 1.0f / static_cast<float>(p.B);
  const double sum = ForRows(p, [&](size_t i) {
    const TwoSides<T> r(p, i);
    const T *s = r.s, *t = r.t;
    T* gr = r.gr;
    const float *eq = r.eq, *ep = r.ep, lq = r.lq, lp = r.lp, iq = r.iq, ip = r.ip;
    double kl = 0.0;
    for (size_t c = 0; c < p.V; ++c) {
      const float q = eq[c] * iq, pp = ep[c] * ip;
      // p (log p - log q) = p ((t - lp) - (s - lq)); 0 log 0 = 0.
      const float term = pp > 0.0f ? pp * ((Load(t, c) - lp) - (Load(s, c) - lq)) : 0.0f;
      kl += term;
      Store(gr, c, (q - pp) * scale);
    }
    return kl;
  });
  return sum / static_cast<double>(p.B);
}

template <class T>
double JsdFwdGrad(const RefProblem& p) {
  const float beta = p.beta, scale = 1.0f / static_cast<float>(p.B);
  const double sum = ForRows(p, [&](size_t i) {
    const TwoSides<T> r(p, i);
    const T *s = r.s, *t = r.t;
    T* gr = r.gr;
    float *eq = r.eq, *ep = r.ep;
    const float lq = r.lq, lp = r.lp, iq = r.iq, ip = r.ip;
    // loss = beta KL(P||M) + (1-beta) KL(Q||M); dL/dq_c = (1-beta) log(q_c/m_c),
    // then through softmax: q_c (d_c - sum q d). eq[c] <- d_c.
    double loss = 0.0;
    double qd = 0.0;
    for (size_t c = 0; c < p.V; ++c) {
      const float q = eq[c] * iq, pp = ep[c] * ip;
      const float logq = Load(s, c) - lq, logp = Load(t, c) - lp;
      const float m = beta * pp + (1.0f - beta) * q;
      const float logm = std::log(m);
      float term = 0.0f;
      if (pp > 0.0f) term += beta * pp * (logp - logm);
      if (q > 0.0f) term += (1.0f - beta) * q * (logq - logm);
      loss += term;
      const float d = q > 0.0f ? (1.0f - beta) * (logq - logm) : 0.0f;
      eq[c] = q;
      ep[c] = d;
      qd += q * d;
    }
    for (size_t c = 0; c < p.V; ++c) Store(gr, c, eq[c] * (ep[c] - static_cast<float>(qd)) * scale);
    return loss;
  });
  return sum / static_cast<double>(p.B);
}

// torch.nn.functional.kl_div(x, t, reduction='batchmean'): x log-probs, t
// probabilities; 0 log 0 = 0; the gradient -t / B.
template <class T>
double KlDivFwdGrad(const RefProblem& p) {
  const float scale = 1.0f / static_cast<float>(p.B);
  const double sum = ForRows(p, [&](size_t i) {
    const T* x = Row<const T>(p.x, i, p.V);
    const T* t = Row<const T>(p.t, i, p.V);
    T* gr = Row<T>(p.out, i, p.V);
    double kl = 0.0;
    for (size_t c = 0; c < p.V; ++c) {
      const float tc = Load(t, c);
      kl += tc > 0.0f ? tc * (std::log(tc) - Load(x, c)) : 0.0f;
      Store(gr, c, -tc * scale);
    }
    return kl;
  });
  return sum / static_cast<double>(p.B);
}

template <class T>
double TokenLogprobs(const RefProblem& p) {
  ForRows(p, [&](size_t i) {
    const T* r = Row<const T>(p.x, i, p.V);
    p.row_out[i] = static_cast<float>(Load(r, static_cast<size_t>(p.labels[i])) - Lse(r, p.V));
    return 0.0;
  });
  return 0.0;
}

template <class T>
double Softmax(const RefProblem& p) {
  ForRows(p, [&](size_t i) {
    float* e = RowBuf(0, p.V);
    const float k = 1.0f / ExpRow(Row<const T>(p.x, i, p.V), p.V, e).sum;
    T* orow = Row<T>(p.out, i, p.V);
    for (size_t c = 0; c < p.V; ++c) Store(orow, c, e[c] * k);
    return 0.0;
  });
  return 0.0;
}

template <class T>
double SoftmaxBackward(const RefProblem& p) {
  ForRows(p, [&](size_t i) {
    const T* yr = Row<const T>(p.x, i, p.V);
    const T* gr = Row<const T>(p.t, i, p.V);
    T* o = Row<T>(p.out, i, p.V);
    double dot = 0.0;
    for (size_t c = 0; c < p.V; ++c) dot += Load(gr, c) * Load(yr, c);
    const float d = static_cast<float>(dot);
    for (size_t c = 0; c < p.V; ++c) Store(o, c, Load(yr, c) * (Load(gr, c) - d));
    return 0.0;
  });
  return 0.0;
}

template <class T>
double BceFwdGrad(const RefProblem& p) {
  const float scale = 1.0f / (static_cast<float>(p.B) * static_cast<float>(p.V));
  const double sum = ForRows(p, [&](size_t i) {
    const T* r = Row<const T>(p.x, i, p.V);
    const T* tr = Row<const T>(p.t, i, p.V);
    T* gr = Row<T>(p.out, i, p.V);
    double acc = 0.0;
    for (size_t c = 0; c < p.V; ++c) {
      const float v = Load(r, c), y = Load(tr, c);
      const float e = std::exp(-std::fabs(v));  // in (0, 1]
      acc += std::fmax(v, 0.0f) - v * y + std::log1p(e);
      const float sig = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
      Store(gr, c, (sig - y) * scale);
    }
    return acc;
  });
  return sum * static_cast<double>(scale);
}

}  // namespace

#define XENT_BENCH_DISPATCH(Fn) return p.dt == Dt::kF32 ? Fn<float>(p) : Fn<uint16_t>(p)

double RefCeFwd(const RefProblem& p) { XENT_BENCH_DISPATCH(CeFwd); }
double RefCeFwdGrad(const RefProblem& p) { XENT_BENCH_DISPATCH(CeFwdGrad); }
double RefCeSoftcapFwdGrad(const RefProblem& p, float cap) {
  return p.dt == Dt::kF32 ? CeSoftcapFwdGrad<float>(p, cap) : CeSoftcapFwdGrad<uint16_t>(p, cap);
}
double RefKlFwdGrad(const RefProblem& p) { XENT_BENCH_DISPATCH(KlFwdGrad); }
double RefJsdFwdGrad(const RefProblem& p) { XENT_BENCH_DISPATCH(JsdFwdGrad); }
double RefKlDivFwdGrad(const RefProblem& p) { XENT_BENCH_DISPATCH(KlDivFwdGrad); }
double RefTokenLogprobs(const RefProblem& p) { XENT_BENCH_DISPATCH(TokenLogprobs); }
double RefSoftmax(const RefProblem& p) { XENT_BENCH_DISPATCH(Softmax); }
double RefSoftmaxBackward(const RefProblem& p) { XENT_BENCH_DISPATCH(SoftmaxBackward); }
double RefBceFwdGrad(const RefProblem& p) { XENT_BENCH_DISPATCH(BceFwdGrad); }

bool RefHasOpenMP() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace xent_bench
