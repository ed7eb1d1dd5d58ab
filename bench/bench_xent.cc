// bench_xent: Google Benchmark binary for every xent operation, the scalar C++
// reference peer and a streaming memory-bandwidth probe (the roofline).
//
//   bench_xent [--suite=bandwidth,xent,ref] [--ops=default|all|op,...]
//              [--shapes=default|BxV,...] [--dtypes=f32,bf16] [--threads=1,all]
//              [--targets=auto|others|all|name,...] [--bw_gib=1]
//              [--list] [Google Benchmark flags, e.g. --benchmark_repetitions=5
//               --benchmark_out=x.json --benchmark_out_format=json]
//
// Benchmark names:
//   bandwidth/<read|copy|copy_nt|inplace>/threads:<n>
//   xent/<op>/<f32|bf16>/<B>x<V>/threads:<n>/target:<auto|name>
//   scalar_ref/<op>/<f32|bf16>/<B>x<V>/threads:<n>
// Counters (per repetition): ns_per_logit, GB_per_s (bytes_per_logit x logits
// / time), bytes_per_logit (the byte model), bw_kind (roofline bandwidth:
// 0 read, 1 copy, 3 in-place), threads, logits, and for xent a cross-check
// against the scalar reference on the warm-up slice (up to 64 rows):
// check_loss_rel_err, check_out_rel_err (largest output difference / largest
// reference output). Timing is manual (wall clock around the call only; an
// in-place benchmark regenerates its logits outside the timed region). Inputs
// are generated once per shape/dtype, outputs are pre-faulted and reused, all
// buffers 64-byte aligned. One warm-up call per case (on up to 64 rows when
// the shape is large) before the timed repetitions.
//
// Only xent_cross_entropy is linked directly; the other operations are looked
// up with dlsym at start-up, and a benchmark of a missing one is reported as an
// error "not available: <symbol> is not exported by libxent".
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <benchmark/benchmark.h>

#include "bandwidth.h"
#include "scalar_ref.h"
#include "xent/xent.h"

namespace xb = xent_bench;

