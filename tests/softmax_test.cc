// Softmax family, token log-probs and softmax backward against the float64
// reference, on every SIMD target.
#include <cmath>
#include <limits>
#include <string>

#include "tests/reference.h"
#include "tests/test_util.h"

namespace xent_test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Fills a matrix with random normal values (optionally overwritten by a
// hook) and returns the stored (dtype-rounded) values.
std::vector<double> FillLogits(Mat& m, double sigma, uint32_t seed, double (*hook)(size_t, size_t) = nullptr) {
  const auto r = RandomNormal(m.rows() * m.cols(), sigma, seed);
  std::vector<double> v(m.rows() * m.cols());
  for (size_t i = 0; i < m.rows(); ++i)
    for (size_t j = 0; j < m.cols(); ++j) {
      double x = r[i * m.cols() + j];
      if (hook) {
        const double h = hook(i, j);
        if (!std::isnan(h)) x = h;
      }
      v[i * m.cols() + j] = m.set(i, j, x);
    }
  return v;
}

double RowAbsTol(const std::vector<double>& x, size_t i, size_t V, double scale) {
  double zmax = 1.0;
  for (size_t j = 0; j < V; ++j)
    if (std::isfinite(x[i * V + j])) zmax = std::max(zmax, std::fabs(x[i * V + j]) * scale);
  return 2e-6 + 2 * 1.2e-7 * zmax;
}

// Output tolerance: f32 absolute (plus relative for values beyond 1), or one
// ulp of a 16-bit output dtype.
double OutTol(double want, DType t, double abs_f32) {
  if (t == DType::kF32) return abs_f32 + 2e-6 * std::fabs(want);
  return Ulp(want, t) + 1e-7;
}

struct SmCase {
  size_t B = 4, V = 17;
  DType dt = DType::kF32, out_dt = DType::kF32;
  bool probs = true, log_probs = true, lse = true, entropy = true;
  int inplace = 0;  // 1 = probs over logits, 2 = log_probs over logits
  float temperature = 1.0f;
  size_t pad = 0, offset = 0;
  double sigma = 3;
  uint32_t seed = 1;
  double (*hook)(size_t, size_t) = nullptr;
};

void RunSoftmax(const SmCase& c) {
  SCOPED_TRACE("B=" + std::to_string(c.B) + " V=" + std::to_string(c.V) + " dt=" + std::to_string(int(c.dt)) +
               " out=" + std::to_string(int(c.out_dt)) + " inplace=" + std::to_string(c.inplace) +
               " T=" + std::to_string(c.temperature) + " pad=" + std::to_string(c.pad) +
               " off=" + std::to_string(c.offset));
  const size_t B = c.B, V = c.V;
  Mat x(B, V, c.dt, V + c.pad, c.offset);
  const auto xv = FillLogits(x, c.sigma, c.seed, c.hook);
  const auto want = xent_ref::Softmax(xv, B, V, c.temperature);
  const DType odt = c.inplace ? c.dt : c.out_dt;
  Mat probs(B, V, odt, V + 2, c.offset), log_probs(B, V, odt, V + 3, c.offset);
  Vec lse(B), ent(B);
  xent_softmax_args a;
  ASSERT_EQ(XENT_ARGS_INIT(xent_softmax_args, &a), XENT_OK);
  a.batch = B;
  a.num_classes = V;
  a.logits = x.data();
  a.logits_stride = x.stride();
  a.logits_dtype = x.dt();
  a.temperature = c.temperature;
  if (c.probs) {
    a.probs = c.inplace == 1 ? x.data() : probs.data();
    a.probs_stride = c.inplace == 1 ? x.stride() : probs.stride();
    a.probs_dtype = static_cast<int32_t>(odt);
  }
  if (c.log_probs) {
    a.log_probs = c.inplace == 2 ? x.data() : log_probs.data();
    a.log_probs_stride = c.inplace == 2 ? x.stride() : log_probs.stride();
    a.log_probs_dtype = static_cast<int32_t>(odt);
  }
  if (c.lse) a.lse = lse.data();
  if (c.entropy) a.entropy = ent.data();
  ASSERT_EQ(xent_softmax(&a), XENT_OK) << xent_last_error();
  size_t bad = 0;
  for (size_t i = 0; i < B; ++i) {
    const double rt = RowAbsTol(xv, i, V, 1.0 / c.temperature);
    if (c.lse) EXPECT_TRUE(Close(lse[i], want.lse[i], 2e-6 * std::fabs(want.lse[i]) + rt)) << i << " " << lse[i];
    if (c.entropy) {
      EXPECT_TRUE(Close(ent[i], want.entropy[i], 2e-6 * std::fabs(want.entropy[i]) + rt))
          << "entropy[" << i << "] = " << ent[i] << " want " << want.entropy[i];
    }
    for (size_t j = 0; j < V; ++j) {
      if (c.probs) {
        const Mat& m = c.inplace == 1 ? x : probs;
        const double w = want.probs[i * V + j];
        if (!Close(m.get(i, j), w, OutTol(w, odt, 1e-6)) && ++bad < 5)
          ADD_FAILURE() << "probs[" << i << "][" << j << "] = " << m.get(i, j) << " want " << w;
      }
      if (c.log_probs) {
        const Mat& m = c.inplace == 2 ? x : log_probs;
        const double w = want.log_probs[i * V + j];
        if (!Close(m.get(i, j), w, OutTol(w, odt, rt)) && ++bad < 5)
          ADD_FAILURE() << "log_probs[" << i << "][" << j << "] = " << m.get(i, j) << " want " << w;
      }
    }
  }
  EXPECT_EQ(bad, 0u);
  EXPECT_TRUE(x.CanariesIntact() && probs.CanariesIntact() && log_probs.CanariesIntact());
  EXPECT_TRUE(lse.CanariesIntact() && ent.CanariesIntact());
}

class SoftmaxTest : public AllTargets {};

TEST_P(SoftmaxTest, SizesDtypes) {
  for (size_t V : {1, 2, 15, 16, 17, 255, 256, 257, 1000, 4096, 4097, 32003}) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      SmCase c;
      c.V = V;
      c.B = V > 5000 ? 2 : 5;
      c.dt = dt;
      c.seed = static_cast<uint32_t>(V + 10 * static_cast<int>(dt));
      RunSoftmax(c);
      c.out_dt = dt;
      RunSoftmax(c);
    }
  }
}

