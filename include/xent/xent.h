/* xent: fused softmax cross-entropy, KL divergence and related losses on CPU.
 *
 * The stable C ABI of libxent.so (soname libxent.so.XENT_ABI_VERSION). C99,
 * usable from C++. Everything here is prefixed xent_ / XENT_.
 *
 * ---------------------------------------------------------------------------
 * Conventions (every operation)
 * ---------------------------------------------------------------------------
 * - Data is a batch of B rows ("batch") by V classes ("num_classes"). The class
 *   dimension is contiguous; rows are `stride` ELEMENTS apart (stride 0 means
 *   packed rows, stride = V). stride < V is an error. Pointers need no
 *   particular alignment (any byte address works).
 * - Floating inputs are XENT_F32, XENT_BF16 or XENT_F16; all arithmetic is in
 *   f32, reductions over rows in f64 (in a fixed order), results in f32.
 * - Outputs that the caller does not want are NULL. No output is written
 *   before every argument has been checked: a call that fails leaves all
 *   outputs untouched (except XENT_ERROR_CALLBACK, see below).
 * - Results are bit-identical for every thread count and threading backend
 *   (fixed work split, fixed merge order). They may differ in the last bits
 *   between SIMD targets.
 * - No call allocates memory proportional to B x V. Scratch: per thread that
 *   runs xent's work, up to two rows of V floats, kept for the thread's life
 *   and reused by later calls (exps kept for the gradient pass; two rows for
 *   KL/JSD from two logit batches); per call, O(B) floats (per-row losses when
 *   the caller does not provide them) and, for rows of more than 65536
 *   classes or when few long rows are split across threads, O(B V / 4096)
 *   per-segment statistics (~100 bytes each, ~200 for KL/JSD: under 1.3 %
 *   of the f32 logits' size). Every allocation a call needs that could fail
 *   after an output was written is made before it: a call that fails leaves
 *   its outputs untouched.
 * - Calls are thread-safe: any number of threads may call concurrently, on
 *   distinct outputs.
 * - Outputs of at least XENT_STREAM_BYTES bytes (environment variable read at
 *   the first call; default 33554432 = 32 MiB) are written with non-temporal
 *   stores, which bypass the cache: right for outputs larger than it.
 * - Nothing crosses this ABI but status codes: no C++ exception, no abort, no
 *   output on stdout/stderr.
 *
 * Arguments are passed in one struct per operation. Each struct begins with
 * `size_t struct_size`; fill it with the matching xent_*_args_init(), which
 * sets struct_size = sizeof(the struct as YOUR header declares it) and every
 * field to its default. Why structs and not opaque handles: they are plain
 * data any FFI can build (no lifetime to manage), and they can grow. This
 * library reads only the first struct_size bytes; fields appended by later
 * versions take their defaults when an older caller's struct is shorter, and a
 * newer caller's longer struct is accepted only if every byte this library
 * does not know is zero (the rule Linux uses for clone3/openat2), so a request
 * for a feature this library lacks is an error, never silently ignored.
 *
 * Per-call threading: every struct has num_threads (0 = all cores, the
 * default; 1 = the caller's thread only) and an optional parallel_for callback
 * for hosts that own a thread pool (see xent_parallel_for_fn).
 *
 * ---------------------------------------------------------------------------
 * Edge cases (the same for every operation unless stated otherwise)
 * ---------------------------------------------------------------------------
 * - NaN anywhere in a row makes that row's loss, lse and gradient NaN (as
 *   PyTorch). A +inf logit makes its row NaN (softmax is undefined; PyTorch
 *   gives NaN too).
 * - -inf logits are masked classes: probability exactly 0, gradient exactly 0
 *   (except for terms that put target mass on the class: label smoothing gives
 *   it -eps w_c / V and an infinite loss, a probability target -w_c q_c, as
 *   PyTorch). A row that is entirely -inf has lse = -inf and loss NaN
 *   (PyTorch: NaN).
 * - exp(x - max) below 2^-126 is flushed to 0 (such a probability is below the
 *   f32 rounding error of the row's sum).
 * - Per-row sums are f32: with label smoothing or probability targets the
 *   loss's sum_c a_c (z_c - max z) (a_c: the class's target mass times its
 *   weight) is accumulated in f32, so a row where it exceeds FLT_MAX (logits
 *   spread over more than ~1e38 / V, or huge class weights) gets an infinite
 *   loss where the float64 one is finite, as PyTorch's f32 sum does; its
 *   gradient does not use that sum and stays within the bounds below.
 * - B = 0 is valid: reduction MEAN gives NaN, SUM gives 0 (PyTorch).
 * - 0 * log 0 = 0: a zero target probability contributes 0 to every loss and
 *   gradient, even where the other side is -inf (PyTorch's kl_div and
 *   soft-target cross_entropy give NaN there; xent does not).
 *
 * Accuracy (tested against a float64 reference on every SIMD target, V from 1
 * to 262144): reduced f32 losses within 2e-6 relative error; per-row values
 * within 2e-6 relative + 2e-6 absolute (a per-row loss near 0 is a difference
 * of two O(log V) numbers); f32 gradients within 1e-6 absolute plus 2e-6
 * relative (gradients can exceed 1, e.g. w.r.t. a teacher's logits); bf16/f16
 * outputs are the f32 result rounded to nearest even: within one unit in the
 * last place of the correctly rounded result plus the f32 absolute bound
 * (which dominates where a gradient is a difference of nearly equal terms).
 * On CPUs with AVX512_BF16, bf16 outputs are converted by the CPU's
 * instruction, which gives +-0 for the f32 subnormals (|x| < 2^-126, i.e.
 * below 1.2e-38); environment variable XENT_NATIVE_BF16=0 (read at load)
 * selects the software rounding, which keeps them.
 */
#ifndef XENT_XENT_H_
#define XENT_XENT_H_

#include <stddef.h>
#include <stdint.h>

#include "xent/version.h"

#if defined(_WIN32) && defined(XENT_BUILDING_LIBRARY)
#define XENT_API __declspec(dllexport)
#elif defined(_WIN32)
#define XENT_API __declspec(dllimport)
#elif defined(__GNUC__)
#define XENT_API __attribute__((visibility("default")))
#else
#define XENT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Status codes. Values are pinned forever; new codes are only appended.
 * ------------------------------------------------------------------------- */
typedef enum xent_status {
  XENT_OK = 0,
  /* A pointer the operation needs is NULL. */
  XENT_ERROR_NULL_POINTER = 1,
  /* num_classes == 0, a stride smaller than num_classes, or a size whose
   * byte count overflows size_t. */
  XENT_ERROR_INVALID_SHAPE = 2,
  /* An option value outside its domain (NaN, negative, out of [0, 1], ...). */
  XENT_ERROR_INVALID_VALUE = 3,
  /* A class index outside [0, V) that is not ignore_index. */
  XENT_ERROR_TARGET_OUT_OF_RANGE = 4,
  /* An unknown dtype value, or a dtype that argument does not accept. */
  XENT_ERROR_INVALID_DTYPE = 5,
  /* An unknown enum value (reduction, distribution kind, divergence). */
  XENT_ERROR_INVALID_ENUM = 6,
  /* struct_size smaller than the first published struct, or a larger struct
   * with non-zero bytes in fields this library does not know. */
  XENT_ERROR_INVALID_STRUCT = 7,
  /* An output overlaps an input or another output, other than the documented
   * in-place pairs (an output exactly equal to an input, same stride). */
  XENT_ERROR_ALIASING = 8,
  /* An unknown SIMD target name, or one this CPU or build does not support
   * (xent_force_target(), or the XENT_TARGET environment variable). */
  XENT_ERROR_UNSUPPORTED_TARGET = 9,
  /* Scratch memory could not be allocated. */
  XENT_ERROR_OUT_OF_MEMORY = 10,
  /* The caller's parallel_for reported failure, or did not run every task.
   * Outputs may be partially written. */
  XENT_ERROR_CALLBACK = 11,
  /* A bug in xent (an internal invariant failed). Please report it. */
  XENT_ERROR_INTERNAL = 12,
  /* The operation is not available in this build of the library (e.g.
   * xent_linear_cross_entropy in a library built without a BLAS). */
  XENT_ERROR_UNSUPPORTED = 13
} xent_status;

/* Static description of a status, e.g. "invalid shape". Never NULL; unknown
 * values give "unknown status". */
XENT_API const char* xent_status_string(xent_status status);

