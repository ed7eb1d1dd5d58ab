// Vocab-parallel cross-entropy (xent_cross_entropy_shard_stats / _finish):
// P column shards simulated in one process (phase 1 per shard, the stats
// concatenated in rank order as an all-gather would, phase 2 per shard),
// against xent_cross_entropy's bits (shards on the documented alignment) and
// the float64 reference (any split), on every SIMD target, 1 and 2 threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "src/dtype.h"
#include "src/engine.h"
#include "src/problem.h"
#include "tests/common/gtest_util.h"
#include "tests/common/pool.h"
#include "tests/common/tolerance.h"
#include "tests/reference.h"

namespace xent_test {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr size_t kSeg = 4096;

// One cross-entropy problem over the whole B x V logits.
struct Problem {
  size_t B = 3, V = 100;
  DType dt = DType::kF32;   // logits
  DType gdt = DType::kF32;  // gradient (kAuto: none)
  bool in_place = false;    // gradient over the logits (gdt must be dt)
  bool i32 = false;         // int32 targets
  size_t ignore_every = 0;  // rows i % ignore_every == 1 ignored
  bool all_ignored = false;
  bool weighted = false, row_scale = false;
  int reduction = XENT_REDUCTION_MEAN;
  float eps = 0, z_loss = 0, softcap = 0, grad_scale = 1;
  int32_t threads = 1;
  HostPool* pool = nullptr;  // the caller's thread pool, or xent's
  uint32_t seed = 1;

  std::vector<float> x;  // B x V, already representable in dt
  std::vector<int64_t> y;
  std::vector<float> weight, rs;

