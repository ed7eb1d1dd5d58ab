//! Raw FFI declarations for libxent, the C ABI in `include/xent/xent.h`.
//!
//! Every item here mirrors the header one to one (names included), so the
//! header's documentation is the documentation: read it for the semantics of
//! each field, default and status code. The safe wrapper is the `xent` crate.
//!
//! The `xent-sys-test` crate in this workspace compiles a C file against the
//! header and checks that the size and offset of every struct field and the
//! value of every constant here match it.
//!
//! Linking: the build script finds the library through `XENT_LIB_DIR` or
//! `pkg-config xent` (see `build.rs`).
#![allow(non_camel_case_types)]
#![deny(missing_docs)]

// `std::os::raw`, not `core::ffi` (whose C types need Rust 1.64): the MSRV is
// Debian 12's Rust 1.63. The types are the same; the crate needs std.
use std::os::raw::{c_char, c_int, c_void};

// ---------------------------------------------------------------------------
// Version (include/xent/version.h)

/// `XENT_VERSION_MAJOR` of the header these declarations mirror.
pub const XENT_VERSION_MAJOR: u32 = 0;
/// `XENT_VERSION_MINOR` of the header these declarations mirror.
pub const XENT_VERSION_MINOR: u32 = 1;
/// `XENT_VERSION_PATCH` of the header these declarations mirror.
pub const XENT_VERSION_PATCH: u32 = 0;
/// `XENT_ABI_VERSION`: the soname major (`libxent.so.1`).
pub const XENT_ABI_VERSION: u32 = 1;
/// `XENT_VERSION_NUMBER`: MAJOR * 10000 + MINOR * 100 + PATCH.
pub const XENT_VERSION_NUMBER: u32 = XENT_VERSION_MAJOR * 10000 + XENT_VERSION_MINOR * 100 + XENT_VERSION_PATCH;
/// `XENT_VERSION_STRING`: "MAJOR.MINOR.PATCH".
pub const XENT_VERSION_STRING: &str = "0.1.0";

// ---------------------------------------------------------------------------
// Status codes

/// `enum xent_status` (returned by value, so it has the C enum's size).
pub type xent_status = c_int;
/// Success.
pub const XENT_OK: xent_status = 0;
/// A pointer the operation needs is NULL.
pub const XENT_ERROR_NULL_POINTER: xent_status = 1;
/// num_classes == 0, a stride smaller than num_classes, or a size overflow.
pub const XENT_ERROR_INVALID_SHAPE: xent_status = 2;
/// An option value outside its domain.
pub const XENT_ERROR_INVALID_VALUE: xent_status = 3;
/// A class index outside [0, V) that is not ignore_index.
pub const XENT_ERROR_TARGET_OUT_OF_RANGE: xent_status = 4;
/// An unknown dtype value, or a dtype that argument does not accept.
pub const XENT_ERROR_INVALID_DTYPE: xent_status = 5;
/// An unknown enum value.
pub const XENT_ERROR_INVALID_ENUM: xent_status = 6;
/// A bad `struct_size`, or non-zero bytes the library does not know.
pub const XENT_ERROR_INVALID_STRUCT: xent_status = 7;
/// An output overlaps an input or another output (other than in-place pairs).
pub const XENT_ERROR_ALIASING: xent_status = 8;
/// An unknown or unsupported SIMD target name.
pub const XENT_ERROR_UNSUPPORTED_TARGET: xent_status = 9;
/// Scratch memory could not be allocated.
pub const XENT_ERROR_OUT_OF_MEMORY: xent_status = 10;
/// The caller's parallel_for failed or did not run every task.
pub const XENT_ERROR_CALLBACK: xent_status = 11;
/// An internal invariant failed (a bug in xent).
pub const XENT_ERROR_INTERNAL: xent_status = 12;
/// The operation is not available in this build (e.g. no BLAS).
pub const XENT_ERROR_UNSUPPORTED: xent_status = 13;

// ---------------------------------------------------------------------------
// Enumerations (stored in int32_t fields)

