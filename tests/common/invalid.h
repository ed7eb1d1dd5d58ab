// Invalid arguments from the operation table: for a valid case, every way to
// make it invalid that the table describes (a required pointer NULL, a short
// stride, an unknown dtype, an enum, flag, reserved field or f32 option out of
// its domain, a label out of range, an output over another buffer, no output
// where one is needed, V = 0, B x V overflowing), each with the status and the
// message fragments the C API must give. capi_test walks them all; the soak
// applies them at random.
#ifndef XENT_TESTS_COMMON_INVALID_H_
#define XENT_TESTS_COMMON_INVALID_H_

#include <functional>
#include <string>
#include <vector>

#include "tests/common/case.h"

namespace xent_test {

struct Mutation {
  std::string what;
  std::function<void(Case&)> apply;  // changes the args struct (or a label)
  xent_status want;
  std::vector<std::string> frags;  // in xent_last_error()
};

// Every mutation that makes `base` (a valid case) invalid.
std::vector<Mutation> Mutations(const Case& base);

}  // namespace xent_test

#endif  // XENT_TESTS_COMMON_INVALID_H_
