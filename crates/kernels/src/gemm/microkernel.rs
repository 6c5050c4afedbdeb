//! The `MR × NR` microkernel (LOOP 0 of BLIS) and the write-out of its tile into C,
//! where α, β and the fused epilogue are applied.
//!
//! The kernel works in *kernel orientation*: a tile's `MR` rows are `MV` SIMD vectors
//! loaded from a packed A micro-panel, its `NR` columns are broadcasts from a packed B
//! micro-panel, and each step of `k` is `MV · NR` fused multiply-adds. The SIMD type is
//! chosen when the crate is compiled (`wide` selects its implementation with
//! `cfg(target_feature)`): `f32x16` (one zmm) with AVX-512, `f32x8` (one ymm) with AVX2,
//! `f32x4` otherwise. The code is the same for all three; only `V`, `MV` and `NR` differ.

#[cfg(all(target_feature = "avx512f", target_feature = "fma"))]
mod arch {
    /// One SIMD register of `f32`.
    pub type V = wide::f32x16;
    /// Vectors per tile column.
    pub const MV: usize = 3;
    /// Tile columns (broadcasts of B).
    pub const NR: usize = 8;
}

#[cfg(all(
    not(all(target_feature = "avx512f", target_feature = "fma")),
    target_feature = "avx2",
    target_feature = "fma"
))]
mod arch {
    /// One SIMD register of `f32`.
    pub type V = wide::f32x8;
    /// Vectors per tile column.
    pub const MV: usize = 2;
    /// Tile columns (broadcasts of B).
    pub const NR: usize = 6;
}

#[cfg(not(all(target_feature = "avx2", target_feature = "fma")))]
mod arch {
    /// One SIMD register of `f32`.
    pub type V = wide::f32x4;
    /// Vectors per tile column.
    pub const MV: usize = 2;
    /// Tile columns (broadcasts of B).
    pub const NR: usize = 6;
}

pub use arch::{MV, NR, V};

/// `f32` lanes in one SIMD vector.
pub const LANES: usize = size_of::<V>() / size_of::<f32>();
/// Rows of a microkernel tile (`MV` vectors).
pub const MR: usize = MV * LANES;

/// Where and how a finished tile is written: everything the write-out needs besides
/// the accumulators. Pointers are already offset to the tile's origin.
#[derive(Clone, Copy)]
pub struct TileOut {
    /// Element `(0, 0)` of the tile in C.
    pub c: *mut f32,
    /// Row stride of C (1 for the vector fast path).
    pub c_rs: usize,
    /// Column stride of C.
    pub c_cs: usize,
    /// Valid rows of the tile (`≤ MR`); rows past it are padding.
    pub rows: usize,
    /// Valid columns of the tile (`≤ NR`).
    pub cols: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the prior C for this k-block; 0 means C is not read.
    pub beta: f32,
    /// Whether this is the last k-block, on which the epilogue is applied.
    pub last: bool,
    /// Bias per tile row (`rows` values), or null.
    pub bias_row: *const f32,
    /// Bias per tile column (`cols` values), or null.
    pub bias_col: *const f32,
    /// `C ← max(C, 0)`.
    pub relu: bool,
    /// ReLU mask element `(0, 0)` (zero C where the mask is ≤ 0), or null.
    pub mask: *const f32,
    /// Row stride of the mask.
    pub mask_rs: usize,
    /// Column stride of the mask.
    pub mask_cs: usize,
    /// Element `(0, 0)` of D for `D ← D − s·C` on the last k-block, or null.
    pub descend: *mut f32,
    /// Row stride of D.
    pub descend_rs: usize,
    /// Column stride of D.
    pub descend_cs: usize,
    /// `s` of `D ← D − s·C`.
    pub descend_scale: f32,
}

