//! Decision entropy: the entropy (bits) of a neuron's per-input on/off decision.
//! A neuron that is always off, or always on, decides nothing (entropy 0) and is the
//! least significant; one that splits the inputs in half scores 1 bit.

use super::{Context, Criterion, Scores, binary_entropy};
use crate::PruneError;

/// Scores each neuron by H(decision) in bits, in [0, 1].
#[derive(Clone, Copy, Debug, Default)]
pub struct Entropy;

impl Criterion for Entropy {
    fn name(&self) -> &'static str {
        "entropy"
    }

    fn scores(&self, cx: &Context<'_>) -> Result<Scores, PruneError> {
        let st = cx.need_status(self.name())?;
        Ok(st
            .layers
            .iter()
            .map(|l| (0..l.neurons).map(|j| binary_entropy(l.decision_rate(j))).collect())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criteria::planted::{self, *};

    #[test]
    fn dead_and_always_on_rank_last() {
        let st = planted::status();
        let s = &Entropy.scores(&Context::from_status(&st)).unwrap()[0];
        assert_eq!(s[DEAD], 0.0);
        assert_eq!(s[ALWAYS_ON], 0.0);
        let r = planted::ranking(s);
        assert!(r[NEURONS - 2..].contains(&DEAD) && r[NEURONS - 2..].contains(&ALWAYS_ON));
        // A 50/50 neuron carries exactly one bit; a 1-in-4 neuron H(1/4) ≈ 0.811.
        assert!((s[LOW_CLASSES] - 1.0).abs() < 1e-12);
        assert!((s[CLASS_2] - 0.811_278_124_459_132_8).abs() < 1e-9);
        assert!(s[RARE] > 0.0 && s[RARE] < s[CLASS_2]);
    }
}
