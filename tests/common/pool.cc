#include "tests/common/pool.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <utility>
#include <vector>

#include "tests/common/buffer.h"

namespace xent_test {

bool HostPool::Misbehaved() const {
  if (!called) return false;
  switch (mode) {
    case PoolMode::kFail: return true;
    case PoolMode::kSkipLast:
    case PoolMode::kRepeatFirst:
    case PoolMode::kOverrun: return last_n > 0;
    default: return false;
  }
}

int HostPool::ParallelFor(void* user, size_t n, xent_task_fn task, void* ctx, int32_t hint) {
  auto* p = static_cast<HostPool*>(user);
  p->called = true;
  p->last_n = n;
  if (p->expect_hint >= 0 && hint != p->expect_hint) p->bad_hint = true;
  const size_t pieces = std::max<size_t>(1, std::min(p->pieces, n));
  switch (p->mode) {
    case PoolMode::kInOrder:
      for (size_t k = 0; k < pieces; ++k) {
        const size_t b = n * k / pieces, e = n * (k + 1) / pieces;
        if (b < e) task(ctx, b, e);
      }
      return 0;
    case PoolMode::kReverse:
      for (size_t i = n; i-- > 0;) task(ctx, i, i + 1);
      return 0;
    case PoolMode::kThreads: {
      const size_t t = std::min<size_t>(pieces, 3);
      std::vector<std::thread> th;
      for (size_t k = 0; k < t; ++k) {
        th.emplace_back([=] {
          const size_t b = n * k / t, e = n * (k + 1) / t;
          if (b < e) task(ctx, b, e);
        });
      }
      for (auto& x : th) x.join();
      return 0;
    }
    case PoolMode::kShuffled: {
      Rng rng(p->seed);
      std::vector<std::pair<size_t, size_t>> ranges;
      for (size_t b = 0; b < n;) {
        const size_t len = 1 + rng.Below(std::max<size_t>(1, n / 3 + 1));
        ranges.emplace_back(b, std::min(n, b + len));
        b = std::min(n, b + len);
      }
      for (size_t i = ranges.size(); i > 1; --i) std::swap(ranges[i - 1], ranges[rng.Below(i)]);
      std::atomic<size_t> next{0};
      auto worker = [&] {
        for (size_t k; (k = next.fetch_add(1)) < ranges.size();) task(ctx, ranges[k].first, ranges[k].second);
      };
      std::thread t1(worker), t2(worker);
      worker();
      t1.join();
      t2.join();
      return 0;
    }
    case PoolMode::kFail: return 1;
    case PoolMode::kSkipLast:
      if (n > 1) task(ctx, 0, n - 1);
      return 0;
    case PoolMode::kRepeatFirst:
      task(ctx, 0, n);
      task(ctx, 0, 1);
      return 0;
    case PoolMode::kOverrun: task(ctx, 0, n + 5); return 0;
  }
  return 0;
}

}  // namespace xent_test
