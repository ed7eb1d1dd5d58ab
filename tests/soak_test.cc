// Soak and concurrency: XENT_SOAK_CALLS random calls (default 4000; CI runs
// 100000) from XENT_SOAK_THREADS threads at once (default 8), each call a
// random operation with random shapes, dtypes, optional and in-place outputs
// and options (chosen through the operation table), on a random library
// variant (OpenMP, oneTBB, serial: loaded with dlopen; the static build has
// the one it links), thread count and host pool, while another thread forces
// random SIMD targets. One call in ten is made invalid (a random mutation from
// tests/common/invalid.h) and must give its status, message and no writes;
// every valid call must give XENT_OK, write every output element and nothing
// outside, and agree with its float64 reference (fuzz profile). The calls run
// in XENT_SOAK_ROUNDS rounds (default 3) that repeat the same sequence of
// cases and calls: the bytes malloc has handed out and the process' resident
// set (after malloc_trim) after each round are printed; their drift (the
// lowest later round minus the first: a leak raises every later round, noise
// single ones) must stay below XENT_SOAK_HEAP_KIB (default 128) and
// XENT_SOAK_RSS_MIB (default 64: the resident set moves by tens of MiB with
// glibc's stack cache, see below).
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/gtest_util.h"
#include "tests/common/invalid.h"
#include "tests/common/pool.h"

