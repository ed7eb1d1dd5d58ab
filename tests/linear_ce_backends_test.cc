// xent_linear_cross_entropy gives bit-identical outputs with every threading
// backend built here (OpenMP, oneTBB, serial: each library variant loaded
// with dlopen) and every thread count. (Within one library, thread counts and
// host pools are compared in linear_ce_test.cc.)
#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "xent/xent.h"

#ifndef XENT_LIB_PATHS
#error "XENT_LIB_PATHS (comma-separated library paths) must be defined"
#endif

namespace {

struct Lib {
  std::string path;
  const char* (*backend)() = nullptr;
  const char* (*blas)() = nullptr;
  xent_status (*init)(xent_linear_cross_entropy_args*, size_t) = nullptr;
  xent_status (*run)(const xent_linear_cross_entropy_args*) = nullptr;
};

std::vector<Lib> Load() {
  std::vector<Lib> libs;
  const std::string all = XENT_LIB_PATHS;
  size_t pos = 0;
  while (pos < all.size()) {
    size_t comma = all.find(',', pos);
    if (comma == std::string::npos) comma = all.size();
    Lib l;
    l.path = all.substr(pos, comma - pos);
    pos = comma + 1;
    void* h = dlopen(l.path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      ADD_FAILURE() << "dlopen " << l.path << ": " << dlerror();
      continue;
    }
    l.backend = reinterpret_cast<const char* (*)()>(dlsym(h, "xent_threading_backend"));
    l.blas = reinterpret_cast<const char* (*)()>(dlsym(h, "xent_blas_backend"));
    l.init = reinterpret_cast<xent_status (*)(xent_linear_cross_entropy_args*, size_t)>(
        dlsym(h, "xent_linear_cross_entropy_args_init"));
    l.run =
        reinterpret_cast<xent_status (*)(const xent_linear_cross_entropy_args*)>(dlsym(h, "xent_linear_cross_entropy"));
    if (!l.backend || !l.blas || !l.init || !l.run) {
      ADD_FAILURE() << l.path << ": missing symbols";
      continue;
    }
    libs.push_back(l);
  }
  return libs;
}

// Every output of one call, as bytes. mode 0: f32; 1: bf16 inputs, f32
// gradients (blocks of 9 rows); 2: bf16 inputs and gradients, a budget
// without room for grad_linear_weight's f32 accumulator: the tiled order
// (groups of 144 rows on the native bf16 products, of 64 widened).
std::vector<unsigned char> RunOnce(const Lib& lib, int32_t threads, int mode) {
  const bool bf16 = mode > 0;
  const size_t B = mode == 2 ? 300 : 45, V = 2300, H = 150;
  std::mt19937 rng(7);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::vector<float> hidden(B * H), weight(V * H), bias(V);
  for (auto& x : hidden) x = n01(rng);
  for (auto& x : weight) x = n01(rng) * 0.1f;
  for (auto& x : bias) x = n01(rng) * 0.2f;
  std::vector<uint16_t> h16(B * H), w16(V * H);
  auto to_bf16 = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  };
  for (size_t i = 0; i < h16.size(); ++i) h16[i] = to_bf16(hidden[i]);
  for (size_t i = 0; i < w16.size(); ++i) w16[i] = to_bf16(weight[i]);
  std::vector<int64_t> target(B);
  for (size_t i = 0; i < B; ++i) target[i] = (i % 7 == 3) ? -100 : static_cast<int64_t>(rng() % V);
  std::vector<float> out(1 + B + B * H + V * H + V, 0.0f);
  float* loss = out.data();
  float* row_loss = loss + 1;
  float* gh = row_loss + B;
  float* gw = gh + B * H;
  float* gb = gw + V * H;

  xent_linear_cross_entropy_args a;
  EXPECT_EQ(lib.init(&a, sizeof(a)), XENT_OK);
  a.batch = B;
  a.num_classes = V;
  a.hidden_size = H;
  a.hidden = bf16 ? static_cast<const void*>(h16.data()) : hidden.data();
  a.linear_weight = bf16 ? static_cast<const void*>(w16.data()) : weight.data();
  a.hidden_dtype = a.linear_weight_dtype = bf16 ? XENT_BF16 : XENT_F32;
  a.linear_bias = bias.data();
  a.target = target.data();
  a.label_smoothing = 0.1f;
  a.z_loss = 1e-4f;
  a.scratch_bytes = mode == 2 ? (V * H * 4 + 200 * (V + H) * 4) : 9 * (V + H) * sizeof(float);  // blocks of 9 rows
  a.loss = loss;
  a.row_loss = row_loss;
  a.grad_hidden = gh;
  a.grad_linear_weight = gw;
  a.grad_linear_bias = gb;
  if (mode < 2) a.grad_hidden_dtype = a.grad_linear_weight_dtype = a.grad_linear_bias_dtype = XENT_F32;
  a.num_threads = threads;
  EXPECT_EQ(lib.run(&a), XENT_OK) << lib.path;
  EXPECT_TRUE(std::isfinite(*loss));
  std::vector<unsigned char> bytes(out.size() * sizeof(float));
  std::memcpy(bytes.data(), out.data(), bytes.size());
  return bytes;
}

TEST(LinearCeBackends, BitIdentical) {
#if defined(__SANITIZE_ADDRESS__)
  // Under ASan, the widened products only: GCC 12's LeakSanitizer crashes at
  // exit ("Tracer caught signal 11") reading a garbage dynamic-TLS range of a
  // worker thread once oneDNN (a dependency of libraries loaded with dlopen)
  // has run on it. The linked suites (linear_ce_*) run oneDNN under ASan.
  setenv("XENT_NATIVE_BF16", "0", 1);  // read when each library loads
#endif
  const std::vector<Lib> libs = Load();
  ASSERT_FALSE(libs.empty());
  if (std::strcmp(libs[0].blas(), "none") == 0) GTEST_SKIP() << "built without a BLAS";
  for (int mode : {0, 1, 2}) {
    const std::vector<unsigned char> first = RunOnce(libs[0], 1, mode);
    for (const Lib& lib : libs) {
      for (int32_t threads : {1, 2, 4, 0}) {
        EXPECT_TRUE(RunOnce(lib, threads, mode) == first)
            << lib.backend() << " backend, num_threads = " << threads << ", mode " << mode << ": outputs differ from "
            << libs[0].backend() << " with 1 thread";
      }
    }
  }
}

}  // namespace
