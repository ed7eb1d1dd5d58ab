// The case of one xent_linear_cross_entropy call for the linear CE suites
// (linear_ce_test.cc: against the float64 reference on every target;
// linear_ce_args_test.cc: thread counts and bad input): its configuration,
// buffers and args struct.
#ifndef XENT_TESTS_LINEAR_CE_CASE_H_
#define XENT_TESTS_LINEAR_CE_CASE_H_

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "src/dtype.h"
#include "tests/common/mat.h"

namespace xent_test {

inline bool HaveBlas() { return std::strcmp(xent_blas_backend(), "none") != 0; }

// Whether libxent runs bf16 products as native bf16 GEMMs (oneDNN, CPU with
// AVX512_BF16, XENT_NATIVE_BF16 not 0, XENT_BF16_GEMM and the CPU's vendor:
// src/dtype.h, Bf16GemmDefault): then G is rounded
// to bf16 before the gradient products (relative error up to 2^-8 of each
// term of their sums).
// (Only when every gradient wanted is bf16: the caller passes whether so.)
inline bool Bf16GemmActive(DType dtype, bool bf16_grads) {
#if defined(XENT_TEST_ONEDNN)
  return dtype == DType::kBF16 && bf16_grads && xent::Bf16GemmDefault();
#else
  (void)dtype;
  (void)bf16_grads;
  return false;
#endif
}

struct LceConfig {
  size_t B = 24, V = 300, H = 40;
  DType dtype = DType::kF32;        // hidden and linear_weight
  DType bias_dtype = DType::kAuto;  // kAuto = no bias
  DType gh_dtype = DType::kAuto;    // gradient dtypes (kAuto = the input's)
  DType gw_dtype = DType::kAuto;
  DType gb_dtype = DType::kAuto;
  bool want_gh = true, want_gw = true, want_gb = true;
  bool want_lse = true;
  bool weight = false, row_scale = false, i32 = false;
  int reduction = XENT_REDUCTION_MEAN;
  float eps = 0, z_loss = 0, softcap = 0, grad_scale = 1;
  int ignore_every = 0;  // every k-th row ignored (k > 0)
  int accumulate = 0;    // XENT_ACCUMULATE_* bits; outputs start random
  size_t scratch = 0;    // scratch_bytes
  size_t pad = 0;        // extra row stride of every matrix
  size_t offset = 0;     // byte misalignment of every matrix
  double hidden_sigma = 1.0;
  size_t masked_classes = 0;  // bias = -inf on the first k classes (needs a bias)
  uint32_t seed = 1;
  int32_t num_threads = 0;
};

// A config of B rows, V classes and H hidden units (the rest the defaults).
inline LceConfig Sized(size_t B, size_t V, size_t H) {
  LceConfig c;
  c.B = B;
  c.V = V;
  c.H = H;
  return c;
}
// The same with the inputs and a bias in dtype dt.
inline LceConfig Sized(size_t B, size_t V, size_t H, DType dt) {
  LceConfig c = Sized(B, V, H);
  c.dtype = dt;
  c.bias_dtype = dt;
  return c;
}

inline std::string Describe(const LceConfig& c) {
  char buf[400];
  std::snprintf(buf, sizeof(buf),
                "B=%zu V=%zu H=%zu dt=%d bias=%d gh=%d gw=%d gb=%d lse=%d w=%d rs=%d red=%d eps=%g z=%g cap=%g "
                "gs=%g ign=%d acc=%d scratch=%zu pad=%zu off=%zu masked=%zu",
                c.B, c.V, c.H, static_cast<int>(c.dtype), static_cast<int>(c.bias_dtype), static_cast<int>(c.gh_dtype),
                static_cast<int>(c.gw_dtype), static_cast<int>(c.gb_dtype), c.want_lse, c.weight, c.row_scale,
                c.reduction, c.eps, c.z_loss, c.softcap, c.grad_scale, c.ignore_every, c.accumulate, c.scratch, c.pad,
                c.offset, c.masked_classes);
  return buf;
}

inline DType Resolve(DType out, DType in) { return out == DType::kAuto ? in : out; }

// Inputs and outputs of one call.
struct LceCase {
  LceConfig c;
  Mat hidden, weight_m, bias;
  std::vector<int64_t> y64;
  std::vector<int32_t> y32;
  Vec cw, rs;
  Mat gh, gw, gb;
  Vec loss, row_loss, lse;
  std::vector<double> gh0, gw0, gb0;  // initial output values (accumulate)

