//! Shape/stride-checked views of slices: what every operation takes.

use core::ffi::c_void;
use core::marker::PhantomData;

use crate::dtype::{DType, Float, Index};
use crate::error::{fail, Result, Status};

/// The shape and row stride of a `rows x cols` matrix whose rows are `stride`
/// elements apart (the columns, i.e. the classes, are contiguous).
///
/// A slice holds such a matrix when its length is at least
/// [`Layout::min_len`] = `(rows - 1) * stride + cols` (0 when `rows == 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    rows: usize,
    cols: usize,
    stride: usize,
}

impl Layout {
    /// Packed rows: `stride == cols`. Fails when `cols == 0` or the size
    /// overflows `usize`.
    pub fn packed(rows: usize, cols: usize) -> Result<Self> {
        Self::strided(rows, cols, cols)
    }

    /// Rows `stride` elements apart. Fails when `cols == 0`, `stride < cols`
    /// or the size overflows `usize`.
    pub fn strided(rows: usize, cols: usize, stride: usize) -> Result<Self> {
        if cols == 0 {
            return fail(Status::InvalidShape, "num_classes (cols) = 0: need at least 1 class");
        }
        if stride < cols {
            return fail(Status::InvalidShape, format!("stride ({stride}) < cols ({cols})"));
        }
        let l = Layout { rows, cols, stride };
        if l.checked_min_len().is_none() {
            return fail(
                Status::InvalidShape,
                format!("{rows} rows x {cols} columns with stride {stride} overflows usize"),
            );
        }
        Ok(l)
    }

    /// Number of rows (the batch B).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (the classes V).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Elements between the starts of consecutive rows.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The shortest slice that holds this matrix: `(rows - 1) * stride + cols`,
    /// or 0 for no rows.
    pub fn min_len(&self) -> usize {
        // Checked at construction.
        self.checked_min_len().unwrap_or(usize::MAX)
    }

    fn checked_min_len(&self) -> Option<usize> {
        if self.rows == 0 {
            return Some(0);
        }
        (self.rows - 1).checked_mul(self.stride)?.checked_add(self.cols)
    }

    fn check_slice(&self, len: usize, elem_size: usize) -> Result<()> {
        let need = self.min_len();
        if len < need {
            return fail(
                Status::InvalidShape,
                format!(
                    "slice of {len} elements is too short for {} x {} with stride {} (needs {need})",
                    self.rows, self.cols, self.stride
                ),
            );
        }
        // A Rust slice never exceeds isize::MAX bytes, so neither does the
        // matrix; check anyway so the C side's byte arithmetic cannot wrap.
        if need.checked_mul(elem_size).map_or(true, |b| b > isize::MAX as usize) {
            return fail(Status::InvalidShape, "matrix byte size overflows isize");
        }
        Ok(())
    }
}

/// A read-only `rows x cols` view of a slice, checked at construction to hold
/// every element of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a, T> {
    data: &'a [T],
    layout: Layout,
}

impl<'a, T: Copy> Matrix<'a, T> {
    /// Packed rows (`stride == cols`). Fails with [`Status::InvalidShape`] when
    /// `cols == 0` or `data` is shorter than `rows * cols`.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        Self::with_layout(data, Layout::packed(rows, cols)?)
    }

    /// Rows `stride` elements apart (`stride >= cols`); `data` needs
    /// `(rows - 1) * stride + cols` elements.
    pub fn with_stride(data: &'a [T], rows: usize, cols: usize, stride: usize) -> Result<Self> {
        Self::with_layout(data, Layout::strided(rows, cols, stride)?)
    }

    /// A view with an explicit [`Layout`].
    pub fn with_layout(data: &'a [T], layout: Layout) -> Result<Self> {
        layout.check_slice(data.len(), core::mem::size_of::<T>())?;
        Ok(Matrix { data, layout })
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.layout.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.layout.cols
    }

    /// Row stride in elements.
    pub fn stride(&self) -> usize {
        self.layout.stride
    }

    /// The underlying slice.
    pub fn data(&self) -> &'a [T] {
        self.data
    }

    /// Row `i` (`cols` elements). Panics when `i >= rows`.
    pub fn row(&self, i: usize) -> &'a [T] {
        assert!(i < self.layout.rows, "row {i} out of range for {} rows", self.layout.rows);
        let start = i * self.layout.stride;
        &self.data[start..start + self.layout.cols]
    }

    pub(crate) fn raw(&self) -> RawIn<'a>
    where
        T: Float,
    {
        RawIn { ptr: self.data.as_ptr().cast(), layout: self.layout, dtype: T::DTYPE, _p: PhantomData }
    }
}

