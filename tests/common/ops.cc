// The registry of every operation's hooks. Operations are matched by name:
// the table's OpDesc constants are constexpr at namespace scope, so every
// translation unit has its own copy (no pointer identity across files).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tests/common/case.h"

namespace xent_test {

const OpHooks& CrossEntropyHooks();
const OpHooks& BceHooks();
const OpHooks& DivergenceHooks();
const OpHooks& SoftmaxHooks();
const OpHooks& SoftmaxBackwardHooks();
const OpHooks& TokenLogprobsHooks();
const OpHooks& TokenLogprobsBackwardHooks();
const OpHooks& KlPenaltyHooks();

const OpHooks& HooksOf(const abi::OpDesc& op) {
  static const OpHooks* const all[] = {&CrossEntropyHooks(),
                                       &BceHooks(),
                                       &DivergenceHooks(),
                                       &SoftmaxHooks(),
                                       &SoftmaxBackwardHooks(),
                                       &TokenLogprobsHooks(),
                                       &TokenLogprobsBackwardHooks(),
                                       &KlPenaltyHooks()};
  for (const OpHooks* h : all)
    if (std::strcmp(h->op->name, op.name) == 0) return *h;
  std::fprintf(stderr, "tests/common: no hooks for operation %s (add tests/common/op_*.cc)\n", op.name);
  std::abort();
}

}  // namespace xent_test
