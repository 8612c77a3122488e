//! The instrumented llama forward pass (SmolLM2 and other llama-architecture GGUF files).
//!
//! Written in candle's style: config (`config.rs`), private layers with `load` and `forward`, then
//! the public model. Weights stay quantized (`QMatMul` over the GGUF blocks); the embedding
//! table doubles as the output head when the file has no `output.weight` (tied embeddings), and
//! embedding rows are dequantized one at a time. RoPE is the interleaved (GGML llama) variant.
//! When asked, each step records a [`Trace`] of the newest token: attention per head, MLP
//! activations, residual norms, the logit lens and the top-k next tokens.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_transformers::quantized_nn::RmsNorm;

use super::config::LlamaConfig;
use super::error::{LlmError, Result};
use super::q4_1::Q4_1Matrix;
use super::tokenizer::LlmTokenizer;
use super::trace::{LayerTrace, RecordOptions, TokenInfo, TokenProb, Trace};

/// A weight matrix: Q4_1 ones use our kernel (`q4_1.rs`), everything else candle's.
enum Linear {
    Candle(QMatMul),
    Q4_1(Q4_1Matrix),
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Candle(m) => Ok(m.forward(x)?),
            Linear::Q4_1(m) => {
                let (b, n, k) = x.dims3()?;
                if k != m.cols {
                    return Err(LlmError::Tensor {
                        name: "Q4_1 matrix".into(),
                        reason: format!("input width {k}, expected {}", m.cols),
                    });
                }
                let xs = x.flatten_all()?.to_vec1::<f32>()?;
                let y = m.matmul(&xs, b * n);
                Ok(Tensor::from_vec(y, (b, n, m.rows), x.device())?)
            }
        }
    }
}

struct Attention {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    ffn_norm: RmsNorm,
    mlp: Mlp,
}

/// Keys and values of every position seen so far, per layer.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.layers.clear();
        self.len = 0;
    }
}

/// What a forward pass returns: the next-token logits of the last position, and the trace.
#[derive(Debug)]
pub struct ForwardOutput {
    pub logits: Vec<f32>,
    pub trace: Option<Trace>,
}

pub struct Model {
    pub config: LlamaConfig,
    embedding: Arc<QTensor>,
    blocks: Vec<Block>,
    norm: RmsNorm,
    head: QMatMul,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

struct Loader<'a, R> {
    content: &'a Content,
    reader: &'a mut R,
    device: &'a Device,
    kernel: Q4Kernel,
}

/// Which kernel multiplies the Q4_1 matrices (the bench measures both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Q4Kernel {
    /// Ours: the input quantized to Q8_1 once, integer block sums, vectorised (`q4_1.rs`).
    #[default]
    Samemath,
    /// candle's `QMatMul` (a scalar fallback for Q4_1 on the CPU).
    Candle,
}

impl<R: Read + Seek> Loader<'_, R> {
    fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        self.content
            .tensor(self.reader, name, self.device)
            .map_err(|e| LlmError::Tensor {
                name: name.into(),
                reason: format!("cannot be read ({e}); is the file truncated?"),
            })
    }

    fn matmul(&mut self, name: &str) -> Result<Linear> {
        let t = self.qtensor(name)?;
        if t.dtype() == GgmlDType::Q4_1 && self.kernel == Q4Kernel::Samemath {
            let (rows, cols) = t.shape().dims2()?;
            return Ok(Linear::Q4_1(Q4_1Matrix::new(
                rows,
                cols,
                t.data()?.into_owned(),
            )?));
        }
        Ok(Linear::Candle(QMatMul::from_qtensor(t)?))
    }

    fn norm(&mut self, name: &str, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm::from_qtensor(self.qtensor(name)?, eps)?)
    }
}

impl Model {
    /// Load a llama-architecture GGUF file: its model and its tokenizer.
    pub fn load(path: &Path) -> Result<(Model, LlmTokenizer)> {
        Self::load_with(path, Q4Kernel::default())
    }

