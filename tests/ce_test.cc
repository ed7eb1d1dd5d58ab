// Cross-entropy against the float64 reference, on every SIMD target.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "tests/reference.h"
#include "tests/test_util.h"

namespace xent_test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct CeConfig {
  size_t B = 4, V = 17;
  DType dtype = DType::kF32;
  DType grad_dtype = DType::kF32;  // kAuto = no gradient
  bool inplace = false;
  bool soft = false;
  DType soft_dtype = DType::kF32;
  bool i32 = false;
  size_t stride_pad = 0;  // logits stride = V + pad
  size_t offset = 0;      // byte misalignment of every buffer
  bool weight = false, row_scale = false;
  int reduction = XENT_REDUCTION_MEAN;
  float eps = 0, z_loss = 0, softcap = 0, grad_scale = 1;
  double sigma = 3.0, mean = 0.0;
  int ignore_every = 0;  // every k-th row ignored
  uint32_t seed = 1;
  // Optional hook to overwrite logits (edge cases): (row, col) -> value or NaN to keep.
  double (*special)(size_t, size_t, size_t) = nullptr;
};

std::string Describe(const CeConfig& c) {
  char buf[400];
  std::snprintf(buf, sizeof(buf),
                "B=%zu V=%zu dtype=%d grad=%d inplace=%d soft=%d i32=%d pad=%zu off=%zu w=%d rs=%d red=%d eps=%g "
                "z=%g cap=%g gs=%g ign=%d",
                c.B, c.V, static_cast<int>(c.dtype), static_cast<int>(c.grad_dtype), c.inplace, c.soft, c.i32,
                c.stride_pad, c.offset, c.weight, c.row_scale, c.reduction, c.eps, c.z_loss, c.softcap,
                c.grad_scale, c.ignore_every);
  return buf;
}