TEST_P(SoftmaxTest, LargeVocab) {
  SmCase c;
  c.B = 2;
  c.V = 262144;
  c.log_probs = false;
  RunSoftmax(c);
}

TEST_P(SoftmaxTest, SubsetsInPlaceTemperatureStrides) {
  for (int mask = 1; mask < 16; ++mask) {
    SmCase c;
    c.V = 300;
    c.probs = mask & 1;
    c.log_probs = mask & 2;
    c.lse = mask & 4;
    c.entropy = mask & 8;
    c.seed = static_cast<uint32_t>(mask);
    RunSoftmax(c);
  }
  for (int inplace : {1, 2}) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      SmCase c;
      c.V = 5000;
      c.dt = dt;
      c.inplace = inplace;
      c.probs = inplace == 1;
      c.log_probs = inplace == 2;
      c.pad = 7;
      c.offset = 2;
      RunSoftmax(c);
      // One output in place, the other in its own buffer.
      c.probs = c.log_probs = true;
      c.V = (dt == DType::kF32) ? 2 : 300;
      RunSoftmax(c);
    }
  }
  for (float t : {0.5f, 2.0f, 7.0f}) {
    SmCase c;
    c.V = 1000;
    c.temperature = t;
    c.offset = 1;
    c.pad = 3;
    RunSoftmax(c);
  }
}

double Masked(size_t i, size_t j) {
  if (i == 0 && j % 3 != 0) return -kInf;
  if (i == 1) return -kInf;
  if (i == 2 && j < 4500) return -kInf;  // whole leading segment masked
  if (i == 3) return (j % 2) ? 1e30 : -1e30;
  return kNaN;
}

TEST_P(SoftmaxTest, EdgeValues) {
  for (size_t V : {7, 5000}) {
    SmCase c;
    c.V = V;
    c.B = 5;
    c.hook = &Masked;
    RunSoftmax(c);
  }
}

