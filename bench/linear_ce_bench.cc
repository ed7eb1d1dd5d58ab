// Fused linear cross-entropy benchmark, one variant per process (so that its
// peak memory is its own), driven by bench/linear_ce.py:
//
//   linear_ce_bench --variant=xent|gemm3 --shape=NxHxV --dtype=f32|bf16
//                   --threads=T --reps=R [--scratch=BYTES] [--grad=auto|f32]
//
//   xent   xent_linear_cross_entropy: loss + grad_hidden + grad_linear_weight
//          (+ grad_linear_bias when --bias) in one call, T threads (xent's own;
//          the BLAS single-threaded on xent's tiles).
//   gemm3  the three GEMMs of a step alone through the same BLAS with its own
//          threading (T threads): logits = h W^T (N x V), grad_h = G W,
//          grad_W = G^T h, on f32 operands (bf16 inputs widened before the
//          timing: Debian's OpenBLAS has no bf16 GEMM), the floor of any
//          implementation built on this BLAS. bf16 in a build with oneDNN
//          (which libxent then uses for bf16 on CPUs with AVX512_BF16):
//          oneDNN's bf16 matmuls instead (f32 outputs, G given in bf16), with
//          its OpenMP threading (T threads).
//
// Prints one JSON object: seconds per step of every repetition, and the peak
// RSS of the repetitions above the RSS before the first one (inputs and
// caller-provided outputs allocated and touched; /proc/self/clear_refs resets
// the high-water mark), plus the bytes of the gradient outputs, which a
// framework allocates inside the step.
#include <cblas.h>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "src/dtype.h"
#include "xent/xent.h"

#if defined(XENT_BENCH_ONEDNN)
#include <dnnl.h>
extern "C" void omp_set_num_threads(int);
#endif

namespace {

size_t ProcStatusKb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(f, line)) {
    if (line.compare(0, n, key) == 0) return std::strtoull(line.c_str() + n + 1, nullptr, 10);
  }
  return 0;
}

// CPU seconds (user + system) of the whole process so far.
double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

void ResetPeak() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
float FromBf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::string Arg(int argc, char** argv, const char* name, const char* def) {
  const std::string key = std::string("--") + name + "=";
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], key.c_str(), key.size()) == 0) return argv[i] + key.size();
  return def;
}
bool Flag(int argc, char** argv, const char* name) {
  const std::string key = std::string("--") + name;
  for (int i = 1; i < argc; ++i)
    if (key == argv[i]) return true;
  return false;
}

#if defined(XENT_BENCH_ONEDNN)
// One row-major bf16 x bf16 -> f32 matmul (op(A) m x k, op(B) k x n) with
// oneDNN: created once, run by Exec.
struct DnnlMatmul {
  dnnl_primitive_t prim = nullptr;
  dnnl_memory_t src = nullptr, wei = nullptr, dst = nullptr;
  bool Init(dnnl_engine_t eng, bool ta, bool tb, size_t m, size_t n, size_t k, const uint16_t* a, size_t lda,
            const uint16_t* b, size_t ldb, float* c, size_t ldc) {
    auto md = [](dnnl_memory_desc_t* d, size_t r, size_t cl, size_t rs, size_t cs, dnnl_data_type_t t) {
      dnnl_dims_t dims = {static_cast<dnnl_dim_t>(r), static_cast<dnnl_dim_t>(cl)};
      dnnl_dims_t st = {static_cast<dnnl_dim_t>(rs), static_cast<dnnl_dim_t>(cs)};
      return dnnl_memory_desc_init_by_strides(d, 2, dims, t, st) == dnnl_success;
    };
    dnnl_memory_desc_t sm, wm, dm;
    if (!md(&sm, m, k, ta ? 1 : lda, ta ? lda : 1, dnnl_bf16) ||
        !md(&wm, k, n, tb ? 1 : ldb, tb ? ldb : 1, dnnl_bf16) || !md(&dm, m, n, ldc, 1, dnnl_f32))
      return false;
    dnnl_matmul_desc_t d;
    dnnl_primitive_desc_t pd = nullptr;
    if (dnnl_matmul_desc_init(&d, &sm, &wm, nullptr, &dm) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &d, nullptr, eng, nullptr) != dnnl_success)
      return false;
    const bool ok = dnnl_primitive_create(&prim, pd) == dnnl_success;
    dnnl_primitive_desc_destroy(pd);
    return ok && dnnl_memory_create(&src, &sm, eng, const_cast<uint16_t*>(a)) == dnnl_success &&
           dnnl_memory_create(&wei, &wm, eng, const_cast<uint16_t*>(b)) == dnnl_success &&
           dnnl_memory_create(&dst, &dm, eng, c) == dnnl_success;
  }
  bool Exec(dnnl_stream_t s) const {
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
    return dnnl_primitive_execute(prim, s, 3, args) == dnnl_success && dnnl_stream_wait(s) == dnnl_success;
  }
};
#endif