void RunCe(const CeConfig& c) {
  SCOPED_TRACE(Describe(c));
  const size_t B = c.B, V = c.V;
  Mat logits(B, V, c.dtype, V + c.stride_pad, c.offset);
  const auto r = RandomNormal(B * V, c.sigma, c.seed, c.mean);
  xent_ref::CeSpec spec;
  spec.B = B;
  spec.V = V;
  spec.x.resize(B * V);
  for (size_t i = 0; i < B; ++i)
    for (size_t j = 0; j < V; ++j) {
      double v = r[i * V + j];
      if (c.special) {
        const double s = c.special(i, j, V);
        if (!std::isnan(s)) v = s;
      }
      spec.x[i * V + j] = logits.set(i, j, v);
    }
  // Targets.
  std::mt19937 rng(c.seed + 7);
  std::vector<int64_t> y64(B);
  std::vector<int32_t> y32(B);
  Mat q;
  if (c.soft) {
    q = Mat(B, V, c.soft_dtype, V, c.offset);
    spec.soft = true;
    spec.q.resize(B * V);
    for (size_t i = 0; i < B; ++i) {
      std::vector<double> e(V);
      double s = 0;
      for (size_t j = 0; j < V; ++j) {
        e[j] = (rng() % 4 == 0) ? 0.0 : std::exp(std::normal_distribution<double>(0, 2)(rng));
        s += e[j];
      }
      for (size_t j = 0; j < V; ++j) spec.q[i * V + j] = q.set(i, j, s > 0 ? e[j] / s : 0.0);
    }
  } else {
    for (size_t i = 0; i < B; ++i) {
      int64_t t = static_cast<int64_t>(rng() % V);
      if (c.ignore_every > 0 && i % static_cast<size_t>(c.ignore_every) == 0) t = -100;
      y64[i] = t;
      y32[i] = static_cast<int32_t>(t);
    }
    spec.y = y64;
  }
  Vec weight(V), row_scale(B);
  if (c.weight) {
    std::uniform_real_distribution<float> u(0.1f, 2.0f);
    for (size_t j = 0; j < V; ++j) weight[j] = u(rng);
    spec.weight.assign(weight.data(), weight.data() + V);
  }
  if (c.row_scale) {
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    for (size_t i = 0; i < B; ++i) row_scale[i] = u(rng);
    spec.row_scale.assign(row_scale.data(), row_scale.data() + B);
  }
  spec.reduction = c.reduction;
  spec.eps = c.eps;
  spec.z_loss = c.z_loss;
  spec.softcap = c.softcap;
  spec.grad_scale = c.grad_scale;
  const xent_ref::CeOut want = xent_ref::CrossEntropy(spec);

  const bool with_grad = c.grad_dtype != DType::kAuto;
  const DType gdt = c.inplace ? c.dtype : c.grad_dtype;
  Mat grad_buf(B, V, with_grad && !c.inplace ? gdt : DType::kF32, V + c.stride_pad + 3, c.offset);
  Vec loss(1), row_loss(B), lse(B);

  xent_cross_entropy_args a;
  ASSERT_EQ(XENT_ARGS_INIT(xent_cross_entropy_args, &a), XENT_OK);
  a.batch = B;
  a.num_classes = V;
  a.logits = logits.data();
  a.logits_stride = logits.stride();
  a.logits_dtype = logits.dt();
  if (c.soft) {
    a.target = q.data();
    a.target_dtype = q.dt();
    a.target_stride = q.stride();
  } else {
    a.target = c.i32 ? static_cast<const void*>(y32.data()) : static_cast<const void*>(y64.data());
    a.target_dtype = c.i32 ? XENT_I32 : XENT_I64;
  }
  a.weight = c.weight ? weight.data() : nullptr;
  a.row_scale = c.row_scale ? row_scale.data() : nullptr;
  a.reduction = c.reduction;
  a.label_smoothing = c.eps;
  a.z_loss = c.z_loss;
  a.softcap = c.softcap;
  a.grad_scale = c.grad_scale;
  a.loss = loss.data();
  a.row_loss = row_loss.data();
  a.lse = lse.data();
  if (with_grad) {
    if (c.inplace) {
      a.grad = logits.data();
      a.grad_stride = logits.stride();
      a.grad_dtype = XENT_DTYPE_AUTO;
    } else {
      a.grad = grad_buf.data();
      a.grad_stride = grad_buf.stride();
      a.grad_dtype = grad_buf.dt();
    }
  }
  ASSERT_EQ(xent_cross_entropy(&a), XENT_OK) << xent_last_error();

  // Per-row tolerance: relative plus an absolute part that grows with the
  // magnitude of the logits (a loss near 0 is a difference of O(|z|) numbers,
  // and softcap's tanh has a few ulp of error).
  double zmax = 1.0;
  for (double v : spec.x)
    if (std::isfinite(v)) zmax = std::max(zmax, std::fabs(c.softcap > 0 ? std::min<double>(std::fabs(v), c.softcap) : v));
  const double row_abs = 2e-6 + (c.softcap > 0 ? 8 : 2) * 1.2e-7 * zmax;
  for (size_t i = 0; i < B; ++i) {
    EXPECT_TRUE(Close(row_loss[i], want.row_loss[i], 2e-6 * std::fabs(want.row_loss[i]) + row_abs))
        << "row_loss[" << i << "] = " << row_loss[i] << " want " << want.row_loss[i];
    const bool ignored = !c.soft && y64[i] == -100;
    (void)ignored;
    EXPECT_TRUE(Close(lse[i], want.lse[i], 2e-6 * std::fabs(want.lse[i]) + row_abs))
        << "lse[" << i << "] = " << lse[i] << " want " << want.lse[i];
  }
  EXPECT_TRUE(Close(loss[0], want.loss, 2e-6 * std::fabs(want.loss) + (c.softcap > 0 ? row_abs : 0.0)))
      << "loss = " << loss[0] << " want " << want.loss;
  EXPECT_TRUE(loss.CanariesIntact() && row_loss.CanariesIntact() && lse.CanariesIntact());

  if (with_grad) {
    const Mat& g = c.inplace ? logits : grad_buf;
    size_t bad = 0;
    for (size_t i = 0; i < B; ++i) {
      for (size_t j = 0; j < V; ++j) {
        const double want_g = want.grad[i * V + j];
        double tol = 1e-6 * std::max(1.0, std::fabs(static_cast<double>(c.grad_scale)));
        if (c.softcap > 0) tol *= 4;
        if (gdt != DType::kF32) tol = Ulp(want_g, gdt) + 1e-6;
        if (!Close(g.get(i, j), want_g, tol) && ++bad <= 5) {
          ADD_FAILURE() << "grad[" << i << "][" << j << "] = " << g.get(i, j) << " want " << want_g;
        }
      }
    }
    EXPECT_EQ(bad, 0u);
    EXPECT_TRUE(g.CanariesIntact()) << "gradient written outside its rows";
  } else {
    EXPECT_TRUE(grad_buf.CanariesIntact());
  }
  EXPECT_TRUE(logits.CanariesIntact());
}

class CeTest : public AllTargets {};

const size_t kSizes[] = {1, 2, 15, 16, 17, 1000, 4096, 4097, 32000, 32003};

TEST_P(CeTest, SizesAndDtypes) {
  for (size_t V : kSizes) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      CeConfig c;
      c.V = V;
      c.B = V > 5000 ? 3 : 7;
      c.dtype = dt;
      c.grad_dtype = DType::kF32;
      c.seed = static_cast<uint32_t>(V * 3 + static_cast<size_t>(dt));
      RunCe(c);
      c.grad_dtype = dt;  // gradient in the logits' dtype
      RunCe(c);
    }
  }
}

