// KL divergence and generalized JSD against the float64 reference, on every
// SIMD target; the reference's analytic gradients are themselves checked
// against finite differences of its loss.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tests/common/gtest_util.h"
#include "tests/common/mat.h"
#include "tests/reference.h"

namespace xent_test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Input of kind qk, target of kind pk (logits sigma 2; probabilities with
// exact zeros), loss, row_loss, elem_loss and both gradients in `gdt`.
CaseSpec Kl(size_t B, size_t V, int qk, int pk, uint32_t seed, DType dt = DType::kF32, DType gdt = DType::kF32) {
  CaseSpec s(abi::kDivergence, B, V);
  s.With("input", dt).Set("input_kind", qk).Set("target_kind", pk).Set("reduction", XENT_REDUCTION_BATCHMEAN);
  s.With("loss").With("row_loss").With("elem_loss").With("grad_input", gdt).With("grad_target", gdt);
  s.sigma = 2;
  s.seed = seed;
  return s;
}
CaseSpec& Jsd(CaseSpec& s, double beta) { return s.Set("divergence", XENT_DIVERGENCE_JSD).Set("beta", beta); }
// Labels: class i % V, every third row (from row 1) ignored.
CaseSpec& Labels(CaseSpec& s, bool i32 = false) {
  s.With("labels", i32 ? DType::kI32 : DType::kI64).ignore_every = 3;
  return s;
}

// The reference's gradients agree with central differences of its loss.
TEST(KlReference, GradientsMatchFiniteDifferences) {
  for (int qk = 0; qk < 3; ++qk) {
    for (int pk = 0; pk < 3; ++pk) {
      for (double beta : {-1.0, 0.0, 0.3, 1.0}) {
        CaseSpec values(abi::kDivergence, 1, 6);
        values.Set("input_kind", qk).Set("target_kind", pk).zero_fraction = 0;
        values.sigma = 2;
        values.seed = 11;
        const Case c(values);
        xent_ref::KlSpec s;
        s.B = 1;
        s.V = 6;
        s.qk = qk;
        s.pk = pk;
        s.jsd = beta >= 0;
        s.beta = beta < 0 ? 0.5 : beta;
        s.temperature = 1.7;
        s.reduction = 2;
        s.x = c.Values("input");
        s.t = c.Values("target");
        const auto r = xent_ref::Divergence(s);
        for (size_t j = 0; j < 6; ++j) {
          const double h = 1e-6;
          auto xp = s.x, xm = s.x, tp = s.t, tm = s.t;
          xp[j] += h;
          xm[j] -= h;
          tp[j] += h;
          tm[j] -= h;
          const double dx = (xent_ref::DivergenceRowLoss(s, xp.data(), s.t.data()) -
                             xent_ref::DivergenceRowLoss(s, xm.data(), s.t.data())) /
                            (2 * h);
          const double dt = (xent_ref::DivergenceRowLoss(s, s.x.data(), tp.data()) -
                             xent_ref::DivergenceRowLoss(s, s.x.data(), tm.data())) /
                            (2 * h);
          EXPECT_NEAR(r.gx[j], dx, 1e-5 * (1 + std::fabs(dx))) << qk << pk << beta << " j=" << j;
          EXPECT_NEAR(r.gt[j], dt, 1e-5 * (1 + std::fabs(dt))) << qk << pk << beta << " j=" << j;
        }
      }
    }
  }
}

class KlTest : public AllTargets {};

TEST_P(KlTest, KindsModes) {
  for (int qk = 0; qk < 3; ++qk) {
    for (int pk = 0; pk < 3; ++pk) {
      for (int m = 0; m < 5; ++m) {  // KL, JSD 0, 0.3, 0.5, 1
        CaseSpec s = Kl(5, (m % 2) ? 300 : 17, qk, pk, static_cast<uint32_t>(qk * 100 + pk * 10 + m));
        if (m > 0) Jsd(s, m == 1 ? 0.0 : (m == 2 ? 0.3 : (m == 3 ? 0.5 : 1.0)));
        ExpectCase(s.Set("temperature", (qk == 0 || pk == 0) ? 2.0 : 1.0));
      }
    }
  }
}

TEST_P(KlTest, SizesDtypesReductions) {
  for (size_t V : {1, 2, 16, 17, 1000, 4097, 32003}) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      const uint32_t seed = static_cast<uint32_t>(V + 13 * static_cast<int>(dt));
      CaseSpec s = Kl(V > 5000 ? 2 : 5, V, 0, 0, seed, dt, (V % 2) ? dt : DType::kF32);
      s.Set("reduction", static_cast<double>(V % 4));
      if (V > 2) Labels(s, V % 3 == 0);
      ExpectCase(s);
      ExpectCase(s.Set("input_kind", XENT_DIST_LOG_PROBS).Set("target_kind", XENT_DIST_PROBS).Without("grad_target"));
    }
  }
}