  void Fill() {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n(0.0f, 2.0f);
    x.resize(B * V);
    for (float& v : x) v = RoundTo(n(rng), dt);
    y.resize(B);
    std::uniform_int_distribution<int64_t> cls(0, static_cast<int64_t>(V) - 1);
    for (size_t i = 0; i < B; ++i) {
      y[i] = cls(rng);
      if (all_ignored || (ignore_every && i % ignore_every == 1)) y[i] = -100;
    }
    std::uniform_real_distribution<float> u(0.25f, 2.0f);
    weight.clear();
    rs.clear();
    if (weighted) {
      for (size_t c = 0; c < V; ++c) weight.push_back(u(rng));
    }
    if (row_scale) {
      for (size_t i = 0; i < B; ++i) rs.push_back(u(rng));
    }
  }
  static float RoundTo(float v, DType t) { return static_cast<float>(xent_test::RoundTo(v, t)); }
};

// Columns [c0, c0 + w) of p's logits in p.dt, rows `stride` elements apart.
std::vector<unsigned char> Columns(const Problem& p, size_t c0, size_t w, size_t stride) {
  const size_t es = xent::DTypeSize(p.dt);
  std::vector<unsigned char> m(p.B * stride * es + 1, 0xCD);
  for (size_t i = 0; i < p.B; ++i) {
    for (size_t j = 0; j < w; ++j) xent::StoreScalarF32(m.data(), i * stride + j, p.dt, p.x[i * p.V + c0 + j]);
  }
  return m;
}

// What one call produces: loss, row_loss, lse, and the gradient's raw bytes
// (B x the call's columns, packed).
struct Out {
  float loss = 0;
  std::vector<float> row, lse;
  std::vector<unsigned char> grad;
};

std::vector<int32_t> Narrow(const std::vector<int64_t>& y) { return std::vector<int32_t>(y.begin(), y.end()); }

Out Whole(const Problem& p) {
  std::vector<unsigned char> logits = Columns(p, 0, p.V, p.V);
  std::vector<int32_t> y32 = Narrow(p.y);
  Out o;
  o.row.assign(p.B, 0.0f);
  o.lse.assign(p.B, 0.0f);
  xent_cross_entropy_args a;
  XENT_ARGS_INIT(xent_cross_entropy_args, &a);
  a.batch = p.B;
  a.num_classes = p.V;
  a.logits = logits.data();
  a.logits_dtype = static_cast<int32_t>(p.dt);
  a.target = p.i32 ? static_cast<const void*>(y32.data()) : p.y.data();
  a.target_dtype = p.i32 ? XENT_I32 : XENT_I64;
  a.weight = p.weighted ? p.weight.data() : nullptr;
  a.row_scale = p.row_scale ? p.rs.data() : nullptr;
  a.reduction = p.reduction;
  a.label_smoothing = p.eps;
  a.z_loss = p.z_loss;
  a.softcap = p.softcap;
  a.grad_scale = p.grad_scale;
  a.loss = &o.loss;
  a.row_loss = o.row.data();
  a.lse = o.lse.data();
  a.num_threads = p.threads;
  if (p.gdt != DType::kAuto) {
    if (p.in_place) {
      a.grad = logits.data();
    } else {
      o.grad.assign(p.B * p.V * xent::DTypeSize(p.gdt) + 1, 0xAB);
      a.grad = o.grad.data();
      a.grad_dtype = static_cast<int32_t>(p.gdt);
    }
  }
  EXPECT_EQ(xent_cross_entropy(&a), XENT_OK) << xent_last_error();
  if (p.in_place) o.grad = logits;
  if (!o.grad.empty()) o.grad.resize(p.B * p.V * xent::DTypeSize(p.gdt));
  return o;
}

// One rank's stats (doubles).
size_t RankDoubles(const Problem& p) { return xent_cross_entropy_shard_stats_doubles(p.B, p.eps); }

// The sharded calls: `bounds` = {0, o_1, ..., V}. Per rank its Out (grad:
// the shard's columns); `cat` the ranks' gradients side by side (B x V).
struct ShardRun {
  std::vector<Out> ranks;
  std::vector<unsigned char> cat;
};

xent_cross_entropy_shard_stats_args StatsArgs(const Problem& p, const void* logits, size_t c0, size_t w, size_t stride,
                                              const std::vector<int32_t>& y32, double* stats) {
  xent_cross_entropy_shard_stats_args a;
  XENT_ARGS_INIT(xent_cross_entropy_shard_stats_args, &a);
  a.batch = p.B;
  a.num_classes = p.V;
  a.shard_classes = w;
  a.class_offset = c0;
  a.logits = logits;
  a.logits_stride = stride;
  a.logits_dtype = static_cast<int32_t>(p.dt);
  a.target = p.i32 ? static_cast<const void*>(y32.data()) : p.y.data();
  a.target_dtype = p.i32 ? XENT_I32 : XENT_I64;
  a.weight = p.weighted ? p.weight.data() : nullptr;
  a.label_smoothing = p.eps;
  a.softcap = p.softcap;
  a.stats = stats;
  a.num_threads = p.threads;
  if (p.pool) {
    a.parallel_for = HostPool::ParallelFor;
    a.parallel_user = p.pool;
  }
  return a;
}

xent_cross_entropy_shard_finish_args FinishArgs(const Problem& p, void* logits, size_t c0, size_t w, size_t stride,
                                                const std::vector<int32_t>& y32, const double* stats, size_t P,
                                                Out* o) {
  xent_cross_entropy_shard_finish_args a;
  XENT_ARGS_INIT(xent_cross_entropy_shard_finish_args, &a);
  a.batch = p.B;
  a.num_classes = p.V;
  a.shard_classes = w;
  a.class_offset = c0;
  a.logits = logits;
  a.logits_stride = stride;
  a.logits_dtype = static_cast<int32_t>(p.dt);
  a.target = p.i32 ? static_cast<const void*>(y32.data()) : p.y.data();
  a.target_dtype = p.i32 ? XENT_I32 : XENT_I64;
  a.weight = p.weighted ? p.weight.data() : nullptr;
  a.row_scale = p.row_scale ? p.rs.data() : nullptr;
  a.reduction = p.reduction;
  a.label_smoothing = p.eps;
  a.z_loss = p.z_loss;
  a.softcap = p.softcap;
  a.grad_scale = p.grad_scale;
  a.stats = stats;
  a.num_shards = P;
  a.loss = &o->loss;
  a.row_loss = o->row.data();
  a.lse = o->lse.data();
  a.num_threads = p.threads;
  if (p.pool) {
    a.parallel_for = HostPool::ParallelFor;
    a.parallel_user = p.pool;
  }
  return a;
}

// Phase 1 of every rank into one gathered P x RankDoubles array.
std::vector<double> Gather(const Problem& p, const std::vector<size_t>& bounds) {
  const size_t P = bounds.size() - 1;
  std::vector<int32_t> y32 = Narrow(p.y);
  const size_t per = RankDoubles(p);
  std::vector<double> stats(P * per);
  for (size_t r = 0; r < P; ++r) {
    const size_t c0 = bounds[r], w = bounds[r + 1] - c0, stride = w + r % 2 * 3;  // odd ranks padded
    std::vector<unsigned char> logits = Columns(p, c0, w, stride);
    auto a = StatsArgs(p, logits.data(), c0, w, stride, y32, stats.data() + r * per);
    EXPECT_EQ(xent_cross_entropy_shard_stats(&a), XENT_OK) << xent_last_error();
  }
  return stats;
}

ShardRun Sharded(const Problem& p, const std::vector<size_t>& bounds) {
  const size_t P = bounds.size() - 1;
  const std::vector<double> stats = Gather(p, bounds);
  std::vector<int32_t> y32 = Narrow(p.y);
  ShardRun run;
  const size_t ges = p.gdt == DType::kAuto ? 0 : xent::DTypeSize(p.gdt);
  run.cat.assign(p.B * p.V * ges, 0);
  for (size_t r = 0; r < P; ++r) {
    const size_t c0 = bounds[r], w = bounds[r + 1] - c0, stride = w + r % 2 * 3;
    std::vector<unsigned char> logits = Columns(p, c0, w, stride);
    Out o;
    o.row.assign(p.B, 0.0f);
    o.lse.assign(p.B, 0.0f);
    auto a = FinishArgs(p, logits.data(), c0, w, stride, y32, stats.data(), P, &o);
    std::vector<unsigned char> g;
    if (p.gdt != DType::kAuto) {
      if (p.in_place) {
        a.grad = logits.data();
        a.grad_stride = stride;
      } else {
        g.assign(p.B * w * ges + 1, 0xAB);
        a.grad = g.data();
        a.grad_dtype = static_cast<int32_t>(p.gdt);
      }
    }
    EXPECT_EQ(xent_cross_entropy_shard_finish(&a), XENT_OK) << "rank " << r << ": " << xent_last_error();
    if (p.gdt != DType::kAuto) {
      const unsigned char* src = p.in_place ? logits.data() : g.data();
      const size_t src_stride = p.in_place ? stride : w;
      o.grad.resize(p.B * w * ges);
      for (size_t i = 0; i < p.B; ++i) {
        std::memcpy(&o.grad[i * w * ges], src + i * src_stride * ges, w * ges);
        std::memcpy(&run.cat[(i * p.V + c0) * ges], src + i * src_stride * ges, w * ges);
      }
    }
    run.ranks.push_back(o);
  }
  return run;
}

bool SameBits(float a, float b) { return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, sizeof a) == 0; }

