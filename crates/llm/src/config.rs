//! The llama hyper-parameters, read from a GGUF file's metadata and checked against its tensors.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};

use super::error::{LlmError, Result};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LlamaConfig {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rope_dim: usize,
    pub rope_base: f32,
    pub rms_eps: f64,
    pub vocab_size: usize,
    pub context_length: usize,
}

impl LlamaConfig {
    /// Query heads per KV head (grouped-query attention).
    pub fn group_size(&self) -> usize {
        self.n_head / self.n_kv_head
    }

    /// The KV head that query head `h` reads.
    pub fn kv_head_of(&self, h: usize) -> usize {
        h / self.group_size()
    }

    /// RoPE's rotation frequency for each pair of a head's first `rope_dim` dimensions.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        (0..self.rope_dim / 2)
            .map(|i| 1.0 / self.rope_base.powf(2.0 * i as f32 / self.rope_dim as f32))
            .collect()
    }

    /// RoPE's (sin, cos) per pair at `position`, from `rope_inv_freq`.
    pub fn rope_rotation(inv_freq: &[f32], position: usize) -> impl Iterator<Item = (f32, f32)> {
        inv_freq
            .iter()
            .map(move |f| (position as f32 * f).sin_cos())
    }

    pub fn from_gguf(content: &Content) -> Result<Self> {
        let md = &content.metadata;
        let arch = get_str(md, "general.architecture")?;
        if arch != "llama" {
            return Err(LlmError::NotLlama(arch.to_string()));
        }
        let n_embd = get_usize(md, "llama.embedding_length")?;
        let n_head = get_usize(md, "llama.attention.head_count")?;
        let n_kv_head = optional(md, "llama.attention.head_count_kv", n_head, get_usize)?;
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 || n_embd % n_head != 0 {
            return Err(LlmError::Metadata {
                key: "llama.attention.head_count".into(),
                reason: format!(
                    "{n_head} heads / {n_kv_head} KV heads do not divide embedding {n_embd}"
                ),
            });
        }
        let head_dim = n_embd / n_head;
        if head_dim < 2 || !head_dim.is_multiple_of(2) {
            return Err(LlmError::Metadata {
                key: "llama.attention.head_count".into(),
                reason: format!(
                    "{n_head} heads of embedding {n_embd} give a head size of {head_dim}; rotary \
                     positions need an even size of at least 2"
                ),
            });
        }
        let rope_dim = optional(md, "llama.rope.dimension_count", head_dim, get_usize)?;
        let vocab_size = match md.get("tokenizer.ggml.tokens") {
            Some(Value::Array(tokens)) => tokens.len(),
            _ => get_usize(md, "llama.vocab_size")?,
        };
        let cfg = Self {
            n_layer: get_usize(md, "llama.block_count")?,
            n_embd,
            n_ff: get_usize(md, "llama.feed_forward_length")?,
            n_head,
            n_kv_head,
            head_dim,
            rope_dim,
            rope_base: optional(md, "llama.rope.freq_base", 10_000.0, get_f32)?,
            rms_eps: optional(md, "llama.attention.layer_norm_rms_epsilon", 1e-5, get_f32)? as f64,
            vocab_size,
            context_length: optional(md, "llama.context_length", 2048, get_usize)?,
        };
        // Each layer has 9 tensors, and the model 2 more: a block count the file's tensors
        // cannot hold is refused here, naming the first tensor it lacks.
        let have = content.tensor_infos.len();
        let need = cfg.n_layer.checked_mul(9).and_then(|n| n.checked_add(2));
        if cfg.n_layer == 0 || need.is_none_or(|need| need > have) {
            // Names are unique, so one of the first have + 1 expected is missing: bounded.
            let missing = cfg
                .expected()
                .map(|(name, _)| name)
                .find(|name| !content.tensor_infos.contains_key(name))
                .map(|name| format!(" ({name} is missing)"))
                .unwrap_or_default();
            return Err(LlmError::Metadata {
                key: "llama.block_count".into(),
                reason: format!(
                    "{} layers, but the file has {have} tensors{missing}",
                    cfg.n_layer
                ),
            });
        }
        if cfg.context_length == 0 || cfg.context_length > 1 << 20 {
            return Err(LlmError::Metadata {
                key: "llama.context_length".into(),
                reason: format!("{} positions (1 to 1,048,576 are read)", cfg.context_length),
            });
        }
        if cfg.rope_dim != cfg.head_dim {
            return Err(LlmError::Metadata {
                key: "llama.rope.dimension_count".into(),
                reason: format!(
                    "partial rotary ({} of {}) is not supported",
                    rope_dim, head_dim
                ),
            });
        }
        cfg.check_tensors(content)?;
        Ok(cfg)
    }

    /// Each tensor the forward pass reads, with the shape the metadata implies; made one at a
    /// time, so a block count is never a list of that size.
    fn expected(&self) -> impl Iterator<Item = (String, Vec<usize>)> + '_ {
        let kv = self.n_kv_head * self.head_dim;
        let (embd, ff) = (self.n_embd, self.n_ff);
        let model = [
            ("token_embd.weight".to_string(), vec![self.vocab_size, embd]),
            ("output_norm.weight".to_string(), vec![embd]),
        ];
        let layers = (0..self.n_layer).flat_map(move |i| {
            let p = format!("blk.{i}");
            [
                (format!("{p}.attn_norm.weight"), vec![embd]),
                (format!("{p}.attn_q.weight"), vec![embd, embd]),
                (format!("{p}.attn_k.weight"), vec![kv, embd]),
                (format!("{p}.attn_v.weight"), vec![kv, embd]),
                (format!("{p}.attn_output.weight"), vec![embd, embd]),
                (format!("{p}.ffn_norm.weight"), vec![embd]),
                (format!("{p}.ffn_gate.weight"), vec![ff, embd]),
                (format!("{p}.ffn_up.weight"), vec![ff, embd]),
                (format!("{p}.ffn_down.weight"), vec![embd, ff]),
            ]
        });
        model.into_iter().chain(layers)
    }

    /// Every tensor the forward pass reads must exist with the shape the metadata implies.
    fn check_tensors(&self, content: &Content) -> Result<()> {
        if let Some(out) = content.tensor_infos.get("output.weight") {
            let dims = out.shape.dims().to_vec();
            if dims != [self.vocab_size, self.n_embd] {
                return Err(LlmError::Tensor {
                    name: "output.weight".into(),
                    reason: format!(
                        "shape {dims:?}, expected {:?}",
                        [self.vocab_size, self.n_embd]
                    ),
                });
            }
        }
        for (name, shape) in self.expected() {
            let Some(info) = content.tensor_infos.get(&name) else {
                return Err(LlmError::Tensor {
                    name,
                    reason: "missing".into(),
                });
            };
            if info.shape.dims() != shape.as_slice() {
                return Err(LlmError::Tensor {
                    reason: format!("shape {:?}, expected {shape:?}", info.shape.dims()),
                    name,
                });
            }
        }
        Ok(())
    }
}

