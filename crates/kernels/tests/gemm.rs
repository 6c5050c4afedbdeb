//! The packed GEMM against `reference::gemm_naive`: every small shape, shapes that
//! cross the cache blocks, all four transpose combinations, padded and non-unit
//! strides, α/β (β = 0 over a NaN-filled C), each epilogue, bit-identical results for
//! 1 and 2 threads, and a property test over random shapes and strides.

use kernels::reference::gemm_naive;
use kernels::{Bias, Epilogue, KernelError, MatMut, MatRef, Parallelism, gemm};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How a matrix is laid out in its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Row-major with `pad` extra elements per row.
    Row { pad: usize },
    /// Column-major with `pad` extra elements per column.
    Col { pad: usize },
    /// Neither stride is 1: columns `cs` apart, rows `cols·cs + 1` apart.
    Spread { cs: usize },
}

/// Strides and buffer length of a `rows × cols` matrix in `layout`.
fn geometry(rows: usize, cols: usize, layout: Layout) -> (usize, usize, usize) {
    let (rs, cs) = match layout {
        // A zero stride would make an empty C look self-aliased to `MatMut::new`.
        Layout::Row { pad } => ((cols + pad).max(1), 1),
        Layout::Col { pad } => (1, (rows + pad).max(1)),
        Layout::Spread { cs } => (cols * cs + 1, cs),
    };
    let len = if rows == 0 || cols == 0 { 0 } else { (rows - 1) * rs + (cols - 1) * cs + 1 };
    (rs, cs, len)
}

fn random(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Which epilogue a case applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Epi {
    None,
    BiasRow,
    BiasCol,
    Relu,
    Mask(Layout),
    All,
}

/// One GEMM case: shapes, whether A and B are stored transposed, layouts, scalars.
#[derive(Debug, Clone, Copy)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    /// `op(A) = Aᵀ`: A is stored `k × m`.
    ta: bool,
    /// `op(B) = Bᵀ`: B is stored `n × k`.
    tb: bool,
    la: Layout,
    lb: Layout,
    lc: Layout,
    alpha: f32,
    beta: f32,
    epi: Epi,
    seed: u64,
}

impl Case {
    fn new(m: usize, n: usize, k: usize) -> Self {
        Self {
            m,
            n,
            k,
            ta: false,
            tb: false,
            la: Layout::Row { pad: 0 },
            lb: Layout::Row { pad: 0 },
            lc: Layout::Row { pad: 0 },
            alpha: 1.0,
            beta: 0.0,
            epi: Epi::None,
            seed: (m * 1_000_003 + n * 1009 + k) as u64,
        }
    }

    fn trans(self, ta: bool, tb: bool) -> Self {
        Self { ta, tb, ..self }
    }

    fn layouts(self, la: Layout, lb: Layout, lc: Layout) -> Self {
        Self { la, lb, lc, ..self }
    }

    fn scalars(self, alpha: f32, beta: f32) -> Self {
        Self { alpha, beta, ..self }
    }

    fn epi(self, epi: Epi) -> Self {
        Self { epi, ..self }
    }
}