/* Detail about the last call made ON THIS THREAD: every xent_ function that
 * returns a status sets it ("" after success), e.g.
 * "target[17] = 32000 is outside [0, 32000)". The pointer stays valid until
 * the next xent_ call on this thread. Never NULL. */
XENT_API const char* xent_last_error(void);

/* ---------------------------------------------------------------------------
 * Version
 * ------------------------------------------------------------------------- */
/* "MAJOR.MINOR.PATCH" of the loaded library (may differ from the header's
 * XENT_VERSION_STRING when an application runs against a newer library). */
XENT_API const char* xent_version_string(void);
/* MAJOR * 10000 + MINOR * 100 + PATCH. */
XENT_API uint32_t xent_version_number(void);
/* XENT_ABI_VERSION the library was built with (the soname major). */
XENT_API uint32_t xent_abi_version(void);

/* ---------------------------------------------------------------------------
 * Enumerations (stored in int32_t fields so the struct layout is fixed)
 * ------------------------------------------------------------------------- */
typedef enum xent_dtype {
  /* For an output: the dtype of the input it derives from (e.g. a gradient in
   * the logits' dtype). Not valid for inputs. */
  XENT_DTYPE_AUTO = 0,
  XENT_F32 = 1,  /* IEEE binary32 */
  XENT_BF16 = 2, /* bfloat16: the upper 16 bits of a binary32 */
  XENT_F16 = 3,  /* IEEE binary16 */
  XENT_I32 = 4,  /* int32_t class indices */
  XENT_I64 = 5   /* int64_t class indices */
} xent_dtype;

typedef enum xent_reduction {
  XENT_REDUCTION_NONE = 0, /* no reduction: per-row (and per-element) outputs */
  XENT_REDUCTION_MEAN = 1, /* see each operation for the divisor */
  XENT_REDUCTION_SUM = 2,
  XENT_REDUCTION_BATCHMEAN = 3 /* sum / number of rows (KL, JSD, BCE only) */
} xent_reduction;

/* How a distribution is given (KL/JSD inputs). */
typedef enum xent_dist_kind {
  XENT_DIST_LOGITS = 0,    /* unnormalized: softmax(x / temperature) */
  XENT_DIST_LOG_PROBS = 1, /* log-probabilities, used as given */
  XENT_DIST_PROBS = 2      /* probabilities, used as given */
} xent_dist_kind;

typedef enum xent_divergence_kind {
  /* KL(P || Q) = sum_c p_c (log p_c - log q_c), P = target, Q = input. */
  XENT_DIVERGENCE_KL = 0,
  /* Generalized Jensen-Shannon with weight beta (as Liger-Kernel's jsd):
   * beta * KL(P || M) + (1 - beta) * KL(Q || M), M = beta P + (1 - beta) Q;
   * beta = 0 is KL(P || Q) and beta = 1 is KL(Q || P) (the limits Liger uses). */
  XENT_DIVERGENCE_JSD = 1
} xent_divergence_kind;

/* ---------------------------------------------------------------------------
 * Threading
 * ------------------------------------------------------------------------- */
/* A unit of xent's work: runs tasks [begin, end). */
typedef void (*xent_task_fn)(void* task_ctx, size_t begin, size_t end);

/* A host thread pool: must call task(task_ctx, b, e) over disjoint ranges that
 * together cover [0, num_tasks) exactly once, possibly concurrently, in any
 * order and split, and return only when all have returned. Return 0 on
 * success, non-zero on failure (the xent call then returns
 * XENT_ERROR_CALLBACK). xent's results do not depend on how the host splits
 * the range. `num_threads_hint` is the call's num_threads (0 = all). */
typedef int (*xent_parallel_for_fn)(void* user, size_t num_tasks,
                                    xent_task_fn task, void* task_ctx,
                                    int32_t num_threads_hint);

/* Threading backend compiled in: "openmp", "tbb" or "none". */
XENT_API const char* xent_threading_backend(void);
/* Threads used for num_threads = 0 on this machine. */
XENT_API int32_t xent_max_threads(void);
/* BLAS the library was built with (xent_linear_cross_entropy's matrix
 * products): "openblas", "blis" or "none" (then that operation returns
 * XENT_ERROR_UNSUPPORTED). */
XENT_API const char* xent_blas_backend(void);

/* ---------------------------------------------------------------------------
 * SIMD targets
 * ------------------------------------------------------------------------- */
/* Name of the target the next call on any thread will use, e.g. "avx3_dl",
 * "avx3" (AVX-512), "avx2", "sse4", "neon", "sve2", "scalar". */
XENT_API const char* xent_active_target(void);

/* Targets compiled into this library AND supported by this CPU, best first.
 * Writes up to `capacity` names into `names` (may be NULL when capacity is 0)
 * and returns how many there are in all. */
XENT_API size_t xent_supported_targets(const char** names, size_t capacity);

/* Forces every later call (process-wide) to use target `name` (matched
 * case-insensitively; "avx512" is an alias of "avx3"). NULL, "" or "auto"
 * return to automatic selection (the best supported target). The environment
 * variable XENT_TARGET, read at the first call, does the same. An unknown or
 * unsupported name returns XENT_ERROR_UNSUPPORTED_TARGET and changes nothing;
 * a bad XENT_TARGET makes every operation fail with that status (naming the
 * variable) until xent_force_target() is called. Not meant to be called while
 * other threads are inside xent_ operations (they may use either target). */
XENT_API xent_status xent_force_target(const char* name);

/* ---------------------------------------------------------------------------
 * Cross-entropy: softmax over classes, then negative log-likelihood.
 * ------------------------------------------------------------------------- */
/* With class-index targets (target_dtype XENT_I32 / XENT_I64), per row i with
 * target y = target[i] != ignore_index, z = (softcap > 0 ? softcap *
 * tanh(logits / softcap) : logits), lse = log sum_c exp(z_c), eps =
 * label_smoothing, w = weight (all ones when NULL):
 *   row_loss[i] = (1 - eps) w_y (lse - z_y)
 *               + (eps / V) sum_c w_c (lse - z_c)      (PyTorch's smoothing)
 *               + z_loss * lse^2                       (PaLM z-loss, unweighted)
 * and row_loss[i] = 0 for ignored rows (their gradient row is all zeros).
 * Reductions (as PyTorch): SUM = sum_i row_loss[i]; MEAN = that sum divided
 * by sum over non-ignored rows of w_y (the count when weight is NULL); all
 * rows ignored, or B = 0, gives NaN. NONE: `loss` receives the SUM.
 *
 * With probability targets (target_dtype XENT_F32/BF16/F16; a B x V matrix q
 * with row stride target_stride): q' = (1 - eps) q + eps / V and
 *   row_loss[i] = sum_c w_c q'_c (lse - z_c) + z_loss * lse^2,
 * MEAN divides by B (as PyTorch; weights do not enter the divisor);
 * ignore_index does not apply.
 *
 * Gradient (grad != NULL): d(loss)/d(logits) * grad_scale, where loss is the
 * reduced loss for MEAN/SUM and the sum of row losses for NONE. grad may be
 * `logits` itself (in place; then grad_dtype must be the logits' dtype and
 * grad_stride the logits' stride). row_scale (B floats, optional) multiplies
 * row i's gradient by row_scale[i] (the upstream gradient of a NONE
 * reduction; the losses are unaffected).
 */
typedef struct xent_cross_entropy_args {
  size_t struct_size;
  size_t batch;       /* B, may be 0 */
  size_t num_classes; /* V >= 1 */

  const void* logits;    /* B x V, required */
  size_t logits_stride;  /* elements; 0 = V */
  int32_t logits_dtype;  /* XENT_F32 (default) / XENT_BF16 / XENT_F16 */

  int32_t target_dtype; /* XENT_I64 (default) / XENT_I32, or F32/BF16/F16 */
  const void* target;   /* B indices, or B x V probabilities; required */
  size_t target_stride; /* indices: elements between rows' indices (0 = 1);
                           probabilities: row stride (0 = V) */

  const float* weight;  /* V class weights, optional */
  const float* row_scale; /* B gradient multipliers, optional */

  int64_t ignore_index;  /* default -100 */
  int32_t reduction;     /* xent_reduction; default MEAN (BATCHMEAN invalid) */
  float label_smoothing; /* in [0, 1]; default 0 */
  float z_loss;          /* >= 0, finite; default 0 */
  float softcap;         /* 0 (default) = off, else finite and >= FLT_MIN */
  float grad_scale;      /* finite; default 1 */
  int32_t reserved0;     /* must be 0 */

  /* Outputs, each optional. */
  float* loss;     /* 1 value: the reduced loss */
  float* row_loss; /* B values */
  float* lse;      /* B values: log-sum-exp of the (softcapped) logits row */
  void* grad;      /* B x V */
  size_t grad_stride; /* 0 = V */
  int32_t grad_dtype; /* XENT_DTYPE_AUTO (= logits dtype, default) or F32/BF16/F16 */

  /* Threading. */
  int32_t num_threads; /* 0 = all cores (default), 1 = caller's thread */
  xent_parallel_for_fn parallel_for; /* optional host pool */
  void* parallel_user;               /* passed to parallel_for */
} xent_cross_entropy_args;

