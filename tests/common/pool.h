// Host thread pools (xent_parallel_for_fn) that split, order, run on threads,
// or misbehave (fail, skip a task, repeat one, hand out a range past the end):
// the threads test, the fuzz harness and the soak use them as a caller's pool.
#ifndef XENT_TESTS_COMMON_POOL_H_
#define XENT_TESTS_COMMON_POOL_H_

#include <cstddef>
#include <cstdint>

#include "xent/xent.h"

namespace xent_test {

enum class PoolMode : uint8_t {
  kInOrder,      // `pieces` contiguous ranges, in order, on the calling thread
  kReverse,      // one task at a time, last first
  kThreads,      // min(pieces, 3) contiguous ranges, each on its own std::thread
  kShuffled,     // random contiguous ranges (seed) in random order, 3 threads sharing a queue
  kFail,         // returns non-zero without running anything
  kSkipLast,     // runs [0, n - 1) only
  kRepeatFirst,  // runs [0, n), then [0, 1) again
  kOverrun,      // runs [0, n + 5): a range past the end
};

struct HostPool {
  PoolMode mode = PoolMode::kInOrder;
  size_t pieces = 1;
  uint32_t seed = 1;
  int32_t expect_hint = -1;  // the num_threads the call passes (-1: any)
  // What the last call saw (set on the calling thread).
  bool called = false, bad_hint = false;
  size_t last_n = 0;

  // Whether xent must report XENT_ERROR_CALLBACK after being handed this pool.
  bool Misbehaved() const;
  static int ParallelFor(void* user, size_t n, xent_task_fn task, void* ctx, int32_t num_threads_hint);
};

}  // namespace xent_test

#endif  // XENT_TESTS_COMMON_POOL_H_