TEST_P(CeTest, LargeVocab) {
  CeConfig c;
  c.B = 2;
  c.V = 262144;
  c.seed = 99;
  RunCe(c);
  c.dtype = DType::kBF16;
  c.grad_dtype = DType::kBF16;
  c.inplace = true;
  c.eps = 0.1f;
  RunCe(c);
}

TEST_P(CeTest, StridesMisalignmentInPlace) {
  for (size_t off : {0, 1, 2, 3, 6}) {
    for (size_t pad : {0, 1, 5, 64}) {
      for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
        CeConfig c;
        c.B = 5;
        c.V = 33;
        c.dtype = dt;
        c.offset = off;
        c.stride_pad = pad;
        c.inplace = (pad % 2 == 1);
        c.i32 = (off % 2 == 1);
        c.seed = static_cast<uint32_t>(off * 100 + pad);
        RunCe(c);
      }
    }
  }
}

TEST_P(CeTest, Options) {
  for (int red : {XENT_REDUCTION_NONE, XENT_REDUCTION_MEAN, XENT_REDUCTION_SUM}) {
    for (int opt = 0; opt < 8; ++opt) {
      for (size_t V : {7, 100, 5000}) {
        CeConfig c;
        c.B = 9;
        c.V = V;
        c.reduction = red;
        c.weight = opt & 1;
        c.eps = (opt & 2) ? 0.15f : 0.0f;
        c.z_loss = (opt & 4) ? 1e-3f : 0.0f;
        c.ignore_every = 3;
        c.row_scale = (opt == 5);
        c.grad_scale = (opt == 6) ? -0.5f : 1.0f;
        c.seed = static_cast<uint32_t>(red * 100 + opt * 10 + V);
        RunCe(c);
        c.dtype = DType::kBF16;
        c.grad_dtype = DType::kBF16;
        RunCe(c);
      }
    }
  }
}

TEST_P(CeTest, Softcap) {
  for (float cap : {30.0f, 5.0f}) {
    for (size_t V : {17, 5000}) {
      CeConfig c;
      c.V = V;
      c.B = 5;
      c.softcap = cap;
      c.sigma = 20;
      c.eps = 0.1f;
      c.seed = static_cast<uint32_t>(V + cap);
      RunCe(c);
      c.dtype = DType::kF16;
      c.grad_dtype = DType::kF16;
      c.inplace = true;
      RunCe(c);
    }
  }
}

TEST_P(CeTest, SoftTargets) {
  for (size_t V : {1, 16, 17, 5000}) {
    for (int opt = 0; opt < 4; ++opt) {
      CeConfig c;
      c.V = V;
      c.B = 6;
      c.soft = true;
      c.weight = opt & 1;
      c.eps = (opt & 2) ? 0.2f : 0.0f;
      c.z_loss = (opt == 3) ? 1e-4f : 0.0f;
      c.seed = static_cast<uint32_t>(V * 4 + opt);
      RunCe(c);
      c.dtype = DType::kBF16;
      c.soft_dtype = DType::kBF16;
      c.grad_dtype = DType::kBF16;
      RunCe(c);
      c.soft_dtype = DType::kF32;
      c.reduction = XENT_REDUCTION_SUM;
      c.softcap = 10;
      RunCe(c);
    }
  }
}

// Edge values: the hook returns the value to put at (row, col), NaN = keep
// the random one (see RunCe).
double HugeRows(size_t i, size_t j, size_t) {
  if (i == 0) return (j % 3 == 0) ? 1e30 : -1e30;
  if (i == 1) return 1e30 + static_cast<double>(j);
  if (i == 2) return -1e30;
  return kNaN;
}
double MaskedRows(size_t i, size_t j, size_t) {
  if (i == 0 && j % 2 == 1) return -kInf;           // half the vocabulary masked
  if (i == 1 && j != 3) return -kInf;               // one live class
  if (i == 2) return -kInf;                         // all -inf
  if (i == 3 && j >= 4096 && j < 8192) return -kInf;  // a whole segment masked
  return kNaN;
}
double NanInfRows(size_t i, size_t j, size_t) {
  if (i == 0 && j == 5) return std::numeric_limits<double>::quiet_NaN();
  if (i == 1 && j == 2) return kInf;
  if (i == 2 && j == 0) return kInf;
  return kNaN;
}

