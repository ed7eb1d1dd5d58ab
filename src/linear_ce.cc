// Fused linear cross-entropy (xent_linear_cross_entropy): the driver.
//
// The engine's "tile producer" (ARCHITECTURE.md, "Logits sources"): rows are
// processed in blocks of R; for each block
//   1. the block's hidden rows, widened to f32 when needed (gathered when
//      ignored rows are skipped);
//   2. logits = hidden_block linear_weight^T + bias into scratch (R x V f32),
//      one GEMM per tile of kVocabTile classes;
//   3. the cross-entropy op on the block (RunCrossEntropyRows, with the MEAN
//      divisor of the whole batch), its gradient G written over the logits;
//   4. grad_linear_weight[tile] += G[:, tile]^T hidden_block and the bias
//      gradient's column sums per tile of classes, grad_hidden[block rows,
//      tile] = G linear_weight[:, tile] per tile of kHiddenTile columns.
// Every GEMM is a BLAS call on one fixed tile, made single-threaded from
// xent's own threads; each output element is written by one task, and sums
// over row blocks run in block order. The tiles depend on B, V, H and the
// scratch budget only, so results are bit-identical for any thread count.
//
// bf16 hidden and weight on a CPU with AVX512_BF16, built with oneDNN
// (Bf16GemmAvailable), gradients (if any) wanted in bf16: the three products
// run as native bf16 GEMMs with f32 sums (BlockBf16): the inputs as they are
// (no widening), and G rounded to bf16 for the two gradient products, as
// PyTorch's bf16 path rounds its logits' gradient (the bias gradient still
// sums the f32 G). f32 gradients of bf16 inputs keep the f32 products.
//
// A 16-bit grad_linear_weight is summed over all rows in f32: in the order
// above that takes an f32 V x H accumulator (4 V H bytes, more than the
// B x V logits' size at LLM vocabularies), or 2 V H bytes for a bf16 one
// not accumulated into: the sums' high halves (bf16 bit patterns, truncated)
// live in the output itself and their low halves in gw_lo_ ("split sums"),
// rounded into the output once at the end. When it does not fit the scratch
// budget beside a block of rows, the call runs in tiles of classes instead
// (RunTiled, "recompute" order, as Cut Cross-Entropy's backward):
//   pass 1, per group of rows and tile of classes: the logits tile, its
//     softmax statistics folded into each row's (CrossEntropyFoldColumns);
//   pass 2, per tile of classes, per group of rows: the logits tile again,
//     its gradient from the rows' statistics (CrossEntropyColumnsWithStats),
//     grad_hidden += G W[tile] into an f32 B x H sum, and the tile's
//     grad_linear_weight = sum over groups of G^T hidden, complete after its
//     last group: rounded once into the output.
// One more logits product (4 GEMMs instead of 3), no V x H buffer.
//
// Each row's target entry of G (about -1/rows with a MEAN reduction, where
// the others are of the order of p) is taken out of G before the gradient
// products (TakeTargets) and added to their sums afterwards, one row at a
// time in row order: s h_i into grad_linear_weight[target] once every
// product of that tile is summed, s W[target] into the row's grad_hidden,
// s into the bias's sum. Then no long sum of the products carries a large
// partial sum: the gradients come out more accurate than a dense f32 GEMM of
// the same G (tests/linear_ce_test.cc, TargetTermsOutsideTheProducts), and
// in bf16 the target entry is never rounded to bf16.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "src/blas.h"
#include "src/ce.h"
#include "src/linear_ce.h"
#include "src/parallel.h"
#include "src/problem.h"

namespace xent {

namespace {

// Fixed tiles (never derived from the thread count).
constexpr size_t kVocabTile = 2048;  // classes per logits / grad_linear_weight task
constexpr size_t kHiddenTile = 512;  // hidden columns per grad_hidden task
// 16-bit weights are widened to f32 a tile at a time, into per-thread
// scratch: for the logits, kVocabTile rows (down to 512 rows for H > 2048:
// each GEMM call packs the whole block of hidden rows, so its class count
// must stay large); for grad_hidden, kWidenElems elements.
constexpr size_t kWidenElems = 256 * 1024;
constexpr size_t kWidenLogitsElems = 4 * 1024 * 1024;
constexpr size_t kRowsPerWidenTask = 16;
// The tiled order (RunTiled): rows per group at most; rows x classes per
// logits task and rows per grad_hidden task (x kHiddenTile columns), near
// square: each task's GEMM packs both of its operands, (m + n) k floats for
// 2 m n k flops (128 x 2048 logits tasks repacked the weight tile 8 times per
// group of 1024 rows: 15 % of a bf16 step's samples in OpenBLAS's packing);
// classes per grad_linear_weight task.
constexpr size_t kMaxGroupRows = 1024;
constexpr size_t kTaskRows = 512;
constexpr size_t kTaskClasses = 512;
constexpr size_t kGwTaskClasses = 256;

size_t Tiles(size_t n, size_t tile) { return (n + tile - 1) / tile; }

// Split f32 sums: the high 16 bits in a bf16 output element (2 bytes at hi,
// any alignment), the low 16 in lo.
float JoinHalves(const unsigned char* hi, uint16_t lo) {
  uint16_t h;
  std::memcpy(&h, hi, 2);
  const uint32_t u = static_cast<uint32_t>(h) << 16 | lo;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
void SplitHalves(float f, unsigned char* hi, uint16_t* lo) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const auto h = static_cast<uint16_t>(u >> 16);
  std::memcpy(hi, &h, 2);
  *lo = static_cast<uint16_t>(u);
}
// n split sums (hi, lo) joined into f32 values.
void JoinRow(const unsigned char* hi, const uint16_t* lo, size_t n, float* out) {
  for (size_t j = 0; j < n; ++j) out[j] = JoinHalves(hi + 2 * j, lo[j]);
}
// n split sums (hi, lo) = x, or += x unless `first`.
void AddIntoHalves(const float* x, size_t n, bool first, unsigned char* hi, uint16_t* lo) {
  for (size_t j = 0; j < n; ++j) SplitHalves(first ? x[j] : JoinHalves(hi + 2 * j, lo[j]) + x[j], hi + 2 * j, lo + j);
}

// dst[0..n) += s x[0..n), x of dtype dt (16-bit values widened exactly).
// Both may sit at any address (callers' matrices need not be aligned).
void AddScaled(float s, const void* x, DType dt, size_t n, float* dst) {
  constexpr size_t kStep = 256;
  float xs[kStep], ds[kStep];
  const auto* xb = static_cast<const unsigned char*>(x);
  auto* db = reinterpret_cast<unsigned char*>(dst);
  for (size_t j0 = 0; j0 < n; j0 += kStep) {
    const size_t m = std::min(kStep, n - j0);
    if (dt == DType::kF32) {
      std::memcpy(xs, xb + j0 * 4, m * 4);
    } else {
      WidenRows(dt, xb + j0 * DTypeSize(dt), m, 1, m, xs, m);
    }
    std::memcpy(ds, db + j0 * 4, m * 4);
    for (size_t j = 0; j < m; ++j) ds[j] += s * xs[j];
    std::memcpy(db + j0 * 4, ds, m * 4);
  }
}

template <class T>
std::unique_ptr<T[]> Alloc(size_t n) {
  return std::unique_ptr<T[]>(new (std::nothrow) T[n == 0 ? 1 : n]);
}

// Scratch of the tasks of one call, allocated before any output is written
// (a failed call must leave its outputs untouched, and the row blocks after
// the first run once outputs are): `slots` buffers of `floats` each, lent
// to one task at a time. A task waits (yields) while every buffer is lent:
// each is held by a task that is running, so one comes back. More tasks
// running at once than buffers (a host pool larger than it said) only
// wait; the results do not depend on which buffer a task gets.
class SlotPool {
 public:
  bool Init(size_t slots, size_t floats) {
    if (floats == 0) return true;
    bufs_.reserve(slots);
    free_.reserve(slots);
    for (size_t i = 0; i < slots; ++i) {
      bufs_.push_back(Alloc<float>(floats));
      if (!bufs_.back()) return false;
      free_.push_back(bufs_.back().get());
    }
    return true;
  }
  float* Acquire() {
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!free_.empty()) {
          float* p = free_.back();
          free_.pop_back();
          return p;
        }
      }
      std::this_thread::yield();
    }
  }
  void Release(float* p) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(p);  // (capacity reserved: no allocation)
  }

 private:
  std::vector<std::unique_ptr<float[]>> bufs_;
  std::vector<float*> free_;
  std::mutex mu_;
};