XENT_API xent_status xent_cross_entropy_args_init(
    xent_cross_entropy_args* args, size_t struct_size);
XENT_API xent_status xent_cross_entropy(const xent_cross_entropy_args* args);

/* ---------------------------------------------------------------------------
 * Binary cross-entropy with logits, elementwise over B x V (PyTorch's
 * binary_cross_entropy_with_logits): with y = target, pw = pos_weight[c]
 * (1 when NULL), w = weight (1 when NULL),
 *   l = w * [ pw * y * softplus(-x) + (1 - y) * softplus(x) ]
 * computed stably, as a sum of non-negative terms. Infinite logits give the
 * limits (sigmoid(+inf) = 1; a term whose factor pw y or 1 - y is 0 is 0):
 * x = +inf, y = 1 gives l = 0 and gradient 0 where PyTorch's form gives NaN
 * (0 * inf). weight is a B x V f32 matrix with row stride weight_stride;
 * weight_stride = 0 broadcasts one row of V class weights to every row.
 * Reductions: MEAN = sum / (B V) (as PyTorch), SUM, BATCHMEAN = sum / B,
 * NONE (loss = SUM). row_loss receives per-row sums, elem_loss the elementwise
 * values. Gradient as for cross-entropy (in place over logits allowed).
 * ------------------------------------------------------------------------- */
typedef struct xent_bce_args {
  size_t struct_size;
  size_t batch;
  size_t num_classes;

  const void* logits;
  size_t logits_stride;
  int32_t logits_dtype;

  int32_t target_dtype; /* F32 (default) / BF16 / F16, values in [0, 1] */
  const void* target;   /* B x V, required */
  size_t target_stride; /* 0 = V */

  const float* weight;  /* optional, see above */
  size_t weight_stride; /* 0 = one row broadcast to all rows */
  const float* pos_weight; /* V values, optional */

  int32_t reduction; /* default MEAN */
  float grad_scale;  /* default 1 */

  float* loss;
  float* row_loss;
  float* elem_loss; /* B x V f32, optional */
  size_t elem_loss_stride;
  void* grad;
  size_t grad_stride;
  int32_t grad_dtype;

  int32_t num_threads;
  xent_parallel_for_fn parallel_for;
  void* parallel_user;
} xent_bce_args;

XENT_API xent_status xent_bce_args_init(xent_bce_args* args,
                                        size_t struct_size);
XENT_API xent_status xent_bce_with_logits(const xent_bce_args* args);

/* ---------------------------------------------------------------------------
 * KL divergence and generalized Jensen-Shannon between two distributions per
 * row: P = target (teacher) and Q = input (student), each given as logits,
 * log-probabilities or probabilities (input_kind / target_kind). Sides given
 * as logits use softmax(x / temperature). PyTorch's kl_div(input, target,
 * log_target) is input_kind = LOG_PROBS, target_kind = PROBS or LOG_PROBS;
 * distillation from two logit batches is LOGITS / LOGITS.
 *
 * Per element: KL: p (log p - log q), with 0 log 0 = 0; JSD: see
 * xent_divergence_kind. A NaN on either side gives a NaN term (also where the
 * other side's probability is 0), so the row loss is NaN; a side given as
 * logits with a NaN or +inf entry is NaN everywhere in its row. Negative
 * probabilities give NaN; log-probabilities > 0 are taken as given. row_loss = sum over the row; elem_loss the elementwise
 * terms (see xent_divergence_kind). t2_scaling != 0 multiplies losses and gradients by temperature^2
 * (Hinton et al.'s distillation convention), an f32 factor: 0 when
 * temperature < ~1e-19 (then an infinite term times it is NaN).
 * Reductions: MEAN = sum / (rows V) (PyTorch's elementwise mean), BATCHMEAN =
 * sum / rows, SUM, NONE (loss = SUM), where rows counts the non-ignored rows
 * when `labels` is given: a row whose label equals ignore_index contributes 0
 * and gets zero gradients (Liger's jsd shift_labels); rows = B otherwise.
 *
 * Gradients: grad_input = d(loss)/d(input) and grad_target = d(loss)/d(target)
 * (each optional), times grad_scale, with respect to the values as given
 * (logits, log-probabilities or probabilities). grad_input may be input
 * itself (in place).
 * ------------------------------------------------------------------------- */
typedef struct xent_divergence_args {
  size_t struct_size;
  size_t batch;
  size_t num_classes;

  const void* input; /* Q, the student; B x V, required */
  size_t input_stride;
  int32_t input_dtype;
  int32_t input_kind; /* xent_dist_kind; default LOG_PROBS (PyTorch) */

  const void* target; /* P, the teacher; B x V, required */
  size_t target_stride;
  int32_t target_dtype;
  int32_t target_kind; /* default PROBS (PyTorch log_target=False) */

  int32_t divergence;  /* xent_divergence_kind; default KL */
  float beta;          /* JSD beta in [0, 1]; default 0.5 */
  float temperature;   /* finite, >= FLT_MIN (1/T finite); default 1 */
  int32_t t2_scaling;  /* default 0 */
  int32_t reduction;   /* default MEAN (PyTorch's default) */
  float grad_scale;    /* default 1 */

  const void* labels;  /* B class labels (I32/I64), optional row mask */
  size_t labels_stride; /* 0 = 1 */
  int64_t ignore_index; /* default -100 */
  int32_t labels_dtype; /* default XENT_I64 */
  int32_t reserved0;    /* must be 0 */

  float* loss;
  float* row_loss;
  float* elem_loss; /* B x V f32, optional */
  size_t elem_loss_stride;
  void* grad_input;
  size_t grad_input_stride;
  void* grad_target;
  size_t grad_target_stride;
  int32_t grad_input_dtype;  /* AUTO = input dtype */
  int32_t grad_target_dtype; /* AUTO = target dtype */

  int32_t num_threads;
  int32_t reserved1; /* must be 0 */
  xent_parallel_for_fn parallel_for;
  void* parallel_user;
} xent_divergence_args;

XENT_API xent_status xent_divergence_args_init(xent_divergence_args* args,
                                               size_t struct_size);
XENT_API xent_status xent_divergence(const xent_divergence_args* args);

/* ---------------------------------------------------------------------------
 * Softmax family, one pass over each row: with z = logits / temperature,
 *   probs = softmax(z), log_probs = log_softmax(z), lse = logsumexp(z),
 *   entropy = -sum_c p_c log p_c (0 log 0 = 0).
 * Any subset of outputs may be requested (at least one). probs or log_probs
 * (not both) may be `logits` itself (in place).
 * ------------------------------------------------------------------------- */
typedef struct xent_softmax_args {
  size_t struct_size;
  size_t batch;
  size_t num_classes;

  const void* logits;
  size_t logits_stride;
  int32_t logits_dtype;
  float temperature; /* finite, >= FLT_MIN (1/T finite); default 1 */

  void* probs;
  size_t probs_stride;
  void* log_probs;
  size_t log_probs_stride;
  int32_t probs_dtype;     /* AUTO = logits dtype */
  int32_t log_probs_dtype; /* AUTO = logits dtype */
  float* lse;     /* B values */
  float* entropy; /* B values */

  int32_t num_threads;
  int32_t reserved0;
  xent_parallel_for_fn parallel_for;
  void* parallel_user;
} xent_softmax_args;

XENT_API xent_status xent_softmax_args_init(xent_softmax_args* args,
                                            size_t struct_size);
XENT_API xent_status xent_softmax(const xent_softmax_args* args);

/* Backward of softmax / log_softmax (for autograd wrappers): given the
 * forward output y (output_kind PROBS: y = softmax(z); LOG_PROBS: y =
 * log_softmax(z)) and grad_output g, writes grad_input = dL/d(logits):
 *   PROBS:     (y * (g - sum_c g_c y_c)) / temperature
 *   LOG_PROBS: (g - exp(y) * sum_c g_c) / temperature
 * grad_input may be grad_output itself (in place). */