/// The output of `case` computed by `gemm` under `par` and by the reference, in C's buffer.
fn run(case: &Case, par: Parallelism) -> (Vec<f32>, Vec<f32>) {
    let Case { m, n, k, ta, tb, la, lb, lc, alpha, beta, epi, seed } = *case;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (ar, ac) = if ta { (k, m) } else { (m, k) };
    let (br, bc) = if tb { (n, k) } else { (k, n) };
    let (ars, acs, alen) = geometry(ar, ac, la);
    let (brs, bcs, blen) = geometry(br, bc, lb);
    let (crs, ccs, clen) = geometry(m, n, lc);
    let a_data = random(&mut rng, alen);
    let b_data = random(&mut rng, blen);
    // β = 0 must not read C: fill it with NaN so that any read shows.
    let c_init = if beta == 0.0 { vec![f32::NAN; clen] } else { random(&mut rng, clen) };
    let bias_m = random(&mut rng, m);
    let bias_n = random(&mut rng, n);
    let mask_layout = match epi {
        Epi::Mask(l) => l,
        _ => Layout::Row { pad: 1 },
    };
    let (mrs, mcs, mlen) = geometry(m, n, mask_layout);
    let mask_data = random(&mut rng, mlen);
    let mask = MatRef::new(&mask_data, m, n, mrs, mcs).unwrap();
    let epilogue = match epi {
        Epi::None => Epilogue::NONE,
        Epi::BiasRow => Epilogue { bias: Bias::PerRow(&bias_m), ..Epilogue::NONE },
        Epi::BiasCol => Epilogue { bias: Bias::PerCol(&bias_n), ..Epilogue::NONE },
        Epi::Relu => Epilogue { relu: true, ..Epilogue::NONE },
        Epi::Mask(_) => Epilogue { relu_mask: Some(mask), ..Epilogue::NONE },
        Epi::All => Epilogue { bias: Bias::PerCol(&bias_n), relu: true, relu_mask: Some(mask) },
    };
    let a = MatRef::new(&a_data, ar, ac, ars, acs).unwrap();
    let b = MatRef::new(&b_data, br, bc, brs, bcs).unwrap();
    let (a, b) = (if ta { a.t() } else { a }, if tb { b.t() } else { b });

    let mut got = c_init.clone();
    let mut c = MatMut::new(&mut got, m, n, crs, ccs).unwrap();
    gemm(alpha, a, b, beta, &mut c, &epilogue, par).unwrap();

    let mut want = c_init;
    let mut c = MatMut::new(&mut want, m, n, crs, ccs).unwrap();
    gemm_naive(alpha, a, b, beta, &mut c, &epilogue);
    (got, want)
}

/// Runs `case` and compares with the reference: relative error ~1e-5 scaled by `k`.
fn check(case: &Case) {
    let (got, want) = run(case, Parallelism::Threads);
    let tol = 1e-5 * (case.k as f32 + 1.0) * (case.alpha.abs() + case.beta.abs() + 1.0);
    for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
        // Padding elements of C between rows/columns must be untouched (NaN stays NaN).
        if w.is_nan() {
            assert!(g.is_nan(), "{case:?}: padding element {idx} was written: {g}");
            continue;
        }
        assert!((g - w).abs() <= tol * w.abs().max(1.0), "{case:?}: element {idx}: got {g}, want {w}");
    }
}

const ROW: Layout = Layout::Row { pad: 0 };
const COL: Layout = Layout::Col { pad: 0 };
const TRANS: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

#[test]
fn all_small_m_and_n_for_a_few_k() {
    for k in [0, 1, 2, 7, 16, 17] {
        for m in 0..=17 {
            for n in 0..=17 {
                let (ta, tb) = TRANS[(m + n + k) % 4];
                check(&Case::new(m, n, k).trans(ta, tb));
            }
        }
    }
}

#[test]
fn all_small_k_with_a_few_m_or_n() {
    for k in 0..=17 {
        for x in 0..=17 {
            for y in [0, 1, 2, 7, 16, 17] {
                let (ta, tb) = TRANS[(x + y + k) % 4];
                check(&Case::new(x, y, k).trans(ta, tb));
                check(&Case::new(y, x, k).trans(tb, ta).layouts(ROW, ROW, COL));
            }
        }
    }
}

#[test]
fn primes_257_and_shapes_across_the_cache_blocks() {
    let shapes = [
        (257, 257, 257),
        (31, 37, 41),
        (97, 101, 103),
        (1, 257, 1),
        (257, 1, 257),
        // k beyond KC (several k-blocks, the later ones accumulating).
        (33, 29, 1100),
        // m beyond MC, n beyond NC (several passes of LOOP 3 and LOOP 5).
        (1030, 40, 70),
        (20, 4100, 10),
        (64, 600, 784),
    ];
    for (m, n, k) in shapes {
        for (ta, tb) in TRANS {
            check(&Case::new(m, n, k).trans(ta, tb));
        }
        check(&Case::new(m, n, k).layouts(COL, COL, COL).scalars(0.5, -1.0).epi(Epi::All));
    }
}