TEST_P(KlTest, DistillationOptions) {
  for (float T : {1.0f, 2.0f, 4.0f}) {
    for (bool t2 : {false, true}) {
      CaseSpec s = Kl(3, 5000, 0, 0, 1);
      s.Set("temperature", T).Set("t2_scaling", t2).Set("grad_scale", 0.5).Without("grad_target");
      if (t2) Labels(s);  // ignored rows mixed with the fast path
      s.pad = 5;
      s.offset = 2;
      ExpectCase(s);
      ExpectCase(s.InPlace("grad_input").Without("elem_loss"));
    }
  }
}

TEST_P(KlTest, DistillationBf16) {
  CaseSpec s = Kl(4, 5000, 0, 0, 1, DType::kBF16, DType::kBF16);
  Labels(s.Without("grad_target"));
  ExpectCase(s);
  ExpectCase(s.With("grad_input", DType::kF32).Set("temperature", 2));
}

TEST_P(KlTest, LargeVocab) { ExpectCase(Kl(2, 262144, 0, 0, 1).Without("grad_target").Without("elem_loss")); }

// Masked classes: zero teacher probabilities and -inf logits on both sides.
TEST_P(KlTest, ZeroProbabilitiesAndMaskedLogits) {
  const double xv[2][8] = {{0.1, -kInf, 2.0, 0.3, -kInf, 1.0, 0.0, -1.0}, {1, 2, 3, 4, 5, 6, 7, 8}};
  const double tv[2][8] = {{1.0, -kInf, 0.5, -kInf, 2.0, 1.0, -kInf, 0.0}, {8, 7, 6, 5, 4, 3, 2, 1}};
  CaseSpec s(abi::kDivergence, 2, 8);
  s.Set("input_kind", XENT_DIST_LOGITS).Set("target_kind", XENT_DIST_LOGITS).Set("reduction", XENT_REDUCTION_SUM);
  s.With("row_loss").With("grad_input");
  s.edit = [&](const std::string& f, size_t i, size_t j, double) { return f == "input" ? xv[i][j] : tv[i][j]; };
  Case c(s);
  ASSERT_EQ(c.Run(), XENT_OK) << xent_last_error();
  std::vector<std::string> problems;
  c.CheckWritten(&problems);
  ExpectNoProblems(problems, c.Describe());
  // Row 0: the teacher puts mass on class 4 where the student is -inf: KL = +inf.
  EXPECT_EQ(c.buf("row_loss")->Get(0), kInf);
  // Where both are -inf (class 1): 0 log 0 = 0, gradient 0.
  EXPECT_EQ(c.buf("grad_input")->Get(0, 1), 0.0);
  EXPECT_TRUE(std::isfinite(c.buf("row_loss")->Get(1)));
  for (size_t j = 0; j < 8; ++j) EXPECT_TRUE(std::isfinite(c.buf("grad_input")->Get(1, j)));
}

// A denormal beta: beta p underflows in f32 where p > 0; with q = 0 there the
// mixture is 0 and the term must be 0 (not 0 * inf), as must the gradients.
TEST_P(KlTest, JsdDenormalBeta) {
  for (int qk : {1, 2}) {
    for (int pk : {0, 2}) {
      CaseSpec s = Kl(5, 300, qk, pk, static_cast<uint32_t>(qk * 10 + pk));
      ExpectCase(Jsd(s, 1e-40));
      ExpectCase(Jsd(s, 1.0 - 6e-8));  // 1 - beta rounds near the bottom of f32's spacing
    }
  }
}

