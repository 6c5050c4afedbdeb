//! The error type of the prune crate: every variant names the offending value, layer
//! or flag, so that a bad plan or a mismatched status reads as one clear line.

/// Everything that can go wrong while recording, scoring, cutting or retraining.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// A parameter of a plan, criterion or search is outside its accepted range.
    #[error("{name} = {value} is invalid: expected {expected}")]
    InvalidParameter {
        /// The parameter (or command-line flag) name.
        name: &'static str,
        /// The rejected value, as written.
        value: String,
        /// The accepted range, in words.
        expected: &'static str,
    },
    /// Two things that must agree in size do not (scores vs. layers, masks vs. neurons, ...).
    #[error("shape mismatch in {context}: expected {expected}, got {got}")]
    Shape {
        /// Where the mismatch was found.
        context: &'static str,
        /// The size that was required.
        expected: usize,
        /// The size that was given.
        got: usize,
    },
    /// A criterion was asked to score without the input it needs (a model, a status, data).
    #[error("criterion `{criterion}` needs {what}")]
    MissingInput {
        /// The criterion's name.
        criterion: &'static str,
        /// What it lacks.
        what: &'static str,
    },
    /// A pruning mask would remove every neuron of a layer; a layer keeps at least one.
    #[error("prunable layer {layer} (model layer {model_layer}) would lose all of its {neurons} neurons")]
    EmptyLayer {
        /// Index among the prunable layers.
        layer: usize,
        /// Index among the model's layers (the producing Linear/Conv2d).
        model_layer: usize,
        /// Its width before pruning.
        neurons: usize,
    },
    /// The model's layer sequence has a shape surgery does not know how to cut through.
    #[error("unsupported layer arrangement at model layer {layer}: {what}")]
    Unsupported {
        /// The model layer index.
        layer: usize,
        /// What is wrong there.
        what: String,
    },
    /// An unknown criterion, strategy or schedule name.
    #[error("unknown {kind} `{name}`; accepted: {accepted}")]
    UnknownName {
        /// What kind of name ("criterion", "strategy").
        kind: &'static str,
        /// The name given.
        name: String,
        /// The accepted names.
        accepted: &'static str,
    },
    /// An error from `net` (a model that does not chain, a failed pass, training).
    #[error(transparent)]
    Net(#[from] net::NetError),
}