#[test]
fn skinny_shapes_of_the_lowered_convolutions() {
    // One side far shorter than a tile and the other long: the orientation flips away
    // from the contiguous side of C, and A is read in place when n fits one micro-panel.
    let shapes = [(6272, 6, 25), (6, 6272, 25), (800, 16, 150), (16, 800, 150), (100, 8, 9), (100, 9, 9)];
    for (m, n, k) in shapes {
        for (ta, tb) in TRANS {
            for lc in [ROW, COL] {
                check(&Case::new(m, n, k).trans(ta, tb).layouts(ROW, ROW, lc));
            }
        }
        check(&Case::new(m, n, k).trans(true, false).scalars(0.5, 2.0).epi(Epi::All));
        check(&Case::new(m, n, k).layouts(COL, ROW, COL).epi(Epi::BiasRow));
    }
}

#[test]
fn k_equal_one() {
    for (m, n) in [(1, 1), (5, 300), (300, 5), (64, 64), (129, 77)] {
        for (ta, tb) in TRANS {
            check(&Case::new(m, n, 1).trans(ta, tb).scalars(2.0, 0.5));
        }
    }
}

#[test]
fn transposes_with_padded_and_spread_strides() {
    let layouts = [ROW, COL, Layout::Row { pad: 3 }, Layout::Col { pad: 5 }, Layout::Spread { cs: 2 }];
    for (m, n, k) in [(33, 25, 19), (7, 40, 64), (70, 13, 5)] {
        for (ta, tb) in TRANS {
            for (i, &la) in layouts.iter().enumerate() {
                for (j, &lb) in layouts.iter().enumerate() {
                    let lc = layouts[(i + j) % layouts.len()];
                    check(&Case::new(m, n, k).trans(ta, tb).layouts(la, lb, lc));
                }
            }
        }
    }
}

#[test]
fn alpha_and_beta_values() {
    for alpha in [1.0, -0.5, 2.0, 0.0] {
        for beta in [0.0, 1.0, 0.5, -1.0] {
            for lc in [ROW, COL, Layout::Row { pad: 2 }] {
                check(&Case::new(45, 38, 29).layouts(ROW, COL, lc).scalars(alpha, beta));
                // Several k-blocks: β applies once, on the first.
                check(&Case::new(35, 26, 1100).scalars(alpha, beta).layouts(ROW, ROW, lc));
            }
        }
    }
}

#[test]
fn beta_zero_never_reads_a_nan_filled_c() {
    for (m, n, k) in [(64, 48, 32), (17, 13, 0), (100, 3, 1100)] {
        for lc in [ROW, COL] {
            let (got, _) = run(&Case::new(m, n, k).layouts(ROW, ROW, lc), Parallelism::None);
            assert!(got.iter().all(|x| x.is_finite()), "NaN leaked from C for {m}×{n}×{k}");
        }
    }
}

#[test]
fn each_epilogue() {
    let epis = [
        Epi::None,
        Epi::BiasRow,
        Epi::BiasCol,
        Epi::Relu,
        Epi::Mask(ROW),
        Epi::Mask(COL),
        Epi::Mask(Layout::Spread { cs: 3 }),
        Epi::All,
    ];
    for epi in epis {
        for lc in [ROW, COL, Layout::Spread { cs: 2 }] {
            for (m, n, k) in [(64, 48, 32), (37, 29, 600), (5, 70, 3)] {
                check(&Case::new(m, n, k).layouts(ROW, ROW, lc).epi(epi).scalars(1.5, 0.5));
                check(&Case::new(m, n, k).layouts(COL, ROW, lc).epi(epi));
            }
        }
    }
}