// A chunk whose max exceeds the running max by ~1e38: the entropy's rescale
// shift * sum must not overflow into 0 * inf = NaN (found by the fuzzer).
TEST_P(SoftmaxTest, EntropyAfterHugeMaxJump) {
  for (double big : {3e38, 1e30, 1e4}) {
    const size_t V = 700;
    Mat x(1, V, DType::kF32);
    for (size_t j = 0; j < V; ++j) x.set(0, j, std::cos(double(j)));
    x.set(0, 600, big);  // in the third chunk
    Vec ent(1), lse(1);
    xent_softmax_args a;
    XENT_ARGS_INIT(xent_softmax_args, &a);
    a.batch = 1;
    a.num_classes = V;
    a.logits = x.data();
    a.entropy = ent.data();
    a.lse = lse.data();
    ASSERT_EQ(xent_softmax(&a), XENT_OK) << xent_last_error();
    std::vector<double> xv(V);
    for (size_t j = 0; j < V; ++j) xv[j] = x.get(0, j);
    const auto want = xent_ref::Softmax(xv, 1, V, 1.0);
    EXPECT_TRUE(Close(ent[0], want.entropy[0], 1e-6 + 2e-6 * std::fabs(want.entropy[0])))
        << "big=" << big << " entropy " << ent[0] << " want " << want.entropy[0];
  }
}

TEST_P(SoftmaxTest, NanPropagates) {
  Mat x(2, 300, DType::kF32);
  for (size_t j = 0; j < 300; ++j) {
    x.set(0, j, std::cos(double(j)));
    x.set(1, j, std::sin(double(j)));
  }
  x.set(0, 123, kNaN);
  Mat probs(2, 300, DType::kF32), lp(2, 300, DType::kF32);
  Vec lse(2), ent(2);
  xent_softmax_args a;
  XENT_ARGS_INIT(xent_softmax_args, &a);
  a.batch = 2;
  a.num_classes = 300;
  a.logits = x.data();
  a.probs = probs.data();
  a.log_probs = lp.data();
  a.lse = lse.data();
  a.entropy = ent.data();
  ASSERT_EQ(xent_softmax(&a), XENT_OK) << xent_last_error();
  EXPECT_TRUE(std::isnan(lse[0]) && std::isnan(ent[0]));
  EXPECT_TRUE(std::isfinite(lse[1]) && std::isfinite(ent[1]));
  for (size_t j = 0; j < 300; ++j) {
    EXPECT_TRUE(std::isnan(probs.get(0, j)) && std::isnan(lp.get(0, j)));
    EXPECT_TRUE(std::isfinite(probs.get(1, j)));
  }
}

// ---------------------------------------------------------------------------
struct TlCase {
  size_t B = 6, V = 17;
  DType dt = DType::kF32;
  bool i32 = false;
  float temperature = 1.0f, softcap = 0.0f;
  bool entropy = true, lse = true;
  int ignore_every = 0;
  uint32_t seed = 3;
};

