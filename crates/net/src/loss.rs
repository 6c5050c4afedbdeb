//! Mean softmax cross-entropy over a batch, PyTorch's `nn.CrossEntropyLoss()`.
//!
//! Dimension legend: `B` batch, `K` classes. `logits` and `dlogits` are row-major `B × K`.
//!
//! Stable log-sum-exp: `lse = m + ln Σ_k exp(z_k − m)` with `m = max_k z_k`, so no
//! exponential overflows; `loss_b = lse_b − z_b[label_b]`.

/// Mean loss over the batch and, in `dlogits`, its gradient
/// `dlogits[b, k] = (softmax(z_b)_k − [k = label_b]) / B` (overwritten).
/// Also counts the rows whose argmax equals the label (first maximum wins).
/// Sums run in f64 in batch order, so the result does not depend on threads.
pub(crate) fn softmax_cross_entropy(
    dlogits: Option<&mut [f32]>,
    logits: &[f32],
    labels: &[u32],
    classes: usize,
) -> (f32, usize) {
    let batch = labels.len();
    let mut total = 0.0f64;
    let mut correct = 0;
    let inv_b = 1.0 / batch as f32;
    let mut dl = dlogits;
    for (b, (z, &label)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let (mut m, mut arg) = (f32::NEG_INFINITY, 0);
        for (k, &v) in z.iter().enumerate() {
            if v > m {
                m = v;
                arg = k;
            }
        }
        correct += usize::from(arg == label as usize);
        let sum: f32 = z.iter().map(|&v| (v - m).exp()).sum();
        let lse = m + sum.ln();
        total += f64::from(lse - z[label as usize]);
        if let Some(d) = dl.as_deref_mut() {
            let row = &mut d[b * classes..(b + 1) * classes];
            for (k, (g, &v)) in row.iter_mut().zip(z).enumerate() {
                let p = (v - lse).exp();
                *g = (p - if k == label as usize { 1.0 } else { 0.0 }) * inv_b;
            }
        }
    }
    ((total / batch.max(1) as f64) as f32, correct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition_and_survives_huge_logits() {
        let logits = [1.0f32, 2.0, 3.0, 1000.0, 0.0, -1000.0];
        let labels = [2u32, 0];
        let mut d = [0.0f32; 6];
        let (loss, correct) = softmax_cross_entropy(Some(&mut d), &logits, &labels, 3);
        let l0 = -(3.0f64.exp() / (1.0f64.exp() + 2.0f64.exp() + 3.0f64.exp())).ln();
        assert!((f64::from(loss) - l0 / 2.0).abs() < 1e-6, "{loss}");
        assert_eq!(correct, 2);
        assert!(d.iter().all(|v| v.is_finite()));
        // Gradient rows sum to zero; the huge-logit row is exactly one-hot-correct.
        assert!((d[0] + d[1] + d[2]).abs() < 1e-7);
        assert!(d[3].abs() < 1e-7 && d[4].abs() < 1e-7);
    }
}