typedef struct xent_softmax_backward_args {
  size_t struct_size;
  size_t batch;
  size_t num_classes;

  const void* output; /* y, B x V */
  size_t output_stride;
  int32_t output_dtype;
  int32_t output_kind; /* XENT_DIST_PROBS (default) or XENT_DIST_LOG_PROBS */

  const void* grad_output; /* B x V */
  size_t grad_output_stride;
  int32_t grad_output_dtype;
  float temperature; /* the forward's temperature; default 1 */

  void* grad_input; /* B x V, required */
  size_t grad_input_stride;
  int32_t grad_input_dtype; /* AUTO = grad_output dtype */

  int32_t num_threads;
  xent_parallel_for_fn parallel_for;
  void* parallel_user;
} xent_softmax_backward_args;

XENT_API xent_status xent_softmax_backward_args_init(
    xent_softmax_backward_args* args, size_t struct_size);
XENT_API xent_status xent_softmax_backward(
    const xent_softmax_backward_args* args);

/* ---------------------------------------------------------------------------
 * Token log-probabilities (RL fine-tuning, evaluation): per row, with z =
 * logits / temperature (softcap applied first when > 0) and y = target[i]:
 *   logprob[i] = z_y - logsumexp(z), entropy[i] = H(softmax(z)), lse[i],
 * without writing anything B x V. Rows whose target is ignore_index get
 * logprob 0 (entropy and lse are still computed). Requires at least one
 * output. Targets out of [0, V) are errors as for cross-entropy.
 *
 * Every statistic below comes from the same single read of each row (the
 * reference model's logits, when given, are read once more for the KL):
 * - argmax[i]: the class of the largest logit, the lowest index among equal
 *   ones (the greedy token; token accuracy is argmax == target), and
 *   argmax_logprob[i] its log-probability.
 * - The top k classes (topk = k in [1, XENT_TOPK_MAX], k <= V): ordered by
 *   logit, largest first, equal logits by increasing index (a stable
 *   descending sort, as torch.topk(..., sorted=True) on distinct values);
 *   topk_indices[i * k + j] the class, topk_logprobs[i * k + j] its
 *   log-probability, topk_mass[i] the sum of the k probabilities. Ordering
 *   is on the logits as given (softcap and temperature are increasing maps),
 *   so the indices are exact and identical on every SIMD target and thread
 *   count. A row with fewer than k classes above -inf lists its -inf classes
 *   (log-probability -inf) by increasing index. A row holding a NaN has NaN
 *   log-probabilities and mass, and unspecified (but valid) indices.
 * - With ref_logits (a reference model's B x V logits, same dtype,
 *   temperature and softcap; q = softmax of its z): ref_logprob[i] =
 *   log q(y) (0 for ignored rows), ref_lse[i], and kl[i] = KL(p || q) =
 *   sum_c p_c (log p_c - log q_c) (0 log 0 = 0; +inf where q_c = 0 < p_c),
 *   the full-distribution KL the per-token estimators (xent_kl_penalty)
 *   approximate.
 * These are statistics, not losses: their gradients come from
 * xent_token_logprobs_backward.
 * ------------------------------------------------------------------------- */
/* Largest top-k supported. */
#define XENT_TOPK_MAX 64

typedef struct xent_token_logprobs_args {
  size_t struct_size;
  size_t batch;
  size_t num_classes;

  const void* logits;
  size_t logits_stride;
  int32_t logits_dtype;
  int32_t target_dtype; /* XENT_I64 (default) / XENT_I32 */
  const void* target;   /* B indices; may be NULL when logprob is NULL */
  size_t target_stride; /* 0 = 1 */

  int64_t ignore_index; /* default -100 */
  float temperature;    /* finite, >= FLT_MIN; default 1 */
  float softcap;        /* 0 (default) = off, else finite and >= FLT_MIN */

  float* logprob; /* B values */
  float* entropy; /* B values */
  float* lse;     /* B values */

  int32_t num_threads;
  int32_t reserved0;
  xent_parallel_for_fn parallel_for;
  void* parallel_user;

  /* Appended after xent 0.1.0: a caller's shorter (0.1.0) struct gets these
   * fields' defaults (nothing requested). Outputs are optional. */
  int64_t* argmax;        /* B class indices */
  float* argmax_logprob;  /* B values */
  int32_t topk;           /* k: 0 (default, none) to min(V, XENT_TOPK_MAX) */
  int32_t reserved1;      /* must be 0 */
  float* topk_logprobs;   /* B x k values, packed (row i at i * k) */
  int64_t* topk_indices;  /* B x k class indices, packed */
  float* topk_mass;       /* B values */
  const void* ref_logits; /* B x V, optional; required by the three below */
  size_t ref_logits_stride; /* 0 = V */
  int32_t ref_logits_dtype; /* must equal logits_dtype; default XENT_F32 */
  int32_t reserved2;      /* must be 0 */
  float* ref_logprob;     /* B values (needs target) */
  float* ref_lse;         /* B values */
  float* kl;              /* B values: KL(p || q) */
} xent_token_logprobs_args;

XENT_API xent_status xent_token_logprobs_args_init(
    xent_token_logprobs_args* args, size_t struct_size);
XENT_API xent_status xent_token_logprobs(const xent_token_logprobs_args* args);