#[test]
fn epilogue_effects_are_visible() {
    // Guards against an epilogue that is silently skipped: ReLU leaves no negative
    // value, the mask zeroes where it is ≤ 0, the bias shifts a zero product.
    let (got, _) = run(&Case::new(40, 30, 20).epi(Epi::Relu), Parallelism::None);
    assert!(got.iter().all(|&x| x >= 0.0) && got.iter().any(|&x| x > 0.0));
    let (plain, _) = run(&Case::new(40, 30, 20), Parallelism::None);
    assert!(plain.iter().any(|&x| x < 0.0));

    let bias = [1.0, 2.0, 3.0];
    let (a, b) = (vec![0.0; 2 * 4], vec![0.0; 4 * 3]);
    let mut c = vec![f32::NAN; 2 * 3];
    let epi = Epilogue { bias: Bias::PerCol(&bias), ..Epilogue::NONE };
    let mut cv = MatMut::row_major(&mut c, 2, 3).unwrap();
    let (av, bv) = (MatRef::row_major(&a, 2, 4).unwrap(), MatRef::row_major(&b, 4, 3).unwrap());
    gemm(1.0, av, bv, 0.0, &mut cv, &epi, Parallelism::None).unwrap();
    assert_eq!(c, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
}

/// Runs `case` on a rayon pool of `threads` threads and returns C's bits.
fn bits_on_pool(case: &Case, threads: usize) -> Vec<u32> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let (got, _) = pool.install(|| run(case, Parallelism::Threads));
    got.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn one_and_two_threads_give_identical_bits() {
    let shapes = [(64, 600, 784), (784, 600, 64), (600, 64, 784), (257, 300, 1100), (6, 50176 / 8, 25)];
    for (m, n, k) in shapes {
        for lc in [ROW, COL] {
            let case = Case::new(m, n, k).layouts(ROW, COL, lc).epi(Epi::All).scalars(1.0, 0.5);
            let one = bits_on_pool(&case, 1);
            assert_eq!(one, bits_on_pool(&case, 2), "{m}×{n}×{k}: 1 and 2 threads differ");
            assert_eq!(one, bits_on_pool(&case, 3), "{m}×{n}×{k}: 1 and 3 threads differ");
            let (none, _) = run(&case, Parallelism::None);
            assert_eq!(one, none.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        }
    }
}

#[test]
fn bad_operands_are_errors() {
    let (a, b) = (vec![0.0; 6], vec![0.0; 6]);
    let mut c = vec![0.0; 4];
    let av = MatRef::row_major(&a, 2, 3).unwrap();
    let bv = MatRef::row_major(&b, 2, 3).unwrap();
    let mut cv = MatMut::row_major(&mut c, 2, 2).unwrap();
    let err = gemm(1.0, av, bv, 0.0, &mut cv, &Epilogue::NONE, Parallelism::None).unwrap_err();
    assert!(matches!(err, KernelError::DimensionMismatch { .. }));
    let bias = [1.0; 3];
    let epi = Epilogue { bias: Bias::PerRow(&bias), ..Epilogue::NONE };
    let err = gemm(1.0, av, bv.t(), 0.0, &mut cv, &epi, Parallelism::None).unwrap_err();
    assert_eq!(err, KernelError::BadLength { name: "bias", len: 3, expected: 2 });
    assert!(MatRef::new(&a, 3, 3, 3, 1).is_err());
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        (0usize..4).prop_map(|pad| Layout::Row { pad }),
        (0usize..4).prop_map(|pad| Layout::Col { pad }),
        (2usize..4).prop_map(|cs| Layout::Spread { cs }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn random_shapes_and_strides(
        m in 0usize..90, n in 0usize..90, k in 0usize..90,
        ta: bool, tb: bool,
        la in layout(), lb in layout(), lc in layout(),
        alpha in prop_oneof![Just(1.0f32), -2.0f32..2.0],
        beta in prop_oneof![Just(0.0f32), Just(1.0f32), -2.0f32..2.0],
        epi in prop_oneof![Just(Epi::None), Just(Epi::BiasRow), Just(Epi::BiasCol), Just(Epi::Relu), Just(Epi::All)],
        seed: u64,
    ) {
        let case = Case { m, n, k, ta, tb, la, lb, lc, alpha, beta, epi, seed };
        check(&case);
    }
}

/// `C ← α·A·B + β·C` summed exactly as the microkernel sums: over each k-block of
/// [`Blocking::kc_for`] in order, one (fused, where the SIMD path fuses) multiply-add
/// per step from +0, then `x·α + β·C` with β = 1 on the later k-blocks. The packed
/// GEMM must match it bit for bit, whether or not it skips steps.
fn gemm_in_kernel_order(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32], n: usize) {
    let (m, k) = (a.rows(), a.cols());
    let kc = kernels::gemm::blocking::Blocking::get().kc_for(k);
    for i in 0..m {
        for j in 0..n {
            let mut beta = beta;
            let mut pc = 0;
            loop {
                let mut acc = 0.0f32;
                for p in pc..(pc + kc).min(k) {
                    let (x, y) = (a.at(i, p), b.at(p, j));
                    acc = if cfg!(target_feature = "fma") { x.mul_add(y, acc) } else { acc + x * y };
                }
                let mut x = acc * alpha;
                if beta != 0.0 {
                    x += beta * c[i * n + j];
                }
                c[i * n + j] = x;
                (pc, beta) = (pc + kc, 1.0);
                if pc >= k {
                    break;
                }
            }
        }
    }
}

/// Rows that are zero outside a random window of columns and half zero inside it, the
/// way MNIST digits sit in their frame; every seventh row is all zeros.
fn zero_framed(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Vec<f32> {
    let mut data = vec![0.0f32; rows * cols];
    for (r, row) in data.chunks_exact_mut(cols.max(1)).enumerate() {
        if r % 7 == 6 || cols == 0 {
            continue;
        }
        let start = rng.random_range(0..cols);
        let end = rng.random_range(start..=cols.min(start + cols / 3 + 1));
        for x in &mut row[start..end] {
            if rng.random_bool(0.5) {
                *x = rng.random_range(-1.0f32..1.0);
            }
        }
    }
    data
}

#[test]
fn zero_steps_are_skipped_without_changing_a_bit() {
    // (m, n, k, which operands are zero-framed). The first two are the first layer of
    // the MLP: its forward X·Wᵀ (zero pixels shared by the 8 images of a B
    // micro-panel) and its weight gradient dYᵀ·X (zero pixel runs of one image in an A
    // micro-panel); the rest cross tiles, k-blocks and edges with both sides framed.
    let cases = [
        (64, 600, 784, (true, false)),
        (600, 784, 64, (false, true)),
        (1000, 300, 200, (true, false)),
        (53, 301, 130, (true, true)),
        (300, 290, 1100, (true, true)),
        (17, 9, 5, (true, true)),
    ];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for (m, n, k, (sparse_a, sparse_b)) in cases {
        let mut rng = ChaCha8Rng::seed_from_u64((m * n + k) as u64);
        // A (m × k) has rows zero-framed along k, like X in X·Wᵀ; B (k × n) has rows
        // zero-framed along n, like X in dYᵀ·X. A dense B is stored n × k and used
        // transposed, as Wᵀ is.
        let a_data = if sparse_a { zero_framed(&mut rng, m, k) } else { random(&mut rng, m * k) };
        let b_data = if sparse_b { zero_framed(&mut rng, k, n) } else { random(&mut rng, n * k) };
        let a = MatRef::row_major(&a_data, m, k).unwrap();
        let b = if sparse_b {
            MatRef::row_major(&b_data, k, n).unwrap()
        } else {
            MatRef::row_major(&b_data, n, k).unwrap().t()
        };
        let c0 = random(&mut rng, m * n);
        for (alpha, beta) in [(1.0, 0.0), (0.5, 0.75)] {
            let mut want = c0.clone();
            gemm_in_kernel_order(alpha, a, b, beta, &mut want, n);
            for threads in [1, 2] {
                let mut got = c0.clone();
                let mut c = MatMut::row_major(&mut got, m, n).unwrap();
                let par = if threads == 1 { Parallelism::None } else { Parallelism::Threads };
                pool.install(|| gemm(alpha, a, b, beta, &mut c, &Epilogue::NONE, par)).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert!(bits(&got) == bits(&want), "{m}×{n}×{k} α {alpha} β {beta}, {threads} thread(s)");
            }
        }
    }
}

#[test]
fn a_nan_in_a_mostly_zero_operand_is_not_skipped() {
    let (m, n, k) = (64, 600, 784);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut a_data = vec![0.0f32; m * k];
    a_data[3 * k + 500] = f32::NAN;
    a_data[10 * k + 20] = 1.0;
    let b_data = random(&mut rng, k * n);
    let a = MatRef::row_major(&a_data, m, k).unwrap();
    let b = MatRef::row_major(&b_data, k, n).unwrap();
    let mut got = vec![f32::NAN; m * n];
    let mut c = MatMut::row_major(&mut got, m, n).unwrap();
    gemm(1.0, a, b, 0.0, &mut c, &Epilogue::NONE, Parallelism::Threads).unwrap();
    for (i, row) in got.chunks_exact(n).enumerate() {
        match i {
            3 => assert!(row.iter().all(|x| x.is_nan()), "row 3 lost its NaN"),
            10 => assert_eq!(row, &b_data[20 * n..21 * n]),
            _ => assert!(row.iter().all(|&x| x == 0.0), "row {i} should be zero"),
        }
    }
}

#[test]
fn a_fused_descend_equals_the_separate_loop_bit_for_bit() {
    use kernels::gemm_with_descend;
    // (m, n, k, C and D column-major?): the MLP's weight gradients in PyTorch layout,
    // edges of every kind, and strided C and D.
    let cases = [
        (600, 784, 64, false),
        (600, 600, 64, false),
        (10, 600, 64, false),
        (37, 29, 70, true),
        (5, 300, 9, false),
        // Few columns: C keeps its orientation and is written a row at a time.
        (300, 5, 9, false),
    ];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for (m, n, k, col_major) in cases {
        let mut rng = ChaCha8Rng::seed_from_u64((m + n + k) as u64);
        let (dy, x) = (random(&mut rng, k * m), random(&mut rng, k * n));
        let (v0, w0) = (random(&mut rng, m * n), random(&mut rng, m * n));
        let a = MatRef::row_major(&dy, k, m).unwrap().t();
        let b = MatRef::row_major(&x, k, n).unwrap();
        let (rs, cs) = if col_major { (1, m) } else { (n, 1) };
        let (lr, mu) = (0.01, 0.9);
        // The separate loop: the velocity GEMM, then w ← w − lr·v.
        let mut v_want = v0.clone();
        gemm(
            1.0,
            a,
            b,
            mu,
            &mut MatMut::new(&mut v_want, m, n, rs, cs).unwrap(),
            &Epilogue::NONE,
            Parallelism::None,
        )
        .unwrap();
        let mut w_want = w0.clone();
        for (w, &v) in w_want.iter_mut().zip(&v_want) {
            *w -= lr * v;
        }
        for threads in [1, 2] {
            let (mut v, mut w) = (v0.clone(), w0.clone());
            let mut vm = MatMut::new(&mut v, m, n, rs, cs).unwrap();
            let mut wm = MatMut::new(&mut w, m, n, rs, cs).unwrap();
            let par = if threads == 1 { Parallelism::None } else { Parallelism::Threads };
            pool.install(|| {
                gemm_with_descend(1.0, a, b, mu, &mut vm, &Epilogue::NONE, Some((&mut wm, lr)), par)
            })
            .unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(bits(&v) == bits(&v_want), "{m}×{n}×{k}: velocity differs, {threads} thread(s)");
            assert!(bits(&w) == bits(&w_want), "{m}×{n}×{k}: weights differ, {threads} thread(s)");
        }
    }
    // D must have C's shape.
    let (a, mut c, mut d) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 6]);
    let av = MatRef::row_major(&a, 2, 2).unwrap();
    let mut cv = MatMut::row_major(&mut c, 2, 2).unwrap();
    let mut dv = MatMut::row_major(&mut d, 2, 3).unwrap();
    let err = gemm_with_descend(
        1.0,
        av,
        av,
        0.0,
        &mut cv,
        &Epilogue::NONE,
        Some((&mut dv, 1.0)),
        Parallelism::None,
    );
    assert!(matches!(err, Err(KernelError::DimensionMismatch { .. })));
}