namespace xent_test {
namespace {

size_t Env(const char* name, size_t def) {
  const char* e = std::getenv(name);
  return e && *e ? static_cast<size_t>(std::strtoull(e, nullptr, 10)) : def;
}

// The resident set after returning free heap memory to the system (so that
// it counts live memory, not what malloc keeps for reuse).
// The bytes malloc has handed out and not had back (every arena, and its
// mmapped chunks), in KiB: exact where the resident set is not.
double HeapKiB() {
  const struct mallinfo2 m = mallinfo2();
  return static_cast<double>(m.uordblks + m.hblkhd) / 1024;
}

double RssMiB() {
  malloc_trim(0);
  std::ifstream f("/proc/self/statm");
  size_t pages = 0, resident = 0;
  f >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

const std::vector<Api>& Libs() {
  static const std::vector<Api> libs = [] {
#ifdef XENT_LIB_PATHS
    std::string error;
    std::vector<Api> v = Api::Load(XENT_LIB_PATHS, &error);
    if (!error.empty()) ADD_FAILURE() << error;
    return v;
#else
    return std::vector<Api>{Api::Linked()};
#endif
  }();
  return libs;
}

template <class T>
T Pick(Rng& r, std::initializer_list<T> v) {
  return *(v.begin() + r.Below(v.size()));
}

// A random valid case: every choice from the operation's table fields.
CaseSpec RandomSpec(Rng& r) {
  const abi::OpDesc& op = *abi::kAllOps[r.Below(sizeof(abi::kAllOps) / sizeof(abi::kAllOps[0]))];
  const size_t V = Pick<size_t>(r, {1, 2, 3, 16, 17, 255, 256, 257, 1000, 4095, 4096, 4097, 8193, 70001});
  const size_t B = V > 60000 ? 1 + r.Below(2) : (V > 4000 ? r.Below(4) : r.Below(9));
  CaseSpec s(op, B, V);
  s.seed = r.Next();
  s.sigma = 2;
  s.offset = r.Below(4);
  s.ignore_every = static_cast<int>(r.Below(4));
  const DType dt = Pick(r, {DType::kF32, DType::kBF16, DType::kF16});
  bool output = false;
  std::vector<std::string> partners;  // inputs already written in place
  for (size_t i = 0; i < op.num_fields; ++i) {
    const abi::Field& f = op.fields[i];
    if (!Supported(op, f.name)) continue;
    switch (f.role) {
      case abi::Role::kInMat:
        if (f.rule == abi::DTypeRule::kFloat) s.With(f.name, dt);
        break;
      case abi::Role::kOutMat:
        if (f.required || r.Below(5) < 3) {
          output = true;
          const bool free =
              f.in_place != nullptr && std::find(partners.begin(), partners.end(), f.in_place) == partners.end();
          if (free && r.Below(4) == 0) {
            s.InPlace(f.name);
            partners.push_back(f.in_place);
          } else {
            s.With(f.name, f.rule == abi::DTypeRule::kF32 || r.Below(2) ? DType::kAuto : DType::kF32);
          }
        }
        break;
      case abi::Role::kOutVec:
        if (r.Below(5) < 3) output = true, s.With(f.name);
        break;
      case abi::Role::kClassTarget:
        if (r.Below(4) == 0)
          s.With(f.name, Pick(r, {DType::kF32, dt}));
        else
          s.With(f.name, Pick(r, {DType::kI32, DType::kI64}));
        break;
      case abi::Role::kLabels:
        if (f.needed_by == nullptr && r.Below(3) == 0) s.With(f.name, Pick(r, {DType::kI32, DType::kI64}));
        break;
      case abi::Role::kInVec:
        if (r.Below(3) == 0) s.With(f.name);
        break;
      case abi::Role::kRowWeights:
        if (r.Below(3) == 0)
          s.With(f.name);
        else if (r.Below(2) == 0)
          s.Broadcast(f.name);
        break;
      case abi::Role::kEnum: {
        std::vector<int> valid;
        for (int v = 0; v < 32; ++v)
          if ((f.valid >> v) & 1u) valid.push_back(v);
        s.Set(f.name, valid[r.Below(valid.size())]);
        break;
      }
      case abi::Role::kFlag: s.Set(f.name, static_cast<double>(r.Below(2))); break;
      case abi::Role::kF32:
        switch (f.domain) {
          case abi::Domain::kUnit: s.Set(f.name, Pick(r, {0.0, 0.1, 0.5, 1.0})); break;
          case abi::Domain::kNonNegative: s.Set(f.name, Pick(r, {0.0, 1e-4})); break;
          case abi::Domain::kDivisor: s.Set(f.name, Pick(r, {1.0, 0.7, 2.0})); break;
          case abi::Domain::kDivisorOrOff: s.Set(f.name, Pick(r, {0.0, 20.0})); break;
          case abi::Domain::kFinite: s.Set(f.name, Pick(r, {1.0, -0.5, 0.25})); break;
          case abi::Domain::kAny: break;
        }
        break;
      default: break;
    }
  }
  for (size_t i = 0; op.needs_output && !output && i < op.num_fields; ++i) {  // the first output, then
    const abi::Field& f = op.fields[i];
    if ((f.role == abi::Role::kOutVec || f.role == abi::Role::kOutMat) && Supported(op, f.name))
      output = true, s.With(f.name);
  }
  return s;
}

struct Totals {
  std::atomic<size_t> calls{0}, invalid{0}, per_op[sizeof(abi::kAllOps) / sizeof(abi::kAllOps[0])] = {};
};

// One soaking thread: a pool of cases (with their references), refreshed as
// it goes; every call on a random library, thread count and pool.
void Soak(int id, size_t calls, Totals* t) {
  Rng r(1000 + static_cast<uint64_t>(id));
  struct Item {
    std::unique_ptr<Case> c;
    std::vector<Expected> want;
    std::vector<Mutation> bad;
  };
  auto make = [&] {
    Item it;
    it.c.reset(new Case(RandomSpec(r)));
    it.want = it.c->Reference(Profile::kFuzz);
    it.bad = Mutations(*it.c);
    return it;
  };
  std::vector<Item> items;
  for (int k = 0; k < 16; ++k) items.push_back(make());
  for (size_t n = 0; n < calls; ++n) {
    if (n % 64 == 63) items[r.Below(items.size())] = make();
    Item& it = items[r.Below(items.size())];
    Case& c = *it.c;
    const Api& lib = Libs()[r.Below(Libs().size())];
    HostPool pool;
    pool.mode = Pick(r, {PoolMode::kInOrder, PoolMode::kReverse, PoolMode::kThreads, PoolMode::kShuffled});
    pool.pieces = 1 + r.Below(3);
    pool.seed = static_cast<uint32_t>(r.Next());
    const bool use_pool = r.Below(5) == 0;
    c.Restore();
    c.SetArg<int32_t>("num_threads", static_cast<int32_t>(r.Below(4)));
    c.SetArg<xent_parallel_for_fn>("parallel_for", use_pool ? &HostPool::ParallelFor : nullptr);
    c.SetArg<void*>("parallel_user", &pool);
    std::vector<std::string> problems;
    if (r.Below(10) == 0 && !it.bad.empty()) {
      const Mutation& mu = it.bad[r.Below(it.bad.size())];
      const std::vector<unsigned char> args(c.args(), c.args() + c.args_capacity());
      mu.apply(c);
      const xent_status rc = c.Run(lib);
      if (rc != mu.want) problems.push_back(mu.what + ": status " + std::to_string(rc) + ": " + lib.LastError());
      for (const std::string& frag : mu.frags)
        if (std::string(lib.LastError()).find(frag) == std::string::npos)
          problems.push_back(mu.what + ": message \"" + lib.LastError() + "\" lacks \"" + frag + "\"");
      c.CheckUntouched(&problems);
      std::copy(args.begin(), args.end(), c.args());
      t->invalid.fetch_add(1);
    } else {
      const xent_status rc = c.Run(lib);
      if (rc != XENT_OK) {
        problems.push_back(std::string("status ") + xent_status_string(rc) + ": " + lib.LastError());
      } else {
        c.CheckWritten(&problems);
        c.Compare(it.want, Profile::kFuzz, &problems);
      }
    }
    t->calls.fetch_add(1);
    t->per_op[OpIndex(c.op())].fetch_add(1);
    if (!problems.empty()) {
      ADD_FAILURE() << lib.Backend() << " " << c.Describe() << ": " << problems.front();
      return;
    }
  }
}

TEST(Soak, RandomCallsFromManyThreads) {
  ASSERT_FALSE(Libs().empty());
  const size_t calls = Env("XENT_SOAK_CALLS", 4000), threads = std::max<size_t>(1, Env("XENT_SOAK_THREADS", 8));
  const std::vector<std::string> targets = Targets();
  Totals t;
  const auto t0 = std::chrono::steady_clock::now();
  std::atomic<bool> done{false};
  std::atomic<size_t> switches{0};
  std::thread switcher([&] {  // forces random targets while calls are running
    Rng r(7);
    while (!done.load()) {
      const size_t k = r.Below(targets.size() + 1);
      xent_force_target(k == targets.size() ? nullptr : targets[k].c_str());
      switches.fetch_add(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    xent_force_target(nullptr);
  });
  const size_t rounds = std::max<size_t>(2, Env("XENT_SOAK_ROUNDS", 3));
  std::vector<double> rss, heap;
  std::string rss_text, heap_text;
  for (size_t round = 0; round < rounds; ++round) {  // the same threads, seeds and calls each round
    std::vector<std::thread> ts;
    const size_t each = (calls + threads * rounds - 1) / (threads * rounds);
    for (size_t k = 0; k < threads; ++k) ts.emplace_back(Soak, static_cast<int>(k), each, &t);
    for (auto& th : ts) th.join();
    heap.push_back(HeapKiB());
    rss.push_back(RssMiB());
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.1f", round ? ", " : "", rss.back());
    rss_text += buf;
    std::snprintf(buf, sizeof buf, "%s%.0f", round ? ", " : "", heap.back());
    heap_text += buf;
  }
  done.store(true);
  switcher.join();
  // A leak raises the floor of later rounds. The heap figure is exact (a
  // round's one-time allocations, e.g. a runtime's per-thread pools, are a
  // few KiB); the resident set also holds glibc's cache of exited threads'
  // stacks (up to 40 MiB, as deep as those threads went) and arena pages, and
  // moved by 20 MiB between rounds of the same calls, so its bound only
  // catches what is large.
  const double rss_warm = rss.front(), rss_end = *std::min_element(rss.begin() + 1, rss.end());
  const double heap_drift = *std::min_element(heap.begin() + 1, heap.end()) - heap.front();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string ops;
  for (size_t i = 0; i < sizeof(abi::kAllOps) / sizeof(abi::kAllOps[0]); ++i)
    ops += std::string(i ? ", " : "") + abi::kAllOps[i]->name + " " + std::to_string(t.per_op[i].load());
  std::printf(
      "soak: %zu calls from %zu threads in %.1f s on %zu library variants (%s), %zu invalid; %zu target "
      "switches; RSS after each of %zu rounds of the same calls: %s MiB, drift (lowest later round - first) "
      "%+.1f MiB; heap in use: %s KiB\n",
      t.calls.load(), threads, seconds, Libs().size(), ops.c_str(), t.invalid.load(), switches.load(), rounds,
      rss_text.c_str(), rss_end - rss_warm, heap_text.c_str());
  EXPECT_LT(heap_drift, static_cast<double>(Env("XENT_SOAK_HEAP_KIB", 128)));
  EXPECT_LT(rss_end - rss_warm, static_cast<double>(Env("XENT_SOAK_RSS_MIB", 64)));
}

}  // namespace
}  // namespace xent_test