    pub fn load_with(path: &Path, kernel: Q4Kernel) -> Result<(Model, LlmTokenizer)> {
        let io = |source| LlmError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let content = Content::read(&mut file).map_err(|e| LlmError::NotGguf {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let model = Self::from_content(&content, &mut file, kernel)?;
        let tokenizer = LlmTokenizer::from_gguf(&content)?;
        if tokenizer.vocab_size() != model.config.vocab_size {
            return Err(LlmError::Tensor {
                name: "token_embd.weight".into(),
                reason: format!(
                    "{} rows but the tokenizer has {} tokens",
                    model.config.vocab_size,
                    tokenizer.vocab_size()
                ),
            });
        }
        Ok((model, tokenizer))
    }

    pub fn from_content<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        kernel: Q4Kernel,
    ) -> Result<Model> {
        let config = LlamaConfig::from_gguf(content)?;
        let device = Device::Cpu;
        let mut ld = Loader {
            content,
            reader,
            device: &device,
            kernel,
        };
        let embedding = Arc::new(ld.qtensor("token_embd.weight")?);
        let head = if content.tensor_infos.contains_key("output.weight") {
            QMatMul::from_qtensor(ld.qtensor("output.weight")?)?
        } else {
            QMatMul::from_arc(embedding.clone())?
        };
        let norm = ld.norm("output_norm.weight", config.rms_eps)?;
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = format!("blk.{i}");
            blocks.push(Block {
                attn_norm: ld.norm(&format!("{p}.attn_norm.weight"), config.rms_eps)?,
                attn: Attention {
                    wq: ld.matmul(&format!("{p}.attn_q.weight"))?,
                    wk: ld.matmul(&format!("{p}.attn_k.weight"))?,
                    wv: ld.matmul(&format!("{p}.attn_v.weight"))?,
                    wo: ld.matmul(&format!("{p}.attn_output.weight"))?,
                },
                ffn_norm: ld.norm(&format!("{p}.ffn_norm.weight"), config.rms_eps)?,
                mlp: Mlp {
                    gate: ld.matmul(&format!("{p}.ffn_gate.weight"))?,
                    up: ld.matmul(&format!("{p}.ffn_up.weight"))?,
                    down: ld.matmul(&format!("{p}.ffn_down.weight"))?,
                },
            });
        }
        let (cos, sin) = rope_tables(&config, &device)?;
        Ok(Model {
            config,
            embedding,
            blocks,
            norm,
            head,
            cos,
            sin,
            device,
        })
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: vec![None; self.config.n_layer],
            len: 0,
        }
    }

    /// One embedding row, dequantized from its GGUF blocks.
    pub fn embedding_row(&self, id: u32) -> Result<Vec<f32>> {
        let dtype = self.embedding.dtype();
        let n = self.config.n_embd;
        let row_bytes = n / dtype.block_size() * dtype.type_size();
        let data = self.embedding.data()?;
        let start = id as usize * row_bytes;
        let bytes = data
            .get(start..start + row_bytes)
            .ok_or_else(|| LlmError::Tensor {
                name: "token_embd.weight".into(),
                reason: format!("token {id} is outside the table"),
            })?;
        let storage = QStorage::from_data(Cow::Borrowed(bytes), &self.device, dtype)?;
        let row = QTensor::new(storage, (n,))?.dequantize(&self.device)?;
        Ok(row.to_vec1::<f32>()?)
    }

    /// Run `tokens` (at positions `cache.len()..`) through the model, extending the cache.
    /// Returns the logits after the last token and, if asked, its trace.
    pub fn forward(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        record: RecordOptions,
        tokenizer: Option<&LlmTokenizer>,
    ) -> Result<ForwardOutput> {
        let cfg = &self.config;
        let (n, pos) = (tokens.len(), cache.len);
        if n == 0 {
            return Err(LlmError::EmptyPrompt);
        }
        if pos + n > cfg.context_length {
            return Err(LlmError::PromptTooLong {
                tokens: pos + n,
                context: cfg.context_length,
            });
        }
        if cache.layers.len() != cfg.n_layer {
            cache.layers = vec![None; cfg.n_layer];
        }
        let rows = tokens
            .iter()
            .map(|&t| self.embedding_row(t))
            .collect::<Result<Vec<_>>>()?;
        let embedding_last = rows[n - 1].clone();
        let mut x = Tensor::from_vec(rows.concat(), (1, n, cfg.n_embd), &self.device)?;
        let mask = (n > 1)
            .then(|| causal_mask(n, pos, &self.device))
            .transpose()?;
        let cos = self.cos.narrow(0, pos, n)?;
        let sin = self.sin.narrow(0, pos, n)?;
        let mut layers = Vec::new();
        let mut lens_rows: Vec<Vec<f32>> = Vec::new();
        for (block, kv) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let resid_in = record.enabled.then(|| last_row(&x)).transpose()?;
            let h = block.attn_norm.forward(&x)?;
            let (y, att) =
                block
                    .attn
                    .forward(cfg, &h, &cos, &sin, mask.as_ref(), kv, record.enabled)?;
            x = (x + y)?;
            let h = block.ffn_norm.forward(&x)?;
            let act = block.mlp.activation(&h)?;
            let act_last = record.enabled.then(|| last_row(&act)).transpose()?;
            x = (x + block.mlp.down.forward(&act)?)?;
            if let (Some(resid_in), Some(act_last), Some(att)) = (resid_in, act_last, att) {
                let resid_out = last_row(&x)?;
                layers.push(LayerTrace {
                    attention: att,
                    mlp_activation: act_last,
                    residual_norm_in: l2(&resid_in),
                    residual_norm_out: l2(&resid_out),
                    logit_lens: None,
                });
                if record.logit_lens && tokenizer.is_some() {
                    lens_rows.push(resid_out);
                }
            }
        }
        cache.len += n;
        // The logit lens and the real head in one product: the head's weights are read once.
        lens_rows.push(last_row(&x)?);
        let mut all = self.head_logits(&lens_rows)?;
        let logits = all.pop().unwrap_or(Logits(Vec::new()));
        if let Some(tok) = tokenizer {
            for (layer, lens) in layers.iter_mut().zip(&all) {
                layer.logit_lens = lens.top(1, tok).pop();
            }
        }
        let trace = record.enabled.then(|| Trace {
            position: pos + n - 1,
            token: TokenInfo {
                id: tokens[n - 1],
                piece: tokenizer
                    .map(|t| t.piece(tokens[n - 1]))
                    .unwrap_or_default(),
            },
            embedding: embedding_last,
            kv_head_of_head: (0..cfg.n_head).map(|h| cfg.kv_head_of(h)).collect(),
            layers,
            top_k: tokenizer
                .map(|t| logits.top(record.top_k, t))
                .unwrap_or_default(),
        });
        Ok(ForwardOutput {
            logits: logits.0,
            trace,
        })
    }

    /// Final RMSNorm then the output head, for each residual vector.
    fn head_logits(&self, residuals: &[Vec<f32>]) -> Result<Vec<Logits>> {
        let d = self.config.n_embd;
        let x = Tensor::from_vec(residuals.concat(), (residuals.len(), d), &self.device)?;
        let logits = self.head.forward(&self.norm.forward(&x)?)?;
        Ok(logits.to_vec2::<f32>()?.into_iter().map(Logits).collect())
    }
}