// Gradients of dtype t: the same bits (any NaN as any NaN).
void ExpectSameGrad(const std::vector<unsigned char>& a, const std::vector<unsigned char>& b, DType t,
                    const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  const size_t n = a.size() / xent::DTypeSize(t);
  size_t bad = 0;
  for (size_t k = 0; k < n; ++k) {
    const float u = xent::LoadScalarF32(a.data(), k, t), v = xent::LoadScalarF32(b.data(), k, t);
    if (!SameBits(u, v) && bad++ < 5) ADD_FAILURE() << what << ": grad[" << k << "] " << u << " vs " << v;
  }
}

void ExpectSameRows(const Out& a, const Out& b, const std::string& what) {
  EXPECT_TRUE(SameBits(a.loss, b.loss)) << what << ": loss " << a.loss << " vs " << b.loss;
  for (size_t i = 0; i < a.row.size(); ++i) {
    EXPECT_TRUE(SameBits(a.row[i], b.row[i])) << what << ": row_loss[" << i << "] " << a.row[i] << " vs " << b.row[i];
    EXPECT_TRUE(SameBits(a.lse[i], b.lse[i])) << what << ": lse[" << i << "] " << a.lse[i] << " vs " << b.lse[i];
  }
}

std::string Name(const Problem& p, const std::vector<size_t>& bounds) {
  std::string s = "B=" + std::to_string(p.B) + " V=" + std::to_string(p.V) +
                  " dt=" + std::to_string(static_cast<int>(p.dt)) + " gdt=" + std::to_string(static_cast<int>(p.gdt)) +
                  " threads=" + std::to_string(p.threads) + " eps=" + std::to_string(p.eps) +
                  " z=" + std::to_string(p.z_loss) + " cap=" + std::to_string(p.softcap) +
                  " red=" + std::to_string(p.reduction) + (p.weighted ? " weighted" : "") +
                  (p.in_place ? " in_place" : "") + " shards=";
  for (size_t b : bounds) s += std::to_string(b) + ",";
  return s + " target=" + xent_active_target();
}

// Every rank's outputs: the same bits as rank 0's.
void ExpectRanksAgree(const ShardRun& run, const std::string& what) {
  for (size_t r = 1; r < run.ranks.size(); ++r)
    ExpectSameRows(run.ranks[0], run.ranks[r], what + " rank " + std::to_string(r));
}

// Bit-equality with xent_cross_entropy (shards on the documented alignment).
void ExpectEqualsWhole(const Problem& p, const std::vector<size_t>& bounds) {
  if (SkipLarge(p.B * p.V)) return;  // XENT_TEST_MAX_ELEMENTS: sanitizer and emulated runs
  const std::string what = Name(p, bounds);
  const Out whole = Whole(p);
  const ShardRun run = Sharded(p, bounds);
  ExpectRanksAgree(run, what);
  ExpectSameRows(whole, run.ranks[0], what + " vs whole");
  if (p.gdt != DType::kAuto) ExpectSameGrad(whole.grad, run.cat, p.in_place ? p.dt : p.gdt, what + " vs whole");
}

