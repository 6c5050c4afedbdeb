//! The BLIS loop nest around the microkernel, per-thread packing buffers, and the
//! split of C between threads (fixed blocks, or chunks claimed from per-thread shares
//! when the operand every thread needs packs small).
//!
//! Everything here is in *kernel orientation*: `gemm` has already transposed the
//! problem (`Cᵀ = Bᵀ·Aᵀ`) when that makes the columns of C contiguous, so the
//! microkernel's vectors always run down a column of C.

use std::cell::Cell;

use super::blocking::Blocking;
use super::microkernel::{LANES, MR, MV, NR, TileOut, V, tile};
use super::pack::{pack_a, pack_b};
use super::view::{RawMut, RawRef};
use super::zero_steps;
use crate::claims::Claims;
use crate::team;

/// Products with fewer multiply-adds than this stay on one thread: at about 100
/// GFLOP/s, 2²¹ multiply-adds take some 40 µs, a few times what handing work to a
/// helper thread and packing the shared operand twice cost.
const PARALLEL_MIN_MACS: usize = 1 << 21;

/// While the helpers are awake (inside a training step, whose regions follow each
/// other within their spin window), handing them work costs about a microsecond, so
/// products from this many multiply-adds are split too: an MLP's last layer, 64 × 600
/// × 10 (384K multiply-adds, ~20 µs on one thread), and its two backward products.
const AWAKE_PARALLEL_MIN_MACS: usize = 1 << 18;

/// Longest k-block (in 64-step mask words) for which zero steps are looked for: the
/// default `KC` needs 8; an override past 1024 simply runs every step.
const MAX_MASK_WORDS: usize = 16;

/// B blocks at least this wide are read in place when their columns are contiguous
/// (see [`in_place_b`]).
const IN_PLACE_B_MIN_NC: usize = 256;

/// A packed A block is scanned for zero steps only when at least this many columns of
/// B meet it: the scan reads A~ once, the microkernel `nc / NR` times, so the scan
/// costs under 1% of the block's work even when it finds nothing (the weights of a
/// forward pass). The first layer's weight gradient (`Xᵀ·dY`, `nc` = 600) qualifies.
const SCAN_A_MIN_NC: usize = 256;

/// The operand that every thread of a split product needs in full (B when C is split
/// by rows, A when by columns) is packed once per thread and kept for the whole
/// region, and the split side is then handed out in chunks ([`Claims`]), when that
/// operand packs into at most this many floats (1 MiB): the MLP's products at batch
/// 64 (at most 784 × 64), not the squares.
const SHARED_PACK_MAX: usize = 1 << 18;

/// Columns of C per claimed chunk, in `NR`-wide panels: 600 columns are 19 chunks.
const CLAIM_PANELS: usize = 4;

/// The epilogue in kernel orientation, with raw pointers so that it can be cut into
/// blocks like C.
#[derive(Debug, Clone, Copy)]
pub struct Tail {
    /// Bias per row of C (`rows` values), or null.
    pub bias_row: *const f32,
    /// Bias per column of C (`cols` values), or null.
    pub bias_col: *const f32,
    /// `C ← max(C, 0)`.
    pub relu: bool,
    /// ReLU mask of the same shape as C.
    pub mask: Option<RawRef>,
    /// `D ← D − s·C` with the final C: D (same shape as C) and s.
    pub descend: Option<(RawMut, f32)>,
}

// SAFETY: the pointers come from shared borrows (`&[f32]`, `MatRef`) that outlive the
// call and are only read; D (`descend`) is a `RawMut`, cut into the same disjoint
// blocks as C, so each of its elements is written by one thread.
unsafe impl Send for Tail {}
// SAFETY: as above.
unsafe impl Sync for Tail {}

/// One validated GEMM in kernel orientation: `C ← α·A·B + β·C`, then the tail.
#[derive(Debug, Clone, Copy)]
pub struct Problem {
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the prior C; 0 means C is not read.
    pub beta: f32,
    /// `m × k`.
    pub a: RawRef,
    /// `k × n`.
    pub b: RawRef,
    /// `m × n`.
    pub c: RawMut,
    /// Bias, ReLU and mask.
    pub tail: Tail,
}

impl Problem {
    /// Rows `i .. i + rows` of C (and of A, the biases and the mask).
    ///
    /// # Safety
    /// The rows must lie inside C.
    unsafe fn rows(self, i: usize, rows: usize) -> Self {
        let k = self.a.cols;
        let n = self.c.cols;
        // SAFETY: the caller keeps the block inside C, hence inside A and the mask,
        // which have as many rows; the row bias has one value per row.
        unsafe {
            Self {
                a: self.a.block(i, 0, rows, k),
                c: self.c.block(i, 0, rows, n),
                tail: Tail {
                    bias_row: offset(self.tail.bias_row, i),
                    mask: self.tail.mask.map(|m| m.block(i, 0, rows, n)),
                    descend: self.tail.descend.map(|(d, s)| (d.block(i, 0, rows, n), s)),
                    ..self.tail
                },
                ..self
            }
        }
    }

