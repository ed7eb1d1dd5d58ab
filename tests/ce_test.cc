// Cross-entropy against the float64 reference, on every SIMD target.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tests/common/gtest_util.h"

namespace xent_test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Every per-row output, the reduced loss and (unless `grad` is kAuto) the
// gradient in `grad`'s dtype.
CaseSpec Ce(size_t B, size_t V, DType logits = DType::kF32, DType grad = DType::kF32, uint32_t seed = 1) {
  CaseSpec s(abi::kCrossEntropy, B, V);
  s.With("logits", logits).With("loss").With("row_loss").With("lse");
  if (grad != DType::kAuto) s.With("grad", grad);
  s.seed = seed;
  return s;
}

class CeTest : public AllTargets {};

const size_t kSizes[] = {1, 2, 15, 16, 17, 1000, 4096, 4097, 32000, 32003};

TEST_P(CeTest, SizesAndDtypes) {
  for (size_t V : kSizes) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      const uint32_t seed = static_cast<uint32_t>(V * 3 + static_cast<size_t>(dt));
      ExpectCase(Ce(V > 5000 ? 3 : 7, V, dt, DType::kF32, seed));
      ExpectCase(Ce(V > 5000 ? 3 : 7, V, dt, dt, seed));  // gradient in the logits' dtype
    }
  }
}

TEST_P(CeTest, LargeVocab) {
  ExpectCase(Ce(2, 262144, DType::kF32, DType::kF32, 99));
  CaseSpec s = Ce(2, 262144, DType::kBF16, DType::kAuto, 99);
  ExpectCase(s.InPlace("grad").Set("label_smoothing", 0.1));
}

TEST_P(CeTest, StridesMisalignmentInPlace) {
  for (size_t off : {0, 1, 2, 3, 6}) {
    for (size_t pad : {0, 1, 5, 64}) {
      for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
        CaseSpec s = Ce(5, 33, dt, pad % 2 == 1 ? DType::kAuto : DType::kF32, static_cast<uint32_t>(off * 100 + pad));
        s.offset = off;
        s.pad = pad;
        if (pad % 2 == 1) s.InPlace("grad");
        if (off % 2 == 1) s.With("target", DType::kI32);
        ExpectCase(s);
      }
    }
  }
}

TEST_P(CeTest, Options) {
  for (int red : {XENT_REDUCTION_NONE, XENT_REDUCTION_MEAN, XENT_REDUCTION_SUM}) {
    for (int opt = 0; opt < 8; ++opt) {
      for (size_t V : {7, 100, 5000}) {
        for (DType dt : {DType::kF32, DType::kBF16}) {
          CaseSpec s = Ce(9, V, dt, dt, static_cast<uint32_t>(red * 100 + opt * 10 + V));
          s.Set("reduction", red).Set("label_smoothing", (opt & 2) ? 0.15 : 0.0);
          s.Set("z_loss", (opt & 4) ? 1e-3 : 0.0).Set("grad_scale", opt == 6 ? -0.5 : 1.0);
          if (opt & 1) s.With("weight");
          if (opt == 5) s.With("row_scale");
          s.ignore_every = 3;
          ExpectCase(s);
        }
      }
    }
  }
}

TEST_P(CeTest, Softcap) {
  for (float cap : {30.0f, 5.0f}) {
    for (size_t V : {17, 5000}) {
      CaseSpec s = Ce(5, V, DType::kF32, DType::kF32, static_cast<uint32_t>(V + cap));
      s.Set("softcap", cap).Set("label_smoothing", 0.1);
      s.sigma = 20;
      ExpectCase(s);
      CaseSpec h = Ce(5, V, DType::kF16, DType::kAuto, s.seed);
      h.Set("softcap", cap).Set("label_smoothing", 0.1).InPlace("grad");
      h.sigma = 20;
      ExpectCase(h);
    }
  }
}