void RunTokenLogprobs(const TlCase& c) {
  SCOPED_TRACE("B=" + std::to_string(c.B) + " V=" + std::to_string(c.V) + " dt=" + std::to_string(int(c.dt)) +
               " T=" + std::to_string(c.temperature) + " cap=" + std::to_string(c.softcap));
  const size_t B = c.B, V = c.V;
  Mat x(B, V, c.dt, V + 1, 1);
  const auto xv = FillLogits(x, 4.0, c.seed);
  std::mt19937 rng(c.seed);
  std::vector<int64_t> y(B);
  std::vector<int32_t> y32(B);
  for (size_t i = 0; i < B; ++i) {
    y[i] = (c.ignore_every && i % c.ignore_every == 1) ? -100 : static_cast<int64_t>(rng() % V);
    y32[i] = static_cast<int32_t>(y[i]);
  }
  const auto want_lp = xent_ref::TokenLogprobs(xv, y, B, V, c.temperature, c.softcap, -100);
  const auto want = xent_ref::Softmax(xv, B, V, c.temperature, c.softcap);
  Vec lp(B), ent(B), lse(B);
  xent_token_logprobs_args a;
  ASSERT_EQ(XENT_ARGS_INIT(xent_token_logprobs_args, &a), XENT_OK);
  a.batch = B;
  a.num_classes = V;
  a.logits = x.data();
  a.logits_stride = x.stride();
  a.logits_dtype = x.dt();
  a.target = c.i32 ? static_cast<const void*>(y32.data()) : static_cast<const void*>(y.data());
  a.target_dtype = c.i32 ? XENT_I32 : XENT_I64;
  a.temperature = c.temperature;
  a.softcap = c.softcap;
  a.logprob = lp.data();
  if (c.entropy) a.entropy = ent.data();
  if (c.lse) a.lse = lse.data();
  ASSERT_EQ(xent_token_logprobs(&a), XENT_OK) << xent_last_error();
  for (size_t i = 0; i < B; ++i) {
    double rt = RowAbsTol(xv, i, V, 1.0 / c.temperature);
    if (c.softcap > 0) rt += 8 * 1.2e-7 * c.softcap / c.temperature;
    EXPECT_TRUE(Close(lp[i], want_lp[i], 2e-6 * std::fabs(want_lp[i]) + rt))
        << "logprob[" << i << "] = " << lp[i] << " want " << want_lp[i];
    if (c.entropy) EXPECT_TRUE(Close(ent[i], want.entropy[i], 2e-6 * std::fabs(want.entropy[i]) + rt)) << i;
    if (c.lse) EXPECT_TRUE(Close(lse[i], want.lse[i], 2e-6 * std::fabs(want.lse[i]) + rt)) << i;
  }
  EXPECT_TRUE(lp.CanariesIntact() && ent.CanariesIntact() && lse.CanariesIntact() && x.CanariesIntact());
}

class TokenLogprobsTest : public AllTargets {};

TEST_P(TokenLogprobsTest, Sweep) {
  for (size_t V : {1, 2, 17, 256, 1000, 4097, 32003}) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      TlCase c;
      c.V = V;
      c.B = V > 5000 ? 3 : 6;
      c.dt = dt;
      c.i32 = V % 2;
      c.ignore_every = 3;
      c.seed = static_cast<uint32_t>(V * 7 + static_cast<int>(dt));
      RunTokenLogprobs(c);
    }
  }
  for (float t : {0.7f, 1.5f}) {
    for (float cap : {0.0f, 10.0f}) {
      TlCase c;
      c.V = 5000;
      c.temperature = t;
      c.softcap = cap;
      RunTokenLogprobs(c);
    }
  }
  TlCase c;
  c.entropy = false;
  c.lse = false;
  RunTokenLogprobs(c);
}

TEST_P(TokenLogprobsTest, EntropyOnlyWithoutTarget) {
  Mat x(3, 40, DType::kF32);
  const auto xv = FillLogits(x, 2.0, 9);
  Vec ent(3);
  xent_token_logprobs_args a;
  XENT_ARGS_INIT(xent_token_logprobs_args, &a);
  a.batch = 3;
  a.num_classes = 40;
  a.logits = x.data();
  a.entropy = ent.data();
  ASSERT_EQ(xent_token_logprobs(&a), XENT_OK) << xent_last_error();
  const auto want = xent_ref::Softmax(xv, 3, 40, 1.0);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(ent[i], want.entropy[i], 4e-6);
}

// ---------------------------------------------------------------------------
class SoftmaxBackwardTest : public AllTargets {};