/* ---------------------------------------------------------------------------
 * Fused linear cross-entropy: the loss of a language-model head,
 *   logits = hidden linear_weight^T + linear_bias        (B x V)
 * followed by xent_cross_entropy's class-index cross-entropy on them (every
 * option of that operation: weight, ignore_index, label_smoothing, z_loss,
 * softcap, reduction, grad_scale, row_scale; the same formulas, divisor and
 * edge cases), and in the same call the gradients of the loss with respect
 * to hidden, linear_weight and linear_bias, without a B x V matrix in memory.
 *
 * Shapes: hidden B x H (row stride hidden_stride), linear_weight V x H (row
 * stride linear_weight_stride), linear_bias V values, target B class indices.
 * Dtypes: hidden XENT_F32, XENT_BF16 or XENT_F16; linear_weight the same;
 * linear_bias f32 or that dtype. The matrix products are f32 GEMMs of the
 * BLAS (16-bit operands are widened to f32 a tile at a time), the
 * cross-entropy is xent's f32 kernel, sums over rows are in f64 or in f32
 * GEMM accumulation, in a fixed order.
 *
 * How: the rows are processed in blocks. For a block, the logits are computed
 * into scratch memory (a GEMM per tile of classes, plus the bias), the
 * cross-entropy runs on them (MEAN divisor computed once over all B rows
 * first) and writes its gradient d(loss)/d(logits) over them, which then
 * feeds grad_hidden = G linear_weight (that block's rows) and
 * grad_linear_weight += G^T hidden, grad_linear_bias += column sums of G
 * (summed over blocks in row order). Rows whose target is ignore_index are
 * skipped entirely (no GEMM work) unless lse is requested. Extra memory:
 * the block of logits and of f32 hidden rows, R x (V + H) f32 with R rows
 * per block, at most scratch_bytes (a budget that cannot hold one row, 4 (V
 * + H) bytes, fails with XENT_ERROR_INVALID_VALUE); for each thread that
 * runs its tasks, one buffer for the call: R x 512 floats (a grad_hidden
 * tile) and, with a 16-bit weight, its widened tile (up to 4 Mi floats for
 * the logits, 256 Ki for grad_hidden); O(B + V) for row and bias sums and
 * the cross-entropy's per-segment statistics of a block; the BLAS's own
 * buffers. A 16-bit grad_linear_weight is summed over all rows in f32 and
 * rounded once: in the order above that takes an f32 V x H accumulator (4 V
 * H bytes; 2 V H for a bf16 one not accumulated into: the sums' high halves
 * are kept in the output itself, their low halves in scratch), counted in
 * scratch_bytes; it is used when the budget holds it
 * beside a block of min(B, 256) rows. Otherwise the call runs in tiles of
 * 2048 classes ("recompute" order): pass 1 computes each row's softmax
 * statistics tile by tile; pass 2 computes each tile's logits again, its
 * gradient, grad_hidden's f32 sums (4 B H bytes, with a 16-bit grad_hidden)
 * and the tile's complete grad_linear_weight (an f32 2048 x H buffer), one
 * more logits GEMM (about 4/3 of the time) and no V x H buffer; groups of
 * up to 1024 rows, as many as the budget holds beside those (16 at least),
 * plus a 2048 x H f32 tile of a widened 16-bit weight when the products are
 * f32. An f32 grad_linear_weight needs neither. All of it is allocated
 * before the first output is written: a call that fails leaves its outputs
 * untouched.
 *
 * Gradients (each optional): d(loss)/d(input) * grad_scale (row i's
 * contribution times row_scale[i] when given), loss as for
 * xent_cross_entropy (the reduced loss for MEAN/SUM, the sum of row losses
 * for NONE). Output dtype: XENT_DTYPE_AUTO (its input's dtype, the default) or
 * XENT_F32. `accumulate` is a bit mask of XENT_ACCUMULATE_*: a gradient whose
 * bit is set is added to the values its output holds (in f32, rounded once)
 * instead of overwriting them (gradient accumulation over micro-batches);
 * rows skipped as ignored then keep their grad_hidden values.
 *
 * Determinism: bit-identical results for every thread count, threading
 * backend and host pool. xent owns the threading: it splits every GEMM into
 * fixed tiles (depending on B, V, H and scratch_bytes only) and calls the
 * BLAS single-threaded on each tile from its own threads. For OpenBLAS it
 * sets OpenBLAS's thread count to 1 while xent calls of this kind run
 * (restored when the last one returns): BLAS calls that other threads of the
 * process make meanwhile run single-threaded. Results may differ in the last
 * bits between BLAS libraries, CPUs and values of scratch_bytes.
 *
 * Accuracy: the logits carry the f32 GEMM's rounding error (about
 * sqrt(H) 2^-24 sum_k |h_k w_k| each); the cross-entropy adds its own bounds
 * (see the top of this file); the gradient GEMMs sum in f32, without each
 * row's target entry of the logits' gradient (about -1/rows under MEAN, the
 * others of the order of p/rows): it is added to their sums afterwards (s W
 * and s h, row by row), so no long f32 sum carries it (more accurate than
 * a dense GEMM of the same gradient, e.g. PyTorch's f32 path).
 *
 * bf16 hidden and linear_weight, on a CPU with AVX512_BF16, in a library
 * built with oneDNN (meson option onednn; Debian amd64's package is), with
 * every gradient wanted in bf16 (the dtype autograd needs): the three
 * products are oneDNN's native bf16 GEMMs (f32 sums; ~3.7x the f32 GEMM
 * rate on an AMD EPYC), and the logits' gradient is rounded to bf16 before
 * the two gradient products, as PyTorch's bf16 path does (the target entries stay
 * f32, above): each gradient element is
 * then within 2^-8 sum |g x| of its exact value (its terms' magnitudes),
 * not the f32 bound. Gradients wanted in f32, or XENT_NATIVE_BF16=0, keep
 * the f32 products. So does an Intel CPU without AMX, where oneDNN's bf16
 * GEMMs measured 1.7x slower than the widened products on OpenBLAS's f32
 * kernels (Emerald Rapids); the environment variable XENT_BF16_GEMM=onednn
 * or =f32 overrides that choice. Still bit-identical for every thread count
 * and backend.
 * oneDNN's own allocations are not checked: when one fails, oneDNN may
 * crash where xent would return XENT_ERROR_OUT_OF_MEMORY. Nor are the BLAS's
 * (OpenBLAS's small-matrix sgemm kernels for AVX-512 CPUs allocate, and
 * crash when that fails).
 *
 * OpenBLAS with runtime CPU dispatch (Debian's) falls back to its SSE3
 * ("Prescott") kernels on a CPU model newer than itself (Debian 12's on an
 * Emerald Rapids Xeon: 5x slower products). At the first call, when
 * OpenBLAS reports such a pre-AVX2 kernel set on a CPU with AVX2 and FMA,
 * xent makes it dispatch again to the best set the CPU runs (Cooperlake,
 * SkylakeX or Haswell), once per process. Not when OPENBLAS_CORETYPE is set
 * (the user's choice), nor with environment variable XENT_OPENBLAS_CORE=off.
 *
 * A library built without a BLAS (meson option blas=none) returns
 * XENT_ERROR_UNSUPPORTED here; xent_blas_backend() tells which BLAS it has.
 * ------------------------------------------------------------------------- */
#define XENT_ACCUMULATE_GRAD_HIDDEN 1
#define XENT_ACCUMULATE_GRAD_LINEAR_WEIGHT 2
#define XENT_ACCUMULATE_GRAD_LINEAR_BIAS 4

/* Default scratch budget of xent_linear_cross_entropy (bytes):
 * scratch_bytes = 0 stands for the larger of this and a block of
 * min(512, ceil(B / 4)) rows, 4 (V + H) bytes each. Every block of rows
 * packs linear_weight twice and reads and writes grad_linear_weight once, so
 * larger blocks cost less: at B x H x V = 2048 x 2048 x 128256 (f32, 2
 * threads) the call took 1.13-1.15x the time of its three GEMMs alone with
 * 256 rows per block (what 128 MiB holds there), 1.07-1.09x with 512. */
#define XENT_LINEAR_CE_DEFAULT_SCRATCH_BYTES ((size_t)128 << 20)

typedef struct xent_linear_cross_entropy_args {
  size_t struct_size;
  size_t batch;       /* B rows (tokens), may be 0 */
  size_t num_classes; /* V >= 1 */
  size_t hidden_size; /* H >= 1 */

  const void* hidden;           /* B x H, required */
  size_t hidden_stride;         /* elements; 0 = H */
  int32_t hidden_dtype;         /* XENT_F32 (default) / XENT_BF16 / XENT_F16 */
  int32_t linear_weight_dtype;  /* must equal hidden_dtype; default XENT_F32 */
  const void* linear_weight;    /* V x H, required */
  size_t linear_weight_stride;  /* elements; 0 = H */
  const void* linear_bias;      /* V values, optional */
  int32_t linear_bias_dtype;    /* XENT_F32 (default) or linear_weight_dtype */
  int32_t target_dtype;         /* XENT_I64 (default) / XENT_I32 */
  const void* target;           /* B class indices, required */
  size_t target_stride;         /* elements between rows' indices; 0 = 1 */

  const float* weight;    /* V class weights, optional */
  const float* row_scale; /* B gradient multipliers, optional */
  int64_t ignore_index;   /* default -100 */
  int32_t reduction;      /* xent_reduction; default MEAN (BATCHMEAN invalid) */
  float label_smoothing;  /* in [0, 1]; default 0 */
  float z_loss;           /* >= 0, finite; default 0 */
  float softcap;          /* 0 (default) = off, else finite and >= FLT_MIN */
  float grad_scale;       /* finite; default 1 */
  int32_t accumulate;     /* bit mask of XENT_ACCUMULATE_*; default 0 */
  size_t scratch_bytes;   /* budget; 0 = the default (above) */

  /* Outputs, each optional. */
  float* loss;                     /* 1 value: the reduced loss */
  float* row_loss;                 /* B values */
  float* lse;                      /* B values: log-sum-exp of each logits row */
  void* grad_hidden;               /* B x H */
  size_t grad_hidden_stride;       /* 0 = H */
  void* grad_linear_weight;        /* V x H */
  size_t grad_linear_weight_stride; /* 0 = H */
  void* grad_linear_bias;          /* V values */
  int32_t grad_hidden_dtype;       /* AUTO (= hidden_dtype, default) or F32 */
  int32_t grad_linear_weight_dtype; /* AUTO (= linear_weight_dtype) or F32 */
  int32_t grad_linear_bias_dtype;  /* AUTO (= linear_weight_dtype) or F32 */

  /* Threading. */
  int32_t num_threads; /* 0 = all cores (default), 1 = caller's thread */
  xent_parallel_for_fn parallel_for; /* optional host pool */
  void* parallel_user;               /* passed to parallel_for */
} xent_linear_cross_entropy_args;

XENT_API xent_status xent_linear_cross_entropy_args_init(
    xent_linear_cross_entropy_args* args, size_t struct_size);
XENT_API xent_status xent_linear_cross_entropy(
    const xent_linear_cross_entropy_args* args);