// One task's buffer from the pool, returned when the task ends.
class Slot {
 public:
  explicit Slot(SlotPool& pool) : pool_(pool), p_(pool.Acquire()) {}
  ~Slot() { pool_.Release(p_); }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  float* get() const { return p_; }

 private:
  SlotPool& pool_;
  float* p_;
};

class LinearCe {
 public:
  explicit LinearCe(const LinearCrossEntropyProblem& p) : p_(p) {}
  xent_status Run();

 private:
  bool Wanted(const OutMat& m) const { return m.data != nullptr; }
  bool Accumulate(int bit) const { return (p_.accumulate & bit) != 0; }
  const void* HiddenRow(size_t row) const {
    return static_cast<const unsigned char*>(p_.hidden.data) + row * p_.hidden.stride * DTypeSize(p_.hidden.dtype);
  }
  const void* WeightAt(size_t v, size_t h) const {
    return static_cast<const unsigned char*>(p_.linear_weight.data) +
           (v * p_.linear_weight.stride + h) * DTypeSize(p_.linear_weight.dtype);
  }

  xent_status Block(size_t r0, size_t n);
  bool ChooseTiled(size_t budget, size_t row_bytes);
  xent_status AllocTiled(size_t budget);
  xent_status RunTiled();
  xent_status RowsOperand(const size_t* rows, size_t n);
  xent_status NarrowG(size_t n, size_t width);
  xent_status TileLogits(size_t n, size_t c0, size_t cn);
  xent_status TileGradients(size_t g0, size_t n, size_t c0, size_t cn);
  CrossEntropyProblem TileProblem(size_t g0, size_t n, size_t cn, bool grad) const;
  xent_status BlockBf16(size_t r0, size_t n);
  int64_t TargetOf(size_t k) const { return p_.target.At(rows_[k]); }
  void TakeTargets(size_t k0, size_t n, float* G, size_t ld, size_t c0, size_t cn);
  void AddTargetRows(size_t v0, size_t vn, float* dst, size_t ld) const;
  xent_status CrossEntropyOnBlock(const size_t* rows, size_t n);
  template <class GhFn, class GwFn>
  xent_status Gradients(const size_t* rows, size_t n, const GhFn& gh, const GwFn& gw_product);
  void ZeroSkippedRows();
  xent_status Finish();
  // Floats of a task's slot: the widened weight tile of a logits task, or
  // a grad_hidden task's product tile and widened weight tile.
  size_t LogitsWidenFloats() const { return widen_w_ ? std::min(LogitsWidenStep(), V_) * H_ : 0; }
  size_t LogitsWidenStep() const { return std::min(kVocabTile, std::max<size_t>(512, kWidenLogitsElems / H_)); }
  size_t GhWidenStep(size_t hn) const { return std::max<size_t>(1, kWidenElems / hn); }

  const LinearCrossEntropyProblem& p_;
  size_t B_ = 0, V_ = 0, H_ = 0;
  bool want_grad_ = false, widen_w_ = false;
  bool bf16_gemm_ = false;  // BlockBf16
  double divisor_ = 1.0;
  std::vector<size_t> rows_;  // the rows run (all, or the non-ignored ones)
  size_t R_ = 0;              // rows per block
  bool first_block_ = true;
  // The tiled order (RunTiled).
  bool tiled_ = false;
  size_t Rg_ = 0;             // rows per group
  const void* ga_ = nullptr;  // the group's hidden rows: bf16, or f32 (widened)
  size_t ga_ld_ = 0;
  std::unique_ptr<float[]> wc_;        // Vc x H, a widened tile of the 16-bit weight
  std::unique_ptr<float[]> gh_acc_;    // kept x H f32 grad_hidden sums
  std::unique_ptr<float[]> gwc_;       // Vc x H f32 grad_linear_weight sums of a tile
  std::unique_ptr<SoftmaxAcc[]> acc_;  // kept rows' statistics
  std::unique_ptr<double[]> stats_;    // a tile's exported statistics

  std::unique_ptr<float[]> logits_;    // R x V
  std::unique_ptr<float[]> hblock_;    // R x H, widened / gathered hidden rows
  std::unique_ptr<uint16_t[]> h16_;    // R x H, gathered bf16 hidden rows (BlockBf16)
  std::unique_ptr<uint16_t[]> g16_;    // R x V, G in bf16 (BlockBf16)
  std::unique_ptr<float[]> bias_;      // V, f32
  std::unique_ptr<float[]> gw_acc_;    // V x H f32, for a 16-bit grad_linear_weight
  std::unique_ptr<uint16_t[]> gw_lo_;  // V x H, the split sums' low halves (a bf16 one)
  bool SplitSums() const {
    return p_.grad_linear_weight.dtype == DType::kBF16 && !Accumulate(XENT_ACCUMULATE_GRAD_LINEAR_WEIGHT);
  }
  size_t AccBytes() const { return V_ * H_ * (SplitSums() ? sizeof(uint16_t) : sizeof(float)); }
  unsigned char* GwRow(size_t v) const {
    const OutMat& o = p_.grad_linear_weight;
    return static_cast<unsigned char*>(o.data) + v * o.stride * DTypeSize(o.dtype);
  }
  template <class Fn>
  void ForTargetRows(size_t v0, size_t vn, const Fn& fn) const;
  void AddTargetHalves(size_t v0, size_t vn) const;
  void RoundHalves(size_t v0, size_t vn) const;
  std::unique_ptr<double[]> gb_acc_;  // V
  // Row losses: the caller's (f32) and, when the loss is wanted, B doubles it
  // is summed from (a row loss beyond FLT_MAX must not make a finite mean inf).
  std::unique_ptr<double[]> row_loss_sum_;
  float* row_loss_out_ = nullptr;
  void PutRowLoss(size_t row, double loss) const {
    if (row_loss_out_) row_loss_out_[row] = static_cast<float>(loss);
    if (row_loss_sum_) row_loss_sum_[row] = loss;
  }
  bool RowLossWanted() const { return row_loss_out_ || row_loss_sum_; }
  std::unique_ptr<float[]> zeros_;       // H zeros (skipped rows' grad_hidden, an empty grad_linear_weight)
  std::unique_ptr<unsigned char[]> ws_;  // the cross-entropy engine's buffers for a block
  size_t ws_bytes_ = 0;
  SlotPool slots_;
  // Per block: targets, row scales, row losses, lse of the block's rows.
  std::vector<int64_t> tgt_;
  std::vector<float> rs_, lse_;
  std::vector<double> rl_;
  std::vector<float> ts_;  // per kept row: its target entry of G (TakeTargets), 0 when none
};

