// The row engine every operation runs through.
//
// A row of V classes is cut into segments of kSegment elements at fixed
// positions (made of kChunk-element chunks). An operation supplies four
// phases; the engine's drivers run them:
//
//   1. Stats   partial statistics of a run of segments of a row, reading its
//              inputs once (max, sum of exps, target logit, smoothing or
//              entropy sums, ...): one plain `Seg` per segment.
//   2. Merge   folds the segments' partials into the row's `Acc`, in double
//              precision, in a fixed order whatever the split: a pairwise
//              tree over segment indices when the Acc can be combined with
//              another (softmax statistics: see TreeMerge), else left to right.
//   3. Finish  from the merged statistics: the row's losses (written to the
//              per-row outputs) and the per-row coefficients (`RowState`) the
//              output phase needs.
//   4. Output  the B x V outputs of the row (gradient, probabilities, ...),
//              segment by segment, reading the inputs again (from cache when
//              the row was just read) or values the stats phase stored.
// An operation may add a middle pass between 3 and 4 (KL/JSD: elementwise
// terms whose row sums the gradient needs), with its own per-segment partials
// and merge.
//
// Determinism: segment boundaries depend on V only, partials are merged in
// f64 in an order fixed by the segment indices, and every row is finished by
// exactly one task; so no result depends on how the work is split, on the
// thread count or on the threading backend. This rule lives here, once.
//
// Drivers (the logits source is a B x V matrix in memory):
//   RunRows            chooses between the two below.
//   RunRowBlocks       many rows: a task is a block of rows, each run through
//                      all phases while it is in cache.
//   RunSegmentSplit    few long rows: phase 1 over (row, segment group) tasks in
//                      parallel, merge and finish per row, then phase 4 over
//                      (row, segment group) tasks.
// Other sources plug in at the same phases: a tile producer (fused linear
// cross-entropy) fills a block of rows and runs RunRows on it; a column shard
// (vocab-parallel, src/ce.cc) runs phases 1-2 on its columns, exports the
// merged partial, and runs phases 3-4 after the partials of every shard have
// been merged in the same tree over shard indices. See ARCHITECTURE.md.
#ifndef XENT_SRC_ENGINE_H_
#define XENT_SRC_ENGINE_H_

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "src/parallel.h"
#include "src/scratch.h"
#include "xent/xent.h"

namespace xent {

constexpr size_t kSegment = 4096;
constexpr size_t kChunk = 256;  // the unit of the two-level f32 sums

inline size_t NumSegments(size_t V) { return (V + kSegment - 1) / kSegment; }

// ---------------------------------------------------------------------------
// Softmax statistics, the partials of every softmax-based operation.

// One segment of a row, relative to the segment max m (-inf when every
// element is -inf; the exps are then taken against 0, see SafeRef).
struct SoftmaxSeg {
  float m = 0.0f;
  float s = 0.0f;     // sum exp(z - m)
  float dot = 0.0f;   // sum a_c (z_c - m) for op-specific weights a_c >= 0
  float wsum = 0.0f;  // sum a_c
  float u = 0.0f;     // sum exp(z - m) (z - m)  (entropy)
  float zy = 0.0f;    // the target's z, when has_zy
  int32_t has_zy = 0;
};

// The reference actually subtracted: 0 for -inf (so exp(-inf - 0) = 0).
inline float SafeRef(float m) { return m == -std::numeric_limits<float>::infinity() ? 0.0f : m; }

// The merged statistics of a row, in double, relative to M.
struct SoftmaxAcc {
  double M = -std::numeric_limits<double>::infinity();
  double S = 0.0;  // sum exp(z - M)
  double D = 0.0;  // sum a_c (z_c - M)
  double W = 0.0;  // sum a_c
  double U = 0.0;  // sum exp(z - M) (z - M)
  float zy = std::numeric_limits<float>::quiet_NaN();
  bool has_zy = false;
  bool nan = false;