/// Computes one `(M·LANES) × NR` tile from two micro-panels and writes it out. `M` is
/// `MV` for all tiles but the bottom edge, where it is the fewest vectors that cover the
/// valid rows (a table of kernels, as in the `gemm` crate, rather than FMAs on padding).
///
/// Element `(i, p)` of the A micro-panel is at `a + p·a_step + i` (`MR` contiguous
/// values per step of `k`: a packed panel has `a_step = MR`, a column-major A read in
/// place has `a_step` = its column stride); element `(p, j)` of the B micro-panel is at
/// `b + p·b_step + j·b_cs` (a packed panel: `b_step = NR`, `b_cs = 1`; a B with
/// contiguous columns read in place: `b_step = 1`, `b_cs` its column stride). `b_cs`
/// is taken as 1 unless `STRIDED_B`: the packed layout keeps its constant offsets, and
/// the strided one is a separate instantiation. The sum over `k` runs in order
/// `0, 1, …, kc − 1` for every element, whatever the tile's position.
///
/// With `steps`, only the steps whose bit is set run (bit `p % 64` of word `p / 64` for
/// step `p`), in increasing order. A step left out must be one where every value of the
/// A or of the B micro-panel is zero (see `zero_steps`): its products are ±0, which
/// leave an accumulator that starts at +0 unchanged, so the tile is bit-identical to the
/// full loop's (as long as the operands are finite).
///
/// # Safety
/// `1 ≤ M ≤ MV`; `a + p·a_step + i` must be readable for `p < kc`, `i < M·LANES`, and
/// `b + p·b_step + j·b_cs` for `p < kc`, `j < NR`; no bit of `steps` may be set for a step `p ≥ kc`; `out` must
/// describe a tile whose `rows × cols` elements (and the same elements of the mask,
/// biases and D, when given) are valid, and C and D must not be accessed by anyone else
/// meanwhile.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn tile<const M: usize, const STRIDED_B: bool>(
    kc: usize,
    steps: Option<&[u64]>,
    a: *const f32,
    a_step: usize,
    b: *const f32,
    b_step: usize,
    b_cs: usize,
    out: &TileOut,
) {
    debug_assert!((1..=MV).contains(&M) && out.rows <= M * LANES);
    prefetch_tile::<M>(out);
    let mut acc = [[V::ZERO; M]; NR];
    // The k loop, with `$step` the step at `p`: the masked steps, or all of them.
    macro_rules! k_loop {
        (|$p:ident| $step:expr) => {
            if let Some(steps) = steps {
                for (w, &word) in steps.iter().enumerate() {
                    let mut bits = word;
                    while bits != 0 {
                        let $p = w * 64 + bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        // SAFETY: bit p is set, so p < kc: inside the micro-panels the caller vouched for.
                        unsafe { $step };
                    }
                }
            } else {
                // Four steps per trip: fewer loop branches and address updates among the FMAs.
                let mut p = 0;
                while p + 4 <= kc {
                    for q in 0..4 {
                        let $p = p + q;
                        // SAFETY: p + q < kc: inside the micro-panels the caller vouched for.
                        unsafe { $step };
                    }
                    p += 4;
                }
                while p < kc {
                    let $p = p;
                    // SAFETY: p < kc, as above.
                    unsafe { $step };
                    p += 1;
                }
            }
        };
    }
    if STRIDED_B {
        // Column j starts at its own pointer, so that each broadcast is one load from a
        // fixed base plus the step's offset.
        let cols: [*const f32; NR] = core::array::from_fn(|j| b.wrapping_add(j * b_cs));
        k_loop!(|p| step::<M>(&mut acc, a.add(p * a_step), |j| *cols[j].add(p * b_step)));
    } else {
        k_loop!(|p| {
            let b = b.add(p * b_step);
            step::<M>(&mut acc, a.add(p * a_step), |j| *b.add(j))
        });
    }
    // SAFETY: the caller's contract on `out`.
    unsafe { write_tile(&acc, out) };
}

/// Writes a finished tile out by the fastest path its layout allows.
///
/// # Safety
/// As [`tile`]'s contract on `out`.
#[inline(always)]
unsafe fn write_tile<const M: usize>(acc: &[[V; M]; NR], out: &TileOut) {
    // Tiles with contiguous columns are written a vector at a time (also when only some
    // of their columns are valid, as on the right edge or when n < NR). On the bottom
    // edge (m = 600 is 12 tiles and 24 rows) the full vectors still are, and only the
    // last, straddling one goes element by element. (Testing for a straddling vector
    // inside the vector loop measured up to 30% slower: the full-tile call stays apart.)
    let vector_layout = out.c_rs == 1
        && (out.mask.is_null() || out.mask_rs == 1)
        && (out.descend.is_null() || out.descend_rs == 1);
    if vector_layout && out.rows == M * LANES {
        // SAFETY: all M·LANES rows are valid and the columns contiguous, so each vector access
        // of the `cols` valid columns stays inside the tile the caller vouched for.
        unsafe { store_vectors(acc, out, M) };
    } else if vector_layout && out.rows > (M - 1) * LANES {
        // SAFETY: the first M − 1 vectors' rows are valid (rows > (M − 1)·LANES), and
        // store_last_lanes touches only the valid rows of the last.
        unsafe {
            store_vectors(acc, out, M - 1);
            store_last_lanes(acc, out);
        }
    } else {
        // SAFETY: store_scalar touches only the valid rows × cols elements.
        unsafe { store_scalar(acc, out) };
    }
}

