//! Pruning by activation status.
//!
//! Owns: recording which neurons fire for which inputs (per-neuron counts and packed
//! per-input decision patterns), the significance criteria (APoZ, decision entropy,
//! mutual information, mined decision patterns, and the L1, random and Taylor
//! baselines), structured surgery that physically removes neurons, pruning
//! schedules, post-pruning strategies (fine-tune, re-initialise, rewind) and the
//! search for the smallest width per layer.
//!
//! Must not know about: SIMD, file downloads or experiment reports; it sees models
//! only through `net`'s public API. It contains no `unsafe`.

pub mod criteria;
pub mod error;
pub mod pipeline;
pub mod record;
pub mod schedule;
pub mod status;
pub mod strategy;
pub mod surgery;
pub mod width;

pub use criteria::{Context, Criterion, Scores};
pub use error::PruneError;
pub use record::{Data, accuracy, record};
pub use schedule::{Amount, Plan};
pub use status::{ActivationStatus, ConvDecision, LayerStatus};