  // One segment's partials as a row's statistics (exact: f32 to f64).
  static SoftmaxAcc Of(const SoftmaxSeg& g) {
    SoftmaxAcc a;
    a.M = g.m;
    a.S = g.s;
    a.D = g.dot;
    a.W = g.wsum;
    a.U = g.u;
    a.zy = g.zy;
    a.has_zy = g.has_zy != 0;
    a.nan = std::isnan(g.s) || std::isnan(g.m);
    return a;
  }
  void Merge(const SoftmaxSeg& g) { Combine(Of(g)); }
  // Folds in the statistics of classes after this one's (a segment, a node of
  // the merge tree, or a column shard's).
  void Combine(const SoftmaxAcc& b) {
    if (b.has_zy) {
      zy = b.zy;
      has_zy = true;
    }
    const double w_before = W;
    W += b.W;
    if (b.nan) {
      nan = true;
      return;
    }
    if (b.S == 0.0) {  // all -inf: no mass, only the (infinite) dot term
      D += b.D;
      return;
    }
    // b.D and b.U are relative to b.M here (b has mass).
    if (M == -std::numeric_limits<double>::infinity()) {
      M = b.M;
      S = b.S;
      D += b.D;
      U = b.U;
      return;
    }
    const double M2 = std::max(M, b.M);
    const double f_old = std::exp(M - M2), f_new = std::exp(b.M - M2);
    U = f_old * (U + (M - M2) * S) + f_new * (b.U + (b.M - M2) * b.S);
    S = S * f_old + b.S * f_new;
    D = D + (M - M2) * w_before + b.D + (b.M - M2) * b.W;
    M = M2;
  }
  // log sum exp(z) - M, and the row's lse. NaN when any input was NaN.
  double LogS() const { return nan ? std::numeric_limits<double>::quiet_NaN() : std::log(S); }
  double Lse() const { return nan ? std::numeric_limits<double>::quiet_NaN() : M + std::log(S); }
  // Entropy of softmax(z): log S - U / S.
  double Entropy() const { return LogS() - U / S; }
};

// ---------------------------------------------------------------------------
// The operation interface (all members const and thread-safe):
//   using Seg, Acc, RowState;            plain data
//   bool NeedsStats(size_t row) const;   false: straight to Finish (e.g. an
//                                        ignored row with nothing to report)
//   void Stats(size_t row, size_t s0, size_t s1, Seg* out, float* scratch) const;   phase 1
//   static void Merge(Acc& acc, const Seg& seg);                                     phase 2
//   void Finish(size_t row, const Acc& acc, bool had_stats, RowState* st) const;     phase 3
//   bool HasMiddle() const;              optional pass between 3 and 4:
//   void Middle(size_t row, const RowState& st, Seg* row_segs, size_t s0, size_t s1, float* scratch) const;
//   void FinishMiddle(size_t row, const Seg* row_segs, size_t nseg, RowState* st) const;
//   bool HasOutput() const;
//   void Output(size_t row, const RowState& st, const Seg* row_segs, size_t s0, size_t s1,
//               float* scratch) const;                                              phase 4
//   size_t ScratchRows() const;          rows of V floats of per-thread scratch
// `scratch` is the same per-thread buffer for all phases of one row in
// RunRowBlocks (the stats phase may store values the output phase reads), and
// nullptr in RunSegmentSplit (every phase recomputes what it needs, with the
// same bits, or keeps it in its own f32 output row: cross-entropy's gradient,
// softmax's probabilities).

// Defaults for operations without a middle pass.
struct NoMiddle {
  bool HasMiddle() const { return false; }
  template <class St, class Seg>
  void Middle(size_t, const St&, Seg*, size_t, size_t, float*) const {}
  template <class Seg, class St>
  void FinishMiddle(size_t, const Seg*, size_t, St*) const {}
};

// The merge tree: node (a, span) covers items [a, min(a + span, n)), span a
// power of two and a a multiple of it; it is its left half combined with its
// right half (when the right half holds any item). Every aligned block of
// 2^k items is a node, so a column shard of 2^k aligned segments computes
// exactly the node the whole row would, and merging the shards' statistics
// with the same tree over shard indices gives the whole row's bits.
template <class Acc, class Leaf>
Acc TreeNode(size_t a, size_t span, size_t n, const Leaf& leaf) {
  if (span == 1) return leaf(a);
  const size_t half = span / 2;
  Acc acc = TreeNode<Acc>(a, half, n, leaf);
  if (a + half < n) acc.Combine(TreeNode<Acc>(a + half, half, n, leaf));
  return acc;
}
// All n >= 1 items: leaf(i) gives item i's Acc.
template <class Acc, class Leaf>
Acc TreeMerge(size_t n, const Leaf& leaf) {
  size_t span = 1;
  while (span < n) span *= 2;
  return TreeNode<Acc>(0, span, n, leaf);
}

// Whether the op's Acc can be combined with another (Acc::Combine): such ops
// merge their segments in the tree above, the others left to right.
template <class Acc, class = void>
struct Combinable : std::false_type {};
template <class Acc>
struct Combinable<Acc, decltype(std::declval<Acc&>().Combine(std::declval<const Acc&>()))> : std::true_type {};

// Phase 2 over a row's nseg segments.
template <class Op>
void MergeSegments(const typename Op::Seg* segs, size_t nseg, typename Op::Acc* acc) {
  using Acc = typename Op::Acc;
  if constexpr (Combinable<Acc>::value) {
    *acc = TreeMerge<Acc>(nseg, [&](size_t i) {
      Acc leaf;
      Op::Merge(leaf, segs[i]);
      return leaf;
    });
  } else {
    for (size_t j = 0; j < nseg; ++j) Op::Merge(*acc, segs[j]);
  }
}

// Phases 1 + 2 of one row over all its segments; false when the op skips them.
template <class Op>
bool StatsAndMerge(const Op& op, size_t row, size_t nseg, typename Op::Seg* segs, float* scratch,
                   typename Op::Acc* acc) {
  if (!op.NeedsStats(row)) return false;
  op.Stats(row, 0, nseg, segs, scratch);
  MergeSegments<Op>(segs, nseg, acc);
  return true;
}

// The engine's buffers of one RunRows call: n objects of plain data T, taken
// from exec.workspace at byte `*offset` when the caller gave one, else
// allocated. Null when the allocation fails.
template <class T>
class EngineBuffer {
 public:
  EngineBuffer(const Exec& exec, size_t* offset, size_t n) {
    static_assert(std::is_trivially_copyable<T>::value && std::is_trivially_destructible<T>::value, "plain data");
    if (exec.workspace != nullptr) {
      constexpr uintptr_t a = alignof(std::max_align_t);
      const uintptr_t base = reinterpret_cast<uintptr_t>(exec.workspace);
      const size_t at = static_cast<size_t>((base + *offset + a - 1) / a * a - base);
      if (at <= exec.workspace_bytes && n <= (exec.workspace_bytes - at) / sizeof(T)) {
        p_ = reinterpret_cast<T*>(static_cast<unsigned char*>(exec.workspace) + at);
        for (size_t i = 0; i < n; ++i) new (p_ + i) T();
        *offset = at + n * sizeof(T);
        return;
      }
    }
    if (n == 0) return;
    own_.reset(new (std::nothrow) T[n]);
    p_ = own_.get();
    ok_ = p_ != nullptr;
  }
  T* get() const { return p_; }
  explicit operator bool() const { return ok_; }