// Any split: the ranks agree, and the float64 reference within the contract.
void ExpectReference(const Problem& p, const std::vector<size_t>& bounds) {
  if (SkipLarge(p.B * p.V)) return;
  const std::string what = Name(p, bounds);
  const ShardRun run = Sharded(p, bounds);
  ExpectRanksAgree(run, what);
  xent_ref::CeSpec s;
  s.B = p.B;
  s.V = p.V;
  s.x.assign(p.x.begin(), p.x.end());
  s.y = p.y;
  s.weight.assign(p.weight.begin(), p.weight.end());
  s.row_scale.assign(p.rs.begin(), p.rs.end());
  s.reduction = p.reduction;
  s.eps = p.eps;
  s.z_loss = p.z_loss;
  s.softcap = p.softcap;
  s.grad_scale = p.grad_scale;
  const xent_ref::CeOut r = xent_ref::CrossEntropy(s);
  double zmax = 0;
  for (float v : p.x) zmax = std::max(zmax, std::fabs(static_cast<double>(v)));
  if (p.softcap > 0) zmax = std::min(zmax, static_cast<double>(p.softcap));
  // The contract's bounds, as tests/common/op_ce.cc states them.
  const double row_abs = kRowAbs + (p.softcap > 0 ? 8 : 2) * kEps * zmax;
  const Tol row{kRowRel, row_abs}, loss{kLossRel, p.softcap > 0 ? row_abs : 0.0};
  const Out& o = run.ranks[0];
  EXPECT_TRUE(Agree(o.loss, r.loss, loss, DType::kF32, Profile::kContract))
      << what << ": loss " << o.loss << " want " << r.loss;
  for (size_t i = 0; i < p.B; ++i) {
    EXPECT_TRUE(Agree(o.row[i], r.row_loss[i], row, DType::kF32, Profile::kContract))
        << what << ": row_loss[" << i << "] " << o.row[i] << " want " << r.row_loss[i];
    EXPECT_TRUE(Agree(o.lse[i], r.lse[i], row, DType::kF32, Profile::kContract))
        << what << ": lse[" << i << "] " << o.lse[i] << " want " << r.lse[i];
  }
  if (p.gdt == DType::kAuto) return;
  const DType gt = p.in_place ? p.dt : p.gdt;
  const Tol gtol{0, gt == DType::kF32 ? kGradAbs * std::max(1.0, std::fabs(static_cast<double>(p.grad_scale))) *
                                            (p.softcap > 0 ? 4 : 1)
                                      : kGradAbs};
  size_t bad = 0;
  for (size_t k = 0; k < p.B * p.V; ++k) {
    const float g = xent::LoadScalarF32(run.cat.data(), k, gt);
    if (!Agree(g, r.grad[k], gtol, gt, Profile::kContract) && bad++ < 5) {
      ADD_FAILURE() << what << ": grad[" << k / p.V << ", " << k % p.V << "] " << g << " want " << r.grad[k];
    }
  }
}

// Shards of width w (the last one the rest) over V classes.
std::vector<size_t> Even(size_t V, size_t w) {
  std::vector<size_t> b;
  for (size_t c = 0; c < V; c += w) b.push_back(c);
  b.push_back(V);
  return b;
}

class VocabParallelTest : public AllTargets {};

// Shards of 4096 * 2^k columns at multiples of it: xent_cross_entropy's bits,
// P = 1 (any V), 2, 3 (the last shorter), 4, every dtype, 1 and 2 threads
// (2 threads with 3 rows split rows into segments; with 9 rows, row blocks).
TEST_P(VocabParallelTest, AlignedShardsEqualWholeBits) {
  struct Split {
    size_t V, width;
  };
  const Split splits[] = {{5000, 5000},           {16384, 8192},    {16384, 4096}, {3 * 4096, 4096},
                          {3 * 8192 - 100, 8192}, {4 * 8192, 8192}, {16384, 16384}};
  for (const Split& sp : splits) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (int32_t threads : {1, 2}) {
        Problem p;
        p.V = sp.V;
        p.B = threads == 2 && dt != DType::kF16 ? 9 : 3;
        p.dt = dt;
        p.gdt = dt == DType::kBF16 ? DType::kBF16 : DType::kF32;
        p.threads = threads;
        p.i32 = dt == DType::kF16;
        p.seed = static_cast<uint32_t>(sp.V + sp.width + static_cast<size_t>(dt) * 7 + static_cast<size_t>(threads));
        p.Fill();
        ExpectEqualsWhole(p, Even(sp.V, sp.width));
      }
    }
  }
}

