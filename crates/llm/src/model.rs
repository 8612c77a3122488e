//! The instrumented llama forward pass (SmolLM2 and other llama-architecture GGUF files).
//!
//! Written in candle's style: config (`config.rs`), private layers with `load` and `forward`, then
//! the public model. candle-core reads the GGUF file and its quantized tensors; Q4_1 and Q8_0
//! matrices are multiplied by our kernels (`quant.rs`), other formats by candle's `QMatMul`.
//! The small per-token work (RMSNorm, RoPE, attention over the KV cache, SiLU) runs on plain
//! f32 slices: as candle tensor ops it cost more than the matrix products (one allocation and
//! dispatch each, 30 layers x ~25 ops per token). The embedding table doubles as the output head
//! when the file has no `output.weight` (tied embeddings). RoPE is the interleaved (GGML llama)
//! variant. When asked, each step records a [`Trace`] of the newest token: attention per head,
//! MLP activations, residual norms, the logit lens and the top-k next tokens.

use std::borrow::Cow;
use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use rayon::prelude::*;

use super::attend;
pub use super::backend::ForwardOutput;
use super::backend::{Backend, Cache, CacheStore};
use super::config::LlamaConfig;
use super::error::{LlmError, Result};
use super::quant::{BlockType, Q8Vec, QMatrix, quantize};
/// Where the callers of `model::top_k` find it (it lives with the sampling).
pub use super::sampling::top_k;
use super::tokenizer::LlmTokenizer;
use super::trace::{LayerTrace, RecordOptions, TokenInfo, TokenProb, Trace};

/// A weight matrix: Q4_1 and Q8_0 ones use our kernels (`quant.rs`), everything else candle's.
enum Linear {
    Candle(QMatMul),
    Ours(Arc<QMatrix>),
}

impl Linear {
    /// `y = W x` for each of the `n` rows of `xs` (row-major), giving `n x rows`.
    fn forward(&self, xs: &[f32], n: usize) -> Result<Vec<f32>> {
        match self {
            Linear::Ours(m) => Ok(m.matmul(xs, n)),
            Linear::Candle(m) => {
                let x = Tensor::from_slice(xs, (n, xs.len() / n.max(1)), &Device::Cpu)?;
                Ok(m.forward(&x)?.flatten_all()?.to_vec1::<f32>()?)
            }
        }
    }
}

/// The token embedding table: our repacked blocks, or candle's tensor for other formats.
enum Embedding {
    Candle(Arc<QTensor>),
    Ours(Arc<QMatrix>),
}

/// Matrices that read the same input (q/k/v; gate/up): stacked into one matrix when our kernels
/// take their format, so one pass over the thread pool computes all of them.
enum Stacked {
    One(Arc<QMatrix>, Vec<usize>),
    Many(Vec<Linear>),
}

impl Stacked {
    fn new(parts: Vec<Linear>) -> Result<Stacked> {
        let ours: Vec<&QMatrix> = parts
            .iter()
            .filter_map(|l| match l {
                Linear::Ours(m) => Some(&**m),
                Linear::Candle(_) => None,
            })
            .collect();
        if ours.len() == parts.len()
            && let Some(m) = QMatrix::stack(&ours)
        {
            let widths = ours.iter().map(|m| m.rows).collect();
            return Ok(Stacked::One(Arc::new(m), widths));
        }
        Ok(Stacked::Many(parts))
    }

    /// Each part's product, `n x rows_j`, in order.
    fn forward(&self, x: &[f32], n: usize) -> Result<Vec<Vec<f32>>> {
        match self {
            Stacked::Many(parts) => parts.iter().map(|l| l.forward(x, n)).collect(),
            Stacked::One(m, widths) => {
                let y = m.matmul(x, n);
                let mut out: Vec<Vec<f32>> =
                    widths.iter().map(|w| Vec::with_capacity(n * w)).collect();
                for row in y.chunks_exact(m.rows) {
                    let mut at = 0;
                    for (o, w) in out.iter_mut().zip(widths) {
                        o.extend_from_slice(&row[at..at + w]);
                        at += w;
                    }
                }
                Ok(out)
            }
        }
    }
}

