//! The random baseline: each neuron gets a uniform score in [0, 1) from a seeded
//! ChaCha stream, layer after layer, so the same seed gives the same choice.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Context, Criterion, Scores};
use crate::PruneError;

/// Uniform random scores from `seed`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Random {
    /// The seed of the ChaCha8 stream.
    pub seed: u64,
}

impl Criterion for Random {
    fn name(&self) -> &'static str {
        "random"
    }

    fn scores(&self, cx: &Context<'_>) -> Result<Scores, PruneError> {
        let widths: Vec<usize> = if let Some(st) = cx.status {
            st.layers.iter().map(|l| l.neurons).collect()
        } else if let Some(m) = cx.model {
            crate::surgery::widths(m)?
        } else {
            return Err(PruneError::MissingInput { criterion: "random", what: "a status or a model" });
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        Ok(widths.iter().map(|&n| (0..n).map(|_| rng.random::<f64>()).collect()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criteria::planted;

    #[test]
    fn seeded_and_uniform() {
        let st = planted::status();
        let cx = Context::from_status(&st);
        let a = Random { seed: 3 }.scores(&cx).unwrap();
        let b = Random { seed: 3 }.scores(&cx).unwrap();
        let c = Random { seed: 4 }.scores(&cx).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a[0].len(), planted::NEURONS);
        assert!(a[0].iter().all(|&s| (0.0..1.0).contains(&s)));
    }
}
