//! Convolution against the naive reference: im2col/col2im, and every path
//! (lowered, direct, auto) forward and backward, on awkward geometries; 1 vs 2 threads
//! bit-identical; bad input rejected with typed errors.

use kernels::conv::{
    ConvPath, col2im, conv2d_backward_with, conv2d_forward, conv2d_forward_pooled, conv2d_forward_with,
    im2col,
};
use kernels::reference::{conv2d_backward_naive, conv2d_naive};
use kernels::{ConvGeometry, KernelError, Parallelism};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `(batch, in_c, in_h, in_w, out_c, kh, kw, stride, pad)`.
type Shape = (usize, usize, usize, usize, usize, usize, usize, usize, usize);

/// LeNet's layers, 1×1 kernels, kernel = input, strides 2 and 3, padding 0..3,
/// non-square inputs and kernels, rows wider than two vectors, and channel counts that
/// leave every register tile remainder (1..=17).
const SHAPES: &[Shape] = &[
    (3, 1, 28, 28, 6, 5, 5, 1, 2),
    (5, 6, 14, 14, 16, 5, 5, 1, 0),
    (5, 3, 7, 13, 4, 3, 3, 1, 1),
    (1, 17, 5, 5, 17, 1, 1, 1, 0),
    (2, 2, 6, 6, 3, 6, 6, 1, 0),
    (5, 3, 7, 13, 5, 3, 3, 2, 1),
    (2, 4, 11, 9, 7, 3, 2, 3, 3),
    (5, 1, 4, 17, 1, 2, 5, 1, 3),
    (1, 5, 9, 40, 9, 3, 3, 1, 1),
    (2, 2, 3, 3, 2, 3, 3, 1, 2),
    (5, 17, 8, 8, 13, 3, 3, 1, 0),
    (1, 1, 1, 1, 1, 1, 1, 1, 0),
    (3, 2, 5, 5, 17, 4, 4, 1, 3),
    (1, 3, 7, 13, 11, 1, 1, 2, 0),
    (5, 2, 13, 7, 7, 5, 3, 1, 2),
    (2, 1, 30, 33, 12, 5, 5, 1, 2),
    // Output channels a multiple of the vector width (the channel-vectorised weight
    // gradient): one and two vectors, 3- and 5-wide kernels, over several runs of
    // images; and a 2-wide kernel, which keeps the row-vectorised tile.
    (6, 3, 9, 11, 16, 3, 3, 1, 1),
    (5, 2, 6, 21, 32, 3, 2, 1, 2),
    (5, 2, 8, 9, 32, 5, 5, 1, 2),
    (3, 1, 7, 7, 32, 3, 3, 1, 1),
    // LeNet's conv2 over two groups of 16 images and 3 more: the input gradient with
    // the lanes over images, and the rest with the lanes over rows.
    (35, 6, 14, 14, 16, 5, 5, 1, 0),
];

fn geometries() -> impl Iterator<Item = ConvGeometry> {
    SHAPES.iter().map(|&(batch, in_c, in_h, in_w, out_c, kh, kw, stride, pad)| ConvGeometry {
        batch,
        in_c,
        in_h,
        in_w,
        out_c,
        kh,
        kw,
        stride,
        pad,
    })
}

fn random(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Every element within `1e-4·(1 + |expected|)`: far above the rounding of a few
/// hundred f32 products (FMA and summation order differ from the reference), far
/// below any indexing mistake.
fn assert_close(what: &str, g: &ConvGeometry, got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len(), "{what}: length, {g:?}");
    let mut worst = 0.0f32;
    for (i, (a, b)) in got.iter().zip(expected).enumerate() {
        let err = (a - b).abs();
        assert!(err <= 1e-4 * (1.0 + b.abs()), "{what}: element {i}: got {a}, expected {b}, {g:?}");
        worst = worst.max(err);
    }
    println!("{what}: max |diff| {worst:e} for {g:?}");
}

/// The paths to check for `g` (each on its own, and the automatic choice).
fn paths(g: &ConvGeometry, backward_with_input: Option<bool>) -> Vec<ConvPath> {
    let direct_ok = g.stride == 1 && (backward_with_input != Some(true) || (g.pad < g.kh && g.pad < g.kw));
    let mut p = vec![ConvPath::Lowered, ConvPath::Auto];
    if direct_ok {
        p.push(ConvPath::Direct);
    }
    p
}