struct Attention {
    /// q, k, v.
    qkv: Stacked,
    wo: Linear,
}

struct Mlp {
    /// gate, up.
    gate_up: Stacked,
    down: Linear,
}

/// RMSNorm with its learned gain: `x / sqrt(mean(x^2) + eps) * w`.
struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    ffn_norm: RmsNorm,
    mlp: Mlp,
}

/// Keys and values of every position seen so far, per layer: the keys in the attention's
/// tiles (`attend::TiledKeys`), the values `[position][kv head][head_dim]`.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<(attend::TiledKeys, Vec<f32>)>,
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
        for (k, v) in &mut self.layers {
            k.clear();
            v.clear();
        }
        self.len = 0;
    }
}

pub struct Model {
    pub config: LlamaConfig,
    embedding: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    head: Linear,
    /// RoPE: the rotation frequency of each pair of a head's dimensions.
    inv_freq: Vec<f32>,
    /// Length of each embedding row, computed on first use (nearest neighbours).
    row_norms: std::sync::OnceLock<Vec<f32>>,
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

/// Which kernels multiply the Q4_1 and Q8_0 matrices (the bench measures both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Q4Kernel {
    /// Ours: the input quantized to Q8_1 once, integer block sums, AVX2 (`quant.rs`).
    #[default]
    Samemath,
    /// candle's `QMatMul` (a scalar fallback for Q4_1 on the CPU; vectorised Q8_0).
    Candle,
}

/// Tensor `name` of the file, as candle reads it (on the CPU): a clear error when it is missing
/// or cut short. Both backends load their weights through this.
pub(crate) fn read_tensor<R: Read + Seek>(
    content: &Content,
    reader: &mut R,
    name: &str,
) -> Result<QTensor> {
    content
        .tensor(reader, name, &Device::Cpu)
        .map_err(|e| LlmError::Tensor {
            name: name.into(),
            reason: format!("cannot be read ({e}); is the file truncated?"),
        })
}

impl<R: Read + Seek> Loader<'_, R> {
    fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        read_tensor(self.content, self.reader, name)
    }

    fn matmul(&mut self, name: &str) -> Result<Linear> {
        let t = self.qtensor(name)?;
        Ok(self.ours(t)?.map_or_else(
            |t| QMatMul::from_qtensor(t).map(Linear::Candle),
            |m| Ok(Linear::Ours(Arc::new(m))),
        )?)
    }

    /// Repack a Q4_1 or Q8_0 matrix for our kernels; other formats come back unchanged.
    fn ours(&self, t: QTensor) -> Result<std::result::Result<QMatrix, QTensor>> {
        let ty = match t.dtype() {
            GgmlDType::Q4_1 => BlockType::Q4_1,
            GgmlDType::Q8_0 => BlockType::Q8_0,
            _ => return Ok(Err(t)),
        };
        if self.kernel != Q4Kernel::Samemath {
            return Ok(Err(t));
        }
        let (rows, cols) = t.shape().dims2()?;
        Ok(Ok(QMatrix::from_gguf(ty, rows, cols, &t.data()?)?))
    }

    fn norm(&mut self, name: &str, eps: f64) -> Result<RmsNorm> {
        let weight = self.qtensor(name)?.dequantize(self.device)?;
        Ok(RmsNorm {
            weight: weight.flatten_all()?.to_vec1::<f32>()?,
            eps: eps as f32,
        })
    }
}

impl Model {
    /// Load a llama-architecture GGUF file: its model and its tokenizer.
    pub fn load(path: &Path) -> Result<(Model, LlmTokenizer)> {
        Self::load_with(path, Q4Kernel::default())
    }

    pub fn load_with(path: &Path, kernel: Q4Kernel) -> Result<(Model, LlmTokenizer)> {
        let mut file = crate::gguf_check::open_model(path)?;
        Self::read(&mut file, path, kernel)
    }

