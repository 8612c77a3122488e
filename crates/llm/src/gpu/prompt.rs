//! What a prompt's batches run on: their buffers and bind groups (`prefill.rs` records them). A
//! prompt is read up to [`BATCH`] tokens in one pass of nine dispatches per layer, instead of a
//! pass per token. The products are matrix x matrix (`matmul.wgsl`:
//! each weight decoded once for eight tokens); the batch's keys and values go into the cache
//! first (`store_rows`), then every token attends over it (`rows`, one workgroup per head and
//! token). Recording, the prompt's tokens before the last are batched and the last runs as a
//! decode step, whose numbers are the trace; with recording off (the app's and the server's
//! prompt slices, the command line) the last batch ends with the final norm and the head on its
//! last row, so a prompt of up to a batch is one pass. Each token's numbers are the ones the
//! token-by-token pass gives it (the kernels keep the mat-vec's and attention's order of
//! operations; the engine tests compare the two, bit for bit).

use super::kernels::{
    Kernels, NormBuffers, NormRows, bind_group, norm_dims, storage_buffer, uniform_buffer,
};
use super::upload::{GpuMatrix, LayerWeights};
use crate::config::LlamaConfig;

/// Prompt tokens in one pass.
pub const BATCH: usize = 64;

/// Prompt tokens in one pass where the frame pacer hands the dispatches out (the app): a frame
/// waits for a whole dispatch, and a slow GPU's 64-token product can take a frame's length, so
/// the batch is one group of the matrix x matrix kernel.
pub const PACED_BATCH: usize = 8;

/// The batch's activations (row t of each is token t's), shared by every cache of the model.
pub(crate) struct PromptScratch {
    /// matvec.wgsl's `Step` for a batch: first position, token count, then each token's RoPE
    /// angles in turn.
    pub(super) step: wgpu::Buffer,
    pub(super) tokens: wgpu::Buffer,
    pub(super) resid: wgpu::Buffer,
    pub(super) xq: wgpu::Buffer,
    pub(super) xds: wgpu::Buffer,
    pub(super) qkv: wgpu::Buffer,
    pub(super) gu: wgpu::Buffer,
    /// The attention's scores and probabilities, [token][head][context].
    pub(super) probs: wgpu::Buffer,
}

/// One layer's dispatches of a batch that do not touch the KV cache.
pub(crate) struct PromptLayer {
    pub(super) attn_norm: wgpu::BindGroup,
    pub(super) qkv: wgpu::BindGroup,
    pub(super) wo: wgpu::BindGroup,
    pub(super) ffn_norm: wgpu::BindGroup,
    pub(super) gate_up: wgpu::BindGroup,
    pub(super) swiglu: wgpu::BindGroup,
    pub(super) down: wgpu::BindGroup,
}

/// Everything a batch needs but the KV cache's own bind groups ([`Prompt::cache_groups`]).
pub(crate) struct Prompt {
    pub(super) scratch: PromptScratch,
    pub(super) embed: wgpu::BindGroup,
    pub(super) layers: Vec<PromptLayer>,
    pub(super) final_norm: wgpu::BindGroup,
}