    /// Columns `j .. j + cols` of C (and of B, the biases and the mask).
    ///
    /// # Safety
    /// The columns must lie inside C.
    unsafe fn cols(self, j: usize, cols: usize) -> Self {
        let k = self.a.cols;
        let m = self.c.rows;
        // SAFETY: as `rows`, for columns.
        unsafe {
            Self {
                b: self.b.block(0, j, k, cols),
                c: self.c.block(0, j, m, cols),
                tail: Tail {
                    bias_col: offset(self.tail.bias_col, j),
                    mask: self.tail.mask.map(|mk| mk.block(0, j, m, cols)),
                    descend: self.tail.descend.map(|(d, s)| (d.block(0, j, m, cols), s)),
                    ..self.tail
                },
                ..self
            }
        }
    }
}

/// `p + i`, keeping null as null.
///
/// # Safety
/// When `p` is not null, `p + i` must stay inside its allocation.
unsafe fn offset(p: *const f32, i: usize) -> *const f32 {
    // SAFETY: the caller's contract.
    if p.is_null() { p } else { unsafe { p.add(i) } }
}

/// Runs `p`, on [`team::threads`] threads when `parallel` and the product is big enough.
///
/// C is cut between the pool's threads along its longer side (rows a vector, `LANES`,
/// at a time, or columns a micro-panel, `NR`, at a time). Each element is summed by
/// one thread, through the same k-blocks in the same order as on one thread, so the
/// result is bit-identical for any thread count and any split.
///
/// When the operand that every thread needs in full packs small
/// ([`SHARED_PACK_MAX`]), each thread packs it once and the split side is handed out
/// in chunks from per-thread shares ([`Claims`]: the MLP's products at batch 64, where
/// a fixed split left each thread waiting 6–13% of a training step for the other);
/// otherwise each thread takes a fixed block.
///
/// # Safety
/// Every view of `p` must be valid (A, B, biases, mask readable, C writable and not
/// aliased by the others).
pub unsafe fn run(p: Problem, parallel: bool) {
    let (m, n, k) = (p.c.rows, p.c.cols, p.a.cols);
    if m == 0 || n == 0 {
        return;
    }
    let blocking = Blocking::get();
    let macs = m.saturating_mul(n).saturating_mul(k.max(1));
    let threads = team::threads();
    let threads = if parallel
        && (macs >= PARALLEL_MIN_MACS
            || (macs >= AWAKE_PARALLEL_MIN_MACS && team::helpers_awake(threads - 1)))
    {
        threads
    } else {
        1
    };
    let (tiles_m, tiles_n) = (m.div_ceil(MR), n.div_ceil(NR));
    // Split the longer side: the other operand, which every thread packs in full, is
    // then the smaller one. Except when C's columns are contiguous and m is at most
    // twice n: packing all of A costs each thread at most twice what packing all of B
    // would, and in return its block of C is one stretch of memory (whole columns)
    // instead of a slab of every column, which the same thread then meets again in the
    // next pass (an MLP's weight gradient, 784 × 600 in kernel orientation, is split by
    // output neuron as its forward pass and its SGD update are).
    //
    // But when B is read in place (`in_place_b`, probed on its first block), splitting
    // along m leaves each thread packing only its own rows of A and nothing of B, where
    // along n each would pack all of A: square 512 at 2 threads +10%, 1024 +3%. It needs
    // rows enough for two tiles a thread (conv2 lowered, m = 16, stays along n).
    let b_in_place = threads > 1 && tiles_m >= 2 * threads && {
        let kc = blocking.kc_for(k).min(k);
        let scan = zero_steps::words(kc) <= MAX_MASK_WORDS;
        in_place_b(&p, 0, 0, kc, n.min(blocking.nc), scan).is_some()
    };
    let along_n = !b_in_place && (n >= m || (p.c.rs == 1 && m <= 2 * n));
    // Rows are handed out a vector (`LANES`) at a time rather than a tile: m = 600 is
    // 12.5 tiles, and whole tiles would give one thread 6 and the other 6.5; vectors
    // give each 6 tiles and a one-vector edge. Every element's sum is the same whichever
    // tile computes it, so the bits do not depend on the split.
    let (unit, units) = if along_n { (NR, tiles_n) } else { (LANES, m.div_ceil(LANES)) };
    let parts = threads.min(if along_n { tiles_n } else { tiles_m });
    if parts <= 1 {
        // SAFETY: the caller's contract.
        unsafe { serial(&p, blocking) };
        return;
    }
    // The operand every part needs in full, kept packed for the region, so that the
    // split side can be claimed a chunk at a time (see `claims`).
    let shared_pack = if along_n {
        m.div_ceil(MR) * MR * k
    } else if !b_in_place && n <= blocking.nc {
        n.div_ceil(NR) * NR * k
    } else {
        usize::MAX
    };
    let chunk = if along_n { CLAIM_PANELS } else { MV };
    if shared_pack <= SHARED_PACK_MAX
        && let Some(claims) = Claims::new(units, parts, chunk)
    {
        let part = |t| {
            // SAFETY: the claims hand each unit of C to one part; the caller's contract.
            unsafe {
                if along_n {
                    claimed_cols(&p, blocking, &claims, t)
                } else {
                    claimed_rows(&p, blocking, &claims, t)
                }
            }
        };
        #[cfg(test)]
        if let Some(order) = PART_ORDER.get() {
            order.iter().for_each(|&t| part(t));
            return;
        }
        team::run(parts, &part);
        return;
    }
    team::run(parts, &|t| {
        let (t0, t1) = (t * units / parts, (t + 1) * units / parts);
        // SAFETY: parts ≤ tiles ≤ units, so each part is a non-empty range of whole units
        // inside C, disjoint from the other parts' ranges.
        unsafe {
            let (start, end) = (t0 * unit, (t1 * unit).min(if along_n { n } else { m }));
            let block = if along_n { p.cols(start, end - start) } else { p.rows(start, end - start) };
            serial(&block, blocking);
        }
    });
}

