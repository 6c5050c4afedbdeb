//! Activation status: which neurons are on (> 0 after their ReLU) for which inputs.
//!
//! A *neuron* is a dense unit or a conv channel. For each recorded layer we keep
//! - per-neuron on-counts over all (input, spatial position) pairs, so a conv channel's
//!   firing rate is the fraction of its positions that fire (1 − APoZ, Hu et al. 2016);
//! - per input, the layer's *decision pattern* as packed bits (`u64` words, neuron `j`
//!   in word `j / 64`, bit `j % 64`): 60,000 inputs × 600 neurons is 4.5 MB.
//!
//! A conv channel is "on" for an input by [`ConvDecision`]. With [`ConvDecision::Any`]
//! nearly every channel fires somewhere on nearly every image, and with
//! [`ConvDecision::Majority`] a sparse channel (LeNet-5's second conv layer fires on
//! ~13% of its positions) is off for every image: either way its decision has entropy
//! 0 and says nothing. The default, [`ConvDecision::AboveMean`], calls a channel on
//! when more of its positions fire than on average for that channel over the
//! recorded inputs — a per-channel threshold, decided once all inputs are in.
//!
//! The types here are plain data: tests and criteria build them from synthetic
//! decisions with [`LayerStatus::from_decisions`], without any model.

use crate::PruneError;

/// How a conv channel's per-position decisions become one per-input decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvDecision {
    /// On if any position fires.
    Any,
    /// On if more than half of its positions fire.
    Majority,
    /// On if more of its positions fire than its mean over the recorded inputs
    /// (dense units, with one position, are on when > 0).
    #[default]
    AboveMean,
}

/// The activation status of one prunable layer (the output of one ReLU).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStatus {
    /// Index into the model's layers of the ReLU whose output this is.
    pub layer: usize,
    /// Neurons: dense units or conv channels.
    pub neurons: usize,
    /// Spatial positions per neuron (H·W for a conv channel, 1 for a dense unit).
    pub positions: usize,
    /// Recorded inputs.
    pub inputs: usize,
    /// Per neuron: number of (input, position) pairs that were on; `neurons` entries.
    pub on_counts: Vec<u64>,
    /// Per neuron: number of inputs whose decision was on; `neurons` entries.
    pub decision_counts: Vec<u64>,
    /// Decision patterns, row-major `inputs × words` with `words = ceil(neurons / 64)`.
    pub bits: Vec<u64>,
    /// While recording with [`ConvDecision::AboveMean`]: positions on per input and
    /// neuron, row-major `inputs × neurons`; emptied by [`LayerStatus::decide_above_mean`].
    pub position_counts: Vec<u32>,
}

impl LayerStatus {
    /// An empty status (no inputs yet) for a layer of `neurons` neurons with
    /// `positions` spatial positions each.
    pub fn new(layer: usize, neurons: usize, positions: usize) -> LayerStatus {
        LayerStatus {
            layer,
            neurons,
            positions,
            inputs: 0,
            on_counts: vec![0; neurons],
            decision_counts: vec![0; neurons],
            bits: Vec::new(),
            position_counts: Vec::new(),
        }
    }

