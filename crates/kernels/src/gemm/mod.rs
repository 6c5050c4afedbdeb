//! Single-precision GEMM: `C ← α·op(A)·op(B) + β·C`, then an optional fused epilogue.
//!
//! Dimension legend: `op(A)` is `m × k`, `op(B)` is `k × n`, `C` is `m × n`.
//!
//! Every operand is a strided view: element `(i, j)` of a view lives at
//! `data[i·row_stride + j·col_stride]`. A row-major `m × k` matrix has strides
//! `(k, 1)`; its transpose is the same memory with the strides swapped, so
//! `op = transpose` costs nothing ([`MatRef::t`]). Backward passes use this for
//! `Aᵀ·B` and `A·Bᵀ` without materialising a transpose.
//!
//! β = 0: C is not read (it may hold NaN or garbage); β = 1 accumulates.
//!
//! Determinism: every element of C is computed by exactly one thread, summing over
//! `k` in the same order whatever the thread count, so results are bit-identical for
//! 1 and N threads.
//!
//! Zeros: a step of `k` where a whole packed micro-panel of A or of B is ±0 is skipped
//! (`zero_steps`). That changes no bit of a finite result, but a `0 · ∞` that it skips
//! does not turn into NaN as IEEE arithmetic would make it.
//!
//! The implementation follows BLIS: five loops (`driver`) around an `MR × NR`
//! microkernel (`microkernel`), A and B packed into zero-padded micro-panels (`pack`),
//! cache blocks derived from this machine's caches (`blocking`).

pub mod blocking;
mod driver;
mod microkernel;
mod pack;
mod view;
mod zero_steps;

pub use microkernel::{MR, NR};

/// A read-only strided view of an `f32` matrix.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// A mutable strided view of an `f32` matrix (the output `C`).
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl MatRef<'_> {
    /// The driver's unchecked form of this (validated) view.
    fn raw(&self) -> view::RawRef {
        let ptr = self.data.as_ptr();
        view::RawRef { ptr, rows: self.rows, cols: self.cols, rs: self.row_stride, cs: self.col_stride }
    }
}

impl MatMut<'_> {
    /// The driver's unchecked form of this (validated) view.
    fn raw(&mut self) -> view::RawMut {
        let ptr = self.data.as_mut_ptr();
        view::RawMut { ptr, rows: self.rows, cols: self.cols, rs: self.row_stride, cs: self.col_stride }
    }
}

/// Elements a `rows × cols` view with the given strides touches (0 when empty).
fn span(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1).checked_mul(row_stride)?.checked_add((cols - 1).checked_mul(col_stride)?)?.checked_add(1)
}

fn check_view(
    name: &'static str,
    len: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
) -> Result<(), KernelError> {
    match span(rows, cols, row_stride, col_stride) {
        Some(needed) if needed <= len => Ok(()),
        needed => Err(KernelError::ViewOutOfBounds {
            name,
            rows,
            cols,
            row_stride,
            col_stride,
            needed: needed.unwrap_or(usize::MAX),
            len,
        }),
    }
}