/* Backward of xent_token_logprobs without any B x V intermediate: given the
 * upstream gradients of the per-row statistics, writes
 *   grad = d(sum_i g_lp[i] logprob[i] + g_H[i] entropy[i]
 *            + sum_j g_k[i, j] topk_logprobs[i, j] + g_kl[i] kl[i]) / d(logits)
 * in one pass over the logits (in place over them, or to a buffer). With p =
 * softmax(z), lp_c = log p_c, H the entropy, lq_c = log q_c (reference), KL =
 * KL(p || q), and delta_c = g_lp [c = y] + sum_j g_k[j] [c = idx_j]:
 *   d/dz_c = delta_c - p_c (g_lp + sum_j g_k[j])        (log-probabilities)
 *            - g_H p_c (lp_c + H)                          (entropy)
 *            + g_kl p_c (lp_c - lq_c - KL)                 (full KL; q fixed)
 *   d/dlogits_c = d/dz_c * dz_c/dlogits_c, where dz/dlogits = 1 / temperature,
 *            times (1 - tanh^2(logits_c / softcap)) with softcap.
 * Rows whose target is ignore_index have no log-probability term (their
 * logprob is the constant 0); their other terms apply. topk_indices may hold
 * any classes in [0, V) (duplicates add up): the top-k of the forward, or the
 * indices whose log-probabilities a loss used (e.g. a teacher's top-k).
 * A row whose upstream gradients are all 0 gets an exactly zero gradient row
 * (its logits are not read). -inf logits get gradient 0; a row with NaN, or
 * without any finite logit, gets NaN (as xent_cross_entropy).
 * lse, entropy, ref_lse and kl are the forward's outputs for these logits:
 * given, the pass reads each row once; NULL, they are computed here (one more
 * read of each row, from cache). grad_dtype: XENT_DTYPE_AUTO (the logits'),
 * F32, or the logits' dtype; grad may be `logits` itself (then the logits'
 * dtype and stride).
 */
typedef struct xent_token_logprobs_backward_args {
  size_t struct_size;
  size_t batch;
  size_t num_classes;

  const void* logits;   /* B x V, the forward's logits; required */
  size_t logits_stride;
  int32_t logits_dtype;
  int32_t target_dtype; /* XENT_I64 (default) / XENT_I32 */
  const void* target;   /* B indices; required by grad_logprob */
  size_t target_stride; /* 0 = 1 */
  int64_t ignore_index; /* default -100 */
  float temperature;    /* the forward's; default 1 */
  float softcap;        /* the forward's; 0 (default) = off */

  /* Upstream gradients, B values each; NULL = 0. */
  const float* grad_logprob;
  const float* grad_entropy;
  /* The forward's statistics, B values each, optional (see above). */
  const float* lse;
  const float* entropy;

  /* Gradient of log-probabilities at given classes: B x k, packed. */
  int32_t topk;          /* k: 0 (default) to XENT_TOPK_MAX */
  int32_t reserved0;     /* must be 0 */
  const int64_t* topk_indices;      /* B x k classes in [0, V); required by the next */
  const float* grad_topk_logprobs;  /* B x k upstream gradients */

  /* Gradient of the full KL(p || q) against a reference model's logits. */
  const void* ref_logits;   /* B x V; required by grad_kl */
  size_t ref_logits_stride; /* 0 = V */
  int32_t ref_logits_dtype; /* must equal logits_dtype; default XENT_F32 */
  int32_t reserved1;        /* must be 0 */
  const float* grad_kl;     /* B values */
  const float* ref_lse;     /* B values, optional: the forward's */
  const float* kl;          /* B values, optional: the forward's */

  void* grad;           /* B x V, required */
  size_t grad_stride;   /* 0 = V */
  int32_t grad_dtype;   /* XENT_DTYPE_AUTO (default) / F32 / the logits' */

  int32_t num_threads;
  xent_parallel_for_fn parallel_for;
  void* parallel_user;
} xent_token_logprobs_backward_args;

XENT_API xent_status xent_token_logprobs_backward_args_init(
    xent_token_logprobs_backward_args* args, size_t struct_size);
XENT_API xent_status xent_token_logprobs_backward(
    const xent_token_logprobs_backward_args* args);

/* ---------------------------------------------------------------------------
 * KL penalty estimators per token (RL: PPO/GRPO's KL to a reference policy,
 * from the sampled tokens' log-probabilities; J. Schulman, "Approximating KL
 * divergence", 2020). With d = logprob - ref_logprob and the log-ratio r =
 * -d clamped to [-log_ratio_clamp, log_ratio_clamp] (when > 0):
 *   K1: -r          K2: r^2 / 2          K3: exp(r) - r - 1 (low variance)
 *   ABS: |r|
 * then clamped to [-value_clamp, value_clamp] (when > 0). verl's
 * "low_var_kl" is K3 with log_ratio_clamp = 20, value_clamp = 10; TRL's GRPO
 * and OpenRLHF use K3 unclamped.
 * grad_logprob = grad_output * d(penalty)/d(logprob): K1: 1, K2: -r, K3:
 * 1 - exp(r), ABS: -sign(r) (0 at 0), and 0 where a clamp is active
 * (strictly outside its range: as torch.clamp). straight_through = 1 gives
 * the K2 gradient d whatever the estimator (verl's "k3+": the estimator's
 * value, the gradient of an unbiased KL gradient estimate). The gradient
 * with respect to ref_logprob is -grad_logprob.
 * Here batch is the number of values n (any shape, flattened) and
 * num_classes must be 1. NaN gives NaN. Runs on the calling thread.
 * ------------------------------------------------------------------------- */
typedef enum xent_kl_estimator {
  XENT_KL_K1 = 0,
  XENT_KL_K2 = 1,
  XENT_KL_K3 = 2,
  XENT_KL_ABS = 3
} xent_kl_estimator;

typedef struct xent_kl_penalty_args {
  size_t struct_size;
  size_t batch;        /* n values */
  size_t num_classes;  /* must be 1 */

  const float* logprob;     /* n values, required */
  const float* ref_logprob; /* n values, required */
  int32_t estimator;        /* xent_kl_estimator; default XENT_KL_K3 */
  int32_t straight_through; /* 0 (default) or 1 */
  float log_ratio_clamp;    /* 0 (default) = off, else > 0 */
  float value_clamp;        /* 0 (default) = off, else > 0 */
  const float* grad_output; /* n values, optional (1 when NULL) */

  float* penalty;      /* n values */
  float* grad_logprob; /* n values */

  int32_t num_threads; /* accepted for uniformity; unused */
  int32_t reserved0;   /* must be 0 */
  xent_parallel_for_fn parallel_for;
  void* parallel_user;
} xent_kl_penalty_args;

XENT_API xent_status xent_kl_penalty_args_init(xent_kl_penalty_args* args,
                                               size_t struct_size);
XENT_API xent_status xent_kl_penalty(const xent_kl_penalty_args* args);

/* ---------------------------------------------------------------------------
 * Vocab-parallel cross-entropy: the V classes of the logits are split into
 * column shards held by different processes (a tensor-parallel LM head), each
 * rank holding all B rows of its columns. xent brings no transport; a call
 * sequence per rank is:
 *   1. xent_cross_entropy_shard_stats: per-row statistics of this rank's
 *      shard into `stats`, xent_cross_entropy_shard_stats_doubles(B,
 *      label_smoothing) doubles (O(B), never O(B V));
 *   2. the caller gathers every rank's stats in rank order into one array of
 *      num_shards times that (one all-gather of equal-sized buffers);
 *   3. xent_cross_entropy_shard_finish: merges them and writes the loss,
 *      row_loss, lse (identical bits on every rank running the same libxent
 *      build, whatever its SIMD target: the merge is scalar code) and this
 *      shard's gradient.
 * The result is xent_cross_entropy's over the whole B x V logits (class-index
 * targets), with every option: targets and `weight` are global (class indices
 * in [0, V), V class weights: pass the whole weight vector on every rank), and
 * label smoothing uses the global V. Both calls must get the same targets,
 * ignore_index, weight, label_smoothing and softcap.
 *
 * Shards: rank r holds columns [class_offset, class_offset + shard_classes),
 * shard_classes >= 1; in rank order they tile [0, V) (rank 0 at 0, each next
 * where the previous ends, the last ending at V). finish checks this from the
 * stats, which also record each shard's columns (once per rank).
 *
 * Determinism: the statistics of a row are merged in double precision in a
 * fixed pairwise tree (the same tree xent_cross_entropy uses over 4096-class
 * segments, here over ranks), so every rank computes the same bits, for any
 * thread count. The results are bit-identical to xent_cross_entropy's on the
 * same SIMD target when the shards are aligned: every shard but the last has
 * the same width 4096 * 2^k (k >= 0), so rank r starts at r * 4096 * 2^k, and
 * the last holds the remaining 1 to 4096 * 2^k classes (e.g. V = 32768 on 1,
 * 2, 4 or 8 ranks; V = 3 * 8192 - 100 on 3 ranks of 8192, 8192 and 8092; one
 * rank of any V). Other splits agree with xent_cross_entropy within the
 * accuracy contract above (the same f64 merge in another order).
 *
 * Memory: finish allocates O(B) (under 64 bytes per row) and O(num_shards)
 * besides xent_cross_entropy's scratch.
 *
 * The stats are opaque bytes in a double array (their contents and size may
 * change between library versions: pass them from shard_stats to
 * shard_finish of the same library version, as raw bytes, e.g. an all-gather
 * of float64 or uint8 tensors). They need no alignment. Their size, from
 * xent_cross_entropy_shard_stats_doubles: a header of 4 doubles per rank (its
 * columns and batch), then per row 16 bytes (the row's max and target logit
 * as f32, its sum of exps as f64), 32 with label_smoothing > 0 (also the
 * smoothing sums); so the all-gather moves 16 (32) bytes per row and rank.
 * ------------------------------------------------------------------------- */