// Every option, on aligned shards (bits) and on odd ones (reference):
// reductions, class weights with label smoothing (global V and the global
// weight total), z-loss, softcap, row_scale, grad_scale, ignored rows,
// int32 targets, in place.
TEST_P(VocabParallelTest, Options) {
  int k = 0;
  for (int red : {XENT_REDUCTION_NONE, XENT_REDUCTION_MEAN, XENT_REDUCTION_SUM}) {
    for (int opt = 0; opt < 8; ++opt) {
      ++k;
      Problem p;
      p.B = 7;
      p.V = 2 * 4096 + 17;
      p.dt = opt % 3 == 2 ? DType::kBF16 : DType::kF32;
      p.gdt = p.dt;
      p.in_place = opt == 3 || opt == 6;
      p.reduction = red;
      p.weighted = opt & 1;
      p.eps = (opt & 2) ? 0.15f : 0.0f;
      p.z_loss = (opt & 4) ? 1e-3f : 0.0f;
      p.softcap = opt == 5 ? 12.0f : 0.0f;
      p.row_scale = opt == 7;
      p.grad_scale = opt == 6 ? -0.5f : 1.0f;
      p.ignore_every = 3;
      p.i32 = opt & 1;
      p.threads = 1 + k % 2;
      p.seed = static_cast<uint32_t>(100 + k);
      p.Fill();
      ExpectEqualsWhole(p, Even(p.V, 4096));                    // 3 shards, the last of 17 classes
      ExpectReference(p, {0, 1000, 4097, 4098, p.V - 5, p.V});  // 5 shards, none aligned
    }
  }
}

// Unaligned splits agree with the float64 reference: V = 50000 in 3 shards at
// odd offsets, shards narrower than a segment (one class), a shard without
// any row's target, 2 and 4 ranks; f32/bf16/f16.
TEST_P(VocabParallelTest, UnalignedShardsMatchReference) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int32_t threads : {1, 2}) {
      Problem p;
      p.B = 4;
      p.V = 50000;
      p.dt = dt;
      p.gdt = dt;
      p.threads = threads;
      p.weighted = threads == 2;
      p.eps = 0.1f;
      p.seed = static_cast<uint32_t>(7 + static_cast<int>(dt) + threads);
      p.Fill();
      ExpectReference(p, {0, 16661, 33337, 50000});
      ExpectReference(p, {0, 12345, 50000});
    }
  }
  Problem p;
  p.B = 5;
  p.V = 1000;
  p.eps = 0.2f;
  p.weighted = true;
  p.z_loss = 1e-4f;
  p.Fill();
  for (size_t i = 0; i < p.B; ++i) p.y[i] = static_cast<int64_t>(500 + i);  // shard [1, 300) holds none
  ExpectReference(p, {0, 1, 300, 999, 1000});
  ExpectReference(p, {0, 1000});  // P = 1
}

// Rows the statistics merge specially: ignored rows (also every row, MEAN:
// NaN loss, zero gradient), -inf logits (a shard entirely -inf, a row
// entirely -inf), NaN in one shard; aligned, so xent_cross_entropy's bits.
TEST_P(VocabParallelTest, IgnoredMaskedAndNaNRows) {
  for (int32_t threads : {1, 2}) {
    Problem p;
    p.B = 6;
    p.V = 3 * 4096;
    p.eps = 0.1f;
    p.threads = threads;
    p.ignore_every = 4;
    p.Fill();
    for (size_t j = 0; j < 4096; ++j) p.x[0 * p.V + 4096 + j] = kNegInf;  // row 0: shard 1 all -inf
    p.y[0] = 5;
    for (size_t j = 0; j < p.V; ++j) p.x[2 * p.V + j] = kNegInf;    // row 2: all -inf
    p.x[3 * p.V + 9000] = std::numeric_limits<float>::quiet_NaN();  // row 3: NaN in shard 2
    p.x[4 * p.V + 17] = kNegInf;                                    // row 4: one masked class
    const std::vector<size_t> bounds = Even(p.V, 4096);
    ExpectEqualsWhole(p, bounds);
    const ShardRun run = Sharded(p, bounds);
    EXPECT_TRUE(std::isnan(run.ranks[0].row[2]) && run.ranks[0].lse[2] == kNegInf);
    EXPECT_TRUE(std::isnan(run.ranks[0].row[3]) && std::isnan(run.ranks[0].lse[3]));

    p.all_ignored = true;
    p.Fill();
    ExpectEqualsWhole(p, bounds);
    const ShardRun ign = Sharded(p, bounds);
    EXPECT_TRUE(std::isnan(ign.ranks[0].loss));
    for (unsigned char c : ign.cat) ASSERT_EQ(c, 0) << "ignored rows' gradient is 0";
  }
}

// B = 0: MEAN is NaN, SUM 0, as xent_cross_entropy.
TEST_P(VocabParallelTest, EmptyBatch) {
  for (int red : {XENT_REDUCTION_MEAN, XENT_REDUCTION_SUM}) {
    Problem p;
    p.B = 0;
    p.V = 5000;
    p.reduction = red;
    p.Fill();
    p.y.push_back(0);  // a target buffer (required even when empty), never read
    ExpectEqualsWhole(p, {0, 4096, 5000});
    const ShardRun run = Sharded(p, {0, 4096, 5000});
    EXPECT_TRUE(red == XENT_REDUCTION_MEAN ? std::isnan(run.ranks[1].loss) : run.ranks[1].loss == 0.0f);
  }
}