/// A thread's packing buffers and zero-step masks, reused across calls.
#[derive(Default)]
struct Buffers {
    /// Packed A~ (a block, or in `claimed_cols` every k-block of A).
    a: Vec<V>,
    /// Packed B~ (a block, or in `claimed_rows` every k-block of B).
    b: Vec<V>,
    /// Zero-step masks of the A~ block's micro-panels.
    a_masks: Vec<u64>,
    /// Zero-step masks of the B~ block's micro-panels.
    b_masks: Vec<u64>,
    /// Masks of the blocks a claimed split keeps for the whole region, one per k-block.
    kept_masks: Vec<Vec<u64>>,
}

thread_local! {
    /// This thread's [`Buffers`].
    static BUFFERS: Cell<Buffers> = const {
        Cell::new(Buffers {
            a: Vec::new(),
            b: Vec::new(),
            a_masks: Vec::new(),
            b_masks: Vec::new(),
            kept_masks: Vec::new(),
        })
    };
}

/// This thread's [`Buffers`], taken out of their cell for one call and put back when
/// dropped (a nested call on the same thread finds the cell empty and allocates its
/// own).
struct Scratch(Buffers);

impl Scratch {
    /// The buffers, with A~ and B~ grown to at least `a_len` and `b_len` floats.
    fn take(a_len: usize, b_len: usize) -> Scratch {
        let mut bufs = BUFFERS.with(Cell::take);
        for (buf, len) in [(&mut bufs.a, a_len), (&mut bufs.b, b_len)] {
            let vectors = len.div_ceil(LANES);
            if buf.len() < vectors {
                buf.resize(vectors, V::ZERO);
            }
        }
        Scratch(bufs)
    }

    /// Where A~ and B~ start.
    fn packs(&mut self) -> (*mut f32, *mut f32) {
        (self.0.a.as_mut_ptr().cast(), self.0.b.as_mut_ptr().cast())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        BUFFERS.with(|cell| cell.set(std::mem::take(&mut self.0)));
    }
}

#[cfg(test)]
thread_local! {
    /// Steps this thread's tiles left out, so that tests can see the skip happen.
    static SKIPPED: Cell<usize> = const { Cell::new(0) };
    /// B blocks this thread read in place, so that tests can see which path ran.
    static IN_PLACE_BLOCKS: Cell<usize> = const { Cell::new(0) };
    /// When set, a claimed split runs its parts on this thread, one after another in
    /// this order, instead of on the team: the first part then takes every chunk,
    /// its own share's from the front and the others' from the back.
    static PART_ORDER: Cell<Option<&'static [usize]>> = const { Cell::new(None) };
    /// Chunks this thread computed through `claimed_rows` or `claimed_cols`.
    static CLAIMED_CHUNKS: Cell<usize> = const { Cell::new(0) };
}

/// Scans `panels` micro-panels of `kc` steps each into `masks` (`words(kc)` per
/// panel), `scan_one(s, mask)` filling panel `s`'s mask and returning its non-zero
/// steps. Returns whether any panel has enough zero steps to be worth skipping. With
/// `probe`, gives up after the first panel when that one has fewer than an eighth of
/// its steps zero: B~ blocks are read by every A micro-panel, and dense ones (hidden
/// activations) should cost one panel's scan.
fn scan_panels(
    panels: usize,
    kc: usize,
    masks: &mut Vec<u64>,
    probe: bool,
    scan_one: impl Fn(usize, &mut [u64]) -> usize,
) -> bool {
    let words = zero_steps::words(kc);
    masks.clear();
    masks.resize(panels * words, 0);
    let mut any = false;
    for (s, mask) in masks.chunks_exact_mut(words).enumerate() {
        let kept = scan_one(s, mask);
        if s == 0 && probe && kept + kc / 8 > kc {
            return false;
        }
        any |= zero_steps::worth_skipping(kept, kc);
    }
    any
}

/// Where LOOP 2 finds the B micro-panels of one `kc × nc` block.
#[derive(Clone, Copy)]
enum BPanels {
    /// Packed into B~: panel `s` is `kc` steps of `NR` contiguous values at `s·NR·kc`.
    Packed(*const f32),
    /// Read in place from a B whose columns are contiguous (`rs == 1`, the layout that
    /// packing would have to transpose): column `j` of panel `s` is the `kc` contiguous
    /// values at `origin + (s·NR + j)·cs`. A last, partial panel is packed at `partial`,
    /// so that no tile reads past the matrix.
    InPlace { origin: *const f32, cs: usize, full: usize, partial: *const f32 },
}

impl BPanels {
    /// Panel `s` as the microkernel takes it: its origin, its step stride and its
    /// column stride.
    ///
    /// # Safety
    /// `s` must be one of the block's panels.
    unsafe fn get(self, s: usize, kc: usize) -> (*const f32, usize, usize) {
        // SAFETY: the caller keeps s among the block's panels, which these offsets address.
        unsafe {
            match self {
                BPanels::Packed(packed) => (packed.add(s * NR * kc), NR, 1),
                BPanels::InPlace { origin, cs, full, .. } if s < full => (origin.add(s * NR * cs), 1, cs),
                BPanels::InPlace { partial, .. } => (partial, NR, 1),
            }
        }
    }
}