namespace {

// ---------------------------------------------------------------------------
// Operations and their byte model.
enum class Op {
  kCeFwd,
  kCeFwdGrad,
  kCeFwdGradInPlace,
  kKlFwdGrad,
  kJsdFwdGrad,
  kTokenLogprobs,
  kSoftmax,
  kSoftmaxBackward,
  kBceFwdGrad,
};

// Which bandwidth is the roofline of an operation.
enum BwClass { kBwRead = 0, kBwCopy = 1, kBwInPlace = 3 };

struct OpInfo {
  Op op;
  const char* name;
  int reads;   // B x V matrices read per call
  int writes;  // B x V matrices written per call
  bool inplace;
  bool in_default;
  const char* symbol;
  const char* what;
};

const OpInfo kOps[] = {
    {Op::kCeFwd, "ce_fwd", 1, 0, false, true, "xent_cross_entropy",
     "cross-entropy forward, int64 labels, mean loss"},
    {Op::kCeFwdGrad, "ce_fwd_grad", 1, 1, false, true, "xent_cross_entropy",
     "cross-entropy forward + gradient into a separate buffer"},
    {Op::kCeFwdGradInPlace, "ce_fwd_grad_inplace", 1, 1, true, false, "xent_cross_entropy",
     "cross-entropy forward + gradient written over the logits"},
    {Op::kKlFwdGrad, "kl_fwd_grad", 2, 1, false, true, "xent_divergence",
     "KL(softmax(teacher) || softmax(student)) from two logit batches, batchmean, + grad wrt student"},
    {Op::kJsdFwdGrad, "jsd_fwd_grad", 2, 1, false, false, "xent_divergence",
     "generalized JSD (beta 0.5) from two logit batches, batchmean, + grad wrt student"},
    {Op::kTokenLogprobs, "token_logprobs", 1, 0, false, true, "xent_token_logprobs",
     "per-row log-probability of the label (log_softmax + gather)"},
    {Op::kSoftmax, "softmax", 1, 1, false, true, "xent_softmax", "probs = softmax(logits) into a separate buffer"},
    {Op::kSoftmaxBackward, "softmax_backward", 2, 1, false, false, "xent_softmax_backward",
     "grad_input = y (g - sum g y) from probs y and grad_output g"},
    {Op::kBceFwdGrad, "bce_fwd_grad", 2, 1, false, false, "xent_bce_with_logits",
     "BCE with logits (targets in the logits' dtype), mean, + gradient"},
};

const OpInfo& Info(Op op) {
  for (const OpInfo& i : kOps)
    if (i.op == op) return i;
  std::abort();
}

int BwClassOf(const OpInfo& i) { return i.writes == 0 ? kBwRead : (i.inplace ? kBwInPlace : kBwCopy); }

// ---------------------------------------------------------------------------
// Optional symbols (resolved at run time so a library without them still runs
// the rest).
struct Api {
  decltype(&xent_divergence_args_init) divergence_init = nullptr;
  decltype(&xent_divergence) divergence = nullptr;
  decltype(&xent_token_logprobs_args_init) token_logprobs_init = nullptr;
  decltype(&xent_token_logprobs) token_logprobs = nullptr;
  decltype(&xent_softmax_args_init) softmax_init = nullptr;
  decltype(&xent_softmax) softmax = nullptr;
  decltype(&xent_softmax_backward_args_init) softmax_backward_init = nullptr;
  decltype(&xent_softmax_backward) softmax_backward = nullptr;
  decltype(&xent_bce_args_init) bce_init = nullptr;
  decltype(&xent_bce_with_logits) bce = nullptr;
};
Api g_api;

template <class F>
void Resolve(F* f, const char* name) {
  *f = reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
}

void ResolveApi() {
  Resolve(&g_api.divergence_init, "xent_divergence_args_init");
  Resolve(&g_api.divergence, "xent_divergence");
  Resolve(&g_api.token_logprobs_init, "xent_token_logprobs_args_init");
  Resolve(&g_api.token_logprobs, "xent_token_logprobs");
  Resolve(&g_api.softmax_init, "xent_softmax_args_init");
  Resolve(&g_api.softmax, "xent_softmax");
  Resolve(&g_api.softmax_backward_init, "xent_softmax_backward_args_init");
  Resolve(&g_api.softmax_backward, "xent_softmax_backward");
  Resolve(&g_api.bce_init, "xent_bce_args_init");
  Resolve(&g_api.bce, "xent_bce_with_logits");
}

bool Available(Op op) {
  switch (op) {
    case Op::kCeFwd:
    case Op::kCeFwdGrad:
    case Op::kCeFwdGradInPlace: return true;
    case Op::kKlFwdGrad:
    case Op::kJsdFwdGrad: return g_api.divergence && g_api.divergence_init;
    case Op::kTokenLogprobs: return g_api.token_logprobs && g_api.token_logprobs_init;
    case Op::kSoftmax: return g_api.softmax && g_api.softmax_init;
    case Op::kSoftmaxBackward: return g_api.softmax_backward && g_api.softmax_backward_init;
    case Op::kBceFwdGrad: return g_api.bce && g_api.bce_init;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Buffers: one per role, 64-byte aligned, pre-faulted when (re)allocated,
// reused across benchmarks; the content is regenerated only when the shape,
// dtype or kind changes (or after an in-place benchmark overwrote it).
int AllThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

enum class Content { kLogits, kProbs01, kSmallProbs, kSigned };

struct Buffer {
  uint8_t* p = nullptr;
  size_t cap = 0;
  std::string key;  // what the buffer holds now ("" = nothing valid)
};
// Inputs are kept per dtype (so benchmarks of both dtypes can interleave
// without regenerating data); the output buffer is shared.
enum Slot { kSlotX = 0, kSlotT = 1, kSlotOut = 2 };
Buffer g_in[2][2];  // [dtype][kSlotX / kSlotT]
Buffer g_out;
Buffer& Buf(Slot s, xb::Dt dt) { return s == kSlotOut ? g_out : g_in[dt == xb::Dt::kF32 ? 0 : 1][s]; }
std::vector<int64_t> g_labels;
std::string g_labels_key;
std::vector<float> g_rows;  // B per-row outputs

uint8_t* Ensure(Buffer& b, size_t bytes) {
  if (b.cap >= bytes) return b.p;
  std::free(b.p);
  b.p = nullptr;
  b.cap = 0;
  b.key.clear();
  const size_t rounded = (bytes + 63) / 64 * 64;
  b.p = static_cast<uint8_t*>(std::aligned_alloc(64, rounded));
  if (b.p == nullptr) {
    std::fprintf(stderr, "bench_xent: cannot allocate %zu bytes\n", rounded);
    std::exit(2);
  }
  // Pre-fault every page (first touch costs ~1 ns per float on this class of
  // machine, more than the bandwidth floor).
  xb::ParallelFill(reinterpret_cast<float*>(b.p), rounded / 4, 0.0f, 0);
  b.cap = rounded;
  return b.p;
}

inline uint64_t Mix(uint64_t z) {  // splitmix64
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline uint16_t ToBF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

void Generate(void* dst, xb::Dt dt, size_t n, Content c, uint64_t seed, size_t V) {
  const long long nn = static_cast<long long>(n);
  const float small = 2.0f / static_cast<float>(V);
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (long long i = 0; i < nn; ++i) {
    const uint64_t h = Mix(seed * 0x100000000ull + static_cast<uint64_t>(i));
    const float u1 = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
    const float u2 = static_cast<float>((h >> 16) & 0xFFFFFF) * (1.0f / 16777216.0f);
    float v = 0.0f;
    switch (c) {
      case Content::kLogits: v = 6.0f * (u1 + u2 - 1.0f); break;  // triangular on [-6, 6]
      case Content::kProbs01: v = u1; break;
      case Content::kSmallProbs: v = u1 * small; break;
      case Content::kSigned: v = 2.0f * u1 - 1.0f; break;
    }
    if (dt == xb::Dt::kF32) {
      static_cast<float*>(dst)[i] = v;
    } else {
      static_cast<uint16_t*>(dst)[i] = ToBF16(v);
    }
  }
}

void Fill(Slot s, xb::Dt dt, size_t B, size_t V, Content c, uint64_t seed) {
  const size_t bytes = B * V * xb::DtSize(dt);
  Buffer& b = Buf(s, dt);
  Ensure(b, bytes);
  char key[160];
  std::snprintf(key, sizeof(key), "%d/%zux%zu/%d/%llu", static_cast<int>(dt), B, V, static_cast<int>(c),
                static_cast<unsigned long long>(seed));
  if (b.key == key) return;
  Generate(b.p, dt, B * V, c, seed, V);
  b.key = key;
}

void FillLabels(size_t B, size_t V) {
  const std::string key = std::to_string(B) + "x" + std::to_string(V);
  if (g_labels_key == key) return;
  g_labels.resize(B);
  for (size_t i = 0; i < B; ++i) g_labels[i] = static_cast<int64_t>(Mix(7000000 + i) % V);
  g_labels_key = key;
}

// ---------------------------------------------------------------------------
// A benchmark case.
struct Case {
  Op op;
  xb::Dt dt;
  size_t B, V;
  int threads;         // 0 = all
  std::string target;  // xent: "auto" or a target name; scalar_ref: ""
  bool ref;            // the scalar C++ reference instead of xent
};

int32_t XentDtype(xb::Dt d) { return d == xb::Dt::kF32 ? XENT_F32 : XENT_BF16; }

void Prepare(const Case& c) {
  const OpInfo& info = Info(c.op);
  const bool sb = c.op == Op::kSoftmaxBackward;
  Fill(kSlotX, c.dt, c.B, c.V, sb ? Content::kSmallProbs : Content::kLogits, 1);
  if (info.reads == 2) {
    Content tc = Content::kLogits;
    if (c.op == Op::kBceFwdGrad) tc = Content::kProbs01;
    if (sb) tc = Content::kSigned;
    Fill(kSlotT, c.dt, c.B, c.V, tc, 2);
  }
  if (info.writes == 1 && !info.inplace) Ensure(g_out, c.B * c.V * xb::DtSize(c.dt));
  if (c.op == Op::kCeFwd || c.op == Op::kCeFwdGrad || c.op == Op::kCeFwdGradInPlace ||
      c.op == Op::kTokenLogprobs)
    FillLabels(c.B, c.V);
  if (g_rows.size() < c.B) g_rows.resize(c.B);
}

float g_sink = 0.0f;  // results go here so nothing is optimized away

// Runs the case on the first `rows` rows.
xent_status CallXent(const Case& c, size_t rows, float* loss_out = nullptr) {
  const OpInfo& info = Info(c.op);
  const int32_t dt = XentDtype(c.dt);
  void* x = Buf(kSlotX, c.dt).p;
  void* t = Buf(kSlotT, c.dt).p;
  void* out = info.inplace ? x : g_out.p;
  float loss = 0.0f;
  xent_status rc = XENT_ERROR_INTERNAL;
  switch (c.op) {
    case Op::kCeFwd:
    case Op::kCeFwdGrad:
    case Op::kCeFwdGradInPlace: {
      xent_cross_entropy_args a;
      XENT_ARGS_INIT(xent_cross_entropy_args, &a);
      a.batch = rows;
      a.num_classes = c.V;
      a.logits = x;
      a.logits_dtype = dt;
      a.target = g_labels.data();
      a.target_dtype = XENT_I64;
      a.reduction = XENT_REDUCTION_MEAN;
      a.loss = &loss;
      if (c.op != Op::kCeFwd) a.grad = out;
      a.num_threads = c.threads;
      rc = xent_cross_entropy(&a);
      break;
    }
    case Op::kKlFwdGrad:
    case Op::kJsdFwdGrad: {
      xent_divergence_args a;
      g_api.divergence_init(&a, sizeof(a));
      a.batch = rows;
      a.num_classes = c.V;
      a.input = x;
      a.input_dtype = dt;
      a.input_kind = XENT_DIST_LOGITS;
      a.target = t;
      a.target_dtype = dt;
      a.target_kind = XENT_DIST_LOGITS;
      a.divergence = c.op == Op::kKlFwdGrad ? XENT_DIVERGENCE_KL : XENT_DIVERGENCE_JSD;
      a.beta = 0.5f;
      a.reduction = XENT_REDUCTION_BATCHMEAN;
      a.loss = &loss;
      a.grad_input = out;
      a.num_threads = c.threads;
      rc = g_api.divergence(&a);
      break;
    }
    case Op::kTokenLogprobs: {
      xent_token_logprobs_args a;
      g_api.token_logprobs_init(&a, sizeof(a));
      a.batch = rows;
      a.num_classes = c.V;
      a.logits = x;
      a.logits_dtype = dt;
      a.target = g_labels.data();
      a.target_dtype = XENT_I64;
      a.logprob = g_rows.data();
      a.num_threads = c.threads;
      rc = g_api.token_logprobs(&a);
      loss = g_rows[0];
      break;
    }
    case Op::kSoftmax: {
      xent_softmax_args a;
      g_api.softmax_init(&a, sizeof(a));
      a.batch = rows;
      a.num_classes = c.V;
      a.logits = x;
      a.logits_dtype = dt;
      a.probs = out;
      a.num_threads = c.threads;
      rc = g_api.softmax(&a);
      break;
    }
    case Op::kSoftmaxBackward: {
      xent_softmax_backward_args a;
      g_api.softmax_backward_init(&a, sizeof(a));
      a.batch = rows;
      a.num_classes = c.V;
      a.output = x;
      a.output_dtype = dt;
      a.output_kind = XENT_DIST_PROBS;
      a.grad_output = t;
      a.grad_output_dtype = dt;
      a.grad_input = out;
      a.num_threads = c.threads;
      rc = g_api.softmax_backward(&a);
      break;
    }
    case Op::kBceFwdGrad: {
      xent_bce_args a;
      g_api.bce_init(&a, sizeof(a));
      a.batch = rows;
      a.num_classes = c.V;
      a.logits = x;
      a.logits_dtype = dt;
      a.target = t;
      a.target_dtype = dt;
      a.reduction = XENT_REDUCTION_MEAN;
      a.loss = &loss;
      a.grad = out;
      a.num_threads = c.threads;
      rc = g_api.bce(&a);
      break;
    }
  }
  g_sink += loss;
  if (loss_out) *loss_out = loss;
  return rc;
}

// The scalar reference; out / row_out override the destinations (a check).
double CallRef(const Case& c, size_t rows, void* out_override = nullptr, float* rows_override = nullptr) {
  const OpInfo& info = Info(c.op);
  xb::RefProblem p;
  p.B = rows;
  p.V = c.V;
  p.dt = c.dt;
  p.x = Buf(kSlotX, c.dt).p;
  p.t = Buf(kSlotT, c.dt).p;
  p.labels = g_labels.data();
  p.out = out_override ? out_override : (info.inplace ? Buf(kSlotX, c.dt).p : g_out.p);
  p.row_out = rows_override ? rows_override : g_rows.data();
  p.threads = c.threads;
  p.beta = 0.5f;
  double r = 0.0;
  switch (c.op) {
    case Op::kCeFwd: r = xb::RefCeFwd(p); break;
    case Op::kCeFwdGrad:
    case Op::kCeFwdGradInPlace: r = xb::RefCeFwdGrad(p); break;
    case Op::kKlFwdGrad: r = xb::RefKlFwdGrad(p); break;
    case Op::kJsdFwdGrad: r = xb::RefJsdFwdGrad(p); break;
    case Op::kTokenLogprobs: r = xb::RefTokenLogprobs(p); break;
    case Op::kSoftmax: r = xb::RefSoftmax(p); break;
    case Op::kSoftmaxBackward: r = xb::RefSoftmaxBackward(p); break;
    case Op::kBceFwdGrad: r = xb::RefBceFwdGrad(p); break;
  }
  g_sink += static_cast<float>(r);
  return r;
}

// Cross-check of xent against the scalar reference on the first `rows` rows
// (run once per case, after xent's warm-up call left its outputs in place):
// relative error of the loss, and the largest output difference relative to
// the largest reference output. -1 = not applicable.
struct Check {
  double loss_rel = -1.0;
  double out_rel = -1.0;
};

float LoadAny(const void* p, xb::Dt dt, size_t i) {
  if (dt == xb::Dt::kF32) return static_cast<const float*>(p)[i];
  const uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t*>(p)[i]) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

Check CrossCheck(const Case& c, size_t rows, float xent_loss) {
  const OpInfo& info = Info(c.op);
  Check k;
  if (info.inplace) return k;  // the logits are gone
  const size_t n = rows * c.V;
  std::vector<uint8_t> ref_out(info.writes ? n * xb::DtSize(c.dt) : 0);
  std::vector<float> ref_rows(rows);
  const double ref_loss = CallRef(c, rows, info.writes ? ref_out.data() : nullptr, ref_rows.data());
  if (c.op == Op::kTokenLogprobs) {
    double err = 0.0;
    for (size_t i = 0; i < rows; ++i)
      err = std::max(err, std::fabs(static_cast<double>(g_rows[i]) - ref_rows[i]) /
                              std::max(1.0, std::fabs(static_cast<double>(ref_rows[i]))));
    k.out_rel = err;
    return k;
  }
  if (c.op != Op::kSoftmax && c.op != Op::kSoftmaxBackward)
    k.loss_rel = std::fabs(static_cast<double>(xent_loss) - ref_loss) / std::max(1e-30, std::fabs(ref_loss));
  if (info.writes) {
    double err = 0.0, mx = 0.0;
    for (size_t i = 0; i < n; ++i) {
      const double a = LoadAny(g_out.p, c.dt, i), b = LoadAny(ref_out.data(), c.dt, i);
      err = std::max(err, std::fabs(a - b));
      mx = std::max(mx, std::fabs(b));
      if (std::isnan(a) != std::isnan(b)) err = INFINITY;
    }
    k.out_rel = mx > 0 ? err / mx : err;
  }
  return k;
}

std::string g_warm_key;  // the last case warmed up
bool g_bw_used = false;
void ReleaseBandwidthBuffers();

std::string CaseKey(const Case& c) {
  char k[200];
  std::snprintf(k, sizeof(k), "%d/%d/%zux%zu/%d/%s/%d", static_cast<int>(c.op), static_cast<int>(c.dt), c.B, c.V,
                c.threads, c.target.c_str(), c.ref ? 1 : 0);
  return k;
}

void RunCase(benchmark::State& st, const Case& c) {
  ReleaseBandwidthBuffers();
  const OpInfo& info = Info(c.op);
  if (!c.ref && !Available(c.op)) {
    const std::string msg = std::string("not available: ") + info.symbol + " is not exported by libxent " +
                            xent_version_string();
    st.SkipWithError(msg.c_str());
    for (auto _ : st) {
    }
    return;
  }
  if (!c.ref) {
    const xent_status fs = xent_force_target(c.target == "auto" ? nullptr : c.target.c_str());
    if (fs != XENT_OK) {
      const std::string msg = "xent_force_target(" + c.target + "): " + xent_last_error();
      st.SkipWithError(msg.c_str());
      for (auto _ : st) {
      }
      return;
    }
  }
  Prepare(c);
  auto refill = [&] {  // in place: restore the logits (untimed)
    Buf(kSlotX, c.dt).key.clear();
    Fill(kSlotX, c.dt, c.B, c.V, Content::kLogits, 1);
  };
  auto call = [&](size_t rows) -> xent_status {
    if (c.ref) {
      CallRef(c, rows);
      return XENT_OK;
    }
    return CallXent(c, rows);
  };
  // Warm-up (thread pool, scratch, code): once per case, on a slice of the
  // rows when the whole call is long.
  const std::string key = CaseKey(c);
  static std::map<std::string, Check> checks;
  if (g_warm_key != key) {
    const size_t rows = (c.B * c.V > (size_t{1} << 22)) ? std::min<size_t>(c.B, 64) : c.B;
    float loss = 0.0f;
    const xent_status rc = c.ref ? (CallRef(c, rows), XENT_OK) : CallXent(c, rows, &loss);
    if (rc == XENT_OK && !c.ref && checks.find(key) == checks.end()) checks[key] = CrossCheck(c, rows, loss);
    if (rc != XENT_OK) {
      const std::string msg = std::string(info.symbol) + " failed: " + xent_status_string(rc) + ": " +
                              xent_last_error();
      st.SkipWithError(msg.c_str());
      for (auto _ : st) {
      }
      return;
    }
    g_warm_key = key;
  }
  double total = 0.0;
  for (auto _ : st) {
    if (info.inplace) refill();
    const auto t0 = std::chrono::steady_clock::now();
    const xent_status rc = call(c.B);
    const auto t1 = std::chrono::steady_clock::now();
    if (rc != XENT_OK) {
      const std::string msg = std::string(info.symbol) + " failed: " + xent_status_string(rc) + ": " +
                              xent_last_error();
      st.SkipWithError(msg.c_str());
      break;
    }
    const double sec = std::chrono::duration<double>(t1 - t0).count();
    st.SetIterationTime(sec);
    total += sec;
  }
  if (info.inplace) Buf(kSlotX, c.dt).key.clear();  // the logits now hold a gradient
  if (st.error_occurred()) return;
  const double logits = static_cast<double>(c.B) * static_cast<double>(c.V);
  const double iters = static_cast<double>(st.iterations());
  const double bpl = static_cast<double>(xb::DtSize(c.dt) * static_cast<size_t>(info.reads + info.writes));
  st.counters["ns_per_logit"] = total * 1e9 / (iters * logits);
  st.counters["GB_per_s"] = bpl * logits * iters / total * 1e-9;
  st.counters["bytes_per_logit"] = bpl;
  st.counters["bw_kind"] = BwClassOf(info);
  st.counters["threads"] = c.threads > 0 ? c.threads : (c.ref ? AllThreads() : xent_max_threads());
  st.counters["logits"] = logits;
  const Check check = checks.count(key) ? checks[key] : Check();
  if (check.loss_rel >= 0) st.counters["check_loss_rel_err"] = check.loss_rel;
  if (check.out_rel >= 0) st.counters["check_out_rel_err"] = check.out_rel;
  if (!c.ref) st.SetLabel(xent_active_target());
}

// ---------------------------------------------------------------------------
// Bandwidth probe.
struct BwBuffers {
  float* a = nullptr;
  float* b = nullptr;
  size_t n = 0;
};
BwBuffers g_bw;

void ReleaseBandwidthBuffers() {
  std::free(g_bw.a);
  std::free(g_bw.b);
  g_bw = BwBuffers();
}

void RunBandwidth(benchmark::State& st, xb::BwKind kind, int threads, double gib) {
  const size_t n = static_cast<size_t>(gib * 1073741824.0 / 4.0) / 16 * 16;
  if (g_bw.n != n) {
    ReleaseBandwidthBuffers();
    g_bw.a = static_cast<float*>(std::aligned_alloc(64, n * 4));
    g_bw.b = static_cast<float*>(std::aligned_alloc(64, n * 4));
    if (!g_bw.a || !g_bw.b) {
      st.SkipWithError("cannot allocate the bandwidth buffers");
      for (auto _ : st) {
      }
      return;
    }
    xb::ParallelFill(g_bw.a, n, 1.0f, threads);
    xb::ParallelFill(g_bw.b, n, 0.0f, threads);
    g_bw.n = n;
    xb::BwPass(kind, g_bw.b, g_bw.a, n, threads);  // warm-up
  }
  g_bw_used = true;
  double total = 0.0;
  for (auto _ : st) {
    const auto t0 = std::chrono::steady_clock::now();
    g_sink += xb::BwPass(kind, g_bw.b, g_bw.a, n, threads);
    const auto t1 = std::chrono::steady_clock::now();
    const double sec = std::chrono::duration<double>(t1 - t0).count();
    st.SetIterationTime(sec);
    total += sec;
  }
  const double bytes = static_cast<double>(n) * static_cast<double>(xb::BwBytesPerFloat(kind));
  const double iters = static_cast<double>(st.iterations());
  st.counters["GB_per_s"] = bytes * iters / total * 1e-9;
  st.counters["bytes"] = bytes;
  st.counters["threads"] = threads > 0 ? threads : AllThreads();
  st.SetLabel(xb::BwIsa());
}

// ---------------------------------------------------------------------------
// Command line.
std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= s.size()) {
    const size_t e = s.find(',', b);
    const std::string item = s.substr(b, e == std::string::npos ? std::string::npos : e - b);
    if (!item.empty()) out.push_back(item);
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return out;
}

struct Options {
  std::vector<std::string> suites = {"bandwidth", "xent", "ref"};
  std::string ops = "default";
  std::string shapes = "default";
  std::string dtypes = "f32,bf16";
  std::string threads = "1,all";
  std::string targets = "auto";
  // Forced (non-auto) targets and the scalar reference may use subsets
  // ("" = the same as ops / dtypes / threads).
  std::string target_ops, target_dtypes, target_threads, ref_ops;
  int target_reps = 0, ref_reps = 0;  // 0 = --benchmark_repetitions
  double bw_gib = 1.0;
  bool list = false;
};

const char kDefaultShapes[] = "8192x32000,4096x128256,64x262144,1x262144,32768x4096";

void PrintUsage() {
  std::printf(
      "bench_xent: benchmarks of every xent operation, a scalar C++ reference and memory bandwidth.\n"
      "  --suite=LIST     bandwidth,xent,ref (default: all three)\n"
      "  --ops=LIST       default | all | op,... (default: ce_fwd,ce_fwd_grad,kl_fwd_grad,token_logprobs,softmax)\n"
      "  --shapes=LIST    default | BxV,...      (default: %s)\n"
      "  --dtypes=LIST    f32,bf16               (default: f32,bf16)\n"
      "  --threads=LIST   1,all or numbers       (default: 1,all)\n"
      "  --targets=LIST   auto | others (every supported target but the best) | all | name,... (default: auto)\n"
      "  --target_ops=, --target_dtypes=, --target_threads=LIST   subsets for the forced (non-auto) targets\n"
      "  --ref_ops=LIST   operations of the scalar reference (default: --ops)\n"
      "  --target_reps=N, --ref_reps=N   repetitions of forced targets / the reference (default: the flag)\n"
      "  --bw_gib=X       bandwidth buffer size in GiB per buffer (default 1)\n"
      "  --list           print the operations, byte models and targets, then exit\n"
      "Google Benchmark flags follow (e.g. --benchmark_repetitions=5, --benchmark_out=FILE,\n"
      "--benchmark_out_format=json, --benchmark_filter=REGEX).\n",
      kDefaultShapes);
}

bool Parse(int* argc, char** argv, Options* o) {
  int w = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string a = argv[i];
    auto val = [&](const char* flag, std::string* dst) {
      const std::string f = std::string(flag) + "=";
      if (a.compare(0, f.size(), f) == 0) {
        *dst = a.substr(f.size());
        return true;
      }
      return false;
    };
    std::string v;
    if (val("--suite", &v)) {
      o->suites = SplitList(v);
    } else if (val("--ops", &o->ops) || val("--shapes", &o->shapes) || val("--dtypes", &o->dtypes) ||
               val("--threads", &o->threads) || val("--targets", &o->targets) ||
               val("--target_ops", &o->target_ops) || val("--target_dtypes", &o->target_dtypes) ||
               val("--target_threads", &o->target_threads) || val("--ref_ops", &o->ref_ops)) {
    } else if (val("--target_reps", &v)) {
      o->target_reps = std::atoi(v.c_str());
    } else if (val("--ref_reps", &v)) {
      o->ref_reps = std::atoi(v.c_str());
    } else if (val("--bw_gib", &v)) {
      o->bw_gib = std::atof(v.c_str());
    } else if (a == "--list") {
      o->list = true;
    } else if (a == "--help" || a == "-h") {
      PrintUsage();
      return false;
    } else {
      argv[w++] = argv[i];
    }
  }
  *argc = w;
  return true;
}

bool Has(const std::vector<std::string>& v, const char* s) { return std::find(v.begin(), v.end(), s) != v.end(); }

std::vector<std::string> SupportedTargets() {
  const size_t n = xent_supported_targets(nullptr, 0);
  std::vector<const char*> names(n);
  xent_supported_targets(names.data(), n);
  return std::vector<std::string>(names.begin(), names.end());
}

int Main(int argc, char** argv) {
  Options o;
  if (!Parse(&argc, argv, &o)) return 0;
  ResolveApi();
  const std::vector<std::string> supported = SupportedTargets();

  std::string avail;
  for (const OpInfo& i : kOps) {
    if (!Available(i.op)) continue;
    avail += (avail.empty() ? "" : ",");
    avail += i.name;
  }
  std::string tlist;
  for (const std::string& t : supported) tlist += (tlist.empty() ? "" : ",") + t;

  if (o.list) {
    std::printf("xent %s (%s threading, %d threads); targets (best first): %s\n", xent_version_string(),
                xent_threading_backend(), xent_max_threads(), tlist.c_str());
    std::printf("%-20s %-9s %-22s %s\n", "op", "available", "bytes/logit (f32)", "what");
    for (const OpInfo& i : kOps) {
      char model[64];
      std::snprintf(model, sizeof(model), "%d (%dR+%dW%s)", 4 * (i.reads + i.writes), i.reads, i.writes,
                    i.inplace ? " in place" : "");
      std::printf("%-20s %-9s %-22s %s\n", i.name, Available(i.op) ? "yes" : "NO", model, i.what);
    }
    return 0;
  }

  // Operations.
  auto parse_ops = [](const std::string& list, std::vector<Op>* out) {
    if (list == "default" || list == "all") {
      for (const OpInfo& i : kOps)
        if (list == "all" || i.in_default) out->push_back(i.op);
      return true;
    }
    for (const std::string& n : SplitList(list)) {
      bool found = false;
      for (const OpInfo& i : kOps) {
        if (n == i.name) {
          out->push_back(i.op);
          found = true;
        }
      }
      if (!found) {
        std::fprintf(stderr, "bench_xent: unknown op \"%s\" (see --list)\n", n.c_str());
        return false;
      }
    }
    return true;
  };
  std::vector<Op> ops, target_ops, ref_ops;
  if (!parse_ops(o.ops, &ops) || !parse_ops(o.target_ops.empty() ? o.ops : o.target_ops, &target_ops) ||
      !parse_ops(o.ref_ops.empty() ? o.ops : o.ref_ops, &ref_ops))
    return 2;
  // Shapes.
  std::vector<std::pair<size_t, size_t>> shapes;
  for (const std::string& s : SplitList(o.shapes == "default" ? kDefaultShapes : o.shapes)) {
    unsigned long long B = 0, V = 0;
    if (std::sscanf(s.c_str(), "%llux%llu", &B, &V) != 2 || B == 0 || V == 0) {
      std::fprintf(stderr, "bench_xent: bad shape \"%s\" (want BxV)\n", s.c_str());
      return 2;
    }
    shapes.emplace_back(B, V);
  }
  auto parse_dtypes = [](const std::string& list, std::vector<xb::Dt>* out) {
    for (const std::string& d : SplitList(list)) {
      if (d == "f32") {
        out->push_back(xb::Dt::kF32);
      } else if (d == "bf16") {
        out->push_back(xb::Dt::kBF16);
      } else {
        std::fprintf(stderr, "bench_xent: unknown dtype \"%s\" (f32, bf16)\n", d.c_str());
        return false;
      }
    }
    return true;
  };
  std::vector<xb::Dt> dtypes, target_dtypes;
  if (!parse_dtypes(o.dtypes, &dtypes) ||
      !parse_dtypes(o.target_dtypes.empty() ? o.dtypes : o.target_dtypes, &target_dtypes))
    return 2;
  auto parse_threads = [](const std::string& list) {
    std::vector<int> out;
    for (const std::string& t : SplitList(list)) out.push_back(t == "all" ? 0 : std::atoi(t.c_str()));
    return out;
  };
  const std::vector<int> threads = parse_threads(o.threads);
  const std::vector<int> target_threads = parse_threads(o.target_threads.empty() ? o.threads : o.target_threads);
  std::vector<std::string> targets;
  for (const std::string& t : SplitList(o.targets)) {
    if (t == "auto" || t == "all") targets.push_back("auto");
    if (t == "others" || t == "all") {
      for (size_t i = 1; i < supported.size(); ++i) targets.push_back(supported[i]);
    }
    if (t != "auto" && t != "all" && t != "others") targets.push_back(t);
  }

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  benchmark::AddCustomContext("xent_version", xent_version_string());
  benchmark::AddCustomContext("xent_threading", xent_threading_backend());
  benchmark::AddCustomContext("xent_max_threads", std::to_string(xent_max_threads()));
  benchmark::AddCustomContext("xent_targets", tlist);
  benchmark::AddCustomContext("xent_ops_available", avail);
  benchmark::AddCustomContext("bandwidth_isa", xb::BwIsa());
  benchmark::AddCustomContext("scalar_ref_openmp", xb::RefHasOpenMP() ? "yes" : "no");

  auto min_stat = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
  auto max_stat = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
  auto name_threads = [&](int t, bool ref) {
    return t > 0 ? t : (ref ? AllThreads() : static_cast<int>(xent_max_threads()));
  };

  if (Has(o.suites, "bandwidth")) {
    const xb::BwKind kinds[] = {xb::BwKind::kRead, xb::BwKind::kCopy, xb::BwKind::kCopyNT, xb::BwKind::kInPlace};
    for (int t : threads) {
      for (xb::BwKind k : kinds) {
        const std::string name =
            std::string("bandwidth/") + xb::BwKindName(k) + "/threads:" + std::to_string(name_threads(t, true));
        const double gib = o.bw_gib;
        benchmark::RegisterBenchmark(name.c_str(), [k, t, gib](benchmark::State& st) { RunBandwidth(st, k, t, gib); })
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond)
            ->Iterations(2)
            ->ComputeStatistics("min", min_stat)
            ->ComputeStatistics("max", max_stat);
      }
    }
  }

  // xent (auto and forced targets) and the scalar reference, registered
  // shape by shape so that --benchmark_enable_random_interleaving=true mixes
  // the repetitions of everything measured on one shape (a fair comparison
  // on a noisy machine; inputs stay generated per shape and dtype).
  auto in = [](const auto& v, const auto& x) { return std::find(v.begin(), v.end(), x) != v.end(); };
  std::vector<int> all_threads = threads;
  for (int t : target_threads)
    if (!in(all_threads, t)) all_threads.push_back(t);
  const bool run_xent = Has(o.suites, "xent"), run_ref = Has(o.suites, "ref");
  for (const auto& shape : shapes) {
    for (xb::Dt dt : {xb::Dt::kF32, xb::Dt::kBF16}) {
      for (const OpInfo& info : kOps) {
        const Op op = info.op;
        for (int t : all_threads) {
          std::vector<std::pair<std::string, bool>> cases;  // (target, ref)
          for (const std::string& target : targets) {
            if (!run_xent) break;
            const bool ok = target == "auto"
                                ? in(ops, op) && in(dtypes, dt) && in(threads, t)
                                : in(target_ops, op) && in(target_dtypes, dt) && in(target_threads, t);
            if (ok) cases.emplace_back(target, false);
          }
          if (run_ref && in(ref_ops, op) && in(dtypes, dt) && in(threads, t)) cases.emplace_back("", true);
          for (const auto& tc : cases) {
            const bool ref = tc.second;
            Case c{op, dt, shape.first, shape.second, t, tc.first, ref};
            char name[256];
            std::snprintf(name, sizeof(name), "%s/%s/%s/%zux%zu/threads:%d%s%s", ref ? "scalar_ref" : "xent",
                          info.name, dt == xb::Dt::kF32 ? "f32" : "bf16", c.B, c.V, name_threads(t, ref),
                          ref ? "" : "/target:", ref ? "" : c.target.c_str());
            auto* b = benchmark::RegisterBenchmark(name, [c](benchmark::State& st) { RunCase(st, c); });
            b->UseManualTime()->Unit(benchmark::kMillisecond)->ComputeStatistics("min", min_stat);
            if (ref && o.ref_reps > 0) b->Repetitions(o.ref_reps);
            if (!ref && c.target != "auto" && o.target_reps > 0) b->Repetitions(o.target_reps);
            // Large shapes: one call per repetition; small ones: enough calls
            // for a stable time.
            if (c.B * c.V >= (size_t{1} << 22)) {
              b->Iterations(1);
            } else {
              b->MinTime(0.1);
            }
          }
        }
      }
    }
  }

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (g_sink == 12345.678f) std::printf(" ");  // keep g_sink alive
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