/// `enum xent_dtype`; fields holding one are `int32_t`.
pub type xent_dtype = c_int;
/// For an output: the dtype of the input it derives from.
pub const XENT_DTYPE_AUTO: xent_dtype = 0;
/// IEEE binary32.
pub const XENT_F32: xent_dtype = 1;
/// bfloat16.
pub const XENT_BF16: xent_dtype = 2;
/// IEEE binary16.
pub const XENT_F16: xent_dtype = 3;
/// `int32_t` class indices.
pub const XENT_I32: xent_dtype = 4;
/// `int64_t` class indices.
pub const XENT_I64: xent_dtype = 5;

/// `enum xent_reduction`.
pub type xent_reduction = c_int;
/// No reduction (loss = sum).
pub const XENT_REDUCTION_NONE: xent_reduction = 0;
/// Mean (see each operation for the divisor).
pub const XENT_REDUCTION_MEAN: xent_reduction = 1;
/// Sum.
pub const XENT_REDUCTION_SUM: xent_reduction = 2;
/// Sum / number of rows (KL, JSD, BCE only).
pub const XENT_REDUCTION_BATCHMEAN: xent_reduction = 3;

/// `enum xent_dist_kind`.
pub type xent_dist_kind = c_int;
/// Unnormalized: softmax(x / temperature).
pub const XENT_DIST_LOGITS: xent_dist_kind = 0;
/// Log-probabilities, used as given.
pub const XENT_DIST_LOG_PROBS: xent_dist_kind = 1;
/// Probabilities, used as given.
pub const XENT_DIST_PROBS: xent_dist_kind = 2;

/// `enum xent_divergence_kind`.
pub type xent_divergence_kind = c_int;
/// KL(P || Q).
pub const XENT_DIVERGENCE_KL: xent_divergence_kind = 0;
/// Generalized Jensen-Shannon with weight beta.
pub const XENT_DIVERGENCE_JSD: xent_divergence_kind = 1;

/// `enum xent_kl_estimator` (per-token KL penalty estimators).
pub type xent_kl_estimator = c_int;
/// `logprob - ref_logprob`.
pub const XENT_KL_K1: xent_kl_estimator = 0;
/// `(logprob - ref_logprob)^2 / 2`.
pub const XENT_KL_K2: xent_kl_estimator = 1;
/// `exp(r) - r - 1`, `r = ref_logprob - logprob` (low variance).
pub const XENT_KL_K3: xent_kl_estimator = 2;
/// `|logprob - ref_logprob|`.
pub const XENT_KL_ABS: xent_kl_estimator = 3;

/// `XENT_TOPK_MAX`: the largest top-k of `xent_token_logprobs`.
pub const XENT_TOPK_MAX: i32 = 64;

// ---------------------------------------------------------------------------
// Threading

/// `xent_task_fn`: runs tasks `[begin, end)`.
pub type xent_task_fn = Option<unsafe extern "C" fn(task_ctx: *mut c_void, begin: usize, end: usize)>;

/// `xent_parallel_for_fn`: a host thread pool (see the header for the contract).
pub type xent_parallel_for_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        num_tasks: usize,
        task: xent_task_fn,
        task_ctx: *mut c_void,
        num_threads_hint: i32,
    ) -> c_int,
>;

// ---------------------------------------------------------------------------
// Argument structs