/// Asks for the lines of the C tile while the k loop runs, so that the write-out (a
/// read when β ≠ 0, a read-for-ownership in any case) does not wait on L2 or memory:
/// with k = 64 (an MLP weight gradient) the write-out is a tenth of a tile's work.
#[inline(always)]
fn prefetch_tile<const M: usize>(out: &TileOut) {
    #[cfg(target_arch = "x86_64")]
    if out.c_rs == 1 {
        for j in 0..out.cols {
            for v in 0..M {
                let line = out.c.wrapping_add(j * out.c_cs + v * LANES);
                // SAFETY: a prefetch is a hint: it never faults, whatever the address.
                unsafe {
                    core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(line.cast())
                };
                if out.last && !out.descend.is_null() {
                    let line = out.descend.wrapping_add(j * out.descend_cs + v * LANES);
                    // SAFETY: as above.
                    unsafe {
                        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(line.cast())
                    };
                }
            }
        }
    }
}

/// One step of `k`: `acc[j] += a[0..M·LANES] · b(j)` for every column `j`, where `b(j)`
/// reads column `j`'s value of B at this step.
///
/// # Safety
/// `a` must be readable for `M·LANES` values, and `b` must read valid memory for `j < NR`.
#[inline(always)]
unsafe fn step<const M: usize>(acc: &mut [[V; M]; NR], a: *const f32, b: impl Fn(usize) -> f32) {
    // SAFETY: the caller vouches for M·LANES values at `a`.
    unsafe {
        let av: [V; M] = core::array::from_fn(|v| a.add(v * LANES).cast::<V>().read_unaligned());
        for (j, accj) in acc.iter_mut().enumerate() {
            let bj = V::splat(b(j));
            for v in 0..M {
                accj[v] = av[v].mul_add(bj, accj[v]);
            }
        }
    }
}

/// Write-out of the first `full` vectors of each column of a tile with contiguous
/// columns, a vector at a time.
///
/// # Safety
/// As [`tile`], with `out.rows ≥ full·LANES`, `out.c_rs == 1`, and a mask and D (if any)
/// with row stride 1.
#[inline(always)]
unsafe fn store_vectors<const M: usize>(acc: &[[V; M]; NR], out: &TileOut, full: usize) {
    for (j, accj) in acc.iter().enumerate().take(out.cols) {
        for (v, &x) in accj.iter().enumerate().take(full) {
            // SAFETY: row v·LANES .. (v+1)·LANES of column j < cols lies inside the tile,
            // whose columns are contiguous (c_rs == 1); the same holds for the mask
            // (mask_rs == 1), D (descend_rs == 1) and the row bias (M·LANES values).
            unsafe {
                finish_vector(
                    x,
                    j,
                    v,
                    out,
                    |p| p.cast::<V>().read_unaligned(),
                    |p, x| p.cast::<V>().write_unaligned(x),
                )
            };
        }
    }
}

