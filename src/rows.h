// The row engine shared by every softmax-based operation.
//
// A row of V classes is cut into segments of kSegment elements at fixed
// positions. Per segment, a kernel computes partial statistics (max, sum of
// exp, ...) reading the logits once; partials are folded left to right in
// double precision; then an optional second kernel writes the gradient (or
// probabilities) segment by segment, re-reading the row while it is in cache.
//
// Work is split either by rows (many rows: a task is a block of rows, each
// processed start to finish) or, when rows are few and long, by segments
// (stats of all (row, segment) pairs in parallel, fold per row, then outputs
// in parallel). Both paths run the same kernels on the same segments and fold
// in the same order, so results do not depend on the path, the thread count or
// the backend.
#ifndef XENT_SRC_ROWS_H_
#define XENT_SRC_ROWS_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>

#include "src/ops.h"
#include "src/parallel.h"

namespace xent {

inline size_t NumSegments(size_t V) { return (V + kSegment - 1) / kSegment; }

// Per-thread scratch row of `floats` floats, kept between calls (grows to the
// largest V seen on the thread). nullptr when it cannot be allocated; ops then
// fall back to recomputing instead of storing.
float* ThreadScratch(size_t floats);
// A second per-thread buffer, of `bytes` bytes (max_align_t aligned), for
// per-row segment statistics of long rows.
void* ThreadBytes(size_t bytes);

// Op interface (all const, thread-safe):
//   using Seg, Acc, RowState;
//   bool NeedsStats(size_t row) const;   // false: skip straight to Finish
//   void Stats(size_t row, size_t s0, size_t s1, Seg* out, float* scratch) const;
//   static void Fold(Acc& acc, const Seg& seg);
//   void Finish(size_t row, const Acc& acc, bool had_stats, RowState* st) const;
//   bool HasMiddle() const;              // an optional second pass whose
//   void Middle(size_t row, const RowState& st, Seg* row_segs, size_t s0,
//               size_t s1, float* scratch) const;   // per-segment results
//   void FinishMiddle(size_t row, const Seg* row_segs, size_t nseg, RowState* st) const;
//   bool HasOutput() const;              // a last pass over the row
//   void Output(size_t row, const RowState& st, const Seg* row_segs, size_t s0,
//               size_t s1, float* scratch) const;
//   size_t ScratchRows() const;          // row-mode scratch: this many rows of V floats
// `scratch` is the same per-thread buffer for all passes of one row in row
// mode, and nullptr when rows are split across tasks.
template <class Op>
xent_status RunRows(const Op& op, size_t B, size_t V, const Exec& exec) {
  using Seg = typename Op::Seg;
  using Acc = typename Op::Acc;
  using RowState = typename Op::RowState;
  if (B == 0) return XENT_OK;
  const size_t nseg = NumSegments(V);
  const int threads = ThreadsFor(exec, B * nseg);
  const bool by_segments = threads > 1 && nseg > 1 && B < 2 * static_cast<size_t>(threads);

  if (!by_segments) {
    // A task is a block of rows holding at least ~64K elements.
    const size_t rows_per_task = std::max<size_t>(1, 65536 / V);
    const size_t tasks = (B + rows_per_task - 1) / rows_per_task;
    std::atomic<bool> oom{false};
    auto body = [&](size_t t) {
      float* scratch = op.ScratchRows() ? ThreadScratch(V * op.ScratchRows()) : nullptr;
      static_assert(std::is_trivially_copyable<Seg>::value, "segment stats are plain data");
      constexpr size_t kLocal = 16;
      Seg local[kLocal];
      Seg* segs = local;
      if (nseg > kLocal) {
        void* mem = ThreadBytes(nseg * sizeof(Seg));
        if (mem == nullptr) {
          oom.store(true);
          return;
        }
        segs = new (mem) Seg[nseg];
      }
      const size_t r1 = std::min(B, (t + 1) * rows_per_task);
      for (size_t row = t * rows_per_task; row < r1; ++row) {
        Acc acc;
        const bool stats = op.NeedsStats(row);
        if (stats) {
          op.Stats(row, 0, nseg, segs, scratch);
          for (size_t j = 0; j < nseg; ++j) Op::Fold(acc, segs[j]);
        }
        RowState st;
        op.Finish(row, acc, stats, &st);
        if (op.HasMiddle()) {
          op.Middle(row, st, segs, 0, nseg, scratch);
          op.FinishMiddle(row, segs, nseg, &st);
        }
        if (op.HasOutput()) op.Output(row, st, segs, 0, nseg, scratch);
      }
    };
    const xent_status rc = ParallelForEach(exec, tasks, body);
    return oom.load() ? XENT_ERROR_OUT_OF_MEMORY : rc;
  }

  // Few long rows: parallel over (row, group of segments), one phase per pass.
  constexpr size_t kSegsPerTask = 4;
  const size_t groups = (nseg + kSegsPerTask - 1) / kSegsPerTask;
  std::unique_ptr<Seg[]> segs(new (std::nothrow) Seg[B * nseg]);
  std::unique_ptr<RowState[]> states(new (std::nothrow) RowState[B]);
  if (!segs || !states) return XENT_ERROR_OUT_OF_MEMORY;
  auto stats = [&](size_t t) {
    const size_t row = t / groups, s = (t % groups) * kSegsPerTask;
    if (op.NeedsStats(row)) {
      op.Stats(row, s, std::min(nseg, s + kSegsPerTask), &segs[row * nseg + s], nullptr);
    }
  };
  xent_status rc = ParallelForEach(exec, B * groups, stats);
  if (rc != XENT_OK) return rc;
  for (size_t row = 0; row < B; ++row) {
    Acc acc;
    const bool had = op.NeedsStats(row);
    if (had) {
      for (size_t s = 0; s < nseg; ++s) Op::Fold(acc, segs[row * nseg + s]);
    }
    op.Finish(row, acc, had, &states[row]);
  }
  if (op.HasMiddle()) {
    auto middle = [&](size_t t) {
      const size_t row = t / groups, s = (t % groups) * kSegsPerTask;
      op.Middle(row, states[row], &segs[row * nseg], s, std::min(nseg, s + kSegsPerTask), nullptr);
    };
    rc = ParallelForEach(exec, B * groups, middle);
    if (rc != XENT_OK) return rc;
    for (size_t row = 0; row < B; ++row) op.FinishMiddle(row, &segs[row * nseg], nseg, &states[row]);
  }
  if (!op.HasOutput()) return XENT_OK;
  auto out = [&](size_t t) {
    const size_t row = t / groups, s = (t % groups) * kSegsPerTask;
    op.Output(row, states[row], &segs[row * nseg], s, std::min(nseg, s + kSegsPerTask), nullptr);
  };
  return ParallelForEach(exec, B * groups, out);
}

// Per-row losses: the caller's buffer, else O(B) scratch when only the
// reduced loss is wanted (it is summed in row order afterwards), else none.
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
};

// Defaults for ops without a middle pass.
struct NoMiddle {
  bool HasMiddle() const { return false; }
  template <class St, class Seg>
  void Middle(size_t, const St&, Seg*, size_t, size_t, float*) const {}
  template <class Seg, class St>
  void FinishMiddle(size_t, const Seg*, size_t, St*) const {}
};

}  // namespace xent

#endif  // XENT_SRC_ROWS_H_