xent_status LinearCe::Run() {
  const LinearCrossEntropyProblem& p = p_;
  B_ = p.B;
  V_ = p.V;
  H_ = p.H;
  want_grad_ = Wanted(p.grad_hidden) || Wanted(p.grad_linear_weight) || Wanted(p.grad_linear_bias);
  widen_w_ = p.linear_weight.dtype != DType::kF32;
  // (Gradients wanted in f32 keep f32 products: the caller asked for more
  // than bf16's precision.)
  auto bf16_or_none = [&](const OutMat& m) { return !Wanted(m) || m.dtype == DType::kBF16; };
  bf16_gemm_ = p.hidden.dtype == DType::kBF16 && p.linear_weight.dtype == DType::kBF16 && bf16_or_none(p.grad_hidden) &&
               bf16_or_none(p.grad_linear_weight) && Bf16GemmAvailable();
  if (bf16_gemm_) widen_w_ = false;

  // The MEAN divisor over the whole batch (the cross-entropy op's rule).
  CrossEntropyProblem all;
  all.B = B_;
  all.V = V_;
  all.target.labels = p.target;
  all.weight = p.weight;
  all.reduction = p.reduction;
  divisor_ = CrossEntropyDivisor(all);

  // Ignored rows have no loss and no gradient: without lse they are skipped.
  rows_.reserve(B_);
  for (size_t i = 0; i < B_; ++i) {
    if (p.lse == nullptr && p.target.Ignored(i)) continue;
    rows_.push_back(i);
  }
  // Rows per block: as many as the budget holds (a block of logits and of
  // widened hidden rows), spread evenly over the blocks (no small last
  // block), a multiple of 16 (the GEMM kernels' row unroll) when that fits.
  const size_t budget = p.scratch_bytes ? p.scratch_bytes : LinearCrossEntropyDefaultScratch(p);
  const size_t row_bytes =
      bf16_gemm_ ? V_ * sizeof(float) + (want_grad_ ? V_ * 2 : 0) + H_ * 2 : (V_ + H_) * sizeof(float);
  const size_t kept = rows_.size();
  tiled_ = ChooseTiled(budget, row_bytes);
  // A 16-bit grad_linear_weight's f32 accumulator is part of the budget.
  const size_t acc_bytes =
      Wanted(p.grad_linear_weight) && p.grad_linear_weight.dtype != DType::kF32 && !tiled_ ? AccBytes() : 0;
  const size_t max_rows = std::max<size_t>(1, (budget > acc_bytes ? budget - acc_bytes : 0) / row_bytes);
  if (tiled_) {
    const xent_status rc = AllocTiled(budget);
    if (rc != XENT_OK) return rc;
  } else if (kept > 0) {
    const size_t blocks = (kept + max_rows - 1) / max_rows;
    R_ = (kept + blocks - 1) / blocks;
    const size_t r16 = (R_ + 15) / 16 * 16;
    if (r16 <= max_rows && r16 < kept) R_ = r16;
    logits_ = Alloc<float>(R_ * V_);
    if (!logits_) return XENT_ERROR_OUT_OF_MEMORY;
    // Widened / gathered hidden rows, unless every block reads them in place.
    const bool in_place = p.hidden.dtype == DType::kF32 && kept == B_ && p.hidden.stride <= BlasMaxIndex();
    if (bf16_gemm_) {
      if (kept != B_) {
        h16_ = Alloc<uint16_t>(R_ * H_);
        if (!h16_) return XENT_ERROR_OUT_OF_MEMORY;
      }
      if (want_grad_) {
        g16_ = Alloc<uint16_t>(R_ * V_);
        if (!g16_) return XENT_ERROR_OUT_OF_MEMORY;
      }
    } else if (!in_place) {
      hblock_ = Alloc<float>(R_ * H_);
      if (!hblock_) return XENT_ERROR_OUT_OF_MEMORY;
    }
  }
  if (p.linear_bias.data) {
    bias_ = Alloc<float>(V_);
    if (!bias_) return XENT_ERROR_OUT_OF_MEMORY;
    WidenRows(p.linear_bias.dtype, p.linear_bias.data, V_, 1, V_, bias_.get(), V_);
  }
  if (acc_bytes > 0 && SplitSums()) {
    gw_lo_ = Alloc<uint16_t>(V_ * H_);
    if (!gw_lo_) return XENT_ERROR_OUT_OF_MEMORY;
  } else if (acc_bytes > 0) {
    gw_acc_ = Alloc<float>(V_ * H_);
    if (!gw_acc_) return XENT_ERROR_OUT_OF_MEMORY;
  }
  if (Wanted(p.grad_linear_bias)) {
    gb_acc_ = Alloc<double>(V_);
    if (!gb_acc_) return XENT_ERROR_OUT_OF_MEMORY;
    std::fill(gb_acc_.get(), gb_acc_.get() + V_, 0.0);
  }
  row_loss_out_ = p.row_loss;
  if (p.loss && B_ > 0) {
    row_loss_sum_ = Alloc<double>(B_);
    if (!row_loss_sum_) return XENT_ERROR_OUT_OF_MEMORY;
  }
  // Everything a block needs, allocated before the first block writes an
  // output: zeros for skipped rows, the engine's buffers, the tasks' slots.
  const bool zero_gh = rows_.size() < B_ && Wanted(p.grad_hidden) && !Accumulate(XENT_ACCUMULATE_GRAD_HIDDEN);
  const bool zero_gw = rows_.empty() && Wanted(p.grad_linear_weight);
  if (zero_gh || zero_gw) {
    zeros_ = Alloc<float>(H_);
    if (!zeros_) return XENT_ERROR_OUT_OF_MEMORY;
    std::fill(zeros_.get(), zeros_.get() + H_, 0.0f);
  }
  if (R_ > 0 && !tiled_) {
    ws_bytes_ = CrossEntropyRowsWorkspaceBytes(R_, V_);
    if (ws_bytes_ > 0) {
      ws_ = Alloc<unsigned char>(ws_bytes_);
      if (!ws_) return XENT_ERROR_OUT_OF_MEMORY;
    }
    const size_t gh_floats =
        Wanted(p.grad_hidden) ? R_ * std::min(kHiddenTile, H_) +
                                    (widen_w_ ? std::min(GhWidenStep(std::min(kHiddenTile, H_)), V_) * kHiddenTile : 0)
                              : 0;
    // (Split sums: a task's products, kGwTaskClasses classes at a time.)
    const size_t gw_floats = gw_lo_ ? std::min(kGwTaskClasses, V_) * H_ : 0;
    const size_t tasks = std::max(Tiles(V_, kVocabTile), Tiles(H_, kHiddenTile) + Tiles(V_, kVocabTile));
    const size_t slots = static_cast<size_t>(std::max(1, ThreadsFor(p.exec, tasks)));
    if (!slots_.Init(slots, std::max({LogitsWidenFloats(), want_grad_ ? gh_floats : 0, gw_floats})))
      return XENT_ERROR_OUT_OF_MEMORY;
  }
  if (want_grad_) ts_.assign(rows_.size(), 0.0f);
  BlasSingleThread single;
  if (tiled_) return RunTiled();
  tgt_.resize(R_);
  rl_.resize(R_);
  if (p.row_scale) rs_.resize(R_);
  if (p.lse) lse_.resize(R_);
  for (size_t r0 = 0; r0 < rows_.size(); r0 += R_) {
    const xent_status rc = Block(r0, std::min(R_, rows_.size() - r0));
    if (rc != XENT_OK) return rc;
    first_block_ = false;
  }
  ZeroSkippedRows();
  return Finish();
}