    /// Load from bytes in memory (the browser build: the page downloads the file); `name` for
    /// messages.
    pub fn from_bytes(bytes: &[u8], name: &Path) -> Result<(Model, LlmTokenizer)> {
        Self::read(&mut std::io::Cursor::new(bytes), name, Q4Kernel::default())
    }

    fn read<R: Read + Seek>(
        reader: &mut R,
        path: &Path,
        kernel: Q4Kernel,
    ) -> Result<(Model, LlmTokenizer)> {
        let content = crate::gguf_check::read_content(reader, path)?;
        let model = Self::from_content(&content, reader, kernel)?;
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
        let table = ld.qtensor("token_embd.weight")?;
        let (embedding, tied_head) = match ld.ours(table)? {
            Ok(m) => {
                let m = Arc::new(m);
                (Embedding::Ours(m.clone()), Linear::Ours(m))
            }
            Err(t) => {
                let t = Arc::new(t);
                (
                    Embedding::Candle(t.clone()),
                    Linear::Candle(QMatMul::from_arc(t)?),
                )
            }
        };
        let head = if content.tensor_infos.contains_key("output.weight") {
            ld.matmul("output.weight")?
        } else {
            tied_head
        };
        let norm = ld.norm("output_norm.weight", config.rms_eps)?;
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = format!("blk.{i}");
            blocks.push(Block {
                attn_norm: ld.norm(&format!("{p}.attn_norm.weight"), config.rms_eps)?,
                attn: Attention {
                    qkv: Stacked::new(vec![
                        ld.matmul(&format!("{p}.attn_q.weight"))?,
                        ld.matmul(&format!("{p}.attn_k.weight"))?,
                        ld.matmul(&format!("{p}.attn_v.weight"))?,
                    ])?,
                    wo: ld.matmul(&format!("{p}.attn_output.weight"))?,
                },
                ffn_norm: ld.norm(&format!("{p}.ffn_norm.weight"), config.rms_eps)?,
                mlp: Mlp {
                    gate_up: Stacked::new(vec![
                        ld.matmul(&format!("{p}.ffn_gate.weight"))?,
                        ld.matmul(&format!("{p}.ffn_up.weight"))?,
                    ])?,
                    down: ld.matmul(&format!("{p}.ffn_down.weight"))?,
                },
            });
        }
        let inv_freq = config.rope_inv_freq();
        Ok(Model {
            config,
            embedding,
            blocks,
            norm,
            head,
            inv_freq,
            row_norms: Default::default(),
            device,
        })
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: vec![Default::default(); self.config.n_layer],
            len: 0,
        }
    }

    /// One embedding row, dequantized from its GGUF blocks.
    pub fn embedding_row(&self, id: u32) -> Result<Vec<f32>> {
        let outside = || LlmError::Tensor {
            name: "token_embd.weight".into(),
            reason: format!("token {id} is outside the table"),
        };
        let table = match &self.embedding {
            Embedding::Ours(m) if (id as usize) < m.rows => {
                return Ok(m.dequantize_row(id as usize));
            }
            Embedding::Ours(_) => return Err(outside()),
            Embedding::Candle(t) => t,
        };
        let dtype = table.dtype();
        let n = self.config.n_embd;
        let row_bytes = n / dtype.block_size() * dtype.type_size();
        let data = table.data()?;
        let start = id as usize * row_bytes;
        let bytes = data.get(start..start + row_bytes).ok_or_else(outside)?;
        let storage = QStorage::from_data(Cow::Borrowed(bytes), &self.device, dtype)?;
        let row = QTensor::new(storage, (n,))?.dequantize(&self.device)?;
        Ok(row.to_vec1::<f32>()?)
    }

    /// Row `neuron` of layer `layer`'s gate and up matrices, dequantized: the weights whose dot
    /// products with the MLP input make that neuron's activation. `None` when out of range or
    /// when the file's format is one our kernels do not hold (then candle has the blocks).
    pub fn mlp_rows(&self, layer: usize, neuron: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        let n_ff = self.config.n_ff;
        if neuron >= n_ff {
            return None;
        }
        match &self.blocks.get(layer)?.mlp.gate_up {
            Stacked::One(m, _) => Some((m.dequantize_row(neuron), m.dequantize_row(n_ff + neuron))),
            Stacked::Many(parts) => match (&parts[0], &parts[1]) {
                (Linear::Ours(g), Linear::Ours(u)) => {
                    Some((g.dequantize_row(neuron), u.dequantize_row(neuron)))
                }
                _ => None,
            },
        }
    }

    /// The `k` vocabulary tokens whose embedding rows point most nearly the way `v` does
    /// (cosine similarity), best first. `None` if the table is in a format our kernels do not
    /// hold.
    pub fn nearest_tokens(&self, v: &[f32], k: usize) -> Option<Vec<(u32, f32)>> {
        let Embedding::Ours(table) = &self.embedding else {
            return None;
        };
        if v.len() != table.cols {
            return None;
        }
        let norms = self.row_norms.get_or_init(|| {
            (0..table.rows)
                .into_par_iter()
                .map(|r| l2(&table.dequantize_row(r)))
                .collect()
        });
        let v_norm = l2(v).max(1e-12);
        let dots = table.matmul(v, 1);
        let cos: Vec<f32> = dots
            .iter()
            .zip(norms)
            .map(|(d, n)| d / (n.max(1e-12) * v_norm))
            .collect();
        Some(
            top_k(&cos, k)
                .into_iter()
                .map(|(id, c, _)| (id, c))
                .collect(),
        )
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
        super::backend::check_span(n, pos, cfg.context_length)?;
        if cache.layers.len() != cfg.n_layer {
            *cache = self.new_cache();
        }
        let rows = tokens
            .iter()
            .map(|&t| self.embedding_row(t))
            .collect::<Result<Vec<_>>>()?;
        let embedding_last = rows[n - 1].clone();
        let mut x = rows.concat();
        let last = |v: &[f32]| {
            let w = v.len() / n;
            v[(n - 1) * w..].to_vec()
        };
        let mut layers = Vec::new();
        let mut lens_rows: Vec<Vec<f32>> = Vec::new();
        let rotations = self.rotations(pos..pos + n);
        let mut run_layers = || -> Result<()> {
            for (block, kv) in self.blocks.iter().zip(cache.layers.iter_mut()) {
                let resid_in = record.enabled.then(|| last(&x));
                let h = block.attn_norm.forward(&x);
                let (y, att) =
                    block
                        .attn
                        .forward(self, &h, n, pos, &rotations, kv, record.enabled)?;
                add_assign(&mut x, &y);
                let h = block.ffn_norm.forward(&x);
                let act = block.mlp.activation(&h, n)?;
                let act_last = record.enabled.then(|| last(&act));
                let input_last = if record.enabled { last(&h) } else { Vec::new() };
                add_assign(&mut x, &block.mlp.down.forward(&act, n)?);
                if let (Some(resid_in), Some(act_last), Some(att)) = (resid_in, act_last, att) {
                    let resid_out = last(&x);
                    layers.push(LayerTrace {
                        attention: att,
                        mlp_activation: act_last,
                        mlp_input: input_last,
                        residual_norm_in: l2(&resid_in),
                        residual_norm_out: l2(&resid_out),
                        logit_lens: None,
                    });
                    if record.logit_lens && tokenizer.is_some() {
                        lens_rows.push(resid_out);
                    }
                }
            }
            Ok(())
        };
        if let Err(e) = run_layers() {
            // A layer failed part-way: drop this call's positions so the cache stays whole.
            cache.truncate(pos, cfg);
            return Err(e);
        }
        cache.len += n;
        // The logit lens and the real head in one product: the head's weights are read once.
        lens_rows.push(last(&x));
        let logits = match (&self.head, tokenizer) {
            // Our kernels: each layer's top token and its softmax kept as the rows stream by.
            // The last layer's residual is the final row itself: its lens is the real head's
            // answer, read from the logits (so the two always agree).
            (Linear::Ours(head), Some(tok))
                if lens_rows.len() > 1 && lens_rows.len() == layers.len() + 1 =>
            {
                // The rows of layers 0..n-2, then the final row (layer n-1's residual, which
                // `lens_rows` holds twice, is normed and quantized once).
                let (lens, ends) = lens_rows.split_at(lens_rows.len() - 2);
                let normed = self.norm.forward(&lens.concat());
                let q: Vec<Q8Vec> = normed.chunks_exact(cfg.n_embd).map(quantize).collect();
                let final_row = quantize(&self.norm.forward(&ends[1]));
                let mut logits = vec![0f32; head.rows];
                let tops = head.head_with_lens(&q, &final_row, &mut logits);
                let logits = Logits(logits);
                for (layer, top) in layers.iter_mut().zip(tops) {
                    layer.logit_lens = Some(TokenProb {
                        id: top.row,
                        piece: tok.piece(top.row),
                        logit: top.max,
                        prob: top.prob(),
                    });
                }
                if let Some(layer) = layers.last_mut() {
                    layer.logit_lens = logits.top(1, tok).pop();
                }
                logits
            }
            _ => {
                let mut all = self.head_logits(&lens_rows)?;
                let logits = all.pop().unwrap_or(Logits(Vec::new()));
                if let Some(tok) = tokenizer {
                    // The softmax over the vocabulary for each layer's top token.
                    layers
                        .par_iter_mut()
                        .zip(all.par_iter())
                        .for_each(|(layer, lens)| layer.logit_lens = lens.top(1, tok).pop());
                }
                logits
            }
        };
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
        let x = self.norm.forward(&residuals.concat());
        let logits = self.head.forward(&x, residuals.len())?;
        Ok(logits
            .chunks_exact(self.config.vocab_size)
            .map(|l| Logits(l.to_vec()))
            .collect())
    }

    /// RoPE's (sin, cos) for each pair of a head's dimensions at `positions`: one row of
    /// `rope_dim / 2` per position, computed once per forward pass for every layer and head.
    fn rotations(&self, positions: std::ops::Range<usize>) -> Vec<(f32, f32)> {
        positions
            .flat_map(|p| LlamaConfig::rope_rotation(&self.inv_freq, p))
            .collect()
    }
}