TEST_P(CeTest, EdgeValues) {
  for (auto hook : {&HugeRows, &MaskedRows}) {
    for (size_t V : {17, 9000}) {
      for (float eps : {0.0f, 0.1f}) {
        CeConfig c;
        c.V = V;
        c.B = 5;
        c.special = hook;
        c.eps = eps;
        c.seed = static_cast<uint32_t>(V);
        RunCe(c);
        c.dtype = DType::kBF16;
        RunCe(c);
      }
    }
  }
}

// NaN inputs need the hook to store NaN itself; test them directly.
TEST_P(CeTest, NanAndInfPropagate) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16})
  for (size_t V : {6, 17, 5000}) {
    SCOPED_TRACE("dtype " + std::to_string(static_cast<int>(dt)) + " V " + std::to_string(V));
    Mat logits(3, V, dt);
    for (size_t i = 0; i < 3; ++i)
      for (size_t j = 0; j < V; ++j) logits.set(i, j, std::sin(static_cast<double>(i * V + j)));
    logits.set(0, 5, kNaN);
    logits.set(1, 2, kInf);
    std::vector<int64_t> y = {1, 3, 0};
    Mat grad(3, V, dt);  // gradient in the logits' dtype: NaN must stay NaN
    Vec row_loss(3), lse(3), loss(1);
    xent_cross_entropy_args a;
    XENT_ARGS_INIT(xent_cross_entropy_args, &a);
    a.batch = 3;
    a.num_classes = V;
    a.logits = logits.data();
    a.logits_dtype = logits.dt();
    a.target = y.data();
    a.grad = grad.data();
    a.row_loss = row_loss.data();
    a.lse = lse.data();
    a.loss = loss.data();
    ASSERT_EQ(xent_cross_entropy(&a), XENT_OK) << xent_last_error();
    EXPECT_TRUE(std::isnan(row_loss[0]));
    EXPECT_TRUE(std::isnan(row_loss[1]));
    EXPECT_TRUE(std::isfinite(row_loss[2]));
    EXPECT_TRUE(std::isnan(loss[0]));
    for (size_t j = 0; j < V; ++j) {
      EXPECT_TRUE(std::isnan(grad.get(0, j))) << j;
      EXPECT_TRUE(std::isnan(grad.get(1, j))) << j;
      EXPECT_TRUE(std::isfinite(grad.get(2, j))) << j;
    }
  }
}

TEST_P(CeTest, AllIgnoredAndEmpty) {
  // All rows ignored: MEAN is NaN (0/0, as PyTorch), SUM is 0, gradients 0.
  for (int red : {XENT_REDUCTION_MEAN, XENT_REDUCTION_SUM}) {
    Mat logits(4, 10, DType::kF32);
    logits.fill(0.5);
    std::vector<int64_t> y(4, -100);
    Mat grad(4, 10, DType::kF32);
    Vec loss(1);
    xent_cross_entropy_args a;
    XENT_ARGS_INIT(xent_cross_entropy_args, &a);
    a.batch = 4;
    a.num_classes = 10;
    a.logits = logits.data();
    a.target = y.data();
    a.reduction = red;
    a.label_smoothing = 0.1f;
    a.loss = loss.data();
    a.grad = grad.data();
    ASSERT_EQ(xent_cross_entropy(&a), XENT_OK) << xent_last_error();
    if (red == XENT_REDUCTION_MEAN) {
      EXPECT_TRUE(std::isnan(loss[0]));
    } else {
      EXPECT_EQ(loss[0], 0.0f);
    }
    for (size_t i = 0; i < 4; ++i)
      for (size_t j = 0; j < 10; ++j) EXPECT_EQ(grad.get(i, j), 0.0);
  }
  // B = 0: MEAN NaN, SUM 0, NULL logits allowed? No: logits stays required.
  for (int red : {XENT_REDUCTION_MEAN, XENT_REDUCTION_SUM}) {
    float dummy = 0;
    int64_t t = 0;
    Vec loss(1);
    xent_cross_entropy_args a;
    XENT_ARGS_INIT(xent_cross_entropy_args, &a);
    a.batch = 0;
    a.num_classes = 10;
    a.logits = &dummy;
    a.target = &t;
    a.reduction = red;
    a.loss = loss.data();
    ASSERT_EQ(xent_cross_entropy(&a), XENT_OK) << xent_last_error();
    if (red == XENT_REDUCTION_MEAN) {
      EXPECT_TRUE(std::isnan(loss[0]));
    } else {
      EXPECT_EQ(loss[0], 0.0f);
    }
  }
}

TEST_P(CeTest, SingleClass) {
  CeConfig c;
  c.V = 1;
  c.B = 3;
  RunCe(c);
  c.eps = 0.3f;
  c.weight = true;
  RunCe(c);
}

XENT_INSTANTIATE_ALL_TARGETS(CeTest);

}  // namespace
}  // namespace xent_test
