#include "bench_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "bandwidth.h"
#include "tests/common/case.h"

namespace xent_bench {

namespace abi = xent::abi;
using xent_test::Buffer;
using xent_test::CaseSpec;
using xent_test::Layout;

float g_sink = 0.0f;

const OpInfo kOps[kNumOps] = {
    {Op::kCeFwd, "ce_fwd", 1, 0, false, true, "cross-entropy forward, int64 labels, mean loss"},
    {Op::kCeFwdGrad, "ce_fwd_grad", 1, 1, false, true, "cross-entropy forward + gradient into a separate buffer"},
    {Op::kCeFwdGradInPlace, "ce_fwd_grad_inplace", 1, 1, true, false,
     "cross-entropy forward + gradient written over the logits"},
    {Op::kCeSoftcapFwdGrad, "ce_softcap_fwd_grad", 1, 1, false, false,
     "cross-entropy with logit softcap 30 (Gemma 2), forward + gradient into a separate buffer"},
    {Op::kKlFwdGrad, "kl_fwd_grad", 2, 1, false, true,
     "KL(softmax(teacher) || softmax(student)) from two logit batches, batchmean, + grad wrt student"},
    {Op::kJsdFwdGrad, "jsd_fwd_grad", 2, 1, false, false,
     "generalized JSD (beta 0.5) from two logit batches, batchmean, + grad wrt student"},
    {Op::kKlDivFwdGrad, "kl_div_fwd_grad", 2, 1, false, false,
     "F.kl_div(input log-probs, target probs), batchmean, + grad wrt input"},
    {Op::kTokenLogprobs, "token_logprobs", 1, 0, false, true,
     "per-row log-probability of the label (log_softmax + gather)"},
    {Op::kSoftmax, "softmax", 1, 1, false, true, "probs = softmax(logits) into a separate buffer"},
    {Op::kSoftmaxBackward, "softmax_backward", 2, 1, false, false,
     "grad_input = y (g - sum g y) from probs y and grad_output g"},
    {Op::kBceFwdGrad, "bce_fwd_grad", 2, 1, false, false,
     "BCE with logits (targets in the logits' dtype), mean, + gradient"},
};

const OpInfo& Info(Op op) {
  for (const OpInfo& i : kOps)
    if (i.op == op) return i;
  std::abort();
}

int AllThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// ---------------------------------------------------------------------------
// Buffers: one per role, 64-byte aligned, pre-faulted when (re)allocated,
// reused across benchmarks; the content is regenerated only when the shape,
// dtype or kind changes (or after an in-place benchmark overwrote it).
namespace {

enum class Content { kLogits, kProbs01, kSmallProbs, kSigned };

struct Storage {
  std::unique_ptr<Buffer> buf;
  size_t cap = 0;   // bytes
  std::string key;  // what it holds now ("" = nothing valid)
  void* p() const { return buf ? buf->data() : nullptr; }
};
// Inputs are kept per dtype (so benchmarks of both dtypes can interleave
// without regenerating data); the output buffer is shared.
enum Slot { kSlotX = 0, kSlotT = 1 };
Storage g_in[2][2];  // [dtype][slot]
Storage g_out;
Storage& In(Slot s, Dt dt) { return g_in[dt == Dt::kF32 ? 0 : 1][s]; }
std::vector<int64_t> g_labels;
std::string g_labels_key;
std::vector<float> g_rows;  // B per-row outputs

void* Ensure(Storage& b, size_t bytes) {
  if (b.cap >= bytes) return b.p();
  const size_t rounded = (bytes + 63) / 64 * 64;
  b.buf.reset();
  b.key.clear();
  b.buf.reset(
      new Buffer(Layout{1, rounded / 4, 0, xent::DType::kF32, 0}, xent_test::Guard::kNone, xent_test::Content::kInput));
  // Pre-fault every page (first touch costs ~1 ns per float on this class of
  // machine, more than the bandwidth floor).
  ParallelFill(b.buf->as<float>(), rounded / 4, 0.0f, 0);
  b.cap = rounded;
  return b.p();
}

// Index-hashed values (parallel, reproducible): logits triangular on [-6, 6],
// probabilities in [0, 1) or [0, 2 / V), signed in [-1, 1).
void Generate(void* dst, Dt dt, size_t n, Content c, uint64_t seed, size_t V) {
  const long long nn = static_cast<long long>(n);
  const float small = 2.0f / static_cast<float>(V);
  const xent::DType t = dt == Dt::kF32 ? xent::DType::kF32 : xent::DType::kBF16;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (long long i = 0; i < nn; ++i) {
    float u1, u2, v = 0.0f;
    xent_test::HashUniforms(seed, static_cast<uint64_t>(i), &u1, &u2);
    switch (c) {
      case Content::kLogits: v = 6.0f * (u1 + u2 - 1.0f); break;
      case Content::kProbs01: v = u1; break;
      case Content::kSmallProbs: v = u1 * small; break;
      case Content::kSigned: v = 2.0f * u1 - 1.0f; break;
    }
    xent::StoreScalarF32(dst, static_cast<size_t>(i), t, v);
  }
}

void Fill(Slot s, Dt dt, size_t B, size_t V, Content c, uint64_t seed) {
  Storage& b = In(s, dt);
  Ensure(b, B * V * DtSize(dt));
  char key[160];
  std::snprintf(key, sizeof(key), "%d/%zux%zu/%d/%llu", static_cast<int>(dt), B, V, static_cast<int>(c),
                static_cast<unsigned long long>(seed));
  if (b.key == key) return;
  Generate(b.p(), dt, B * V, c, seed, V);
  b.key = key;
}

}  // namespace

void InvalidateLogits(Dt dt) { In(kSlotX, dt).key.clear(); }

void Prepare(const Case& c) {
  const OpInfo& info = Info(c.op);
  const bool sb = c.op == Op::kSoftmaxBackward;
  Fill(kSlotX, c.dt, c.B, c.V, sb ? Content::kSmallProbs : Content::kLogits, 1);
  if (info.reads == 2) {
    Content tc = Content::kLogits;
    if (c.op == Op::kBceFwdGrad) tc = Content::kProbs01;
    if (c.op == Op::kKlDivFwdGrad) tc = Content::kSmallProbs;
    if (sb) tc = Content::kSigned;
    Fill(kSlotT, c.dt, c.B, c.V, tc, 2);
  }
  if (info.writes == 1 && !info.inplace) Ensure(g_out, c.B * c.V * DtSize(c.dt));
  const std::string key = std::to_string(c.B) + "x" + std::to_string(c.V);
  if (g_labels_key != key) {
    g_labels.resize(c.B);
    for (size_t i = 0; i < c.B; ++i) g_labels[i] = static_cast<int64_t>(xent_test::Mix64(7000000 + i) % c.V);
    g_labels_key = key;
  }
  if (g_rows.size() < c.B) g_rows.resize(c.B);
}

// ---------------------------------------------------------------------------
namespace {

// The args of the case on its first `rows` rows, through the operation table.
CaseSpec Spec(const Case& c, size_t rows, float* loss, void* out) {
  const OpInfo& info = Info(c.op);
  const xent::DType t = c.dt == Dt::kF32 ? xent::DType::kF32 : xent::DType::kBF16;
  const Layout mat{rows, c.V, c.V, t, 0}, vec{rows, 1, 1, xent::DType::kF32, 0}, one{1, 1, 1, xent::DType::kF32, 0};
  const Layout labels{rows, 1, 1, xent::DType::kI64, 0};
  void* x = In(kSlotX, c.dt).p();
  void* tt = In(kSlotT, c.dt).p();
  const char* in = "logits";
  const char* grad = "grad";
  CaseSpec s(abi::kCrossEntropy, rows, c.V);
  switch (c.op) {
    case Op::kCeFwd:
    case Op::kCeFwdGrad:
    case Op::kCeFwdGradInPlace:
    case Op::kCeSoftcapFwdGrad:
      s.View("target", g_labels.data(), labels).View("loss", loss, one).Set("reduction", XENT_REDUCTION_MEAN);
      if (c.op == Op::kCeSoftcapFwdGrad) s.Set("softcap", kBenchSoftcap);
      break;
    case Op::kKlFwdGrad:
    case Op::kJsdFwdGrad:
      s = CaseSpec(abi::kDivergence, rows, c.V);
      in = "input";
      grad = "grad_input";
      s.View("target", tt, mat).View("loss", loss, one).Set("input_kind", XENT_DIST_LOGITS);
      s.Set("target_kind", XENT_DIST_LOGITS).Set("reduction", XENT_REDUCTION_BATCHMEAN).Set("beta", 0.5);
      s.Set("divergence", c.op == Op::kKlFwdGrad ? XENT_DIVERGENCE_KL : XENT_DIVERGENCE_JSD);
      break;
    case Op::kKlDivFwdGrad:
      s = CaseSpec(abi::kDivergence, rows, c.V);
      in = "input";
      grad = "grad_input";
      s.View("target", tt, mat).View("loss", loss, one).Set("input_kind", XENT_DIST_LOG_PROBS);
      s.Set("target_kind", XENT_DIST_PROBS).Set("reduction", XENT_REDUCTION_BATCHMEAN);
      break;
    case Op::kTokenLogprobs:
      s = CaseSpec(abi::kTokenLogprobs, rows, c.V);
      s.View("target", g_labels.data(), labels).View("logprob", g_rows.data(), vec);
      break;
    case Op::kSoftmax:
      s = CaseSpec(abi::kSoftmax, rows, c.V);
      grad = "probs";
      break;
    case Op::kSoftmaxBackward:
      s = CaseSpec(abi::kSoftmaxBackward, rows, c.V);
      in = "output";
      grad = "grad_input";
      s.View("grad_output", tt, mat).Set("output_kind", XENT_DIST_PROBS);
      break;
    case Op::kBceFwdGrad:
      s = CaseSpec(abi::kBce, rows, c.V);
      s.View("target", tt, mat).View("loss", loss, one).Set("reduction", XENT_REDUCTION_MEAN);
      break;
  }
  s.View(in, x, mat);
  if (info.writes == 1) {
    if (info.inplace)
      s.InPlace(grad);
    else
      s.View(grad, out, mat);
  }
  s.guard = xent_test::Guard::kNone;
  s.fill = false;
  s.num_threads = c.threads;
  return s;
}

}  // namespace

XentCall::XentCall(const Case& c, size_t rows) : c_(c), call_(new xent_test::Case(Spec(c, rows, &loss_, g_out.p()))) {}
XentCall::~XentCall() = default;

xent_status XentCall::Run(float* loss_out) {
  loss_ = 0.0f;
  const xent_status rc = call_->Run();
  const float loss = c_.op == Op::kTokenLogprobs ? g_rows[0] : loss_;
  g_sink += loss;
  if (loss_out) *loss_out = loss;
  return rc;
}

double CallRef(const Case& c, size_t rows, void* out_override, float* rows_override) {
  const OpInfo& info = Info(c.op);
  RefProblem p;
  p.B = rows;
  p.V = c.V;
  p.dt = c.dt;
  p.x = In(kSlotX, c.dt).p();
  p.t = In(kSlotT, c.dt).p();
  p.labels = g_labels.data();
  p.out = out_override ? out_override : (info.inplace ? In(kSlotX, c.dt).p() : g_out.p());
  p.row_out = rows_override ? rows_override : g_rows.data();
  p.threads = c.threads;
  p.beta = 0.5f;
  double r = 0.0;
  switch (c.op) {
    case Op::kCeFwd: r = RefCeFwd(p); break;
    case Op::kCeFwdGrad:
    case Op::kCeFwdGradInPlace: r = RefCeFwdGrad(p); break;
    case Op::kCeSoftcapFwdGrad: r = RefCeSoftcapFwdGrad(p, kBenchSoftcap); break;
    case Op::kKlFwdGrad: r = RefKlFwdGrad(p); break;
    case Op::kJsdFwdGrad: r = RefJsdFwdGrad(p); break;
    case Op::kKlDivFwdGrad: r = RefKlDivFwdGrad(p); break;
    case Op::kTokenLogprobs: r = RefTokenLogprobs(p); break;
    case Op::kSoftmax: r = RefSoftmax(p); break;
    case Op::kSoftmaxBackward: r = RefSoftmaxBackward(p); break;
    case Op::kBceFwdGrad: r = RefBceFwdGrad(p); break;
  }
  g_sink += static_cast<float>(r);
  return r;
}

Check CrossCheck(const Case& c, size_t rows, float xent_loss) {
  const OpInfo& info = Info(c.op);
  Check k;
  if (info.inplace) return k;  // the logits are gone
  const size_t n = rows * c.V;
  const xent::DType t = c.dt == Dt::kF32 ? xent::DType::kF32 : xent::DType::kBF16;
  std::vector<uint8_t> ref_out(info.writes ? n * DtSize(c.dt) : 0);
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
      const double a = xent::LoadScalarF32(g_out.p(), i, t), b = xent::LoadScalarF32(ref_out.data(), i, t);
      err = std::max(err, std::fabs(a - b));
      mx = std::max(mx, std::fabs(b));
      if (std::isnan(a) != std::isnan(b)) err = INFINITY;
    }
    k.out_rel = mx > 0 ? err / mx : err;
  }
  return k;
}

}  // namespace xent_bench
