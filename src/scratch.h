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

// Where an op writes its row losses: the caller's f32 row_loss and/or the
// doubles the reduced loss sums. The sum is taken over the doubles: a row
// loss beyond FLT_MAX is inf in f32, yet the mean over the batch may be
// finite (z_loss of a logit near 1e21, say).
struct RowLossSink {
  float* f32 = nullptr;
  double* f64 = nullptr;
  explicit operator bool() const { return f32 != nullptr || f64 != nullptr; }
  void Put(size_t row, double loss) const {
    if (f32) f32[row] = static_cast<float>(loss);
    if (f64) f64[row] = loss;
  }
};

// Per-row losses: the caller's buffer (if any), and O(B) doubles when the
// reduced loss is wanted (summed in row order afterwards).
struct RowLosses {
  std::unique_ptr<double[]> sums;
  RowLossSink sink;
  bool Init(float* caller, bool need_sum, size_t B) {
    sink.f32 = caller;
    if (need_sum && B > 0) {
      sums.reset(new (std::nothrow) double[B]);
      sink.f64 = sums.get();
      return sink.f64 != nullptr;
    }
    return true;
  }
  // Sum of the B row losses in row order (double): every op's reduced loss.
  double Sum(size_t B) const {
    double s = 0.0;
    for (size_t i = 0; i < B; ++i) s += sink.f64[i];
    return s;
  }
};

}  // namespace xent

#endif  // XENT_SRC_SCRATCH_H_
