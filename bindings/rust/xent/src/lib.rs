//! Safe Rust API for **libxent**: fused loss kernels for LLM training on CPU
//! (softmax cross-entropy, KL/JSD, BCE-with-logits, the softmax family and
//! token log-probabilities), SIMD with runtime dispatch, behind a stable C
//! ABI (`include/xent/xent.h`; raw declarations in the `xent-sys` crate).
//!
//! * Inputs and outputs are slices viewed as `B x V` matrices ([`Matrix`],
//!   [`MatrixMut`]: rows of `V` contiguous classes, `stride` elements apart),
//!   per-row vectors (`&[f32]`, `&mut [f32]`) and class indices ([`Labels`]).
//!   Every view is checked to lie inside its slice, and every shape against
//!   the operation's `B x V`, before libxent is called: safe code cannot make
//!   the C side read or write out of bounds.
//! * Element types are `f32`, [`half::bf16`] and [`half::f16`] ([`Float`]);
//!   class indices `i32` or `i64` ([`Index`]).
//! * Each operation is a builder: options and outputs first, then `run` with
//!   the inputs, returning `Result<_, Error>`; the [`Error`] carries the C
//!   status and message. Options left unset keep libxent's defaults.
//! * Gradients can overwrite their input through `run_in_place(&mut ...)`,
//!   the only way an output may share memory with an input.
//! * Threads: `num_threads(n)` per call (0 = all cores), or a host pool through
//!   [`ParallelFor`] (with the `rayon` feature, [`Rayon`]). Results do not
//!   depend on the thread count.
//!
//! ```
//! # fn main() -> xent::Result<()> {
//! use xent::{CrossEntropy, Matrix, MatrixMut, Reduction};
//!
//! // 2 rows (tokens) x 4 classes (vocabulary), class-index targets.
//! let logits = vec![2.0f32, 1.0, 0.1, -1.0,
//!                   0.5, 2.5, 0.3, 0.0];
//! let targets = vec![0i64, 1];
//! let mut grad = vec![0.0f32; 8];
//! let loss = CrossEntropy::new()
//!     .reduction(Reduction::Mean)
//!     .label_smoothing(0.1)
//!     .grad(MatrixMut::new(&mut grad, 2, 4)?)
//!     .run(Matrix::new(&logits, 2, 4)?, &targets)?;
//! assert!(loss.is_finite());
//! // Each gradient row of a softmax cross-entropy sums to zero.
//! assert!(grad[..4].iter().sum::<f32>().abs() < 1e-6);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::{CStr, CString};
use std::os::raw::c_char;

pub use half;
pub use xent_sys as sys;

mod dtype;
mod error;
mod matrix;
mod ops;
mod options;
mod parallel;

pub use dtype::{DType, Float, Index};
pub use error::{Error, Result, Status};
pub use matrix::{Labels, Layout, Matrix, MatrixMut};
pub use ops::bce::Bce;
pub use ops::cross_entropy::{CeTarget, CrossEntropy};
pub use ops::divergence::Divergence;
pub use ops::linear_cross_entropy::LinearCrossEntropy;
pub use ops::softmax::{InPlace, Softmax, SoftmaxBackward};
pub use ops::token_logprobs::TokenLogprobs;
pub use ops::token_stats::{KlEstimator, KlPenalty, TokenStats, TokenStatsBackward};
pub use options::{DistKind, Reduction};
#[cfg(feature = "rayon")]
pub use parallel::Rayon;
pub use parallel::{ParallelFor, ScopedThreads, Sequential, Tasks};

/// Copies a C string the library returned (never NULL by its contract).
fn c_string(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // Safety: non-NULL and NUL-terminated by the xent.h contract of the
    // function that returned it; copied out at once.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// "MAJOR.MINOR.PATCH" of the loaded libxent (`xent_version_string`).
pub fn version() -> String {
    // Safety: no arguments; returns a static string.
    c_string(unsafe { sys::xent_version_string() })
}

/// `MAJOR * 10000 + MINOR * 100 + PATCH` of the loaded libxent.
pub fn version_number() -> u32 {
    // Safety: no arguments, no side effects.
    unsafe { sys::xent_version_number() }
}

/// The ABI version (soname major) the loaded libxent was built with; equals
/// [`sys::XENT_ABI_VERSION`] for a compatible library.
pub fn abi_version() -> u32 {
    // Safety: no arguments, no side effects.
    unsafe { sys::xent_abi_version() }
}

/// The threading backend compiled into libxent: "openmp", "tbb" or "none".
pub fn threading_backend() -> String {
    // Safety: no arguments; returns a static string.
    c_string(unsafe { sys::xent_threading_backend() })
}

/// The BLAS behind [`LinearCrossEntropy`]: "openblas", "blis" or "none" (then
/// it fails with [`Status::Unsupported`]).
pub fn blas_backend() -> String {
    // Safety: no arguments; returns a static string.
    c_string(unsafe { sys::xent_blas_backend() })
}

/// Threads used for `num_threads(0)` on this machine.
pub fn max_threads() -> usize {
    // Safety: no arguments, no side effects.
    usize::try_from(unsafe { sys::xent_max_threads() }).unwrap_or(1)
}

/// The SIMD target the next call will use, e.g. "avx3", "avx2", "neon".
pub fn active_target() -> String {
    // Safety: no arguments; returns a non-NULL string.
    c_string(unsafe { sys::xent_active_target() })
}

/// The SIMD targets compiled into libxent and supported by this CPU, best
/// first.
pub fn supported_targets() -> Vec<String> {
    // Safety: capacity 0 with NULL is allowed and only returns the count.
    let n = unsafe { sys::xent_supported_targets(core::ptr::null_mut(), 0) };
    let mut names: Vec<*const c_char> = vec![core::ptr::null(); n];
    // Safety: `names` has room for `n` pointers; the library writes at most
    // `capacity` of them.
    let m = unsafe { sys::xent_supported_targets(names.as_mut_ptr(), names.len()) };
    names.truncate(m.min(n));
    names.into_iter().map(c_string).collect()
}

/// Forces every later call, process-wide, to use SIMD target `name`
/// (case-insensitive, e.g. "avx2", "scalar"; "avx512" is an alias of "avx3").
/// Not meant to be called while other threads run xent operations (they may
/// use either target). Fails with [`Status::UnsupportedTarget`] for a name
/// this build or CPU does not support, changing nothing.
pub fn force_target(name: &str) -> Result<()> {
    let c = CString::new(name)
        .map_err(|_| Error::new(Status::UnsupportedTarget, format!("target name {name:?} contains a NUL byte")))?;
    // Safety: `c` is a valid NUL-terminated string that outlives the call.
    error::check(unsafe { sys::xent_force_target(c.as_ptr()) })
}

/// Returns to automatic SIMD target selection (the best supported target).
pub fn reset_target() -> Result<()> {
    // Safety: NULL is documented to mean "automatic".
    error::check(unsafe { sys::xent_force_target(core::ptr::null()) })
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