/* The doubles of one rank's stats for `batch` rows with this
 * label_smoothing (the value both calls get; > 0 adds the smoothing sums):
 * the size of shard_stats' `stats`; finish's is num_shards times this. 0 when
 * it does not fit size_t. */
XENT_API size_t xent_cross_entropy_shard_stats_doubles(size_t batch,
                                                       float label_smoothing);

typedef struct xent_cross_entropy_shard_stats_args {
  size_t struct_size;
  size_t batch;         /* B, may be 0 */
  size_t num_classes;   /* V >= 1: all shards' classes */
  size_t shard_classes; /* this shard's columns, >= 1 */
  size_t class_offset;  /* the first column's class index; + shard_classes <= V */

  const void* logits;   /* B x shard_classes, required */
  size_t logits_stride; /* elements; 0 = shard_classes */
  int32_t logits_dtype; /* XENT_F32 (default) / XENT_BF16 / XENT_F16 */

  int32_t target_dtype; /* XENT_I64 (default) / XENT_I32: global indices */
  const void* target;   /* B indices in [0, V) or ignore_index; required */
  size_t target_stride; /* elements between rows' indices (0 = 1) */

  const float* weight;   /* V global class weights, optional */
  int64_t ignore_index;  /* default -100 */
  float label_smoothing; /* in [0, 1]; default 0 */
  float softcap;         /* 0 (default) = off, else finite and >= FLT_MIN */

  double* stats; /* xent_cross_entropy_shard_stats_doubles(B,
                    label_smoothing), required */

  int32_t num_threads;
  int32_t reserved0; /* must be 0 */
  xent_parallel_for_fn parallel_for;
  void* parallel_user;
} xent_cross_entropy_shard_stats_args;

XENT_API xent_status xent_cross_entropy_shard_stats_args_init(
    xent_cross_entropy_shard_stats_args* args, size_t struct_size);
XENT_API xent_status xent_cross_entropy_shard_stats(
    const xent_cross_entropy_shard_stats_args* args);

/* The outputs are xent_cross_entropy's with logits = the whole B x V matrix:
 * loss and row_loss and lse (B values) the same on every rank; grad (B x
 * shard_classes, may be `logits` itself, in place) this shard's columns of
 * the gradient. MEAN divides by the sum of w_y over the non-ignored rows, as
 * xent_cross_entropy. Every rank must pass the same stats. */
typedef struct xent_cross_entropy_shard_finish_args {
  size_t struct_size;
  size_t batch;         /* B, may be 0 */
  size_t num_classes;   /* V >= 1 */
  size_t shard_classes; /* this shard's columns, >= 1 */
  size_t class_offset;  /* as in shard_stats */

  const void* logits; /* B x shard_classes, required (read for the gradient) */
  size_t logits_stride;
  int32_t logits_dtype;

  int32_t target_dtype;
  const void* target;
  size_t target_stride;

  const float* weight;    /* V global class weights, optional */
  const float* row_scale; /* B gradient multipliers, optional */

  int64_t ignore_index;
  int32_t reduction; /* default MEAN */
  float label_smoothing;
  float z_loss;
  float softcap;
  float grad_scale;
  int32_t reserved0; /* must be 0 */

  const double* stats; /* num_shards x xent_cross_entropy_shard_stats_doubles(
                          B, label_smoothing), rank order; required */
  size_t num_shards;   /* >= 1 */

  float* loss;
  float* row_loss;
  float* lse;
  void* grad; /* B x shard_classes */
  size_t grad_stride;
  int32_t grad_dtype;

  int32_t num_threads;
  xent_parallel_for_fn parallel_for;
  void* parallel_user;
} xent_cross_entropy_shard_finish_args;

XENT_API xent_status xent_cross_entropy_shard_finish_args_init(
    xent_cross_entropy_shard_finish_args* args, size_t struct_size);
XENT_API xent_status xent_cross_entropy_shard_finish(
    const xent_cross_entropy_shard_finish_args* args);

/* ---------------------------------------------------------------------------
 * Vocab-parallel token log-probabilities (RL, evaluation): the per-row log
 * p(target), entropy and lse of xent_token_logprobs over logits whose V
 * classes are column shards held by different ranks, in the same call
 * sequence as the vocab-parallel cross-entropy above:
 *   1. xent_token_logprobs_shard_stats: this rank's per-row statistics,
 *      xent_token_logprobs_shard_stats_doubles(B, with_entropy) doubles;
 *   2. the caller all-gathers them in rank order;
 *   3. xent_token_logprobs_shard_finish: merges them and writes logprob,
 *      entropy and lse, the same bits on every rank (scalar code).
 * Shards, alignment and determinism are the cross-entropy's: the results are
 * bit-identical to xent_token_logprobs' on the same SIMD target when every
 * shard but the last is 4096 * 2^k classes wide, and agree within the
 * accuracy contract otherwise. target (global class indices) is optional;
 * finish writes logprob only when the stats were computed with the same
 * targets. Temperature and softcap apply in shard_stats (every rank passes
 * the same values); finish only merges.
 *
 * The gradient needs no communication: xent_token_logprobs_shard_backward
 * writes the shard's columns of xent_token_logprobs_backward's gradient (of
 * g_lp logprob + g_H entropy) from finish's lse and entropy and the shard's
 * own logits; the bits of the whole call's columns given the same lse and
 * entropy, for any split.
 *
 * Size: a header of 4 doubles per rank, then per row 16 bytes (the row's max
 * and target z as f32, its sum of exps as f64), 24 with with_entropy = 1
 * (also the entropy sum, f64). The stats are opaque, as the cross-entropy's.
 * ------------------------------------------------------------------------- */

/* The doubles of one rank's stats for `batch` rows (with_entropy 0 or 1);
 * finish's is num_shards times that. 0 when it does not fit size_t. */
XENT_API size_t xent_token_logprobs_shard_stats_doubles(size_t batch,
                                                        int32_t with_entropy);

typedef struct xent_token_logprobs_shard_stats_args {
  size_t struct_size;
  size_t batch;         /* B, may be 0 */
  size_t num_classes;   /* V >= 1: all shards' classes */
  size_t shard_classes; /* this shard's columns, >= 1 */
  size_t class_offset;  /* the first column's class index; + shard_classes <= V */

  const void* logits;   /* B x shard_classes, required */
  size_t logits_stride; /* elements; 0 = shard_classes */
  int32_t logits_dtype; /* XENT_F32 (default) / XENT_BF16 / XENT_F16 */

  int32_t target_dtype; /* XENT_I64 (default) / XENT_I32: global indices */
  const void* target;   /* B indices in [0, V) or ignore_index; optional */
  size_t target_stride; /* elements between rows' indices (0 = 1) */
  int64_t ignore_index; /* default -100 */

  float temperature;    /* finite, >= FLT_MIN; default 1 */
  float softcap;        /* 0 (default) = off, else finite and >= FLT_MIN */
  int32_t with_entropy; /* 1: also the entropy sums (finish's entropy) */
  int32_t reserved0;    /* must be 0 */

  double* stats; /* xent_token_logprobs_shard_stats_doubles(B,
                    with_entropy), required */

  int32_t num_threads;
  int32_t reserved1; /* must be 0 */
  xent_parallel_for_fn parallel_for;
  void* parallel_user;
} xent_token_logprobs_shard_stats_args;

XENT_API xent_status xent_token_logprobs_shard_stats_args_init(
    xent_token_logprobs_shard_stats_args* args, size_t struct_size);
