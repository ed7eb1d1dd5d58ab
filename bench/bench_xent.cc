// bench_xent: Google Benchmark binary for every xent operation, the scalar C++
// reference peer and a streaming memory-bandwidth probe (the roofline).
//
//   bench_xent [--suite=bandwidth,xent,ref] [--ops=default|all|op,...]
//              [--shapes=default|BxV,...] [--dtypes=f32,bf16] [--threads=1,all]
//              [--targets=auto|others|all|name,...] [--bw_gib=1]
//              [--list] [Google Benchmark flags, e.g. --benchmark_repetitions=5
//               --benchmark_out=x.json --benchmark_out_format=json]
//
// Benchmark names:
//   bandwidth/<read|copy|copy_nt|inplace>/threads:<n>
//   xent/<op>/<f32|bf16>/<B>x<V>/threads:<n>/target:<auto|name>
//   scalar_ref/<op>/<f32|bf16>/<B>x<V>/threads:<n>
// Counters (per repetition): ns_per_logit, GB_per_s (bytes_per_logit x logits
// / time), bytes_per_logit (the byte model), bw_kind (roofline bandwidth:
// 0 read, 1 copy, 3 in-place), threads, logits, and for xent a cross-check
// against the scalar reference on the warm-up slice (up to 64 rows):
// check_loss_rel_err, check_out_rel_err (largest output difference / largest
// reference output). Timing is manual (wall clock around the call only; an
// in-place benchmark regenerates its logits outside the timed region). Inputs
// are generated once per shape/dtype, outputs are pre-faulted and reused, all
// buffers 64-byte aligned. One warm-up call per case (on up to 64 rows when
// the shape is large) before the timed repetitions. The operations, their
// inputs and calls are in bench_ops.cc.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <benchmark/benchmark.h>

#include "bandwidth.h"
#include "bench_ops.h"
#include "scalar_ref.h"
#include "xent/xent.h"

namespace xb = xent_bench;

