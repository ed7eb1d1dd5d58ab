// Streaming memory-bandwidth probe: the roofline of the memory-bound kernels.
#ifndef XENT_BENCH_BANDWIDTH_H_
#define XENT_BENCH_BANDWIDTH_H_

#include <cstddef>

namespace xent_bench {

enum class BwKind {
  kRead,     // sum of a buffer: 4 bytes per float
  kCopy,     // dst = src * s, plain stores to another buffer: 8 bytes per float
  kCopyNT,   // the same with non-temporal (streaming) stores: 8 bytes per float
  kInPlace,  // a = a * s, written back in place: 8 bytes per float
};

const char* BwKindName(BwKind k);
// Bytes counted per float (the unit of the bandwidths reported).
size_t BwBytesPerFloat(BwKind k);

// Runs one pass of `kind` over n floats (src for read/in-place; dst as output
// for copies) on `threads` threads (0 = all), each thread streaming its own
// contiguous part. Returns a value that depends on the data (read) so the
// pass cannot be optimized away.
float BwPass(BwKind kind, float* dst, float* src, size_t n, int threads);

// Writes `value` into n floats with `threads` threads (pre-faults a buffer on
// the NUMA node / page layout the benchmark threads will use).
void ParallelFill(float* p, size_t n, float value, int threads);

// The SIMD width the probe uses, e.g. "avx512", "sse2", "scalar".
const char* BwIsa();

}  // namespace xent_bench

#endif  // XENT_BENCH_BANDWIDTH_H_
