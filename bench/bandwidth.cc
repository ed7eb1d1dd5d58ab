// Streaming bandwidth kernels: explicit SIMD (AVX-512 when the CPU has it,
// else SSE2) so that neither the compiler nor glibc turns a copy into memcpy
// (which switches to non-temporal stores above a size threshold).
#include "bandwidth.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define XENT_BENCH_X86 1
#endif

namespace xent_bench {
namespace {

int NumThreads(int t) {
  if (t > 0) return t;
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  const unsigned h = std::thread::hardware_concurrency();
  return h ? static_cast<int>(h) : 1;
#endif
}

// Runs f(begin, end, thread_index) on contiguous parts, 64-byte aligned.
template <class F>
void Split(size_t n, int threads, F&& f) {
  const int t = NumThreads(threads);
  if (t <= 1) {
    f(size_t{0}, n, 0);
    return;
  }
  const size_t per = ((n + t - 1) / t + 15) / 16 * 16;
#ifdef _OPENMP
#pragma omp parallel num_threads(t)
  {
    const int i = omp_get_thread_num();
    const size_t b = std::min(n, per * i), e = std::min(n, b + per);
    f(b, e, i);
  }
#else
  std::vector<std::thread> pool;
  for (int i = 1; i < t; ++i) {
    pool.emplace_back([&, i] {
      const size_t b = std::min(n, per * i), e = std::min(n, b + per);
      f(b, e, i);
    });
  }
  f(0, std::min(n, per), 0);
  for (auto& th : pool) th.join();
#endif
}

#ifdef XENT_BENCH_X86
bool HasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

__attribute__((target("avx512f"))) float Read512(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
  }
  float lanes[16];
  _mm512_storeu_ps(lanes, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  float s = 0.0f;
  for (float l : lanes) s += l;
  for (; i < n; ++i) s += p[i];
  return s;
}

template <bool kNT>
__attribute__((target("avx512f"))) void Copy512(float* d, const float* s, size_t n, float k) {
  const __m512 vk = _mm512_set1_ps(k);
  size_t i = 0;
  if (kNT) {  // align the destination for streaming stores
    for (; i < n && (reinterpret_cast<uintptr_t>(d + i) & 63) != 0; ++i) d[i] = s[i] * k;
  }
  for (; i + 64 <= n; i += 64) {
    const __m512 v0 = _mm512_mul_ps(_mm512_loadu_ps(s + i), vk);
    const __m512 v1 = _mm512_mul_ps(_mm512_loadu_ps(s + i + 16), vk);
    const __m512 v2 = _mm512_mul_ps(_mm512_loadu_ps(s + i + 32), vk);
    const __m512 v3 = _mm512_mul_ps(_mm512_loadu_ps(s + i + 48), vk);
    if (kNT) {
      _mm512_stream_ps(d + i, v0);
      _mm512_stream_ps(d + i + 16, v1);
      _mm512_stream_ps(d + i + 32, v2);
      _mm512_stream_ps(d + i + 48, v3);
    } else {
      _mm512_storeu_ps(d + i, v0);
      _mm512_storeu_ps(d + i + 16, v1);
      _mm512_storeu_ps(d + i + 32, v2);
      _mm512_storeu_ps(d + i + 48, v3);
    }
  }
  for (; i < n; ++i) d[i] = s[i] * k;
  if (kNT) _mm_sfence();
}

float Read128(const float* p, size_t n) {
  __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm_add_ps(a0, _mm_loadu_ps(p + i));
    a1 = _mm_add_ps(a1, _mm_loadu_ps(p + i + 4));
    a2 = _mm_add_ps(a2, _mm_loadu_ps(p + i + 8));
    a3 = _mm_add_ps(a3, _mm_loadu_ps(p + i + 12));
  }
  float lanes[4];
  _mm_storeu_ps(lanes, _mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3)));
  float s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < n; ++i) s += p[i];
  return s;
}