// 3. Cross-entropy on the block's logits (L); its gradient G over them.
xent_status LinearCe::CrossEntropyOnBlock(const size_t* rows, size_t n) {
  const LinearCrossEntropyProblem& p = p_;
  float* L = logits_.get();
  CrossEntropyProblem cp;
  cp.B = n;
  cp.V = V_;
  cp.logits.data = L;
  cp.logits.stride = V_;
  cp.logits.dtype = DType::kF32;
  cp.target.labels.data = tgt_.data();
  cp.target.labels.stride = 1;
  cp.target.labels.dtype = DType::kI64;
  cp.target.labels.ignore_index = p.target.ignore_index;
  cp.weight = p.weight;
  cp.row_scale = p.row_scale ? rs_.data() : nullptr;
  cp.reduction = p.reduction;
  cp.label_smoothing = p.label_smoothing;
  cp.z_loss = p.z_loss;
  cp.softcap = p.softcap;
  cp.grad_scale = p.grad_scale;
  cp.lse = p.lse ? lse_.data() : nullptr;
  if (want_grad_) {
    cp.grad.data = L;
    cp.grad.stride = V_;
    cp.grad.dtype = DType::kF32;
  }
  cp.exec = p.exec;
  cp.exec.workspace = ws_.get();
  cp.exec.workspace_bytes = ws_bytes_;
  const xent_status rc = RunCrossEntropyRows(cp, divisor_, RowLossSink{nullptr, rl_.data()});
  if (rc != XENT_OK) return rc;
  for (size_t i = 0; i < n; ++i) {
    PutRowLoss(rows[i], rl_[i]);
    if (p.lse) p.lse[rows[i]] = lse_[i];
  }
  return XENT_OK;
}

xent_status LinearCe::BlockBf16(size_t r0, size_t n) {
  const LinearCrossEntropyProblem& p = p_;
  const size_t* rows = rows_.data() + r0;
  // 1. The block's bf16 hidden rows: in place when consecutive, else gathered.
  xent_status rc = RowsOperand(rows, n);
  if (rc != XENT_OK) return rc;
  const auto* A = static_cast<const uint16_t*>(ga_);
  const size_t lda = ga_ld_;
  const auto* W = static_cast<const uint16_t*>(p.linear_weight.data);
  const size_t ldw = p.linear_weight.stride;
  std::atomic<bool> failed{false};

  // 2. Logits, one task per tile of classes.
  float* L = logits_.get();
  const float* bias = bias_.get();
  auto logits = [&](size_t t) {
    const size_t v0 = t * kVocabTile, vn = std::min(kVocabTile, V_ - v0);
    if (bias)
      for (size_t i = 0; i < n; ++i) std::memcpy(L + i * V_ + v0, bias + v0, vn * sizeof(float));
    if (!Bf16Gemm(false, true, n, vn, H_, A, lda, W + v0 * ldw, ldw, bias != nullptr, L + v0, V_)) failed = true;
  };
  rc = ParallelForEach(p.exec, Tiles(V_, kVocabTile), logits);
  if (rc != XENT_OK) return rc;
  if (failed) return XENT_ERROR_OUT_OF_MEMORY;

  rc = CrossEntropyOnBlock(rows, n);
  if (rc != XENT_OK) return rc;
  if (!want_grad_) return XENT_OK;
  TakeTargets(r0, n, L, V_, 0, V_);

  // G in bf16 for the gradient products.
  rc = NarrowG(n, V_);
  if (rc != XENT_OK) return rc;
  const uint16_t* G = g16_.get();

  // 4. Gradients.
  return Gradients(
      rows, n,
      [&](size_t h0, size_t hn, float* T) {
        return Bf16Gemm(false, false, n, hn, V_, G, V_, W + h0, ldw, false, T, hn);
      },
      [&](size_t v0, size_t vn, bool add, float* c, size_t ldc) {
        return Bf16Gemm(true, false, vn, H_, n, G + v0, V_, A, lda, add, c, ldc);
      });
}

// Whether the tiled order runs: a 16-bit grad_linear_weight whose f32
// accumulator does not fit the budget beside a block of min(rows, 256) rows.
bool LinearCe::ChooseTiled(size_t budget, size_t row_bytes) {
  const LinearCrossEntropyProblem& p = p_;
  if (rows_.empty() || !Wanted(p.grad_linear_weight) || p.grad_linear_weight.dtype == DType::kF32) return false;
  const size_t acc_bytes = AccBytes();
  const size_t min_rows = std::min<size_t>(rows_.size(), 256);
  return acc_bytes > budget || (budget - acc_bytes) / row_bytes < min_rows;
}

// The tiled order's buffers: per group of Rg rows, a Rg x Vc logits tile (and
// its bf16 copy for the native products) and the group's gathered / widened
// hidden rows; the f32 sums of grad_hidden (kept x H) and of a tile's
// grad_linear_weight (Vc x H); the widened weight tile; O(kept) statistics.
// Rg: as many rows as the budget holds beside the fixed part, at most
// kMaxGroupRows, at least min(kept, 16).
xent_status LinearCe::AllocTiled(size_t budget) {
  const LinearCrossEntropyProblem& p = p_;
  const size_t kept = rows_.size();
  const size_t Vc = std::min(kVocabTile, V_);
  const bool gather16 = bf16_gemm_ && kept != B_;
  const size_t fixed = (Wanted(p.grad_hidden) ? kept * H_ * sizeof(float) : 0) + Vc * H_ * sizeof(float) +
                       (widen_w_ ? Vc * H_ * sizeof(float) : 0) + kept * sizeof(SoftmaxAcc);
  const size_t per_row = Vc * sizeof(float) + (bf16_gemm_ ? Vc * 2 + (gather16 ? H_ * 2 : 0) : H_ * sizeof(float));
  size_t rg = budget > fixed ? (budget - fixed) / per_row : 0;
  rg = std::min(std::min(kept, kMaxGroupRows), std::max(rg, std::min<size_t>(kept, 16)));
  if (rg < kept) rg = rg / 16 * 16;  // (rg >= 16 here)
  const size_t groups = Tiles(kept, rg);
  Rg_ = Tiles(kept, groups);  // spread evenly, a multiple of 16 when that fits
  if (Rg_ % 16 != 0 && groups > 1 && (Rg_ + 15) / 16 * 16 <= rg) Rg_ = (Rg_ + 15) / 16 * 16;

  logits_ = Alloc<float>(Rg_ * Vc);
  if (!logits_) return XENT_ERROR_OUT_OF_MEMORY;
  if (bf16_gemm_) {
    g16_ = Alloc<uint16_t>(Rg_ * Vc);
    if (!g16_) return XENT_ERROR_OUT_OF_MEMORY;
    if (gather16) {
      h16_ = Alloc<uint16_t>(Rg_ * H_);
      if (!h16_) return XENT_ERROR_OUT_OF_MEMORY;
    }
  } else {
    hblock_ = Alloc<float>(Rg_ * H_);
    if (!hblock_) return XENT_ERROR_OUT_OF_MEMORY;
  }
  if (widen_w_) {
    wc_ = Alloc<float>(Vc * H_);
    if (!wc_) return XENT_ERROR_OUT_OF_MEMORY;
  }
  if (Wanted(p.grad_hidden)) {
    gh_acc_ = Alloc<float>(kept * H_);
    if (!gh_acc_) return XENT_ERROR_OUT_OF_MEMORY;
  }
  gwc_ = Alloc<float>(Vc * H_);
  acc_ = Alloc<SoftmaxAcc>(kept);
  stats_ = Alloc<double>(CeShardStatsDoubles(Rg_, p.label_smoothing));
  if (!gwc_ || !acc_ || !stats_) return XENT_ERROR_OUT_OF_MEMORY;
  ws_bytes_ = CrossEntropyRowsWorkspaceBytes(Rg_, Vc);
  if (ws_bytes_ > 0) {
    ws_ = Alloc<unsigned char>(ws_bytes_);
    if (!ws_) return XENT_ERROR_OUT_OF_MEMORY;
  }
  tgt_.resize(kept);
  if (p.row_scale) rs_.resize(kept);
  rl_.resize(Rg_);
  if (p.lse) lse_.resize(Rg_);
  for (size_t i = 0; i < kept; ++i) {
    tgt_[i] = p.target.At(rows_[i]);
    if (p.row_scale) rs_[i] = p.row_scale[rows_[i]];
  }
  return XENT_OK;
}

