// BCE with logits against the float64 reference, on every SIMD target.
#include <cmath>
#include <limits>
#include <string>

#include "tests/reference.h"
#include "tests/test_util.h"

namespace xent_test {
namespace {

struct BceCase {
  size_t B = 4, V = 17;
  DType dt = DType::kF32, ydt = DType::kF32, gdt = DType::kF32;
  int weight = 0;  // 0 none, 1 per class (stride 0), 2 per element
  bool pos_weight = false, elem = true, grad = true, inplace = false;
  int reduction = XENT_REDUCTION_MEAN;
  float grad_scale = 1.0f;
  double sigma = 4;
  size_t pad = 0, offset = 0;
  uint32_t seed = 1;
};

void RunBce(const BceCase& c) {
  SCOPED_TRACE("B=" + std::to_string(c.B) + " V=" + std::to_string(c.V) + " dt=" + std::to_string(int(c.dt)) +
               " ydt=" + std::to_string(int(c.ydt)) + " w=" + std::to_string(c.weight) + " pw=" +
               std::to_string(c.pos_weight) + " red=" + std::to_string(c.reduction) + " inplace=" +
               std::to_string(c.inplace));
  const size_t B = c.B, V = c.V;
  Mat x(B, V, c.dt, V + c.pad, c.offset), y(B, V, c.ydt, V + 2, c.offset);
  const auto xr = RandomNormal(B * V, c.sigma, c.seed);
  std::mt19937 rng(c.seed);
  std::uniform_real_distribution<double> u01(0, 1);
  std::vector<double> xv(B * V), yv(B * V), wv, pwv;
  for (size_t i = 0; i < B; ++i)
    for (size_t j = 0; j < V; ++j) {
      xv[i * V + j] = x.set(i, j, xr[i * V + j]);
      const double r = u01(rng);
      yv[i * V + j] = y.set(i, j, r < 0.3 ? 0.0 : (r < 0.6 ? 1.0 : u01(rng)));
    }
  std::vector<float> wbuf, pwbuf;
  if (c.weight == 1) {
    wbuf.resize(V);
    for (size_t j = 0; j < V; ++j) wbuf[j] = static_cast<float>(0.2 + 2 * u01(rng));
    wv.resize(B * V);
    for (size_t k = 0; k < B * V; ++k) wv[k] = wbuf[k % V];
  } else if (c.weight == 2) {
    wbuf.resize(B * (V + 1));
    wv.resize(B * V);
    for (size_t i = 0; i < B; ++i)
      for (size_t j = 0; j < V; ++j) wv[i * V + j] = wbuf[i * (V + 1) + j] = static_cast<float>(2 * u01(rng));
  }
  if (c.pos_weight) {
    pwbuf.resize(V);
    for (size_t j = 0; j < V; ++j) pwv.push_back(pwbuf[j] = static_cast<float>(0.5 + 3 * u01(rng)));
  }
  const auto want = xent_ref::Bce(xv, yv, B, V, wv, pwv, c.reduction, c.grad_scale);
  const DType gdt = c.inplace ? c.dt : c.gdt;
  Mat g(B, V, gdt, V + 1, c.offset), el(B, V, DType::kF32, V + 4, 0);
  Vec loss(1), row_loss(B);
  xent_bce_args a;
  ASSERT_EQ(XENT_ARGS_INIT(xent_bce_args, &a), XENT_OK);
  a.batch = B;
  a.num_classes = V;
  a.logits = x.data();
  a.logits_stride = x.stride();
  a.logits_dtype = x.dt();
  a.target = y.data();
  a.target_stride = y.stride();
  a.target_dtype = y.dt();
  if (c.weight) {
    a.weight = wbuf.data();
    a.weight_stride = c.weight == 1 ? 0 : V + 1;
  }
  if (c.pos_weight) a.pos_weight = pwbuf.data();
  a.reduction = c.reduction;
  a.grad_scale = c.grad_scale;
  a.loss = loss.data();
  a.row_loss = row_loss.data();
  if (c.elem) {
    a.elem_loss = static_cast<float*>(el.data());
    a.elem_loss_stride = el.stride();
  }
  Mat& go = c.inplace ? x : g;
  if (c.grad) {
    a.grad = go.data();
    a.grad_stride = go.stride();
    a.grad_dtype = static_cast<int32_t>(gdt);
  }
  ASSERT_EQ(xent_bce_with_logits(&a), XENT_OK) << xent_last_error();
  double scale = 1;  // |x| (1 + pos_weight) |w| bound of the terms
  for (size_t k = 0; k < B * V; ++k) {
    const double t = (1 + std::fabs(xv[k])) * (1 + (pwv.empty() ? 1 : pwv[k % V])) * (wv.empty() ? 1 : wv[k]);
    scale = std::max(scale, t);
  }
  const double eabs = 2.4e-7 * scale;
  size_t bad = 0;
  for (size_t i = 0; i < B; ++i) {
    EXPECT_TRUE(Close(row_loss[i], want.row_loss[i], 2e-6 * std::fabs(want.row_loss[i]) + eabs * std::sqrt(V)))
        << "row_loss[" << i << "] = " << row_loss[i] << " want " << want.row_loss[i];
    for (size_t j = 0; j < V; ++j) {
      const size_t k = i * V + j;
      if (c.elem && !Close(el.get(i, j), want.elem[k], 2e-6 * std::fabs(want.elem[k]) + eabs) && ++bad < 5)
        ADD_FAILURE() << "elem[" << i << "][" << j << "] = " << el.get(i, j) << " want " << want.elem[k];
      if (c.grad) {
        const double w = want.grad[k];
        const double tol = gdt == DType::kF32 ? 2e-6 * std::fabs(w) + 1e-6 * std::fabs(c.grad_scale) : Ulp(w, gdt) + 1e-7;
        if (!Close(go.get(i, j), w, tol) && ++bad < 5)
          ADD_FAILURE() << "grad[" << i << "][" << j << "] = " << go.get(i, j) << " want " << w;
      }
    }
  }
  EXPECT_EQ(bad, 0u);
  EXPECT_TRUE(Close(loss[0], want.loss, 2e-6 * std::fabs(want.loss) + eabs));
  EXPECT_TRUE(x.CanariesIntact() && g.CanariesIntact() && el.CanariesIntact() && loss.CanariesIntact() &&
              row_loss.CanariesIntact());
}

class BceTest : public AllTargets {};

TEST_P(BceTest, SizesDtypes) {
  for (size_t V : {1, 2, 15, 16, 17, 1000, 4097, 32003}) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      BceCase c;
      c.V = V;
      c.B = V > 5000 ? 2 : 4;
      c.dt = dt;
      c.ydt = (V % 2) ? dt : DType::kF32;
      c.gdt = (V % 3) ? dt : DType::kF32;
      c.seed = static_cast<uint32_t>(V * 3 + static_cast<int>(dt));
      RunBce(c);
    }
  }
}