/// The origin of the `kc × nc` block of B at `(pc, jc)` and its number of full
/// micro-panels, when LOOP 2 should read that block in place rather than pack it.
///
/// That is when B's columns are contiguous (`rs == 1`: packing would transpose it),
/// the block is at least [`IN_PLACE_B_MIN_NC`] wide, and its first micro-panel has
/// few zero steps (the probe of `scan_panels`, when `scan`). The microkernel then
/// broadcasts from `NR` column pointers, as the `gemm` crate does. This saves the
/// transposing copy of a block that does not fit in L2 next to A~ (squares at 1
/// thread: +3% at 512, +1.6% at 1024), but each broadcast costs an address addition (LLVM chains
/// the `NR` column addresses), so narrow blocks, whose pack is cheap, stay packed
/// (n = 64, an MLP batch: −3% read in place), and so do blocks with zero steps to skip
/// (the first layer's inputs in inference: −7% read in place, even with the skips).
fn in_place_b(
    p: &Problem,
    pc: usize,
    jc: usize,
    kc: usize,
    nc: usize,
    scan: bool,
) -> Option<(*const f32, usize)> {
    if kc == 0 || p.b.rs != 1 || p.b.cs == 1 || nc < IN_PLACE_B_MIN_NC {
        return None;
    }
    // SAFETY: (pc, jc) is inside B (kc > 0, nc > 0).
    let origin = unsafe { p.b.ptr.add(pc + jc * p.b.cs) };
    if scan {
        let mut mask = [0u64; MAX_MASK_WORDS];
        // SAFETY: the first NR columns of the block (nc ≥ NR) have kc contiguous values.
        let kept =
            unsafe { zero_steps::scan_columns::<NR>(origin, p.b.cs, kc, &mut mask[..zero_steps::words(kc)]) };
        if kept + kc / 8 <= kc {
            return None;
        }
    }
    Some((origin, nc / NR))
}

/// The five loops on one thread.
///
/// # Safety
/// As [`run`].
unsafe fn serial(p: &Problem, blocking: Blocking) {
    let (m, n, k) = (p.c.rows, p.c.cols, p.a.cols);
    let kc_max = blocking.kc_for(k);
    let mc_max = blocking.mc.min(m.div_ceil(MR) * MR);
    let nc_max = blocking.nc.min(n.div_ceil(NR) * NR);
    let mut scratch = Scratch::take(mc_max * kc_max, kc_max * nc_max);
    let (a_pack, b_pack) = scratch.packs();
    let Buffers { a_masks, b_masks, .. } = &mut scratch.0;
    let mut tile_steps = [0u64; MAX_MASK_WORDS];

    // LOOP 5: split n into nc parts (B~ in L3).
    for jc in (0..n).step_by(blocking.nc) {
        let nc = blocking.nc.min(n - jc);
        // LOOP 4: split k into kc parts; pack B (B~ is kc × nc).
        for (pc, kc) in k_blocks(k, kc_max) {
            // SAFETY: the block is inside B; b_pack holds kc_max · nc_max floats.
            let (panels, b_skips) = unsafe { prepare_b(p, pc, jc, kc, nc, true, b_pack, b_masks) };
            // LOOP 3: split m into mc parts; pack A (A~ is mc × kc, in L2).
            for ic in (0..m).step_by(blocking.mc) {
                let mc = blocking.mc.min(m - ic);
                // A is read in place when its columns are contiguous and this block of A
                // meets a single B micro-panel: packing would copy it only to read it once
                // (n = 6 of a LeNet conv1 GEMM). Only a partial last micro-panel is packed.
                let direct = p.a.rs == 1 && nc <= NR;
                // SAFETY: the block is inside A; a_pack holds mc_max · kc_max floats.
                let a_skips = unsafe { prepare_a(p, ic, pc, mc, kc, direct, nc, a_pack, a_masks) };
                let a = ABlock { ic, mc, pack: a_pack, direct, masks: a_masks, skips: a_skips };
                let b = BBlock { jc, nc, panels, masks: b_masks, skips: b_skips };
                // SAFETY: both blocks were prepared above for (pc, kc).
                unsafe { macro_kernel(p, pc, kc, &a, &b, a_pack, &mut tile_steps) };
            }
        }
    }
}

