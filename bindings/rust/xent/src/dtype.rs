//! Element types.

use half::{bf16, f16};
use xent_sys as sys;

/// The element types libxent reads and writes (`xent_dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32 (`f32`).
    F32,
    /// bfloat16 ([`half::bf16`]).
    BF16,
    /// IEEE binary16 ([`half::f16`]).
    F16,
    /// `i32` class indices.
    I32,
    /// `i64` class indices.
    I64,
}

impl DType {
    /// The C `xent_dtype` value.
    pub fn code(self) -> i32 {
        match self {
            DType::F32 => sys::XENT_F32,
            DType::BF16 => sys::XENT_BF16,
            DType::F16 => sys::XENT_F16,
            DType::I32 => sys::XENT_I32,
            DType::I64 => sys::XENT_I64,
        }
    }

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::BF16 | DType::F16 => 2,
            DType::I64 => 8,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::bf16 {}
    impl Sealed for half::f16 {}
    impl Sealed for i32 {}
    impl Sealed for i64 {}
}

/// A floating element type libxent accepts: `f32`, [`half::bf16`] or
/// [`half::f16`]. Sealed: the Rust type and the dtype code passed to C always
/// agree, so C never reads or writes an element of another size.
pub trait Float: sealed::Sealed + Copy + Send + Sync + 'static {
    /// The matching dtype.
    const DTYPE: DType;
    /// Exact conversion to `f32`.
    fn to_f32(self) -> f32;
    /// Rounding conversion from `f32` (round to nearest even).
    fn from_f32(x: f32) -> Self;
}

impl Float for f32 {
    const DTYPE: DType = DType::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl Float for bf16 {
    const DTYPE: DType = DType::BF16;
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
}

impl Float for f16 {
    const DTYPE: DType = DType::F16;
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
}

/// A class-index element type: `i32` or `i64`. Sealed like [`Float`].
pub trait Index: sealed::Sealed + Copy + Send + Sync + 'static {
    /// The matching dtype.
    const DTYPE: DType;
    /// The index as `i64`.
    fn to_i64(self) -> i64;
}

impl Index for i32 {
    const DTYPE: DType = DType::I32;
    fn to_i64(self) -> i64 {
        self as i64
    }
}

impl Index for i64 {
    const DTYPE: DType = DType::I64;
    fn to_i64(self) -> i64 {
        self
    }
}
