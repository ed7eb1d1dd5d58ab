#include "src/parallel.h"

#include <cstddef>

#include <algorithm>
#include <atomic>
#include <new>
#include <thread>

#if defined(XENT_THREADING_OPENMP)
#include <omp.h>
#elif defined(XENT_THREADING_TBB)
#include <tbb/blocked_range.h>
#include <tbb/info.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#endif

namespace xent {

const char* ThreadingBackendName() {
#if defined(XENT_THREADING_OPENMP)
  return "openmp";
#elif defined(XENT_THREADING_TBB)
  return "tbb";
#else
  return "none";
#endif
}

int MaxThreads() {
#if defined(XENT_THREADING_OPENMP)
  return std::max(1, omp_get_max_threads());
#elif defined(XENT_THREADING_TBB)
  return std::max(1, tbb::info::default_concurrency());
#else
  return 1;
#endif
}

int ThreadsFor(const Exec& exec, size_t num_tasks) {
  int t = exec.num_threads > 0 ? exec.num_threads : MaxThreads();
  if (exec.parallel_for == nullptr) {
#if !defined(XENT_THREADING_OPENMP) && !defined(XENT_THREADING_TBB)
    t = 1;
#endif
  } else if (exec.num_threads == 0) {
    t = std::max(t, 2);  // the host's pool sizes itself
  }
  if (num_tasks < static_cast<size_t>(t)) t = static_cast<int>(std::max<size_t>(num_tasks, 1));
  return t;
}

namespace {

struct CallbackCtx {
  xent_task_fn task;
  void* ctx;
  size_t n;
  std::atomic<size_t> done{0};
  std::atomic<bool> bad_range{false};
};

void CallbackTrampoline(void* c, size_t begin, size_t end) {
  auto* cc = static_cast<CallbackCtx*>(c);
  if (begin > end || end > cc->n) {  // never run a task outside [0, n)
    cc->bad_range.store(true, std::memory_order_relaxed);
    return;
  }
  cc->task(cc->ctx, begin, end);
  cc->done.fetch_add(end - begin, std::memory_order_relaxed);
}

}  // namespace

xent_status ParallelFor(const Exec& exec, size_t n, xent_task_fn task, void* ctx) {
  if (n == 0) return XENT_OK;
  const int threads = ThreadsFor(exec, n);
  if (threads <= 1) {
    task(ctx, 0, n);
    return XENT_OK;
  }
  if (exec.parallel_for != nullptr) {
    CallbackCtx cc;
    cc.task = task;
    cc.ctx = ctx;
    cc.n = n;
    const int rc = exec.parallel_for(exec.parallel_user, n, &CallbackTrampoline, &cc, exec.num_threads);
    if (rc != 0 || cc.bad_range.load() || cc.done.load() != n) return XENT_ERROR_CALLBACK;
    return XENT_OK;
  }
#if defined(XENT_THREADING_OPENMP)
  const long long nn = static_cast<long long>(n);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (long long i = 0; i < nn; ++i) task(ctx, static_cast<size_t>(i), static_cast<size_t>(i) + 1);
  return XENT_OK;
#elif defined(XENT_THREADING_TBB)
  try {
    // TBB cannot run more workers than its global limit and says so on
    // stderr; nothing may print from inside xent, so ask for at most that.
    tbb::task_arena arena(std::min(threads, std::max(1, tbb::info::default_concurrency())));
    arena.execute([&] {
      tbb::parallel_for(tbb::blocked_range<size_t>(0, n, 1),
                        [&](const tbb::blocked_range<size_t>& r) { task(ctx, r.begin(), r.end()); });
    });
  } catch (...) {
    return XENT_ERROR_OUT_OF_MEMORY;
  }
  return XENT_OK;
#else
  task(ctx, 0, n);
  return XENT_OK;
#endif
}

}  // namespace xent