TEST_P(CeTest, SoftTargets) {
  for (size_t V : {1, 16, 17, 5000}) {
    for (int opt = 0; opt < 4; ++opt) {
      auto soft = [&](DType logits, DType target) {
        CaseSpec s = Ce(6, V, logits, logits, static_cast<uint32_t>(V * 4 + opt));
        s.With("target", target).Set("label_smoothing", (opt & 2) ? 0.2 : 0.0);
        s.Set("z_loss", opt == 3 ? 1e-4 : 0.0);
        if (opt & 1) s.With("weight");
        return s;
      };
      ExpectCase(soft(DType::kF32, DType::kF32));
      ExpectCase(soft(DType::kBF16, DType::kBF16));
      ExpectCase(soft(DType::kBF16, DType::kF32).Set("reduction", XENT_REDUCTION_SUM).Set("softcap", 10));
    }
  }
}

// Edge payloads (the logits at (row, col); anything else keeps its value).
double HugeRows(size_t i, size_t j, double v) {
  if (i == 0) return (j % 3 == 0) ? 1e30 : -1e30;
  if (i == 1) return 1e30 + static_cast<double>(j);
  if (i == 2) return -1e30;
  return v;
}
double MaskedRows(size_t i, size_t j, double v) {
  if (i == 0 && j % 2 == 1) return -kInf;             // half the vocabulary masked
  if (i == 1 && j != 3) return -kInf;                 // one live class
  if (i == 2) return -kInf;                           // all -inf
  if (i == 3 && j >= 4096 && j < 8192) return -kInf;  // a whole segment masked
  return v;
}

TEST_P(CeTest, EdgeValues) {
  for (auto hook : {&HugeRows, &MaskedRows}) {
    for (size_t V : {17, 9000}) {
      for (float eps : {0.0f, 0.1f}) {
        for (DType dt : {DType::kF32, DType::kBF16}) {
          CaseSpec s = Ce(5, V, dt, DType::kF32, static_cast<uint32_t>(V));
          s.Set("label_smoothing", eps);
          s.edit = [hook](const std::string& f, size_t i, size_t j, double v) {
            return f == "logits" ? hook(i, j, v) : v;
          };
          ExpectCase(s);
        }
      }
    }
  }
}

// A row loss beyond FLT_MAX (z_loss 1e-4 x lse^2 = 4e38 at a logit 2e21)
// is +inf in f32 row_loss, but the MEAN over 4 rows (1e38) is finite: the
// reduction sums the row losses in double, not their f32 values (found by
// fuzzfast: the mean came out inf).
TEST_P(CeTest, RowLossBeyondFltMaxKeepsAFiniteMean) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    CaseSpec s = Ce(4, 5, dt, DType::kF32, 5);
    s.Set("reduction", XENT_REDUCTION_MEAN).Set("z_loss", 1e-4);
    s.edit = [](const std::string& f, size_t i, size_t j, double v) {
      return f == "logits" && i == 0 ? (j == 0 ? 2e21 : 0.0) : v;
    };
    Case c(s);
    ASSERT_EQ(c.Run(), XENT_OK) << xent_last_error();  // (the generic bounds do not take inf for 4e38)
    const double loss = c.buf("loss")->Get(0);
    EXPECT_TRUE(std::isfinite(loss)) << loss;
    const double z = c.buf("logits")->Get(0, 0);       // 2e21 in the logits' dtype
    EXPECT_NEAR(loss, 1e-4 * z * z / 4, 1e-5 * loss);  // row 0's term; the others are ~1e-37 of it
    EXPECT_EQ(c.buf("row_loss")->Get(0), kInf);        // 4e38 rounded to f32
    for (size_t i = 1; i < 4; ++i) EXPECT_TRUE(std::isfinite(c.buf("row_loss")->Get(i))) << i;
  }
}