// The cross-entropy problem of group rows [g0, g0 + n) over a tile of cn
// classes in logits_ (row stride cn); its gradient over them when `grad`.
CrossEntropyProblem LinearCe::TileProblem(size_t g0, size_t n, size_t cn, bool grad) const {
  const LinearCrossEntropyProblem& p = p_;
  CrossEntropyProblem cp;
  cp.B = n;
  cp.V = V_;
  cp.logits.data = logits_.get();
  cp.logits.stride = cn;
  cp.logits.dtype = DType::kF32;
  cp.target.labels.data = tgt_.data() + g0;
  cp.target.labels.stride = 1;
  cp.target.labels.dtype = DType::kI64;
  cp.target.labels.ignore_index = p.target.ignore_index;
  cp.weight = p.weight;
  cp.row_scale = p.row_scale ? rs_.data() + g0 : nullptr;
  cp.reduction = p.reduction;
  cp.label_smoothing = p.label_smoothing;
  cp.z_loss = p.z_loss;
  cp.softcap = p.softcap;
  cp.grad_scale = p.grad_scale;
  if (grad) {
    cp.grad.data = logits_.get();
    cp.grad.stride = cn;
    cp.grad.dtype = DType::kF32;
  }
  cp.exec = p.exec;
  cp.exec.workspace = ws_.get();
  cp.exec.workspace_bytes = ws_bytes_;
  return cp;
}

// The hidden rows of a block or group as the products' left operand (ga_,
// ga_ld_): in place when consecutive (bf16 for the native products, f32),
// else gathered (bf16) or widened / gathered into hblock_ (f32).
xent_status LinearCe::RowsOperand(const size_t* rows, size_t n) {
  const LinearCrossEntropyProblem& p = p_;
  if (bf16_gemm_ ? !h16_ : !hblock_) {
    ga_ = HiddenRow(rows[0]);
    ga_ld_ = p.hidden.stride;
    return XENT_OK;
  }
  ga_ld_ = H_;
  if (bf16_gemm_) {
    for (size_t i = 0; i < n; ++i) std::memcpy(h16_.get() + i * H_, HiddenRow(rows[i]), H_ * sizeof(uint16_t));
    ga_ = h16_.get();
    return XENT_OK;
  }
  float* hb = hblock_.get();
  auto widen = [&](size_t t) {
    const size_t i1 = std::min(n, (t + 1) * kRowsPerWidenTask);
    for (size_t i = t * kRowsPerWidenTask; i < i1; ++i)
      WidenRows(p.hidden.dtype, HiddenRow(rows[i]), H_, 1, H_, hb + i * H_, H_);
  };
  ga_ = hb;
  return ParallelForEach(p.exec, Tiles(n, kRowsPerWidenTask), widen);
}

// G in bf16 (g16_) from the f32 G in logits_: n rows of `width` (the row
// stride of both).
xent_status LinearCe::NarrowG(size_t n, size_t width) {
  const float* L = logits_.get();
  uint16_t* G = g16_.get();
  auto narrow = [&](size_t k) {
    const size_t i1 = std::min(n, (k + 1) * kRowsPerWidenTask);
    for (size_t i = k * kRowsPerWidenTask; i < i1; ++i)
      NarrowRows(L + i * width, width, 1, width, DType::kBF16, G + i * width, width, false);
  };
  return ParallelForEach(p_.exec, Tiles(n, kRowsPerWidenTask), narrow);
}

// acc[0..vn) += the column sums of n rows of G (row stride ld), in row order.
void AddColumnSums(const float* g, size_t ld, size_t n, size_t vn, double* acc) {
  for (size_t i = 0; i < n; ++i)
    for (size_t v = 0; v < vn; ++v) acc[v] += g[i * ld + v];
}

// logits_ (n x cn, row stride cn) = the group's hidden rows W[c0..c0+cn)^T
// + bias, one task per kTaskRows rows x kTaskClasses classes (wc_ holds the
// widened tile).
xent_status LinearCe::TileLogits(size_t n, size_t c0, size_t cn) {
  const LinearCrossEntropyProblem& p = p_;
  float* L = logits_.get();
  const float* bias = bias_.get();
  const size_t c_tasks = Tiles(cn, kTaskClasses);
  std::atomic<bool> failed{false};
  auto task = [&](size_t t) {
    const size_t i0 = (t / c_tasks) * kTaskRows, m = std::min(kTaskRows, n - i0);
    const size_t j0 = (t % c_tasks) * kTaskClasses, jn = std::min(kTaskClasses, cn - j0);
    float* C = L + i0 * cn + j0;
    if (bias)
      for (size_t i = 0; i < m; ++i) std::memcpy(C + i * cn, bias + c0 + j0, jn * sizeof(float));
    if (bf16_gemm_) {
      const auto* A = static_cast<const uint16_t*>(ga_) + i0 * ga_ld_;
      const auto* W = static_cast<const uint16_t*>(WeightAt(c0 + j0, 0));
      if (!Bf16Gemm(false, true, m, jn, H_, A, ga_ld_, W, p.linear_weight.stride, bias != nullptr, C, cn))
        failed = true;
      return;
    }
    Sgemm(false, true, m, jn, H_, 1.0f, static_cast<const float*>(ga_) + i0 * ga_ld_, ga_ld_, wc_.get() + j0 * H_, H_,
          bias ? 1.0f : 0.0f, C, cn);
  };
  const xent_status rc = ParallelForEach(p.exec, Tiles(n, kTaskRows) * c_tasks, task);
  if (rc != XENT_OK) return rc;
  return failed ? XENT_ERROR_OUT_OF_MEMORY : XENT_OK;
}

// Pass 2's products for a group's tile of G (f32 in logits_, bf16 in g16_):
// grad_hidden sums of the group's rows += G W[tile] (the first tile
// overwrites), one task per kTaskRows rows x kHiddenTile columns; the tile's
// grad_linear_weight sums (+)= G^T hidden (the first group overwrites) and the
// bias's column sums, one task per kGwTaskClasses classes.
xent_status LinearCe::TileGradients(size_t g0, size_t n, size_t c0, size_t cn) {
  const LinearCrossEntropyProblem& p = p_;
  const float* L = logits_.get();
  const uint16_t* G = g16_.get();
  const size_t h_tiles = Tiles(H_, kHiddenTile);
  const size_t gh_tasks = gh_acc_ ? Tiles(n, kTaskRows) * h_tiles : 0;
  const size_t gw_tasks = Tiles(cn, kGwTaskClasses);
  const bool gh_add = c0 > 0, gw_add = g0 > 0;
  std::atomic<bool> failed{false};
  auto task = [&](size_t t) {
    if (t < gh_tasks) {
      const size_t i0 = (t / h_tiles) * kTaskRows, m = std::min(kTaskRows, n - i0);
      const size_t h0 = (t % h_tiles) * kHiddenTile, hn = std::min(kHiddenTile, H_ - h0);
      float* c = gh_acc_.get() + (g0 + i0) * H_ + h0;
      if (bf16_gemm_) {
        if (!Bf16Gemm(false, false, m, hn, cn, G + i0 * cn, cn, static_cast<const uint16_t*>(WeightAt(c0, h0)),
                      p.linear_weight.stride, gh_add, c, H_))
          failed = true;
        return;
      }
      Sgemm(false, false, m, hn, cn, 1.0f, L + i0 * cn, cn, wc_.get() + h0, H_, gh_add ? 1.0f : 0.0f, c, H_);
      return;
    }
    const size_t v0 = (t - gh_tasks) * kGwTaskClasses, vn = std::min(kGwTaskClasses, cn - v0);
    if (gb_acc_) AddColumnSums(L + v0, cn, n, vn, gb_acc_.get() + c0 + v0);
    float* c = gwc_.get() + v0 * H_;
    if (bf16_gemm_) {
      if (!Bf16Gemm(true, false, vn, H_, n, G + v0, cn, static_cast<const uint16_t*>(ga_), ga_ld_, gw_add, c, H_))
        failed = true;
      return;
    }
    Sgemm(true, false, vn, H_, n, 1.0f, L + v0, cn, static_cast<const float*>(ga_), ga_ld_, gw_add ? 1.0f : 0.0f, c,
          H_);
  };
  const xent_status rc = ParallelForEach(p.exec, gh_tasks + gw_tasks, task);
  if (rc != XENT_OK) return rc;
  return failed ? XENT_ERROR_OUT_OF_MEMORY : XENT_OK;
}