// Sides close to their mixture: beta near 0 or 1, or a high temperature's
// near-uniform rows, where log p - log m cancels in f32 unless formed from
// log q - log p (fuzzfast's first finding: beta = 1 - 6e-8, T = 100, t2
// scaling, bf16 logits, V = 4097 gave a row loss of -0.17 for 0.011).
TEST_P(KlTest, JsdSidesNearTheMixture) {
  for (double beta : {1.0 - 6e-8, 6e-8}) {
    for (DType dt : {DType::kBF16, DType::kF32}) {
      for (int kind = 0; kind < 3; ++kind) {  // both sides logits, log-probabilities, probabilities
        CaseSpec s = Kl(2, 4097, kind, kind, static_cast<uint32_t>(kind + 7), dt, dt);
        ExpectCase(Jsd(s, beta).Set("temperature", 100.0).Set("t2_scaling", true));
      }
    }
  }
}

// JSD of two logit batches with each set of gradients (the output pass reads
// the terms its middle pass left in the scratch rows: the other side's row
// for one gradient, both rows with the exps taken again for two), rows of
// one and several segments with a partial last vector, ignored rows, a
// temperature, bf16 logits and gradients.
TEST_P(KlTest, JsdGradientSets) {
  for (size_t V : {300, 4099, 40007}) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      for (int set = 0; set < 3; ++set) {  // student's, teacher's, both
        SCOPED_TRACE("V=" + std::to_string(V) + " set=" + std::to_string(set));
        CaseSpec s = Kl(V > 5000 ? 2 : 5, V, 0, 0, static_cast<uint32_t>(V + set), dt, dt);
        Jsd(s, 0.3).Set("temperature", 1.5);
        if (set == 0) s.Without("grad_target");
        if (set == 1) s.Without("grad_input");
        if (V != 40007) Labels(s);
        ExpectCase(s);
        if (set < 2) ExpectCase(s.Without("elem_loss").Set("beta", 0.5));
      }
    }
  }
}

// NaN on either side makes the row NaN, also where the other side's zero
// probability would mask the term; other rows are untouched by it.
TEST_P(KlTest, NaNPropagates) {
  const size_t B = 3, V = 7;
  for (int qk = 0; qk < 3; ++qk) {
    for (int pk = 0; pk < 3; ++pk) {
      for (int mode = 0; mode < 3; ++mode) {  // KL with grad_target, KL without (fast path for logits), JSD
        SCOPED_TRACE("qk=" + std::to_string(qk) + " pk=" + std::to_string(pk) + " mode=" + std::to_string(mode));
        CaseSpec s = Kl(B, V, qk, pk, 7);
        s.Set("reduction", XENT_REDUCTION_MEAN).Stride("input", V).Stride("target", V).zero_fraction = 0;
        if (mode == 2) Jsd(s, 0.5);
        if (mode == 1) s.Without("grad_target");
        const double zero_q = qk == 2 ? 0.0 : -kInf, zero_p = pk == 2 ? 0.0 : -kInf;  // probability 0
        s.edit = [&](const std::string& f, size_t i, size_t j, double v) {
          if (f == "input" && i == 0 && j == 3) return kNaN;  // row 0: NaN input where the target is 0
          if (f == "target" && i == 0 && j == 3) return zero_p;
          if (f == "target" && i == 1 && j == 2) return kNaN;  // row 1: NaN target where the input is 0
          if (f == "input" && i == 1 && j == 2) return zero_q;
          return v;
        };
        Case c(s);
        ASSERT_EQ(c.Run(), XENT_OK) << xent_last_error();
        const Buffer &elem = *c.buf("elem_loss"), &row = *c.buf("row_loss");
        // The NaN elements themselves, where the other side's 0 would mask.
        EXPECT_TRUE(std::isnan(elem.Get(0, 3))) << elem.Get(0, 3);
        EXPECT_TRUE(std::isnan(elem.Get(1, 2))) << elem.Get(1, 2);
        EXPECT_TRUE(std::isnan(row.Get(0))) << row.Get(0);
        EXPECT_TRUE(std::isnan(row.Get(1))) << row.Get(1);
        EXPECT_TRUE(std::isfinite(row.Get(2))) << row.Get(2);
        EXPECT_TRUE(std::isnan(c.buf("loss")->Get(0)));
        for (size_t j = 0; j < V; ++j) {
          EXPECT_TRUE(std::isfinite(c.buf("grad_input")->Get(2, j)) && std::isfinite(elem.Get(2, j))) << j;
          if (mode != 1) {
            EXPECT_TRUE(std::isfinite(c.buf("grad_target")->Get(2, j))) << j;
          }
        }
      }
    }
  }
}