/// `xent_cross_entropy_args`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_cross_entropy_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,

    pub logits: *const c_void,
    pub logits_stride: usize,
    pub logits_dtype: i32,

    pub target_dtype: i32,
    pub target: *const c_void,
    pub target_stride: usize,

    pub weight: *const f32,
    pub row_scale: *const f32,

    pub ignore_index: i64,
    pub reduction: i32,
    pub label_smoothing: f32,
    pub z_loss: f32,
    pub softcap: f32,
    pub grad_scale: f32,
    pub reserved0: i32,

    pub loss: *mut f32,
    pub row_loss: *mut f32,
    pub lse: *mut f32,
    pub grad: *mut c_void,
    pub grad_stride: usize,
    pub grad_dtype: i32,

    pub num_threads: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `xent_bce_args`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_bce_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,

    pub logits: *const c_void,
    pub logits_stride: usize,
    pub logits_dtype: i32,

    pub target_dtype: i32,
    pub target: *const c_void,
    pub target_stride: usize,

    pub weight: *const f32,
    pub weight_stride: usize,
    pub pos_weight: *const f32,

    pub reduction: i32,
    pub grad_scale: f32,

    pub loss: *mut f32,
    pub row_loss: *mut f32,
    pub elem_loss: *mut f32,
    pub elem_loss_stride: usize,
    pub grad: *mut c_void,
    pub grad_stride: usize,
    pub grad_dtype: i32,

    pub num_threads: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `xent_divergence_args`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_divergence_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,

    pub input: *const c_void,
    pub input_stride: usize,
    pub input_dtype: i32,
    pub input_kind: i32,

    pub target: *const c_void,
    pub target_stride: usize,
    pub target_dtype: i32,
    pub target_kind: i32,

    pub divergence: i32,
    pub beta: f32,
    pub temperature: f32,
    pub t2_scaling: i32,
    pub reduction: i32,
    pub grad_scale: f32,

    pub labels: *const c_void,
    pub labels_stride: usize,
    pub ignore_index: i64,
    pub labels_dtype: i32,
    pub reserved0: i32,

    pub loss: *mut f32,
    pub row_loss: *mut f32,
    pub elem_loss: *mut f32,
    pub elem_loss_stride: usize,
    pub grad_input: *mut c_void,
    pub grad_input_stride: usize,
    pub grad_target: *mut c_void,
    pub grad_target_stride: usize,
    pub grad_input_dtype: i32,
    pub grad_target_dtype: i32,

    pub num_threads: i32,
    pub reserved1: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `xent_softmax_args`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_softmax_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,

    pub logits: *const c_void,
    pub logits_stride: usize,
    pub logits_dtype: i32,
    pub temperature: f32,

    pub probs: *mut c_void,
    pub probs_stride: usize,
    pub log_probs: *mut c_void,
    pub log_probs_stride: usize,
    pub probs_dtype: i32,
    pub log_probs_dtype: i32,
    pub lse: *mut f32,
    pub entropy: *mut f32,

    pub num_threads: i32,
    pub reserved0: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `xent_softmax_backward_args`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_softmax_backward_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,

    pub output: *const c_void,
    pub output_stride: usize,
    pub output_dtype: i32,
    pub output_kind: i32,

    pub grad_output: *const c_void,
    pub grad_output_stride: usize,
    pub grad_output_dtype: i32,
    pub temperature: f32,

    pub grad_input: *mut c_void,
    pub grad_input_stride: usize,
    pub grad_input_dtype: i32,

    pub num_threads: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `xent_token_logprobs_args`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_token_logprobs_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,

    pub logits: *const c_void,
    pub logits_stride: usize,
    pub logits_dtype: i32,
    pub target_dtype: i32,
    pub target: *const c_void,
    pub target_stride: usize,

    pub ignore_index: i64,
    pub temperature: f32,
    pub softcap: f32,

    pub logprob: *mut f32,
    pub entropy: *mut f32,
    pub lse: *mut f32,

    pub num_threads: i32,
    pub reserved0: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,

    // Appended after 0.1.0.
    pub argmax: *mut i64,
    pub argmax_logprob: *mut f32,
    pub topk: i32,
    pub reserved1: i32,
    pub topk_logprobs: *mut f32,
    pub topk_indices: *mut i64,
    pub topk_mass: *mut f32,
    pub ref_logits: *const c_void,
    pub ref_logits_stride: usize,
    pub ref_logits_dtype: i32,
    pub reserved2: i32,
    pub ref_logprob: *mut f32,
    pub ref_lse: *mut f32,
    pub kl: *mut f32,
}