xent_status LinearCe::RunTiled() {
  const LinearCrossEntropyProblem& p = p_;
  const size_t kept = rows_.size();
  const size_t tiles = Tiles(V_, kVocabTile);
  auto widen_tile = [&](size_t c0, size_t cn) {
    if (!widen_w_) return XENT_OK;
    float* wc = wc_.get();
    auto widen = [&](size_t t) {
      const size_t v0 = t * kRowsPerWidenTask * 4, m = std::min(kRowsPerWidenTask * 4, cn - v0);
      WidenRows(p.linear_weight.dtype, WeightAt(c0 + v0, 0), p.linear_weight.stride, m, H_, wc + v0 * H_, H_);
    };
    return ParallelForEach(p.exec, Tiles(cn, kRowsPerWidenTask * 4), widen);
  };
  xent_status rc = XENT_OK;
  // Pass 1: each row's softmax statistics over all classes, tile by tile in
  // class order (the same products as pass 2's, so the same logits).
  for (size_t g0 = 0; g0 < kept; g0 += Rg_) {
    const size_t n = std::min(Rg_, kept - g0);
    if ((rc = RowsOperand(rows_.data() + g0, n)) != XENT_OK) return rc;
    for (size_t t = 0; t < tiles; ++t) {
      const size_t c0 = t * kVocabTile, cn = std::min(kVocabTile, V_ - c0);
      if ((rc = widen_tile(c0, cn)) != XENT_OK) return rc;
      if ((rc = TileLogits(n, c0, cn)) != XENT_OK) return rc;
      const CrossEntropyProblem cp = TileProblem(g0, n, cn, false);
      if ((rc = CrossEntropyFoldColumns(cp, c0, cn, stats_.get(), acc_.get() + g0)) != XENT_OK) return rc;
    }
  }
  // Pass 2: per tile of classes, every group's gradient and products; the
  // tile's grad_linear_weight rounded into the output after its last group.
  const OutMat& ow = p.grad_linear_weight;
  const bool gw_out_add = Accumulate(XENT_ACCUMULATE_GRAD_LINEAR_WEIGHT);
  for (size_t t = 0; t < tiles; ++t) {
    const size_t c0 = t * kVocabTile, cn = std::min(kVocabTile, V_ - c0);
    if ((rc = widen_tile(c0, cn)) != XENT_OK) return rc;
    for (size_t g0 = 0; g0 < kept; g0 += Rg_) {
      const size_t n = std::min(Rg_, kept - g0);
      if ((rc = RowsOperand(rows_.data() + g0, n)) != XENT_OK) return rc;
      if ((rc = TileLogits(n, c0, cn)) != XENT_OK) return rc;
      CrossEntropyProblem cp = TileProblem(g0, n, cn, true);
      const bool first = t == 0;
      cp.lse = first && p.lse ? lse_.data() : nullptr;
      if ((rc = CrossEntropyColumnsWithStats(cp, c0, cn, divisor_,
                                             RowLossSink{nullptr, first && RowLossWanted() ? rl_.data() : nullptr},
                                             acc_.get() + g0)) != XENT_OK)
        return rc;
      if (first) {
        for (size_t i = 0; i < n; ++i) {
          if (RowLossWanted()) PutRowLoss(rows_[g0 + i], rl_[i]);
          if (p.lse) p.lse[rows_[g0 + i]] = lse_[i];
        }
      }
      TakeTargets(g0, n, logits_.get(), cn, c0, cn);
      if (bf16_gemm_ && (rc = NarrowG(n, cn)) != XENT_OK) return rc;
      if ((rc = TileGradients(g0, n, c0, cn)) != XENT_OK) return rc;
    }
    float* gwc = gwc_.get();
    auto out = [&](size_t k) {
      const size_t v0 = k * kGwTaskClasses, vn = std::min(kGwTaskClasses, cn - v0);
      auto* dst = static_cast<unsigned char*>(ow.data) + (c0 + v0) * ow.stride * DTypeSize(ow.dtype);
      AddTargetRows(c0 + v0, vn, gwc + v0 * H_, H_);
      NarrowRows(gwc + v0 * H_, H_, vn, H_, ow.dtype, dst, ow.stride, gw_out_add);
    };
    if ((rc = ParallelForEach(p.exec, Tiles(cn, kGwTaskClasses), out)) != XENT_OK) return rc;
  }
  if (gh_acc_) {
    const OutMat& oh = p.grad_hidden;
    const bool add = Accumulate(XENT_ACCUMULATE_GRAD_HIDDEN);
    const size_t es = DTypeSize(oh.dtype);
    auto out = [&](size_t k) {
      const size_t i1 = std::min(kept, (k + 1) * kRowsPerWidenTask);
      for (size_t i = k * kRowsPerWidenTask; i < i1; ++i) {
        float* sum = gh_acc_.get() + i * H_;
        if (ts_[i] != 0.0f)
          AddScaled(ts_[i], WeightAt(static_cast<size_t>(TargetOf(i)), 0), p.linear_weight.dtype, H_, sum);
        NarrowRows(sum, H_, 1, H_, oh.dtype, static_cast<unsigned char*>(oh.data) + rows_[i] * oh.stride * es,
                   oh.stride, add);
      }
    };
    if ((rc = ParallelForEach(p.exec, Tiles(kept, kRowsPerWidenTask), out)) != XENT_OK) return rc;
  }
  ZeroSkippedRows();
  return Finish();
}

// Moves the target entries of n rows of G (kept rows k0.., row stride ld,
// classes [c0, c0 + cn)) into ts_, leaving 0 in G.
void LinearCe::TakeTargets(size_t k0, size_t n, float* G, size_t ld, size_t c0, size_t cn) {
  for (size_t i = 0; i < n; ++i) {
    const int64_t t = TargetOf(k0 + i);
    if (t < static_cast<int64_t>(c0) || t >= static_cast<int64_t>(c0 + cn)) continue;  // (or ignored)
    float& g = G[i * ld + static_cast<size_t>(t) - c0];
    ts_[k0 + i] = g;
    g = 0.0f;
  }
}

