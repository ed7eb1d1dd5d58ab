// Memory the kernels use besides the caller's buffers: per-thread scratch
// rows kept between calls, the per-row loss buffer of a reduced loss, and the
// size above which outputs are streamed past the cache.
#ifndef XENT_SRC_SCRATCH_H_
#define XENT_SRC_SCRATCH_H_

#include <cstddef>
#include <memory>
#include <new>

#include "src/dtype.h"
#include "src/problem.h"

namespace xent {

// Per-thread scratch row of `floats` floats, kept for the thread's life (it
// grows to the largest request seen on the thread). nullptr when it cannot be
// allocated; ops then recompute instead of storing.
float* ThreadScratch(size_t floats);
// A second per-thread buffer, of `bytes` bytes (max_align_t aligned), for the
// per-segment statistics of long rows.
void* ThreadBytes(size_t bytes);

// Outputs at least this large (bytes; environment variable XENT_STREAM_BYTES,
// read once, default 32 MiB) are written with non-temporal (streaming)
// stores: they cannot stay in cache anyway, and streaming saves the
// read-for-ownership.
size_t StreamThresholdBytes();
inline bool StreamOutputs(size_t B, size_t V, const OutMat& m) {
  return B * V * DTypeSize(m.dtype) >= StreamThresholdBytes();
}

// Per-row losses: the caller's buffer, else O(B) scratch when only the
// reduced loss is wanted (summed in row order afterwards), else none.
struct RowLosses {
  std::unique_ptr<float[]> scratch;
  float* data = nullptr;
  bool Init(float* caller, bool need_sum, size_t B) {
    data = caller;
    if (data == nullptr && need_sum && B > 0) {
      scratch.reset(new (std::nothrow) float[B]);
      data = scratch.get();
      return data != nullptr;
    }
    return true;
  }
  // Sum of the B row losses in row order (double): every op's reduced loss.
  double Sum(size_t B) const {
    double s = 0.0;
    for (size_t i = 0; i < B; ++i) s += data[i];
    return s;
  }
};

}  // namespace xent

#endif  // XENT_SRC_SCRATCH_H_