/// C split by rows, every part packing all of B once: part `part` packs each k-block of
/// B (kept for the region), then computes the row chunks (`LANES` rows a unit) that
/// `claims` hands it, each through every k-block in order.
///
/// # Safety
/// As [`run`]; `claims` must deal C's rows in `LANES` units, and the parts of the region
/// must share one `claims`.
unsafe fn claimed_rows(p: &Problem, blocking: Blocking, claims: &Claims, part: usize) {
    let (m, n, k) = (p.c.rows, p.c.cols, p.a.cols);
    let kc_max = blocking.kc_for(k);
    let n_pad = n.div_ceil(NR) * NR;
    let mc_max = blocking.mc.min(m.div_ceil(MR) * MR);
    let mut scratch = Scratch::take(mc_max * kc_max, k.max(1) * n_pad);
    let (a_pack, b_pack) = scratch.packs();
    let Buffers { a_masks, kept_masks, .. } = &mut scratch.0;
    let mut tile_steps = [0u64; MAX_MASK_WORDS];
    kept_masks.resize_with(k_blocks(k, kc_max).count(), Vec::new);
    // B~ of k-block (pc, kc) is kc · n_pad floats at pc · n_pad.
    let b_blocks: Vec<_> = k_blocks(k, kc_max)
        .zip(kept_masks.iter_mut())
        .map(|((pc, kc), masks)| {
            // SAFETY: the block is inside B; b_pack holds k · n_pad floats, this block's
            // kc · n_pad from pc · n_pad.
            let (panels, skips) = unsafe { prepare_b(p, pc, 0, kc, n, false, b_pack.add(pc * n_pad), masks) };
            BBlock { jc: 0, nc: n, panels, masks, skips }
        })
        .collect();
    let direct = p.a.rs == 1 && n <= NR;
    while let Some(units) = claims.next(part) {
        #[cfg(test)]
        CLAIMED_CHUNKS.with(|c| c.set(c.get() + 1));
        let (i0, i1) = (units.start * LANES, (units.end * LANES).min(m));
        for ((pc, kc), b) in k_blocks(k, kc_max).zip(&b_blocks) {
            for ic in (i0..i1).step_by(blocking.mc) {
                let mc = blocking.mc.min(i1 - ic);
                // SAFETY: the rows are inside A; a_pack holds mc_max · kc_max floats.
                let a_skips = unsafe { prepare_a(p, ic, pc, mc, kc, direct, n, a_pack, a_masks) };
                let a = ABlock { ic, mc, pack: a_pack, direct, masks: a_masks, skips: a_skips };
                // SAFETY: both blocks are prepared for (pc, kc).
                unsafe { macro_kernel(p, pc, kc, &a, b, a_pack, &mut tile_steps) };
            }
        }
    }
}

/// C split by columns, every part packing all of A once: part `part` packs every
/// k-block of A (all `m` rows, kept for the region), then computes the column chunks
/// (`NR` columns a unit) that `claims` hands it, packing their B~ and running each
/// through every k-block in order.
///
/// # Safety
/// As [`claimed_rows`], with C's columns dealt in `NR` units.
unsafe fn claimed_cols(p: &Problem, blocking: Blocking, claims: &Claims, part: usize) {
    let (m, n, k) = (p.c.rows, p.c.cols, p.a.cols);
    let kc_max = blocking.kc_for(k);
    let m_pad = m.div_ceil(MR) * MR;
    let nc_max = (claims.chunk() * NR).min(n.div_ceil(NR) * NR);
    let mut scratch = Scratch::take(k.max(1) * m_pad, kc_max * nc_max);
    let (a_pack, b_pack) = scratch.packs();
    let Buffers { b_masks, kept_masks, .. } = &mut scratch.0;
    let mut tile_steps = [0u64; MAX_MASK_WORDS];
    kept_masks.resize_with(k_blocks(k, kc_max).count(), Vec::new);
    // A~ of k-block (pc, kc) is m_pad · kc floats at pc · m_pad; its rows from ic (a
    // multiple of MR) start at ic · kc within it.
    for ((pc, kc), masks) in k_blocks(k, kc_max).zip(kept_masks.iter_mut()) {
        // SAFETY: the block is inside A; a_pack holds k · m_pad floats, this block's
        // m_pad · kc from pc · m_pad.
        let skips = unsafe { prepare_a(p, 0, pc, m, kc, false, n, a_pack.add(pc * m_pad), masks) };
        // A block not worth skipping keeps no masks.
        if !skips {
            masks.clear();
        }
    }
    while let Some(units) = claims.next(part) {
        #[cfg(test)]
        CLAIMED_CHUNKS.with(|c| c.set(c.get() + 1));
        let (j0, j1) = (units.start * NR, (units.end * NR).min(n));
        for ((pc, kc), a_masks) in k_blocks(k, kc_max).zip(kept_masks.iter()) {
            // SAFETY: the columns are inside B; b_pack holds kc_max · nc_max floats.
            let (panels, b_skips) = unsafe { prepare_b(p, pc, j0, kc, j1 - j0, false, b_pack, b_masks) };
            let b = BBlock { jc: j0, nc: j1 - j0, panels, masks: b_masks, skips: b_skips };
            let words = zero_steps::words(kc);
            let a_skips = !a_masks.is_empty();
            for ic in (0..m).step_by(blocking.mc) {
                let mc = blocking.mc.min(m - ic);
                let masks = if a_skips { &a_masks[(ic / MR) * words..] } else { &a_masks[..] };
                // SAFETY: rows ic.. of this k-block's A~ start at pc · m_pad + ic · kc.
                let pack = unsafe { a_pack.add(pc * m_pad + ic * kc) };
                let a = ABlock { ic, mc, pack, direct: false, masks, skips: a_skips };
                // SAFETY: both blocks are prepared for (pc, kc).
                unsafe { macro_kernel(p, pc, kc, &a, &b, pack, &mut tile_steps) };
            }
        }
    }
}

/// The k-blocks `(pc, kc)` of LOOP 4: `⌈k / kc_max⌉` of them, or one empty block when
/// k = 0, so that C still gets β·C and the epilogue.
fn k_blocks(k: usize, kc_max: usize) -> impl Iterator<Item = (usize, usize)> {
    let step = kc_max.max(1);
    (0..k.max(1)).step_by(step).map(move |pc| (pc, step.min(k - pc.min(k))))
}

