// The shared scaffolding itself (tests/common): that its checks can fail.
// Buffers see writes outside rows and unwritten outputs; the tolerance model
// rejects what the contract rejects; case builders fill every field of every
// args struct as the operation table says; the comparison finds a corrupted
// output.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tests/common/gtest_util.h"
#include "tests/common/pool.h"

namespace xent_test {
namespace {

TEST(Buffer, GuardsPaddingAndUnwrittenElements) {
  for (Guard g : {Guard::kCanary, Guard::kExact}) {
    for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
      Buffer out(Layout{3, 5, 7, t, 3}, g, Content::kOutput);
      out.Seal();
      EXPECT_EQ(out.Unwritten(), 15u);
      EXPECT_TRUE(std::isnan(out.Get(1, 1)));  // an unwritten output reads as NaN
      for (size_t r = 0; r < 3; ++r)
        for (size_t c = 0; c < 5; ++c) out.Set(r, c, 0.25);
      EXPECT_EQ(out.Unwritten(), 0u);
      EXPECT_TRUE(out.OutsideRowsUnchanged());
      out.SetBits(0, 5, 0);  // the padding after row 0
      EXPECT_FALSE(out.OutsideRowsUnchanged());
      Buffer in(Layout{2, 4, 6, t, 1}, g, Content::kInput);
      EXPECT_TRUE(std::isnan(in.Get(0, 4)));  // input padding is NaN
      in.Seal();
      const auto snap = in.Snapshot();
      in.Set(1, 3, 2.0);
      EXPECT_FALSE(in.SameAs(snap));
      in.Restore(snap);
      EXPECT_TRUE(in.SameAs(snap));
    }
  }
  // The canary zones before and after the rows.
  Buffer b(Layout{2, 3, 3, DType::kF32, 0}, Guard::kCanary, Content::kOutput);
  b.Seal();
  static_cast<unsigned char*>(b.data())[-1] ^= 1;
  EXPECT_FALSE(b.OutsideRowsUnchanged());
  static_cast<unsigned char*>(b.data())[-1] ^= 1;
  static_cast<unsigned char*>(b.data())[b.span()] ^= 1;
  EXPECT_FALSE(b.OutsideRowsUnchanged());
  // Values round to the dtype; indices keep their width.
  Buffer h(Layout{1, 1, 1, DType::kBF16, 0}, Guard::kCanary, Content::kInput);
  EXPECT_EQ(h.Set(0, 0, 1.0 + 1.0 / 512), 1.0);
  Buffer i32(Layout{2, 1, 3, DType::kI32, 2}, Guard::kExact, Content::kInput);
  i32.SetIndex(1, -7);
  EXPECT_EQ(i32.GetIndex(1), -7);
  EXPECT_EQ(xent::LoadIndex(i32.data(), 3, DType::kI32), -7);
}

TEST(Tolerance, TheContractsBounds) {
  EXPECT_EQ(Ulp(1.0, DType::kF32), std::ldexp(1.0, -23));
  EXPECT_EQ(Ulp(1.5, DType::kBF16), std::ldexp(1.0, -7));
  EXPECT_EQ(Ulp(0.0, DType::kF16), std::ldexp(1.0, -24));  // f16 subnormal spacing
  EXPECT_EQ(RoundTo(1.0 + 1.0 / 1024, DType::kBF16), 1.0);
  const Tol t{2e-6, 1e-6};
  EXPECT_TRUE(Agree(1.0 + 2.9e-6, 1.0, t, DType::kF32, Profile::kContract));
  EXPECT_FALSE(Agree(1.0 + 3.1e-6, 1.0, t, DType::kF32, Profile::kContract));
  // 16-bit: one ulp of the rounded result plus the absolute part.
  EXPECT_TRUE(Agree(1.0 + 1.0 / 128, 1.0, Tol{0, 1e-7}, DType::kBF16, Profile::kContract));
  EXPECT_FALSE(Agree(1.0 + 2.0 / 128, 1.0, Tol{0, 1e-7}, DType::kBF16, Profile::kContract));
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(Agree(nan, nan, t, DType::kF32, Profile::kContract));
  EXPECT_FALSE(Agree(0.0, nan, t, DType::kF32, Profile::kContract));
  EXPECT_FALSE(Agree(nan, 0.0, t, DType::kF32, Profile::kContract));
  EXPECT_FALSE(Agree(-inf, inf, t, DType::kF32, Profile::kContract));
  EXPECT_FALSE(Agree(inf, 3.3e38, t, DType::kF32, Profile::kContract));
  EXPECT_TRUE(Agree(inf, 3.39e38, t, DType::kF32, Profile::kFuzz));  // the edge of f32's range
  EXPECT_FALSE(Agree(-inf, 3.39e38, t, DType::kF32, Profile::kFuzz));
  EXPECT_TRUE(Close(inf, inf, 0));
  EXPECT_FALSE(Close(1.0, inf, 1e300));
}

// Every field of every args struct holds what the table says the case has.
TEST(Case, FillsEveryFieldThroughTheTable) {
  for (const abi::OpDesc* op : abi::kAllOps) {
    CaseSpec s(*op, 3, 11);
    s.offset = 2;
    s.pad = 1;
    for (size_t i = 0; i < op->num_fields; ++i) {
      const abi::Field& f = op->fields[i];
      if (f.role == abi::Role::kOutMat || f.role == abi::Role::kOutVec || f.role == abi::Role::kInVec ||
          f.role == abi::Role::kLabels)
        s.With(f.name);
      if (f.role == abi::Role::kNumThreads) s.Set(f.name, 1);
    }
    const Case c(s);
    SCOPED_TRACE(c.Describe());
    size_t size;
    std::memcpy(&size, c.args(), sizeof size);
    EXPECT_EQ(size, op->args_size);
    for (size_t i = 0; i < op->num_fields; ++i) {
      const abi::Field& f = op->fields[i];
      const Buffer* b = c.buf(f.name);
      if (b == nullptr) continue;
      EXPECT_EQ(c.Pointer(f.name), b->data()) << f.name;
      if (f.stride_off != abi::kNone) {
        EXPECT_EQ(c.StrideArg(f.name), b->stride()) << f.name;
      }
      if (b->cols() == 11 && f.role != abi::Role::kInVec && f.role != abi::Role::kOutVec && !IsIndex(b->dtype()) &&
          f.rule != abi::DTypeRule::kF32) {
        EXPECT_EQ(reinterpret_cast<uintptr_t>(b->data()) % 64, 2u) << f.name;
      }
    }
    EXPECT_EQ(c.I32("num_threads"), 1);
    Case run(s);
    EXPECT_EQ(run.Run(), XENT_OK) << xent_last_error();
  }
}

// A corrupted output element, an output element left unwritten, a write into
// the padding and a modified input are each reported.
TEST(Case, ChecksFindWhatIsWrong) {
  CaseSpec s(abi::kSoftmax, 2, 9);
  s.With("probs").With("lse");
  s.pad = 2;
  {
    Case c(s);
    ASSERT_EQ(c.Run(), XENT_OK);
    std::vector<std::string> p;
    c.CheckWritten(&p);
    c.Compare(c.Reference(Profile::kContract), Profile::kContract, &p);
    EXPECT_TRUE(p.empty()) << p.front();
    c.buf("probs")->Set(1, 4, c.buf("probs")->Get(1, 4) * (1 + 1e-4));
    c.Compare(c.Reference(Profile::kContract), Profile::kContract, &p);
    ASSERT_EQ(p.size(), 1u);
    EXPECT_NE(p[0].find("probs[1][4]"), std::string::npos) << p[0];
  }
  {
    Case c(s);
    ASSERT_EQ(c.Run(), XENT_OK);
    c.buf("probs")->SetBits(0, 3, UnwrittenBits(DType::kF32));
    c.buf("probs")->SetBits(0, 9, 0);  // padding
    c.buf("logits")->Set(1, 1, 3.0);
    std::vector<std::string> p;
    c.CheckWritten(&p);
    ASSERT_EQ(p.size(), 3u);
    EXPECT_NE(p[0].find("input logits was modified"), std::string::npos) << p[0];
    EXPECT_NE(p[1].find("probs written outside its rows"), std::string::npos) << p[1];
    EXPECT_NE(p[2].find("probs: 1 elements not written"), std::string::npos) << p[2];
  }
}

TEST(HostPool, Behaviors) {
  std::vector<int> hits(10);
  auto task = [](void* ctx, size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) ++static_cast<int*>(ctx)[i];
  };
  for (PoolMode m : {PoolMode::kInOrder, PoolMode::kReverse, PoolMode::kThreads, PoolMode::kShuffled}) {
    HostPool p;
    p.mode = m;
    p.pieces = 3;
    std::fill(hits.begin(), hits.end(), 0);
    EXPECT_EQ(HostPool::ParallelFor(&p, 10, task, hits.data(), 2), 0);
    for (int h : hits) EXPECT_EQ(h, 1) << static_cast<int>(m);
    EXPECT_FALSE(p.Misbehaved());
  }
  HostPool f;
  f.mode = PoolMode::kSkipLast;
  std::fill(hits.begin(), hits.end(), 0);
  HostPool::ParallelFor(&f, 10, task, hits.data(), 2);
  EXPECT_EQ(hits[9], 0);
  EXPECT_TRUE(f.Misbehaved());
}

}  // namespace
}  // namespace xent_test