// A host pool that splits and orders the tasks its own way gives the bits of
// one thread (stats and finish); a failing pool is XENT_ERROR_CALLBACK.
TEST_P(VocabParallelTest, HostPool) {
  for (size_t B : {2, 40}) {  // rows split into segments; row blocks
    Problem p;
    p.B = B;
    p.V = 4 * 4096 + 300;
    p.eps = 0.05f;
    p.weighted = true;
    p.Fill();
    const std::vector<size_t> bounds = {0, 8192, 16384, p.V};
    const ShardRun one = Sharded(p, bounds);
    HostPool pool;
    pool.mode = PoolMode::kShuffled;
    pool.seed = static_cast<uint32_t>(B);
    p.pool = &pool;
    p.threads = 3;
    const ShardRun hosted = Sharded(p, bounds);
    EXPECT_TRUE(pool.called);
    for (size_t r = 0; r < one.ranks.size(); ++r) ExpectSameRows(one.ranks[r], hosted.ranks[r], "host pool");
    ExpectSameGrad(one.cat, hosted.cat, p.gdt, "host pool");
  }
  Problem p;  // two rows of 3 segments over 3 threads: more than one task
  p.B = 2;
  p.V = 3 * 4096;
  p.threads = 3;
  p.Fill();
  HostPool failing;
  failing.mode = PoolMode::kFail;
  p.pool = &failing;
  std::vector<unsigned char> logits = Columns(p, 0, p.V, p.V);
  std::vector<int32_t> y32 = Narrow(p.y);
  std::vector<double> stats(RankDoubles(p));
  auto a = StatsArgs(p, logits.data(), 0, p.V, p.V, y32, stats.data());
  EXPECT_EQ(xent_cross_entropy_shard_stats(&a), XENT_ERROR_CALLBACK);
  p.pool = nullptr;
  a = StatsArgs(p, logits.data(), 0, p.V, p.V, y32, stats.data());
  ASSERT_EQ(xent_cross_entropy_shard_stats(&a), XENT_OK) << xent_last_error();
  p.pool = &failing;
  Out o;
  o.row.assign(p.B, 0.0f);
  o.lse.assign(p.B, 0.0f);
  auto f = FinishArgs(p, logits.data(), 0, p.V, p.V, y32, stats.data(), 1, &o);
  EXPECT_EQ(xent_cross_entropy_shard_finish(&f), XENT_ERROR_CALLBACK);
}

// Row i's statistics in a rank's stats (the layout src/problem.h documents;
// these are made with smoothing: D and W present).
xent::SoftmaxAcc Decode(const double* rank_stats, size_t i) {
  double rec[4];
  std::memcpy(rec, rank_stats + xent::kShardHeaderDoubles + i * 4, sizeof(rec));
  float mzy[2];
  std::memcpy(mzy, &rec[xent::kRowMZy], sizeof(mzy));
  xent::SoftmaxAcc a;
  a.M = mzy[0];
  a.S = rec[xent::kRowS];
  a.D = rec[xent::kRowD];
  a.W = rec[xent::kRowW];
  a.zy = mzy[1];
  a.has_zy = !std::isnan(mzy[1]);
  return a;
}
bool SameAcc(const xent::SoftmaxAcc& a, const xent::SoftmaxAcc& b) {
  return std::memcmp(&a.M, &b.M, 8) == 0 && std::memcmp(&a.S, &b.S, 8) == 0 && std::memcmp(&a.D, &b.D, 8) == 0 &&
         std::memcmp(&a.W, &b.W, 8) == 0 && a.has_zy == b.has_zy && (!a.has_zy || SameBits(a.zy, b.zy));
}

// The f64 statistics themselves (the f32 outputs hide most f64 rounding, so
// the bit-equality tests above would rarely see a different merge order):
// aligned shards' stats merged in the engine's tree over ranks are the whole
// row's stats (one shard of V classes, the segments merged by the engine),
// bit for bit; the left fold over ranks is not, for P = 4 and 8.
TEST_P(VocabParallelTest, AlignedShardStatsMergeToTheWholeRowsStats) {
  for (size_t P : {2, 3, 4, 8}) {
    for (size_t width : {4096, 8192}) {
      Problem p;
      p.B = 64;
      p.V = P * width - (P == 3 ? 1000 : 0);
      p.eps = 0.1f;
      p.weighted = width == 8192;
      p.threads = 2;
      p.seed = static_cast<uint32_t>(P * 10 + width);
      p.Fill();
      const std::vector<double> whole = Gather(p, {0, p.V});
      const std::vector<double> ranks = Gather(p, Even(p.V, width));
      size_t fold_differs = 0;
      for (size_t i = 0; i < p.B; ++i) {
        auto rank = [&](size_t r) { return Decode(&ranks[r * RankDoubles(p)], i); };
        const xent::SoftmaxAcc tree = xent::TreeMerge<xent::SoftmaxAcc>(P, rank);
        EXPECT_TRUE(SameAcc(tree, Decode(whole.data(), i))) << "P=" << P << " width=" << width << " row " << i;
        xent::SoftmaxAcc fold = rank(0);
        for (size_t r = 1; r < P; ++r) fold.Combine(rank(r));
        fold_differs += !SameAcc(fold, tree);
      }
      if (P >= 4) {
        EXPECT_GT(fold_differs, 0u) << "P=" << P << ": the test cannot tell the merge orders apart";
      }
    }
  }
}

