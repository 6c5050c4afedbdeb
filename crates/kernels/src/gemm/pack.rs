//! Packing of A and B blocks into the micro-panel layout the microkernel reads.
//!
//! A block of A (`mc × kc`, kernel orientation) becomes `⌈mc / MR⌉` micro-panels, each
//! `kc` steps of `MR` contiguous values; a block of B (`kc × nc`) becomes `⌈nc / NR⌉`
//! micro-panels, each `kc` steps of `NR` values. Rows (of A) and columns (of B) past
//! the edge of the matrix are zero, so the microkernel always computes a full tile.
//!
//! Both layouts of each operand pack with contiguous reads: when the packed direction
//! is contiguous in memory (A with row stride 1, B with column stride 1) a step is a
//! plain copy; when the other direction is contiguous, `CHUNK` steps of every row (A)
//! or column (B) are read contiguously and scattered into a small window of the panel
//! that stays in L1. Any other strides fall back to element-wise gathering.

use super::microkernel::{MR, NR};
use super::view::RawRef;

/// Steps of `k` transposed at a time by the strided packers: `CHUNK · MR · 4` bytes of
/// the panel (3 KiB for MR = 48) and `MR` source lines stay in L1 meanwhile.
const CHUNK: usize = 16;

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
            if a.rs == 1 {
                for p in 0..kc {
                    let d = panel.add(p * MR);
                    core::ptr::copy_nonoverlapping(src.add(p * a.cs), d, h);
                    core::ptr::write_bytes(d.add(h), 0, MR - h);
                }
            } else if a.cs == 1 {
                for p0 in (0..kc).step_by(CHUNK) {
                    let w = CHUNK.min(kc - p0);
                    for i in 0..h {
                        let row = src.add(i * a.rs + p0);
                        for q in 0..w {
                            *panel.add((p0 + q) * MR + i) = *row.add(q);
                        }
                    }
                    for q in 0..w {
                        core::ptr::write_bytes(panel.add((p0 + q) * MR + h), 0, MR - h);
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
            if b.cs == 1 {
                for p in 0..kc {
                    let d = panel.add(p * NR);
                    core::ptr::copy_nonoverlapping(src.add(p * b.rs), d, w);
                    core::ptr::write_bytes(d.add(w), 0, NR - w);
                }
            } else if b.rs == 1 {
                for p0 in (0..kc).step_by(CHUNK) {
                    let h = CHUNK.min(kc - p0);
                    for j in 0..w {
                        let col = src.add(j * b.cs + p0);
                        for q in 0..h {
                            *panel.add((p0 + q) * NR + j) = *col.add(q);
                        }
                    }
                    for q in 0..h {
                        core::ptr::write_bytes(panel.add((p0 + q) * NR + w), 0, NR - w);
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
