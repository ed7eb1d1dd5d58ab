// output_hashes: prints one hash per (operation case, SIMD target) of every
// output xent writes, on fixed inputs, through the public C API only.
//
// A refactoring that must not change results (the bits of every output on
// every target) is checked by running this before and after and diffing:
//   build/ci/tests/tools/output_hashes > before.txt   (old tree)
//   build/ci/tests/tools/output_hashes > after.txt    (new tree)
//   diff before.txt after.txt
// Cases cover every operation, dtype, option and output, the row-blocked and
// the segment-split (few long rows, 2 threads) engine paths, in-place calls,
// masked (-inf) and NaN rows. Hashes are FNV-1a of the output bytes.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "xent/xent.h"

namespace {

uint64_t Mix(uint64_t z) {  // splitmix64
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct Hash {
  uint64_t h = 1469598103934665603ull;
  void Add(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
};

uint16_t BF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
uint16_t F16(float f) {  // round to nearest even (inputs here are normal and small)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7FFFFFFFu;
  if (u >= 0x7F800000u) return static_cast<uint16_t>(sign | (u > 0x7F800000u ? 0x7E00u : 0x7C00u));
  if (u < 0x38800000u) return static_cast<uint16_t>(sign);  // flush tiny values (never generated)
  if (u >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);
  const uint32_t odd = (u >> 13) & 1u;
  u += 0xC8000FFFu + odd;  // rebias (15 - 127) << 23, plus rounding
  return static_cast<uint16_t>(sign | (u >> 13));
}

size_t Size(int32_t dt) { return dt == XENT_F32 ? 4 : 2; }

// A B x V matrix of dtype dt (row stride ld elements).
struct Mat {
  int32_t dt = XENT_F32;
  size_t B = 0, V = 0, ld = 0;
  std::vector<unsigned char> bytes;
  Mat() = default;
  Mat(size_t b, size_t v, int32_t d, size_t pad = 0) : dt(d), B(b), V(v), ld(v + pad), bytes(b * (v + pad) * Size(d)) {}
  void* data() { return bytes.empty() ? nullptr : bytes.data(); }
  void Set(size_t r, size_t c, float x) {
    unsigned char* p = bytes.data() + (r * ld + c) * Size(dt);
    if (dt == XENT_F32) {
      std::memcpy(p, &x, 4);
    } else {
      const uint16_t h = dt == XENT_BF16 ? BF16(x) : F16(x);
      std::memcpy(p, &h, 2);
    }
  }
};

// Logits: a smooth random spread of scale `sigma`, a few -inf (masked)
// classes, and optionally one all -inf row and one NaN row.
Mat Logits(size_t B, size_t V, int32_t dt, uint64_t seed, float sigma, bool specials, size_t pad = 0) {
  Mat m(B, V, dt, pad);
  for (size_t r = 0; r < B; ++r) {
    for (size_t c = 0; c < V; ++c) {
      const uint64_t z = Mix(seed * 1000003u + r * 7919u + c);
      double u = 0;
      for (int k = 0; k < 4; ++k) u += static_cast<double>((z >> (16 * k)) & 0xFFFF) / 65536.0;
      float x = static_cast<float>((u - 2.0) * sigma);
      if (specials && (z % 97) == 3) x = -std::numeric_limits<float>::infinity();
      m.Set(r, c, x);
    }
  }
  if (specials && B >= 3) {
    for (size_t c = 0; c < V; ++c) m.Set(1, c, -std::numeric_limits<float>::infinity());
    m.Set(2, V / 2, std::numeric_limits<float>::quiet_NaN());
  }
  return m;
}

// Probability rows (each sums to 1; some zeros).
Mat Probs(size_t B, size_t V, int32_t dt, uint64_t seed) {
  Mat m(B, V, dt);
  std::vector<double> e(V);
  for (size_t r = 0; r < B; ++r) {
    double s = 0;
    for (size_t c = 0; c < V; ++c) {
      const uint64_t z = Mix(seed * 31 + r * 131071u + c);
      e[c] = (z % 5 == 0) ? 0.0 : std::exp(static_cast<double>(z % 1000) / 250.0);
      s += e[c];
    }
    for (size_t c = 0; c < V; ++c) m.Set(r, c, static_cast<float>(e[c] / s));
  }
  return m;
}

Mat LogOf(const Mat& p) {  // log-probabilities of a probability matrix (f32 only)
  Mat l(p.B, p.V, XENT_F32);
  for (size_t r = 0; r < p.B; ++r)
    for (size_t c = 0; c < p.V; ++c) {
      float v;
      std::memcpy(&v, p.bytes.data() + (r * p.ld + c) * 4, 4);
      l.Set(r, c, std::log(v));
    }
  return l;
}

std::vector<int64_t> Labels(size_t B, size_t V, uint64_t seed, int ignore_every) {
  std::vector<int64_t> y(B);
  for (size_t i = 0; i < B; ++i) {
    y[i] = static_cast<int64_t>(Mix(seed + i) % V);
    if (ignore_every && i % ignore_every == 1) y[i] = -100;
  }
  return y;
}

std::vector<float> Weights(size_t n, uint64_t seed) {
  std::vector<float> w(n);
  for (size_t i = 0; i < n; ++i) w[i] = 0.25f + static_cast<float>(Mix(seed + i) % 1000) / 500.0f;
  return w;
}

std::vector<std::string> Targets() {
  const char* names[64];
  const size_t n = xent_supported_targets(names, 64);
  return std::vector<std::string>(names, names + n);
}

int g_failures = 0;

// Runs `call` on every target and prints "<name> <target> <hash>"; `outs`
// lists the buffers to hash (filled with a fixed pattern before each call).
struct Out {
  void* p;
  size_t n;
};
void Report(const std::string& name, const std::function<xent_status()>& call, const std::vector<Out>& outs,
            const std::function<void()>& reset = nullptr) {
  for (const std::string& t : Targets()) {
    if (xent_force_target(t.c_str()) != XENT_OK) {
      std::printf("%s %s FORCE-FAILED\n", name.c_str(), t.c_str());
      ++g_failures;
      continue;
    }
    if (reset) reset();
    for (const Out& o : outs) std::memset(o.p, 0x5A, o.n);
    const xent_status st = call();
    Hash h;
    for (const Out& o : outs) h.Add(o.p, o.n);
    if (st != XENT_OK) {
      std::printf("%s %s status=%d %s\n", name.c_str(), t.c_str(), static_cast<int>(st), xent_last_error());
    } else {
      std::printf("%s %s %016llx\n", name.c_str(), t.c_str(), static_cast<unsigned long long>(h.h));
    }
  }
  xent_force_target(nullptr);
}

const char* DtName(int32_t d) { return d == XENT_F32 ? "f32" : d == XENT_BF16 ? "bf16" : "f16"; }

struct Shape {
  size_t B, V;
  int threads;
};
// Row-blocked path, segment-split path (few long rows on 2 threads), tails.
const Shape kShapes[] = {{9, 1000, 1}, {3, 9000, 2}, {5, 17, 2}, {2, 1, 1}};
const std::initializer_list<int32_t> kAllDtypes = {XENT_F32, XENT_BF16, XENT_F16};

// Runs run_case(s, dt, name) for every shape and each of dts, in the order the
// hashes are printed; name is "<op>/<B>x<V>/t<threads>/<dtype>".
template <class Case>
void ForShapesAndDtypes(const char* op, std::initializer_list<int32_t> dts, const Case& run_case) {
  for (const Shape& s : kShapes) {
    for (int32_t dt : dts) {
      char name[128];
      std::snprintf(name, sizeof name, "%s/%zux%zu/t%d/%s", op, s.B, s.V, s.threads, DtName(dt));
      run_case(s, dt, std::string(name));
    }
  }
}

// The fields of every operation's arguments that come from the shape.
template <class Args>
void SetShape(Args* a, const Shape& s) {
  a->batch = s.B;
  a->num_classes = s.V;
  a->num_threads = s.threads;
}

// The same and the logits (a B x V matrix) of an operation that takes logits.
template <class Args>
void SetLogits(Args* a, const Shape& s, Mat& logits) {
  SetShape(a, s);
  a->logits = logits.data();
  a->logits_dtype = logits.dt;
}

std::string Opt(const char* key, int value) { return "/" + std::string(key) + std::to_string(value); }
Out Whole(Mat& m) { return {m.data(), m.bytes.size()}; }
Out Floats(std::vector<float>& v, size_t n) { return {v.data(), 4 * n}; }
std::vector<float> PerRow(size_t B) { return std::vector<float>(B ? B : 1); }

// Points the loss, row_loss and elem_loss outputs of a (divergence, bce) at
// the buffers (elem B x V f32); returns them, to hash.
template <class Args>
std::vector<Out> LossOutputs(Args* a, std::vector<float>& loss, std::vector<float>& row_loss, Mat& elem) {
  a->loss = loss.data();
  a->row_loss = row_loss.data();
  a->elem_loss = static_cast<float*>(elem.data());
  return {Floats(loss, 1), Floats(row_loss, elem.B), Whole(elem)};
}

void CrossEntropy() {
  ForShapesAndDtypes("ce", kAllDtypes, [](const Shape& s, int32_t dt, const std::string& prefix) {
    // Options: 0 plain, 1 smoothing + weight + ignore, 2 z_loss + softcap,
    // 3 soft targets f32, 4 soft targets in the logits' dtype + smoothing + weight,
    // 5 row_scale + reduction none, 6 sum, int32 targets.
    for (int opt = 0; opt < 7; ++opt) {
      // Gradient: 0 none, 1 f32 buffer, 2 logits' dtype buffer, 3 in place.
      for (int g = 0; g < 4; ++g) {
        if (g == 2 && dt == XENT_F32) continue;
        const size_t B = s.B, V = s.V;
        Mat logits = Logits(B, V, dt, 11 + opt, 3.0f, true, opt == 5 ? 3 : 0);
        const Mat logits0 = logits;
        std::vector<int64_t> y = Labels(B, V, 5 + opt, opt == 1 ? 3 : 0);
        std::vector<int32_t> y32(y.begin(), y.end());
        Mat q = Probs(B, V, opt == 4 ? dt : XENT_F32, 9);
        std::vector<float> w = Weights(V, 3), rs = Weights(B, 4);
        std::vector<float> loss(1), row_loss = PerRow(B), lse = PerRow(B);
        Mat grad(B, V, g == 1 ? XENT_F32 : dt, opt == 5 ? 3 : 0);
        xent_cross_entropy_args a;
        XENT_ARGS_INIT(xent_cross_entropy_args, &a);
        SetLogits(&a, s, logits);
        a.logits_stride = logits.ld;
        a.target = y.data();
        if (opt == 1) {
          a.label_smoothing = 0.1f;
          a.weight = w.data();
        } else if (opt == 2) {
          a.z_loss = 1e-3f;
          a.softcap = 5.0f;
        } else if (opt == 3 || opt == 4) {
          a.target = q.data();
          a.target_dtype = q.dt;
          if (opt == 4) {
            a.label_smoothing = 0.2f;
            a.weight = w.data();
          }
        } else if (opt == 5) {
          a.row_scale = rs.data();
          a.reduction = XENT_REDUCTION_NONE;
          a.grad_scale = 0.5f;
        } else if (opt == 6) {
          a.target = y32.data();
          a.target_dtype = XENT_I32;
          a.reduction = XENT_REDUCTION_SUM;
        }
        a.loss = loss.data();
        a.row_loss = row_loss.data();
        a.lse = lse.data();
        std::vector<Out> outs = {Floats(loss, 1), Floats(row_loss, B), Floats(lse, B)};
        if (g == 3) {
          a.grad = logits.data();
          a.grad_stride = logits.ld;
          outs.push_back(Whole(logits));
        } else if (g > 0) {
          a.grad = grad.data();
          a.grad_dtype = grad.dt;
          a.grad_stride = grad.ld;
          outs.push_back(Whole(grad));
        }
        Report(
            prefix + Opt("opt", opt) + Opt("grad", g), [&] { return xent_cross_entropy(&a); }, outs,
            [&] {
              if (g == 3) logits = logits0;
            });
      }
    }
  });
}

void Softmax() {
  ForShapesAndDtypes("softmax", kAllDtypes, [](const Shape& s, int32_t dt, const std::string& prefix) {
    for (int opt = 0; opt < 5; ++opt) {  // 0 all outputs f32, 1 dtype outputs + T, 2 probs in place,
                                         // 3 log_probs in place + T, 4 lse + entropy only
      const size_t B = s.B, V = s.V;
      Mat logits = Logits(B, V, dt, 21 + opt, 4.0f, true);
      const Mat logits0 = logits;
      Mat probs(B, V, opt == 1 ? dt : XENT_F32), logp(B, V, opt == 1 ? dt : XENT_F32);
      std::vector<float> lse = PerRow(B), ent = PerRow(B);
      xent_softmax_args a;
      XENT_ARGS_INIT(xent_softmax_args, &a);
      SetLogits(&a, s, logits);
      a.lse = lse.data();
      a.entropy = ent.data();
      std::vector<Out> outs = {Floats(lse, B), Floats(ent, B)};
      if (opt == 0 || opt == 1) {
        a.probs = probs.data();
        a.probs_dtype = probs.dt;
        a.log_probs = logp.data();
        a.log_probs_dtype = logp.dt;
        outs.push_back(Whole(probs));
        outs.push_back(Whole(logp));
      } else if (opt == 2) {
        a.probs = logits.data();
        outs.push_back(Whole(logits));
      } else if (opt == 3) {
        a.log_probs = logits.data();
        outs.push_back(Whole(logits));
      }
      if (opt == 1 || opt == 3) a.temperature = 1.7f;
      Report(
          prefix + Opt("opt", opt), [&] { return xent_softmax(&a); }, outs, [&] { logits = logits0; });
    }
  });
}

void SoftmaxBackward() {
  ForShapesAndDtypes("softmax_backward", kAllDtypes, [](const Shape& s, int32_t dt, const std::string& prefix) {
    for (int kind = 0; kind < 2; ++kind) {
      for (int f32out = 0; f32out < 2; ++f32out) {
        const size_t B = s.B, V = s.V;
        Mat y = kind ? Logits(B, V, dt, 31, 1.0f, false) : Probs(B, V, dt, 32);
        Mat g = Logits(B, V, dt, 33, 1.0f, false);
        Mat gx(B, V, f32out ? XENT_F32 : dt);
        xent_softmax_backward_args a;
        XENT_ARGS_INIT(xent_softmax_backward_args, &a);
        SetShape(&a, s);
        a.output = y.data();
        a.output_dtype = dt;
        a.output_kind = kind ? XENT_DIST_LOG_PROBS : XENT_DIST_PROBS;
        a.grad_output = g.data();
        a.grad_output_dtype = dt;
        a.grad_input = gx.data();
        a.grad_input_dtype = gx.dt;
        a.temperature = kind ? 2.0f : 1.0f;
        Report(prefix + Opt("kind", kind) + Opt("f32out", f32out), [&] { return xent_softmax_backward(&a); },
               {Whole(gx)});
      }
    }
  });
}

void TokenLogprobs() {
  ForShapesAndDtypes("token_logprobs", kAllDtypes, [](const Shape& s, int32_t dt, const std::string& prefix) {
    for (int opt = 0; opt < 4; ++opt) {  // 0 plain, 1 T, 2 softcap + T, 3 entropy/lse only
      const size_t B = s.B, V = s.V;
      Mat logits = Logits(B, V, dt, 41 + opt, 3.0f, true);
      std::vector<int64_t> y = Labels(B, V, 43, 4);
      std::vector<float> lp = PerRow(B), ent = PerRow(B), lse = PerRow(B);
      xent_token_logprobs_args a;
      XENT_ARGS_INIT(xent_token_logprobs_args, &a);
      SetLogits(&a, s, logits);
      if (opt != 3) {
        a.target = y.data();
        a.logprob = lp.data();
      }
      a.entropy = ent.data();
      a.lse = lse.data();
      if (opt >= 1) a.temperature = 0.7f;
      if (opt == 2) a.softcap = 4.0f;
      Report(prefix + Opt("opt", opt), [&] { return xent_token_logprobs(&a); },
             {Floats(lp, B), Floats(ent, B), Floats(lse, B)});
    }
  });
}

// A B x V distribution of the given kind (XENT_DIST_*) in dtype dt.
Mat Distribution(int kind, size_t B, size_t V, int32_t dt, uint64_t seed) {
  if (kind == XENT_DIST_LOGITS) return Logits(B, V, dt, seed, 2.0f, false);
  Mat p = Probs(B, V, XENT_F32, seed);
  Mat m = kind == XENT_DIST_PROBS ? p : LogOf(p);
  if (dt == XENT_F32) return m;
  Mat c(B, V, dt);
  for (size_t r = 0; r < B; ++r)
    for (size_t j = 0; j < V; ++j) {
      float v;
      std::memcpy(&v, m.bytes.data() + (r * V + j) * 4, 4);
      c.Set(r, j, v);
    }
  return c;
}

// The input (of kind qk) and the target (of kind pk) of a divergence.
void SetDistributions(xent_divergence_args* a, Mat& in, int qk, Mat& tg, int pk) {
  a->input = in.data();
  a->input_dtype = in.dt;
  a->input_kind = qk;
  a->target = tg.data();
  a->target_dtype = tg.dt;
  a->target_kind = pk;
}

void Divergence() {
  ForShapesAndDtypes("divergence", {XENT_F32, XENT_BF16}, [](const Shape& s, int32_t dt, const std::string& prefix) {
    for (int qk = 0; qk < 3; ++qk) {
      for (int pk = 0; pk < 3; ++pk) {
        // 0 KL, 1 JSD 0.5, 2 JSD beta 0, 3 JSD beta 1, 4 KL + T + t2 + labels + batchmean
        for (int mode = 0; mode < 5; ++mode) {
          for (int grads = 0; grads < 3; ++grads) {  // 0 none, 1 input, 2 input + target
            const size_t B = s.B, V = s.V;
            Mat in = Distribution(qk, B, V, dt, 51), tg = Distribution(pk, B, V, dt, 52);
            std::vector<int64_t> labels = Labels(B, V, 53, 3);
            std::vector<float> loss(1), row_loss = PerRow(B);
            Mat el(B, V, XENT_F32), gi(B, V, XENT_F32), gt(B, V, dt);
            xent_divergence_args a;
            XENT_ARGS_INIT(xent_divergence_args, &a);
            SetShape(&a, s);
            SetDistributions(&a, in, qk, tg, pk);
            if (mode >= 1 && mode <= 3) {
              a.divergence = XENT_DIVERGENCE_JSD;
              a.beta = mode == 1 ? 0.5f : (mode == 2 ? 0.0f : 1.0f);
            }
            if (mode == 4) {
              a.temperature = 2.0f;
              a.t2_scaling = 1;
              a.labels = labels.data();
              a.reduction = XENT_REDUCTION_BATCHMEAN;
            }
            std::vector<Out> outs = LossOutputs(&a, loss, row_loss, el);
            if (grads >= 1) {
              a.grad_input = gi.data();
              a.grad_input_dtype = XENT_F32;
              outs.push_back(Whole(gi));
            }
            if (grads == 2) {
              a.grad_target = gt.data();
              outs.push_back(Whole(gt));
            }
            Report(
                prefix + Opt("q", qk) + Opt("p", pk) + Opt("mode", mode) + Opt("grads", grads),
                [&] { return xent_divergence(&a); }, outs);
          }
        }
      }
    }
  });
  // The distillation fast path without elem_loss (and streamed gradient).
  ForShapesAndDtypes("distill", {XENT_F32, XENT_BF16}, [](const Shape& s, int32_t dt, const std::string& name) {
    const size_t B = s.B, V = s.V;
    Mat in = Logits(B, V, dt, 61, 2.0f, true), tg = Logits(B, V, dt, 62, 2.0f, false);
    Mat gi(B, V, dt);
    std::vector<float> loss(1);
    xent_divergence_args a;
    XENT_ARGS_INIT(xent_divergence_args, &a);
    SetShape(&a, s);
    SetDistributions(&a, in, XENT_DIST_LOGITS, tg, XENT_DIST_LOGITS);
    a.temperature = 2.0f;
    a.t2_scaling = 1;
    a.reduction = XENT_REDUCTION_BATCHMEAN;
    a.loss = loss.data();
    a.grad_input = gi.data();
    Report(name, [&] { return xent_divergence(&a); }, {Floats(loss, 1), Whole(gi)});
  });
}

void Bce() {
  ForShapesAndDtypes("bce", kAllDtypes, [](const Shape& s, int32_t dt, const std::string& prefix) {
    for (int opt = 0; opt < 4; ++opt) {  // 0 plain, 1 class weight + pos_weight, 2 element weight, 3 in place
      const size_t B = s.B, V = s.V;
      Mat x = Logits(B, V, dt, 71 + opt, 5.0f, false);
      const Mat x0 = x;
      Mat y = Probs(B, V, opt == 2 ? dt : XENT_F32, 72);
      std::vector<float> w = Weights(B * V, 73), pw = Weights(V, 74);
      std::vector<float> loss(1), row_loss = PerRow(B);
      Mat el(B, V, XENT_F32), g(B, V, dt);
      xent_bce_args a;
      XENT_ARGS_INIT(xent_bce_args, &a);
      SetLogits(&a, s, x);
      a.target = y.data();
      a.target_dtype = y.dt;
      if (opt == 1) {
        a.weight = w.data();
        a.pos_weight = pw.data();
        a.reduction = XENT_REDUCTION_SUM;
      } else if (opt == 2) {
        a.weight = w.data();
        a.weight_stride = V;
        a.reduction = XENT_REDUCTION_BATCHMEAN;
      }
      std::vector<Out> outs = LossOutputs(&a, loss, row_loss, el);
      if (opt == 3) {
        a.grad = x.data();
        outs.push_back(Whole(x));
      } else {
        a.grad = g.data();
        outs.push_back(Whole(g));
      }
      Report(
          prefix + Opt("opt", opt), [&] { return xent_bce_with_logits(&a); }, outs, [&] { x = x0; });
    }
  });
}

}  // namespace

int main() {
  CrossEntropy();
  Softmax();
  SoftmaxBackward();
  TokenLogprobs();
  Divergence();
  Bce();
  return g_failures ? 1 : 0;
}
