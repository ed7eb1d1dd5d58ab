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

}  // namespace xent_ref