impl<'a> MatRef<'a> {
    /// A `rows × cols` view of `data` with element `(i, j)` at `data[i·row_stride + j·col_stride]`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, KernelError> {
        // The view does not know its role in a product; gemm's own checks name a, b and c.
        check_view("input", data.len(), rows, cols, row_stride, col_stride)?;
        Ok(Self { data, rows, cols, row_stride, col_stride })
    }

    /// A row-major `rows × cols` view (strides `(cols, 1)`); `data` must hold exactly `rows·cols` elements.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        let expected = rows.saturating_mul(cols);
        if data.len() != expected {
            return Err(KernelError::BadLength { name: "matrix", len: data.len(), expected });
        }
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose: the same memory with rows and columns (and their strides) swapped.
    #[must_use]
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Distance in elements between rows.
    pub fn row_stride(&self) -> usize {
        self.row_stride
    }
    /// Distance in elements between columns.
    pub fn col_stride(&self) -> usize {
        self.col_stride
    }
    /// The underlying slice.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }
    /// Element `(i, j)`. Panics when out of range (used by reference code and tests).
    #[inline]
    pub fn at(&self, i: usize, j: usize) -> f32 {
        assert!(i < self.rows && j < self.cols);
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

/// Whether two distinct elements `(i, j) ≠ (i', j')` of a `rows × cols` view share an
/// address: `(i − i')·rs = (j' − j)·cs` has its smallest non-zero solution at
/// `|i − i'| = cs / gcd`, `|j − j'| = rs / gcd`, so they alias exactly when both fit.
/// An empty view holds no element and never aliases.
fn self_aliased(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    if rows == 0 || cols == 0 {
        return false;
    }
    match (row_stride, col_stride) {
        (0, _) if rows > 1 => true,
        (_, 0) if cols > 1 => true,
        (0, _) | (_, 0) => false,
        (rs, cs) => {
            let g = gcd(rs, cs);
            cs / g < rows && rs / g < cols
        }
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl<'a> MatMut<'a> {
    /// A `rows × cols` mutable view; rejects views that run past the slice or alias
    /// themselves (two elements at one address would make the result depend on order).
    pub fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, KernelError> {
        check_view("output", data.len(), rows, cols, row_stride, col_stride)?;
        if self_aliased(rows, cols, row_stride, col_stride) {
            return Err(KernelError::AliasedOutput { rows, cols, row_stride, col_stride });
        }
        Ok(Self { data, rows, cols, row_stride, col_stride })
    }

    /// A row-major `rows × cols` mutable view; `data` must hold exactly `rows·cols` elements.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        let expected = rows.saturating_mul(cols);
        if data.len() != expected {
            return Err(KernelError::BadLength { name: "matrix", len: data.len(), expected });
        }
        Self::new(data, rows, cols, cols, 1)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Distance in elements between rows.
    pub fn row_stride(&self) -> usize {
        self.row_stride
    }
    /// Distance in elements between columns.
    pub fn col_stride(&self) -> usize {
        self.col_stride
    }
    /// The underlying slice.
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.data
    }
    /// A read-only view of the same matrix.
    pub fn as_ref(&self) -> MatRef<'_> {
        MatRef {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
        }
    }
}

/// A bias added to every element of `C` after the product.
#[derive(Debug, Clone, Copy, Default)]
pub enum Bias<'a> {
    /// No bias.
    #[default]
    None,
    /// `C[i, j] += bias[j]`, `bias.len() == n` (dense layers: one bias per output feature).
    PerCol(&'a [f32]),
    /// `C[i, j] += bias[i]`, `bias.len() == m` (convolution as `W·cols`: one bias per channel).
    PerRow(&'a [f32]),
}

/// Work fused onto the way out of the microkernel, applied in this order after
/// `α·op(A)·op(B) + β·C`: add [`Bias`], apply ReLU, multiply by the ReLU mask.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Bias to add.
    pub bias: Bias<'a>,
    /// `C ← max(C, 0)`.
    pub relu: bool,
    /// Backward through a ReLU: `C[i, j] ← C[i, j] if mask[i, j] > 0 else 0`, where
    /// `mask` is the ReLU's forward output, an `m × n` view.
    pub relu_mask: Option<MatRef<'a>>,
}

impl Epilogue<'_> {
    /// No epilogue: plain GEMM.
    pub const NONE: Epilogue<'static> = Epilogue { bias: Bias::None, relu: false, relu_mask: None };

    /// Checks bias and mask shapes against an `m × n` output.
    pub(crate) fn check(&self, m: usize, n: usize) -> Result<(), KernelError> {
        match self.bias {
            Bias::PerCol(b) if b.len() != n => {
                return Err(KernelError::BadLength { name: "bias", len: b.len(), expected: n });
            }
            Bias::PerRow(b) if b.len() != m => {
                return Err(KernelError::BadLength { name: "bias", len: b.len(), expected: m });
            }
            _ => {}
        }
        if let Some(mask) = self.relu_mask
            && (mask.rows() != m || mask.cols() != n)
        {
            return Err(KernelError::DimensionMismatch {
                a_rows: mask.rows(),
                a_cols: mask.cols(),
                b_rows: m,
                b_cols: n,
                c_rows: m,
                c_cols: n,
            });
        }
        Ok(())
    }

    /// Applies the epilogue to one finished element `(i, j)` of C.
    #[inline(always)]
    pub(crate) fn apply(&self, i: usize, j: usize, mut x: f32) -> f32 {
        match self.bias {
            Bias::None => {}
            Bias::PerCol(b) => x += b[j],
            Bias::PerRow(b) => x += b[i],
        }
        if self.relu {
            x = x.max(0.0);
        }
        if let Some(mask) = self.relu_mask
            && mask.at(i, j) <= 0.0
        {
            x = 0.0;
        }
        x
    }
}

