/* A tiny external program using an installed xent (see .ci/hardening.sh,
 * step "install"): built once through pkg-config and once through CMake's
 * find_package(xent), against a DESTDIR install. Prints the loaded library's
 * version and checks a softmax and a cross-entropy against values computed
 * here. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <xent/xent.h>

int main(void) {
  const float logits[2][3] = {{1.0f, 2.0f, 3.0f}, {0.5f, -1.0f, 0.0f}};
  const int64_t target[2] = {2, 0};
  float probs[2][3], loss = 0.0f;
  xent_softmax_args s;
  xent_cross_entropy_args ce;
  int i, j;
  double want = 0.0;

  if (xent_version_number() != XENT_VERSION_NUMBER || xent_abi_version() != XENT_ABI_VERSION) {
    fprintf(stderr, "header %s does not match the loaded library %s\n", XENT_VERSION_STRING, xent_version_string());
    return 1;
  }
  XENT_ARGS_INIT(xent_softmax_args, &s);
  s.batch = 2;
  s.num_classes = 3;
  s.logits = logits;
  s.probs = probs;
  if (xent_softmax(&s) != XENT_OK) {
    fprintf(stderr, "xent_softmax: %s\n", xent_last_error());
    return 1;
  }
  XENT_ARGS_INIT(xent_cross_entropy_args, &ce);
  ce.batch = 2;
  ce.num_classes = 3;
  ce.logits = logits;
  ce.target = target;
  ce.loss = &loss;
  if (xent_cross_entropy(&ce) != XENT_OK) {
    fprintf(stderr, "xent_cross_entropy: %s\n", xent_last_error());
    return 1;
  }
  for (i = 0; i < 2; ++i) {
    double sum = 0.0;
    for (j = 0; j < 3; ++j) sum += exp(logits[i][j]);
    for (j = 0; j < 3; ++j) {
      if (fabs(probs[i][j] - exp(logits[i][j]) / sum) > 1e-6) {
        fprintf(stderr, "probs[%d][%d] = %g, want %g\n", i, j, probs[i][j], exp(logits[i][j]) / sum);
        return 1;
      }
    }
    want += (log(sum) - logits[i][target[i]]) / 2.0;
  }
  if (fabs(loss - want) > 1e-6) {
    fprintf(stderr, "loss = %g, want %g\n", loss, want);
    return 1;
  }
  printf("consumer: xent %s (ABI %u, %s threading, %s target): softmax and cross-entropy ok\n", xent_version_string(),
         (unsigned)xent_abi_version(), xent_threading_backend(), xent_active_target());
  return 0;
}
