/* A C99 program using only <xent/xent.h> and libxent: cross-entropy of a
 * small batch against the formula computed here in double. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <xent/xent.h>

static int failures = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

int main(void) {
  enum { B = 3, V = 5 };
  float logits[B][V] = {
      {1.0f, 2.0f, 0.5f, -1.0f, 0.0f}, {0.1f, 0.2f, 0.3f, 0.4f, 0.5f}, {-3.0f, 4.0f, 1.0f, 2.0f, -2.0f}};
  int64_t target[B] = {1, 4, -100};
  float grad[B][V];
  float loss = 0.0f, row_loss[B];
  double want = 0.0;
  int i, c;
  xent_cross_entropy_args a;
  xent_status st;

  CHECK(XENT_ARGS_INIT(xent_cross_entropy_args, &a) == XENT_OK);
  CHECK(a.struct_size == sizeof(a));
  a.batch = B;
  a.num_classes = V;
  a.logits = &logits[0][0];
  a.target = target;
  a.loss = &loss;
  a.row_loss = row_loss;
  a.grad = &grad[0][0];
  st = xent_cross_entropy(&a);
  if (st != XENT_OK) fprintf(stderr, "%s: %s\n", xent_status_string(st), xent_last_error());
  CHECK(st == XENT_OK);

  for (i = 0; i < 2; ++i) { /* row 2 is ignored */
    double m = -INFINITY, s = 0.0;
    for (c = 0; c < V; ++c) m = logits[i][c] > m ? logits[i][c] : m;
    for (c = 0; c < V; ++c) s += exp(logits[i][c] - m);
    want += m + log(s) - logits[i][target[i]];
    CHECK(fabs(row_loss[i] - (m + log(s) - logits[i][target[i]])) < 1e-5);
    for (c = 0; c < V; ++c) {
      const double p = exp(logits[i][c] - m) / s;
      CHECK(fabs(grad[i][c] - (p - (c == target[i])) / 2.0) < 1e-6);
    }
  }
  want /= 2.0;
  CHECK(fabs(loss - want) < 1e-5);
  for (c = 0; c < V; ++c) CHECK(grad[2][c] == 0.0f);
  CHECK(row_loss[2] == 0.0f);

  /* An error: a class index out of range, with a message naming it. */
  target[0] = 7;
  CHECK(xent_cross_entropy(&a) == XENT_ERROR_TARGET_OUT_OF_RANGE);
  CHECK(strstr(xent_last_error(), "target[0] = 7") != NULL);

  CHECK(strcmp(xent_version_string(), XENT_VERSION_STRING) == 0);
  CHECK(xent_abi_version() == XENT_ABI_VERSION);
  printf("c99 test: %s, %d failures (target %s)\n", failures ? "FAILED" : "ok", failures, xent_active_target());
  return failures ? 1 : 0;
}