/// How many threads a GEMM may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parallelism {
    /// The calling thread only.
    None,
    /// As many threads as the current rayon pool has ([`crate::team::threads`]), run
    /// on the kernels' spin-waiting [`crate::team`] (small problems still stay on one
    /// thread). The result is bit-identical to [`Parallelism::None`].
    #[default]
    Threads,
}

use crate::KernelError;

/// `C ← α·A·B + β·C`, then `epilogue`, where `A` is `m × k`, `B` is `k × n` and `C`
/// is `m × n` (pass `a.t()` / `b.t()` for the transposed forms).
///
/// β = 0: C is not read, so it may hold NaN. `k = 0` gives `C ← β·C` (then the epilogue).
///
/// # Errors
/// [`KernelError::DimensionMismatch`] when the shapes do not chain, and
/// [`KernelError::BadLength`] when a bias or mask does not fit `C`.
pub fn gemm(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut MatMut<'_>,
    epilogue: &Epilogue<'_>,
    parallelism: Parallelism,
) -> Result<(), KernelError> {
    gemm_with_descend(alpha, a, b, beta, c, epilogue, None, parallelism)
}

/// [`gemm`], then `D ← D − s·C` with each finished element of C (after the epilogue),
/// where `descend = (D, s)` and D is `m × n` with its own strides: an SGD step
/// `w ← w − lr·v` fused onto the GEMM that writes the velocity `v = μ·v + ∇w` (β = μ),
/// so that v is not read back. Each element of D takes one `d − s·c` (a multiply, then
/// a subtraction), bit for bit the separate loop's. `None` is plain [`gemm`].
///
/// # Errors
/// As [`gemm`], and [`KernelError::DimensionMismatch`] when D is not `m × n`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_with_descend(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut MatMut<'_>,
    epilogue: &Epilogue<'_>,
    descend: Option<(&mut MatMut<'_>, f32)>,
    parallelism: Parallelism,
) -> Result<(), KernelError> {
    if let Some((d, _)) = &descend
        && (d.rows != c.rows || d.cols != c.cols)
    {
        return Err(KernelError::DimensionMismatch {
            a_rows: d.rows,
            a_cols: d.cols,
            b_rows: c.rows,
            b_cols: c.cols,
            c_rows: c.rows,
            c_cols: c.cols,
        });
    }
    if a.cols != b.rows || a.rows != c.rows || b.cols != c.cols {
        return Err(KernelError::DimensionMismatch {
            a_rows: a.rows,
            a_cols: a.cols,
            b_rows: b.rows,
            b_cols: b.cols,
            c_rows: c.rows,
            c_cols: c.cols,
        });
    }
    epilogue.check(c.rows, c.cols)?;
    if c.rows == 0 || c.cols == 0 {
        return Ok(());
    }
    let (raw_a, raw_b, raw_c) = (a.raw(), b.raw(), c.raw());
    let raw_mask = epilogue.relu_mask.map(|mk| mk.raw());
    let raw_descend = descend.map(|(d, s)| (d.raw(), s));
    let (bias_row, bias_col) = match epilogue.bias {
        Bias::None => (core::ptr::null(), core::ptr::null()),
        Bias::PerRow(b) => (b.as_ptr(), core::ptr::null()),
        Bias::PerCol(b) => (core::ptr::null(), b.as_ptr()),
    };
    // The microkernel's vectors run down the columns of C. When the rows of C are the
    // contiguous direction (row-major C, the usual case), compute Cᵀ = Bᵀ·Aᵀ instead:
    // the same memory with strides swapped, and the row and column roles of the
    // epilogue swapped with them. This holds however short the contiguous side: C of
    // 50176 × 6 (conv1 lowered) runs one-vector tiles of 6 valid lanes, and still beats
    // full tiles along the long side by 1.5× at 1 thread: those needed A transposed into
    // A~ and C written through register transposes, where Aᵀ is read in place. (One
    // measured loss: 1000 × 84 × 10, LeNet-5's last layer in inference, −15%; a
    // 0.2% share of its multiply-adds.)
    let rows_contiguous = c.cols > 1 && c.row_stride != 1 && c.col_stride < c.row_stride;
    let transpose = c.rows == 1 || rows_contiguous;
    let problem = if transpose {
        driver::Problem {
            alpha,
            beta,
            a: raw_b.t(),
            b: raw_a.t(),
            c: raw_c.t(),
            tail: driver::Tail {
                bias_row: bias_col,
                bias_col: bias_row,
                relu: epilogue.relu,
                mask: raw_mask.map(view::RawRef::t),
                descend: raw_descend.map(|(d, s)| (d.t(), s)),
            },
        }
    } else {
        driver::Problem {
            alpha,
            beta,
            a: raw_a,
            b: raw_b,
            c: raw_c,
            tail: driver::Tail {
                bias_row,
                bias_col,
                relu: epilogue.relu,
                mask: raw_mask,
                descend: raw_descend,
            },
        }
    };
    // D, when given, is a second `&mut` borrow of C's shape (checked above): it aliases
    // neither C nor any shared operand, nor itself (`MatMut::new`).
    // SAFETY: every view was bounds-checked when it was built (`MatRef::new`,
    // `MatMut::new`), the shapes chain and the bias and mask fit C (checked above); C is
    // borrowed mutably for the whole call, so nothing else reads or writes it, and its
    // view does not alias itself (`MatMut::new` rejects that). D: see above.
    unsafe { driver::run(problem, parallelism == Parallelism::Threads) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: some address taken twice.
    fn aliased_by_enumeration(rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
        let mut seen = std::collections::HashSet::new();
        (0..rows).any(|i| (0..cols).any(|j| !seen.insert(i * rs + j * cs)))
    }

    #[test]
    fn self_aliasing_matches_enumeration_on_every_small_view() {
        for rows in 0..6 {
            for cols in 0..6 {
                for rs in 0..8 {
                    for cs in 0..8 {
                        assert_eq!(
                            self_aliased(rows, cols, rs, cs),
                            aliased_by_enumeration(rows, cols, rs, cs),
                            "{rows} × {cols} with strides ({rs}, {cs})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn views_accept_empty_and_interleaved_shapes_and_reject_aliases() {
        let mut buf = vec![0.0f32; 12];
        assert!(MatMut::new(&mut buf, 2, 0, 0, 1).is_ok(), "an empty view holds nothing to alias");
        // Offsets {0, 2, 4} and {3, 5, 7}: interleaved, distinct.
        assert!(MatMut::new(&mut buf, 2, 3, 3, 2).is_ok());
        assert!(matches!(MatMut::new(&mut buf, 3, 3, 2, 1), Err(KernelError::AliasedOutput { .. })));
        let err = MatRef::new(&buf, 4, 4, 4, 1).unwrap_err();
        assert!(err.to_string().contains("`input`"), "{err}");
        let err = MatMut::new(&mut buf, 4, 4, 4, 1).unwrap_err();
        assert!(err.to_string().contains("`output`"), "{err}");
    }
}
