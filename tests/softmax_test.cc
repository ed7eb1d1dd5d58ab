// Softmax family, token log-probs and softmax backward against the float64
// reference, on every SIMD target.
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

// Outputs selected by a mask: 1 probs, 2 log_probs, 4 lse, 8 entropy (B x V
// outputs in `out`).
CaseSpec Softmax(size_t B, size_t V, DType dt, DType out, int mask = 15, uint32_t seed = 1) {
  CaseSpec s(abi::kSoftmax, B, V);
  s.With("logits", dt);
  if (mask & 1) s.With("probs", out);
  if (mask & 2) s.With("log_probs", out);
  if (mask & 4) s.With("lse");
  if (mask & 8) s.With("entropy");
  s.seed = seed;
  return s;
}

class SoftmaxTest : public AllTargets {};

TEST_P(SoftmaxTest, SizesDtypes) {
  for (size_t V : {1, 2, 15, 16, 17, 255, 256, 257, 1000, 4096, 4097, 32003}) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      const uint32_t seed = static_cast<uint32_t>(V + 10 * static_cast<int>(dt));
      ExpectCase(Softmax(V > 5000 ? 2 : 5, V, dt, DType::kF32, 15, seed));
      ExpectCase(Softmax(V > 5000 ? 2 : 5, V, dt, dt, 15, seed));
    }
  }
}

TEST_P(SoftmaxTest, LargeVocab) { ExpectCase(Softmax(2, 262144, DType::kF32, DType::kF32, 13)); }

TEST_P(SoftmaxTest, SubsetsInPlaceTemperatureStrides) {
  for (int mask = 1; mask < 16; ++mask) ExpectCase(Softmax(4, 300, DType::kF32, DType::kF32, mask, mask));
  for (const char* inplace : {"probs", "log_probs"}) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      CaseSpec s = Softmax(4, 5000, dt, dt, 12);
      s.InPlace(inplace)[inplace].dtype = dt;
      s.pad = 7;
      s.offset = 2;
      ExpectCase(s);
      // One output in place, the other in its own buffer.
      CaseSpec both = Softmax(4, dt == DType::kF32 ? 2 : 300, dt, dt);
      both.InPlace(inplace);
      both.pad = 7;
      both.offset = 2;
      ExpectCase(both);
    }
  }
  for (float t : {0.5f, 2.0f, 7.0f}) {
    CaseSpec s = Softmax(4, 1000, DType::kF32, DType::kF32);
    s.Set("temperature", t);
    s.offset = 1;
    s.pad = 3;
    ExpectCase(s);
  }
}

TEST_P(SoftmaxTest, EdgeValues) {
  for (size_t V : {7, 5000}) {
    CaseSpec s = Softmax(5, V, DType::kF32, DType::kF32);
    s.edit = [](const std::string&, size_t i, size_t j, double v) {
      if (i == 0 && j % 3 != 0) return -kInf;
      if (i == 1) return -kInf;
      if (i == 2 && j < 4500) return -kInf;  // whole leading segment masked
      if (i == 3) return (j % 2) ? 1e30 : -1e30;
      return v;
    };
    ExpectCase(s);
  }
}

// A chunk whose max exceeds the running max by ~1e38: the entropy's rescale
// shift * sum must not overflow into 0 * inf = NaN (found by the fuzzer).
TEST_P(SoftmaxTest, EntropyAfterHugeMaxJump) {
  for (double big : {3e38, 1e30, 1e4}) {
    CaseSpec s = Softmax(1, 700, DType::kF32, DType::kF32, 12);
    s.edit = [big](const std::string&, size_t, size_t j, double) { return j == 600 ? big : std::cos(double(j)); };
    Case c(s);  // the big value in the third chunk
    ExpectRun(c);
    const auto want = xent_ref::Softmax(c.Values("logits"), 1, 700, 1.0);
    EXPECT_TRUE(Close(c.buf("entropy")->Get(0), want.entropy[0], 1e-6 + 2e-6 * std::fabs(want.entropy[0])))
        << "big=" << big << " entropy " << c.buf("entropy")->Get(0) << " want " << want.entropy[0];
  }
}