/// The epilogue of one vector `x` (rows `v·LANES ..`, column `j`) and its store, with
/// `load`/`store` for the memory of C, the row bias, the mask and D: the same operations
/// in the same order as `store_one`, so that an element's bits do not depend on which
/// path wrote it.
///
/// # Safety
/// `load` and `store` must be valid for the vector's elements of C, the row bias, the
/// mask and D that they are handed (the caller's lanes).
#[inline(always)]
unsafe fn finish_vector(
    x: V,
    j: usize,
    v: usize,
    out: &TileOut,
    load: impl Fn(*const f32) -> V,
    store: impl Fn(*mut f32, V),
) {
    // SAFETY: the offsets stay inside the tile (and its mask, D, biases), as the caller vouches.
    unsafe {
        let ptr = out.c.add(j * out.c_cs + v * LANES);
        let mut x = x * V::splat(out.alpha);
        if out.beta != 0.0 {
            x += V::splat(out.beta) * load(ptr);
        }
        if out.last {
            if !out.bias_row.is_null() {
                x += load(out.bias_row.add(v * LANES));
            }
            if !out.bias_col.is_null() {
                x += V::splat(*out.bias_col.add(j));
            }
            if out.relu {
                x = x.max(V::ZERO);
            }
            if !out.mask.is_null() {
                let m = load(out.mask.add(j * out.mask_cs + v * LANES));
                x = m.simd_le(V::ZERO).select(V::ZERO, x);
            }
            if !out.descend.is_null() {
                let d = out.descend.add(j * out.descend_cs + v * LANES);
                store(d, load(d) - V::splat(out.descend_scale) * x);
            }
        }
        store(ptr, x);
    }
}

/// Write-out of the valid rows of the last vector of each column: with AVX-512, one
/// masked vector per column; otherwise an element at a time.
///
/// # Safety
/// As [`tile`], with the layout conditions of [`store_vectors`] and
/// `(M − 1)·LANES < out.rows ≤ M·LANES`.
#[inline(always)]
unsafe fn store_last_lanes<const M: usize>(acc: &[[V; M]; NR], out: &TileOut) {
    let first = (M - 1) * LANES;
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    {
        use core::arch::x86_64::{__m512, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps};
        let keep = ((1u32 << (out.rows - first)) - 1) as u16;
        for (j, accj) in acc.iter().enumerate().take(out.cols) {
            // SAFETY: the masked loads and stores touch only the `rows − first` valid
            // lanes (masked-off lanes neither fault nor write); `V` is `f32x16`, one
            // `__m512` of the same size and layout.
            unsafe {
                finish_vector(
                    accj[M - 1],
                    j,
                    M - 1,
                    out,
                    |p| core::mem::transmute::<__m512, V>(_mm512_maskz_loadu_ps(keep, p)),
                    |p, x| _mm512_mask_storeu_ps(p, keep, core::mem::transmute::<V, __m512>(x)),
                )
            };
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
    for (j, accj) in acc.iter().enumerate().take(out.cols) {
        let lanes = accj[M - 1].as_array();
        for (l, &x) in lanes.iter().enumerate().take(out.rows - first) {
            // SAFETY: row first + l < rows and column j < cols: a valid element.
            unsafe { store_one(x, first + l, j, out) };
        }
    }
}

/// Write-out of any tile (partial, or with strided C or mask), an element at a time.
///
/// # Safety
/// As [`tile`].
unsafe fn store_scalar<const M: usize>(acc: &[[V; M]; NR], out: &TileOut) {
    for (j, accj) in acc.iter().enumerate().take(out.cols) {
        let col: [f32; MR] =
            core::array::from_fn(|i| accj.get(i / LANES).map_or(0.0, |v| v.as_array()[i % LANES]));
        for (i, &x) in col.iter().enumerate().take(out.rows) {
            // SAFETY: i < rows and j < cols, inside the tile the caller vouched for.
            unsafe { store_one(x, i, j, out) };
        }
    }
}

/// Writes element `(i, j)` of a tile whose accumulated product is `x`.
///
/// # Safety
/// `(i, j)` must be one of the valid `rows × cols` elements of `out`.
#[inline(always)]
unsafe fn store_one(x: f32, i: usize, j: usize, out: &TileOut) {
    // SAFETY: the caller vouches for (i, j), hence for C, bias and mask at it.
    unsafe {
        let ptr = out.c.add(i * out.c_rs + j * out.c_cs);
        let mut x = x * out.alpha;
        if out.beta != 0.0 {
            x += out.beta * *ptr;
        }
        if out.last {
            if !out.bias_row.is_null() {
                x += *out.bias_row.add(i);
            }
            if !out.bias_col.is_null() {
                x += *out.bias_col.add(j);
            }
            if out.relu {
                x = x.max(0.0);
            }
            if !out.mask.is_null() && *out.mask.add(i * out.mask_rs + j * out.mask_cs) <= 0.0 {
                x = 0.0;
            }
            if !out.descend.is_null() {
                *out.descend.add(i * out.descend_rs + j * out.descend_cs) -= out.descend_scale * x;
            }
        }
        *ptr = x;
    }
}
