#include "tests/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace xent_ref {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

double LogSumExp(const double* x, size_t n) {
  double m = -kInf;
  bool nan = false;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) nan = true;
    m = std::max(m, x[i]);
  }
  if (nan) return kNaN;
  if (m == -kInf) return -kInf;
  if (m == kInf) return kNaN;  // inf - inf: undefined, as PyTorch
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += std::exp(x[i] - m);
  return m + std::log(s);
}

CeOut CrossEntropy(const CeSpec& s) {
  const size_t B = s.B, V = s.V;
  CeOut o;
  o.row_loss.assign(B, 0.0);
  o.lse.assign(B, 0.0);
  o.grad.assign(B * V, 0.0);
  std::vector<double> z(V), p(V), dz(V);
  double divisor = 0.0;
  auto w = [&](size_t c) { return s.weight.empty() ? 1.0 : s.weight[c]; };
  for (size_t i = 0; i < B; ++i) {
    if (s.soft) {
      divisor += 1.0;
    } else if (s.y[i] != s.ignore_index) {
      divisor += w(static_cast<size_t>(s.y[i]));
    }
  }
  const double div = s.reduction == 1 ? divisor : 1.0;
  for (size_t i = 0; i < B; ++i) {
    for (size_t c = 0; c < V; ++c) {
      const double x = s.x[i * V + c];
      z[c] = s.softcap > 0 ? s.softcap * std::tanh(x / s.softcap) : x;
    }
    const double lse = LogSumExp(z.data(), V);
    o.lse[i] = lse;
    const bool ignored = !s.soft && s.y[i] == s.ignore_index;
    if (ignored) continue;
    // p = exp(z - m) / sum exp(z - m): exact even when lse loses log(sum)
    // to rounding (|z| ~ 1e30).
    double m = -kInf;
    for (size_t c = 0; c < V; ++c) m = std::max(m, z[c]);
    double sum = 0;
    for (size_t c = 0; c < V; ++c) sum += std::exp(z[c] - m);
    if (std::isnan(lse)) m = kNaN;
    for (size_t c = 0; c < V; ++c) p[c] = std::exp(z[c] - m) / sum;
    const double logs = std::log(sum);  // lse - m
    double loss = 0.0;
    std::fill(dz.begin(), dz.end(), 0.0);
    if (s.soft) {
      for (size_t c = 0; c < V; ++c) {
        const double a = w(c) * ((1 - s.eps) * s.q[i * V + c] + s.eps / V);
        if (a != 0) loss += a * ((m - z[c]) + logs);
      }
      // A row without a finite lse (NaN, +inf, all -inf) is NaN even where
      // every target probability is 0 (the header; PyTorch: 0 * NaN).
      if (!std::isfinite(lse)) loss = kNaN;
      double A = 0;
      for (size_t c = 0; c < V; ++c) A += w(c) * ((1 - s.eps) * s.q[i * V + c] + s.eps / V);
      for (size_t c = 0; c < V; ++c) dz[c] = A * p[c] - w(c) * ((1 - s.eps) * s.q[i * V + c] + s.eps / V);
    } else {
      const size_t y = static_cast<size_t>(s.y[i]);
      loss = (1 - s.eps) * w(y) * ((m - z[y]) + logs);
      for (size_t c = 0; c < V; ++c) dz[c] = (1 - s.eps) * w(y) * (p[c] - (c == y ? 1.0 : 0.0));
      if (s.eps > 0) {
        double sm = 0, W = 0;
        for (size_t c = 0; c < V; ++c) {
          sm += w(c) * ((m - z[c]) + logs);
          W += w(c);
        }
        loss += s.eps / V * sm;
        for (size_t c = 0; c < V; ++c) dz[c] += s.eps / V * (W * p[c] - w(c));
      }
    }
    if (s.z_loss > 0) {
      loss += s.z_loss * lse * lse;
      for (size_t c = 0; c < V; ++c) dz[c] += 2 * s.z_loss * lse * p[c];
    }
    o.row_loss[i] = loss;
    const double g = s.grad_scale / div * (s.row_scale.empty() ? 1.0 : s.row_scale[i]);
    for (size_t c = 0; c < V; ++c) {
      double d = dz[c] * g;
      if (s.softcap > 0) {
        const double t = z[c] / s.softcap;
        d *= 1 - t * t;
      }
      o.grad[i * V + c] = d;
    }
  }
  double sum = 0;
  for (size_t i = 0; i < B; ++i) sum += o.row_loss[i];
  o.loss = s.reduction == 1 ? sum / divisor : sum;
  return o;
}