TEST_P(SoftmaxTest, NanPropagates) {
  CaseSpec s = Softmax(2, 300, DType::kF32, DType::kF32);
  s.edit = [](const std::string&, size_t i, size_t j, double) {
    if (i == 0 && j == 123) return kNaN;
    return i == 0 ? std::cos(double(j)) : std::sin(double(j));
  };
  Case c(s);
  ExpectRun(c);
  EXPECT_TRUE(std::isnan(c.buf("lse")->Get(0)) && std::isnan(c.buf("entropy")->Get(0)));
  EXPECT_TRUE(std::isfinite(c.buf("lse")->Get(1)) && std::isfinite(c.buf("entropy")->Get(1)));
  for (size_t j = 0; j < 300; ++j) {
    EXPECT_TRUE(std::isnan(c.buf("probs")->Get(0, j)) && std::isnan(c.buf("log_probs")->Get(0, j)));
    EXPECT_TRUE(std::isfinite(c.buf("probs")->Get(1, j)));
  }
}

// ---------------------------------------------------------------------------
// logprob (and entropy, lse unless told), logits sigma 4 with stride V + 1 at
// byte offset 1, every third row ignored.
CaseSpec TokenLogprobs(size_t B, size_t V, DType dt, uint32_t seed, bool entropy = true, bool lse = true) {
  CaseSpec s(abi::kTokenLogprobs, B, V);
  s.With("logits", dt).With("logprob").Offset("logits", 1);
  if (entropy) s.With("entropy");
  if (lse) s.With("lse");
  s.pad = 1;
  s.sigma = 4;
  s.seed = seed;
  return s;
}

// The rows of one call give the bits of each row computed alone. The engine
// runs a row's output phase and the next row's statistics in one walk when it
// can (src/engine.h, FusedRows: probabilities or log-probabilities, 1 thread
// too); a row alone never does. Rows of aligned and misaligned starts, bf16
// logits, 16-bit outputs, in place, a row with masked logits and a NaN row
// (the _streaming run of this suite covers the non-temporal stores).
TEST_P(SoftmaxTest, RowsTogetherMatchRowsAlone) {
  const size_t B = 21;
  for (size_t V : {1024, 5003, 12288, 70001}) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      for (DType odt : {DType::kF32, dt}) {
        for (bool log : {false, true}) {
          for (bool in_place : {false, true}) {
            if (in_place && odt != dt) continue;
            if (SkipRowsCase(B, V, dt == DType::kF32 && in_place)) continue;
            SCOPED_TRACE("V=" + std::to_string(V) + " dtype=" + std::to_string(static_cast<int>(dt)) +
                         " out=" + std::to_string(static_cast<int>(odt)) + (log ? " log_probs" : " probs") +
                         (in_place ? " in place" : ""));
            Mat x(B, V, dt), o(B, V, odt), one_x(1, V, dt), one_o(1, V, odt);
            const std::vector<float> xv = RandomNormal(B * V, 3.0, static_cast<uint32_t>(V) + 5);
            for (size_t i = 0; i < B; ++i)
              for (size_t c = 0; c < V; ++c) x.set(i, c, xv[i * V + c]);
            for (size_t c = 0; c < V; c += 2) x.set(4, c, -kInf);
            x.set(9, V / 3, kNaN);
            const Mat x0 = x;
            const size_t es = xent::DTypeSize(dt), os = xent::DTypeSize(odt);
            std::vector<float> lse(B), one_lse(1);
            auto run = [&](size_t rows, const void* lx, float* ls, void* out) {
              xent_softmax_args a;
              XENT_ARGS_INIT(xent_softmax_args, &a);
              a.batch = rows;
              a.num_classes = V;
              a.logits = lx;
              a.logits_dtype = static_cast<int32_t>(dt);
              (log ? a.log_probs : a.probs) = out;
              (log ? a.log_probs_dtype : a.probs_dtype) = static_cast<int32_t>(odt);
              a.lse = ls;
              a.num_threads = 1;
              return xent_softmax(&a);
            };
            ASSERT_EQ(run(B, x.data(), lse.data(), in_place ? x.data() : o.data()), XENT_OK) << xent_last_error();
            const auto* all = static_cast<const unsigned char*>(in_place ? x.data() : o.data());
            for (size_t i = 0; i < B; ++i) {
              std::memcpy(one_x.data(), static_cast<const unsigned char*>(x0.data()) + i * V * es, V * es);
              ASSERT_EQ(run(1, one_x.data(), one_lse.data(), in_place ? one_x.data() : one_o.data()), XENT_OK)
                  << xent_last_error();
              EXPECT_EQ(std::memcmp(&lse[i], one_lse.data(), 4), 0) << "lse of row " << i;
              const void* got = in_place ? one_x.data() : one_o.data();
              EXPECT_EQ(std::memcmp(all + i * V * os, got, V * os), 0) << "output of row " << i;
            }
            EXPECT_TRUE(std::isnan(lse[9]));
          }
        }
      }
    }
  }
}