namespace {

using xb::AllThreads;
using xb::Case;
using xb::Check;
using xb::g_sink;
using xb::Info;
using xb::kOps;
using xb::Op;
using xb::OpInfo;

std::string g_warm_key;  // the last case warmed up
bool g_bw_used = false;
void ReleaseBandwidthBuffers();

std::string CaseKey(const Case& c) {
  char k[200];
  std::snprintf(k, sizeof(k), "%d/%d/%zux%zu/%d/%s/%d", static_cast<int>(c.op), static_cast<int>(c.dt), c.B, c.V,
                c.threads, c.target.c_str(), c.ref ? 1 : 0);
  return k;
}

void RunCase(benchmark::State& st, const Case& c) {
  ReleaseBandwidthBuffers();
  const OpInfo& info = Info(c.op);
  if (!c.ref) {
    const xent_status fs = xent_force_target(c.target == "auto" ? nullptr : c.target.c_str());
    if (fs != XENT_OK) {
      const std::string msg = "xent_force_target(" + c.target + "): " + xent_last_error();
      st.SkipWithError(msg.c_str());
      for (auto _ : st) {
      }
      return;
    }
  }
  xb::Prepare(c);
  auto refill = [&] {  // in place: restore the logits (untimed)
    xb::InvalidateLogits(c.dt);
    xb::Prepare(c);
  };
  const std::string what = c.ref ? "scalar reference" : std::string("xent ") + info.name;
  // Warm-up (thread pool, scratch, code): once per case, on a slice of the
  // rows when the whole call is long.
  const std::string key = CaseKey(c);
  static std::map<std::string, Check> checks;
  if (g_warm_key != key) {
    const size_t rows = (c.B * c.V > (size_t{1} << 22)) ? std::min<size_t>(c.B, 64) : c.B;
    float loss = 0.0f;
    const xent_status rc = c.ref ? (xb::CallRef(c, rows), XENT_OK) : xb::XentCall(c, rows).Run(&loss);
    if (rc == XENT_OK && !c.ref && checks.find(key) == checks.end()) checks[key] = xb::CrossCheck(c, rows, loss);
    if (rc != XENT_OK) {
      const std::string msg = what + " failed: " + xent_status_string(rc) + ": " + xent_last_error();
      st.SkipWithError(msg.c_str());
      for (auto _ : st) {
      }
      return;
    }
    g_warm_key = key;
  }
  std::unique_ptr<xb::XentCall> call(c.ref ? nullptr : new xb::XentCall(c, c.B));
  double total = 0.0;
  for (auto _ : st) {
    if (info.inplace) refill();
    const auto t0 = std::chrono::steady_clock::now();
    const xent_status rc = c.ref ? (xb::CallRef(c, c.B), XENT_OK) : call->Run();
    const auto t1 = std::chrono::steady_clock::now();
    if (rc != XENT_OK) {
      const std::string msg = what + " failed: " + xent_status_string(rc) + ": " + xent_last_error();
      st.SkipWithError(msg.c_str());
      break;
    }
    const double sec = std::chrono::duration<double>(t1 - t0).count();
    st.SetIterationTime(sec);
    total += sec;
  }
  if (info.inplace) xb::InvalidateLogits(c.dt);  // the logits now hold a gradient
  if (st.error_occurred()) return;
  const double logits = static_cast<double>(c.B) * static_cast<double>(c.V);
  const double iters = static_cast<double>(st.iterations());
  const double bpl = static_cast<double>(xb::DtSize(c.dt) * static_cast<size_t>(info.reads + info.writes));
  st.counters["ns_per_logit"] = total * 1e9 / (iters * logits);
  st.counters["GB_per_s"] = bpl * logits * iters / total * 1e-9;
  st.counters["bytes_per_logit"] = bpl;
  st.counters["bw_kind"] = BwClassOf(info);
  st.counters["threads"] = c.threads > 0 ? c.threads : (c.ref ? AllThreads() : xent_max_threads());
  st.counters["logits"] = logits;
  const Check check = checks.count(key) ? checks[key] : Check();
  if (check.loss_rel >= 0) st.counters["check_loss_rel_err"] = check.loss_rel;
  if (check.out_rel >= 0) st.counters["check_out_rel_err"] = check.out_rel;
  if (!c.ref) st.SetLabel(xent_active_target());
}

// ---------------------------------------------------------------------------
// Bandwidth probe.
struct BwBuffers {
  float* a = nullptr;
  float* b = nullptr;
  size_t n = 0;
};
BwBuffers g_bw;

void ReleaseBandwidthBuffers() {
  std::free(g_bw.a);
  std::free(g_bw.b);
  g_bw = BwBuffers();
}

void RunBandwidth(benchmark::State& st, xb::BwKind kind, int threads, double gib) {
  const size_t n = static_cast<size_t>(gib * 1073741824.0 / 4.0) / 16 * 16;
  if (g_bw.n != n) {
    ReleaseBandwidthBuffers();
    g_bw.a = static_cast<float*>(std::aligned_alloc(64, n * 4));
    g_bw.b = static_cast<float*>(std::aligned_alloc(64, n * 4));
    if (!g_bw.a || !g_bw.b) {
      st.SkipWithError("cannot allocate the bandwidth buffers");
      for (auto _ : st) {
      }
      return;
    }
    xb::ParallelFill(g_bw.a, n, 1.0f, threads);
    xb::ParallelFill(g_bw.b, n, 0.0f, threads);
    g_bw.n = n;
    xb::BwPass(kind, g_bw.b, g_bw.a, n, threads);  // warm-up
  }
  g_bw_used = true;
  double total = 0.0;
  for (auto _ : st) {
    const auto t0 = std::chrono::steady_clock::now();
    g_sink += xb::BwPass(kind, g_bw.b, g_bw.a, n, threads);
    const auto t1 = std::chrono::steady_clock::now();
    const double sec = std::chrono::duration<double>(t1 - t0).count();
    st.SetIterationTime(sec);
    total += sec;
  }
  const double bytes = static_cast<double>(n) * static_cast<double>(xb::BwBytesPerFloat(kind));
  const double iters = static_cast<double>(st.iterations());
  st.counters["GB_per_s"] = bytes * iters / total * 1e-9;
  st.counters["bytes"] = bytes;
  st.counters["threads"] = threads > 0 ? threads : AllThreads();
  st.SetLabel(xb::BwIsa());
}

// ---------------------------------------------------------------------------
// Command line.
std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= s.size()) {
    const size_t e = s.find(',', b);
    const std::string item = s.substr(b, e == std::string::npos ? std::string::npos : e - b);
    if (!item.empty()) out.push_back(item);
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return out;
}

