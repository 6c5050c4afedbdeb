//! APoZ (Hu et al., "Network Trimming", 2016): the average percentage of zeros of a
//! neuron's output over inputs and positions. Score = firing rate = 1 − APoZ, so a
//! neuron that rarely fires is the least significant.

use super::{Context, Criterion, Scores};
use crate::PruneError;

/// Scores each neuron by its firing rate (fraction of input × position pairs > 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct Apoz;

impl Criterion for Apoz {
    fn name(&self) -> &'static str {
        "apoz"
    }

    fn scores(&self, cx: &Context<'_>) -> Result<Scores, PruneError> {
        let st = cx.need_status(self.name())?;
        Ok(st.layers.iter().map(|l| (0..l.neurons).map(|j| l.firing_rate(j)).collect()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criteria::planted::{self, *};

    #[test]
    fn dead_is_least_and_always_on_most_significant() {
        let st = planted::status();
        let s = &Apoz.scores(&Context::from_status(&st)).unwrap()[0];
        let r = planted::ranking(s);
        assert_eq!(r[0], ALWAYS_ON);
        assert_eq!(*r.last().unwrap(), DEAD);
        assert_eq!(s[DEAD], 0.0);
        assert_eq!(s[ALWAYS_ON], 1.0);
        assert!((s[LOW_CLASSES] - 0.5).abs() < 1e-12);
        assert!(s[RARE] < 0.15 && s[RARE] > 0.0);
    }

    #[test]
    fn needs_a_status() {
        assert!(matches!(Apoz.scores(&Context::default()), Err(PruneError::MissingInput { .. })));
    }
}
