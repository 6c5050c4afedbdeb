//! Decision patterns as preconditions (Gopinath et al., "Property Inference for Deep
//! Neural Networks", ASE 2019).
//!
//! Per layer, a decision tree over the neurons' on/off decisions is grown to predict
//! the model's output class (ID3: split on the decision with the largest information
//! gain). Each leaf is a *pattern*: a conjunction "neuron j is on/off" that implies an
//! output class. A pattern's *support* is the fraction of inputs that satisfy it, its
//! *confidence* the fraction of those for which the prediction is the pattern's class
//! **and** equals the true label (the property "prediction = true label"). Patterns
//! with support ≥ `min_support` and confidence ≥ `min_confidence` are kept, and a
//! neuron scores the sum of support × confidence over the kept patterns it takes
//! part in. Neurons in no kept pattern tie at 0; their ties are broken by a 10⁻⁶ ×
//! decision-entropy term, so the schedule removes the least informative first.

use super::{Context, Criterion, Scores, binary_entropy, entropy_of_counts};
use crate::PruneError;
use crate::status::{ActivationStatus, LayerStatus};

/// A decision pattern of one layer (a path of the tree from the root to a leaf).
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    /// Index of the layer among the status's layers.
    pub layer: usize,
    /// The conditions, root first: (neuron, required decision: `true` = on).
    pub conditions: Vec<(usize, bool)>,
    /// The output class the pattern implies (the majority prediction at the leaf).
    pub class: u32,
    /// Inputs that satisfy the pattern.
    pub inputs: usize,
    /// Fraction of all inputs that satisfy the pattern, in [0, 1].
    pub support: f64,
    /// Fraction of satisfying inputs with prediction = `class` = true label, in [0, 1].
    pub confidence: f64,
}

/// The pattern criterion and miner; [`Default`] gives the parameters used by `by_name`.
#[derive(Clone, Copy, Debug)]
pub struct Patterns {
    /// Maximum number of conditions per pattern (tree depth).
    pub max_depth: usize,
    /// A split needs at least this many inputs on each side.
    pub min_leaf: usize,
    /// A split must gain at least this many bits of information about the prediction
    /// at its node, so that leaves are not cut up by noise neurons.
    pub min_gain: f64,
    /// Kept patterns cover at least this fraction of inputs.
    pub min_support: f64,
    /// Kept patterns have at least this confidence.
    pub min_confidence: f64,
}

impl Default for Patterns {
    fn default() -> Self {
        Patterns { max_depth: 12, min_leaf: 5, min_gain: 0.01, min_support: 0.005, min_confidence: 0.9 }
    }
}

impl Patterns {
    fn check(&self) -> Result<(), PruneError> {
        let unit = |name, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(PruneError::InvalidParameter {
                    name,
                    value: v.to_string(),
                    expected: "a number in [0, 1]",
                })
            }
        };
        unit("min_support", self.min_support)?;
        unit("min_confidence", self.min_confidence)?;
        if self.min_leaf == 0 {
            return Err(PruneError::InvalidParameter {
                name: "min_leaf",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        Ok(())
    }

    /// Every leaf of the tree grown for `status.layers[layer]`, most supported first.
    pub fn mine_layer(&self, status: &ActivationStatus, layer: usize) -> Result<Vec<Pattern>, PruneError> {
        self.check()?;
        status.validate()?;
        let l = status.layers.get(layer).ok_or(PruneError::Shape {
            context: "Patterns::mine_layer layer index",
            expected: status.layers.len(),
            got: layer,
        })?;
        let all: Vec<u32> = (0..status.inputs() as u32).collect();
        let mut out = Vec::new();
        let mut path = Vec::new();
        let tree = Tree { params: self, layer: l, status, index: layer };
        tree.grow(&all, &mut path, &mut out);
        out.sort_by(|a, b| b.inputs.cmp(&a.inputs).then_with(|| a.conditions.cmp(&b.conditions)));
        Ok(out)
    }

    /// The kept patterns (support and confidence above the thresholds) of every layer.
    pub fn mine(&self, status: &ActivationStatus) -> Result<Vec<Vec<Pattern>>, PruneError> {
        (0..status.layers.len())
            .map(|l| {
                let all = self.mine_layer(status, l)?;
                Ok(all.into_iter().filter(|p| self.keeps(p)).collect())
            })
            .collect()
    }

    /// Whether `p` passes the support and confidence thresholds.
    pub fn keeps(&self, p: &Pattern) -> bool {
        p.support >= self.min_support && p.confidence >= self.min_confidence
    }
}

struct Tree<'a> {
    params: &'a Patterns,
    layer: &'a LayerStatus,
    status: &'a ActivationStatus,
    index: usize,
}