SoftmaxOut Softmax(const std::vector<double>& x, size_t B, size_t V, double temperature, double softcap) {
  SoftmaxOut o;
  o.probs.assign(B * V, 0);
  o.log_probs.assign(B * V, 0);
  o.lse.assign(B, 0);
  o.entropy.assign(B, 0);
  std::vector<double> z(V);
  for (size_t i = 0; i < B; ++i) {
    for (size_t c = 0; c < V; ++c) {
      double v = x[i * V + c];
      if (softcap > 0) v = softcap * std::tanh(v / softcap);
      z[c] = v / temperature;
    }
    const double lse = LogSumExp(z.data(), V);
    o.lse[i] = lse;
    double m = -kInf;
    for (size_t c = 0; c < V; ++c) m = std::max(m, z[c]);
    double sum = 0;
    for (size_t c = 0; c < V; ++c) sum += std::exp(z[c] - m);
    if (std::isnan(lse)) m = kNaN;
    double h = 0;
    for (size_t c = 0; c < V; ++c) {
      const double p = std::exp(z[c] - m) / sum;
      const double lp = (z[c] - m) - std::log(sum);
      o.probs[i * V + c] = p;
      o.log_probs[i * V + c] = lp;
      if (p > 0 || std::isnan(p)) h -= p * lp;
    }
    o.entropy[i] = (std::isnan(lse) || lse == -kInf) ? kNaN : h;
  }
  return o;
}

std::vector<double> TokenLogprobs(const std::vector<double>& x, const std::vector<int64_t>& y, size_t B, size_t V,
                                  double temperature, double softcap, int64_t ignore_index) {
  const SoftmaxOut s = Softmax(x, B, V, temperature, softcap);
  std::vector<double> r(B, 0.0);
  for (size_t i = 0; i < B; ++i) {
    if (y[i] == ignore_index) continue;
    r[i] = s.log_probs[i * V + static_cast<size_t>(y[i])];
  }
  return r;
}

std::vector<double> SoftmaxBackward(const std::vector<double>& y, const std::vector<double>& g, size_t B, size_t V,
                                    bool log, double temperature) {
  std::vector<double> r(B * V);
  for (size_t i = 0; i < B; ++i) {
    double dot = 0;
    for (size_t c = 0; c < V; ++c) dot += log ? g[i * V + c] : g[i * V + c] * y[i * V + c];
    for (size_t c = 0; c < V; ++c) {
      const double yy = y[i * V + c], gg = g[i * V + c];
      r[i * V + c] = (log ? gg - std::exp(yy) * dot : yy * (gg - dot)) / temperature;
    }
  }
  return r;
}

namespace {

// log-probabilities and probabilities of one side.
void SideValues(const double* v, size_t V, int kind, double T, std::vector<double>& lp, std::vector<double>& pr) {
  lp.resize(V);
  pr.resize(V);
  if (kind == 0) {
    std::vector<double> z(V);
    for (size_t c = 0; c < V; ++c) z[c] = v[c] / T;
    double m = -kInf;
    bool nan = false;
    for (size_t c = 0; c < V; ++c) {
      m = std::max(m, z[c]);
      nan |= std::isnan(z[c]);
    }
    double sum = 0;
    for (size_t c = 0; c < V; ++c) sum += std::exp(z[c] - m);
    for (size_t c = 0; c < V; ++c) {
      lp[c] = (nan || m == kInf || m == -kInf) ? kNaN : (z[c] - m) - std::log(sum);
      pr[c] = (nan || m == kInf || m == -kInf) ? kNaN : std::exp(z[c] - m) / sum;
    }
  } else if (kind == 1) {
    for (size_t c = 0; c < V; ++c) {
      lp[c] = v[c];
      pr[c] = std::exp(v[c]);
    }
  } else {
    for (size_t c = 0; c < V; ++c) {
      pr[c] = v[c];
      lp[c] = v[c] == 0 ? -kInf : (v[c] < 0 ? kNaN : std::log(v[c]));
    }
  }
}

int Mode(const KlSpec& s) { return (!s.jsd || s.beta == 0) ? 0 : (s.beta == 1 ? 1 : 2); }

// Elementwise terms; xlogy convention 0 log 0 = 0 (also against -inf).
double Term(int mode, double beta, double p, double lp, double q, double lq) {
  if (std::isnan(lp) || std::isnan(lq)) return kNaN;  // NaN anywhere: NaN, never masked
  auto xl = [](double a, double diff) { return a == 0 ? 0.0 : a * diff; };
  if (mode == 0) return xl(p, lp - lq);
  if (mode == 1) return xl(q, lq - lp);
  const double m = beta * p + (1 - beta) * q;
  const double lm = m == 0 ? -kInf : std::log(m);
  return xl(beta * p, lp - lm) + xl((1 - beta) * q, lq - lm);
}

}  // namespace