// The collective's size: 16 bytes per row and rank (32 with label
// smoothing), plus a 4-double header per rank; 0 when it overflows.
TEST(VocabParallelStats, Size) {
  EXPECT_EQ(xent_cross_entropy_shard_stats_doubles(0, 0.0f), 4u);
  EXPECT_EQ(xent_cross_entropy_shard_stats_doubles(1000, 0.0f), 4u + 2000u);
  EXPECT_EQ(xent_cross_entropy_shard_stats_doubles(1000, 0.1f), 4u + 4000u);
  EXPECT_EQ(xent_cross_entropy_shard_stats_doubles(SIZE_MAX / 4, 0.1f), 0u);
  EXPECT_EQ(xent_cross_entropy_shard_stats_doubles((SIZE_MAX - 4) / 4, 0.1f), SIZE_MAX - 3);
}

// ---------------------------------------------------------------------------
// Bad input: a status, a message naming the argument and its value, outputs
// untouched.

struct Bad : ::testing::Test {
  Problem p;
  std::vector<size_t> bounds;
  std::vector<unsigned char> logits;
  std::vector<int32_t> y32;
  std::vector<double> stats;
  Out o;
  void SetUp() override {
    p.B = 3;
    p.V = 300;
    p.eps = 0.1f;
    p.Fill();
    bounds = {0, 100, 300};
    logits = Columns(p, 100, 200, 200);
    y32 = Narrow(p.y);
    stats = Gather(p, bounds);
    o.row.assign(p.B, 7.0f);
    o.lse.assign(p.B, 7.0f);
    o.loss = 7.0f;
  }
  xent_cross_entropy_shard_finish_args Finish() {
    return FinishArgs(p, logits.data(), 100, 200, 200, y32, stats.data(), 2, &o);
  }
  void ExpectFinishFails(const xent_cross_entropy_shard_finish_args& a, xent_status want, const char* text) {
    EXPECT_EQ(xent_cross_entropy_shard_finish(&a), want) << xent_last_error();
    EXPECT_NE(std::string(xent_last_error()).find(text), std::string::npos) << xent_last_error();
    EXPECT_EQ(o.loss, 7.0f);
    for (size_t i = 0; i < p.B; ++i) EXPECT_TRUE(o.row[i] == 7.0f && o.lse[i] == 7.0f) << "outputs untouched";
  }
};

TEST_F(Bad, StatsArguments) {
  std::vector<double> out(RankDoubles(p), 5.0);
  auto base = StatsArgs(p, logits.data(), 100, 200, 200, y32, out.data());
  auto expect = [&](const xent_cross_entropy_shard_stats_args& a, xent_status want, const char* text) {
    EXPECT_EQ(xent_cross_entropy_shard_stats(&a), want) << xent_last_error();
    EXPECT_NE(std::string(xent_last_error()).find(text), std::string::npos) << xent_last_error();
    for (double v : out) EXPECT_EQ(v, 5.0) << "stats untouched";
  };
  auto a = base;
  a.class_offset = 101;
  expect(a, XENT_ERROR_INVALID_SHAPE, "class_offset (101) + shard_classes (200) exceeds num_classes (300)");
  a = base;
  a.shard_classes = 0;
  expect(a, XENT_ERROR_INVALID_SHAPE, "shard_classes = 0");
  a = base;
  a.shard_classes = 301;
  expect(a, XENT_ERROR_INVALID_SHAPE, "shard_classes = 301");
  a = base;
  a.stats = nullptr;
  expect(a, XENT_ERROR_NULL_POINTER, "stats is NULL");
  a = base;
  a.logits = nullptr;
  expect(a, XENT_ERROR_NULL_POINTER, "logits is NULL");
  a = base;
  a.logits_stride = 199;
  expect(a, XENT_ERROR_INVALID_SHAPE, "logits_stride (199) < shard_classes (200)");
  a = base;
  a.target = nullptr;
  expect(a, XENT_ERROR_NULL_POINTER, "target is NULL");
  const int64_t y1 = p.y[1];
  p.y[1] = 300;  // a global index: 300 is out of range, 250 is not
  expect(base, XENT_ERROR_TARGET_OUT_OF_RANGE, "target[1] = 300 is outside [0, 300)");
  p.y[1] = y1;
  a = base;
  a.struct_size = 8;
  expect(a, XENT_ERROR_INVALID_STRUCT, "struct_size");
  a = base;
  a.stats = reinterpret_cast<double*>(logits.data() + 8);  // overlaps the logits
  EXPECT_EQ(xent_cross_entropy_shard_stats(&a), XENT_ERROR_ALIASING) << xent_last_error();
  EXPECT_EQ(xent_cross_entropy_shard_stats(nullptr), XENT_ERROR_NULL_POINTER);
}

