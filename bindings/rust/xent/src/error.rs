//! Status codes and the error type.

use core::fmt;
use std::ffi::CStr;

use xent_sys as sys;

/// Why a call failed: the C library's `xent_status` (the same codes are used
/// for checks the Rust layer makes before calling C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// A pointer the operation needs is NULL (`XENT_ERROR_NULL_POINTER`).
    NullPointer,
    /// Zero classes, a stride smaller than the row, a slice too short for its
    /// shape, or shapes that disagree (`XENT_ERROR_INVALID_SHAPE`).
    InvalidShape,
    /// An option outside its domain (`XENT_ERROR_INVALID_VALUE`).
    InvalidValue,
    /// A class index outside `[0, V)` that is not `ignore_index`
    /// (`XENT_ERROR_TARGET_OUT_OF_RANGE`).
    TargetOutOfRange,
    /// A dtype the argument does not accept (`XENT_ERROR_INVALID_DTYPE`).
    InvalidDtype,
    /// An unknown enum value (`XENT_ERROR_INVALID_ENUM`).
    InvalidEnum,
    /// The argument struct is not one this library understands
    /// (`XENT_ERROR_INVALID_STRUCT`; e.g. an older libxent than these bindings
    /// and a newer option in use).
    InvalidStruct,
    /// An output overlaps an input or another output (`XENT_ERROR_ALIASING`).
    Aliasing,
    /// An unknown or unsupported SIMD target (`XENT_ERROR_UNSUPPORTED_TARGET`).
    UnsupportedTarget,
    /// Scratch memory could not be allocated (`XENT_ERROR_OUT_OF_MEMORY`).
    OutOfMemory,
    /// The host `ParallelFor` failed, panicked or did not run every task
    /// (`XENT_ERROR_CALLBACK`); outputs may be partially written.
    Callback,
    /// A bug in xent (`XENT_ERROR_INTERNAL`).
    Internal,
    /// The operation is not in this build of libxent (`XENT_ERROR_UNSUPPORTED`;
    /// e.g. linear cross-entropy in a library built without a BLAS).
    Unsupported,
    /// A status code this version of the bindings does not know.
    Unknown(i32),
}

impl Status {
    /// The C status code (`xent_status`).
    pub fn code(self) -> i32 {
        match self {
            Status::NullPointer => sys::XENT_ERROR_NULL_POINTER,
            Status::InvalidShape => sys::XENT_ERROR_INVALID_SHAPE,
            Status::InvalidValue => sys::XENT_ERROR_INVALID_VALUE,
            Status::TargetOutOfRange => sys::XENT_ERROR_TARGET_OUT_OF_RANGE,
            Status::InvalidDtype => sys::XENT_ERROR_INVALID_DTYPE,
            Status::InvalidEnum => sys::XENT_ERROR_INVALID_ENUM,
            Status::InvalidStruct => sys::XENT_ERROR_INVALID_STRUCT,
            Status::Aliasing => sys::XENT_ERROR_ALIASING,
            Status::UnsupportedTarget => sys::XENT_ERROR_UNSUPPORTED_TARGET,
            Status::OutOfMemory => sys::XENT_ERROR_OUT_OF_MEMORY,
            Status::Callback => sys::XENT_ERROR_CALLBACK,
            Status::Internal => sys::XENT_ERROR_INTERNAL,
            Status::Unsupported => sys::XENT_ERROR_UNSUPPORTED,
            Status::Unknown(c) => c,
        }
    }

    /// The status for a non-zero C code (`None` for `XENT_OK`).
    pub fn from_code(code: i32) -> Option<Status> {
        Some(match code {
            sys::XENT_OK => return None,
            sys::XENT_ERROR_NULL_POINTER => Status::NullPointer,
            sys::XENT_ERROR_INVALID_SHAPE => Status::InvalidShape,
            sys::XENT_ERROR_INVALID_VALUE => Status::InvalidValue,
            sys::XENT_ERROR_TARGET_OUT_OF_RANGE => Status::TargetOutOfRange,
            sys::XENT_ERROR_INVALID_DTYPE => Status::InvalidDtype,
            sys::XENT_ERROR_INVALID_ENUM => Status::InvalidEnum,
            sys::XENT_ERROR_INVALID_STRUCT => Status::InvalidStruct,
            sys::XENT_ERROR_ALIASING => Status::Aliasing,
            sys::XENT_ERROR_UNSUPPORTED_TARGET => Status::UnsupportedTarget,
            sys::XENT_ERROR_OUT_OF_MEMORY => Status::OutOfMemory,
            sys::XENT_ERROR_CALLBACK => Status::Callback,
            sys::XENT_ERROR_INTERNAL => Status::Internal,
            sys::XENT_ERROR_UNSUPPORTED => Status::Unsupported,
            other => Status::Unknown(other),
        })
    }

    /// The library's static description (`xent_status_string`), e.g.
    /// "invalid shape".
    pub fn description(self) -> &'static str {
        // Safety: xent_status_string accepts any value and returns a pointer
        // to a static NUL-terminated string, never NULL (xent.h).
        let p = unsafe { sys::xent_status_string(self.code()) };
        // Safety: p is non-NULL, NUL-terminated and static (see above).
        unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("unknown status")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// A failed call: the status and the detail message (the C library's
/// `xent_last_error()`, or the Rust layer's own check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: Status,
    message: String,
}

impl Error {
    /// An error with `status` and a detail `message`.
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Error { status, message: message.into() }
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The C status code (`xent_status`).
    pub fn code(&self) -> i32 {
        self.status.code()
    }

    /// The detail message, e.g. `"target[17] = 32000 is outside [0, 32000)"`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error for C status `rc` (non-zero) with this thread's
    /// `xent_last_error()`. Must run right after the failing call, on the
    /// same thread, before any other xent call.
    pub(crate) fn from_last_call(rc: i32) -> Self {
        let status = Status::from_code(rc).unwrap_or(Status::Unknown(rc));
        // Safety: xent_last_error takes no arguments and returns a non-NULL
        // NUL-terminated thread-local buffer, valid until the next xent call
        // on this thread; we copy it out at once.
        let msg = unsafe { CStr::from_ptr(sys::xent_last_error()) }.to_string_lossy().into_owned();
        let message = if msg.is_empty() { status.description().to_string() } else { msg };
        Error { status, message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "xent: {}: {}", self.status, self.message)
    }
}

impl std::error::Error for Error {}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// `Ok(())` for `XENT_OK`, else the error with the C message.
pub(crate) fn check(rc: sys::xent_status) -> Result<()> {
    if rc == sys::XENT_OK {
        Ok(())
    } else {
        Err(Error::from_last_call(rc))
    }
}

/// A Rust-side check failure.
pub(crate) fn fail<T>(status: Status, message: impl Into<String>) -> Result<T> {
    Err(Error::new(status, message))
}