// The target terms of grad_linear_weight rows [v0, v0 + vn) (dst, row
// stride ld): ts_[k] hidden_k added to row target_k, k in row order.
template <class Fn>
void LinearCe::ForTargetRows(size_t v0, size_t vn, const Fn& fn) const {
  for (size_t k = 0; k < ts_.size(); ++k) {
    if (ts_[k] == 0.0f) continue;
    const size_t t = static_cast<size_t>(TargetOf(k));
    if (t >= v0 && t < v0 + vn) fn(k, t);
  }
}

void LinearCe::AddTargetRows(size_t v0, size_t vn, float* dst, size_t ld) const {
  ForTargetRows(v0, vn, [&](size_t k, size_t t) {
    AddScaled(ts_[k], HiddenRow(rows_[k]), p_.hidden.dtype, H_, dst + (t - v0) * ld);
  });
}

// The same into the split sums of rows [v0, v0 + vn).
constexpr size_t kHalvesStep = 256;
void LinearCe::AddTargetHalves(size_t v0, size_t vn) const {
  const size_t es = DTypeSize(p_.hidden.dtype);
  ForTargetRows(v0, vn, [&](size_t k, size_t t) {
    float buf[kHalvesStep];
    const auto* h = static_cast<const unsigned char*>(HiddenRow(rows_[k]));
    for (size_t j0 = 0; j0 < H_; j0 += kHalvesStep) {
      const size_t m = std::min(kHalvesStep, H_ - j0);
      unsigned char* hi = GwRow(t) + 2 * j0;
      uint16_t* lo = gw_lo_.get() + t * H_ + j0;
      JoinRow(hi, lo, m, buf);
      AddScaled(ts_[k], h + j0 * es, p_.hidden.dtype, m, buf);
      AddIntoHalves(buf, m, true, hi, lo);
    }
  });
}

// The split sums of rows [v0, v0 + vn) rounded into the bf16 output.
void LinearCe::RoundHalves(size_t v0, size_t vn) const {
  float buf[kHalvesStep];
  for (size_t v = v0; v < v0 + vn; ++v)
    for (size_t j0 = 0; j0 < H_; j0 += kHalvesStep) {
      const size_t m = std::min(kHalvesStep, H_ - j0);
      unsigned char* hi = GwRow(v) + 2 * j0;
      JoinRow(hi, gw_lo_.get() + v * H_ + j0, m, buf);
      NarrowRows(buf, m, 1, m, DType::kBF16, hi, m, false);
    }
}

// Skipped rows: loss 0; grad_hidden 0 unless accumulating.
void LinearCe::ZeroSkippedRows() {
  const LinearCrossEntropyProblem& p = p_;
  if (rows_.size() == B_) return;
  const bool zero_gh = Wanted(p.grad_hidden) && !Accumulate(XENT_ACCUMULATE_GRAD_HIDDEN);
  size_t k = 0;
  for (size_t i = 0; i < B_; ++i) {
    if (k < rows_.size() && rows_[k] == i) {
      ++k;
      continue;
    }
    PutRowLoss(i, 0.0);
    if (zero_gh) {
      auto* dst =
          static_cast<unsigned char*>(p.grad_hidden.data) + i * p.grad_hidden.stride * DTypeSize(p.grad_hidden.dtype);
      NarrowRows(zeros_.get(), H_, 1, H_, p.grad_hidden.dtype, dst, p.grad_hidden.stride, false);
    }
  }
}

xent_status LinearCe::Block(size_t r0, size_t n) {
  const LinearCrossEntropyProblem& p = p_;
  const size_t* rows = rows_.data() + r0;
  for (size_t i = 0; i < n; ++i) {
    tgt_[i] = p.target.At(rows[i]);
    if (p.row_scale) rs_[i] = p.row_scale[rows[i]];
  }
  if (bf16_gemm_) return BlockBf16(r0, n);

  // 1. The block's hidden rows as an f32 matrix A (n x H): in place when they
  // are f32 and consecutive, else widened / gathered into hblock_.
  xent_status rc = RowsOperand(rows, n);
  if (rc != XENT_OK) return rc;
  const auto* A = static_cast<const float*>(ga_);
  const size_t lda = ga_ld_;

  // 2. Logits, one task per tile of classes.
  float* L = logits_.get();
  const float* bias = bias_.get();
  auto logits = [&](size_t t) {
    const size_t v0 = t * kVocabTile, vn = std::min(kVocabTile, V_ - v0);
    float beta = 0.0f;
    if (bias) {
      for (size_t i = 0; i < n; ++i) std::memcpy(L + i * V_ + v0, bias + v0, vn * sizeof(float));
      beta = 1.0f;
    }
    if (!widen_w_) {
      Sgemm(false, true, n, vn, H_, 1.0f, A, lda, static_cast<const float*>(WeightAt(v0, 0)), p.linear_weight.stride,
            beta, L + v0, V_);
      return;
    }
    // 16-bit weight: widen up to kVocabTile rows at a time.
    const size_t step = LogitsWidenStep();
    const Slot slot(slots_);
    float* wt = slot.get();
    for (size_t v = v0; v < v0 + vn; v += step) {
      const size_t m = std::min(step, v0 + vn - v);
      WidenRows(p.linear_weight.dtype, WeightAt(v, 0), p.linear_weight.stride, m, H_, wt, H_);
      Sgemm(false, true, n, m, H_, 1.0f, A, lda, wt, H_, beta, L + v, V_);
    }
  };
  rc = ParallelForEach(p.exec, Tiles(V_, kVocabTile), logits);
  if (rc != XENT_OK) return rc;

  rc = CrossEntropyOnBlock(rows, n);
  if (rc != XENT_OK) return rc;
  if (!want_grad_) return XENT_OK;
  TakeTargets(r0, n, L, V_, 0, V_);

  // 4. Gradients.
  return Gradients(
      rows, n,
      [&](size_t h0, size_t hn, float* T) {
        if (!widen_w_) {
          Sgemm(false, false, n, hn, V_, 1.0f, L, V_, static_cast<const float*>(WeightAt(0, h0)),
                p.linear_weight.stride, 0.0f, T, hn);
          return true;
        }
        // 16-bit weight: widened a tile at a time, after the product in the slot.
        const size_t step = GhWidenStep(hn);
        float* wt = T + n * hn;
        for (size_t k = 0; k < V_; k += step) {
          const size_t m = std::min(step, V_ - k);
          WidenRows(p.linear_weight.dtype, WeightAt(k, h0), p.linear_weight.stride, m, hn, wt, hn);
          Sgemm(false, false, n, hn, m, 1.0f, L + k, V_, wt, hn, k == 0 ? 0.0f : 1.0f, T, hn);
        }
        return true;
      },
      [&](size_t v0, size_t vn, bool add, float* c, size_t ldc) {
        Sgemm(true, false, vn, H_, n, 1.0f, L + v0, V_, A, lda, add ? 1.0f : 0.0f, c, ldc);
        return true;
      });
}

