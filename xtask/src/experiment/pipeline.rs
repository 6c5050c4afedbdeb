//! One run, end to end, on the real libraries: train (`net`), record activation
//! status and prune (`prune`), retrain, evaluate; measure accuracy, MACs and speed.

use std::path::Path;

use indicatif::ProgressBar;

use super::config::RunConfig;
use super::store::{Metrics, Timings};
use super::sweep::Executor;

/// Runs configs on a dataset.
pub struct Pipeline<'d> {
    mnist: &'d mnist_io::Mnist,
}

impl<'d> Pipeline<'d> {
    /// A pipeline over `mnist`.
    pub fn new(mnist: &'d mnist_io::Mnist) -> Pipeline<'d> {
        Pipeline { mnist }
    }
}

impl Executor for Pipeline<'_> {
    fn run(
        &mut self,
        config: &RunConfig,
        _dir: &Path,
        _bar: &ProgressBar,
    ) -> anyhow::Result<(Metrics, Timings)> {
        let _ = (config, self.mnist);
        anyhow::bail!("the training pipeline is not wired to net/prune yet")
    }
}