TEST_F(Bad, FinishArguments) {
  auto a = Finish();
  a.class_offset = 150;
  ExpectFinishFails(a, XENT_ERROR_INVALID_SHAPE, "class_offset (150) + shard_classes (200) exceeds num_classes (300)");
  a = Finish();
  a.num_shards = 0;
  ExpectFinishFails(a, XENT_ERROR_INVALID_SHAPE, "num_shards = 0");
  a = Finish();
  a.stats = nullptr;
  ExpectFinishFails(a, XENT_ERROR_NULL_POINTER, "stats is NULL");
  a = Finish();
  a.struct_size = 1;
  ExpectFinishFails(a, XENT_ERROR_INVALID_STRUCT, "struct_size");
  a = Finish();
  a.num_shards = 1;  // rank 0's stats only
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE, "cover classes [0, 100), not num_classes = 300");
  // Ranks swapped.
  std::vector<double> swapped(stats.size());
  const size_t per = RankDoubles(p);
  std::memcpy(swapped.data(), stats.data() + per, per * sizeof(double));
  std::memcpy(swapped.data() + per, stats.data(), per * sizeof(double));
  a = Finish();
  a.stats = swapped.data();
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE, "stats of rank 0 cover classes [100, 100 + 200)");
  // A batch of 2 rows read as 3 (the gather of a different batch).
  a = Finish();
  a.batch = 2;
  o.row.assign(2, 7.0f);
  o.lse.assign(2, 7.0f);
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE, "stats of rank 0 hold 3 rows, not batch = 2");
  o.row.assign(p.B, 7.0f);
  o.lse.assign(p.B, 7.0f);
  // Stats without the smoothing sums, finished with smoothing.
  p.eps = 0;
  std::vector<double> plain = Gather(p, bounds);
  p.eps = 0.1f;
  a = Finish();
  a.stats = plain.data();
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE,
                    "label_smoothing = 0.1, but the stats of rank 0 were computed with label_smoothing = 0");
  // ... and the other way round.
  p.eps = 0;
  a = Finish();
  a.stats = stats.data();
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE,
                    "label_smoothing = 0, but the stats of rank 0 were computed with "
                    "label_smoothing > 0");
  p.eps = 0.1f;
  // Different targets in the two phases.
  a = Finish();
  std::vector<int64_t> other = p.y;
  other[2] = p.y[2] < 100 ? 200 : 50;
  a.target = other.data();
  a.target_dtype = XENT_I64;
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE, "(different targets in xent_cross_entropy_shard_stats, or none?)");
  EXPECT_NE(std::string(xent_last_error()).find("target[2] = " + std::to_string(other[2])), std::string::npos);
  // This call's shard is not among the stats.
  std::vector<unsigned char> l3 = Columns(p, 0, 300, 300);
  a = Finish();
  a.logits = l3.data();
  a.class_offset = 0;
  a.shard_classes = 300;
  a.logits_stride = 300;
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE, "no rank's stats cover this shard's classes");
  // Garbage stats (NaN in a range field).
  std::vector<double> junk = stats;
  junk[xent::kHdrWidth] = std::numeric_limits<double>::quiet_NaN();
  a = Finish();
  a.stats = junk.data();
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE, "stats of rank 0 cover classes [0, 0 + nan)");
  // Not stats at all (rank 1's header is not where the layout puts it).
  junk = stats;
  junk[RankDoubles(p)] = 0.0;
  a = Finish();
  a.stats = junk.data();
  ExpectFinishFails(a, XENT_ERROR_INVALID_VALUE, "stats of rank 1 are not xent_cross_entropy_shard_stats'");
  // The gradient over the stats (in a buffer that holds both).
  std::vector<double> both(p.B * 200);
  std::copy(stats.begin(), stats.end(), both.begin());
  a = Finish();
  a.stats = both.data();
  a.grad = both.data();
  ExpectFinishFails(a, XENT_ERROR_ALIASING, "grad overlaps stats");
  EXPECT_EQ(xent_cross_entropy_shard_finish(nullptr), XENT_ERROR_NULL_POINTER);
}

XENT_INSTANTIATE_ALL_TARGETS(VocabParallelTest);

}  // namespace
}  // namespace xent_test
