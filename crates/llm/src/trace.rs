//! `Trace`: every internal of one forward step that the LLM scene draws, recorded for the newest
//! token. Serialised as one JSON object per step by `samemath trace` (schema in README).

use std::{fmt, marker::PhantomData};

use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// A token id with the text it stands for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: u32,
    pub piece: String,
}

/// A candidate next token: its logit and its probability at temperature 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenProb {
    pub id: u32,
    pub piece: String,
    pub logit: f32,
    pub prob: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerTrace {
    /// Per query head, the newest token's attention probabilities over positions 0..=position.
    #[serde(deserialize_with = "at_most::<MAX_TRACE_HEADS, _, _>")]
    pub attention: Vec<Vec<f32>>,
    /// `silu(gate · x) * (up · x)` for the newest token: the MLP's activations.
    pub mlp_activation: Vec<f32>,
    /// `x`: the MLP's input, the residual stream after the layer's second RMSNorm (576 values);
    /// with the gate and up rows it gives each activation's dot products.
    #[serde(default)]
    pub mlp_input: Vec<f32>,
    /// L2 norm of the residual stream entering and leaving the layer.
    pub residual_norm_in: f32,
    pub residual_norm_out: f32,
    /// Logit lens: the top token if the final norm and head were applied after this layer.
    pub logit_lens: Option<TokenProb>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Position of the newest token in the sequence (0-based).
    pub position: usize,
    /// The newest token, the one this step processed.
    pub token: TokenInfo,
    /// Its row of the embedding matrix.
    pub embedding: Vec<f32>,
    /// For each query head, the KV head it reads (grouped-query attention).
    #[serde(deserialize_with = "at_most::<MAX_TRACE_HEADS, _, _>")]
    pub kv_head_of_head: Vec<usize>,
    #[serde(deserialize_with = "at_most::<MAX_TRACE_LAYERS, _, _>")]
    pub layers: Vec<LayerTrace>,
    /// The most likely next tokens, best first.
    #[serde(deserialize_with = "at_most::<MAX_TRACE_TOP_K, _, _>")]
    pub top_k: Vec<TokenProb>,
}

/// What to record in a step. Recording nothing costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordOptions {
    pub enabled: bool,
    pub logit_lens: bool,
    pub top_k: usize,
}

impl RecordOptions {
    pub const OFF: RecordOptions = RecordOptions {
        enabled: false,
        logit_lens: false,
        top_k: 0,
    };
    pub const FULL: RecordOptions = RecordOptions {
        enabled: true,
        logit_lens: true,
        top_k: 20,
    };
}

/// The most a trace from elsewhere (a remote server) may hold: what the scene can draw (the
/// activation texture stays within 8192 texels a side) and what a llama model has.
pub const MAX_TRACE_LAYERS: usize = 128;
pub const MAX_TRACE_HEADS: usize = 256;
pub const MAX_TRACE_WIDTH: usize = 16_384;
pub const MAX_TRACE_TOP_K: usize = 1_000;
/// The most MLP activations a trace may hold in all its layers together (layers × width), and
/// the most attention heads in all layers (layers × heads): each dimension alone within its
/// bound can still make a trace the scene cannot draw (128 layers × 16,384 activations is 2
/// million columns in the world, one step of JSON a few megabytes). The largest models the
/// scene is for fit: llama-3 8B has 32 × 14,336 = 458,752 activations and 32 × 32 = 1,024
/// heads (SmolLM2 30 × 1,536 and 30 × 9).
pub const MAX_TRACE_ACTIVATIONS: usize = 1 << 19;
pub const MAX_TRACE_LAYER_HEADS: usize = 4_096;
/// The longest prompt a trace over the wire carries: samemath serve's /api/trace cap, and what
/// the remote client accepts (the scene fits a PCA to the prompt's embedding rows).
pub const MAX_TRACE_PROMPT_TOKENS: usize = 1024;
/// The longest context a llama model of this loader has (`llama.context_length`'s bound).
pub const MAX_TRACE_POSITION: usize = 1 << 20;

/// A list of at most `N` items, refused as soon as one more arrives. A trace from a server is
/// parsed straight into these types, and its lists of lists are what could cost memory far
/// past the text's size: `[[],[],…]` is 3 bytes of text for each 24-byte empty list, so a
/// 32 MiB line of them would be built in full (some 250 MB) before `check_shape` saw it. With
/// the outer lists bounded, what is built stays within a few times the line's length.
pub fn at_most<'de, const N: usize, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct AtMost<const N: usize, T>(PhantomData<T>);
    impl<'de, const N: usize, T: Deserialize<'de>> Visitor<'de> for AtMost<N, T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a list of at most {N} items")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                if items.len() == N {
                    return Err(A::Error::invalid_length(N + 1, &self));
                }
                items.push(item);
            }
            Ok(items)
        }
    }
    d.deserialize_seq(AtMost::<N, T>(PhantomData))
}