/// A writable `rows x cols` view of a slice, checked at construction to hold
/// every element of the matrix. Elements between rows (when
/// `stride > cols`) are never written.
#[derive(Debug)]
pub struct MatrixMut<'a, T> {
    data: &'a mut [T],
    layout: Layout,
}

impl<'a, T: Copy> MatrixMut<'a, T> {
    /// Packed rows (`stride == cols`).
    pub fn new(data: &'a mut [T], rows: usize, cols: usize) -> Result<Self> {
        Self::with_layout(data, Layout::packed(rows, cols)?)
    }

    /// Rows `stride` elements apart (`stride >= cols`).
    pub fn with_stride(data: &'a mut [T], rows: usize, cols: usize, stride: usize) -> Result<Self> {
        Self::with_layout(data, Layout::strided(rows, cols, stride)?)
    }

    /// A view with an explicit [`Layout`].
    pub fn with_layout(data: &'a mut [T], layout: Layout) -> Result<Self> {
        layout.check_slice(data.len(), core::mem::size_of::<T>())?;
        Ok(MatrixMut { data, layout })
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.layout.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.layout.cols
    }

    /// Row stride in elements.
    pub fn stride(&self) -> usize {
        self.layout.stride
    }

    /// A read-only view of the same matrix.
    pub fn as_matrix(&self) -> Matrix<'_, T> {
        Matrix { data: self.data, layout: self.layout }
    }

    /// A shorter-lived writable view of the same matrix (to pass it to an
    /// operation and keep using it afterwards).
    pub fn reborrow(&mut self) -> MatrixMut<'_, T> {
        MatrixMut { data: self.data, layout: self.layout }
    }

    /// Row `i`. Panics when `i >= rows`.
    pub fn row(&self, i: usize) -> &[T] {
        self.as_matrix().row(i)
    }

    /// Row `i`, writable. Panics when `i >= rows`.
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        assert!(i < self.layout.rows, "row {i} out of range for {} rows", self.layout.rows);
        let start = i * self.layout.stride;
        &mut self.data[start..start + self.layout.cols]
    }

    pub(crate) fn raw(self) -> RawOut<'a>
    where
        T: Float,
    {
        RawOut { ptr: self.data.as_mut_ptr().cast(), layout: self.layout, dtype: T::DTYPE, _p: PhantomData }
    }
}

/// Class indices, one per row (`i32` or `i64`), optionally strided: row `i`'s
/// index is `data[i * stride]`.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a, I> {
    data: &'a [I],
    len: usize,
    stride: usize,
}

impl<'a, I: Index> Labels<'a, I> {
    /// One index per element of `data`.
    pub fn new(data: &'a [I]) -> Self {
        Labels { data, len: data.len(), stride: 1 }
    }

    /// `len` indices `stride >= 1` elements apart; `data` needs
    /// `(len - 1) * stride + 1` elements.
    pub fn with_stride(data: &'a [I], len: usize, stride: usize) -> Result<Self> {
        if stride == 0 {
            return fail(Status::InvalidShape, "labels stride = 0 (need >= 1)");
        }
        Layout::strided(len, 1, stride)?.check_slice(data.len(), core::mem::size_of::<I>())?;
        Ok(Labels { data, len, stride })
    }