double DivergenceRowLoss(const KlSpec& s, const double* x, const double* t) {
  std::vector<double> lq, q, lp, p;
  SideValues(x, s.V, s.qk, s.temperature, lq, q);
  SideValues(t, s.V, s.pk, s.temperature, lp, p);
  double loss = 0;
  for (size_t c = 0; c < s.V; ++c) loss += Term(Mode(s), s.beta, p[c], lp[c], q[c], lq[c]);
  return loss * (s.t2 ? s.temperature * s.temperature : 1.0);
}

KlOut Divergence(const KlSpec& s) {
  const size_t B = s.B, V = s.V;
  KlOut o;
  o.row_loss.assign(B, 0);
  o.elem.assign(B * V, 0);
  o.gx.assign(B * V, 0);
  o.gt.assign(B * V, 0);
  const int mode = Mode(s);
  const double t2 = s.t2 ? s.temperature * s.temperature : 1.0;
  size_t rows = 0;
  for (size_t i = 0; i < B; ++i) rows += (!s.labels.empty() && s.labels[i] == s.ignore_index) ? 0 : 1;
  double div = 1;
  if (s.reduction == 1) div = double(rows) * V;
  if (s.reduction == 3) div = double(rows);
  const double gsc = s.grad_scale * t2 / div;
  std::vector<double> lq, q, lp, p, G(V), K(V);
  for (size_t i = 0; i < B; ++i) {
    if (!s.labels.empty() && s.labels[i] == s.ignore_index) continue;
    SideValues(&s.x[i * V], V, s.qk, s.temperature, lq, q);
    SideValues(&s.t[i * V], V, s.pk, s.temperature, lp, p);
    double loss = 0, sG = 0, sK = 0;
    for (size_t c = 0; c < V; ++c) {
      const double term = Term(mode, s.beta, p[c], lp[c], q[c], lq[c]);
      o.elem[i * V + c] = term * t2;
      loss += term;
      // dL/dlog q and dL/dlog p.
      if (mode == 0) {
        G[c] = -p[c];
        K[c] = p[c] == 0 ? 0 : p[c] * (lp[c] - lq[c] + 1);
      } else if (mode == 1) {
        G[c] = q[c] == 0 ? 0 : q[c] * (lq[c] - lp[c] + 1);
        K[c] = -q[c];
      } else {
        const double m = s.beta * p[c] + (1 - s.beta) * q[c];
        const double lm = m == 0 ? -kInf : std::log(m);
        G[c] = q[c] == 0 ? 0 : (1 - s.beta) * q[c] * (lq[c] - lm);
        K[c] = p[c] == 0 ? 0 : s.beta * p[c] * (lp[c] - lm);
      }
      sG += G[c];
      sK += K[c];
    }
    o.row_loss[i] = loss * t2;
    for (size_t c = 0; c < V; ++c) {
      auto side = [&](int kind, double Gc, double sum, double prob, double raw) {
        if (kind == 0) return (Gc - prob * sum) / s.temperature;
        if (kind == 1) return Gc;
        return Gc == 0 ? 0.0 : Gc / raw;  // dL/dp = (dL/dlog p) / p
      };
      o.gx[i * V + c] = side(s.qk, G[c], sG, q[c], s.x[i * V + c]) * gsc;
      o.gt[i * V + c] = side(s.pk, K[c], sK, p[c], s.t[i * V + c]) * gsc;
    }
  }
  double sum = 0;
  for (double r : o.row_loss) sum += r;
  o.loss = sum / div;
  return o;
}

BceOut Bce(const std::vector<double>& x, const std::vector<double>& y, size_t B, size_t V,
           const std::vector<double>& weight, const std::vector<double>& pos_weight, int reduction, double grad_scale) {
  BceOut o;
  o.elem.assign(B * V, 0);
  o.grad.assign(B * V, 0);
  o.row_loss.assign(B, 0);
  double div = 1;
  if (reduction == 1) div = double(B) * V;
  if (reduction == 3) div = double(B);
  double total = 0;
  for (size_t i = 0; i < B; ++i) {
    for (size_t c = 0; c < V; ++c) {
      const size_t k = i * V + c;
      const double xv = x[k], yv = y[k];
      const double pw = pos_weight.empty() ? 1.0 : pos_weight[c];
      const double w = weight.empty() ? 1.0 : weight[k];
      const double lw = 1 + (pw - 1) * yv;
      const double sp = std::log1p(std::exp(-std::fabs(xv))) + std::max(-xv, 0.0);
      const double l = ((1 - yv) * xv + lw * sp) * w;
      const double sig_neg = 1.0 / (1.0 + std::exp(xv));
      o.elem[k] = l;
      o.grad[k] = ((1 - yv) - lw * sig_neg) * w * grad_scale / div;
      o.row_loss[i] += l;
    }
    total += o.row_loss[i];
  }
  o.loss = total / div;
  return o;
}

}  // namespace xent_ref
