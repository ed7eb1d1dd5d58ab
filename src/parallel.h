// Threading: runs a fixed set of tasks on the built-in backend (OpenMP, oneTBB
// or serial, chosen at build time) or on the caller's pool. The set of tasks
// never depends on the thread count, so neither do the results.
#ifndef XENT_SRC_PARALLEL_H_
#define XENT_SRC_PARALLEL_H_

#include <cstddef>
#include <cstdint>

#include "xent/xent.h"

namespace xent {

struct Exec {
  int32_t num_threads = 0;  // 0 = all cores
  xent_parallel_for_fn parallel_for = nullptr;
  void* parallel_user = nullptr;
  // The row engine's per-call buffers (src/engine.h, RowsWorkspaceBytes),
  // when a caller that calls it several times per call (after writing some
  // outputs) allocated them beforehand; else the engine allocates them.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// Threads a call will use: num_threads, or all cores for 0, never more than
// num_tasks. A caller's pool counts as "many" (its own sizing decides).
int ThreadsFor(const Exec& exec, size_t num_tasks);

// Backend name and core count, for the C API.
const char* ThreadingBackendName();
int MaxThreads();

// Runs task(ctx, begin, end) over [0, n). Returns XENT_OK, or
// XENT_ERROR_CALLBACK when the caller's parallel_for fails or skips tasks,
// or XENT_ERROR_OUT_OF_MEMORY when the backend cannot start.
xent_status ParallelFor(const Exec& exec, size_t n, xent_task_fn task, void* ctx);

// Convenience for a lambda.
template <class F>
xent_status ParallelForEach(const Exec& exec, size_t n, F& f) {
  return ParallelFor(
      exec, n,
      [](void* c, size_t b, size_t e) {
        F& fn = *static_cast<F*>(c);
        for (size_t i = b; i < e; ++i) fn(i);
      },
      &f);
}

}  // namespace xent

#endif  // XENT_SRC_PARALLEL_H_