 private:
  std::unique_ptr<T[]> own_;
  T* p_ = nullptr;
  bool ok_ = true;
};

// RunRowBlocks: partials on the stack up to this many segments (V <= 131072:
// Llama 3's 128256 classes are 32 segments). Two arrays of them per thread
// in the pipelined loop (the largest Seg, TokSeg, ~720 bytes: ~46 KiB).
constexpr size_t kLocalSegments = 32;

// Whether RunRowBlocks may interleave a row's output phase with the next
// row's stats phase, segment by segment (Op::kPipelined: an op with an output
// phase or a middle pass, not both, whose Output (Middle) of segment s reads
// nothing of the scratch outside the segment's columns, and whose Stats of
// segment s writes nothing outside them), for rows of up to kLocalSegments
// segments. With FusedRows (below) in one walk, at any thread count; else
// segment by segment with two threads or more: the threads' stores of a row
// then go out while their loads of the next row come in, instead of the two
// streams taking turns (8192x32000 CE forward + gradient, 2 threads: 4-10 %
// faster). Not segment by segment with
// one thread: the stats phase walked one segment at a time loses the next
// segment's max taken during the current one's exps (1 thread, in place:
// 8-12 % slower). Not for longer rows: two of them (this row's e and
// gradient, the next row's logits) outgrow a 2 MiB L2 (512x262144 f32 in
// place, 2 threads: 0.232 -> 0.263 ns/logit). Up to 32 segments they fit:
// 4096x128256 CE forward + gradient, min ns/logit, 16 -> 32 segments (the
// fused walk, below): f32 1 thread 0.520 -> 0.430, 2 threads 0.263 ->
// 0.220; in place 0.387 -> 0.349 and 0.205 -> 0.183; bf16 0.327 -> 0.299
// and 0.170 -> 0.151.
template <class Op, class = void>
struct Pipelined : std::false_type {};
template <class Op>
struct Pipelined<Op, std::enable_if_t<Op::kPipelined>> : std::true_type {};

// FusedRows: a pipelined op may also run a row's output phase and the next
// row's stats phase in one walk over the columns, when it has
//   bool OutputStats(size_t row, const RowState& st, const Seg* segs,
//                    size_t next_row, Seg* next_segs, float* scratch) const;
// (the same results as Output(row, ..., 0, nseg) then Stats(next_row, 0, nseg)
// bit for bit; false, with nothing done, for rows it does not take; for an op
// whose middle pass writes its outputs, Middle in Output's place, with
// `segs` the middle pass's partials, FinishMiddle after it). One
// core's stores to memory then go out while its loads come in, which neither
// taking turns per row nor per 16 KiB segment gives, at any thread count:
// 8192x32000 CE forward + gradient f32, min ns/logit, 1 thread 0.510 ->
// 0.441, in place 0.404 -> 0.350, bf16 0.341 -> 0.300; 2 threads 0.255 ->
// 0.216, in place 0.224 -> 0.184, bf16 0.178 -> 0.155; KL forward + gradient
// (distillation) 1 thread 0.954 -> 0.839, 2 threads 0.464 -> 0.432; softmax
// probabilities 0.525 -> 0.455 and 0.264 -> 0.230; the token log-probs'
// backward without saved statistics (with p = e F), bf16 1 thread 0.475 ->
// 0.401, 2 threads 0.260 -> 0.206. Such ops take tasks
// of up to 16 rows with one thread too (RowsPerTask), so that most rows have
// a next one in their task.
template <class Op, class = void>
struct FusedRows : std::false_type {};
template <class Op>
struct FusedRows<Op, std::void_t<decltype(&Op::OutputStats)>> : std::true_type {};

// RunRowBlocks' rows per task: at least ~64K elements (one row for longer
// rows); with two threads or more (or FusedRows), up to 16 rows (4 for rows
// of more than kLocalSegments segments) while every thread still gets about
// 4 tasks.
// Pipelined, most rows then have a next one in the same task; and every
// op's stats walk, which prefetches past a row's end into the next row,
// rarely fetches a row another thread takes (tasks go to the threads one at
// a time). 2 threads, min ns/logit, A/B against ~64K elements per task:
// 8192x32000 CE forward f32 0.166-0.170 -> 0.147-0.148, bf16 0.126-0.130 ->
// 0.111-0.114, KL forward + gradient 0.514-0.533 -> 0.479-0.499;
// 4096x128256 CE forward 0.156-0.158 -> 0.148-0.149, token log-probs
// 0.155-0.156 -> 0.145.
inline size_t MinRowsPerTask(size_t V) { return std::max<size_t>(1, 65536 / V); }
// Rows of more than kLocalSegments segments: at most kMaxLongTasks tasks.
// Their partials live in a buffer of one row's per task (RunRowBlocks),
// allocated per call and first touched there: one row per task made it
// B rows' worth (1024x262144 token log-probs: 47 MB, 11.5k page faults per
// call).
constexpr size_t kMaxLongTasks = 64;
template <class Op>
size_t RowsPerTask(size_t B, size_t V, int threads) {
  const size_t r = MinRowsPerTask(V);
  const bool long_rows = NumSegments(V) > kLocalSegments;
  const size_t floor = long_rows ? (B + kMaxLongTasks - 1) / kMaxLongTasks : 1;
  if (threads <= 1 && !FusedRows<Op>::value) return std::max(r, floor);
  const size_t cap = long_rows ? 4 : 16;
  return std::max({r, floor, std::min<size_t>(cap, B / (4 * static_cast<size_t>(std::max(threads, 1))))});
}

// Bytes of exec.workspace that make a RunRows call of B rows of V classes
// allocate nothing of its own (either path; see EngineBuffer).
template <class Op>
size_t RowsWorkspaceBytes(size_t B, size_t V) {
  const size_t nseg = NumSegments(V), a = alignof(std::max_align_t);
  auto rounded = [a](size_t n) { return (n + a - 1) / a * a; };
  const size_t rows_per_task = MinRowsPerTask(V);  // (the most tasks)
  const size_t tasks = (B + rows_per_task - 1) / rows_per_task;
  const size_t blocks = nseg > kLocalSegments ? rounded(tasks * nseg * sizeof(typename Op::Seg)) : 0;
  const size_t split = rounded(B * nseg * sizeof(typename Op::Seg)) + rounded(B * sizeof(typename Op::RowState));
  return std::max(blocks, split) + a;  // + a: the workspace itself may start unaligned
}

// Many rows: a task is a block of rows holding at least ~64K elements; each
// row goes through every phase before the next (pipelined: its output phase
// interleaved with the next row's stats phase).
template <class Op>
xent_status RunRowBlocks(const Op& op, size_t B, size_t V, const Exec& exec) {
  using Seg = typename Op::Seg;
  const size_t nseg = NumSegments(V);
  const int threads = ThreadsFor(exec, B);
  // (An op with a middle pass and no output phase writes its outputs in the
  // middle pass: that pass takes the output phase's place, FinishMiddle
  // after it.)
  const bool pipelined = Pipelined<Op>::value && (threads > 1 || FusedRows<Op>::value) && nseg <= kLocalSegments &&
                         op.HasOutput() != op.HasMiddle();
  const size_t rows_per_task = RowsPerTask<Op>(B, V, threads);
  const size_t tasks = (B + rows_per_task - 1) / rows_per_task;
  static_assert(std::is_trivially_copyable<Seg>::value, "segment partials are plain data");
  // Rows of more than kLocal segments (V > 131072; at most kMaxLongTasks tasks) keep
  // their partials in one buffer allocated here, before any output is
  // written: a failed allocation inside a task would leave the rows other
  // tasks finished written, and a failed call must leave outputs untouched.
  // (The per-thread scratch may fail inside a task: ops then recompute.)
  constexpr size_t kLocal = kLocalSegments;
  static_assert(2 * kLocal * sizeof(Seg) <= 48 * 1024, "the pipelined loop's partials fit a small thread stack");
  size_t used = 0;
  EngineBuffer<Seg> long_segs(exec, &used, nseg > kLocal ? tasks * nseg : 0);
  if (!long_segs) return XENT_ERROR_OUT_OF_MEMORY;
  auto body = [&](size_t t) {
    float* scratch = op.ScratchRows() ? ThreadScratch(V * op.ScratchRows()) : nullptr;
    Seg local[kLocal];
    Seg* segs = nseg > kLocal ? long_segs.get() + t * nseg : local;
    const size_t r1 = std::min(B, (t + 1) * rows_per_task);
    if constexpr (Pipelined<Op>::value) {
      if (pipelined) {  // (segs: local)
        Seg next_local[kLocal];
        Seg* next = next_local;
        const bool middle = op.HasMiddle();
        const auto output = [&](size_t r, const typename Op::RowState& rs, size_t s0, size_t s1) {
          if (middle) {
            op.Middle(r, rs, segs, s0, s1, scratch);
          } else {
            op.Output(r, rs, segs, s0, s1, scratch);
          }
        };
        size_t row = t * rows_per_task;
        bool had = op.NeedsStats(row);
        if (had) op.Stats(row, 0, nseg, segs, scratch);
        for (; row < r1; ++row) {
          typename Op::Acc acc;
          if (had) MergeSegments<Op>(segs, nseg, &acc);
          typename Op::RowState st;
          op.Finish(row, acc, had, &st);
          const bool had_next = row + 1 < r1 && op.NeedsStats(row + 1);
          bool fused = false;
          if constexpr (FusedRows<Op>::value) {
            if (had_next) fused = op.OutputStats(row, st, segs, row + 1, next, scratch);
          }
          if (fused) {
            // (both phases done)
          } else if (had_next && threads > 1) {
            for (size_t s = 0; s < nseg; ++s) {
              output(row, st, s, s + 1);
              op.Stats(row + 1, s, s + 1, next + s, scratch);
            }
          } else if (had_next) {  // (one thread: a walk per segment loses the next one's max)
            output(row, st, 0, nseg);
            op.Stats(row + 1, 0, nseg, next, scratch);
          } else {
            output(row, st, 0, nseg);
          }
          if (middle) op.FinishMiddle(row, segs, nseg, &st);
          std::swap(segs, next);
          had = had_next;
        }
        return;
      }
    }
    for (size_t row = t * rows_per_task; row < r1; ++row) {
      typename Op::Acc acc;
      const bool had = StatsAndMerge(op, row, nseg, segs, scratch, &acc);
      typename Op::RowState st;
      op.Finish(row, acc, had, &st);
      if (op.HasMiddle()) {
        op.Middle(row, st, segs, 0, nseg, scratch);
        op.FinishMiddle(row, segs, nseg, &st);
      }
      if (op.HasOutput()) op.Output(row, st, segs, 0, nseg, scratch);
    }
  };
  return ParallelForEach(exec, tasks, body);
}

// Few long rows: each phase in parallel over (row, group of segments) tasks.
template <class Op>
xent_status RunSegmentSplit(const Op& op, size_t B, size_t V, const Exec& exec) {
  using Seg = typename Op::Seg;
  using RowState = typename Op::RowState;
  const size_t nseg = NumSegments(V);
  constexpr size_t kSegsPerTask = 4;
  const size_t groups = (nseg + kSegsPerTask - 1) / kSegsPerTask;
  size_t used = 0;
  EngineBuffer<Seg> seg_buf(exec, &used, B * nseg);
  EngineBuffer<RowState> state_buf(exec, &used, B);
  if (!seg_buf || !state_buf) return XENT_ERROR_OUT_OF_MEMORY;
  Seg* const segs = seg_buf.get();
  RowState* const states = state_buf.get();
  // Task t covers segments [s0, s1) of row `row`.
  auto span = [&](size_t t, size_t* row, size_t* s0, size_t* s1) {
    *row = t / groups;
    *s0 = (t % groups) * kSegsPerTask;
    *s1 = std::min(nseg, *s0 + kSegsPerTask);
  };
  auto stats = [&](size_t t) {
    size_t row, s0, s1;
    span(t, &row, &s0, &s1);
    if (op.NeedsStats(row)) op.Stats(row, s0, s1, &segs[row * nseg + s0], nullptr);
  };
  xent_status rc = ParallelForEach(exec, B * groups, stats);
  if (rc != XENT_OK) return rc;
  for (size_t row = 0; row < B; ++row) {
    typename Op::Acc acc;
    const bool had = op.NeedsStats(row);
    if (had) MergeSegments<Op>(&segs[row * nseg], nseg, &acc);
    op.Finish(row, acc, had, &states[row]);
  }
  if (op.HasMiddle()) {
    auto middle = [&](size_t t) {
      size_t row, s0, s1;
      span(t, &row, &s0, &s1);
      op.Middle(row, states[row], &segs[row * nseg], s0, s1, nullptr);
    };
    rc = ParallelForEach(exec, B * groups, middle);
    if (rc != XENT_OK) return rc;
    for (size_t row = 0; row < B; ++row) op.FinishMiddle(row, &segs[row * nseg], nseg, &states[row]);
  }
  if (!op.HasOutput()) return XENT_OK;
  auto out = [&](size_t t) {
    size_t row, s0, s1;
    span(t, &row, &s0, &s1);
    op.Output(row, states[row], &segs[row * nseg], s0, s1, nullptr);
  };
  return ParallelForEach(exec, B * groups, out);
}

// Row blocks when there are enough rows for the threads, else segments.
template <class Op>
xent_status RunRows(const Op& op, size_t B, size_t V, const Exec& exec) {
  if (B == 0) return XENT_OK;
  const size_t nseg = NumSegments(V);
  const int threads = ThreadsFor(exec, B * nseg);
  const bool by_segments = threads > 1 && nseg > 1 && B < 2 * static_cast<size_t>(threads);
  return by_segments ? RunSegmentSplit(op, B, V, exec) : RunRowBlocks(op, B, V, exec);
}

}  // namespace xent

#endif  // XENT_SRC_ENGINE_H_
