// bench_xent's operations: their byte model, the inputs (generated once per
// shape and dtype into large reused buffers), the xent call (an args struct
// built by the operation table's case builder, tests/common/case.h), the
// scalar C++ reference peer, and the cross-check of the two.
#ifndef XENT_BENCH_BENCH_OPS_H_
#define XENT_BENCH_BENCH_OPS_H_

#include <cstddef>
#include <memory>
#include <string>

#include "scalar_ref.h"
#include "xent/xent.h"

namespace xent_test {
class Case;
}  // namespace xent_test

namespace xent_bench {

enum class Op {
  kCeFwd,
  kCeFwdGrad,
  kCeFwdGradInPlace,
  kCeSoftcapFwdGrad,
  kKlFwdGrad,
  kJsdFwdGrad,
  kKlDivFwdGrad,
  kTokenLogprobs,
  kSoftmax,
  kSoftmaxBackward,
  kBceFwdGrad,
};

// Which bandwidth is the roofline of an operation.
enum BwClass { kBwRead = 0, kBwCopy = 1, kBwInPlace = 3 };

struct OpInfo {
  Op op;
  const char* name;
  int reads;   // B x V matrices read per call
  int writes;  // B x V matrices written per call
  bool inplace;
  bool in_default;
  const char* what;
};

constexpr size_t kNumOps = 11;
// ce_softcap_fwd_grad's cap (Gemma 2's final-logit softcap).
constexpr float kBenchSoftcap = 30.0f;
extern const OpInfo kOps[kNumOps];
const OpInfo& Info(Op op);
inline int BwClassOf(const OpInfo& i) { return i.writes == 0 ? kBwRead : (i.inplace ? kBwInPlace : kBwCopy); }

// A benchmark case.
struct Case {
  Op op;
  Dt dt;
  size_t B, V;
  int threads;         // 0 = all
  std::string target;  // xent: "auto" or a target name; scalar_ref: ""
  bool ref;            // the scalar C++ reference instead of xent
};

// Threads for "all" (the reference's OpenMP, when it has it).
int AllThreads();

// Generates the case's inputs unless the buffers hold them already (an
// in-place benchmark overwrote its logits: Invalidate first).
void Prepare(const Case& c);
void InvalidateLogits(Dt dt);

// A prepared xent call on the first `rows` rows (its args struct built once,
// outside any timing). The case's inputs must be prepared.
class XentCall {
 public:
  XentCall(const Case& c, size_t rows);
  ~XentCall();
  xent_status Run(float* loss_out = nullptr);

 private:
  Case c_;
  float loss_ = 0.0f;
  std::unique_ptr<xent_test::Case> call_;
};

// One call of the scalar reference on the first `rows` rows.
double CallRef(const Case& c, size_t rows, void* out_override = nullptr, float* rows_override = nullptr);

// Cross-check of xent against the scalar reference on the first `rows` rows
// (after xent's warm-up call left its outputs in place): relative error of
// the loss, and the largest output difference relative to the largest
// reference output. -1 = not applicable.
struct Check {
  double loss_rel = -1.0;
  double out_rel = -1.0;
};
Check CrossCheck(const Case& c, size_t rows, float xent_loss);

// Results go here so that nothing is optimized away.
extern float g_sink;

}  // namespace xent_bench

#endif  // XENT_BENCH_BENCH_OPS_H_