// Logits sin(i V + j) with NaN at (0, 5) and +inf at (1, 2); targets 1, 3, 0.
TEST_P(CeTest, NanAndInfPropagate) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (size_t V : {6, 17, 5000}) {
      CaseSpec s = Ce(3, V, dt, dt);  // gradient in the logits' dtype: NaN must stay NaN
      s.edit = [V](const std::string& f, size_t i, size_t j, double v) {
        if (f != "logits") return v;
        if (i == 0 && j == 5) return kNaN;
        if (i == 1 && j == 2) return kInf;
        return std::sin(static_cast<double>(i * V + j));
      };
      Case c(s);
      const int64_t y[] = {1, 3, 0};
      for (size_t i = 0; i < 3; ++i) c.buf("target")->SetIndex(i, y[i]);
      c.Seal();
      SCOPED_TRACE(c.Describe());
      ExpectRun(c);
      const Buffer& row_loss = *c.buf("row_loss");
      EXPECT_TRUE(std::isnan(row_loss.Get(0)));
      EXPECT_TRUE(std::isnan(row_loss.Get(1)));
      EXPECT_TRUE(std::isfinite(row_loss.Get(2)));
      EXPECT_TRUE(std::isnan(c.buf("loss")->Get(0)));
      const Buffer& grad = *c.buf("grad");
      for (size_t j = 0; j < V; ++j) {
        EXPECT_TRUE(std::isnan(grad.Get(0, j))) << j;
        EXPECT_TRUE(std::isnan(grad.Get(1, j))) << j;
        EXPECT_TRUE(std::isfinite(grad.Get(2, j))) << j;
      }
    }
  }
}

// A NaN target probability makes its row's loss and whole gradient NaN (as
// PyTorch's: sum(q) p - q), also in the segments of -inf logits (p = 0
// there; fuzzfast found them at -q). Row 1: finite targets (none where the
// logits are -inf, which would make its loss +inf), the same logits.
TEST_P(CeTest, NanTargetProbabilityPropagates) {
  const size_t V = 4351;
  for (DType dt : {DType::kF32, DType::kF16}) {
    CaseSpec s = Ce(2, V, dt, DType::kF32);
    s.With("target", dt);
    s.edit = [](const std::string& f, size_t i, size_t j, double v) {
      if (f == "logits") return j == 2175 ? 0.5 : (j >= 4096 ? -kInf : v);  // segment 2: all -inf
      if (f == "target") return (i == 0 && j == 4196) ? kNaN : (j >= 4096 ? 0.0 : std::fabs(v) / 64);
      return v;
    };
    Case c(s);
    SCOPED_TRACE(c.Describe());
    ExpectRun(c);
    EXPECT_TRUE(std::isnan(c.buf("row_loss")->Get(0)));
    EXPECT_TRUE(std::isfinite(c.buf("row_loss")->Get(1)));
    const Buffer& grad = *c.buf("grad");
    for (size_t j = 0; j < V; ++j) {
      EXPECT_TRUE(std::isnan(grad.Get(0, j))) << j;
      EXPECT_TRUE(std::isfinite(grad.Get(1, j))) << j;
    }
  }
}

// A probability target at a -inf logit makes its row's loss +inf, however
// small the target and the class weight: q w can underflow in f32 (1.4e-45 x
// 0.4 rounds to 0), and a term computed as (q w)(z - ref) then came out 0,
// a finite loss (fuzzfast, emu128). Column 7 takes a full vector, column
// V - 1 the row's last partial one.
TEST_P(CeTest, TinyWeightedTargetAtMaskedLogitGivesInfiniteLoss) {
  const size_t V = 4351;
  const double kTiny = static_cast<double>(std::numeric_limits<float>::denorm_min());
  CaseSpec s = Ce(3, V, DType::kF32, DType::kF32);
  s.With("target", DType::kF32).With("weight");
  s.edit = [&](const std::string& f, size_t i, size_t j, double v) {
    const bool masked = (i == 0 && j == 7) || (i == 1 && j == V - 1);
    if (f == "logits") return masked ? -kInf : v;
    if (f == "target") return masked ? kTiny : (j == 7 || j == V - 1 ? 0.0 : std::fabs(v) / 64);
    if (f == "weight") return (i + j == 7 || i + j == V - 1) ? 0.4 : std::fabs(v) + 0.5;  // (a vector: one index is 0)
    return v;
  };
  Case c(s);
  SCOPED_TRACE(c.Describe());
  ExpectRun(c);
  EXPECT_EQ(c.buf("row_loss")->Get(0), kInf);
  EXPECT_EQ(c.buf("row_loss")->Get(1), kInf);
  EXPECT_TRUE(std::isfinite(c.buf("row_loss")->Get(2)));
}

