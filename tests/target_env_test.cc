// XENT_TARGET: run by meson with the variable set (see tests/meson.build).
// EXPECT_TARGET names the target that must be active, or "bad" when the
// variable names no usable target: then every operation fails with
// XENT_ERROR_UNSUPPORTED_TARGET naming the variable, until
// xent_force_target() chooses one.
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "xent/xent.h"

namespace {

xent_status SmallCall() {
  std::vector<float> x(2 * 5, 0.0f);
  std::vector<int64_t> y = {1, 2};
  float loss = 0;
  xent_cross_entropy_args a;
  XENT_ARGS_INIT(xent_cross_entropy_args, &a);
  a.batch = 2;
  a.num_classes = 5;
  a.logits = x.data();
  a.target = y.data();
  a.loss = &loss;
  return xent_cross_entropy(&a);
}

TEST(TargetEnv, Honoured) {
  const char* expect = std::getenv("EXPECT_TARGET");
  ASSERT_NE(expect, nullptr);
  if (std::string(expect) == "bad") {
    EXPECT_EQ(SmallCall(), XENT_ERROR_UNSUPPORTED_TARGET);
    const std::string msg = xent_last_error();
    EXPECT_NE(msg.find("XENT_TARGET="), std::string::npos) << msg;
    EXPECT_NE(msg.find("supported:"), std::string::npos) << msg;
    ASSERT_EQ(xent_force_target("auto"), XENT_OK);
    EXPECT_EQ(SmallCall(), XENT_OK) << xent_last_error();
  } else {
    EXPECT_STREQ(xent_active_target(), expect);
    EXPECT_EQ(SmallCall(), XENT_OK) << xent_last_error();
  }
}

}  // namespace
