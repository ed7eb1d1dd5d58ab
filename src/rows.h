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
#include <cstddef>
#include <memory>
#include <new>

#include "src/parallel.h"

namespace xent {

constexpr size_t kSegment = 4096;

inline size_t NumSegments(size_t V) { return (V + kSegment - 1) / kSegment; }

// Op interface (all const, thread-safe):
//   using Seg, Acc, RowState;
//   bool NeedsStats(size_t row) const;          // false: skip straight to Finish
//   void Stats(size_t row, size_t s0, size_t s1, Seg* out) const;
//   static void Fold(Acc& acc, const Seg& seg);
//   void Finish(size_t row, const Acc& acc, bool had_stats, RowState* st) const;
//   bool HasOutput() const;                     // a second pass over the row
//   void Output(size_t row, const RowState& st, size_t s0, size_t s1) const;
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
    auto body = [&](size_t t) {
      constexpr size_t kGroup = 16;
      Seg segs[kGroup];
      const size_t r1 = std::min(B, (t + 1) * rows_per_task);
      for (size_t row = t * rows_per_task; row < r1; ++row) {
        Acc acc;
        const bool stats = op.NeedsStats(row);
        if (stats) {
          for (size_t s = 0; s < nseg; s += kGroup) {
            const size_t e = std::min(nseg, s + kGroup);
            op.Stats(row, s, e, segs);
            for (size_t j = 0; j < e - s; ++j) Op::Fold(acc, segs[j]);
          }
        }
        RowState st;
        op.Finish(row, acc, stats, &st);
        if (op.HasOutput()) op.Output(row, st, 0, nseg);
      }
    };
    return ParallelForEach(exec, tasks, body);
  }

  // Few long rows: parallel over (row, group of segments).
  constexpr size_t kSegsPerTask = 4;
  const size_t groups = (nseg + kSegsPerTask - 1) / kSegsPerTask;
  std::unique_ptr<Seg[]> segs(new (std::nothrow) Seg[B * nseg]);
  std::unique_ptr<RowState[]> states(new (std::nothrow) RowState[B]);
  if (!segs || !states) return XENT_ERROR_OUT_OF_MEMORY;
  auto stats = [&](size_t t) {
    const size_t row = t / groups, s = (t % groups) * kSegsPerTask;
    if (op.NeedsStats(row)) op.Stats(row, s, std::min(nseg, s + kSegsPerTask), &segs[row * nseg + s]);
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
  if (!op.HasOutput()) return XENT_OK;
  auto out = [&](size_t t) {
    const size_t row = t / groups, s = (t % groups) * kSegsPerTask;
    op.Output(row, states[row], s, std::min(nseg, s + kSegsPerTask));
  };
  return ParallelForEach(exec, B * groups, out);
}

}  // namespace xent

#endif  // XENT_SRC_ROWS_H_