TEST_P(CeTest, AllIgnoredAndEmpty) {
  // All rows ignored: MEAN is NaN (0/0, as PyTorch), SUM is 0, gradients 0.
  for (int red : {XENT_REDUCTION_MEAN, XENT_REDUCTION_SUM}) {
    CaseSpec s = Ce(4, 10);
    s.Set("reduction", red).Set("label_smoothing", 0.1);
    s.ignore_every = 1;
    s.edit = [](const std::string&, size_t, size_t, double) { return 0.5; };
    Case c(s);
    ExpectRun(c);
    if (red == XENT_REDUCTION_MEAN) {
      EXPECT_TRUE(std::isnan(c.buf("loss")->Get(0)));
    } else {
      EXPECT_EQ(c.buf("loss")->Get(0), 0.0);
    }
    for (size_t i = 0; i < 4; ++i)
      for (size_t j = 0; j < 10; ++j) EXPECT_EQ(c.buf("grad")->Get(i, j), 0.0);
  }
  // B = 0: MEAN NaN, SUM 0 (logits and target stay required, non-NULL).
  for (int red : {XENT_REDUCTION_MEAN, XENT_REDUCTION_SUM}) {
    Case c(Ce(0, 10, DType::kF32, DType::kAuto).Set("reduction", red));
    ExpectRun(c);
    if (red == XENT_REDUCTION_MEAN) {
      EXPECT_TRUE(std::isnan(c.buf("loss")->Get(0)));
    } else {
      EXPECT_EQ(c.buf("loss")->Get(0), 0.0);
    }
  }
}

TEST_P(CeTest, SingleClass) {
  ExpectCase(Ce(3, 1));
  ExpectCase(Ce(3, 1).Set("label_smoothing", 0.3).With("weight"));
}

// A buffer of n elements of `size` bytes whose first element is 64-byte
// aligned (streaming stores need aligned rows).
class Aligned {
 public:
  Aligned(size_t n, size_t size) : bytes_(n * size + 64) {}
  unsigned char* get() {
    const uintptr_t a = reinterpret_cast<uintptr_t>(bytes_.data());
    return bytes_.data() + (64 - a % 64) % 64;
  }

 private:
  std::vector<unsigned char> bytes_;
};