/// `xent_token_logprobs_backward_args`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_token_logprobs_backward_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,

    pub logits: *const c_void,
    pub logits_stride: usize,
    pub logits_dtype: i32,
    pub target_dtype: i32,
    pub target: *const c_void,
    pub target_stride: usize,
    pub ignore_index: i64,
    pub temperature: f32,
    pub softcap: f32,

    pub grad_logprob: *const f32,
    pub grad_entropy: *const f32,
    pub lse: *const f32,
    pub entropy: *const f32,

    pub topk: i32,
    pub reserved0: i32,
    pub topk_indices: *const i64,
    pub grad_topk_logprobs: *const f32,

    pub ref_logits: *const c_void,
    pub ref_logits_stride: usize,
    pub ref_logits_dtype: i32,
    pub reserved1: i32,
    pub grad_kl: *const f32,
    pub ref_lse: *const f32,
    pub kl: *const f32,

    pub grad: *mut c_void,
    pub grad_stride: usize,
    pub grad_dtype: i32,

    pub num_threads: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `xent_kl_penalty_args`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_kl_penalty_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,

    pub logprob: *const f32,
    pub ref_logprob: *const f32,
    pub estimator: i32,
    pub straight_through: i32,
    pub log_ratio_clamp: f32,
    pub value_clamp: f32,
    pub grad_output: *const f32,

    pub penalty: *mut f32,
    pub grad_logprob: *mut f32,

    pub num_threads: i32,
    pub reserved0: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `xent_cross_entropy_shard_stats_args` (vocab-parallel cross-entropy, phase 1).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_cross_entropy_shard_stats_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,
    pub shard_classes: usize,
    pub class_offset: usize,

    pub logits: *const c_void,
    pub logits_stride: usize,
    pub logits_dtype: i32,

    pub target_dtype: i32,
    pub target: *const c_void,
    pub target_stride: usize,

    pub weight: *const f32,
    pub ignore_index: i64,
    pub label_smoothing: f32,
    pub softcap: f32,

    pub stats: *mut f64,

    pub num_threads: i32,
    pub reserved0: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `xent_cross_entropy_shard_finish_args` (vocab-parallel cross-entropy, phase 2).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_cross_entropy_shard_finish_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,
    pub shard_classes: usize,
    pub class_offset: usize,

    pub logits: *const c_void,
    pub logits_stride: usize,
    pub logits_dtype: i32,

    pub target_dtype: i32,
    pub target: *const c_void,
    pub target_stride: usize,

    pub weight: *const f32,
    pub row_scale: *const f32,

    pub ignore_index: i64,
    pub reduction: i32,
    pub label_smoothing: f32,
    pub z_loss: f32,
    pub softcap: f32,
    pub grad_scale: f32,
    pub reserved0: i32,

    pub stats: *const f64,
    pub num_shards: usize,

    pub loss: *mut f32,
    pub row_loss: *mut f32,
    pub lse: *mut f32,
    pub grad: *mut c_void,
    pub grad_stride: usize,
    pub grad_dtype: i32,

    pub num_threads: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `xent_token_logprobs_shard_stats_args` (vocab-parallel token log-probs, phase 1).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_token_logprobs_shard_stats_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,
    pub shard_classes: usize,
    pub class_offset: usize,

    pub logits: *const c_void,
    pub logits_stride: usize,
    pub logits_dtype: i32,

    pub target_dtype: i32,
    pub target: *const c_void,
    pub target_stride: usize,
    pub ignore_index: i64,

    pub temperature: f32,
    pub softcap: f32,
    pub with_entropy: i32,
    pub reserved0: i32,

    pub stats: *mut f64,

    pub num_threads: i32,
    pub reserved1: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `xent_token_logprobs_shard_finish_args` (vocab-parallel token log-probs, phase 2).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_token_logprobs_shard_finish_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,

    pub target_dtype: i32,
    pub with_entropy: i32,
    pub target: *const c_void,
    pub target_stride: usize,
    pub ignore_index: i64,

    pub stats: *const f64,
    pub num_shards: usize,

    pub logprob: *mut f32,
    pub entropy: *mut f32,
    pub lse: *mut f32,
}