    /// Builds a dense-layer status (`positions` = 1) from decisions, row-major
    /// `inputs × neurons`, `true` = on.
    pub fn from_decisions(
        layer: usize,
        neurons: usize,
        decisions: &[bool],
    ) -> Result<LayerStatus, PruneError> {
        if neurons == 0 {
            return Err(PruneError::InvalidParameter {
                name: "neurons",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if !decisions.len().is_multiple_of(neurons) {
            return Err(PruneError::Shape {
                context: "LayerStatus::from_decisions (decisions must be inputs × neurons)",
                expected: decisions.len().div_ceil(neurons) * neurons,
                got: decisions.len(),
            });
        }
        let mut st = LayerStatus::new(layer, neurons, 1);
        let words = st.words();
        for row in decisions.chunks(neurons) {
            let start = st.bits.len();
            st.bits.resize(start + words, 0);
            for (j, &on) in row.iter().enumerate() {
                if on {
                    st.bits[start + j / 64] |= 1 << (j % 64);
                    st.on_counts[j] += 1;
                    st.decision_counts[j] += 1;
                }
            }
            st.inputs += 1;
        }
        Ok(st)
    }

    /// Words per input pattern: `ceil(neurons / 64)`.
    pub fn words(&self) -> usize {
        self.neurons.div_ceil(64)
    }

    /// Appends the decisions of a batch of `batch` inputs from a ReLU output laid out
    /// `batch × neurons × positions` (NCHW with C = neurons).
    pub fn record_batch(
        &mut self,
        output: &[f32],
        batch: usize,
        decision: ConvDecision,
    ) -> Result<(), PruneError> {
        let per_input = self.neurons * self.positions;
        if output.len() != batch * per_input {
            return Err(PruneError::Shape {
                context: "LayerStatus::record_batch (output must be batch × neurons × positions)",
                expected: batch * per_input,
                got: output.len(),
            });
        }
        let words = self.words();
        for sample in output.chunks_exact(per_input) {
            let start = self.bits.len();
            self.bits.resize(start + words, 0);
            for (j, channel) in sample.chunks_exact(self.positions).enumerate() {
                let on = channel.iter().filter(|&&v| v > 0.0).count();
                self.on_counts[j] += on as u64;
                let decided = match decision {
                    ConvDecision::Any => on > 0,
                    ConvDecision::Majority => 2 * on > self.positions,
                    ConvDecision::AboveMean if self.positions == 1 => on > 0,
                    ConvDecision::AboveMean => {
                        // Decided in `decide_above_mean` once the mean is known.
                        self.position_counts.push(on as u32);
                        false
                    }
                };
                if decided {
                    self.bits[start + j / 64] |= 1 << (j % 64);
                    self.decision_counts[j] += 1;
                }
            }
            self.inputs += 1;
        }
        Ok(())
    }

    /// Appends `other`'s inputs after this status's (same layer and widths).
    pub fn append(&mut self, other: &LayerStatus) -> Result<(), PruneError> {
        if other.neurons != self.neurons || other.positions != self.positions {
            return Err(PruneError::Shape {
                context: "LayerStatus::append (widths differ)",
                expected: self.neurons * self.positions,
                got: other.neurons * other.positions,
            });
        }
        for (a, b) in self.on_counts.iter_mut().zip(&other.on_counts) {
            *a += b;
        }
        for (a, b) in self.decision_counts.iter_mut().zip(&other.decision_counts) {
            *a += b;
        }
        self.bits.extend_from_slice(&other.bits);
        self.position_counts.extend_from_slice(&other.position_counts);
        self.inputs += other.inputs;
        Ok(())
    }

    /// Sets the decisions recorded with [`ConvDecision::AboveMean`]: neuron `j` is on
    /// for input `i` when its positions on exceed `on_counts[j] / inputs`. Does nothing
    /// when no counts are pending (dense layers, other rules).
    pub fn decide_above_mean(&mut self) {
        if self.position_counts.len() != self.inputs * self.neurons || self.position_counts.is_empty() {
            return;
        }
        let words = self.words();
        for (i, counts) in self.position_counts.chunks_exact(self.neurons).enumerate() {
            for (j, &c) in counts.iter().enumerate() {
                // c > on_counts / inputs, in integers.
                if c as u64 * self.inputs as u64 > self.on_counts[j] {
                    self.bits[i * words + j / 64] |= 1 << (j % 64);
                    self.decision_counts[j] += 1;
                }
            }
        }
        self.position_counts = Vec::new();
    }

    /// The packed decision pattern of input `i` (`words()` words).
    pub fn pattern(&self, i: usize) -> &[u64] {
        let w = self.words();
        &self.bits[i * w..(i + 1) * w]
    }

    /// Whether neuron `j` was on for input `i`.
    pub fn is_on(&self, i: usize, j: usize) -> bool {
        self.pattern(i)[j / 64] >> (j % 64) & 1 == 1
    }

    /// Fraction of (input, position) pairs where neuron `j` fired, in [0, 1]: 1 − APoZ.
    pub fn firing_rate(&self, j: usize) -> f64 {
        let total = (self.inputs * self.positions) as f64;
        if total == 0.0 { 0.0 } else { self.on_counts[j] as f64 / total }
    }

    /// Fraction of inputs whose decision for neuron `j` was on, in [0, 1].
    pub fn decision_rate(&self, j: usize) -> f64 {
        if self.inputs == 0 { 0.0 } else { self.decision_counts[j] as f64 / self.inputs as f64 }
    }

    /// Neurons that never fired at any position for any input.
    pub fn dead(&self) -> usize {
        self.on_counts.iter().filter(|&&c| c == 0).count()
    }

    /// Neurons whose decision was on for every input.
    pub fn always_on(&self) -> usize {
        self.decision_counts.iter().filter(|&&c| c as usize == self.inputs && self.inputs > 0).count()
    }
}

/// The activation status of every prunable layer of a model over a set of inputs,
/// with each input's true label and the model's prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationStatus {
    /// One entry per prunable layer, in model order.
    pub layers: Vec<LayerStatus>,
    /// True label per input.
    pub labels: Vec<u32>,
    /// The model's prediction (arg-max logit, lowest class on ties) per input.
    pub predictions: Vec<u32>,
    /// Number of classes; every label and prediction is below it.
    pub num_classes: usize,
}

impl ActivationStatus {
    /// Checks that every layer, the labels and the predictions cover the same inputs
    /// and that classes are in range.
    pub fn validate(&self) -> Result<(), PruneError> {
        let n = self.labels.len();
        if self.predictions.len() != n {
            return Err(PruneError::Shape {
                context: "ActivationStatus predictions vs labels",
                expected: n,
                got: self.predictions.len(),
            });
        }
        for l in &self.layers {
            if l.inputs != n || l.bits.len() != n * l.words() {
                return Err(PruneError::Shape {
                    context: "ActivationStatus layer inputs",
                    expected: n,
                    got: l.inputs,
                });
            }
        }
        if let Some(&c) =
            self.labels.iter().chain(&self.predictions).find(|&&c| c as usize >= self.num_classes)
        {
            return Err(PruneError::InvalidParameter {
                name: "class",
                value: c.to_string(),
                expected: "below num_classes",
            });
        }
        Ok(())
    }

    /// Number of recorded inputs.
    pub fn inputs(&self) -> usize {
        self.labels.len()
    }

    /// Fraction of inputs whose prediction equals the label.
    pub fn accuracy(&self) -> f64 {
        let n = self.labels.len().max(1) as f64;
        self.labels.iter().zip(&self.predictions).filter(|(a, b)| a == b).count() as f64 / n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_decisions_packs_bits_and_counts() {
        // 3 inputs × 70 neurons: crosses a word boundary.
        let n = 70;
        let mut d = vec![false; 3 * n];
        d[0] = true; // input 0, neuron 0
        d[n + 65] = true; // input 1, neuron 65
        d[2 * n + 65] = true; // input 2, neuron 65
        let st = LayerStatus::from_decisions(1, n, &d).unwrap();
        assert_eq!(st.words(), 2);
        assert_eq!(st.bits.len(), 6);
        assert!(st.is_on(0, 0) && !st.is_on(1, 0));
        assert!(st.is_on(1, 65) && st.is_on(2, 65) && !st.is_on(0, 65));
        assert_eq!(st.decision_counts[65], 2);
        assert_eq!(st.dead(), 68);
        assert!((st.firing_rate(65) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn conv_decisions_follow_the_rule() {
        // 2 inputs × 2 channels × 4 positions.
        let out = [
            1.0, 0.0, 0.0, 0.0, /* ch0: 1 of 4 */ 1.0, 1.0, 1.0, 0.0, /* ch1: 3 of 4 */
            0.0, 0.0, 0.0, 0.0, /* ch0: 0 of 4 */ 1.0, 1.0, 0.0, 0.0, /* ch1: 2 of 4 */
        ];
        let mut any = LayerStatus::new(0, 2, 4);
        any.record_batch(&out, 2, ConvDecision::Any).unwrap();
        let mut maj = LayerStatus::new(0, 2, 4);
        maj.record_batch(&out, 2, ConvDecision::Majority).unwrap();
        assert_eq!(any.on_counts, vec![1, 5]);
        assert_eq!(maj.on_counts, vec![1, 5]);
        assert!((any.firing_rate(1) - 5.0 / 8.0).abs() < 1e-12);
        assert_eq!(any.decision_counts, vec![1, 2]);
        assert_eq!(maj.decision_counts, vec![0, 1]);
        assert!(maj.is_on(0, 1) && !maj.is_on(1, 1));
    }

    #[test]
    fn above_mean_uses_a_per_channel_threshold() {
        // 3 inputs × 2 channels × 4 positions; channel 0 fires on 0, 1, 2 positions
        // (mean 1: on only for the third input); channel 1 on 4, 4, 4 (never above).
        let mut out = Vec::new();
        for k in 0..3 {
            out.extend((0..4).map(|p| if p < k { 1.0 } else { 0.0 }));
            out.extend([1.0; 4]);
        }
        let mut st = LayerStatus::new(0, 2, 4);
        st.record_batch(&out[..8], 1, ConvDecision::AboveMean).unwrap();
        let mut rest = LayerStatus::new(0, 2, 4);
        rest.record_batch(&out[8..], 2, ConvDecision::AboveMean).unwrap();
        st.append(&rest).unwrap();
        assert_eq!(st.decision_counts, vec![0, 0], "undecided until the mean is known");
        st.decide_above_mean();
        assert_eq!(st.decision_counts, vec![1, 0]);
        assert!(st.is_on(2, 0) && !st.is_on(1, 0) && !st.is_on(0, 0));
        assert!(st.position_counts.is_empty());
        // Dense layers decide at once.
        let mut d = LayerStatus::new(0, 2, 1);
        d.record_batch(&[1.0, 0.0], 1, ConvDecision::AboveMean).unwrap();
        assert_eq!(d.decision_counts, vec![1, 0]);
    }

    #[test]
    fn append_equals_recording_at_once() {
        let out: Vec<f32> = (0..5 * 3).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let mut whole = LayerStatus::new(2, 3, 1);
        whole.record_batch(&out, 5, ConvDecision::Majority).unwrap();
        let mut a = LayerStatus::new(2, 3, 1);
        a.record_batch(&out[..6], 2, ConvDecision::Majority).unwrap();
        let mut b = LayerStatus::new(2, 3, 1);
        b.record_batch(&out[6..], 3, ConvDecision::Majority).unwrap();
        a.append(&b).unwrap();
        assert_eq!(a, whole);
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(LayerStatus::from_decisions(0, 3, &[true; 4]).is_err());
        assert!(LayerStatus::new(0, 2, 4).record_batch(&[0.0; 7], 1, ConvDecision::Any).is_err());
    }
}