#[test]
fn forward_matches_reference_on_every_path() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut direct_runs = 0;
    for g in geometries() {
        let input = random(&mut rng, g.input_len());
        let weight = random(&mut rng, g.weight_len());
        let bias = random(&mut rng, g.out_c);
        for (use_bias, relu) in [(false, false), (true, false), (true, true), (false, true)] {
            let b = use_bias.then_some(&bias[..]);
            let mut expected = vec![0.0; g.output_len()];
            conv2d_naive(&g, &input, &weight, b, &mut expected);
            if relu {
                expected.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            for path in paths(&g, None) {
                direct_runs += usize::from(path == ConvPath::Direct);
                // NaN in the output proves it is overwritten, never read.
                let mut out = vec![f32::NAN; g.output_len()];
                conv2d_forward_with(path, &g, &input, &weight, b, relu, &mut out, Parallelism::Threads)
                    .unwrap();
                assert_close(&format!("forward {path:?} bias {use_bias} relu {relu}"), &g, &out, &expected);
            }
        }
    }
    assert!(direct_runs >= 40, "the direct path ran only {direct_runs} times");
}

#[test]
fn backward_matches_reference_on_every_path() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut direct_runs = 0;
    for g in geometries() {
        let input = random(&mut rng, g.input_len());
        let weight = random(&mut rng, g.weight_len());
        let grad_out = random(&mut rng, g.output_len());
        // Non-zero starting gradients prove weight and bias gradients accumulate.
        let gw0 = random(&mut rng, g.weight_len());
        let gb0 = random(&mut rng, g.out_c);
        let mut gi_ref = vec![0.0; g.input_len()];
        let (mut gw_ref, mut gb_ref) = (gw0.clone(), gb0.clone());
        conv2d_backward_naive(
            &g,
            &input,
            &weight,
            &grad_out,
            Some(&mut gi_ref),
            &mut gw_ref,
            Some(&mut gb_ref),
        );
        for with_input in [true, false] {
            for path in paths(&g, Some(with_input)) {
                direct_runs += usize::from(path == ConvPath::Direct);
                let mut gi = vec![f32::NAN; g.input_len()];
                let (mut gw, mut gb) = (gw0.clone(), gb0.clone());
                let gi_arg = with_input.then_some(&mut gi[..]);
                conv2d_backward_with(
                    path,
                    &g,
                    &input,
                    &weight,
                    &grad_out,
                    gi_arg,
                    &mut gw,
                    Some(&mut gb),
                    Parallelism::Threads,
                )
                .unwrap();
                let what = format!("backward {path:?} with_input {with_input}");
                assert_close(&format!("{what} grad_weight"), &g, &gw, &gw_ref);
                assert_close(&format!("{what} grad_bias"), &g, &gb, &gb_ref);
                if with_input {
                    assert_close(&format!("{what} grad_input"), &g, &gi, &gi_ref);
                } else {
                    assert!(gi.iter().all(|v| v.is_nan()), "{what}: grad_input touched though not given");
                }
            }
        }
    }
    assert!(direct_runs >= 20, "the direct path ran only {direct_runs} times");
}

#[test]
fn backward_without_bias_gradient_leaves_weights_right() {
    let g =
        ConvGeometry { batch: 5, in_c: 6, in_h: 14, in_w: 14, out_c: 16, kh: 5, kw: 5, stride: 1, pad: 0 };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (input, weight, grad_out) =
        (random(&mut rng, g.input_len()), random(&mut rng, g.weight_len()), random(&mut rng, g.output_len()));
    let mut gw_ref = vec![0.0; g.weight_len()];
    conv2d_backward_naive(&g, &input, &weight, &grad_out, None, &mut gw_ref, None);
    for path in [ConvPath::Lowered, ConvPath::Direct] {
        let mut gw = vec![0.0; g.weight_len()];
        conv2d_backward_with(path, &g, &input, &weight, &grad_out, None, &mut gw, None, Parallelism::None)
            .unwrap();
        assert_close(&format!("{path:?} grad_weight"), &g, &gw, &gw_ref);
    }
}