/// Rotate consecutive pairs of each `head_dim`-wide head of `x` by one position's `rotation`.
pub fn rope(x: &mut [f32], head_dim: usize, rotation: &[(f32, f32)]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, (sin, cos)) in head.chunks_exact_mut(2).zip(rotation) {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos - b * sin;
            pair[1] = a * sin + b * cos;
        }
    }
}

impl KvCache {
    fn truncate(&mut self, len: usize, cfg: &LlamaConfig) {
        let width = cfg.n_kv_head * cfg.head_dim;
        for (k, v) in &mut self.layers {
            k.truncate(len, cfg.n_kv_head, cfg.head_dim);
            v.truncate(len * width);
        }
        self.len = len;
    }
}

impl RmsNorm {
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let d = self.weight.len();
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(d) {
            let mean = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
            let scale = 1.0 / (mean + self.eps).sqrt();
            out.extend(row.iter().zip(&self.weight).map(|(v, w)| v * scale * w));
        }
        out
    }
}

impl Attention {
    /// Causal self-attention of `n` new rows at positions `pos..pos + n` (`rotations`: their
    /// RoPE angles), extending the cache; also returns the last row's attention probabilities
    /// per head when recording.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        model: &Model,
        x: &[f32],
        n: usize,
        pos: usize,
        rotations: &[(f32, f32)],
        kv: &mut (attend::TiledKeys, Vec<f32>),
        record: bool,
    ) -> Result<(Vec<f32>, Option<Vec<Vec<f32>>>)> {
        let cfg = &model.config;
        let (hd, nh, nkv) = (cfg.head_dim, cfg.n_head, cfg.n_kv_head);
        let mut qkv = self.qkv.forward(x, n)?.into_iter();
        let (Some(mut q), Some(mut k), Some(v)) = (qkv.next(), qkv.next(), qkv.next()) else {
            return Err(LlmError::Tensor {
                name: "attention".into(),
                reason: "q, k and v projections expected".into(),
            });
        };
        for (i, rotation) in rotations.chunks_exact(rotations.len() / n).enumerate() {
            rope(&mut q[i * nh * hd..(i + 1) * nh * hd], hd, rotation);
            rope(&mut k[i * nkv * hd..(i + 1) * nkv * hd], hd, rotation);
        }
        kv.0.append(&k, pos, nkv, hd);
        kv.1.extend_from_slice(&v);
        let (keys, values) = (&kv.0, &kv.1);
        let scale = 1.0 / (hd as f32).sqrt();
        // In tiles: each key read once per block of rows. Every row, a prompt's or a single
        // decoded token's, goes through the same tiles in the same order, so a prompt read at
        // once gives bit for bit what it gives token by token.
        let shape = attend::Shape {
            n,
            pos,
            heads: nh,
            group: cfg.group_size(),
            dim: hd,
        };
        let y = attend::tiled(&q, keys, values, shape, scale);
        // When recording: the last row's probabilities over its positions, per head.
        let probs_of = |h: usize| -> Vec<f32> {
            let (i, g) = (n - 1, cfg.kv_head_of(h));
            let qh = &q[(i * nh + h) * hd..(i * nh + h + 1) * hd];
            let mut probs = keys.scores(qh, g, nkv, pos + n);
            probs.iter_mut().for_each(|p| *p *= scale);
            softmax(&mut probs);
            probs
        };
        // A head a task only where the context is long enough to pay for waking the pool.
        let min_len = if pos + n < 2048 { nh } else { 1 };
        let recorded = record.then(|| {
            (0..nh)
                .into_par_iter()
                .with_min_len(min_len)
                .map(probs_of)
                .collect()
        });
        Ok((self.wo.forward(&y, n)?, recorded))
    }
}