struct Options {
  std::vector<std::string> suites = {"bandwidth", "xent", "ref"};
  std::string ops = "default";
  std::string shapes = "default";
  std::string dtypes = "f32,bf16";
  std::string threads = "1,all";
  std::string targets = "auto";
  // Forced (non-auto) targets and the scalar reference may use subsets
  // ("" = the same as ops / dtypes / threads).
  std::string target_ops, target_dtypes, target_threads, ref_ops;
  int target_reps = 0, ref_reps = 0;  // 0 = --benchmark_repetitions
  double bw_gib = 1.0;
  bool list = false;
};

const char kDefaultShapes[] = "8192x32000,4096x128256,64x262144,1x262144,32768x4096";

void PrintUsage() {
  std::printf(
      "bench_xent: benchmarks of every xent operation, a scalar C++ reference and memory bandwidth.\n"
      "  --suite=LIST     bandwidth,xent,ref (default: all three)\n"
      "  --ops=LIST       default | all | op,... (default: ce_fwd,ce_fwd_grad,kl_fwd_grad,token_logprobs,softmax)\n"
      "  --shapes=LIST    default | BxV,...      (default: %s)\n"
      "  --dtypes=LIST    f32,bf16               (default: f32,bf16)\n"
      "  --threads=LIST   1,all or numbers       (default: 1,all)\n"
      "  --targets=LIST   auto | others (every supported target but the best) | all | name,... (default: auto)\n"
      "  --target_ops=, --target_dtypes=, --target_threads=LIST   subsets for the forced (non-auto) targets\n"
      "  --ref_ops=LIST   operations of the scalar reference (default: --ops)\n"
      "  --target_reps=N, --ref_reps=N   repetitions of forced targets / the reference (default: the flag)\n"
      "  --bw_gib=X       bandwidth buffer size in GiB per buffer (default 1)\n"
      "  --list           print the operations, byte models and targets, then exit\n"
      "Google Benchmark flags follow (e.g. --benchmark_repetitions=5, --benchmark_out=FILE,\n"
      "--benchmark_out_format=json, --benchmark_filter=REGEX).\n",
      kDefaultShapes);
}

bool Parse(int* argc, char** argv, Options* o) {
  int w = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string a = argv[i];
    auto val = [&](const char* flag, std::string* dst) {
      const std::string f = std::string(flag) + "=";
      if (a.compare(0, f.size(), f) == 0) {
        *dst = a.substr(f.size());
        return true;
      }
      return false;
    };
    std::string v;
    if (val("--suite", &v)) {
      o->suites = SplitList(v);
    } else if (val("--ops", &o->ops) || val("--shapes", &o->shapes) || val("--dtypes", &o->dtypes) ||
               val("--threads", &o->threads) || val("--targets", &o->targets) || val("--target_ops", &o->target_ops) ||
               val("--target_dtypes", &o->target_dtypes) || val("--target_threads", &o->target_threads) ||
               val("--ref_ops", &o->ref_ops)) {
    } else if (val("--target_reps", &v)) {
      o->target_reps = std::atoi(v.c_str());
    } else if (val("--ref_reps", &v)) {
      o->ref_reps = std::atoi(v.c_str());
    } else if (val("--bw_gib", &v)) {
      o->bw_gib = std::atof(v.c_str());
    } else if (a == "--list") {
      o->list = true;
    } else if (a == "--help" || a == "-h") {
      PrintUsage();
      return false;
    } else {
      argv[w++] = argv[i];
    }
  }
  *argc = w;
  return true;
}

bool Has(const std::vector<std::string>& v, const char* s) { return std::find(v.begin(), v.end(), s) != v.end(); }

std::vector<std::string> SupportedTargets() {
  const size_t n = xent_supported_targets(nullptr, 0);
  std::vector<const char*> names(n);
  xent_supported_targets(names.data(), n);
  return std::vector<std::string>(names.begin(), names.end());
}

