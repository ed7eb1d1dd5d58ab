/* Vocab-parallel cross-entropy over MPI: each rank holds a column shard of
 * the B x V logits, computes its per-row statistics (phase 1), gathers every
 * rank's with one MPI_Allgather, and finishes (phase 2: the loss, the lse and
 * its shard of the gradient). As a check, every rank also runs the
 * single-process xent_cross_entropy on the whole logits and compares: the
 * same bits for aligned shards (every shard but the last 4096 * 2^k wide,
 * see xent.h), within tolerance for an uneven split. Then the same for token
 * log-probs and entropy (RL): one MPI_Allgather, and the shard's gradient of
 * g_lp logprob + g_H entropy without any communication. Exits non-zero on
 * every rank when any rank sees a mismatch or an error.
 *
 *   mpicc -std=c99 vocab_parallel_ce.c -lxent -lm -o vocab_parallel_ce
 *   mpirun -np 4 ./vocab_parallel_ce
 */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xent/xent.h>

enum { kBatch = 7 };

static int g_rank, g_size;

/* The same pseudo-random problem on every rank (a fixed-seed LCG), so the
 * full-logits reference needs no communication. */
static float next_uniform(uint64_t* s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*s >> 40) * (1.0 / 16777216.0));
}

static int report(const char* what, xent_status st) {
  if (st == XENT_OK) return 0;
  fprintf(stderr, "rank %d: %s: %s (%s)\n", g_rank, what, xent_status_string(st), xent_last_error());
  return 1;
}

/* One problem: V classes split at bounds[0..size]; `exact` asks for the same
 * bits as xent_cross_entropy. Returns the number of failed checks. */
static int run_case(const char* name, size_t V, const size_t* bounds, int exact) {
  const size_t B = kBatch, a = bounds[g_rank], w = bounds[g_rank + 1] - a;
  const size_t per_rank = xent_cross_entropy_shard_stats_doubles(B, 0.1f);
  float* logits = malloc(B * V * sizeof(float));
  float* weight = malloc(V * sizeof(float));
  float* grad_ref = malloc(B * V * sizeof(float));
  float* grad = malloc(B * w * sizeof(float));
  double* stats = malloc(per_rank * sizeof(double));
  double* all_stats = malloc(per_rank * (size_t)g_size * sizeof(double));
  float* losses = malloc((size_t)g_size * sizeof(float));
  int64_t target[kBatch];
  float lse[kBatch], lse_ref[kBatch], loss = 0, loss_ref = 0;
  int bad = 0;
  uint64_t seed = 12345 + V;
  for (size_t i = 0; i < B * V; ++i) logits[i] = 8.0f * next_uniform(&seed) - 4.0f;
  for (size_t c = 0; c < V; ++c) weight[c] = 0.25f + next_uniform(&seed);
  for (size_t i = 0; i < B; ++i) target[i] = (int64_t)(next_uniform(&seed) * (float)V) % (int64_t)V;
  target[2] = -100; /* an ignored row */

  /* Phase 1: this rank's columns, addressed inside the full matrix (stride V). */
  xent_cross_entropy_shard_stats_args s;
  XENT_ARGS_INIT(xent_cross_entropy_shard_stats_args, &s);
  s.batch = B;
  s.num_classes = V;
  s.shard_classes = w;
  s.class_offset = a;
  s.logits = logits + a;
  s.logits_stride = V;
  s.target = target;
  s.weight = weight;
  s.label_smoothing = 0.1f;
  s.stats = stats;
  s.num_threads = 1;
  bad += report("xent_cross_entropy_shard_stats", xent_cross_entropy_shard_stats(&s));

  /* The one collective: every rank's stats in rank order. */
  MPI_Allgather(stats, (int)per_rank, MPI_DOUBLE, all_stats, (int)per_rank, MPI_DOUBLE, MPI_COMM_WORLD);

  /* Phase 2: the loss of the whole logits and this shard's gradient. */
  xent_cross_entropy_shard_finish_args f;
  XENT_ARGS_INIT(xent_cross_entropy_shard_finish_args, &f);
  f.batch = B;
  f.num_classes = V;
  f.shard_classes = w;
  f.class_offset = a;
  f.logits = logits + a;
  f.logits_stride = V;
  f.target = target;
  f.weight = weight;
  f.label_smoothing = 0.1f;
  f.z_loss = 1e-3f;
  f.stats = all_stats;
  f.num_shards = (size_t)g_size;
  f.loss = &loss;
  f.lse = lse;
  f.grad = grad;
  f.num_threads = 1;
  if (!bad) bad += report("xent_cross_entropy_shard_finish", xent_cross_entropy_shard_finish(&f));

  /* The check: single-process cross-entropy of the whole logits. */
  xent_cross_entropy_args r;
  XENT_ARGS_INIT(xent_cross_entropy_args, &r);
  r.batch = B;
  r.num_classes = V;
  r.logits = logits;
  r.target = target;
  r.weight = weight;
  r.label_smoothing = 0.1f;
  r.z_loss = 1e-3f;
  r.loss = &loss_ref;
  r.lse = lse_ref;
  r.grad = grad_ref;
  r.num_threads = 1;
  bad += report("xent_cross_entropy", xent_cross_entropy(&r));

  if (!bad) {
    double dl = fabs((double)loss - loss_ref), dlse = 0, dg = 0;
    for (size_t i = 0; i < B; ++i) {
      double d = fabs((double)lse[i] - lse_ref[i]);
      if (d > dlse) dlse = d;
      for (size_t j = 0; j < w; ++j) {
        d = fabs((double)grad[i * w + j] - grad_ref[i * V + a + j]);
        if (d > dg || d != d) dg = d;
      }
    }
    if (exact ? (dl != 0 || dlse != 0 || dg != 0)
              : (!(dl <= 1e-5 * fabs(loss_ref) + 1e-6) || !(dlse <= 1e-5) || !(dg <= 1e-6))) {
      fprintf(stderr, "rank %d: %s: loss %.9g vs %.9g, max |lse diff| %g, max |grad diff| %g\n", g_rank, name,
              (double)loss, (double)loss_ref, dlse, dg);
      ++bad;
    }
  }
  /* The loss must have the same bits on every rank. */
  MPI_Allgather(&loss, 1, MPI_FLOAT, losses, 1, MPI_FLOAT, MPI_COMM_WORLD);
  for (int k = 0; k < g_size; ++k) {
    if (memcmp(&losses[k], &loss, sizeof loss) != 0) {
      fprintf(stderr, "rank %d: %s: rank %d's loss %.9g differs from this rank's %.9g\n", g_rank, name, k,
              (double)losses[k], (double)loss);
      ++bad;
      break;
    }
  }
  if (g_rank == 0) printf("%s: V = %zu on %d ranks: loss %.7g\n", name, V, g_size, (double)loss);
  free(logits);
  free(weight);
  free(grad_ref);
  free(grad);
  free(stats);
  free(all_stats);
  free(losses);
  return bad;
}