// The rows of one call give the bits of each row computed alone. The engine
// runs a row's gradient and the next row's statistics in one walk when it
// can (src/engine.h, FusedRows: class-index targets without softcap, 1
// thread too); a row alone never does. Rows of aligned and misaligned
// starts, of 1 to 18 segments (the fused walk takes up to 32), 16-bit gradients, in place, an ignored row, class
// weights and label smoothing (the _streaming run of this suite covers the non-temporal stores).
TEST_P(CeTest, RowsTogetherMatchRowsAlone) {
  const size_t B = 21;
  for (size_t V : {1000, 4096, 5003, 32000, 70001}) {
    for (int32_t dt : {int32_t{XENT_F32}, int32_t{XENT_BF16}}) {
      for (int32_t gdt : {int32_t{XENT_F32}, dt}) {
        for (bool in_place : {false, true}) {
          if (in_place && gdt != dt) continue;
          if (SkipRowsCase(B, V, dt == XENT_F32 && in_place)) continue;
          for (int variant = 0; variant < 4; ++variant) {
            const bool weighted = variant % 2 == 1;
            const float eps = variant >= 2 ? 0.1f : 0.0f;
            SCOPED_TRACE("V=" + std::to_string(V) + " dtype=" + std::to_string(dt) + " grad=" + std::to_string(gdt) +
                         (in_place ? " in place" : "") + (weighted ? " weighted" : "") +
                         (eps > 0.0f ? " smoothing" : ""));
            const size_t es = dt == XENT_F32 ? 4 : 2, gs = gdt == XENT_F32 ? 4 : 2;
            Aligned x(B * V, es), g(B * V, gs), one_x(V, es), one_g(V, gs);
            uint64_t r = V * 31 + static_cast<uint64_t>(dt * 7 + gdt);
            for (size_t i = 0; i < B * V; ++i) {
              r = r * 6364136223846793005ull + 1442695040888963407ull;
              const float v = static_cast<float>(static_cast<int64_t>(r >> 40) % 8000) / 1000.0f;
              uint32_t bits;
              std::memcpy(&bits, &v, 4);
              if (es == 4) {
                std::memcpy(x.get() + i * 4, &bits, 4);
              } else {
                const uint16_t h = static_cast<uint16_t>(bits >> 16);
                std::memcpy(x.get() + i * 2, &h, 2);
              }
            }
            std::vector<int64_t> y(B);
            for (size_t i = 0; i < B; ++i) y[i] = static_cast<int64_t>((i * 7919) % V);
            y[5] = -100;
            std::vector<float> w(V);
            for (size_t c = 0; c < V; ++c) w[c] = 0.5f + static_cast<float>(c % 7) / 4.0f;
            std::vector<float> loss(B), lse(B), one_loss(1), one_lse(1);
            std::vector<unsigned char> x0(x.get(), x.get() + B * V * es);

            auto run = [&](size_t rows, const void* lx, const int64_t* ly, float* rl, float* ls, void* gr) {
              xent_cross_entropy_args a;
              XENT_ARGS_INIT(xent_cross_entropy_args, &a);
              a.batch = rows;
              a.num_classes = V;
              a.logits = lx;
              a.logits_dtype = dt;
              a.target = ly;
              a.weight = weighted ? w.data() : nullptr;
              a.label_smoothing = eps;
              a.reduction = XENT_REDUCTION_NONE;
              a.row_loss = rl;
              a.lse = ls;
              a.grad = gr;
              a.grad_dtype = gdt;
              a.num_threads = 1;
              return xent_cross_entropy(&a);
            };
            ASSERT_EQ(run(B, x.get(), y.data(), loss.data(), lse.data(), in_place ? x.get() : g.get()), XENT_OK)
                << xent_last_error();
            const unsigned char* all_g = in_place ? x.get() : g.get();
            for (size_t i = 0; i < B; ++i) {
              std::memcpy(one_x.get(), x0.data() + i * V * es, V * es);
              ASSERT_EQ(
                  run(1, one_x.get(), &y[i], one_loss.data(), one_lse.data(), in_place ? one_x.get() : one_g.get()),
                  XENT_OK)
                  << xent_last_error();
              EXPECT_EQ(std::memcmp(&loss[i], one_loss.data(), 4), 0) << "row_loss of row " << i;
              EXPECT_EQ(std::memcmp(&lse[i], one_lse.data(), 4), 0) << "lse of row " << i;
              const unsigned char* got = in_place ? one_x.get() : one_g.get();
              EXPECT_EQ(std::memcmp(all_g + i * V * gs, got, V * gs), 0) << "gradient of row " << i;
            }
          }
        }
      }
    }
  }
}

XENT_INSTANTIATE_ALL_TARGETS(CeTest);

}  // namespace
}  // namespace xent_test