/// A prepared block of A: packed into A~ (or read in place) with its zero-step masks.
struct ABlock<'a> {
    /// First row of the block in C.
    ic: usize,
    /// Rows of the block.
    mc: usize,
    /// A~, `⌈mc / MR⌉` micro-panels of `kc · MR` values (unused when `direct`).
    pack: *mut f32,
    /// A is read in place (see [`serial`]).
    direct: bool,
    /// Zero-step masks of A~'s micro-panels, from the block's first.
    masks: &'a [u64],
    /// Whether the masks are worth consulting.
    skips: bool,
}

/// A prepared block of B: its micro-panels (packed or in place) and zero-step masks.
#[derive(Clone, Copy)]
struct BBlock<'a> {
    /// First column of the block in C.
    jc: usize,
    /// Columns of the block.
    nc: usize,
    panels: BPanels,
    /// Zero-step masks of B~'s micro-panels, from the block's first.
    masks: &'a [u64],
    /// Whether the masks are worth consulting.
    skips: bool,
}

/// Packs the `kc × nc` block of B at `(pc, jc)` into `pack` (or, when `allow_in_place`,
/// finds it readable in place) and scans its zero steps into `masks`. Returns where
/// its micro-panels are and whether the masks are worth consulting.
///
/// # Safety
/// The block must lie inside B, and `pack` must be valid for `kc · ⌈nc/NR⌉ · NR` writes.
#[allow(clippy::too_many_arguments)]
unsafe fn prepare_b(
    p: &Problem,
    pc: usize,
    jc: usize,
    kc: usize,
    nc: usize,
    allow_in_place: bool,
    pack: *mut f32,
    masks: &mut Vec<u64>,
) -> (BPanels, bool) {
    let scan = kc > 0 && zero_steps::words(kc) <= MAX_MASK_WORDS;
    let in_place = if allow_in_place { in_place_b(p, pc, jc, kc, nc, scan) } else { None };
    let panels = match in_place {
        Some((origin, full)) => {
            #[cfg(test)]
            IN_PLACE_BLOCKS.with(|c| c.set(c.get() + 1));
            if full * NR < nc {
                // SAFETY: the columns past the last full panel are inside B; pack holds
                // kc · ⌈nc/NR⌉ · NR ≥ kc · NR floats.
                unsafe { pack_b(p.b.block(pc, jc + full * NR, kc, nc - full * NR), pack) };
            }
            BPanels::InPlace { origin, cs: p.b.cs, full, partial: pack }
        }
        None => {
            // SAFETY: the block is inside B; the caller sized pack.
            unsafe { pack_b(p.b.block(pc, jc, kc, nc), pack) };
            BPanels::Packed(pack)
        }
    };
    // A B read in place has no zero steps worth skipping (`in_place_b` probed it).
    let skips = scan
        && matches!(panels, BPanels::Packed(_))
        && scan_panels(nc.div_ceil(NR), kc, masks, true, |s, mask| {
            // SAFETY: pack_b wrote ⌈nc/NR⌉ micro-panels of kc · NR values.
            unsafe { zero_steps::scan::<NR>(pack.add(s * NR * kc), kc, mask) }
        });
    (panels, skips)
}

/// Packs the `mc × kc` block of A at `(ic, pc)` into `pack` unless `direct`, scanning
/// its zero steps into `masks` when the block meets enough columns of B (`nc`). Returns
/// whether the masks are worth consulting.
///
/// # Safety
/// The block must lie inside A, and `pack` must be valid for `⌈mc/MR⌉ · MR · kc` writes.
#[allow(clippy::too_many_arguments)]
unsafe fn prepare_a(
    p: &Problem,
    ic: usize,
    pc: usize,
    mc: usize,
    kc: usize,
    direct: bool,
    nc: usize,
    pack: *mut f32,
    masks: &mut Vec<u64>,
) -> bool {
    if direct {
        return false;
    }
    // SAFETY: the caller's contract.
    unsafe { pack_a(p.a.block(ic, pc, mc, kc), pack) };
    let scan = kc > 0 && zero_steps::words(kc) <= MAX_MASK_WORDS;
    scan && nc >= SCAN_A_MIN_NC
        && scan_panels(mc.div_ceil(MR), kc, masks, true, |s, mask| {
            // SAFETY: pack_a wrote ⌈mc/MR⌉ micro-panels of kc · MR values.
            unsafe { zero_steps::scan::<MR>(pack.add(s * MR * kc), kc, mask) }
        })
}

