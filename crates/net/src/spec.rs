//! Model spec strings: presets (`lenet5`, `mlp:784-600-600-10`) and the general
//! comma-separated form (`conv6k5p2,relu,pool2,flatten,fc120,relu,fc10`).
//!
//! Tokens of the general form: `convNkK[sS][pP]` (N output channels, K × K kernel,
//! stride S, default 1, zero padding P, default 0), `fcN` (Linear with N outputs),
//! `poolK` (max pooling K × K, stride K), `relu`, `flatten`.

use crate::NetError;

/// One layer as a spec describes it: widths and geometry, no parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerSpec {
    /// 2-D convolution with square kernel; input channels come from the previous layer.
    Conv2d {
        /// Output channels.
        out_channels: usize,
        /// Kernel height and width in pixels.
        kernel: usize,
        /// Stride along both axes (≥ 1).
        stride: usize,
        /// Zero padding on every side, in pixels.
        padding: usize,
    },
    /// Fully connected layer; input features come from the previous layer.
    Linear {
        /// Output features.
        out_features: usize,
    },
    /// `max(x, 0)` elementwise.
    Relu,
    /// Max pooling over `kernel × kernel` windows with stride `kernel`.
    MaxPool2d {
        /// Window size in pixels.
        kernel: usize,
    },
    /// `C × H × W` → `C·H·W × 1 × 1`, C, H, W order (PyTorch's `nn.Flatten`).
    Flatten,
}

impl LayerSpec {
    /// The canonical token of this layer in the general form (`conv6k5p2`, `fc10`, …).
    pub fn token(&self) -> String {
        match *self {
            LayerSpec::Conv2d { out_channels, kernel, stride, padding } => {
                let mut s = format!("conv{out_channels}k{kernel}");
                if stride != 1 {
                    s += &format!("s{stride}");
                }
                if padding != 0 {
                    s += &format!("p{padding}");
                }
                s
            }
            LayerSpec::Linear { out_features } => format!("fc{out_features}"),
            LayerSpec::Relu => "relu".into(),
            LayerSpec::MaxPool2d { kernel } => format!("pool{kernel}"),
            LayerSpec::Flatten => "flatten".into(),
        }
    }
}

/// The LeNet-5 preset in the general form.
pub const LENET5: &str = "conv6k5p2,relu,pool2,conv16k5,relu,pool2,flatten,fc120,relu,fc84,relu,fc10";

/// Parses a spec: a preset (`lenet5`, `mlp:I-H1-…-O`) or the general form.
///
/// For `mlp:I-H1-…-O` the layers are `flatten, fcH1, relu, …, fcO` (the first number is
/// the input size, checked against the data by [`crate::Model::from_spec`]).
///
/// # Errors
/// [`NetError::Spec`] pointing at the first offending token.
pub fn parse_spec(spec: &str) -> Result<Vec<LayerSpec>, NetError> {
    parse_spec_with_input(spec).map(|(layers, _)| layers)
}

/// [`parse_spec`], also returning the input feature count an `mlp:` preset names.
pub(crate) fn parse_spec_with_input(spec: &str) -> Result<(Vec<LayerSpec>, Option<usize>), NetError> {
    let trimmed = spec.trim();
    if trimmed == "lenet5" {
        return parse_general(LENET5).map(|l| (l, None));
    }
    if let Some(rest) = trimmed.strip_prefix("mlp:") {
        let base = spec.find("mlp:").map_or(0, |p| p + 4);
        return parse_mlp(spec, rest, base);
    }
    parse_general(spec).map(|l| (l, None))
}

fn error(spec: &str, token: &str, index: usize, offset: usize, reason: impl Into<String>) -> NetError {
    let width = token.chars().count().max(1);
    let pad = spec[..offset.min(spec.len())].chars().count();
    NetError::Spec {
        spec: spec.to_string(),
        token: token.to_string(),
        index,
        offset,
        reason: reason.into(),
        caret: format!("{}{}", " ".repeat(pad), "^".repeat(width)),
    }
}

fn parse_mlp(spec: &str, rest: &str, base: usize) -> Result<(Vec<LayerSpec>, Option<usize>), NetError> {
    let mut sizes = Vec::new();
    let mut offset = base;
    for (index, tok) in rest.split('-').enumerate() {
        let n = tok.trim().parse::<usize>().map_err(|_| {
            error(spec, tok, index, offset, "expected a positive integer layer width in `mlp:I-H-…-O`")
        })?;
        if n == 0 {
            return Err(error(spec, tok, index, offset, "a layer width must be at least 1"));
        }
        sizes.push(n);
        offset += tok.len() + 1;
    }
    if sizes.len() < 2 {
        return Err(error(spec, rest, 0, base, "an mlp needs at least an input and an output size"));
    }
    let mut layers = vec![LayerSpec::Flatten];
    for (i, &n) in sizes[1..].iter().enumerate() {
        if i > 0 {
            layers.push(LayerSpec::Relu);
        }
        layers.push(LayerSpec::Linear { out_features: n });
    }
    Ok((layers, Some(sizes[0])))
}