int Main(int argc, char** argv) {
  Options o;
  if (!Parse(&argc, argv, &o)) return 0;
  const std::vector<std::string> supported = SupportedTargets();

  std::string avail;
  for (const OpInfo& i : kOps) {
    avail += (avail.empty() ? "" : ",");
    avail += i.name;
  }
  std::string tlist;
  for (const std::string& t : supported) tlist += (tlist.empty() ? "" : ",") + t;

  if (o.list) {
    std::printf("xent %s (%s threading, %d threads); targets (best first): %s\n", xent_version_string(),
                xent_threading_backend(), xent_max_threads(), tlist.c_str());
    std::printf("%-20s %-9s %-22s %s\n", "op", "available", "bytes/logit (f32)", "what");
    for (const OpInfo& i : kOps) {
      char model[64];
      std::snprintf(model, sizeof(model), "%d (%dR+%dW%s)", 4 * (i.reads + i.writes), i.reads, i.writes,
                    i.inplace ? " in place" : "");
      std::printf("%-20s %-9s %-22s %s\n", i.name, "yes", model, i.what);
    }
    return 0;
  }

  // Operations.
  auto parse_ops = [](const std::string& list, std::vector<Op>* out) {
    if (list == "default" || list == "all") {
      for (const OpInfo& i : kOps)
        if (list == "all" || i.in_default) out->push_back(i.op);
      return true;
    }
    for (const std::string& n : SplitList(list)) {
      bool found = false;
      for (const OpInfo& i : kOps) {
        if (n == i.name) {
          out->push_back(i.op);
          found = true;
        }
      }
      if (!found) {
        std::fprintf(stderr, "bench_xent: unknown op \"%s\" (see --list)\n", n.c_str());
        return false;
      }
    }
    return true;
  };
  std::vector<Op> ops, target_ops, ref_ops;
  if (!parse_ops(o.ops, &ops) || !parse_ops(o.target_ops.empty() ? o.ops : o.target_ops, &target_ops) ||
      !parse_ops(o.ref_ops.empty() ? o.ops : o.ref_ops, &ref_ops))
    return 2;
  // Shapes.
  std::vector<std::pair<size_t, size_t>> shapes;
  for (const std::string& s : SplitList(o.shapes == "default" ? kDefaultShapes : o.shapes)) {
    unsigned long long B = 0, V = 0;
    if (std::sscanf(s.c_str(), "%llux%llu", &B, &V) != 2 || B == 0 || V == 0) {
      std::fprintf(stderr, "bench_xent: bad shape \"%s\" (want BxV)\n", s.c_str());
      return 2;
    }
    shapes.emplace_back(B, V);
  }
  auto parse_dtypes = [](const std::string& list, std::vector<xb::Dt>* out) {
    for (const std::string& d : SplitList(list)) {
      if (d == "f32") {
        out->push_back(xb::Dt::kF32);
      } else if (d == "bf16") {
        out->push_back(xb::Dt::kBF16);
      } else {
        std::fprintf(stderr, "bench_xent: unknown dtype \"%s\" (f32, bf16)\n", d.c_str());
        return false;
      }
    }
    return true;
  };
  std::vector<xb::Dt> dtypes, target_dtypes;
  if (!parse_dtypes(o.dtypes, &dtypes) ||
      !parse_dtypes(o.target_dtypes.empty() ? o.dtypes : o.target_dtypes, &target_dtypes))
    return 2;
  auto parse_threads = [](const std::string& list) {
    std::vector<int> out;
    for (const std::string& t : SplitList(list)) out.push_back(t == "all" ? 0 : std::atoi(t.c_str()));
    return out;
  };
  const std::vector<int> threads = parse_threads(o.threads);
  const std::vector<int> target_threads = parse_threads(o.target_threads.empty() ? o.threads : o.target_threads);
  std::vector<std::string> targets;
  for (const std::string& t : SplitList(o.targets)) {
    if (t == "auto" || t == "all") targets.push_back("auto");
    if (t == "others" || t == "all") {
      for (size_t i = 1; i < supported.size(); ++i) targets.push_back(supported[i]);
    }
    if (t != "auto" && t != "all" && t != "others") targets.push_back(t);
  }

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  benchmark::AddCustomContext("xent_version", xent_version_string());
  benchmark::AddCustomContext("xent_threading", xent_threading_backend());
  benchmark::AddCustomContext("xent_max_threads", std::to_string(xent_max_threads()));
  benchmark::AddCustomContext("xent_targets", tlist);
  benchmark::AddCustomContext("xent_ops_available", avail);
  benchmark::AddCustomContext("bandwidth_isa", xb::BwIsa());
  benchmark::AddCustomContext("scalar_ref_openmp", xb::RefHasOpenMP() ? "yes" : "no");

  auto min_stat = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
  auto max_stat = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
  auto name_threads = [&](int t, bool ref) {
    return t > 0 ? t : (ref ? AllThreads() : static_cast<int>(xent_max_threads()));
  };

  if (Has(o.suites, "bandwidth")) {
    const xb::BwKind kinds[] = {xb::BwKind::kRead, xb::BwKind::kCopy, xb::BwKind::kCopyNT, xb::BwKind::kInPlace};
    for (int t : threads) {
      for (xb::BwKind k : kinds) {
        const std::string name =
            std::string("bandwidth/") + xb::BwKindName(k) + "/threads:" + std::to_string(name_threads(t, true));
        const double gib = o.bw_gib;
        benchmark::RegisterBenchmark(name.c_str(), [k, t, gib](benchmark::State& st) { RunBandwidth(st, k, t, gib); })
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond)
            ->Iterations(2)
            ->ComputeStatistics("min", min_stat)
            ->ComputeStatistics("max", max_stat);
      }
    }
  }

  // xent (auto and forced targets) and the scalar reference, registered
  // shape by shape so that --benchmark_enable_random_interleaving=true mixes
  // the repetitions of everything measured on one shape (a fair comparison
  // on a noisy machine; inputs stay generated per shape and dtype).
  auto in = [](const auto& v, const auto& x) { return std::find(v.begin(), v.end(), x) != v.end(); };
  std::vector<int> all_threads = threads;
  for (int t : target_threads)
    if (!in(all_threads, t)) all_threads.push_back(t);
  const bool run_xent = Has(o.suites, "xent"), run_ref = Has(o.suites, "ref");
  for (const auto& shape : shapes) {
    for (xb::Dt dt : {xb::Dt::kF32, xb::Dt::kBF16}) {
      for (const OpInfo& info : kOps) {
        const Op op = info.op;
        for (int t : all_threads) {
          std::vector<std::pair<std::string, bool>> cases;  // (target, ref)
          for (const std::string& target : targets) {
            if (!run_xent) break;
            const bool ok = target == "auto" ? in(ops, op) && in(dtypes, dt) && in(threads, t)
                                             : in(target_ops, op) && in(target_dtypes, dt) && in(target_threads, t);
            if (ok) cases.emplace_back(target, false);
          }
          if (run_ref && in(ref_ops, op) && in(dtypes, dt) && in(threads, t)) cases.emplace_back("", true);
          for (const auto& tc : cases) {
            const bool ref = tc.second;
            Case c{op, dt, shape.first, shape.second, t, tc.first, ref};
            char name[256];
            std::snprintf(name, sizeof(name), "%s/%s/%s/%zux%zu/threads:%d%s%s", ref ? "scalar_ref" : "xent", info.name,
                          dt == xb::Dt::kF32 ? "f32" : "bf16", c.B, c.V, name_threads(t, ref),
                          ref ? "" : "/target:", ref ? "" : c.target.c_str());
            auto* b = benchmark::RegisterBenchmark(name, [c](benchmark::State& st) { RunCase(st, c); });
            b->UseManualTime()->Unit(benchmark::kMillisecond)->ComputeStatistics("min", min_stat);
            if (ref && o.ref_reps > 0) b->Repetitions(o.ref_reps);
            if (!ref && c.target != "auto" && o.target_reps > 0) b->Repetitions(o.target_reps);
            // Large shapes: one call per repetition; small ones: enough calls
            // for a stable time.
            if (c.B * c.V >= (size_t{1} << 22)) {
              b->Iterations(1);
            } else {
              b->MinTime(0.1);
            }
          }
        }
      }
    }
  }

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (g_sink == 12345.678f) std::printf(" ");  // keep g_sink alive
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