impl Prompt {
    pub(crate) fn new(
        device: &wgpu::Device,
        kernels: &Kernels,
        config: &LlamaConfig,
        context: usize,
        (embd, weights, output_norm): (&GpuMatrix, &[LayerWeights], &wgpu::Buffer),
        (head_xq, head_xds): (&wgpu::Buffer, &wgpu::Buffer),
    ) -> Prompt {
        let c = config;
        let (d, ff, nh, nkv, hd) = (c.n_embd, c.n_ff, c.n_head, c.n_kv_head, c.head_dim);
        let b = BATCH;
        let wide = d.max(ff);
        let s = PromptScratch {
            step: storage_buffer(device, "prompt step", 4 + b * hd),
            tokens: storage_buffer(device, "prompt tokens", b),
            resid: storage_buffer(device, "prompt residual stream", b * d),
            xq: storage_buffer(device, "prompt quantized input", b * wide),
            xds: storage_buffer(device, "prompt input scales", b * wide / 32 * 2),
            qkv: storage_buffer(device, "prompt qkv", b * (nh + 2 * nkv) * hd),
            gu: storage_buffer(device, "prompt gate up", b * 2 * ff),
            probs: storage_buffer(device, "prompt attention", b * nh * context),
        };
        let uniform = |words: &[u32]| uniform_buffer(device, words);
        let group = |pipeline: &wgpu::ComputePipeline, entries: &[(u32, &wgpu::Buffer)]| {
            bind_group(device, pipeline, entries)
        };
        // matvec.wgsl's `normalize`: RMSNorm + quantization of the batch's residual rows.
        // Nothing is recorded; `record` is bound to a buffer it leaves alone.
        let rows_dims = uniform(&norm_dims(0, d, c.rms_eps, NormRows::Batch, None));
        let normalize = |weight: &wgpu::Buffer| {
            NormBuffers {
                dims: &rows_dims,
                step: &s.step,
                resid: &s.resid,
                weight,
                record: &s.gu,
                xq: &s.xq,
                xds: &s.xds,
            }
            .group(device, kernels)
        };
        // The final norm of the batch's last row (the row step.first_slot), into the decode
        // step's quantized input, which the head's product reads.
        let final_norm = NormBuffers {
            dims: &uniform(&norm_dims(0, d, c.rms_eps, NormRows::FromStep, None)),
            step: &s.step,
            resid: &s.resid,
            weight: output_norm,
            record: &s.gu,
            xq: head_xq,
            xds: head_xds,
        }
        .group(device, kernels);
        let matmul = |m: &GpuMatrix, out: &wgpu::Buffer, residual: bool| {
            let dims = uniform(&[m.rows, m.cols, u32::from(residual), 0]);
            group(
                kernels.matmul(m),
                &[
                    (0, &m.buf),
                    (1, &s.xq),
                    (2, &s.xds),
                    (3, out),
                    (4, &dims),
                    (5, &s.step),
                ],
            )
        };
        let swiglu_dims = uniform(&[ff as u32, 0, 0, 0]);
        let layers = weights
            .iter()
            .map(|w| PromptLayer {
                attn_norm: normalize(&w.attn_norm),
                qkv: matmul(&w.qkv, &s.qkv, false),
                wo: matmul(&w.wo, &s.resid, true),
                ffn_norm: normalize(&w.ffn_norm),
                gate_up: matmul(&w.gate_up, &s.gu, false),
                swiglu: group(
                    &kernels.swiglu_rows,
                    &[(0, &s.gu), (2, &s.xq), (3, &s.xds), (4, &swiglu_dims)],
                ),
                down: matmul(&w.down, &s.resid, true),
            })
            .collect();
        let embed = group(
            &kernels.embed_rows,
            &[
                (1, &embd.buf),
                (2, &s.resid),
                (3, &uniform(&[d as u32, 0, 0, 0])),
                (4, &s.tokens),
            ],
        );
        Prompt {
            scratch: s,
            embed,
            layers,
            final_norm,
        }
    }

    /// A layer's `store_rows` and `rows` bind groups over a cache's keys and values (`dims`:
    /// the attention kernel's, as the decode step's group has them).
    pub(crate) fn cache_groups(
        &self,
        device: &wgpu::Device,
        kernels: &Kernels,
        keys: &wgpu::Buffer,
        values: &wgpu::Buffer,
        dims: &wgpu::Buffer,
    ) -> [wgpu::BindGroup; 2] {
        let s = &self.scratch;
        [
            bind_group(
                device,
                &kernels.store_rows,
                &[(0, &s.step), (1, &s.qkv), (2, keys), (3, values), (7, dims)],
            ),
            bind_group(
                device,
                &kernels.attention_rows,
                &[
                    (0, &s.step),
                    (1, &s.qkv),
                    (2, keys),
                    (3, values),
                    (4, &s.probs),
                    (5, &s.xq),
                    (6, &s.xds),
                    (7, dims),
                ],
            ),
        ]
    }
}