template <bool kNT>
void Copy128(float* d, const float* s, size_t n, float k) {
  const __m128 vk = _mm_set1_ps(k);
  size_t i = 0;
  if (kNT) {
    for (; i < n && (reinterpret_cast<uintptr_t>(d + i) & 15) != 0; ++i) d[i] = s[i] * k;
  }
  for (; i + 16 <= n; i += 16) {
    const __m128 v0 = _mm_mul_ps(_mm_loadu_ps(s + i), vk);
    const __m128 v1 = _mm_mul_ps(_mm_loadu_ps(s + i + 4), vk);
    const __m128 v2 = _mm_mul_ps(_mm_loadu_ps(s + i + 8), vk);
    const __m128 v3 = _mm_mul_ps(_mm_loadu_ps(s + i + 12), vk);
    if (kNT) {
      _mm_stream_ps(d + i, v0);
      _mm_stream_ps(d + i + 4, v1);
      _mm_stream_ps(d + i + 8, v2);
      _mm_stream_ps(d + i + 12, v3);
    } else {
      _mm_storeu_ps(d + i, v0);
      _mm_storeu_ps(d + i + 4, v1);
      _mm_storeu_ps(d + i + 8, v2);
      _mm_storeu_ps(d + i + 12, v3);
    }
  }
  for (; i < n; ++i) d[i] = s[i] * k;
  if (kNT) _mm_sfence();
}

float ReadPart(const float* p, size_t n) { return HasAvx512() ? Read512(p, n) : Read128(p, n); }
void CopyPart(float* d, const float* s, size_t n, float k, bool nt) {
  if (HasAvx512()) {
    nt ? Copy512<true>(d, s, n, k) : Copy512<false>(d, s, n, k);
  } else {
    nt ? Copy128<true>(d, s, n, k) : Copy128<false>(d, s, n, k);
  }
}
#else
float ReadPart(const float* p, size_t n) {
  float a[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) a[j] += p[i + j];
  float s = 0.0f;
  for (int j = 0; j < 8; ++j) s += a[j];
  for (; i < n; ++i) s += p[i];
  return s;
}
void CopyPart(float* d, const float* s, size_t n, float k, bool) {
  for (size_t i = 0; i < n; ++i) d[i] = s[i] * k;
}
#endif

}  // namespace

const char* BwKindName(BwKind k) {
  switch (k) {
    case BwKind::kRead: return "read";
    case BwKind::kCopy: return "copy";
    case BwKind::kCopyNT: return "copy_nt";
    case BwKind::kInPlace: return "inplace";
  }
  return "?";
}

size_t BwBytesPerFloat(BwKind k) { return k == BwKind::kRead ? 4 : 8; }

const char* BwIsa() {
#ifdef XENT_BENCH_X86
  return HasAvx512() ? "avx512" : "sse2";
#else
  return "scalar";
#endif
}

float BwPass(BwKind kind, float* dst, float* src, size_t n, int threads) {
  const int t = NumThreads(threads);
  std::vector<float> partial(static_cast<size_t>(t) * 16, 0.0f);  // one cache line each
  Split(n, threads, [&](size_t b, size_t e, int i) {
    switch (kind) {
      case BwKind::kRead: partial[static_cast<size_t>(i) * 16] = ReadPart(src + b, e - b); break;
      case BwKind::kCopy: CopyPart(dst + b, src + b, e - b, -1.0f, false); break;
      case BwKind::kCopyNT: CopyPart(dst + b, src + b, e - b, -1.0f, true); break;
      case BwKind::kInPlace: CopyPart(src + b, src + b, e - b, -1.0f, false); break;
    }
  });
  float s = 0.0f;
  for (int i = 0; i < t; ++i) s += partial[static_cast<size_t>(i) * 16];
  return s;
}

void ParallelFill(float* p, size_t n, float value, int threads) {
  Split(n, threads, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) p[i] = value;
  });
}

}  // namespace xent_bench
