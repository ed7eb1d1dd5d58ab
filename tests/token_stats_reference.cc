#include "tests/token_stats_reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace xent_ref {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// z = softcap(x) / T of one row.
std::vector<double> ZRow(const TokSpec& s, const double* x) {
  std::vector<double> z(s.V);
  for (size_t c = 0; c < s.V; ++c) {
    double v = x[c];
    if (s.softcap > 0) v = s.softcap * std::tanh(v / s.softcap);
    z[c] = v / s.temperature;
  }
  return z;
}

// log sum exp, -inf for an all -inf row, NaN with a NaN or +inf.
double Lse(const std::vector<double>& z) {
  double m = -kInf;
  for (double v : z) {
    if (std::isnan(v) || v == kInf) return kNaN;
    m = std::max(m, v);
  }
  if (m == -kInf) return -kInf;
  double sum = 0;
  for (double v : z) sum += std::exp(v - m);
  return m + std::log(sum);
}

// log p of a row; NaN everywhere when the softmax is undefined.
std::vector<double> LogP(const std::vector<double>& z, double lse) {
  std::vector<double> lp(z.size());
  const bool bad = std::isnan(lse) || lse == -kInf;
  for (size_t c = 0; c < z.size(); ++c) lp[c] = bad ? kNaN : z[c] - lse;
  return lp;
}

double Entropy(const std::vector<double>& lp) {
  double h = 0;
  for (double l : lp) {
    if (std::isnan(l)) return kNaN;
    const double p = std::exp(l);
    if (p > 0) h -= p * l;
  }
  return h;
}

double Kl(const std::vector<double>& lp, const std::vector<double>& lq) {
  double kl = 0;
  for (size_t c = 0; c < lp.size(); ++c) {
    if (std::isnan(lp[c]) || std::isnan(lq[c])) return kNaN;
    const double p = std::exp(lp[c]);
    if (p > 0) kl += p * (lp[c] - lq[c]);
  }
  return kl;
}

struct Row {
  std::vector<double> z, lp, zq, lq;
  double lse = 0, h = 0, lse_q = 0, kl = 0;
};

Row RowStats(const TokSpec& s, size_t i) {
  Row r;
  r.z = ZRow(s, &s.x[i * s.V]);
  r.lse = Lse(r.z);
  r.lp = LogP(r.z, r.lse);
  r.h = Entropy(r.lp);
  if (!s.ref.empty()) {
    r.zq = ZRow(s, &s.ref[i * s.V]);
    r.lse_q = Lse(r.zq);
    r.lq = LogP(r.zq, r.lse_q);
    r.kl = Kl(r.lp, r.lq);
  }
  return r;
}

bool Ignored(const TokSpec& s, size_t i) { return s.y.empty() || s.y[i] == s.ignore_index; }

}  // namespace

TokOut TokenStats(const TokSpec& s) {
  const size_t B = s.B, V = s.V, K = s.k;
  TokOut o;
  o.lse.resize(B);
  o.entropy.resize(B);
  o.logprob.resize(B);
  o.argmax.resize(B);
  o.argmax_logprob.resize(B);
  o.topk_indices.resize(B * K);
  o.topk_logprobs.resize(B * K);
  o.topk_mass.resize(B);
  o.ref_lse.resize(B);
  o.ref_logprob.resize(B);
  o.kl.resize(B);
  o.logp.resize(B * V);
  for (size_t i = 0; i < B; ++i) {
    const Row r = RowStats(s, i);
    o.lse[i] = r.lse;
    o.entropy[i] = r.h;
    std::copy(r.lp.begin(), r.lp.end(), o.logp.begin() + static_cast<long>(i * V));
    o.logprob[i] = Ignored(s, i) ? 0.0 : r.lp[static_cast<size_t>(s.y[i])];
    // Order: logits as given, largest first, ties by index (stable).
    std::vector<size_t> order(V);
    std::iota(order.begin(), order.end(), size_t{0});
    const double* x = &s.x[i * V];
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] > x[b]; });
    o.argmax[i] = static_cast<int64_t>(order[0]);
    o.argmax_logprob[i] = r.lp[order[0]];
    double mass = 0;
    for (size_t j = 0; j < K; ++j) {
      o.topk_indices[i * K + j] = static_cast<int64_t>(order[j]);
      o.topk_logprobs[i * K + j] = r.lp[order[j]];
      mass += std::exp(r.lp[order[j]]);
    }
    o.topk_mass[i] = mass;
    if (!s.ref.empty()) {
      o.ref_lse[i] = r.lse_q;
      o.ref_logprob[i] = Ignored(s, i) ? 0.0 : r.lq[static_cast<size_t>(s.y[i])];
      o.kl[i] = r.kl;
    }
  }
  return o;
}

