//! Building the GPU model: checks of the device and the model's shape, the weight upload, the
//! scratch buffers every step shares, and each dispatch's bind group made once.

use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Mutex;

use candle_core::quantized::gguf_file::Content;

use super::context::GpuContext;
use super::kernels::{
    Input, Kernels, MatvecDims, NormBuffers, NormRows, bind_group, norm_dims, storage_buffer,
    uniform_buffer,
};
use super::model::{GpuModel, LayerGroups, Scratch};
use super::upload::{GpuMatrix, LayerWeights, Upload};
use crate::config::LlamaConfig;
use crate::error::{LlmError, Result};
use crate::quant::BlockType;
use crate::tokenizer::LlmTokenizer;

impl GpuModel {
    /// Upload the model in `path` to `ctx`'s device.
    pub fn load(path: &Path, ctx: GpuContext, context: usize) -> Result<GpuModel> {
        let mut file = crate::gguf_check::open_model(path)?;
        Self::read(&mut file, path, ctx, context)
    }

    /// As `load`, with the file's own tokenizer (read from the same metadata).
    pub fn load_with_tokenizer(
        path: &Path,
        ctx: GpuContext,
        context: usize,
    ) -> Result<(GpuModel, LlmTokenizer)> {
        let mut file = crate::gguf_check::open_model(path)?;
        let content = crate::gguf_check::read_content(&mut file, path)?;
        let tokenizer = LlmTokenizer::from_gguf(&content)?;
        let gpu = Self::from_content(&content, &mut file, ctx, context)?;
        Ok((gpu, tokenizer))
    }

    /// Upload a model held in memory (the browser build); `name` for messages.
    pub fn from_bytes(
        bytes: &[u8],
        name: &Path,
        ctx: GpuContext,
        context: usize,
    ) -> Result<GpuModel> {
        Self::read(&mut std::io::Cursor::new(bytes), name, ctx, context)
    }

    fn read<R: Read + Seek>(
        reader: &mut R,
        path: &Path,
        ctx: GpuContext,
        context: usize,
    ) -> Result<GpuModel> {
        let content = crate::gguf_check::read_content(reader, path)?;
        Self::from_content(&content, reader, ctx, context)
    }

