//! Packing of A and B blocks into the micro-panel layout the microkernel reads.
//!
//! A block of A (`mc × kc`, kernel orientation) becomes `⌈mc / MR⌉` micro-panels, each
//! `kc` steps of `MR` contiguous values; a block of B (`kc × nc`) becomes `⌈nc / NR⌉`
//! micro-panels, each `kc` steps of `NR` values. Rows (of A) and columns (of B) past
//! the edge of the matrix are zero, so the microkernel always computes a full tile.
//!
//! Both layouts of each operand pack with contiguous reads: when the packed direction
//! is contiguous in memory (A with row stride 1, B with column stride 1) a step is a
//! plain copy; when the other direction is contiguous, 8 × 8 blocks are read as 8
//! contiguous rows, transposed in registers (`f32x8::transpose`, shuffles on AVX) and
//! written as 8 contiguous rows of the panel. Any other strides fall back to
//! element-wise gathering.

use super::microkernel::{MR, NR};
use super::view::RawRef;
use crate::transpose::transpose8;

/// Packs `a` (`rows × kc`, kernel orientation) into `dst` as `⌈rows / MR⌉` micro-panels.
///
/// # Safety
/// `a` must be a valid view (every element readable) and `dst` valid for
/// `⌈rows / MR⌉ · MR · kc` writes.
pub unsafe fn pack_a(a: RawRef, dst: *mut f32) {
    let (rows, kc) = (a.rows, a.cols);
    for (s, i0) in (0..rows).step_by(MR).enumerate() {
        let h = MR.min(rows - i0);
        // SAFETY: panel s occupies dst[s·MR·kc .. (s+1)·MR·kc], inside the caller's buffer.
        let panel = unsafe { dst.add(s * MR * kc) };
        // SAFETY: rows i0 .. i0 + h of `a` are inside the view.
        let src = unsafe { a.ptr.add(i0 * a.rs) };
        // SAFETY (all three arms): reads stay within rows i0 .. i0 + h and columns 0 .. kc
        // of the view; writes stay within this panel.
        unsafe {
            if a.rs == 1 && h == MR {
                // A constant-length copy compiles to a few vector moves; a variable one
                // would be a call to memmove per step of k.
                for p in 0..kc {
                    core::ptr::copy_nonoverlapping(src.add(p * a.cs), panel.add(p * MR), MR);
                }
            } else if a.rs == 1 {
                for p in 0..kc {
                    let d = panel.add(p * MR);
                    core::ptr::copy_nonoverlapping(src.add(p * a.cs), d, h);
                    core::ptr::write_bytes(d.add(h), 0, MR - h);
                }
            } else if a.cs == 1 {
                // Rows are contiguous: transpose 8 × 8 blocks in registers, then the
                // ragged right and bottom strips element by element.
                let (kc8, h8) = (kc / 8 * 8, h / 8 * 8);
                for p0 in (0..kc8).step_by(8) {
                    for i0 in (0..h8).step_by(8) {
                        transpose8(src.add(i0 * a.rs + p0), a.rs, panel.add(p0 * MR + i0), MR);
                    }
                    for i in h8..h {
                        for q in 0..8 {
                            *panel.add((p0 + q) * MR + i) = *src.add(i * a.rs + p0 + q);
                        }
                    }
                }
                for p in kc8..kc {
                    for i in 0..h {
                        *panel.add(p * MR + i) = *src.add(i * a.rs + p);
                    }
                }
                if h < MR {
                    for p in 0..kc {
                        core::ptr::write_bytes(panel.add(p * MR + h), 0, MR - h);
                    }
                }
            } else {
                for p in 0..kc {
                    let d = panel.add(p * MR);
                    for i in 0..MR {
                        *d.add(i) = if i < h { *src.add(i * a.rs + p * a.cs) } else { 0.0 };
                    }
                }
            }
        }
    }
}

/// Packs `b` (`kc × cols`) into `dst` as `⌈cols / NR⌉` micro-panels.
///
/// # Safety
/// `b` must be a valid view (every element readable) and `dst` valid for
/// `⌈cols / NR⌉ · NR · kc` writes.
pub unsafe fn pack_b(b: RawRef, dst: *mut f32) {
    let (kc, cols) = (b.rows, b.cols);
    for (s, j0) in (0..cols).step_by(NR).enumerate() {
        let w = NR.min(cols - j0);
        // SAFETY: panel s occupies dst[s·NR·kc .. (s+1)·NR·kc], inside the caller's buffer.
        let panel = unsafe { dst.add(s * NR * kc) };
        // SAFETY: columns j0 .. j0 + w of `b` are inside the view.
        let src = unsafe { b.ptr.add(j0 * b.cs) };
        // SAFETY (all three arms): reads stay within rows 0 .. kc and columns j0 .. j0 + w
        // of the view; writes stay within this panel.
        unsafe {
            if b.cs == 1 && w == NR {
                for p in 0..kc {
                    core::ptr::copy_nonoverlapping(src.add(p * b.rs), panel.add(p * NR), NR);
                }
            } else if b.cs == 1 {
                for p in 0..kc {
                    let d = panel.add(p * NR);
                    core::ptr::copy_nonoverlapping(src.add(p * b.rs), d, w);
                    core::ptr::write_bytes(d.add(w), 0, NR - w);
                }
            } else if b.rs == 1 {
                // Columns are contiguous: transpose 8 × 8 blocks in registers, then the
                // ragged strips element by element.
                let (kc8, w8) = (kc / 8 * 8, w / 8 * 8);
                for p0 in (0..kc8).step_by(8) {
                    for j0 in (0..w8).step_by(8) {
                        transpose8(src.add(j0 * b.cs + p0), b.cs, panel.add(p0 * NR + j0), NR);
                    }
                    for j in w8..w {
                        for q in 0..8 {
                            *panel.add((p0 + q) * NR + j) = *src.add(j * b.cs + p0 + q);
                        }
                    }
                }
                for p in kc8..kc {
                    for j in 0..w {
                        *panel.add(p * NR + j) = *src.add(j * b.cs + p);
                    }
                }
                if w < NR {
                    for p in 0..kc {
                        core::ptr::write_bytes(panel.add(p * NR + w), 0, NR - w);
                    }
                }
            } else {
                for p in 0..kc {
                    let d = panel.add(p * NR);
                    for j in 0..NR {
                        *d.add(j) = if j < w { *src.add(p * b.rs + j * b.cs) } else { 0.0 };
                    }
                }
            }
        }
    }
}