namespace {
double At(const std::vector<double>& v, size_t i) { return v.empty() ? 0.0 : v[i]; }
}  // namespace

double TokenObjective(const TokSpec& s, const TokGradSpec& g) {
  double total = 0;
  for (size_t i = 0; i < s.B; ++i) {
    const Row r = RowStats(s, i);
    double t = 0;
    if (At(g.g_lp, i) != 0 && !Ignored(s, i)) t += g.g_lp[i] * r.lp[static_cast<size_t>(s.y[i])];
    if (At(g.g_h, i) != 0) t += g.g_h[i] * r.h;
    for (size_t j = 0; j < g.k; ++j) {
      if (g.g_k[i * g.k + j] != 0) t += g.g_k[i * g.k + j] * r.lp[static_cast<size_t>(g.idx[i * g.k + j])];
    }
    if (At(g.g_kl, i) != 0) t += g.g_kl[i] * r.kl;
    total += t;
  }
  return total;
}

std::vector<double> TokenObjectiveGrad(const TokSpec& s, const TokGradSpec& g) {
  const size_t V = s.V;
  std::vector<double> out(s.B * V, 0.0);
  for (size_t i = 0; i < s.B; ++i) {
    const double glp = Ignored(s, i) ? 0.0 : At(g.g_lp, i), gh = At(g.g_h, i), gkl = At(g.g_kl, i);
    std::vector<double> delta(V, 0.0);
    double G = 0;
    if (glp != 0) {
      delta[static_cast<size_t>(s.y[i])] += glp;
      G += glp;
    }
    for (size_t j = 0; j < g.k; ++j) {
      const double w = g.g_k[i * g.k + j];
      delta[static_cast<size_t>(g.idx[i * g.k + j])] += w;
      G += w;
    }
    bool any = gh != 0 || gkl != 0;
    for (double d : delta) any = any || d != 0;
    if (!any) continue;  // a zero row: exactly zero
    const Row r = RowStats(s, i);
    const double* x = &s.x[i * V];
    for (size_t c = 0; c < V; ++c) {
      const double p = std::exp(r.lp[c]);
      double dz = delta[c];
      if (p != 0 || std::isnan(p)) {
        double t = -G;
        if (gh != 0) t -= gh * (r.lp[c] + r.h);
        if (gkl != 0) t += gkl * (r.lp[c] - r.lq[c] - r.kl);
        dz += p * t;
      }
      double slope = 1.0 / s.temperature;
      if (s.softcap > 0) {
        const double th = std::tanh(x[c] / s.softcap);
        slope *= 1 - th * th;
      }
      out[i * V + c] = dz * slope;
    }
  }
  return out;
}

KlPenaltyOut KlPenalty(double logp, double ref, int kind, double ratio_clamp, double value_clamp,
                       bool straight_through) {
  const double d = logp - ref;
  double r = -d;
  bool active = false;
  if (ratio_clamp > 0 && (r > ratio_clamp || r < -ratio_clamp)) {
    active = true;
    r = r > 0 ? ratio_clamp : -ratio_clamp;
  }
  KlPenaltyOut o;
  switch (kind) {
    case 0:
      o.value = -r;
      o.grad = 1;
      break;
    case 1:
      o.value = 0.5 * r * r;
      o.grad = -r;
      break;
    case 2:
      o.value = std::exp(r) - r - 1;
      o.grad = 1 - std::exp(r);
      break;
    default:
      o.value = std::fabs(r);
      o.grad = r > 0 ? -1 : (r < 0 ? 1 : 0);
      break;
  }
  if (value_clamp > 0 && (o.value > value_clamp || o.value < -value_clamp)) {
    active = true;
    o.value = o.value > 0 ? value_clamp : -value_clamp;
  }
  if (active) o.grad = 0;
  if (straight_through) o.grad = d;
  return o;
}

}  // namespace xent_ref