fn get<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a Value> {
    md.get(key).ok_or_else(|| LlmError::Metadata {
        key: key.into(),
        reason: "missing".into(),
    })
}

fn bad(key: &str, e: impl std::fmt::Display) -> LlmError {
    LlmError::Metadata {
        key: key.into(),
        reason: e.to_string(),
    }
}

pub(crate) fn get_str<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a str> {
    get(md, key)?
        .to_string()
        .map(String::as_str)
        .map_err(|e| bad(key, e))
}

pub(crate) fn get_usize(md: &HashMap<String, Value>, key: &str) -> Result<usize> {
    let v = get(md, key)?;
    let n = match v {
        Value::U8(x) => *x as u64,
        Value::U16(x) => *x as u64,
        Value::U32(x) => *x as u64,
        Value::U64(x) => *x,
        Value::I32(x) if *x >= 0 => *x as u64,
        Value::I64(x) if *x >= 0 => *x as u64,
        other => return Err(bad(key, format!("expected a count, found {other:?}"))),
    };
    usize::try_from(n)
        .ok()
        .filter(|n| *n > 0 && *n < (1 << 31))
        .ok_or_else(|| bad(key, format!("{n} is out of range")))
}

/// An optional key: `default` when missing. Present, it must be valid (`read` decides): quietly
/// replacing a bad value by the default hid the file's error (a KV head count of 0 became a
/// shape error elsewhere; a context length of 0 became 2048).
fn optional<T>(
    md: &HashMap<String, Value>,
    key: &str,
    default: T,
    read: fn(&HashMap<String, Value>, &str) -> Result<T>,
) -> Result<T> {
    if md.contains_key(key) {
        read(md, key)
    } else {
        Ok(default)
    }
}

fn get_f32(md: &HashMap<String, Value>, key: &str) -> Result<f32> {
    let v = get(md, key)?;
    let x = match v {
        Value::F32(x) => *x,
        Value::F64(x) => *x as f32,
        other => return Err(bad(key, format!("expected a number, found {other:?}"))),
    };
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(bad(key, format!("{x} is not a positive number")))
    }
}