// The rows of one call give the bits of each row computed alone. The engine
// runs a row's distillation pass (student and teacher logits, forward KL,
// the student's gradient) and the next row's statistics in one walk when it
// can (src/engine.h, FusedRows; 1 thread too); a row alone never does. Rows
// of aligned and misaligned starts, 16-bit gradients, in place, temperature,
// an ignored row, a masked teacher logit and a NaN row (the _streaming run of
// this suite covers the non-temporal stores).
TEST_P(KlTest, RowsTogetherMatchRowsAlone) {
  const size_t B = 21;
  for (size_t V : {1024, 5003, 12288, 70001}) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      for (DType gdt : {DType::kF32, dt}) {
        for (bool in_place : {false, true}) {
          if (in_place && gdt != dt) continue;
          if (SkipRowsCase(B, V, dt == DType::kF32 && in_place)) continue;
          for (float temperature : {1.0f, 2.0f}) {
            SCOPED_TRACE("V=" + std::to_string(V) + " dtype=" + std::to_string(static_cast<int>(dt)) +
                         " grad=" + std::to_string(static_cast<int>(gdt)) + (in_place ? " in place" : "") +
                         " T=" + std::to_string(temperature));
            Mat x(B, V, dt), t(B, V, dt), g(B, V, gdt), one_x(1, V, dt), one_t(1, V, dt), one_g(1, V, gdt);
            const std::vector<float> xv = RandomNormal(B * V, 2.0, static_cast<uint32_t>(V) + 1);
            const std::vector<float> tv = RandomNormal(B * V, 2.0, static_cast<uint32_t>(V) + 2);
            for (size_t i = 0; i < B; ++i) {
              for (size_t c = 0; c < V; ++c) {
                x.set(i, c, xv[i * V + c]);
                t.set(i, c, tv[i * V + c]);
              }
            }
            for (size_t c = 0; c < V; c += 3) t.set(8, c, -std::numeric_limits<double>::infinity());
            x.set(11, V / 2, std::numeric_limits<double>::quiet_NaN());
            std::vector<int64_t> labels(B, 0);
            labels[5] = -100;
            const size_t es = xent::DTypeSize(dt), gs = xent::DTypeSize(gdt);
            const Mat x0 = x;
            std::vector<float> loss(B), one_loss(1);
            auto run = [&](size_t rows, const void* lx, const void* lt, const int64_t* ly, float* rl, void* gr) {
              xent_divergence_args a;
              XENT_ARGS_INIT(xent_divergence_args, &a);
              a.batch = rows;
              a.num_classes = V;
              a.input = lx;
              a.input_dtype = static_cast<int32_t>(dt);
              a.input_kind = XENT_DIST_LOGITS;
              a.target = lt;
              a.target_dtype = static_cast<int32_t>(dt);
              a.target_kind = XENT_DIST_LOGITS;
              a.temperature = temperature;
              a.labels = ly;
              a.reduction = XENT_REDUCTION_NONE;
              a.row_loss = rl;
              a.grad_input = gr;
              a.grad_input_dtype = static_cast<int32_t>(gdt);
              a.num_threads = 1;
              return xent_divergence(&a);
            };
            ASSERT_EQ(run(B, x.data(), t.data(), labels.data(), loss.data(), in_place ? x.data() : g.data()), XENT_OK)
                << xent_last_error();
            const auto* all_g = static_cast<const unsigned char*>(in_place ? x.data() : g.data());
            for (size_t i = 0; i < B; ++i) {
              std::memcpy(one_x.data(), static_cast<const unsigned char*>(x0.data()) + i * V * es, V * es);
              std::memcpy(one_t.data(), static_cast<const unsigned char*>(t.data()) + i * V * es, V * es);
              ASSERT_EQ(run(1, one_x.data(), one_t.data(), &labels[i], one_loss.data(),
                            in_place ? one_x.data() : one_g.data()),
                        XENT_OK)
                  << xent_last_error();
              EXPECT_EQ(std::memcmp(&loss[i], one_loss.data(), 4), 0) << "row_loss of row " << i;
              const void* got = in_place ? one_x.data() : one_g.data();
              EXPECT_EQ(std::memcmp(all_g + i * V * gs, got, V * gs), 0) << "gradient of row " << i;
            }
            EXPECT_TRUE(std::isnan(loss[11]));
            EXPECT_EQ(loss[5], 0.0f);
          }
        }
      }
    }
  }
}

XENT_INSTANTIATE_ALL_TARGETS(KlTest);

}  // namespace
}  // namespace xent_test