fn number(s: &str) -> Option<(usize, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    Some((s[..end].parse().ok()?, &s[end..]))
}

fn parse_general(spec: &str) -> Result<Vec<LayerSpec>, NetError> {
    let mut layers = Vec::new();
    let mut offset = 0;
    for (index, raw) in spec.split(',').enumerate() {
        let lead = raw.len() - raw.trim_start().len();
        let tok = raw.trim();
        let at = offset + lead;
        offset += raw.len() + 1;
        let err = |reason: &str| error(spec, if tok.is_empty() { raw } else { tok }, index, at, reason);
        let positive = |n: usize, what: &str| {
            if n == 0 { Err(err(&format!("{what} must be at least 1"))) } else { Ok(n) }
        };
        let layer = if tok.is_empty() {
            return Err(err("empty token"));
        } else if tok == "relu" {
            LayerSpec::Relu
        } else if tok == "flatten" {
            LayerSpec::Flatten
        } else if let Some(rest) = tok.strip_prefix("fc") {
            match number(rest) {
                Some((n, "")) => LayerSpec::Linear { out_features: positive(n, "fc width")? },
                _ => return Err(err("expected `fcN` with N the number of output features")),
            }
        } else if let Some(rest) = tok.strip_prefix("pool") {
            match number(rest) {
                Some((k, "")) => LayerSpec::MaxPool2d { kernel: positive(k, "pool size")? },
                _ => return Err(err("expected `poolK` with K the window size")),
            }
        } else if let Some(rest) = tok.strip_prefix("conv") {
            let bad = "expected `convNkK[sS][pP]` (N channels, K kernel, S stride, P padding)";
            let (n, rest) = number(rest).ok_or_else(|| err(bad))?;
            let rest = rest.strip_prefix('k').ok_or_else(|| err(bad))?;
            let (k, mut rest) = number(rest).ok_or_else(|| err(bad))?;
            let mut stride = 1;
            let mut padding = 0;
            if let Some(r) = rest.strip_prefix('s') {
                (stride, rest) = number(r).ok_or_else(|| err(bad))?;
            }
            if let Some(r) = rest.strip_prefix('p') {
                (padding, rest) = number(r).ok_or_else(|| err(bad))?;
            }
            if !rest.is_empty() {
                return Err(err(bad));
            }
            LayerSpec::Conv2d {
                out_channels: positive(n, "conv channels")?,
                kernel: positive(k, "conv kernel")?,
                stride: positive(stride, "conv stride")?,
                padding,
            }
        } else {
            return Err(err("unknown layer (expected convNkK[sS][pP], fcN, poolK, relu or flatten)"));
        };
        layers.push(layer);
    }
    Ok(layers)
}

/// The canonical general form of `layers` (comma-separated tokens).
pub fn spec_string(layers: &[LayerSpec]) -> String {
    layers.iter().map(LayerSpec::token).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenet5_preset_is_the_general_form() {
        let l = parse_spec("lenet5").unwrap();
        assert_eq!(l.len(), 12);
        assert_eq!(l[0], LayerSpec::Conv2d { out_channels: 6, kernel: 5, stride: 1, padding: 2 });
        assert_eq!(spec_string(&l), LENET5);
    }

    #[test]
    fn mlp_preset_starts_with_flatten() {
        let (l, input) = parse_spec_with_input("mlp:784-600-600-10").unwrap();
        assert_eq!(input, Some(784));
        assert_eq!(spec_string(&l), "flatten,fc600,relu,fc600,relu,fc10");
    }

    #[test]
    fn conv_with_stride_and_padding_round_trips() {
        let l = parse_spec("conv8k3s2p1, relu").unwrap();
        assert_eq!(l[0], LayerSpec::Conv2d { out_channels: 8, kernel: 3, stride: 2, padding: 1 });
        assert_eq!(spec_string(&l), "conv8k3s2p1,relu");
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let e = parse_spec("conv6k5p2,relu,poool2,fc10").unwrap_err();
        match &e {
            NetError::Spec { token, index, offset, caret, .. } => {
                assert_eq!(token, "poool2");
                assert_eq!(*index, 2);
                assert_eq!(*offset, 15);
                assert_eq!(caret, &format!("{}^^^^^^", " ".repeat(15)));
            }
            other => panic!("wrong error {other:?}"),
        }
        assert!(e.to_string().contains("poool2"));
        for bad in
            ["fc0", "fc", "conv6", "conv6k", "conv6k5x", "pool", "relu,,fc1", "mlp:784", "mlp:784-a-10"]
        {
            assert!(matches!(parse_spec(bad), Err(NetError::Spec { .. })), "{bad} parsed");
        }
        match parse_spec("mlp:784-600-x-10").unwrap_err() {
            NetError::Spec { token, offset, .. } => {
                assert_eq!(token, "x");
                assert_eq!(offset, 12);
            }
            other => panic!("wrong error {other:?}"),
        }
    }
}