// Step 4 of a block: grad_hidden tasks (the larger ones) first, then one task
// per tile of classes for grad_linear_weight and the bias sums (of the f32 G
// in logits_). gh(h0, hn, T) writes the block's n x hn product G W[:, h0..]
// into T (the task's slot); gw(v0, vn, add, c, ldc) writes or adds G[:,
// v0..]^T hidden into c. Each returns false when its BLAS failed: then
// XENT_ERROR_OUT_OF_MEMORY.
template <class GhFn, class GwFn>
xent_status LinearCe::Gradients(const size_t* rows, size_t n, const GhFn& gh, const GwFn& gw_product) {
  const LinearCrossEntropyProblem& p = p_;
  const float* L = logits_.get();
  const size_t gh_tasks = Wanted(p.grad_hidden) ? Tiles(H_, kHiddenTile) : 0;
  const bool gw = Wanted(p.grad_linear_weight), gb = Wanted(p.grad_linear_bias);
  const size_t gw_tasks = (gw || gb) ? Tiles(V_, kVocabTile) : 0;
  float* gw_c = gw_acc_ ? gw_acc_.get() : static_cast<float*>(p.grad_linear_weight.data);
  const size_t gw_ld = gw_acc_ ? H_ : p.grad_linear_weight.stride;
  // The first block overwrites the accumulator unless the caller's f32
  // output is accumulated into.
  const bool gw_add = !first_block_ || (!gw_acc_ && Accumulate(XENT_ACCUMULATE_GRAD_LINEAR_WEIGHT));
  std::atomic<bool> failed{false};
  auto grads = [&](size_t t) {
    if (t < gh_tasks) {
      const size_t h0 = t * kHiddenTile, hn = std::min(kHiddenTile, H_ - h0);
      const Slot slot(slots_);
      float* T = slot.get();
      if (!gh(h0, hn, T)) {
        failed = true;
        return;
      }
      const size_t es = DTypeSize(p.grad_hidden.dtype);
      const bool add = Accumulate(XENT_ACCUMULATE_GRAD_HIDDEN);
      const size_t k0 = static_cast<size_t>(rows - rows_.data());
      for (size_t i = 0; i < n; ++i) {
        // The row's target term (TakeTargets).
        if (ts_[k0 + i] != 0.0f)
          AddScaled(ts_[k0 + i], WeightAt(static_cast<size_t>(TargetOf(k0 + i)), h0), p.linear_weight.dtype, hn,
                    T + i * hn);
        auto* dst = static_cast<unsigned char*>(p.grad_hidden.data) + (rows[i] * p.grad_hidden.stride + h0) * es;
        NarrowRows(T + i * hn, hn, 1, hn, p.grad_hidden.dtype, dst, p.grad_hidden.stride, add);
      }
      return;
    }
    const size_t v0 = (t - gh_tasks) * kVocabTile, vn = std::min(kVocabTile, V_ - v0);
    if (gb) AddColumnSums(L + v0, V_, n, vn, gb_acc_.get() + v0);
    if (!gw) return;
    if (!gw_lo_) {
      if (!gw_product(v0, vn, gw_add, gw_c + v0 * gw_ld, gw_ld)) failed = true;
      return;
    }
    // Split sums: the products of kGwTaskClasses classes at a time, added.
    const Slot slot(slots_);
    float* T = slot.get();
    for (size_t v = v0; v < v0 + vn; v += kGwTaskClasses) {
      const size_t m = std::min(kGwTaskClasses, v0 + vn - v);
      if (!gw_product(v, m, false, T, H_)) {
        failed = true;
        return;
      }
      for (size_t r = 0; r < m; ++r)
        AddIntoHalves(T + r * H_, H_, first_block_, GwRow(v + r), gw_lo_.get() + (v + r) * H_);
    }
  };
  const xent_status rc = ParallelForEach(p.exec, gh_tasks + gw_tasks, grads);
  if (rc != XENT_OK) return rc;
  return failed ? XENT_ERROR_OUT_OF_MEMORY : XENT_OK;
}

// After the last block: the reduced loss; grad_linear_weight and
// grad_linear_bias out of their accumulators (or zeros when no row ran).
xent_status LinearCe::Finish() {
  const LinearCrossEntropyProblem& p = p_;
  if (p.loss) {
    double sum = 0.0;
    for (size_t i = 0; i < B_; ++i) sum += row_loss_sum_[i];
    if (p.reduction == Reduction::kMean) sum /= divisor_;  // 0/0 = NaN as PyTorch
    *p.loss = static_cast<float>(sum);
  }
  const bool none_ran = rows_.empty();
  if (Wanted(p.grad_linear_weight)) {
    const OutMat& o = p.grad_linear_weight;
    const bool add = Accumulate(XENT_ACCUMULATE_GRAD_LINEAR_WEIGHT);
    // The rows' target terms (the tiled order added them per tile), then
    // the f32 sums written out (a zero row when nothing ran).
    const bool targets = !tiled_ && !none_ran;
    if (gw_acc_ || (none_ran && !add) || targets) {
      const float* zeros = zeros_.get();
      float* gw_c = gw_acc_ ? gw_acc_.get() : static_cast<float*>(o.data);
      const size_t gw_ld = gw_acc_ ? H_ : o.stride;
      auto out = [&](size_t t) {
        const size_t v0 = t * kVocabTile, vn = std::min(kVocabTile, V_ - v0);
        if (gw_lo_ && !none_ran) {
          AddTargetHalves(v0, vn);
          RoundHalves(v0, vn);
          return;
        }
        if (targets) AddTargetRows(v0, vn, gw_c + v0 * gw_ld, gw_ld);
        if (!gw_acc_ && !none_ran) return;  // (the f32 output holds the sums)
        auto* dst = static_cast<unsigned char*>(o.data) + v0 * o.stride * DTypeSize(o.dtype);
        if (none_ran) {
          for (size_t v = 0; v < vn; ++v)
            NarrowRows(zeros, H_, 1, H_, o.dtype, dst + v * o.stride * DTypeSize(o.dtype), o.stride, add);
        } else {
          NarrowRows(gw_acc_.get() + v0 * H_, H_, vn, H_, o.dtype, dst, o.stride, add);
        }
      };
      const xent_status rc = ParallelForEach(p.exec, Tiles(V_, kVocabTile), out);
      if (rc != XENT_OK) return rc;
    }
  }
  if (Wanted(p.grad_linear_bias)) {
    const OutMat& o = p.grad_linear_bias;
    const bool add = Accumulate(XENT_ACCUMULATE_GRAD_LINEAR_BIAS);
    for (size_t k = 0; k < ts_.size(); ++k)
      if (ts_[k] != 0.0f) gb_acc_[static_cast<size_t>(TargetOf(k))] += ts_[k];
    for (size_t v = 0; v < V_; ++v) {
      double g = gb_acc_[v];
      if (add) g += static_cast<double>(LoadScalarF32(o.data, v, o.dtype));
      StoreScalarF32(o.data, v, o.dtype, static_cast<float>(g));
    }
  }
  return XENT_OK;
}

}  // namespace

size_t LinearCrossEntropyMinScratch(const LinearCrossEntropyProblem& p) { return (p.V + p.H) * sizeof(float); }

// Each block of rows reads the whole linear_weight twice (the logits and
// grad_hidden products pack it again) and reads and writes the whole
// grad_linear_weight once, so the products' time over the three GEMMs alone
// falls with the rows per block: 2048x2048x128256 f32 at 2 threads
// (Emerald Rapids) took 1.13-1.15x the three GEMMs with 256 rows (what 128
// MiB holds), 1.07-1.09x with 512, 1.03x with 1024. 512 rows is where
// PyTorch's chunked CPU fallbacks (Liger, NeMo) land too; a quarter of the
// batch at most keeps the block far below the B x V logits.
size_t LinearCrossEntropyDefaultScratch(const LinearCrossEntropyProblem& p) {
  constexpr size_t kDefaultBlockRows = 512;
  const size_t rows = std::min(kDefaultBlockRows, p.B / 4 + (p.B % 4 != 0));
  const size_t row_bytes = LinearCrossEntropyMinScratch(p);
  const size_t block = rows > 0 && row_bytes > SIZE_MAX / rows ? SIZE_MAX : rows * row_bytes;  // (saturated)
  return std::max(static_cast<size_t>(XENT_LINEAR_CE_DEFAULT_SCRATCH_BYTES), block);
}

xent_status RunLinearCrossEntropy(const LinearCrossEntropyProblem& p) {
  LinearCe op(p);
  return op.Run();
}

}  // namespace xent
