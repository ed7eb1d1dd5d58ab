// BCE with logits against the float64 reference, on every SIMD target.
#include <cmath>
#include <limits>
#include <string>

#include "tests/common/gtest_util.h"

namespace xent_test {
namespace {

// loss, row_loss, elem_loss and the gradient (in `gdt`), logits sigma 4.
CaseSpec Bce(size_t B, size_t V, DType dt, DType ydt, DType gdt, uint32_t seed) {
  CaseSpec s(abi::kBce, B, V);
  s.With("logits", dt).With("target", ydt).With("loss").With("row_loss").With("elem_loss").With("grad", gdt);
  s.sigma = 4;
  s.seed = seed;
  return s;
}

class BceTest : public AllTargets {};

TEST_P(BceTest, SizesDtypes) {
  for (size_t V : {1, 2, 15, 16, 17, 1000, 4097, 32003}) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      ExpectCase(Bce(V > 5000 ? 2 : 4, V, dt, (V % 2) ? dt : DType::kF32, (V % 3) ? dt : DType::kF32,
                     static_cast<uint32_t>(V * 3 + static_cast<int>(dt))));
    }
  }
}

TEST_P(BceTest, OptionsReductionsInPlace) {
  for (int red = 0; red < 4; ++red) {
    for (int w = 0; w < 3; ++w) {  // no weight, per class (broadcast), per element
      for (bool pw : {false, true}) {
        CaseSpec s = Bce(4, 300, DType::kF32, DType::kF32, DType::kF32, static_cast<uint32_t>(red * 10 + w * 2 + pw));
        s.Set("reduction", red).Set("grad_scale", red == 2 ? -2.0 : 1.0);
        if (w == 1) s.Broadcast("weight");
        if (w == 2) s.With("weight");
        if (pw) s.With("pos_weight");
        s.pad = static_cast<size_t>(w);
        s.offset = static_cast<size_t>(red);
        ExpectCase(s);
      }
    }
  }
  CaseSpec s = Bce(4, 5000, DType::kF32, DType::kF32, DType::kF32, 1);
  ExpectCase(s.InPlace("grad"));
  ExpectCase(s.With("logits", DType::kBF16).Without("elem_loss"));
  s.sigma = 60;  // beyond exp's range on both sides
  ExpectCase(s);
}

// One logit, one target (and pos_weight when > 0): loss, elem_loss and the
// gradient of the sum.
struct One {
  float loss, elem, grad;
};
One RunOne(float x, float y, float pos_weight) {
  CaseSpec s(abi::kBce, 1, 1);
  s.With("loss").With("elem_loss").With("grad").Set("reduction", XENT_REDUCTION_SUM);
  if (pos_weight > 0) s.With("pos_weight");
  s.edit = [=](const std::string& f, size_t, size_t, double) {
    return f == "logits" ? x : (f == "target" ? y : pos_weight);
  };
  Case c(s);
  EXPECT_EQ(c.Run(), XENT_OK) << xent_last_error();
  std::vector<std::string> problems;
  c.CheckWritten(&problems);
  ExpectNoProblems(problems, c.Describe());
  return {float(c.buf("loss")->Get(0)), float(c.buf("elem_loss")->Get(0)), float(c.buf("grad")->Get(0))};
}

// Large |x| with soft targets: the value is a sum of non-negative terms, so
// it stays accurate relative to itself (PyTorch's (1 - y) x + softplus(-x)
// loses ~5e-6 absolute at x = -69 in f32).
TEST_P(BceTest, LargeLogitsStayRelativelyAccurate) {
  const float xs[] = {-68.96943f, 70.5f, -30.25f, 25.0f, -88.0f};
  const float ys[] = {0.0022375858f, 0.9993f, 0.01f, 0.999f, 0.5f};
  for (int k = 0; k < 5; ++k) {
    const double xd = xs[k], yd = ys[k];
    const double want = yd * (std::log1p(std::exp(-std::fabs(xd))) + std::max(-xd, 0.0)) +
                        (1 - yd) * (std::log1p(std::exp(-std::fabs(xd))) + std::max(xd, 0.0));
    EXPECT_NEAR(RunOne(xs[k], ys[k], 0).loss, want, 2e-6 * std::fabs(want)) << "x=" << xs[k] << " y=" << ys[k];
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
  const Case cases[] = {{inf, 1.0f, 0.0f, 0.0f},  {inf, 0.0f, inf, 1.0f},   {inf, 0.25f, inf, 0.75f},
                        {-inf, 0.0f, 0.0f, 0.0f}, {-inf, 1.0f, inf, -2.0f}, {-inf, 0.25f, inf, -0.5f}};
  for (const Case& c : cases) {
    const One r = RunOne(c.x, c.y, 2.0f);
    EXPECT_EQ(r.loss, c.loss) << "x=" << c.x << " y=" << c.y;
    EXPECT_EQ(r.elem, c.loss) << "x=" << c.x << " y=" << c.y;
    EXPECT_EQ(r.grad, c.grad) << "x=" << c.x << " y=" << c.y;
  }
}

// A positive target at x = -inf gives +inf, however small the target and
// pos_weight: pw y underflows in f32 (1.4e-45 x 0.4 rounds to 0), and the
// term computed as (pw y) softplus(-x) came out 0. The float64 value (and
// PyTorch's) is +inf.
TEST_P(BceTest, TinyWeightedTargetAtMinusInfinityGivesInfiniteLoss) {
  const float inf = std::numeric_limits<float>::infinity();
  const One r = RunOne(-inf, std::numeric_limits<float>::denorm_min(), 0.4f);
  EXPECT_EQ(r.loss, inf);
  EXPECT_EQ(r.elem, inf);
  EXPECT_EQ(RunOne(-inf, std::numeric_limits<float>::denorm_min(), 0).loss, inf);
}

XENT_INSTANTIATE_ALL_TARGETS(BceTest);

}  // namespace
}  // namespace xent_test