#[test]
fn one_and_two_threads_are_bit_identical() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    // Batches that are not multiples of any run length, and LeNet's two layers.
    let shapes = [
        ConvGeometry { batch: 13, in_c: 1, in_h: 28, in_w: 28, out_c: 6, kh: 5, kw: 5, stride: 1, pad: 2 },
        ConvGeometry { batch: 13, in_c: 6, in_h: 14, in_w: 14, out_c: 16, kh: 5, kw: 5, stride: 1, pad: 0 },
        ConvGeometry { batch: 41, in_c: 6, in_h: 14, in_w: 14, out_c: 16, kh: 5, kw: 5, stride: 1, pad: 0 },
        ConvGeometry { batch: 7, in_c: 3, in_h: 7, in_w: 13, out_c: 5, kh: 3, kw: 3, stride: 2, pad: 1 },
    ];
    for g in shapes {
        let input = random(&mut rng, g.input_len());
        let weight = random(&mut rng, g.weight_len());
        let bias = random(&mut rng, g.out_c);
        let grad_out = random(&mut rng, g.output_len());
        for path in paths(&g, Some(true)) {
            let run = |par: Parallelism| {
                let mut out = vec![0.0; g.output_len()];
                conv2d_forward_with(path, &g, &input, &weight, Some(&bias), true, &mut out, par).unwrap();
                let mut gi = vec![0.0; g.input_len()];
                let mut gw = vec![0.0; g.weight_len()];
                let mut gb = vec![0.0; g.out_c];
                conv2d_backward_with(
                    path,
                    &g,
                    &input,
                    &weight,
                    &grad_out,
                    Some(&mut gi),
                    &mut gw,
                    Some(&mut gb),
                    par,
                )
                .unwrap();
                [out, gi, gw, gb].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>())
            };
            let one = run(Parallelism::None);
            let two = pool.install(|| run(Parallelism::Threads));
            for (name, (a, b)) in
                ["output", "grad_input", "grad_weight", "grad_bias"].iter().zip(one.iter().zip(&two))
            {
                assert!(a == b, "{path:?} {name} differs between 1 and 2 threads for {g:?}");
            }
        }
    }
}

/// The direct path keeps each thread's zero-bordered scratch for the next call of the
/// same shape: a call after others (more images, so every scratch slot written; a
/// different layer between) gives the bits of the same call on a fresh thread.
#[test]
fn scratch_kept_between_calls_changes_no_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let lenet = |batch, layer2: bool| ConvGeometry {
        batch,
        in_c: if layer2 { 6 } else { 1 },
        in_h: if layer2 { 14 } else { 28 },
        in_w: if layer2 { 14 } else { 28 },
        out_c: if layer2 { 16 } else { 6 },
        kh: 5,
        kw: 5,
        stride: 1,
        pad: if layer2 { 0 } else { 2 },
    };
    let run = |g: &ConvGeometry, data: &[Vec<f32>; 4]| {
        let [input, weight, bias, grad_out] = data;
        let mut out = vec![0.0; g.output_len()];
        conv2d_forward(g, input, weight, Some(bias), true, &mut out, Parallelism::None).unwrap();
        let (mut gi, mut gw, mut gb) =
            (vec![0.0; g.input_len()], vec![0.0; g.weight_len()], vec![0.0; g.out_c]);
        conv2d_backward_with(
            ConvPath::Auto,
            g,
            input,
            weight,
            grad_out,
            Some(&mut gi),
            &mut gw,
            Some(&mut gb),
            Parallelism::None,
        )
        .unwrap();
        [out, gi, gw, gb].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>())
    };
    let mut data = |g: &ConvGeometry| {
        [
            random(&mut rng, g.input_len()),
            random(&mut rng, g.weight_len()),
            random(&mut rng, g.out_c),
            random(&mut rng, g.output_len()),
        ]
    };
    for layer2 in [false, true] {
        let (small, large, other) = (lenet(13, layer2), lenet(41, layer2), lenet(5, !layer2));
        let (a, b, c) = (data(&small), data(&large), data(&other));
        let fresh = std::thread::scope(|s| s.spawn(|| run(&small, &a)).join().unwrap());
        run(&large, &b);
        run(&other, &c);
        assert!(
            run(&small, &a) == fresh,
            "layer 2: {layer2}: a call after others differs from a fresh thread's"
        );
    }
}

