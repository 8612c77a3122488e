//! `Trace`: every internal of one forward step that the LLM scene draws, recorded for the newest
//! token. Serialised as one JSON object per step by `samemath trace` (schema in README).

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
    pub kv_head_of_head: Vec<usize>,
    pub layers: Vec<LayerTrace>,
    /// The most likely next tokens, best first.
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