TEST_P(SoftmaxBackwardTest, Sweep) {
  for (bool log : {false, true}) {
    for (size_t V : {1, 3, 16, 17, 1000, 5000}) {
      for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
        for (int variant = 0; variant < 3; ++variant) {  // 0 f32 out, 1 same dtype, 2 in place
          SCOPED_TRACE("log=" + std::to_string(log) + " V=" + std::to_string(V) + " dt=" + std::to_string(int(dt)) +
                       " variant=" + std::to_string(variant));
          const size_t B = 4;
          const float T = variant == 1 ? 2.0f : 1.0f;
          // y = softmax or log_softmax of random logits, rounded to dt.
          const auto r = RandomNormal(B * V, 2.0, static_cast<uint32_t>(V + log));
          std::vector<double> rv(r.begin(), r.end());
          const auto sm = xent_ref::Softmax(rv, B, V, 1.0);
          Mat y(B, V, dt, V + 1, 1), g(B, V, dt, V + 2, 3);
          std::vector<double> yv(B * V), gv(B * V);
          const auto gr = RandomNormal(B * V, 1.0, static_cast<uint32_t>(V * 3 + 1));
          for (size_t i = 0; i < B; ++i)
            for (size_t j = 0; j < V; ++j) {
              yv[i * V + j] = y.set(i, j, log ? sm.log_probs[i * V + j] : sm.probs[i * V + j]);
              gv[i * V + j] = g.set(i, j, gr[i * V + j]);
            }
          const auto want = xent_ref::SoftmaxBackward(yv, gv, B, V, log, T);
          const DType odt = variant == 0 ? DType::kF32 : dt;
          Mat gx(B, V, odt, V + 5, 0);
          xent_softmax_backward_args a;
          ASSERT_EQ(XENT_ARGS_INIT(xent_softmax_backward_args, &a), XENT_OK);
          a.batch = B;
          a.num_classes = V;
          a.output = y.data();
          a.output_stride = y.stride();
          a.output_dtype = y.dt();
          a.output_kind = log ? XENT_DIST_LOG_PROBS : XENT_DIST_PROBS;
          a.grad_output = g.data();
          a.grad_output_stride = g.stride();
          a.grad_output_dtype = g.dt();
          a.temperature = T;
          Mat& out = variant == 2 ? g : gx;
          a.grad_input = out.data();
          a.grad_input_stride = out.stride();
          a.grad_input_dtype = static_cast<int32_t>(odt);
          ASSERT_EQ(xent_softmax_backward(&a), XENT_OK) << xent_last_error();
          size_t bad = 0;
          for (size_t i = 0; i < B; ++i)
            for (size_t j = 0; j < V; ++j) {
              const double w = want[i * V + j];
              if (!Close(out.get(i, j), w, OutTol(w, odt, 4e-6)) && ++bad < 5)
                ADD_FAILURE() << i << "," << j << ": " << out.get(i, j) << " want " << w;
            }
          EXPECT_EQ(bad, 0u);
          EXPECT_TRUE(out.CanariesIntact() && y.CanariesIntact());
        }
      }
    }
  }
}

// A NaN output value gives a NaN gradient where it enters (PyTorch: for
// log_softmax only that element, g - exp(y) sum g; for softmax the whole row
// through sum g y); other rows stay finite.
TEST_P(SoftmaxBackwardTest, NanPropagates) {
  for (bool log : {false, true}) {
    const size_t B = 2, V = 19;
    Mat y(B, V, DType::kF32), g(B, V, DType::kF32), gx(B, V, DType::kF32);
    for (size_t i = 0; i < B; ++i)
      for (size_t j = 0; j < V; ++j) {
        y.set(i, j, log ? -std::log(double(V)) : 1.0 / V);
        g.set(i, j, 0.1 * double(j) - 1.0);
      }
    y.set(0, 2, std::numeric_limits<double>::quiet_NaN());
    xent_softmax_backward_args a;
    XENT_ARGS_INIT(xent_softmax_backward_args, &a);
    a.batch = B;
    a.num_classes = V;
    a.output = y.data();
    a.output_kind = log ? XENT_DIST_LOG_PROBS : XENT_DIST_PROBS;
    a.grad_output = g.data();
    a.grad_input = gx.data();
    ASSERT_EQ(xent_softmax_backward(&a), XENT_OK) << xent_last_error();
    EXPECT_TRUE(std::isnan(gx.get(0, 2))) << "log=" << log;
    for (size_t j = 0; j < V; ++j) {
      EXPECT_TRUE(std::isfinite(gx.get(1, j))) << j;
      if (log && j != 2) EXPECT_TRUE(std::isfinite(gx.get(0, j))) << j;
      if (!log) EXPECT_TRUE(std::isnan(gx.get(0, j))) << j;
    }
  }
}

XENT_INSTANTIATE_ALL_TARGETS(SoftmaxTest);
XENT_INSTANTIATE_ALL_TARGETS(TokenLogprobsTest);
XENT_INSTANTIATE_ALL_TARGETS(SoftmaxBackwardTest);

}  // namespace
}  // namespace xent_test