    pub fn from_content<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        ctx: GpuContext,
        context: usize,
    ) -> Result<GpuModel> {
        let limits = ctx.device.limits();
        if limits.max_compute_workgroups_per_dimension == 0
            || limits.max_storage_buffers_per_shader_stage == 0
        {
            return Err(LlmError::Gpu(format!(
                "{} has no compute shaders (WebGL2 has none); the kernels need WebGPU, Vulkan, \
                 Metal or DirectX 12",
                ctx.adapter
            )));
        }
        let config = LlamaConfig::from_gguf(content)?;
        let c = &config;
        if c.rope_dim != c.head_dim
            || !256usize.is_multiple_of(c.head_dim)
            || c.n_embd > 1536
            || c.n_ff > 1536
            || !c.n_embd.is_multiple_of(32)
            || !c.n_ff.is_multiple_of(32)
        {
            return Err(LlmError::Gpu(format!(
                "the kernels need head_dim dividing 256 with full RoPE and widths in blocks of \
                 32, at most 1536 wide; this model has head_dim {}, rope_dim {}, n_embd {}, n_ff {}",
                c.head_dim, c.rope_dim, c.n_embd, c.n_ff
            )));
        }
        // The head's rows go four to a workgroup along one dimension, and the lens's rows (the
        // layers and the last) and the heads along others: each must fit the device's bound,
        // or the dispatch fails validation (on the app's device that ends the app).
        let most = limits.max_compute_workgroups_per_dimension as usize;
        if c.vocab_size.div_ceil(4) > most || c.n_layer + 1 > most || c.n_head > most {
            return Err(LlmError::Gpu(format!(
                "this model's vocabulary of {} tokens ({} layers, {} heads) needs more workgroups \
                 in a dispatch than {} takes ({most})",
                c.vocab_size, c.n_layer, c.n_head, ctx.adapter
            )));
        }
        let context = context.clamp(1, c.context_length);
        let built = Self::build(content, reader, &ctx, config, context);
        if let Some(e) = ctx.take_error() {
            return Err(LlmError::Gpu(format!("uploading the model failed: {e}")));
        }
        built
    }

    fn build<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        ctx: &GpuContext,
        config: LlamaConfig,
        context: usize,
    ) -> Result<GpuModel> {
        let mut up = Upload {
            content,
            reader,
            ctx,
            buffers: Vec::new(),
        };
        let embd = up.matrix(&["token_embd.weight".to_string()])?;
        if embd.ty != BlockType::Q8_0 {
            return Err(LlmError::Gpu(
                "the embedding table must be Q8_0 for the GPU kernels".into(),
            ));
        }
        let head = if content.tensor_infos.contains_key("output.weight") {
            up.matrix(&["output.weight".to_string()])?
        } else {
            GpuMatrix {
                buf: embd.buf.clone(),
                ty: embd.ty,
                rows: embd.rows,
                cols: embd.cols,
            }
        };
        let output_norm = up.f32s("output_norm.weight")?;
        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(LayerWeights {
                attn_norm: up.f32s(&n("attn_norm"))?,
                qkv: up.matrix(&[n("attn_q"), n("attn_k"), n("attn_v")])?,
                wo: up.matrix(&[n("attn_output")])?,
                ffn_norm: up.f32s(&n("ffn_norm"))?,
                gate_up: up.matrix(&[n("ffn_gate"), n("ffn_up")])?,
                down: up.matrix(&[n("ffn_down")])?,
            });
        }
        let weights = up.buffers;
        let device = &ctx.device;
        let (l, d, ff) = (config.n_layer, config.n_embd, config.n_ff);
        let (nh, nkv, hd, v) = (
            config.n_head,
            config.n_kv_head,
            config.head_dim,
            config.vocab_size,
        );
        let storage = |label: &str, floats: usize| storage_buffer(device, label, floats);
        let readback = v + 4 * l + (l + 1) * d + l * d + l * ff + l * nh * context;
        let limits = device.limits();
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        for (what, floats) in [
            ("the logit lens's logits", l * v),
            ("the attention record", l * nh * context),
            (
                "a prompt batch's attention",
                super::prompt::BATCH * nh * context,
            ),
        ] {
            if (floats * 4) as u64 > max_binding {
                return Err(LlmError::Gpu(format!(
                    "{what} needs {} MiB in one buffer; this device allows {} MiB",
                    (floats * 4) >> 20,
                    max_binding >> 20
                )));
            }
        }
        let scratch = Scratch {
            step: storage("step", 4 + hd),
            resid: storage("residual stream", (l + 1) * d),
            mlp_in: storage("mlp input", l * d),
            xq: storage("quantized input", l.max(1) * d.max(ff)),
            xds: storage("input scales", l.max(1) * d.max(ff) / 32 * 2),
            qkv: storage("qkv", (nh + 2 * nkv) * hd),
            gu: storage("gate up", 2 * ff),
            act: storage("activations", l * ff),
            probs: storage("attention", l * nh * context),
            logits: storage("logits", l.max(1) * v),
            top: storage("top", l.max(1) * 4),
            staging: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: (readback * 4) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        };
        let kernels = Kernels::new(device, ctx.subgroups);
        let uniform = |words: &[u32]| uniform_buffer(device, words);
        let s = &scratch;
        let group = |pipeline: &wgpu::ComputePipeline, entries: &[(u32, &wgpu::Buffer)]| {
            bind_group(device, pipeline, entries)
        };
        // matvec.wgsl's Dims for an input made from residual slot(s) (`slot: None`: the slots
        // step.first_slot + z), the normed row recorded at `record` in `mlp_in` if given.
        let norm_dims = |rows: u32, slot: Option<u32>, record: Option<u32>| {
            let from = slot.map_or(NormRows::FromStep, NormRows::Slot);
            norm_dims(rows, d, config.rms_eps, from, record)
        };
        // A mat-vec reading the quantized input in `xq`/`xds`; its product goes to `out`, or is
        // added to the residual stream (`Some((from, to))`, offsets in floats).
        let matvec = |m: &GpuMatrix, out: &wgpu::Buffer, residual: Option<(u32, u32)>| {
            let (res_offset, out_offset) = residual.unwrap_or((0, 0));
            let dims = uniform(
                &MatvecDims {
                    residual: residual.is_some(),
                    out_offset,
                    res_offset,
                    ..MatvecDims::new(m.rows, m.cols)
                }
                .words(),
            );
            group(
                kernels.matvec(m, Input::Quantized),
                &[(0, &m.buf), (1, &s.xq), (2, &s.xds), (3, out), (4, &dims)],
            )
        };
        // A mat-vec whose input is RMSNorm(residual slot) * `weight`, quantized in the kernel;
        // `slot: None` reads slots step.first_slot + z; `record`: where the normed row goes in
        // `mlp_in`.
        let normed = |m: &GpuMatrix,
                      weight: &wgpu::Buffer,
                      out: &wgpu::Buffer,
                      slot: Option<u32>,
                      record: Option<u32>| {
            let dims = uniform(&norm_dims(m.rows, slot, record));
            group(
                kernels.matvec(m, Input::Normed),
                &[
                    (0, &m.buf),
                    (3, out),
                    (4, &dims),
                    (5, &s.step),
                    (6, &s.resid),
                    (7, weight),
                    (8, &s.mlp_in),
                ],
            )
        };
        // RMSNorm + quantization of residual slot(s) into xq/xds (`slot: None`: the slots
        // step.first_slot + z); `record`: where the normed row goes in `mlp_in`.
        let normalize = |weight: &wgpu::Buffer, slot: Option<u32>, record: Option<u32>| {
            NormBuffers {
                dims: &uniform(&norm_dims(0, slot, record)),
                step: &s.step,
                resid: &s.resid,
                weight,
                record: &s.mlp_in,
                xq: &s.xq,
                xds: &s.xds,
            }
            .group(device, &kernels)
        };
        // The down product making its input from the gate/up product (the folded variant),
        // added to residual slot `layer + 1`; the activations recorded at `layer * n_ff` in `act`.
        let down_swiglu = |m: &GpuMatrix, layer: u32| {
            let slot = (layer + 1) * d as u32;
            let dims = uniform(
                &MatvecDims {
                    residual: true,
                    out_offset: slot,
                    res_offset: slot,
                    record: Some(layer * ff as u32),
                    ..MatvecDims::new(m.rows, m.cols)
                }
                .words(),
            );
            group(
                kernels.matvec(m, Input::Swiglu),
                &[
                    (0, &m.buf),
                    (3, &s.resid),
                    (4, &dims),
                    (8, &s.act),
                    (11, &s.gu),
                ],
            )
        };
        let d32 = d as u32;
        let groups = layers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let i32_ = i as u32;
                let swiglu_dims = uniform(&[ff as u32, i32_ * ff as u32, 0, 0]);
                LayerGroups {
                    attn_norm: normalize(&w.attn_norm, Some(i32_), None),
                    qkv_plain: matvec(&w.qkv, &s.qkv, None),
                    ffn_norm: normalize(&w.ffn_norm, Some(i32_ + 1), Some(i32_ * d32)),
                    gate_up_plain: matvec(&w.gate_up, &s.gu, None),
                    qkv: normed(&w.qkv, &w.attn_norm, &s.qkv, Some(i32_), None),
                    wo: matvec(&w.wo, &s.resid, Some((i32_ * d32, (i32_ + 1) * d32))),
                    gate_up: normed(
                        &w.gate_up,
                        &w.ffn_norm,
                        &s.gu,
                        Some(i32_ + 1),
                        Some(i32_ * d32),
                    ),
                    swiglu: group(
                        &kernels.swiglu,
                        &[
                            (0, &s.gu),
                            (1, &s.act),
                            (2, &s.xq),
                            (3, &s.xds),
                            (4, &swiglu_dims),
                        ],
                    ),
                    down: matvec(
                        &w.down,
                        &s.resid,
                        Some(((i32_ + 1) * d32, (i32_ + 1) * d32)),
                    ),
                    down_swiglu: down_swiglu(&w.down, i32_),
                }
            })
            .collect();
        let embed_group = group(
            &kernels.embed,
            &[
                (0, &s.step),
                (1, &embd.buf),
                (2, &s.resid),
                (3, &uniform(&[d32, 0, 0, 0])),
            ],
        );
        let final_norm_group = normalize(&output_norm, None, None);
        let head_group = matvec(&head, &s.logits, None);
        let lens_group = group(
            &kernels.lens,
            &[
                (0, &s.logits),
                (1, &s.top),
                (2, &uniform(&[v as u32, 0, 0, 0])),
            ],
        );
        let prompt = super::prompt::Prompt::new(
            device,
            &kernels,
            &config,
            context,
            (&embd, &layers, &output_norm),
            (&s.xq, &s.xds),
        );
        let inv_freq = config.rope_inv_freq();
        let ctx = ctx.clone();
        let owner_weights = weights;
        // Paced chunks are timed where the device has timestamps (the app's GPU-time bar).
        let clock = (ctx.timestamps && ctx.pacer.is_some())
            .then(|| super::profile::Timing::with_pairs(&ctx.device, 1));
        Ok(GpuModel {
            clock,
            ctx,
            config,
            context,
            kernels,
            layers,
            head,
            scratch,
            groups,
            embed_group,
            final_norm_group,
            head_group,
            // The browser build's results come back frames after the step: nothing to time there.
            choice: super::choice::Chooser::new(cfg!(target_arch = "wasm32").then_some(false)),
            #[cfg(target_arch = "wasm32")]
            web: Default::default(),
            lens_group,
            prompt,
            inv_freq,
            lock: Mutex::new(()),
            _weights: owner_weights,
            profile: Mutex::new(None),
        })
    }
}