/// `xent_token_logprobs_shard_backward_args` (vocab-parallel token log-probs, gradient).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_token_logprobs_shard_backward_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,
    pub shard_classes: usize,
    pub class_offset: usize,

    pub logits: *const c_void,
    pub logits_stride: usize,
    pub logits_dtype: i32,
    pub target_dtype: i32,
    pub target: *const c_void,
    pub target_stride: usize,
    pub ignore_index: i64,
    pub temperature: f32,
    pub softcap: f32,

    pub grad_logprob: *const f32,
    pub grad_entropy: *const f32,
    pub lse: *const f32,
    pub entropy: *const f32,

    pub grad: *mut c_void,
    pub grad_stride: usize,
    pub grad_dtype: i32,

    pub num_threads: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `xent_kl_div_logits_shard_stats_args` (vocab-parallel distillation KL, phase 1).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_kl_div_logits_shard_stats_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,
    pub shard_classes: usize,
    pub class_offset: usize,

    pub input: *const c_void,
    pub input_stride: usize,
    pub input_dtype: i32,
    pub target_dtype: i32,
    pub target: *const c_void,
    pub target_stride: usize,
    pub temperature: f32,
    pub reserved0: i32,

    pub stats: *mut f64,

    pub num_threads: i32,
    pub reserved1: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `xent_kl_div_logits_shard_finish_args` (vocab-parallel distillation KL, phase 2).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_kl_div_logits_shard_finish_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,
    pub shard_classes: usize,
    pub class_offset: usize,

    pub input: *const c_void,
    pub input_stride: usize,
    pub input_dtype: i32,
    pub target_dtype: i32,
    pub target: *const c_void,
    pub target_stride: usize,
    pub temperature: f32,

    pub t2_scaling: i32,
    pub reduction: i32,
    pub grad_scale: f32,

    pub labels: *const c_void,
    pub labels_stride: usize,
    pub ignore_index: i64,
    pub labels_dtype: i32,
    pub reserved0: i32,

    pub stats: *const f64,
    pub num_shards: usize,

    pub loss: *mut f32,
    pub row_loss: *mut f32,
    pub grad_input: *mut c_void,
    pub grad_input_stride: usize,
    pub grad_input_dtype: i32,

    pub num_threads: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `xent_linear_cross_entropy_args`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct xent_linear_cross_entropy_args {
    pub struct_size: usize,
    pub batch: usize,
    pub num_classes: usize,
    pub hidden_size: usize,

    pub hidden: *const c_void,
    pub hidden_stride: usize,
    pub hidden_dtype: i32,
    pub linear_weight_dtype: i32,
    pub linear_weight: *const c_void,
    pub linear_weight_stride: usize,
    pub linear_bias: *const c_void,
    pub linear_bias_dtype: i32,
    pub target_dtype: i32,
    pub target: *const c_void,
    pub target_stride: usize,

    pub weight: *const f32,
    pub row_scale: *const f32,
    pub ignore_index: i64,
    pub reduction: i32,
    pub label_smoothing: f32,
    pub z_loss: f32,
    pub softcap: f32,
    pub grad_scale: f32,
    pub accumulate: i32,
    pub scratch_bytes: usize,

    pub loss: *mut f32,
    pub row_loss: *mut f32,
    pub lse: *mut f32,
    pub grad_hidden: *mut c_void,
    pub grad_hidden_stride: usize,
    pub grad_linear_weight: *mut c_void,
    pub grad_linear_weight_stride: usize,
    pub grad_linear_bias: *mut c_void,
    pub grad_hidden_dtype: i32,
    pub grad_linear_weight_dtype: i32,
    pub grad_linear_bias_dtype: i32,

    pub num_threads: i32,
    pub parallel_for: xent_parallel_for_fn,
    pub parallel_user: *mut c_void,
}

/// `accumulate` bit: add to `grad_hidden` instead of overwriting it.
pub const XENT_ACCUMULATE_GRAD_HIDDEN: i32 = 1;
/// `accumulate` bit: add to `grad_linear_weight`.
pub const XENT_ACCUMULATE_GRAD_LINEAR_WEIGHT: i32 = 2;
/// `accumulate` bit: add to `grad_linear_bias`.
pub const XENT_ACCUMULATE_GRAD_LINEAR_BIAS: i32 = 4;
/// Default `scratch_bytes` of `xent_linear_cross_entropy` (bytes).
pub const XENT_LINEAR_CE_DEFAULT_SCRATCH_BYTES: usize = 128 << 20;