    /// Number of indices.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no indices.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements between consecutive indices.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Index `i`. Panics when `i >= len`.
    pub fn get(&self, i: usize) -> I {
        assert!(i < self.len, "label {i} out of range for {}", self.len);
        self.data[i * self.stride]
    }

    pub(crate) fn raw(&self) -> RawLabels<'a> {
        RawLabels {
            ptr: self.data.as_ptr().cast(),
            len: self.len,
            stride: self.stride,
            dtype: I::DTYPE,
            _p: PhantomData,
        }
    }
}

impl<'a, I: Index> From<&'a [I]> for Labels<'a, I> {
    fn from(data: &'a [I]) -> Self {
        Labels::new(data)
    }
}

impl<'a, I: Index> From<&'a Vec<I>> for Labels<'a, I> {
    fn from(data: &'a Vec<I>) -> Self {
        Labels::new(data)
    }
}

impl<'a, I: Index, const N: usize> From<&'a [I; N]> for Labels<'a, I> {
    fn from(data: &'a [I; N]) -> Self {
        Labels::new(data)
    }
}

/// A type-erased input matrix borrowed for `'a`.
#[derive(Clone, Copy)]
pub(crate) struct RawIn<'a> {
    pub ptr: *const c_void,
    pub layout: Layout,
    pub dtype: DType,
    _p: PhantomData<&'a [u8]>,
}

/// A type-erased output matrix mutably borrowed for `'a`.
pub(crate) struct RawOut<'a> {
    pub ptr: *mut c_void,
    pub layout: Layout,
    pub dtype: DType,
    _p: PhantomData<&'a mut [u8]>,
}

/// Type-erased labels borrowed for `'a`.
#[derive(Clone, Copy)]
pub(crate) struct RawLabels<'a> {
    pub ptr: *const c_void,
    pub len: usize,
    pub stride: usize,
    pub dtype: DType,
    _p: PhantomData<&'a [u8]>,
}

impl<'a> RawIn<'a> {
    /// `Err(InvalidShape)` unless this is `rows x cols`.
    pub fn expect_shape(&self, name: &str, rows: usize, cols: usize, of: &str) -> Result<()> {
        expect_shape(name, self.layout, rows, cols, of)
    }
}

impl<'a> RawOut<'a> {
    /// The same matrix as an input (for the documented in-place pairs: C
    /// reads it, then writes the output over it, through one pointer).
    pub fn as_input(&self) -> RawIn<'a> {
        RawIn { ptr: self.ptr as *const c_void, layout: self.layout, dtype: self.dtype, _p: PhantomData }
    }

    /// `Err(InvalidShape)` unless this is `rows x cols`.
    pub fn expect_shape(&self, name: &str, rows: usize, cols: usize, of: &str) -> Result<()> {
        expect_shape(name, self.layout, rows, cols, of)
    }
}

impl<'a> RawLabels<'a> {
    /// `Err(InvalidShape)` unless there are `rows` labels.
    pub fn expect_len(&self, name: &str, rows: usize) -> Result<()> {
        if self.len != rows {
            return fail(Status::InvalidShape, format!("{name} has {} entries, expected batch = {rows}", self.len));
        }
        Ok(())
    }
}

fn expect_shape(name: &str, l: Layout, rows: usize, cols: usize, of: &str) -> Result<()> {
    if l.rows != rows || l.cols != cols {
        return fail(
            Status::InvalidShape,
            format!("{name} is {} x {}, expected {rows} x {cols} (the shape of {of})", l.rows, l.cols),
        );
    }
    Ok(())
}

/// `Err(InvalidShape)` unless `len == expected`.
pub(crate) fn expect_len(name: &str, len: usize, expected: usize, what: &str) -> Result<()> {
    if len != expected {
        return fail(Status::InvalidShape, format!("{name} has {len} entries, expected {what} = {expected}"));
    }
    Ok(())
}
