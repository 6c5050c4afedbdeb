//! Schedules: how many neurons to remove, and which, from per-layer scores.
//!
//! A [`Plan`] says how much ([`Amount`]) and where (a selection of prunable layers);
//! [`Plan::masks`] turns scores into keep masks for [`crate::surgery::remove_neurons`].
//! Neurons are removed lowest score first; equal scores go by lower index first, so
//! the choice is deterministic. A layer always keeps at least one neuron (its best).
//! [`max_drop`] searches the largest ratio whose pruned model stays within δ of the
//! unpruned model's validation accuracy; iterating rounds with retraining is in
//! [`crate::strategy`].

use crate::PruneError;
use crate::criteria::Scores;

/// How much to prune.
#[derive(Clone, Debug, PartialEq)]
pub enum Amount {
    /// Remove `⌊r · n⌋` neurons of every selected layer, `r` in [0, 1).
    Ratio(f64),
    /// One ratio per prunable layer, each in [0, 1).
    Ratios(Vec<f64>),
    /// Remove `⌊r · N⌋` of all `N` neurons of the selected layers, lowest first after
    /// dividing each layer's scores by its largest |score| (so layers compare), `r` in [0, 1).
    Global(f64),
    /// Remove the neurons scoring below their layer's mean − `t`·σ (Hu et al. 2016 use
    /// APoZ above mean + 1σ, that is firing rate below mean − 1σ: `t` = 1). Any finite `t`.
    Threshold(f64),
    /// Remove as much as possible (one ratio for every selected layer) while validation
    /// accuracy stays within `δ` (a fraction: 0.003 = 0.3 points) of the unpruned
    /// model's, `δ` in [0, 1]. Resolved by [`max_drop`].
    MaxDrop(f64),
}

/// A pruning plan: an amount and the prunable layers it applies to.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// How much to prune.
    pub amount: Amount,
    /// Indices of the prunable layers to prune (`None`: all of them).
    pub layers: Option<Vec<usize>>,
}

impl Plan {
    /// A plan applying `amount` to every prunable layer.
    pub fn new(amount: Amount) -> Plan {
        Plan { amount, layers: None }
    }

    /// Checks the plan for a model with `num_layers` prunable layers.
    ///
    /// # Errors
    /// [`PruneError::InvalidParameter`] naming the offending value and the accepted range.
    pub fn validate(&self, num_layers: usize) -> Result<(), PruneError> {
        let ratio = |name, r: f64| {
            if r.is_finite() && (0.0..1.0).contains(&r) {
                Ok(())
            } else {
                Err(PruneError::InvalidParameter {
                    name,
                    value: r.to_string(),
                    expected: "a ratio in [0, 1): the fraction of neurons to remove",
                })
            }
        };
        match &self.amount {
            Amount::Ratio(r) => ratio("ratio", *r)?,
            Amount::Global(r) => ratio("global", *r)?,
            Amount::Ratios(rs) => {
                if rs.len() != num_layers {
                    return Err(PruneError::Shape {
                        context: "Plan ratios: one per prunable layer",
                        expected: num_layers,
                        got: rs.len(),
                    });
                }
                for &r in rs {
                    ratio("ratios", r)?;
                }
            }
            Amount::Threshold(t) => {
                if !t.is_finite() {
                    return Err(PruneError::InvalidParameter {
                        name: "threshold",
                        value: t.to_string(),
                        expected: "a finite number of standard deviations below the layer mean",
                    });
                }
            }
            Amount::MaxDrop(d) => {
                if !(d.is_finite() && (0.0..=1.0).contains(d)) {
                    return Err(PruneError::InvalidParameter {
                        name: "max-drop",
                        value: d.to_string(),
                        expected: "an accuracy drop in [0, 1] (0.003 = 0.3 points)",
                    });
                }
            }
        }
        if let Some(sel) = &self.layers
            && let Some(&bad) = sel.iter().find(|&&l| l >= num_layers)
        {
            return Err(PruneError::InvalidParameter {
                name: "layers",
                value: bad.to_string(),
                expected: "indices of prunable layers (0 = first hidden layer)",
            });
        }
        Ok(())
    }

    fn selected(&self, layer: usize) -> bool {
        self.layers.as_ref().is_none_or(|s| s.contains(&layer))
    }