  explicit LceCase(const LceConfig& cfg) : c(cfg), cw(cfg.V), rs(cfg.B), loss(1), row_loss(cfg.B), lse(cfg.B) {
    const size_t B = c.B, V = c.V, H = c.H;
    std::mt19937 rng(c.seed);
    hidden = Mat(B, H, c.dtype, H + c.pad, c.offset);
    weight_m = Mat(V, H, c.dtype, H + c.pad, c.offset);
    const auto hv = RandomNormal(B * H, c.hidden_sigma, c.seed + 1);
    const auto wv = RandomNormal(V * H, 1.0 / std::sqrt(static_cast<double>(H)), c.seed + 2);
    for (size_t i = 0; i < B; ++i)
      for (size_t k = 0; k < H; ++k) hidden.set(i, k, hv[i * H + k]);
    for (size_t v = 0; v < V; ++v)
      for (size_t k = 0; k < H; ++k) weight_m.set(v, k, wv[v * H + k]);
    if (c.bias_dtype != DType::kAuto) {
      bias = Mat(1, V, c.bias_dtype, V, c.offset);
      const auto bv = RandomNormal(V, 0.5, c.seed + 3);
      for (size_t v = 0; v < V; ++v)
        bias.set(0, v, v < c.masked_classes ? -std::numeric_limits<double>::infinity() : bv[v]);
    }
    y64.resize(B);
    y32.resize(B);
    for (size_t i = 0; i < B; ++i) {
      int64_t t = static_cast<int64_t>(c.masked_classes + rng() % (V - c.masked_classes));
      if (c.ignore_every > 0 && i % static_cast<size_t>(c.ignore_every) == 1) t = -100;
      y64[i] = t;
      y32[i] = static_cast<int32_t>(t);
    }
    std::uniform_real_distribution<float> u(0.2f, 2.0f), s(-2.0f, 2.0f);
    for (size_t v = 0; v < V; ++v) cw[v] = u(rng);
    for (size_t i = 0; i < B; ++i) rs[i] = s(rng);
    // (grad_linear_bias's AUTO dtype is linear_weight's.)
    const DType ghd = Resolve(c.gh_dtype, c.dtype), gwd = Resolve(c.gw_dtype, c.dtype),
                gbd = Resolve(c.gb_dtype, c.dtype);
    gh = Mat(B, H, ghd, H + c.pad + 1, c.offset);
    gw = Mat(V, H, gwd, H + c.pad + 2, c.offset);
    gb = Mat(1, V, gbd, V, c.offset);
    // Outputs start with random values: overwritten, or accumulated into.
    const auto r0 = RandomNormal(B * H + V * H + V, 0.1, c.seed + 4);
    gh0.resize(B * H);
    gw0.resize(V * H);
    gb0.resize(V);
    for (size_t i = 0; i < B; ++i)
      for (size_t k = 0; k < H; ++k) gh0[i * H + k] = gh.set(i, k, r0[i * H + k]);
    for (size_t v = 0; v < V; ++v)
      for (size_t k = 0; k < H; ++k) gw0[v * H + k] = gw.set(v, k, r0[B * H + v * H + k]);
    for (size_t v = 0; v < V; ++v) gb0[v] = gb.set(0, v, r0[B * H + V * H + v]);
  }

  void Args(xent_linear_cross_entropy_args* a) {
    ASSERT_EQ(XENT_ARGS_INIT(xent_linear_cross_entropy_args, a), XENT_OK);
    a->batch = c.B;
    a->num_classes = c.V;
    a->hidden_size = c.H;
    // Required pointers must be non-NULL even for B = 0.
    static const int64_t dummy = 0;
    a->hidden = c.B ? hidden.data() : &dummy;
    a->hidden_stride = hidden.stride();
    a->hidden_dtype = hidden.dt();
    a->linear_weight = weight_m.data();
    a->linear_weight_stride = weight_m.stride();
    a->linear_weight_dtype = weight_m.dt();
    if (c.bias_dtype != DType::kAuto) {
      a->linear_bias = bias.data();
      a->linear_bias_dtype = bias.dt();
    }
    a->target = c.B == 0 ? static_cast<const void*>(&dummy)
                : c.i32  ? static_cast<const void*>(y32.data())
                         : static_cast<const void*>(y64.data());
    a->target_dtype = c.i32 ? XENT_I32 : XENT_I64;
    a->weight = c.weight ? cw.data() : nullptr;
    a->row_scale = c.row_scale ? rs.data() : nullptr;
    a->reduction = c.reduction;
    a->label_smoothing = c.eps;
    a->z_loss = c.z_loss;
    a->softcap = c.softcap;
    a->grad_scale = c.grad_scale;
    a->accumulate = c.accumulate;
    a->scratch_bytes = c.scratch;
    a->loss = loss.data();
    a->row_loss = row_loss.data();
    a->lse = c.want_lse ? lse.data() : nullptr;
    if (c.want_gh) {
      a->grad_hidden = gh.data();
      a->grad_hidden_stride = gh.stride();
      a->grad_hidden_dtype = static_cast<int32_t>(c.gh_dtype);
    }
    if (c.want_gw) {
      a->grad_linear_weight = gw.data();
      a->grad_linear_weight_stride = gw.stride();
      a->grad_linear_weight_dtype = static_cast<int32_t>(c.gw_dtype);
    }
    if (c.want_gb) {
      a->grad_linear_bias = gb.data();
      a->grad_linear_bias_dtype = static_cast<int32_t>(c.gb_dtype);
    }
    a->num_threads = c.num_threads;
  }

  xent_status Run() {
    xent_linear_cross_entropy_args a;
    Args(&a);
    return xent_linear_cross_entropy(&a);
  }
};

}  // namespace xent_test

#endif  // XENT_TESTS_LINEAR_CE_CASE_H_