XENT_API xent_status xent_token_logprobs_shard_stats(
    const xent_token_logprobs_shard_stats_args* args);

/* logprob (0 for ignored rows), entropy and lse of the whole rows, as
 * xent_token_logprobs writes them. At least one output. */
typedef struct xent_token_logprobs_shard_finish_args {
  size_t struct_size;
  size_t batch;       /* B, may be 0 */
  size_t num_classes; /* V >= 1 */

  int32_t target_dtype;
  int32_t with_entropy; /* as in shard_stats */
  const void* target;   /* B global indices; needed by logprob */
  size_t target_stride;
  int64_t ignore_index;

  const double* stats; /* num_shards x xent_token_logprobs_shard_stats_doubles(
                          B, with_entropy), rank order; required */
  size_t num_shards;   /* >= 1 */

  float* logprob; /* B values */
  float* entropy; /* B values; needs with_entropy = 1 */
  float* lse;     /* B values */
} xent_token_logprobs_shard_finish_args;

XENT_API xent_status xent_token_logprobs_shard_finish_args_init(
    xent_token_logprobs_shard_finish_args* args, size_t struct_size);
XENT_API xent_status xent_token_logprobs_shard_finish(
    const xent_token_logprobs_shard_finish_args* args);

/* The shard's B x shard_classes columns of d(sum_i g_lp[i] logprob[i] +
 * g_H[i] entropy[i]) / dlogits (xent_token_logprobs_backward's formula with
 * the whole rows' lse and entropy; a row's one-hot term only in the shard
 * that holds its target). No statistics are computed: lse is required, and
 * entropy with grad_entropy. */
typedef struct xent_token_logprobs_shard_backward_args {
  size_t struct_size;
  size_t batch;         /* B, may be 0 */
  size_t num_classes;   /* V >= 1: all shards' classes */
  size_t shard_classes; /* this shard's columns, >= 1 */
  size_t class_offset;  /* + shard_classes <= V */

  const void* logits;   /* B x shard_classes, required */
  size_t logits_stride; /* 0 = shard_classes */
  int32_t logits_dtype;
  int32_t target_dtype; /* XENT_I64 (default) / XENT_I32: global indices */
  const void* target;   /* B indices; required by grad_logprob */
  size_t target_stride;
  int64_t ignore_index; /* default -100 */
  float temperature;    /* the forward's; default 1 */
  float softcap;        /* the forward's; 0 (default) = off */

  const float* grad_logprob; /* B upstream gradients; NULL = 0 */
  const float* grad_entropy; /* B upstream gradients; NULL = 0 */
  const float* lse;          /* B values from finish, required */
  const float* entropy;      /* B values from finish; required by grad_entropy */

  void* grad;         /* B x shard_classes, required; may be logits */
  size_t grad_stride; /* 0 = shard_classes */
  int32_t grad_dtype; /* XENT_DTYPE_AUTO (default) / F32 / the logits' */

  int32_t num_threads;
  xent_parallel_for_fn parallel_for;
  void* parallel_user;
} xent_token_logprobs_shard_backward_args;

XENT_API xent_status xent_token_logprobs_shard_backward_args_init(
    xent_token_logprobs_shard_backward_args* args, size_t struct_size);
XENT_API xent_status xent_token_logprobs_shard_backward(
    const xent_token_logprobs_shard_backward_args* args);

/* ---------------------------------------------------------------------------
 * Vocab-parallel distillation KL: KL(softmax(target / T) || softmax(input /
 * T)) per row (xent_divergence with both sides XENT_DIST_LOGITS, forward KL)
 * where the student's and the teacher's logits are column-sharded alike
 * (rank r holds the same columns of both). Call sequence per rank:
 *   1. xent_kl_div_logits_shard_stats: this rank's per-row statistics,
 *      xent_kl_div_logits_shard_stats_doubles(B) doubles: both sides' max
 *      and sum of exps, and the KL of the shard's own (renormalized)
 *      distributions;
 *   2. the caller all-gathers them in rank order (one collective);
 *   3. xent_kl_div_logits_shard_finish: merges them, writes loss / row_loss
 *      (the same bits on every rank: scalar code) and, when asked, the
 *      student shard's gradient (one more read of both shards, no
 *      communication).
 * The merge uses, per row, with w_r = exp(lse_p,r - lse_p) the teacher's mass
 * on rank r,
 *   KL = sum_r w_r (KL_r + (lse_p,r - lse_p) - (lse_q,r - lse_q)),
 * exact in real arithmetic; the result agrees with xent_divergence within the
 * accuracy contract for any split (not bit for bit: the shards' KL terms are
 * taken against their own lse). Reductions, t2_scaling, grad_scale and the
 * labels row mask are xent_divergence's; the teacher gets no gradient.
 * Size: a header of 4 doubles per rank, then 32 bytes per row (both maxes as
 * f32, both sums of exps and the shard's KL as f64). The stats are opaque.
 * ------------------------------------------------------------------------- */

/* The doubles of one rank's stats for `batch` rows; finish's is num_shards
 * times that. 0 when it does not fit size_t. */
XENT_API size_t xent_kl_div_logits_shard_stats_doubles(size_t batch);

typedef struct xent_kl_div_logits_shard_stats_args {
  size_t struct_size;
  size_t batch;         /* B, may be 0 */
  size_t num_classes;   /* V >= 1: all shards' classes */
  size_t shard_classes; /* this shard's columns, >= 1 */
  size_t class_offset;  /* + shard_classes <= V */

  const void* input;   /* the student's B x shard_classes logits, required */
  size_t input_stride; /* 0 = shard_classes */
  int32_t input_dtype; /* XENT_F32 (default) / XENT_BF16 / XENT_F16 */
  int32_t target_dtype; /* must equal input_dtype */
  const void* target;   /* the teacher's B x shard_classes logits, required */
  size_t target_stride;
  float temperature;    /* finite, >= FLT_MIN; default 1 */
  int32_t reserved0;    /* must be 0 */

  double* stats; /* xent_kl_div_logits_shard_stats_doubles(B), required */

  int32_t num_threads;
  int32_t reserved1; /* must be 0 */
  xent_parallel_for_fn parallel_for;
  void* parallel_user;
} xent_kl_div_logits_shard_stats_args;

XENT_API xent_status xent_kl_div_logits_shard_stats_args_init(
    xent_kl_div_logits_shard_stats_args* args, size_t struct_size);
XENT_API xent_status xent_kl_div_logits_shard_stats(
    const xent_kl_div_logits_shard_stats_args* args);

typedef struct xent_kl_div_logits_shard_finish_args {
  size_t struct_size;
  size_t batch;
  size_t num_classes;
  size_t shard_classes;
  size_t class_offset;

  const void* input; /* as in shard_stats; read for grad_input */
  size_t input_stride;
  int32_t input_dtype;
  int32_t target_dtype;
  const void* target;
  size_t target_stride;
  float temperature;

  int32_t t2_scaling; /* default 0 */
  int32_t reduction;  /* default BATCHMEAN (the distillation loss) */
  float grad_scale;   /* default 1 */

  const void* labels;   /* B class labels, optional row mask */
  size_t labels_stride; /* 0 = 1 */
  int64_t ignore_index; /* default -100 */
  int32_t labels_dtype; /* default XENT_I64 */
  int32_t reserved0;    /* must be 0 */

  const double* stats; /* num_shards x xent_kl_div_logits_shard_stats_doubles(B),
                          rank order; required */
  size_t num_shards;   /* >= 1 */

  float* loss;
  float* row_loss;
  void* grad_input; /* B x shard_classes, may be input (in place) */
  size_t grad_input_stride;
  int32_t grad_input_dtype; /* AUTO = input dtype */

  int32_t num_threads;
  xent_parallel_for_fn parallel_for;
  void* parallel_user;
} xent_kl_div_logits_shard_finish_args;

XENT_API xent_status xent_kl_div_logits_shard_finish_args_init(
    xent_kl_div_logits_shard_finish_args* args, size_t struct_size);
XENT_API xent_status xent_kl_div_logits_shard_finish(
    const xent_kl_div_logits_shard_finish_args* args);

/* Convenience: initialize an args struct with the caller's own sizeof, e.g.
 *   xent_cross_entropy_args a; XENT_ARGS_INIT(xent_cross_entropy_args, &a);
 */
#define XENT_ARGS_INIT(type, ptr) type##_init((ptr), sizeof(type))

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* XENT_XENT_H_ */