impl Mlp {
    /// `silu(gate · x) * (up · x)`.
    fn activation(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let gu = self.gate_up.forward(x, n)?;
        let (g, u) = (&gu[0], &gu[1]);
        Ok(g.iter().zip(u).map(|(g, u)| g * sigmoid(*g) * u).collect())
    }
}

/// 1 / (1 + e^-x) from e^-|x| (attend's exponential, which takes x <= 0), branch-free so that
/// an MLP's worth of them vectorises.
fn sigmoid(x: f32) -> f32 {
    let e = attend::exp(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 { s } else { e * s }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// In place, numerically stable.
pub fn softmax(v: &mut [f32]) {
    // In lanes and with attend's exponential, so each pass vectorises.
    let max = attend::lanes_max(v);
    v.iter_mut().for_each(|x| *x = attend::exp(*x - max));
    let sum = attend::lanes_sum(v);
    v.iter_mut().for_each(|x| *x /= sum);
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

/// Euclidean length.
pub(crate) fn l2(v: &[f32]) -> f32 {
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

impl CacheStore for KvCache {
    fn len(&self) -> usize {
        KvCache::len(self)
    }
}

impl Backend for Model {
    fn config(&self) -> &LlamaConfig {
        &self.config
    }

    fn new_cache(&self) -> Result<Cache> {
        Ok(Cache::new(Model::new_cache(self)))
    }

    fn forward(
        &self,
        cache: &mut Cache,
        tokens: &[u32],
        record: RecordOptions,
        tokenizer: Option<&LlmTokenizer>,
    ) -> Result<ForwardOutput> {
        let kv = cache.get_mut::<KvCache>("the CPU engine")?;
        Model::forward(self, kv, tokens, record, tokenizer)
    }

    fn describe(&self) -> String {
        format!("CPU ({} threads)", rayon::current_num_threads())
    }
}