// A 2x8x8 call of xent_linear_cross_entropy: libxent's BLAS setup (the
// OpenBLAS kernel set it chooses on first use, src/blas.cc), so that gemm3
// measures the products with the kernels xent's run with.
bool XentBlasSetup() {
  std::vector<float> h(2 * 8, 0.5f), W(8 * 8, 0.25f), gh(2 * 8), gw(8 * 8);
  const int64_t t[2] = {1, 3};
  float loss = 0.0f;
  xent_linear_cross_entropy_args a;
  XENT_ARGS_INIT(xent_linear_cross_entropy_args, &a);
  a.batch = 2;
  a.num_classes = 8;
  a.hidden_size = 8;
  a.hidden = h.data();
  a.linear_weight = W.data();
  a.hidden_dtype = a.linear_weight_dtype = XENT_F32;
  a.target = t;
  a.loss = &loss;
  a.grad_hidden = gh.data();
  a.grad_linear_weight = gw.data();
  a.num_threads = 1;
  return xent_linear_cross_entropy(&a) == XENT_OK;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string variant = Arg(argc, argv, "variant", "xent");
  const std::string shape = Arg(argc, argv, "shape", "4096x1024x32000");
  const std::string dtype = Arg(argc, argv, "dtype", "f32");
  const int threads = std::atoi(Arg(argc, argv, "threads", "1").c_str());
  const int reps = std::atoi(Arg(argc, argv, "reps", "5").c_str());
  const size_t scratch = std::strtoull(Arg(argc, argv, "scratch", "0").c_str(), nullptr, 10);
  const bool grad_f32 = Arg(argc, argv, "grad", "auto") == "f32";
  const bool with_bias = Flag(argc, argv, "bias");
  size_t N = 0, H = 0, V = 0;
  if (std::sscanf(shape.c_str(), "%zux%zux%zu", &N, &H, &V) != 3) {
    std::fprintf(stderr, "bad --shape %s (NxHxV)\n", shape.c_str());
    return 2;
  }
  const bool bf16 = dtype == "bf16";

  // Inputs: h ~ N(0, 1), W ~ N(0, 1/H) (logits ~ N(0, 1)), targets uniform.
  std::mt19937 rng(1);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  const float ws = 1.0f / std::sqrt(static_cast<float>(H));
  std::vector<float> h(N * H), W(V * H), bias(with_bias ? V : 0);
  for (auto& x : h) x = n01(rng);
  for (auto& x : W) x = n01(rng) * ws;
  for (auto& x : bias) x = n01(rng) * 0.1f;
  std::vector<int64_t> target(N);
  for (auto& t : target) t = static_cast<int64_t>(rng() % V);
  std::vector<uint16_t> h16, W16;
  if (bf16) {
    h16.resize(N * H);
    W16.resize(V * H);
    for (size_t i = 0; i < h.size(); ++i) h16[i] = ToBf16(h[i]);
    for (size_t i = 0; i < W.size(); ++i) W16[i] = ToBf16(W[i]);
    if (variant == "xent") {
      std::vector<float>().swap(h);
      std::vector<float>().swap(W);
#if defined(XENT_BENCH_ONEDNN)
    } else if (variant == "gemm3" && xent::Bf16GemmDefault()) {  // oneDNN bf16 matmuls where libxent takes them
      std::vector<float>().swap(h);
      std::vector<float>().swap(W);
#endif
    } else {  // gemm3 runs on the widened values
      for (size_t i = 0; i < h.size(); ++i) h[i] = FromBf16(h16[i]);
      for (size_t i = 0; i < W.size(); ++i) W[i] = FromBf16(W16[i]);
      std::vector<uint16_t>().swap(h16);
      std::vector<uint16_t>().swap(W16);
    }
  }
  const size_t out_es = (bf16 && !grad_f32) ? 2 : 4;
  const double out_bytes = static_cast<double>((N * H + V * H + (with_bias ? V : 0)) * out_es);

  std::vector<double> times, cpu;
  float loss = 0.0f;
  size_t base_kb = 0, peak_kb = 0;
  std::string blas_info;
  if (variant == "xent") {
    // Caller-provided gradient outputs, touched before the measurement.
    std::vector<unsigned char> gh(N * H * out_es, 0), gw(V * H * out_es, 0), gb(V * out_es, 0);
    xent_linear_cross_entropy_args a;
    XENT_ARGS_INIT(xent_linear_cross_entropy_args, &a);
    a.batch = N;
    a.num_classes = V;
    a.hidden_size = H;
    a.hidden = bf16 ? static_cast<const void*>(h16.data()) : h.data();
    a.linear_weight = bf16 ? static_cast<const void*>(W16.data()) : W.data();
    a.hidden_dtype = a.linear_weight_dtype = bf16 ? XENT_BF16 : XENT_F32;
    if (with_bias) a.linear_bias = bias.data();
    a.target = target.data();
    a.loss = &loss;
    a.grad_hidden = gh.data();
    a.grad_linear_weight = gw.data();
    if (with_bias) a.grad_linear_bias = gb.data();
    const int32_t gd = grad_f32 ? XENT_F32 : XENT_DTYPE_AUTO;
    a.grad_hidden_dtype = a.grad_linear_weight_dtype = a.grad_linear_bias_dtype = gd;
    a.scratch_bytes = scratch;
    a.num_threads = threads;
    ResetPeak();
    base_kb = ProcStatusKb("VmRSS:");
    for (int r = 0; r < reps; ++r) {
      const double c0 = CpuSeconds();
      const auto t0 = std::chrono::steady_clock::now();
      const xent_status st = xent_linear_cross_entropy(&a);
      const auto t1 = std::chrono::steady_clock::now();
      cpu.push_back(CpuSeconds() - c0);
      if (st != XENT_OK) {
        std::fprintf(stderr, "xent_linear_cross_entropy: %s: %s\n", xent_status_string(st), xent_last_error());
        return 1;
      }
      times.push_back(std::chrono::duration<double>(t1 - t0).count());
    }
    peak_kb = ProcStatusKb("VmHWM:");
    blas_info = xent_blas_backend();
    if (blas_info == "openblas") blas_info += std::string(" ") + openblas_get_corename();
#if defined(XENT_BENCH_ONEDNN)
  } else if (variant == "gemm3" && bf16 && xent::Bf16GemmDefault()) {
    omp_set_num_threads(threads);
    blas_info = "onednn bf16";
    dnnl_engine_t eng = nullptr;
    dnnl_stream_t strm = nullptr;
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&strm, eng, dnnl_stream_default_flags) != dnnl_success) {
      std::fprintf(stderr, "oneDNN engine / stream\n");
      return 1;
    }
    std::vector<float> L(N * V, 0.0f), gh(N * H, 0.0f), gw(V * H, 0.0f);
    std::vector<uint16_t> G16(N * V);  // the logits' gradient in bf16 (values of no importance)
    for (size_t i = 0; i < G16.size(); ++i) G16[i] = ToBf16(1e-3f * static_cast<float>(i % 7));
    DnnlMatmul m1, m2, m3;
    if (!m1.Init(eng, false, true, N, V, H, h16.data(), H, W16.data(), H, L.data(), V) ||
        !m2.Init(eng, false, false, N, H, V, G16.data(), V, W16.data(), H, gh.data(), H) ||
        !m3.Init(eng, true, false, V, H, N, G16.data(), V, h16.data(), H, gw.data(), H)) {
      std::fprintf(stderr, "oneDNN bf16 matmul unavailable\n");
      return 1;
    }
    ResetPeak();
    base_kb = ProcStatusKb("VmRSS:");
    for (int r = 0; r < reps; ++r) {
      const double c0 = CpuSeconds();
      const auto t0 = std::chrono::steady_clock::now();
      if (!m1.Exec(strm) || !m2.Exec(strm) || !m3.Exec(strm)) return 1;
      const auto t1 = std::chrono::steady_clock::now();
      cpu.push_back(CpuSeconds() - c0);
      times.push_back(std::chrono::duration<double>(t1 - t0).count());
    }
    peak_kb = ProcStatusKb("VmHWM:");
    loss = gw[0];