    /// Keep masks (`true` = keep) for `scores` (`scores[layer][neuron]`, higher = more
    /// significant).
    ///
    /// # Errors
    /// As [`Plan::validate`]; [`PruneError::InvalidParameter`] for `MaxDrop`, which
    /// needs an evaluation (use [`max_drop`]) or for NaN scores.
    pub fn masks(&self, scores: &Scores) -> Result<Vec<Vec<bool>>, PruneError> {
        self.validate(scores.len())?;
        if scores.iter().flatten().any(|s| s.is_nan()) {
            return Err(PruneError::InvalidParameter {
                name: "scores",
                value: "NaN".into(),
                expected: "finite scores",
            });
        }
        let mut masks: Vec<Vec<bool>> = scores.iter().map(|s| vec![true; s.len()]).collect();
        match &self.amount {
            Amount::Ratio(r) => {
                for (l, s) in scores.iter().enumerate() {
                    if self.selected(l) {
                        remove_lowest(&mut masks[l], s, (r * s.len() as f64).floor() as usize);
                    }
                }
            }
            Amount::Ratios(rs) => {
                for (l, s) in scores.iter().enumerate() {
                    if self.selected(l) {
                        remove_lowest(&mut masks[l], s, (rs[l] * s.len() as f64).floor() as usize);
                    }
                }
            }
            Amount::Threshold(t) => {
                for (l, s) in scores.iter().enumerate() {
                    if !self.selected(l) || s.is_empty() {
                        continue;
                    }
                    let n = s.len() as f64;
                    let mean = s.iter().sum::<f64>() / n;
                    let sd = (s.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
                    let cut = mean - t * sd;
                    let below = s.iter().filter(|&&x| x < cut).count();
                    remove_lowest(&mut masks[l], s, below);
                }
            }
            Amount::Global(r) => {
                let mut all: Vec<(f64, usize, usize)> = Vec::new();
                for (l, s) in scores.iter().enumerate() {
                    if !self.selected(l) {
                        continue;
                    }
                    let max = s.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                    all.extend(
                        s.iter().enumerate().map(|(j, &x)| (if max > 0.0 { x / max } else { 0.0 }, l, j)),
                    );
                }
                let target = (r * all.len() as f64).floor() as usize;
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
                let mut left: Vec<usize> = masks.iter().map(Vec::len).collect();
                let mut removed = 0;
                for &(_, l, j) in &all {
                    if removed == target {
                        break;
                    }
                    // Never the last neuron of a layer: skip it and take the next.
                    if left[l] > 1 {
                        masks[l][j] = false;
                        left[l] -= 1;
                        removed += 1;
                    }
                }
            }
            Amount::MaxDrop(_) => {
                return Err(PruneError::InvalidParameter {
                    name: "max-drop",
                    value: "a plan".into(),
                    expected: "to be resolved by schedule::max_drop, which evaluates candidates",
                });
            }
        }
        Ok(masks)
    }
}

/// Indices of `scores` from least to most significant (lower index first on ties).
pub fn ascending(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    idx
}

/// Clears the `count` lowest-scoring entries of `mask`, always leaving at least one.
fn remove_lowest(mask: &mut [bool], scores: &[f64], count: usize) {
    let count = count.min(scores.len().saturating_sub(1));
    for &j in ascending(scores).iter().take(count) {
        mask[j] = false;
    }
}

/// The outcome of [`max_drop`].
#[derive(Clone, Debug, PartialEq)]
pub struct MaxDropResult {
    /// The largest ratio found that keeps the accuracy within δ.
    pub ratio: f64,
    /// Its keep masks.
    pub masks: Vec<Vec<bool>>,
    /// Validation accuracy of the pruned model at that ratio, in [0, 1].
    pub accuracy: f64,
    /// Every ratio tried, with its accuracy, in order.
    pub tried: Vec<(f64, f64)>,
}

/// Binary search (`steps` halvings of [0, 1)) for the largest per-layer ratio whose
/// pruned model's validation accuracy, computed by `evaluate(masks)`, is at least
/// `baseline − delta`. Assumes accuracy falls as the ratio grows; `layers` restricts
/// pruning to some prunable layers as in [`Plan::layers`].
///
/// # Errors
/// As [`Plan::validate`], and whatever `evaluate` returns.
pub fn max_drop(
    scores: &Scores,
    layers: Option<Vec<usize>>,
    delta: f64,
    baseline: f64,
    steps: usize,
    mut evaluate: impl FnMut(&[Vec<bool>]) -> Result<f64, PruneError>,
) -> Result<MaxDropResult, PruneError> {
    Plan { amount: Amount::MaxDrop(delta), layers: layers.clone() }.validate(scores.len())?;
    let at = |r: f64| Plan { amount: Amount::Ratio(r), layers: layers.clone() }.masks(scores);
    let mut best = MaxDropResult { ratio: 0.0, masks: at(0.0)?, accuracy: baseline, tried: Vec::new() };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..steps {
        let mid = 0.5 * (lo + hi);
        let masks = at(mid)?;
        let acc = evaluate(&masks)?;
        best.tried.push((mid, acc));
        if acc >= baseline - delta {
            lo = mid;
            best.ratio = mid;
            best.masks = masks;
            best.accuracy = acc;
        } else {
            hi = mid;
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores() -> Scores {
        vec![vec![0.5, 0.1, 0.9, 0.1, 0.7], vec![10.0, 0.0, 30.0, 20.0]]
    }

    #[test]
    fn ratio_removes_the_lowest_first_with_ties_by_index() {
        let m = Plan::new(Amount::Ratio(0.5)).masks(&scores()).unwrap();
        assert_eq!(m[0], vec![true, false, true, false, true]);
        assert_eq!(m[1], vec![false, false, true, true]);
        let m = Plan::new(Amount::Ratio(0.2)).masks(&scores()).unwrap();
        assert_eq!(m[0], vec![true, false, true, true, true]);
        let m = Plan { amount: Amount::Ratio(0.5), layers: Some(vec![1]) }.masks(&scores()).unwrap();
        assert!(m[0].iter().all(|&k| k));
    }

    #[test]
    fn never_empties_a_layer() {
        let m = Plan::new(Amount::Ratios(vec![0.99, 0.0])).masks(&scores()).unwrap();
        assert_eq!(m[0], vec![false, false, true, false, false]);
        let m = Plan::new(Amount::Global(0.99)).masks(&scores()).unwrap();
        assert_eq!(m[0].iter().filter(|&&k| k).count(), 1);
        assert_eq!(m[1].iter().filter(|&&k| k).count(), 1);
        assert!(m[1][2] && m[0][2]);
    }

    #[test]
    fn global_compares_normalised_scores() {
        // Normalised: layer 0 = [.56, .11, 1, .11, .78], layer 1 = [.33, 0, 1, .67].
        // The 3 lowest: (1,1)=0, (0,1)=.11, (0,3)=.11.
        let m = Plan::new(Amount::Global(3.0 / 9.0 + 1e-9)).masks(&scores()).unwrap();
        assert_eq!(m[0], vec![true, false, true, false, true]);
        assert_eq!(m[1], vec![true, false, true, true]);
    }

    #[test]
    fn threshold_cuts_below_mean_minus_t_sigma() {
        // Layer 1: mean 15, σ = √125 ≈ 11.18: at t = 1 the cut is 3.82, removing only 0.0.
        let m = Plan::new(Amount::Threshold(1.0)).masks(&scores()).unwrap();
        assert_eq!(m[1], vec![true, false, true, true]);
        // t = 0 removes everything below the mean.
        let m = Plan::new(Amount::Threshold(0.0)).masks(&scores()).unwrap();
        assert_eq!(m[1], vec![false, false, true, true]);
        assert_eq!(m[0], vec![true, false, true, false, true]);
    }

    #[test]
    fn invalid_plans_name_the_parameter() {
        for (amount, name) in [
            (Amount::Ratio(-0.1), "ratio"),
            (Amount::Ratio(1.0), "ratio"),
            (Amount::Global(f64::NAN), "global"),
            (Amount::Threshold(f64::INFINITY), "threshold"),
            (Amount::MaxDrop(-0.01), "max-drop"),
            (Amount::Ratios(vec![0.5, 1.5]), "ratios"),
        ] {
            match Plan::new(amount).validate(2) {
                Err(PruneError::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(Plan::new(Amount::Ratios(vec![0.5])).validate(2).is_err());
        assert!(Plan { amount: Amount::Ratio(0.5), layers: Some(vec![2]) }.validate(2).is_err());
        assert!(Plan::new(Amount::MaxDrop(0.01)).masks(&scores()).is_err());
        assert!(Plan::new(Amount::Ratio(0.5)).masks(&vec![vec![f64::NAN]]).is_err());
    }

    #[test]
    fn max_drop_finds_the_largest_acceptable_ratio() {
        let s: Scores = vec![(0..100).map(|j| j as f64).collect()];
        // A fake accuracy that holds until 62 neurons are gone, then collapses.
        let r = max_drop(&s, None, 0.01, 0.99, 10, |m| {
            let removed = m[0].iter().filter(|&&k| !k).count();
            Ok(if removed <= 62 { 0.985 } else { 0.5 })
        })
        .unwrap();
        assert_eq!(r.masks[0].iter().filter(|&&k| !k).count(), 62);
        assert!(r.ratio >= 0.62 && r.ratio < 0.63, "{}", r.ratio);
        assert_eq!(r.tried.len(), 10);
        assert_eq!(r.accuracy, 0.985);
    }
}