/// LOOPS 2 and 1 over one prepared A block and one prepared B block of the k-block
/// `(pc, kc)`: every tile of C they cover. `scratch` takes the partial A micro-panel
/// of a `direct` block (`MR · kc` floats); `tile_steps` one tile's steps (the AND of
/// its two panels' masks), rewritten for each tile that skips.
///
/// # Safety
/// Both blocks must have been prepared for `(pc, kc)` of `p` and still be in place.
unsafe fn macro_kernel(
    p: &Problem,
    pc: usize,
    kc: usize,
    a: &ABlock<'_>,
    b: &BBlock<'_>,
    scratch: *mut f32,
    tile_steps: &mut [u64; MAX_MASK_WORDS],
) {
    let k = p.a.cols;
    let words = zero_steps::words(kc);
    // Later k-blocks accumulate onto what the first wrote.
    let beta = if pc == 0 { p.beta } else { 1.0 };
    let last = pc + kc >= k;
    // LOOP 2: split nc into NR-wide micro-panels of B~ (each stays in L1).
    for jr in (0..b.nc).step_by(NR) {
        let (j, cols) = (b.jc + jr, NR.min(b.nc - jr));
        // LOOP 1: split mc into MR-high micro-panels of A~.
        for ir in (0..a.mc).step_by(MR) {
            let (i, rows) = (a.ic + ir, MR.min(a.mc - ir));
            // SAFETY: (i, j) is inside C and the tile's rows × cols too; the
            // micro-panels start at ir·kc and jr·kc of the packed blocks, or
            // at (i, pc) of A read in place (rs == 1, rows == MR: the MR values
            // of each of the kc steps are inside A).
            unsafe {
                let out = TileOut {
                    c: p.c.ptr.add(i * p.c.rs + j * p.c.cs),
                    c_rs: p.c.rs,
                    c_cs: p.c.cs,
                    rows,
                    cols,
                    alpha: p.alpha,
                    beta,
                    last,
                    bias_row: offset(p.tail.bias_row, i),
                    bias_col: offset(p.tail.bias_col, j),
                    relu: p.tail.relu,
                    mask: p.tail.mask.map_or(core::ptr::null(), |mk| mk.ptr.add(i * mk.rs + j * mk.cs)),
                    mask_rs: p.tail.mask.map_or(0, |mk| mk.rs),
                    mask_cs: p.tail.mask.map_or(0, |mk| mk.cs),
                    descend: p
                        .tail
                        .descend
                        .map_or(core::ptr::null_mut(), |(d, _)| d.ptr.add(i * d.rs + j * d.cs)),
                    descend_rs: p.tail.descend.map_or(0, |(d, _)| d.rs),
                    descend_cs: p.tail.descend.map_or(0, |(d, _)| d.cs),
                    descend_scale: p.tail.descend.map_or(0.0, |(_, s)| s),
                };
                let (a_panel, a_step) = if !a.direct {
                    (a.pack.add(ir * kc).cast_const(), MR)
                } else if rows == MR {
                    (p.a.ptr.add(i + pc * p.a.cs), p.a.cs)
                } else {
                    pack_a(p.a.block(i, pc, rows, kc), scratch);
                    (scratch.cast_const(), MR)
                };
                // The steps this tile needs: those where neither micro-panel is
                // all zeros.
                let steps = &mut tile_steps[..words];
                let skip = (a.skips || b.skips) && {
                    // A side that was not scanned keeps every step.
                    let (a0, b0) = ((ir / MR) * words, (jr / NR) * words);
                    let mut kept = 0;
                    for (w, step) in steps.iter_mut().enumerate() {
                        let a_word = if a.skips { a.masks[a0 + w] } else { u64::MAX };
                        let b_word = if b.skips { b.masks[b0 + w] } else { u64::MAX };
                        *step = a_word & b_word;
                        kept += step.count_ones() as usize;
                    }
                    #[cfg(test)]
                    SKIPPED.with(|s| s.set(s.get() + kc - kept));
                    zero_steps::worth_skipping(kept, kc)
                };
                // The bottom edge runs the narrowest kernel that covers its rows.
                let steps = if skip { Some(&*steps) } else { None };
                let (b_panel, b_step, b_cs) = b.panels.get(jr / NR, kc);
                // A strided B is its own instantiation of each kernel.
                macro_rules! tile_of {
                    ($m:expr) => {
                        if b_cs != 1 {
                            tile::<$m, true>(kc, steps, a_panel, a_step, b_panel, b_step, b_cs, &out)
                        } else {
                            tile::<$m, false>(kc, steps, a_panel, a_step, b_panel, b_step, 1, &out)
                        }
                    };
                }
                match rows.div_ceil(LANES) {
                    1 => tile_of!(1),
                    2 if MV > 2 => tile_of!(2),
                    3 if MV > 3 => tile_of!(3),
                    _ => tile_of!(MV),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Epilogue, MatMut, MatRef, Parallelism, gemm};

    /// Steps skipped by one single-threaded `gemm(X·Wᵀ)`-like product.
    fn skipped(a: MatRef<'_>, b: MatRef<'_>) -> usize {
        let mut c = vec![0.0; a.rows() * b.cols()];
        let mut cv = MatMut::row_major(&mut c, a.rows(), b.cols()).unwrap();
        SKIPPED.with(|s| s.set(0));
        gemm(1.0, a, b, 0.0, &mut cv, &Epilogue::NONE, Parallelism::None).unwrap();
        SKIPPED.with(Cell::get)
    }

    /// `A·B` on one thread with A given row-major or column-major, and how many B
    /// blocks were read in place (in kernel orientation B is `Aᵀ`, whose columns are
    /// contiguous when A is row-major).
    fn product(a: &[f32], m: usize, k: usize, b: &[f32], n: usize, a_row_major: bool) -> (Vec<u32>, usize) {
        let a = if a_row_major {
            MatRef::row_major(a, m, k).unwrap()
        } else {
            MatRef::new(a, m, k, 1, m).unwrap()
        };
        let b = MatRef::row_major(b, k, n).unwrap();
        let mut c = vec![0.0; m * n];
        let mut cv = MatMut::row_major(&mut c, m, n).unwrap();
        IN_PLACE_BLOCKS.with(|c| c.set(0));
        gemm(1.0, a, b, 0.0, &mut cv, &Epilogue::NONE, Parallelism::None).unwrap();
        (c.iter().map(|x| x.to_bits()).collect(), IN_PLACE_BLOCKS.with(Cell::get))
    }

    /// C's bits from `a·b` with the parts of a 2-thread split run on this thread in
    /// `order` (`None`: on one thread), and how many chunks were claimed.
    fn split_bits(a: MatRef<'_>, b: MatRef<'_>, order: Option<&'static [usize]>) -> (Vec<u32>, usize) {
        let mut c = vec![f32::NAN; a.rows() * b.cols()];
        let mut cv = MatMut::row_major(&mut c, a.rows(), b.cols()).unwrap();
        let bias: Vec<f32> = (0..b.cols()).map(|j| (j % 5) as f32 - 2.0).collect();
        let epilogue = Epilogue { bias: crate::Bias::PerCol(&bias), relu: true, relu_mask: None };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let parallelism = if order.is_some() { Parallelism::Threads } else { Parallelism::None };
        // Inside the pool: the hooks are the running thread's.
        let chunks = pool.install(|| {
            PART_ORDER.with(|o| o.set(order));
            CLAIMED_CHUNKS.with(|c| c.set(0));
            gemm(1.0, a, b, 0.0, &mut cv, &epilogue, parallelism).unwrap();
            PART_ORDER.with(|o| o.set(None));
            CLAIMED_CHUNKS.with(Cell::get)
        });
        (c.iter().map(|x| x.to_bits()).collect(), chunks)
    }

    #[test]
    fn claimed_chunks_give_the_serial_bits_whichever_part_takes_them() {
        let (batch, pixels, out) = (64, 784, 600);
        // Images with blank rows (zero steps to skip) and a dense gradient.
        let x: Vec<f32> = (0..batch * pixels)
            .map(|i| if (i % pixels) / 28 % 3 == 0 { 0.0 } else { (i % 13) as f32 - 6.0 })
            .collect();
        let w: Vec<f32> = (0..out * pixels).map(|i| ((i * 7) % 19) as f32 * 0.125 - 1.0).collect();
        let dy: Vec<f32> = (0..batch * out).map(|i| ((i * 3) % 11) as f32 - 5.0).collect();
        let x = MatRef::row_major(&x, batch, pixels).unwrap();
        let w = MatRef::row_major(&w, out, pixels).unwrap();
        let dy = MatRef::row_major(&dy, batch, out).unwrap();
        // The forward pass (C split by rows in kernel orientation, two k-blocks) and
        // the weight gradient (split by columns).
        for (name, a, b) in [("X·Wᵀ", x, w.t()), ("dYᵀ·X", dy.t(), x)] {
            let (serial, none) = split_bits(a, b, None);
            assert_eq!(none, 0, "{name}: one thread claims nothing");
            for order in [&[0, 1][..], &[1, 0]] {
                let (bits, chunks) = split_bits(a, b, Some(order));
                assert!(chunks > 2, "{name}: the claimed path did not run ({chunks} chunks)");
                assert!(bits == serial, "{name}, parts in order {order:?}: differs from one thread");
            }
        }
    }

    #[test]
    fn wide_dense_b_with_contiguous_columns_is_read_in_place_with_the_packed_bits() {
        let (k, n) = (70, 40);
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        // m = 301: 37 full micro-panels and a partial one; m = 200 is too narrow.
        for (m, in_place) in [(301, true), (200, false)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 13) % 17) as f32 * 0.25 - 2.0).collect();
            let a_t: Vec<f32> = (0..m * k).map(|i| a[(i % m) * k + i / m]).collect();
            let (bits, blocks) = product(&a, m, k, &b, n, true);
            let (packed_bits, packed_blocks) = product(&a_t, m, k, &b, n, false);
            assert_eq!(blocks > 0, in_place, "m = {m}");
            assert_eq!(packed_blocks, 0);
            assert!(bits == packed_bits, "m = {m}: in place and packed differ");
        }
        // A block of B with zero steps is packed, so that they can be skipped.
        let m = 301;
        let a: Vec<f32> = (0..m * k).map(|i| if i % k < k / 2 { 0.0 } else { 1.0 }).collect();
        assert_eq!(product(&a, m, k, &b, n, true).1, 0);
    }

    #[test]
    fn zero_pixels_are_skipped_on_either_side_and_dense_operands_skip_nothing() {
        let (batch, pixels, out) = (64, 784, 600);
        // Images whose top and bottom thirds are blank.
        let x: Vec<f32> =
            (0..batch * pixels).map(|i| if (261..523).contains(&(i % pixels)) { 1.0 } else { 0.0 }).collect();
        let w: Vec<f32> = (0..out * pixels).map(|i| (i % 7) as f32 - 3.5).collect();
        let dy: Vec<f32> = (0..batch * out).map(|i| (i % 5) as f32 - 2.5).collect();
        let x = MatRef::row_major(&x, batch, pixels).unwrap();
        let w = MatRef::row_major(&w, out, pixels).unwrap();
        let dy = MatRef::row_major(&dy, batch, out).unwrap();
        // Forward: the zero pixels are zero steps of every B micro-panel (8 images).
        assert!(skipped(x, w.t()) > 0, "forward skipped nothing");
        // Weight gradient: a zero run of 48 pixels is a zero step of an A micro-panel.
        assert!(skipped(dy.t(), x) > 0, "weight gradient skipped nothing");
        // Dense operands: nothing to skip.
        assert_eq!(skipped(dy, w), 0);
    }
}