impl Trace {
    /// `Err(what is wrong)` unless the trace has one consistent shape: every layer with one
    /// attention row per query head, each over positions 0..=position; every head's KV head one
    /// of the heads' groups; the MLP and embedding widths the same in every layer; all within
    /// the `MAX_TRACE_*` bounds. The scene draws any trace that passes without indexing out of
    /// range; a remote server's traces are checked before they reach it.
    pub fn check_shape(&self) -> Result<(), String> {
        let heads = self.kv_head_of_head.len();
        let within = |what: &str, n: usize, max: usize| {
            if n > max {
                Err(format!("{n} {what} (at most {max})"))
            } else {
                Ok(())
            }
        };
        within("layers", self.layers.len(), MAX_TRACE_LAYERS)?;
        within("heads", heads, MAX_TRACE_HEADS)?;
        within("embedding values", self.embedding.len(), MAX_TRACE_WIDTH)?;
        within("next-token candidates", self.top_k.len(), MAX_TRACE_TOP_K)?;
        within("positions", self.position, MAX_TRACE_POSITION)?;
        if let Some(&kv) = self.kv_head_of_head.iter().find(|&&kv| kv >= heads) {
            return Err(format!("a head reads KV head {kv} of {heads}"));
        }
        let positions = self.position.saturating_add(1);
        let width = self.layers.first().map_or(0, |l| l.mlp_activation.len());
        within("MLP activations", width, MAX_TRACE_WIDTH)?;
        // (Each factor is bounded above, so the products cannot overflow.)
        within(
            "MLP activations in all layers",
            self.layers.len() * width,
            MAX_TRACE_ACTIVATIONS,
        )?;
        within(
            "attention heads in all layers",
            self.layers.len() * heads,
            MAX_TRACE_LAYER_HEADS,
        )?;
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.attention.len() != heads {
                return Err(format!(
                    "layer {i} has {} attention rows for {heads} heads",
                    layer.attention.len()
                ));
            }
            if let Some(row) = layer.attention.iter().find(|r| r.len() != positions) {
                return Err(format!(
                    "layer {i} has an attention row over {} positions, not {positions}",
                    row.len()
                ));
            }
            if layer.mlp_activation.len() != width {
                return Err(format!(
                    "layer {i} has {} MLP activations, layer 0 {width}",
                    layer.mlp_activation.len()
                ));
            }
            if !layer.mlp_input.is_empty() && layer.mlp_input.len() != self.embedding.len() {
                return Err(format!(
                    "layer {i}'s MLP input has {} values, the embedding {}",
                    layer.mlp_input.len(),
                    self.embedding.len()
                ));
            }
        }
        self.check_values()
    }

    /// Every number finite (JSON has no NaN, but 1e39 reads as an f32 infinity), probabilities
    /// within 0..=1: what the scene scales geometry and colours by.
    fn check_values(&self) -> Result<(), String> {
        let finite = |what: &str, v: &[f32]| match v.iter().find(|x| !x.is_finite()) {
            Some(x) => Err(format!("{what} holds {x}")),
            None => Ok(()),
        };
        let probability = |what: &str, c: &TokenProb| {
            if !c.logit.is_finite() || !(0.0..=1.0).contains(&c.prob) {
                Err(format!(
                    "{what} has logit {} and probability {}",
                    c.logit, c.prob
                ))
            } else {
                Ok(())
            }
        };
        finite("the embedding", &self.embedding)?;
        for (i, l) in self.layers.iter().enumerate() {
            for row in &l.attention {
                finite(&format!("layer {i}'s attention"), row)?;
            }
            finite(&format!("layer {i}'s MLP activations"), &l.mlp_activation)?;
            finite(&format!("layer {i}'s MLP input"), &l.mlp_input)?;
            finite(
                &format!("layer {i}'s residual norms"),
                &[l.residual_norm_in, l.residual_norm_out],
            )?;
            if let Some(lens) = &l.logit_lens {
                probability(&format!("layer {i}'s logit lens"), lens)?;
            }
        }
        for c in &self.top_k {
            probability("a next-token candidate", c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(layers: usize, heads: usize, position: usize) -> Trace {
        Trace {
            position,
            token: TokenInfo {
                id: 1,
                piece: "a".into(),
            },
            embedding: vec![0.0; 8],
            kv_head_of_head: (0..heads).map(|h| h / 3).collect(),
            layers: (0..layers)
                .map(|_| LayerTrace {
                    attention: vec![vec![0.5; position + 1]; heads],
                    mlp_activation: vec![0.0; 16],
                    mlp_input: vec![0.0; 8],
                    residual_norm_in: 1.0,
                    residual_norm_out: 1.0,
                    logit_lens: None,
                })
                .collect(),
            top_k: Vec::new(),
        }
    }

    #[test]
    fn traces_of_the_wrong_shape_are_named() {
        assert_eq!(trace(3, 9, 4).check_shape(), Ok(()));
        let mut t = trace(3, 9, 4);
        t.layers[1].attention[2].pop();
        assert!(t.check_shape().unwrap_err().contains("positions"));
        let mut t = trace(3, 9, 4);
        t.kv_head_of_head[0] = usize::MAX;
        assert!(t.check_shape().unwrap_err().contains("KV head"));
        let mut t = trace(3, 9, 4);
        t.layers[2].mlp_activation.push(1.0);
        assert!(t.check_shape().unwrap_err().contains("MLP activations"));
        let mut t = trace(3, 9, 4);
        t.layers[0].attention.pop();
        assert!(t.check_shape().is_err());
        assert!(trace(MAX_TRACE_LAYERS + 1, 1, 0).check_shape().is_err());
        let mut t = trace(1, 1, 0);
        t.layers[0].mlp_activation = vec![0.0; MAX_TRACE_WIDTH + 1];
        assert!(t.check_shape().is_err());
        // No heads, so no attention rows to check the position against: still bounded.
        let t = trace(2, 0, usize::MAX);
        assert!(t.check_shape().unwrap_err().contains("positions"));
        // Each dimension within its bound, their products not.
        let mut t = trace(MAX_TRACE_LAYERS, 1, 0);
        for l in &mut t.layers {
            l.mlp_activation = vec![0.0; MAX_TRACE_WIDTH];
        }
        assert!(
            t.check_shape()
                .unwrap_err()
                .contains("MLP activations in all layers")
        );
        let t = trace(MAX_TRACE_LAYERS, MAX_TRACE_HEADS, 0);
        assert!(
            t.check_shape()
                .unwrap_err()
                .contains("attention heads in all layers")
        );
        // llama-3 8B's shape passes.
        let mut t = trace(32, 32, 0);
        for l in &mut t.layers {
            l.mlp_activation = vec![0.0; 14_336];
        }
        assert_eq!(t.check_shape(), Ok(()));
        let mut t = trace(3, 9, 4);
        t.layers[1].mlp_activation[3] = f32::INFINITY;
        assert!(t.check_shape().unwrap_err().contains("holds inf"));
    }

    #[test]
    fn lists_past_their_bound_are_refused_while_parsing() {
        // At each bound a trace parses (check_shape judges it after); one item more does not.
        let parse = |t: &Trace| serde_json::from_str::<Trace>(&serde_json::to_string(t).unwrap());
        let t = trace(MAX_TRACE_LAYERS, 1, 0);
        assert_eq!(parse(&t).unwrap(), t);
        let t = trace(MAX_TRACE_LAYERS + 1, 1, 0);
        let e = parse(&t).unwrap_err().to_string();
        assert!(e.contains("at most 128 items"), "{e}");
        let t = trace(1, MAX_TRACE_HEADS, 0);
        assert_eq!(parse(&t).unwrap(), t);
        let mut t = trace(1, MAX_TRACE_HEADS, 0);
        t.layers[0].attention.push(vec![0.5]);
        assert!(parse(&t).unwrap_err().to_string().contains("at most 256"));
        let t = trace(1, MAX_TRACE_HEADS + 1, 0);
        assert!(parse(&t).unwrap_err().to_string().contains("at most 256"));
        let candidate = TokenProb {
            id: 1,
            piece: "a".into(),
            logit: 0.0,
            prob: 0.5,
        };
        let mut t = trace(1, 1, 0);
        t.top_k = vec![candidate; MAX_TRACE_TOP_K + 1];
        assert!(parse(&t).unwrap_err().to_string().contains("at most 1000"));
        // A line of empty attention rows, the cheap way to make a parser build a lot, stops at
        // the bound.
        let rows = vec!["[]"; 1_000_000].join(",");
        let line = format!(
            r#"{{"attention":[{rows}],"mlp_activation":[],"residual_norm_in":0,"residual_norm_out":0,"logit_lens":null}}"#
        );
        let e = serde_json::from_str::<LayerTrace>(&line)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid length 257"), "{e}");
    }
}