#endif
  } else if (variant == "gemm3") {
    if (!XentBlasSetup()) {
      std::fprintf(stderr, "xent_linear_cross_entropy (setup): %s\n", xent_last_error());
      return 1;
    }
    openblas_set_num_threads(threads);
    blas_info = std::string("openblas ") + openblas_get_corename();
    std::vector<float> L(N * V, 0.0f), gh(N * H, 0.0f), gw(V * H, 0.0f);
    const int n = static_cast<int>(N), v = static_cast<int>(V), k = static_cast<int>(H);
    ResetPeak();
    base_kb = ProcStatusKb("VmRSS:");
    for (int r = 0; r < reps; ++r) {
      const double c0 = CpuSeconds();
      const auto t0 = std::chrono::steady_clock::now();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, v, k, 1.0f, h.data(), k, W.data(), k, 0.0f, L.data(), v);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k, v, 1.0f, L.data(), v, W.data(), k, 0.0f, gh.data(),
                  k);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, v, k, n, 1.0f, L.data(), v, h.data(), k, 0.0f, gw.data(), k);
      const auto t1 = std::chrono::steady_clock::now();
      cpu.push_back(CpuSeconds() - c0);
      times.push_back(std::chrono::duration<double>(t1 - t0).count());
    }
    peak_kb = ProcStatusKb("VmHWM:");
    loss = gw[0];
  } else {
    std::fprintf(stderr, "unknown --variant %s\n", variant.c_str());
    return 2;
  }
  std::printf(
      "{\"variant\": \"%s\", \"shape\": \"%s\", \"dtype\": \"%s\", \"threads\": %d, \"blas\": \"%s\", "
      "\"grad\": \"%s\", \"scratch\": %zu, \"loss\": %.9g, \"base_rss\": %.0f, \"extra_peak_rss\": %.0f, "
      "\"grad_out_bytes\": %.0f, \"times\": [",
      variant.c_str(), shape.c_str(), dtype.c_str(), threads, blas_info.c_str(), grad_f32 ? "f32" : "auto", scratch,
      static_cast<double>(loss), base_kb * 1024.0, (peak_kb > base_kb ? peak_kb - base_kb : 0) * 1024.0, out_bytes);
  for (size_t i = 0; i < times.size(); ++i) std::printf("%s%.6f", i ? ", " : "", times[i]);
  std::printf("], \"cpu\": [");
  for (size_t i = 0; i < cpu.size(); ++i) std::printf("%s%.6f", i ? ", " : "", cpu[i]);
  std::printf("]}\n");
  return 0;
}
