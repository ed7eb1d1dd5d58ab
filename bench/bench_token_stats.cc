// Per-token statistics benchmark (issue 16): the full forward (log p(y) +
// entropy + argmax + top-5) and its backward against today's token_logprobs
// (log p(y) + entropy), CE forward + gradient, and the streaming-bandwidth
// rooflines, measured in one process with the repetitions of every variant
// interleaved (a shared machine's load hits them alike).
//
//   bench_token_stats [--shape=8192x32000] [--dtypes=f32,bf16] [--threads=1,2]
//                     [--reps=7] [--ops=LIST] [--csv=FILE]
//
// Prints, per (dtype, threads), ns per logit min / median over the
// repetitions, and the roofline: bytes per logit / the bandwidth measured in
// the same run (forward: read; gradient to another buffer: copy with
// non-temporal stores, as the kernels stream outputs that large; in place:
// read + write back).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bandwidth.h"
#include "xent/xent.h"

namespace {

namespace xb = xent_bench;

double Now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= s.size()) {
    const size_t e = std::min(s.find(',', b), s.size());
    if (e > b) out.push_back(s.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

void Check(xent_status st, const char* what) {
  if (st != XENT_OK) {
    std::fprintf(stderr, "%s: %s: %s\n", what, xent_status_string(st), xent_last_error());
    std::exit(1);
  }
}

// 64-byte aligned, pre-faulted buffer.
struct Buf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Buf(size_t n) : bytes((n + 63) / 64 * 64) {
    p = std::aligned_alloc(64, bytes);
    if (!p) {
      std::fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
      std::exit(1);
    }
    xb::ParallelFill(static_cast<float*>(p), bytes / 4, 0.0f, 0);
  }
  ~Buf() { std::free(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

uint16_t Bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

struct Variant {
  std::string name;
  double bytes_per_logit = 0;     // 0: no roofline
  const char* bw = "";            // which bandwidth: read, copy_nt, inplace
  std::function<void()> prepare;  // untimed, before each repetition
  std::function<void()> run;
  std::vector<double> ns;
};

}  // namespace

int main(int argc, char** argv) {
  size_t B = 8192, V = 32000;
  std::vector<std::string> dtypes = {"f32", "bf16"}, threads = {"1", "2"};
  std::vector<std::string> ops = {"token_logprobs", "token_logprobs_lp",  "stats_fwd",         "stats_fwd_k64",
                                  "stats_fwd_kl",   "stats_bwd",          "stats_bwd_inplace", "stats_bwd_recompute",
                                  "ce_fwd_grad",    "ce_fwd_grad_inplace"};
  int reps = 7;
  std::string csv;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&](const char* k) { return a.rfind(k, 0) == 0 ? a.substr(std::strlen(k)) : std::string(); };
    if (!val("--shape=").empty()) {
      std::sscanf(val("--shape=").c_str(), "%zux%zu", &B, &V);
    } else if (!val("--dtypes=").empty()) {
      dtypes = Split(val("--dtypes="));
    } else if (!val("--threads=").empty()) {
      threads = Split(val("--threads="));
    } else if (!val("--reps=").empty()) {
      reps = std::atoi(val("--reps=").c_str());
    } else if (!val("--ops=").empty()) {
      ops = Split(val("--ops="));
    } else if (!val("--csv=").empty()) {
      csv = val("--csv=");
    } else {
      std::fprintf(stderr,
                   "usage: %s [--shape=BxV] [--dtypes=f32,bf16] [--threads=1,2] [--reps=N] [--ops=LIST] "
                   "[--csv=FILE]\nops: token_logprobs (logprob + entropy), token_logprobs_lp, stats_fwd "
                   "(logprob + entropy + argmax + top-5), stats_fwd_k64, stats_fwd_kl (+ reference KL), stats_bwd "
                   "(g_lp, g_H, saved lse/entropy, to a buffer), stats_bwd_inplace, stats_bwd_recompute (no saved "
                   "stats), ce_fwd_grad, ce_fwd_grad_inplace\n",
                   argv[0]);
      return 2;
    }
  }
  auto want = [&](const char* op) { return std::find(ops.begin(), ops.end(), op) != ops.end(); };
  const size_t n = B * V;
  std::FILE* out = csv.empty() ? nullptr : std::fopen(csv.c_str(), "w");
  if (out) std::fprintf(out, "dtype,threads,op,ns_min,ns_median,roofline_ns,bandwidth\n");
  std::printf("bench_token_stats: %zu x %zu, %d repetitions, SIMD target %s, bandwidth probe %s\n", B, V, reps,
              xent_active_target(), xb::BwIsa());

  for (const std::string& th : threads) {
    const int T = std::atoi(th.c_str());
    // Bandwidths (GB/s) of this thread count, best of 3 passes over 1 GiB.
    double gbs[3] = {0, 0, 0};  // read, copy_nt, inplace
    {
      const size_t bn = (size_t{1} << 30) / 4;
      Buf a(bn * 4), b(bn * 4);
      xb::ParallelFill(static_cast<float*>(a.p), bn, 1.0f, T);
      const xb::BwKind kinds[3] = {xb::BwKind::kRead, xb::BwKind::kCopyNT, xb::BwKind::kInPlace};
      volatile float sink = 0;
      for (int k = 0; k < 3; ++k) {
        xb::BwPass(kinds[k], static_cast<float*>(b.p), static_cast<float*>(a.p), bn, T);
        for (int r = 0; r < 3; ++r) {
          const double t0 = Now();
          sink = sink + xb::BwPass(kinds[k], static_cast<float*>(b.p), static_cast<float*>(a.p), bn, T);
          gbs[k] = std::max(gbs[k], bn * xb::BwBytesPerFloat(kinds[k]) / (Now() - t0) / 1e9);
        }
      }
    }
    for (const std::string& dt : dtypes) {
      const bool bf = dt == "bf16";
      const int32_t code = bf ? XENT_BF16 : XENT_F32;
      const size_t es = bf ? 2 : 4;
      Buf x(n * es), g(n * es), ref(want("stats_fwd_kl") ? n * es : 64);
      std::mt19937 rng(7);
      std::normal_distribution<float> nd(0.0f, 3.0f);
      auto fill = [&](void* p, float shift) {
        for (size_t i = 0; i < n; ++i) {
          const float v = nd(rng) + shift;
          if (bf) {
            static_cast<uint16_t*>(p)[i] = Bf16(v);
          } else {
            static_cast<float*>(p)[i] = v;
          }
        }
      };
      fill(x.p, 0.0f);
      if (want("stats_fwd_kl")) fill(ref.p, 0.1f);
      std::vector<int64_t> y(B), am(B), topi(B * 64);
      for (auto& v : y) v = static_cast<int64_t>(rng() % V);
      std::vector<float> lp(B), ent(B), lse(B), aml(B), topl(B * 64), kl(B), gl(B), gh(B), loss(B);
      for (size_t i = 0; i < B; ++i) {
        gl[i] = 1.0f / B;
        gh[i] = -0.01f / B;
      }
      // What every call here shares: the B x V logits at `logits`, the targets y, T threads.
      auto set_rows = [&](auto& a, void* logits) {
        a.batch = B;
        a.num_classes = V;
        a.logits = logits;
        a.logits_dtype = code;
        a.target = y.data();
        a.num_threads = T;
      };
      auto tl_args = [&]() {
        xent_token_logprobs_args a;
        XENT_ARGS_INIT(xent_token_logprobs_args, &a);
        set_rows(a, x.p);
        a.logprob = lp.data();
        return a;
      };
      // The forward's statistics, saved for the backward.
      {
        auto a = tl_args();
        a.lse = lse.data();
        a.entropy = ent.data();
        Check(xent_token_logprobs(&a), "stats");
      }
      auto bwd = [&](void* logits, bool saved) {
        xent_token_logprobs_backward_args a;
        XENT_ARGS_INIT(xent_token_logprobs_backward_args, &a);
        set_rows(a, logits);
        a.grad_logprob = gl.data();
        a.grad_entropy = gh.data();
        if (saved) {
          a.lse = lse.data();
          a.entropy = ent.data();
        }
        a.grad = g.p;  // (in place when logits is g)
        Check(xent_token_logprobs_backward(&a), "backward");
      };
      auto ce = [&](void* logits) {
        xent_cross_entropy_args a;
        XENT_ARGS_INIT(xent_cross_entropy_args, &a);
        set_rows(a, logits);
        a.reduction = XENT_REDUCTION_NONE;
        a.row_loss = loss.data();
        a.grad = g.p;
        Check(xent_cross_entropy(&a), "cross_entropy");
      };
      auto copy_in = [&] { std::memcpy(g.p, x.p, n * es); };
      std::vector<Variant> vs;
      const double rd = static_cast<double>(es), rw = 2.0 * es;
      if (want("token_logprobs")) {
        vs.push_back({"token_logprobs", rd, "read", nullptr, [&] {
                        auto a = tl_args();
                        a.entropy = ent.data();
                        Check(xent_token_logprobs(&a), "tl");
                      }});
      }
      if (want("token_logprobs_lp")) {
        vs.push_back({"token_logprobs_lp", rd, "read", nullptr, [&] {
                        auto a = tl_args();
                        Check(xent_token_logprobs(&a), "tl");
                      }});
      }
      auto fwd = [&](int k, bool with_kl) {
        auto a = tl_args();
        a.entropy = ent.data();
        a.argmax = am.data();
        a.argmax_logprob = aml.data();
        a.topk = k;
        a.topk_logprobs = topl.data();
        a.topk_indices = topi.data();
        if (with_kl) {
          a.ref_logits = ref.p;
          a.ref_logits_dtype = code;
          a.kl = kl.data();
        }
        Check(xent_token_logprobs(&a), "stats");
      };
      if (want("stats_fwd")) vs.push_back({"stats_fwd", rd, "read", nullptr, [&] { fwd(5, false); }});
      if (want("stats_fwd_k64")) vs.push_back({"stats_fwd_k64", rd, "read", nullptr, [&] { fwd(64, false); }});
      if (want("stats_fwd_kl")) vs.push_back({"stats_fwd_kl", 2 * rd, "read", nullptr, [&] { fwd(5, true); }});
      if (want("stats_bwd")) vs.push_back({"stats_bwd", rw, "copy_nt", nullptr, [&] { bwd(x.p, true); }});
      if (want("stats_bwd_inplace")) {
        vs.push_back({"stats_bwd_inplace", rw, "inplace", copy_in, [&] { bwd(g.p, true); }});
      }
      if (want("stats_bwd_recompute")) {
        vs.push_back({"stats_bwd_recompute", rw, "copy_nt", nullptr, [&] { bwd(x.p, false); }});
      }
      if (want("ce_fwd_grad")) vs.push_back({"ce_fwd_grad", rw, "copy_nt", nullptr, [&] { ce(x.p); }});
      if (want("ce_fwd_grad_inplace")) {
        vs.push_back({"ce_fwd_grad_inplace", rw, "inplace", copy_in, [&] { ce(g.p); }});
      }
      for (auto& v : vs) {  // warm-up
        if (v.prepare) v.prepare();
        v.run();
      }
      std::vector<size_t> order(vs.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      for (int r = 0; r < reps; ++r) {
        std::shuffle(order.begin(), order.end(), rng);
        for (size_t i : order) {
          if (vs[i].prepare) vs[i].prepare();
          const double t0 = Now();
          vs[i].run();
          vs[i].ns.push_back((Now() - t0) * 1e9 / static_cast<double>(n));
        }
      }
      std::printf("\n%s, %d thread%s (bandwidth GB/s: read %.1f, copy_nt %.1f, in place %.1f)\n", dt.c_str(), T,
                  T == 1 ? "" : "s", gbs[0], gbs[1], gbs[2]);
      std::printf("  %-22s %9s %9s %9s %8s\n", "op", "min", "median", "roofline", "min/roof");
      for (auto& v : vs) {
        std::sort(v.ns.begin(), v.ns.end());
        const double mn = v.ns.front(), med = v.ns[v.ns.size() / 2];
        const double bw = std::strcmp(v.bw, "read") == 0 ? gbs[0] : std::strcmp(v.bw, "copy_nt") == 0 ? gbs[1] : gbs[2];
        const double roof = v.bytes_per_logit / bw;  // bytes / (GB/s) = ns
        std::printf("  %-22s %9.3f %9.3f %9.3f %8.2f\n", v.name.c_str(), mn, med, roof, mn / roof);
        if (out) {
          std::fprintf(out, "%s,%d,%s,%.4f,%.4f,%.4f,%s\n", dt.c_str(), T, v.name.c_str(), mn, med, roof, v.bw);
        }
      }
    }
  }
  if (out) std::fclose(out);
  return 0;
}