/* Token log-probs and entropy of the whole rows from the shards (one
 * MPI_Allgather), then this shard's gradient of g_lp logprob + g_H entropy
 * (no communication), against xent_token_logprobs and
 * xent_token_logprobs_backward on the whole logits: the same bits for
 * aligned shards; the gradient always (the same lse and entropy in). */
static int run_token_case(const char* name, size_t V, const size_t* bounds, int exact) {
  const size_t B = kBatch, a = bounds[g_rank], w = bounds[g_rank + 1] - a;
  const size_t per_rank = xent_token_logprobs_shard_stats_doubles(B, 1);
  float* logits = malloc(B * V * sizeof(float));
  float* grad_ref = malloc(B * V * sizeof(float));
  float* grad = malloc(B * w * sizeof(float));
  double* stats = malloc(per_rank * sizeof(double));
  double* all_stats = malloc(per_rank * (size_t)g_size * sizeof(double));
  int64_t target[kBatch];
  float lp[kBatch], ent[kBatch], lse[kBatch], lp_ref[kBatch], ent_ref[kBatch], lse_ref[kBatch];
  float g_lp[kBatch], g_h[kBatch];
  int bad = 0;
  uint64_t seed = 777 + V;
  for (size_t i = 0; i < B * V; ++i) logits[i] = 8.0f * next_uniform(&seed) - 4.0f;
  for (size_t i = 0; i < B; ++i) {
    target[i] = (int64_t)(next_uniform(&seed) * (float)V) % (int64_t)V;
    g_lp[i] = next_uniform(&seed) - 0.5f;
    g_h[i] = next_uniform(&seed) - 0.5f;
  }
  target[3] = -100; /* an ignored row: log-prob 0 */

  xent_token_logprobs_shard_stats_args s;
  XENT_ARGS_INIT(xent_token_logprobs_shard_stats_args, &s);
  s.batch = B;
  s.num_classes = V;
  s.shard_classes = w;
  s.class_offset = a;
  s.logits = logits + a;
  s.logits_stride = V;
  s.target = target;
  s.temperature = 0.8f;
  s.with_entropy = 1;
  s.stats = stats;
  s.num_threads = 1;
  bad += report("xent_token_logprobs_shard_stats", xent_token_logprobs_shard_stats(&s));
  MPI_Allgather(stats, (int)per_rank, MPI_DOUBLE, all_stats, (int)per_rank, MPI_DOUBLE, MPI_COMM_WORLD);

  xent_token_logprobs_shard_finish_args f;
  XENT_ARGS_INIT(xent_token_logprobs_shard_finish_args, &f);
  f.batch = B;
  f.num_classes = V;
  f.target = target;
  f.with_entropy = 1;
  f.stats = all_stats;
  f.num_shards = (size_t)g_size;
  f.logprob = lp;
  f.entropy = ent;
  f.lse = lse;
  if (!bad) bad += report("xent_token_logprobs_shard_finish", xent_token_logprobs_shard_finish(&f));

  xent_token_logprobs_shard_backward_args g;
  XENT_ARGS_INIT(xent_token_logprobs_shard_backward_args, &g);
  g.batch = B;
  g.num_classes = V;
  g.shard_classes = w;
  g.class_offset = a;
  g.logits = logits + a;
  g.logits_stride = V;
  g.target = target;
  g.temperature = 0.8f;
  g.grad_logprob = g_lp;
  g.grad_entropy = g_h;
  g.lse = lse;
  g.entropy = ent;
  g.grad = grad;
  g.num_threads = 1;
  if (!bad) bad += report("xent_token_logprobs_shard_backward", xent_token_logprobs_shard_backward(&g));

  xent_token_logprobs_args r;
  XENT_ARGS_INIT(xent_token_logprobs_args, &r);
  r.batch = B;
  r.num_classes = V;
  r.logits = logits;
  r.target = target;
  r.temperature = 0.8f;
  r.logprob = lp_ref;
  r.entropy = ent_ref;
  r.lse = lse_ref;
  r.num_threads = 1;
  bad += report("xent_token_logprobs", xent_token_logprobs(&r));
  xent_token_logprobs_backward_args rb;
  XENT_ARGS_INIT(xent_token_logprobs_backward_args, &rb);
  rb.batch = B;
  rb.num_classes = V;
  rb.logits = logits;
  rb.target = target;
  rb.temperature = 0.8f;
  rb.grad_logprob = g_lp;
  rb.grad_entropy = g_h;
  rb.lse = lse; /* the merged statistics: the gradient's bits for any split */
  rb.entropy = ent;
  rb.grad = grad_ref;
  rb.num_threads = 1;
  bad += report("xent_token_logprobs_backward", xent_token_logprobs_backward(&rb));

  if (!bad) {
    double d = 0, dg = 0;
    for (size_t i = 0; i < B; ++i) {
      const double e[3] = {fabs((double)lp[i] - lp_ref[i]), fabs((double)ent[i] - ent_ref[i]),
                           fabs((double)lse[i] - lse_ref[i])};
      for (int k = 0; k < 3; ++k)
        if (e[k] > d || e[k] != e[k]) d = e[k];
      for (size_t j = 0; j < w; ++j)
        if (memcmp(&grad[i * w + j], &grad_ref[i * V + a + j], sizeof(float)) != 0) dg = 1;
    }
    if ((exact ? d != 0 : !(d <= 1e-5)) || dg != 0) {
      fprintf(stderr, "rank %d: %s: max |statistic diff| %g, gradient %s\n", g_rank, name, d,
              dg != 0 ? "differs" : "equal");
      ++bad;
    }
  }
  if (g_rank == 0)
    printf("%s: V = %zu on %d ranks: logprob[0] %.7g entropy[0] %.7g\n", name, V, g_size, (double)lp[0],
           (double)ent[0]);
  free(logits);
  free(grad_ref);
  free(grad);
  free(stats);
  free(all_stats);
  return bad;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  size_t* bounds = malloc(((size_t)g_size + 1) * sizeof(size_t));
  int bad = 0;

  /* Aligned: 4096 columns per rank, the last rank 1000. */
  size_t V = 4096 * (size_t)(g_size - 1) + 1000;
  for (int k = 0; k <= g_size; ++k) bounds[k] = k == g_size ? V : 4096 * (size_t)k;
  bad += run_case("aligned", V, bounds, 1);

  /* Uneven: 1000 classes in shards of growing width (rank k ~ k + 1 parts). */
  V = 1000;
  const size_t parts = (size_t)g_size * (g_size + 1) / 2;
  for (int k = 0; k <= g_size; ++k) bounds[k] = V * ((size_t)k * (k + 1) / 2) / parts;
  bad += run_case("uneven", V, bounds, 0);
  bad += run_token_case("token log-probs, uneven", V, bounds, 0);
  V = 4096 * (size_t)(g_size - 1) + 333;
  for (int k = 0; k <= g_size; ++k) bounds[k] = k == g_size ? V : 4096 * (size_t)k;
  bad += run_token_case("token log-probs, aligned", V, bounds, 1);

  int any_bad = 0;
  MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (g_rank == 0) printf("%s\n", any_bad ? "FAILED" : "ok");
  free(bounds);
  MPI_Finalize();
  return any_bad ? 1 : 0;
}