// ---------------------------------------------------------------------------
// Functions

extern "C" {
    /// Static description of a status. Never NULL.
    pub fn xent_status_string(status: xent_status) -> *const c_char;
    /// Detail about the last call on this thread. Never NULL.
    pub fn xent_last_error() -> *const c_char;

    /// "MAJOR.MINOR.PATCH" of the loaded library.
    pub fn xent_version_string() -> *const c_char;
    /// MAJOR * 10000 + MINOR * 100 + PATCH of the loaded library.
    pub fn xent_version_number() -> u32;
    /// XENT_ABI_VERSION the library was built with.
    pub fn xent_abi_version() -> u32;

    /// Threading backend compiled in: "openmp", "tbb" or "none".
    pub fn xent_threading_backend() -> *const c_char;
    /// Threads used for num_threads = 0 on this machine.
    pub fn xent_max_threads() -> i32;
    /// BLAS compiled in: "openblas", "blis" or "none".
    pub fn xent_blas_backend() -> *const c_char;

    /// Name of the SIMD target the next call will use.
    pub fn xent_active_target() -> *const c_char;
    /// Targets compiled in and supported by this CPU, best first.
    pub fn xent_supported_targets(names: *mut *const c_char, capacity: usize) -> usize;
    /// Forces every later call (process-wide) to use target `name`.
    pub fn xent_force_target(name: *const c_char) -> xent_status;

    /// Fills `args` with defaults; `struct_size` = `size_of::<xent_cross_entropy_args>()`.
    pub fn xent_cross_entropy_args_init(args: *mut xent_cross_entropy_args, struct_size: usize) -> xent_status;
    /// Softmax cross-entropy.
    pub fn xent_cross_entropy(args: *const xent_cross_entropy_args) -> xent_status;

    /// Fills `args` with defaults.
    pub fn xent_bce_args_init(args: *mut xent_bce_args, struct_size: usize) -> xent_status;
    /// Binary cross-entropy with logits.
    pub fn xent_bce_with_logits(args: *const xent_bce_args) -> xent_status;

    /// Fills `args` with defaults.
    pub fn xent_divergence_args_init(args: *mut xent_divergence_args, struct_size: usize) -> xent_status;
    /// KL divergence / generalized Jensen-Shannon.
    pub fn xent_divergence(args: *const xent_divergence_args) -> xent_status;

    /// Fills `args` with defaults.
    pub fn xent_softmax_args_init(args: *mut xent_softmax_args, struct_size: usize) -> xent_status;
    /// Softmax, log-softmax, log-sum-exp and entropy.
    pub fn xent_softmax(args: *const xent_softmax_args) -> xent_status;

    /// Fills `args` with defaults.
    pub fn xent_softmax_backward_args_init(args: *mut xent_softmax_backward_args, struct_size: usize) -> xent_status;
    /// Backward of softmax / log_softmax.
    pub fn xent_softmax_backward(args: *const xent_softmax_backward_args) -> xent_status;

    /// Fills `args` with defaults.
    pub fn xent_token_logprobs_args_init(args: *mut xent_token_logprobs_args, struct_size: usize) -> xent_status;
    /// Per-row token log-probabilities, entropy and log-sum-exp.
    pub fn xent_token_logprobs(args: *const xent_token_logprobs_args) -> xent_status;

    /// Fills `args` with defaults.
    pub fn xent_linear_cross_entropy_args_init(
        args: *mut xent_linear_cross_entropy_args,
        struct_size: usize,
    ) -> xent_status;
    /// Fused linear cross-entropy: loss and gradients of hidden, weight and bias.
    pub fn xent_linear_cross_entropy(args: *const xent_linear_cross_entropy_args) -> xent_status;

    /// Fills `args` with defaults.
    pub fn xent_token_logprobs_backward_args_init(
        args: *mut xent_token_logprobs_backward_args,
        struct_size: usize,
    ) -> xent_status;
    /// Gradient of the per-token statistics with respect to the logits.
    pub fn xent_token_logprobs_backward(args: *const xent_token_logprobs_backward_args) -> xent_status;

    /// Fills `args` with defaults.
    pub fn xent_kl_penalty_args_init(args: *mut xent_kl_penalty_args, struct_size: usize) -> xent_status;
    /// Per-token KL penalty estimators and their gradient.
    pub fn xent_kl_penalty(args: *const xent_kl_penalty_args) -> xent_status;

    /// Fills `args` with defaults.
    pub fn xent_cross_entropy_shard_stats_args_init(
        args: *mut xent_cross_entropy_shard_stats_args,
        struct_size: usize,
    ) -> xent_status;
    /// Doubles of one rank's vocab-parallel statistics for `batch` rows and
    /// this label smoothing (0 on overflow); the gathered stats hold
    /// `num_shards` times as many.
    pub fn xent_cross_entropy_shard_stats_doubles(batch: usize, label_smoothing: f32) -> usize;
    /// Vocab-parallel cross-entropy, phase 1: per-row statistics of a column shard.
    pub fn xent_cross_entropy_shard_stats(args: *const xent_cross_entropy_shard_stats_args) -> xent_status;

    /// Fills `args` with defaults.
    pub fn xent_cross_entropy_shard_finish_args_init(
        args: *mut xent_cross_entropy_shard_finish_args,
        struct_size: usize,
    ) -> xent_status;
    /// Vocab-parallel cross-entropy, phase 2: losses and the shard's gradient from every shard's statistics.
    pub fn xent_cross_entropy_shard_finish(args: *const xent_cross_entropy_shard_finish_args) -> xent_status;

    /// Doubles of one rank's vocab-parallel token log-prob statistics (0 on overflow).
    pub fn xent_token_logprobs_shard_stats_doubles(batch: usize, with_entropy: i32) -> usize;
    /// Fills `args` with defaults.
    pub fn xent_token_logprobs_shard_stats_args_init(
        args: *mut xent_token_logprobs_shard_stats_args,
        struct_size: usize,
    ) -> xent_status;
    /// Vocab-parallel token log-probs, phase 1: per-row statistics of a column shard.
    pub fn xent_token_logprobs_shard_stats(args: *const xent_token_logprobs_shard_stats_args) -> xent_status;
    /// Fills `args` with defaults.
    pub fn xent_token_logprobs_shard_finish_args_init(
        args: *mut xent_token_logprobs_shard_finish_args,
        struct_size: usize,
    ) -> xent_status;
    /// Vocab-parallel token log-probs, phase 2: log-prob, entropy and lse from every shard's statistics.
    pub fn xent_token_logprobs_shard_finish(args: *const xent_token_logprobs_shard_finish_args) -> xent_status;
    /// Fills `args` with defaults.
    pub fn xent_token_logprobs_shard_backward_args_init(
        args: *mut xent_token_logprobs_shard_backward_args,
        struct_size: usize,
    ) -> xent_status;
    /// Vocab-parallel token log-probs: the shard's gradient from the merged lse and entropy.
    pub fn xent_token_logprobs_shard_backward(args: *const xent_token_logprobs_shard_backward_args) -> xent_status;

    /// Doubles of one rank's vocab-parallel distillation KL statistics (0 on overflow).
    pub fn xent_kl_div_logits_shard_stats_doubles(batch: usize) -> usize;
    /// Fills `args` with defaults.
    pub fn xent_kl_div_logits_shard_stats_args_init(
        args: *mut xent_kl_div_logits_shard_stats_args,
        struct_size: usize,
    ) -> xent_status;
    /// Vocab-parallel distillation KL, phase 1: per-row statistics of the two shards.
    pub fn xent_kl_div_logits_shard_stats(args: *const xent_kl_div_logits_shard_stats_args) -> xent_status;
    /// Fills `args` with defaults.
    pub fn xent_kl_div_logits_shard_finish_args_init(
        args: *mut xent_kl_div_logits_shard_finish_args,
        struct_size: usize,
    ) -> xent_status;
    /// Vocab-parallel distillation KL, phase 2: losses and the student shard's gradient.
    pub fn xent_kl_div_logits_shard_finish(args: *const xent_kl_div_logits_shard_finish_args) -> xent_status;
}