class TokenLogprobsTest : public AllTargets {};

TEST_P(TokenLogprobsTest, Sweep) {
  for (size_t V : {1, 2, 17, 256, 1000, 4097, 32003}) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      CaseSpec s = TokenLogprobs(V > 5000 ? 3 : 6, V, dt, static_cast<uint32_t>(V * 7 + static_cast<int>(dt)));
      if (V % 2) s.With("target", DType::kI32);
      s.ignore_every = 3;
      ExpectCase(s);
    }
  }
  for (float t : {0.7f, 1.5f}) {
    for (float cap : {0.0f, 10.0f})
      ExpectCase(TokenLogprobs(6, 5000, DType::kF32, 3).Set("temperature", t).Set("softcap", cap));
  }
  ExpectCase(TokenLogprobs(6, 17, DType::kF32, 3, false, false));
}

TEST_P(TokenLogprobsTest, EntropyOnlyWithoutTarget) {
  CaseSpec s(abi::kTokenLogprobs, 3, 40);
  s.With("entropy").sigma = 2;
  s.seed = 9;
  Case c(s);
  ASSERT_EQ(c.Pointer("target"), nullptr);
  ExpectRun(c);
  const auto want = xent_ref::Softmax(c.Values("logits"), 3, 40, 1.0);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(c.buf("entropy")->Get(i), want.entropy[i], 4e-6);
}

// ---------------------------------------------------------------------------
class SoftmaxBackwardTest : public AllTargets {};

TEST_P(SoftmaxBackwardTest, Sweep) {
  for (bool log : {false, true}) {
    for (size_t V : {1, 3, 16, 17, 1000, 5000}) {
      for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
        for (int variant = 0; variant < 3; ++variant) {  // 0 f32 out, 1 same dtype (T = 2), 2 in place
          CaseSpec s(abi::kSoftmaxBackward, 4, V);
          s.With("output", dt).Offset("output", 1).Offset("grad_output", 3);
          s.Set("output_kind", log ? XENT_DIST_LOG_PROBS : XENT_DIST_PROBS).Set("temperature", variant == 1 ? 2 : 1);
          if (variant == 2)
            s.InPlace("grad_input")["grad_input"].dtype = dt;
          else
            s.With("grad_input", variant == 0 ? DType::kF32 : dt);
          s.sigma = 2;
          s.seed = static_cast<uint32_t>(V + log);
          ExpectCase(s);
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
    const size_t V = 19;
    CaseSpec s(abi::kSoftmaxBackward, 2, V);
    s.With("grad_input").Set("output_kind", log ? XENT_DIST_LOG_PROBS : XENT_DIST_PROBS);
    s.edit = [=](const std::string& f, size_t i, size_t j, double) {
      if (f == "grad_output") return 0.1 * double(j) - 1.0;
      if (i == 0 && j == 2) return kNaN;
      return log ? -std::log(double(V)) : 1.0 / V;
    };
    Case c(s);
    ExpectRun(c);
    const Buffer& gx = *c.buf("grad_input");
    EXPECT_TRUE(std::isnan(gx.Get(0, 2))) << "log=" << log;
    for (size_t j = 0; j < V; ++j) {
      EXPECT_TRUE(std::isfinite(gx.Get(1, j))) << j;
      if (log && j != 2) {
        EXPECT_TRUE(std::isfinite(gx.Get(0, j))) << j;
      } else if (!log) {
        EXPECT_TRUE(std::isnan(gx.Get(0, j))) << j;
      }
    }
  }
}

XENT_INSTANTIATE_ALL_TARGETS(SoftmaxTest);
XENT_INSTANTIATE_ALL_TARGETS(TokenLogprobsTest);
XENT_INSTANTIATE_ALL_TARGETS(SoftmaxBackwardTest);

}  // namespace
}  // namespace xent_test