impl Attention {
    /// Self-attention with the KV cache; also returns the last row's attention per head.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        cfg: &LlamaConfig,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        kv: &mut Option<(Tensor, Tensor)>,
        record: bool,
    ) -> Result<(Tensor, Option<Vec<Vec<f32>>>)> {
        let (b, n, _) = x.dims3()?;
        let heads = |t: Tensor, count: usize| -> candle_core::Result<Tensor> {
            t.reshape((b, n, count, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.wq.forward(x)?, cfg.n_head)?;
        let k = heads(self.wk.forward(x)?, cfg.n_kv_head)?;
        let v = heads(self.wv.forward(x)?, cfg.n_kv_head)?;
        let q = candle_nn::rotary_emb::rope_i(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope_i(&k, cos, sin)?;
        let (k, v) = match kv.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        *kv = Some((k.clone(), v.clone()));
        let k = candle_transformers::utils::repeat_kv(k, cfg.group_size())?.contiguous()?;
        let v = candle_transformers::utils::repeat_kv(v, cfg.group_size())?.contiguous()?;
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let recorded = if record {
            Some(probs.i((0, .., n - 1, ..))?.to_vec2::<f32>()?)
        } else {
            None
        };
        let y = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, n, cfg.n_embd))?;
        Ok((self.wo.forward(&y)?, recorded))
    }
}

impl Mlp {
    /// `silu(gate · x) * (up · x)`.
    fn activation(&self, x: &Tensor) -> Result<Tensor> {
        let g = candle_nn::ops::silu(&self.gate.forward(x)?)?;
        Ok((g * self.up.forward(x)?)?)
    }
}

/// Logits over the vocabulary.
#[derive(Debug, Clone)]
pub struct Logits(pub Vec<f32>);

impl Logits {
    /// The `k` most likely tokens with their temperature-1 probabilities, best first.
    pub fn top(&self, k: usize, tokenizer: &LlmTokenizer) -> Vec<TokenProb> {
        top_k(&self.0, k)
            .into_iter()
            .map(|(id, logit, prob)| TokenProb {
                id,
                piece: tokenizer.piece(id),
                logit,
                prob,
            })
            .collect()
    }
}

/// Indices, logits and softmax probabilities of the `k` largest logits, best first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
    idx.select_nth_unstable_by(k - 1, cmp);
    idx.truncate(k);
    idx.sort_by(cmp);
    idx.into_iter()
        .map(|i| {
            let l = logits[i as usize];
            (i, l, (l - max).exp() / sum)
        })
        .collect()
}

fn rope_tables(cfg: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.rope_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / cfg.rope_base.powf(2.0 * i as f32 / cfg.rope_dim as f32))
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let t = Tensor::arange(0u32, cfg.context_length as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((cfg.context_length, 1))?;
    let freqs = t.matmul(&inv_freq)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// `-inf` above the diagonal, offset by the positions already in the cache.
fn causal_mask(n: usize, pos: usize, device: &Device) -> Result<Tensor> {
    let total = pos + n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..total).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(mask, (n, total), device)?)
}

fn last_row(x: &Tensor) -> Result<Vec<f32>> {
    let (_, n, _) = x.dims3()?;
    Ok(x.i((0, n - 1))?.to_vec1::<f32>()?)
}

fn l2(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// Numerically, the index of the largest logit (ties: lowest index).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, l) in logits.iter().enumerate() {
        if *l > logits[best] {
            best = i;
        }
    }
    best as u32
}
