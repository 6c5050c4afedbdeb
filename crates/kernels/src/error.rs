//! The error type of the `kernels` crate.

/// What a kernel entry point rejected before touching memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A matrix view whose last element lies past the end of its slice.
    #[error(
        "matrix `{name}` of {rows} × {cols} with strides ({row_stride}, {col_stride}) needs {needed} elements, slice has {len}"
    )]
    ViewOutOfBounds {
        /// Which operand (`"input"` or `"output"` for a view, `"a"`, `"b"`, `"c"`, `"mask"` in gemm).
        name: &'static str,
        /// Rows of the view.
        rows: usize,
        /// Columns of the view.
        cols: usize,
        /// Distance in elements between consecutive rows.
        row_stride: usize,
        /// Distance in elements between consecutive columns.
        col_stride: usize,
        /// Elements the view needs (`(rows-1)·rs + (cols-1)·cs + 1`).
        needed: usize,
        /// Elements the slice has.
        len: usize,
    },
    /// Operand dimensions that do not chain: `op(A)` is `m × k`, `op(B)` `k × n`, `C` `m × n`.
    #[error(
        "gemm dimension mismatch: op(A) is {a_rows} × {a_cols}, op(B) is {b_rows} × {b_cols}, C is {c_rows} × {c_cols}"
    )]
    DimensionMismatch {
        /// Rows of `op(A)`.
        a_rows: usize,
        /// Columns of `op(A)`.
        a_cols: usize,
        /// Rows of `op(B)`.
        b_rows: usize,
        /// Columns of `op(B)`.
        b_cols: usize,
        /// Rows of `C`.
        c_rows: usize,
        /// Columns of `C`.
        c_cols: usize,
    },
    /// A buffer whose length does not match what the shape requires.
    #[error("buffer `{name}` has {len} elements, expected {expected}")]
    BadLength {
        /// Which buffer.
        name: &'static str,
        /// Its length in elements.
        len: usize,
        /// The length the shape requires.
        expected: usize,
    },
    /// A C view whose rows or columns alias each other (a zero stride with more than one row/column).
    #[error("output matrix view aliases itself: strides ({row_stride}, {col_stride}) for {rows} × {cols}")]
    AliasedOutput {
        /// Rows of C.
        rows: usize,
        /// Columns of C.
        cols: usize,
        /// Row stride of C.
        row_stride: usize,
        /// Column stride of C.
        col_stride: usize,
    },
    /// A convolution geometry that has no output (kernel larger than the padded input) or a zero stride.
    #[error("invalid convolution geometry: {0}")]
    BadGeometry(String),
}