/// The pooled forward is the forward then the 2 × 2 pooling, bit for bit (values and
/// argmax), with and without bias, ReLU and argmax, at 1 and 2 threads: on every shape
/// whose output holds a window, and on odd and even output sizes around the vector
/// width. Inputs and weights are small integers, so that window maxima tie often
/// (the first maximum must win) and ReLU zeros abound.
#[test]
fn pooled_forward_is_forward_then_pooling_bit_for_bit() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let extra = [
        ConvGeometry { batch: 3, in_c: 2, in_h: 9, in_w: 15, out_c: 9, kh: 3, kw: 3, stride: 1, pad: 1 },
        ConvGeometry { batch: 2, in_c: 1, in_h: 20, in_w: 36, out_c: 3, kh: 3, kw: 3, stride: 1, pad: 1 },
        ConvGeometry { batch: 2, in_c: 3, in_h: 11, in_w: 19, out_c: 7, kh: 3, kw: 3, stride: 1, pad: 0 },
        ConvGeometry { batch: 4, in_c: 2, in_h: 12, in_w: 12, out_c: 2, kh: 3, kw: 3, stride: 1, pad: 1 },
    ];
    let mut checked = 0;
    for g in geometries().chain(extra) {
        let (oh, ow) = (g.out_h(), g.out_w());
        if oh < 2 || ow < 2 {
            continue;
        }
        let ints = |rng: &mut ChaCha8Rng, len: usize| -> Vec<f32> {
            (0..len).map(|_| rng.random_range(-3i32..=3) as f32).collect()
        };
        let input = ints(&mut rng, g.input_len());
        let weight = ints(&mut rng, g.weight_len());
        let bias = ints(&mut rng, g.out_c);
        let pooled_len = g.batch * g.out_c * (oh / 2) * (ow / 2);
        for (with_bias, relu) in [(true, true), (false, false), (true, false)] {
            let bias = with_bias.then_some(&bias[..]);
            let mut full = vec![0.0; g.output_len()];
            conv2d_forward(&g, &input, &weight, bias, relu, &mut full, Parallelism::None).unwrap();
            let (mut want, mut want_arg) = (vec![0.0; pooled_len], vec![0u32; pooled_len]);
            kernels::pool::max_pool_2x2(&full, (oh, ow), &mut want, &mut want_arg).unwrap();
            let want = want.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for par in [Parallelism::None, Parallelism::Threads] {
                let run = || {
                    let (mut got, mut arg) = (vec![f32::NAN; pooled_len], vec![u32::MAX; pooled_len]);
                    conv2d_forward_pooled(&g, &input, &weight, bias, relu, &mut got, Some(&mut arg), par)
                        .unwrap();
                    let mut no_arg = vec![f32::NAN; pooled_len];
                    conv2d_forward_pooled(&g, &input, &weight, bias, relu, &mut no_arg, None, par).unwrap();
                    (got, arg, no_arg)
                };
                let (got, arg, no_arg) = pool.install(run);
                let what = format!("{g:?} bias {with_bias} relu {relu} {par:?}");
                assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want, "values, {what}");
                assert_eq!(arg, want_arg, "argmax, {what}");
                assert_eq!(no_arg.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want, "no argmax, {what}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} geometries had a window");
}

/// The direct path's zero border is exactly zero padding: with padding, the forward
/// equals, bit for bit, the forward of the same input zero-padded by hand (same taps in
/// the same order). Large weights, so that a dropped or extra nonzero product would show
/// (any later change that skips border taps must keep this).
#[test]
fn direct_forward_with_padding_is_the_forward_of_the_padded_input_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut checked = 0;
    for g in geometries().filter(|g| g.stride == 1 && g.pad > 0) {
        let p = g.pad;
        let bare = ConvGeometry { in_h: g.in_h + 2 * p, in_w: g.in_w + 2 * p, pad: 0, ..g };
        let input = random(&mut rng, g.input_len());
        let mut padded = vec![0.0f32; bare.input_len()];
        for (plane, dst) in
            input.chunks_exact(g.in_h * g.in_w).zip(padded.chunks_exact_mut(bare.in_h * bare.in_w))
        {
            for (y, row) in plane.chunks_exact(g.in_w).enumerate() {
                dst[(y + p) * bare.in_w + p..][..g.in_w].copy_from_slice(row);
            }
        }
        let weight: Vec<f32> = random(&mut rng, g.weight_len()).iter().map(|w| w * 1e3).collect();
        let bias = random(&mut rng, g.out_c);
        let run = |g: &ConvGeometry, x: &[f32]| {
            let mut out = vec![0.0f32; g.output_len()];
            conv2d_forward_with(
                ConvPath::Direct,
                g,
                x,
                &weight,
                Some(&bias),
                false,
                &mut out,
                Parallelism::None,
            )
            .unwrap();
            out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(run(&g, &input), run(&bare, &padded), "{g:?}");
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} padded stride-1 shapes");
}

#[test]
fn im2col_matches_its_definition() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for g in geometries() {
        let input = random(&mut rng, g.input_len());
        let mut cols = vec![f32::NAN; g.col_rows() * g.col_cols()];
        im2col(&g, &input, &mut cols).unwrap();
        let (oh, ow) = (g.out_h(), g.out_w());
        for c in 0..g.in_c {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let row = (c * g.kh + ky) * g.kw + kx;
                    for n in 0..g.batch {
                        for y in 0..oh {
                            for x in 0..ow {
                                let col = (n * oh + y) * ow + x;
                                let expected = g.input_pos(y, x, ky, kx).map_or(0.0, |(iy, ix)| {
                                    input[((n * g.in_c + c) * g.in_h + iy) * g.in_w + ix]
                                });
                                assert_eq!(
                                    cols[row * g.col_cols() + col],
                                    expected,
                                    "{g:?} row {row} col {col}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// ⟨im2col x, y⟩ = ⟨x, col2im y⟩ (in f64, so the check does not depend on summation
/// order), and col2im adds to what `grad_input` held.
#[test]
fn col2im_is_the_adjoint_of_im2col_and_accumulates() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for g in geometries() {
        let x = random(&mut rng, g.input_len());
        let y = random(&mut rng, g.col_rows() * g.col_cols());
        let mut cols = vec![0.0; y.len()];
        im2col(&g, &x, &mut cols).unwrap();
        let start = random(&mut rng, g.input_len());
        let mut back = start.clone();
        col2im(&g, &y, &mut back).unwrap();
        let lhs: f64 = cols.iter().zip(&y).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        let rhs: f64 =
            x.iter().zip(back.iter().zip(&start)).map(|(a, (b, s))| f64::from(*a) * f64::from(b - s)).sum();
        assert!(
            (lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()),
            "{g:?}: ⟨im2col x, y⟩ = {lhs}, ⟨x, col2im y⟩ = {rhs}"
        );
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let g = ConvGeometry { batch: 2, in_c: 1, in_h: 5, in_w: 5, out_c: 2, kh: 3, kw: 3, stride: 1, pad: 0 };
    let input = vec![0.0; g.input_len()];
    let weight = vec![0.0; g.weight_len()];
    let mut out = vec![0.0; g.output_len()];
    let short = vec![0.0; g.input_len() - 1];
    let err =
        conv2d_forward_with(ConvPath::Auto, &g, &short, &weight, None, false, &mut out, Parallelism::None);
    assert!(matches!(err, Err(KernelError::BadLength { name: "input", .. })), "{err:?}");
    let bias = vec![0.0; 3];
    let err = conv2d_forward_with(
        ConvPath::Auto,
        &g,
        &input,
        &weight,
        Some(&bias),
        false,
        &mut out,
        Parallelism::None,
    );
    assert!(matches!(err, Err(KernelError::BadLength { name: "bias", .. })), "{err:?}");
    let zero_stride = ConvGeometry { stride: 0, ..g };
    let err = conv2d_forward_with(
        ConvPath::Auto,
        &zero_stride,
        &input,
        &weight,
        None,
        false,
        &mut out,
        Parallelism::None,
    );
    assert!(matches!(err, Err(KernelError::BadGeometry(_))), "{err:?}");
    let too_big = ConvGeometry { kh: 7, ..g };
    assert!(matches!(too_big.validate(), Err(KernelError::BadGeometry(_))));
    // The pooled forward checks its own buffers (`N × O × 1 × 1` here) and refuses an
    // output with no whole window.
    let (mut pooled, mut argmax) = (vec![0.0; 4], vec![0u32; 4]);
    let none = Parallelism::None;
    let err = conv2d_forward_pooled(&g, &input, &weight, None, true, &mut pooled[..3], None, none);
    assert!(matches!(err, Err(KernelError::BadLength { name: "pooled", expected: 4, .. })), "{err:?}");
    let err =
        conv2d_forward_pooled(&g, &input, &weight, None, true, &mut pooled, Some(&mut argmax[..2]), none);
    assert!(matches!(err, Err(KernelError::BadLength { name: "argmax", expected: 4, .. })), "{err:?}");
    let one_row = ConvGeometry { in_h: 3, ..g };
    let err = conv2d_forward_pooled(
        &one_row,
        &input[..one_row.input_len()],
        &weight,
        None,
        true,
        &mut pooled[..0],
        None,
        none,
    );
    assert!(matches!(err, Err(KernelError::BadGeometry(_))), "{err:?}");
    assert!(
        conv2d_forward_pooled(&g, &input, &weight, None, true, &mut pooled, Some(&mut argmax), none).is_ok()
    );
    // The direct path refuses what it cannot do instead of computing something else.
    let strided = ConvGeometry { stride: 2, ..g };
    let mut out2 = vec![0.0; strided.output_len()];
    let err = conv2d_forward_with(
        ConvPath::Direct,
        &strided,
        &input,
        &weight,
        None,
        false,
        &mut out2,
        Parallelism::None,
    );
    assert!(matches!(err, Err(KernelError::BadGeometry(_))), "{err:?}");
    let wide_pad = ConvGeometry { pad: 3, ..g };
    let mut gi = vec![0.0; wide_pad.input_len()];
    let mut gw = vec![0.0; wide_pad.weight_len()];
    let go = vec![0.0; wide_pad.output_len()];
    let err = conv2d_backward_with(
        ConvPath::Direct,
        &wide_pad,
        &input,
        &weight,
        &go,
        Some(&mut gi),
        &mut gw,
        None,
        Parallelism::None,
    );
    assert!(matches!(err, Err(KernelError::BadGeometry(_))), "{err:?}");
    let mut short_gw = vec![0.0; g.weight_len() + 1];
    let go = vec![0.0; g.output_len()];
    let err = conv2d_backward_with(
        ConvPath::Auto,
        &g,
        &input,
        &weight,
        &go,
        None,
        &mut short_gw,
        None,
        Parallelism::None,
    );
    assert!(matches!(err, Err(KernelError::BadLength { name: "grad_weight", .. })), "{err:?}");
}

/// LeNet's layers run on the direct path (forward, and backward with or without the
/// input gradient); a strided layer falls back to im2col + GEMM.
#[test]
fn auto_chooses_direct_for_lenet_and_lowered_for_strides() {
    let conv1 =
        ConvGeometry { batch: 64, in_c: 1, in_h: 28, in_w: 28, out_c: 6, kh: 5, kw: 5, stride: 1, pad: 2 };
    let conv2 =
        ConvGeometry { batch: 64, in_c: 6, in_h: 14, in_w: 14, out_c: 16, kh: 5, kw: 5, stride: 1, pad: 0 };
    for g in [conv1, conv2] {
        assert_eq!(ConvPath::for_forward(&g), ConvPath::Direct, "{g:?}");
        assert_eq!(ConvPath::for_backward(&g, false), ConvPath::Direct, "{g:?}");
        assert_eq!(ConvPath::for_backward(&g, true), ConvPath::Direct, "{g:?}");
    }
    let strided = ConvGeometry { stride: 2, ..conv2 };
    assert_eq!(ConvPath::for_forward(&strided), ConvPath::Lowered);
    assert_eq!(ConvPath::for_backward(&strided, true), ConvPath::Lowered);
}