TEST_P(BceTest, OptionsReductionsInPlace) {
  for (int red = 0; red < 4; ++red) {
    for (int w = 0; w < 3; ++w) {
      for (bool pw : {false, true}) {
        BceCase c;
        c.V = 300;
        c.reduction = red;
        c.weight = w;
        c.pos_weight = pw;
        c.grad_scale = red == 2 ? -2.0f : 1.0f;
        c.pad = w;
        c.offset = static_cast<size_t>(red);
        c.seed = static_cast<uint32_t>(red * 10 + w * 2 + pw);
        RunBce(c);
      }
    }
  }
  BceCase c;
  c.inplace = true;
  c.V = 5000;
  RunBce(c);
  c.dt = DType::kBF16;
  c.elem = false;
  RunBce(c);
  c.sigma = 60;  // beyond exp's range on both sides
  RunBce(c);
}

// Large |x| with soft targets: the value is a sum of non-negative terms, so
// it stays accurate relative to itself (PyTorch's (1 - y) x + softplus(-x)
// loses ~5e-6 absolute at x = -69 in f32).
TEST_P(BceTest, LargeLogitsStayRelativelyAccurate) {
  const float xs[] = {-68.96943f, 70.5f, -30.25f, 25.0f, -88.0f};
  const float ys[] = {0.0022375858f, 0.9993f, 0.01f, 0.999f, 0.5f};
  for (int k = 0; k < 5; ++k) {
    float x = xs[k], y = ys[k], l = 0;
    xent_bce_args a;
    XENT_ARGS_INIT(xent_bce_args, &a);
    a.batch = 1;
    a.num_classes = 1;
    a.logits = &x;
    a.target = &y;
    a.reduction = XENT_REDUCTION_SUM;
    a.loss = &l;
    ASSERT_EQ(xent_bce_with_logits(&a), XENT_OK) << xent_last_error();
    const double xd = x, yd = y;
    const double want = yd * (std::log1p(std::exp(-std::fabs(xd))) + std::max(-xd, 0.0)) +
                        (1 - yd) * (std::log1p(std::exp(-std::fabs(xd))) + std::max(xd, 0.0));
    EXPECT_NEAR(l, want, 2e-6 * std::fabs(want)) << "x=" << x << " y=" << y;
  }
}

// Infinite logits take the limits of l and dl/dx (sigmoid(+-inf) = 1, 0;
// a term whose factor is 0 is 0): finite targets give a defined answer where
// PyTorch's (1 - y) x + softplus(-x) form gives NaN (0 * inf at y = 1).
TEST_P(BceTest, InfiniteLogitsTakeTheLimit) {
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    float x, y, loss, grad;
  };
  // pos_weight 2: l = 2 y softplus(-x) + (1 - y) softplus(x),
  // dl/dx = (1 - y) sigmoid(x) - 2 y (1 - sigmoid(x)).
  const Case cases[] = {{inf, 1.0f, 0.0f, 0.0f},   {inf, 0.0f, inf, 1.0f},  {inf, 0.25f, inf, 0.75f},
                        {-inf, 0.0f, 0.0f, 0.0f},  {-inf, 1.0f, inf, -2.0f}, {-inf, 0.25f, inf, -0.5f}};
  for (const Case& c : cases) {
    float x = c.x, y = c.y, pw = 2.0f, l = -1, el = -1, g = -1;
    xent_bce_args a;
    XENT_ARGS_INIT(xent_bce_args, &a);
    a.batch = 1;
    a.num_classes = 1;
    a.logits = &x;
    a.target = &y;
    a.pos_weight = &pw;
    a.reduction = XENT_REDUCTION_SUM;
    a.loss = &l;
    a.elem_loss = &el;
    a.grad = &g;
    ASSERT_EQ(xent_bce_with_logits(&a), XENT_OK) << xent_last_error();
    EXPECT_EQ(l, c.loss) << "x=" << x << " y=" << y;
    EXPECT_EQ(el, c.loss) << "x=" << x << " y=" << y;
    EXPECT_EQ(g, c.grad) << "x=" << x << " y=" << y;
  }
}

XENT_INSTANTIATE_ALL_TARGETS(BceTest);

}  // namespace
}  // namespace xent_test
