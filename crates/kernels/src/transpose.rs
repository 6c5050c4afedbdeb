//! Transposition of `f32` matrices through 8 × 8 register transposes: the block
//! primitive the GEMM's packing uses, and whole (strided) matrices for the
//! convolutions' layout changes (dY channel-last, images into vector lanes and back).
//! Pure data movement: every value keeps its bits.

/// Transposes the 8 × 8 block whose row `r` is the 8 contiguous values at
/// `src + r·src_stride` into `dst`, row `q` of the result (column `q` of the block)
/// going to the 8 contiguous values at `dst + q·dst_stride`.
///
/// # Safety
/// The 64 source values must be readable and the 64 destination values writable.
#[inline(always)]
pub(crate) unsafe fn transpose8(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    // SAFETY: the caller vouches for the 8 rows of 8 values on both sides.
    unsafe {
        let rows: [wide::f32x8; 8] =
            core::array::from_fn(|r| src.add(r * src_stride).cast::<wide::f32x8>().read_unaligned());
        for (q, v) in wide::f32x8::transpose(rows).into_iter().enumerate() {
            dst.add(q * dst_stride).cast::<wide::f32x8>().write_unaligned(v);
        }
    }
}

/// Writes `src` (row-major `rows × cols`) transposed into `dst` (row-major
/// `cols × rows`): 8 × 8 blocks through register transposes ([`transpose8`]). Pure data movement: the values
/// are the same bits. Panics unless both slices hold `rows · cols` floats.
pub(crate) fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert!(src.len() == rows * cols && dst.len() == rows * cols);
    transpose_strided(src, cols, rows, cols, dst, rows);
}

/// [`transpose_into`] between strided matrices: element `(r, c)` of `src` at
/// `r·src_stride + c` goes to `c·dst_stride + r` of `dst`. Panics if either is too short.
///
/// With both sides at least 8, a side that is not a multiple of 8 ends with a block
/// that overlaps the one before (it writes some elements twice, with the same values):
/// no element-by-element strips, which cost more than the blocks for LeNet's 10-wide
/// rows. A side under 8 goes element by element.
pub(crate) fn transpose_strided(
    src: &[f32],
    src_stride: usize,
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(src.len() >= (rows - 1) * src_stride + cols && dst.len() >= (cols - 1) * dst_stride + rows);
    if rows < 8 || cols < 8 {
        for r in 0..rows {
            for c in 0..cols {
                dst[c * dst_stride + r] = src[r * src_stride + c];
            }
        }
        return;
    }
    // Block origins: every multiple of 8 that fits, then `n − 8` if n is not one.
    let starts = |n: usize| (0..n / 8).map(|b| 8 * b).chain((!n.is_multiple_of(8)).then_some(n - 8));
    for r0 in starts(rows) {
        for c0 in starts(cols) {
            // SAFETY: `r0 + 8 ≤ rows` and `c0 + 8 ≤ cols`, so the block's rows
            // `src[(r0 + i)·src_stride + c0..][..8]` and columns
            // `dst[(c0 + j)·dst_stride + r0..][..8]` lie inside the lengths asserted above.
            unsafe {
                transpose8(
                    src.as_ptr().add(r0 * src_stride + c0),
                    src_stride,
                    dst.as_mut_ptr().add(c0 * dst_stride + r0),
                    dst_stride,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{transpose_into, transpose_strided};

    /// Every shape around the 8 × 8 blocks (and their overlapping last blocks), against
    /// the definition.
    #[test]
    fn transpose_into_matches_the_definition() {
        for rows in 0..=26 {
            for cols in 0..=26 {
                let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 + 0.25).collect();
                let mut dst = vec![f32::NAN; rows * cols];
                transpose_into(&src, rows, cols, &mut dst);
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(dst[c * rows + r], src[r * cols + c], "{rows} × {cols} at ({r}, {c})");
                    }
                }
            }
        }
    }

    /// Strided on both sides: the elements between the rows are neither read into the
    /// result nor written.
    #[test]
    fn transpose_strided_keeps_to_its_rows() {
        for (rows, cols) in [(16, 10), (9, 17), (8, 8), (5, 12), (23, 3)] {
            let (ss, ds) = (cols + 3, rows + 2);
            let src: Vec<f32> =
                (0..rows * ss).map(|i| if i % ss < cols { i as f32 } else { f32::NAN }).collect();
            let mut dst = vec![-1.0f32; cols * ds];
            transpose_strided(&src, ss, rows, cols, &mut dst, ds);
            for c in 0..cols {
                for r in 0..ds {
                    let want = if r < rows { src[r * ss + c] } else { -1.0 };
                    assert_eq!(dst[c * ds + r], want, "{rows} × {cols} at ({r}, {c})");
                }
            }
        }
    }
}