impl Tree<'_> {
    fn class_counts(&self, idx: &[u32]) -> Vec<u64> {
        let mut c = vec![0u64; self.status.num_classes];
        for &i in idx {
            c[self.status.predictions[i as usize] as usize] += 1;
        }
        c
    }

    fn grow(&self, idx: &[u32], path: &mut Vec<(usize, bool)>, out: &mut Vec<Pattern>) {
        let k = self.status.num_classes;
        let counts = self.class_counts(idx);
        let h = entropy_of_counts(&counts);
        let split = if path.len() < self.params.max_depth && h > 0.0 && idx.len() >= 2 * self.params.min_leaf
        {
            self.best_split(idx, &counts, h)
        } else {
            None
        };
        match split {
            Some(j) => {
                let (on, off): (Vec<u32>, Vec<u32>) =
                    idx.iter().partition(|&&i| self.layer.is_on(i as usize, j));
                for (side, decision) in [(&on, true), (&off, false)] {
                    path.push((j, decision));
                    self.grow(side, path, out);
                    path.pop();
                }
            }
            None => {
                // Majority prediction; the lowest class wins ties so the tree is deterministic.
                let class = (0..k).max_by(|&a, &b| counts[a].cmp(&counts[b]).then(b.cmp(&a))).unwrap_or(0);
                let good = idx
                    .iter()
                    .filter(|&&i| {
                        let i = i as usize;
                        self.status.predictions[i] as usize == class
                            && self.status.labels[i] as usize == class
                    })
                    .count();
                out.push(Pattern {
                    layer: self.index,
                    conditions: path.clone(),
                    class: class as u32,
                    inputs: idx.len(),
                    support: idx.len() as f64 / self.status.inputs().max(1) as f64,
                    confidence: if idx.is_empty() { 0.0 } else { good as f64 / idx.len() as f64 },
                });
            }
        }
    }

    /// The neuron whose decision has the largest information gain about the prediction,
    /// with at least `min_leaf` inputs on each side; the lowest index wins ties.
    fn best_split(&self, idx: &[u32], counts: &[u64], h: f64) -> Option<usize> {
        let k = self.status.num_classes;
        let n = self.layer.neurons;
        let mut on = vec![0u64; n * k];
        for &i in idx {
            let c = self.status.predictions[i as usize] as usize;
            for (w, &word) in self.layer.pattern(i as usize).iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let j = w * 64 + bits.trailing_zeros() as usize;
                    on[j * k + c] += 1;
                    bits &= bits - 1;
                }
            }
        }
        let total = idx.len() as f64;
        let min_leaf = self.params.min_leaf as u64;
        let mut best: Option<(usize, f64)> = None;
        let mut off = vec![0u64; k];
        for j in 0..n {
            let on_j = &on[j * k..(j + 1) * k];
            let n_on: u64 = on_j.iter().sum();
            let n_off = idx.len() as u64 - n_on;
            if n_on < min_leaf || n_off < min_leaf {
                continue;
            }
            for c in 0..k {
                off[c] = counts[c] - on_j[c];
            }
            let gain = h
                - (n_on as f64 / total) * entropy_of_counts(on_j)
                - (n_off as f64 / total) * entropy_of_counts(&off);
            // Gains within rounding of each other count as ties (lowest index wins).
            if gain >= self.params.min_gain.max(1e-12) && best.is_none_or(|(_, g)| gain > g + 1e-12) {
                best = Some((j, gain));
            }
        }
        best.map(|(j, _)| j)
    }
}

impl Criterion for Patterns {
    fn name(&self) -> &'static str {
        "pattern"
    }

    fn scores(&self, cx: &Context<'_>) -> Result<Scores, PruneError> {
        let st = cx.need_status(self.name())?;
        let kept = self.mine(st)?;
        Ok(st
            .layers
            .iter()
            .zip(&kept)
            .map(|(l, patterns)| {
                let mut s: Vec<f64> =
                    (0..l.neurons).map(|j| 1e-6 * binary_entropy(l.decision_rate(j))).collect();
                for p in patterns {
                    for &(j, _) in &p.conditions {
                        s[j] += p.support * p.confidence;
                    }
                }
                s
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criteria::planted::{self, *};

    #[test]
    fn finds_the_planted_patterns() {
        let st = planted::status();
        let miner = Patterns::default();
        let kept = miner.mine(&st).unwrap();
        let kept = &kept[0];
        // The prediction is the label except on 16 of 800 inputs, so the tree splits on
        // LOW_CLASSES first (1 bit), then CLASS_0 on one side and CLASS_2 on the other:
        // four patterns of support ≈ 1/4 each.
        let find = |conds: &[(usize, bool)]| kept.iter().find(|p| p.conditions.starts_with(conds)).cloned();
        let p0 = find(&[(LOW_CLASSES, true), (CLASS_0, true)]).expect("pattern for class 0");
        assert_eq!(p0.class, 0);
        assert!(p0.support > 0.2 && p0.confidence > 0.9, "{p0:?}");
        let p2 = find(&[(LOW_CLASSES, false), (CLASS_2, true)]).expect("pattern for class 2");
        assert_eq!(p2.class, 2);
        assert!(kept.iter().filter(|p| p.conditions[0] == (LOW_CLASSES, true)).count() >= 2);
        for p in kept {
            assert!(miner.keeps(p));
            assert!(!p.conditions.iter().any(|&(j, _)| j == DEAD || j == ALWAYS_ON));
        }
    }

    #[test]
    fn scores_rank_the_pattern_neurons_first() {
        let st = planted::status();
        let s = &Patterns::default().scores(&Context::from_status(&st)).unwrap()[0];
        let r = planted::ranking(s);
        assert_eq!(r[0], LOW_CLASSES);
        assert!(r[1..3].contains(&CLASS_0) && r[1..3].contains(&CLASS_2), "{r:?} {s:?}");
        assert!(s[DEAD] < 1e-5 && s[ALWAYS_ON] < 1e-5);
        // Ties at zero are broken by entropy: the dead neuron sorts below the noise neuron.
        assert!(s[DEAD] < s[NOISE]);
    }

    #[test]
    fn all_leaves_partition_the_inputs() {
        let st = planted::status();
        let all = Patterns::default().mine_layer(&st, 0).unwrap();
        assert_eq!(all.iter().map(|p| p.inputs).sum::<usize>(), st.inputs());
        let total: f64 = all.iter().map(|p| p.support).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn rejects_bad_parameters() {
        let st = planted::status();
        let bad = Patterns { min_support: 1.5, ..Patterns::default() };
        assert!(bad.mine(&st).is_err());
    }
}
