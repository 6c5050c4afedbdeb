//! Raw strided views: the unchecked, `Send` form of `MatRef`/`MatMut` that the
//! driver cuts into blocks and hands to threads once `gemm` has validated the operands.

/// A read-only strided view by raw pointer; element `(i, j)` at `ptr + i·rs + j·cs`.
#[derive(Debug, Clone, Copy)]
pub struct RawRef {
    /// Element `(0, 0)`.
    pub ptr: *const f32,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

/// A mutable strided view by raw pointer; element `(i, j)` at `ptr + i·rs + j·cs`.
#[derive(Debug, Clone, Copy)]
pub struct RawMut {
    /// Element `(0, 0)`.
    pub ptr: *mut f32,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

// SAFETY: a RawRef is only created from a validated `MatRef` (shared, immutable data)
// and only read through, so sharing it across threads is like sharing the `&[f32]`.
unsafe impl Send for RawRef {}
// SAFETY: as above; reads only.
unsafe impl Sync for RawRef {}
// SAFETY: the driver hands each thread a RawMut over a disjoint block of C, so no
// element is written by two threads; the `&mut` borrow of C outlives the threads.
unsafe impl Send for RawMut {}
// SAFETY: as above.
unsafe impl Sync for RawMut {}

impl RawRef {
    /// The transpose (strides swapped).
    pub fn t(self) -> Self {
        Self { ptr: self.ptr, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    /// The `rows × cols` block starting at `(i, j)`.
    ///
    /// # Safety
    /// The block must lie inside this view.
    pub unsafe fn block(self, i: usize, j: usize, rows: usize, cols: usize) -> Self {
        debug_assert!(i + rows <= self.rows && j + cols <= self.cols);
        // A block of an empty view keeps the pointer: there is nothing to offset into.
        let ptr = if rows == 0 || cols == 0 {
            self.ptr
        } else {
            // SAFETY: (i, j) is an element of the view, so the offset stays inside its slice.
            unsafe { self.ptr.add(i * self.rs + j * self.cs) }
        };
        Self { ptr, rows, cols, rs: self.rs, cs: self.cs }
    }
}

impl RawMut {
    /// The transpose (strides swapped).
    pub fn t(self) -> Self {
        Self { ptr: self.ptr, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    /// The `rows × cols` block starting at `(i, j)`.
    ///
    /// # Safety
    /// The block must lie inside this view.
    pub unsafe fn block(self, i: usize, j: usize, rows: usize, cols: usize) -> Self {
        debug_assert!(i + rows <= self.rows && j + cols <= self.cols);
        let ptr = if rows == 0 || cols == 0 {
            self.ptr
        } else {
            // SAFETY: (i, j) is an element of the view, so the offset stays inside its slice.
            unsafe { self.ptr.add(i * self.rs + j * self.cs) }
        };
        Self { ptr, rows, cols, rs: self.rs, cs: self.cs }
    }
}
