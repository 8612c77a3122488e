//! The GPU model as it sits on the device: its context, pipelines, weights, the scratch buffers
//! every step shares, and each dispatch's bind group made once (`build.rs` makes it;
//! `forward.rs` runs it; `cache.rs` gives each session its KV cache).

use std::sync::Mutex;

use super::context::GpuContext;
use super::kernels::{Kernels, bind_group, uniform_buffer};
use super::profile::KernelKind;
use super::upload::{GpuMatrix, LayerWeights};
use crate::config::LlamaConfig;

/// Positions a GPU KV cache holds unless asked otherwise (the app's prompts are at most 512
/// tokens): 2048 x 30 layers x 192 x 2 x 4 bytes = 94 MB of GPU memory per session.
pub const DEFAULT_CONTEXT: usize = 2048;

/// Activations, the residual stream and what a step reads back; shared by every cache of the
/// model (steps take turns through a lock).
pub(crate) struct Scratch {
    pub(crate) step: wgpu::Buffer,
    /// `n_layer + 1` slots of the residual stream: slot l enters layer l, slot l + 1 leaves it.
    pub(crate) resid: wgpu::Buffer,
    pub(crate) mlp_in: wgpu::Buffer,
    pub(crate) xq: wgpu::Buffer,
    pub(crate) xds: wgpu::Buffer,
    pub(crate) qkv: wgpu::Buffer,
    pub(crate) gu: wgpu::Buffer,
    pub(crate) act: wgpu::Buffer,
    pub(crate) probs: wgpu::Buffer,
    pub(crate) logits: wgpu::Buffer,
    pub(crate) top: wgpu::Buffer,
    pub(crate) staging: wgpu::Buffer,
}

/// Bind groups of one layer's dispatches that do not touch the KV cache.
pub(crate) struct LayerGroups {
    /// The folded variant: q/k/v and gate/up with RMSNorm folded in, down with SwiGLU.
    pub(crate) qkv: wgpu::BindGroup,
    pub(crate) wo: wgpu::BindGroup,
    pub(crate) gate_up: wgpu::BindGroup,
    pub(crate) down_swiglu: wgpu::BindGroup,
    /// The default: RMSNorm + quantization and SwiGLU as their own dispatches, then plain
    /// products.
    pub(crate) attn_norm: wgpu::BindGroup,
    pub(crate) qkv_plain: wgpu::BindGroup,
    pub(crate) ffn_norm: wgpu::BindGroup,
    pub(crate) gate_up_plain: wgpu::BindGroup,
    pub(crate) swiglu: wgpu::BindGroup,
    pub(crate) down: wgpu::BindGroup,
}

pub struct GpuModel {
    pub(crate) ctx: GpuContext,
    pub(crate) config: LlamaConfig,
    pub(crate) context: usize,
    pub(crate) kernels: Kernels,
    pub(crate) layers: Vec<LayerWeights>,
    pub(crate) head: GpuMatrix,
    pub(crate) scratch: Scratch,
    pub(crate) groups: Vec<LayerGroups>,
    pub(crate) embed_group: wgpu::BindGroup,
    pub(crate) final_norm_group: wgpu::BindGroup,
    pub(crate) head_group: wgpu::BindGroup,
    pub(crate) lens_group: wgpu::BindGroup,
    /// A prompt's batches (`prompt.rs`).
    pub(crate) prompt: super::prompt::Prompt,
    pub(crate) inv_freq: Vec<f32>,
    /// One step at a time on the shared scratch buffers.
    pub(crate) lock: Mutex<()>,
    /// Kept alive for the bind groups.
    pub(crate) _weights: Vec<wgpu::Buffer>,
    /// Per-kernel GPU time of the last profiled step, when timestamps are available.
    pub(crate) profile: Mutex<Option<Vec<(KernelKind, f64)>>>,
    /// Timestamps around each paced chunk (with a pacer, where the device has them).
    pub(crate) clock: Option<super::profile::Timing>,
    /// The decode step's variant: RMSNorm and SwiGLU inside the products, or as dispatches of
    /// their own; set, or chosen by timing both (`choice.rs`).
    pub(crate) choice: super::choice::Chooser,
    /// Browser build: the step whose results are on their way back.
    #[cfg(target_arch = "wasm32")]
    pub(crate) web: super::web_read::WebReads,
}

impl std::fmt::Debug for GpuModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuModel")
            .field("adapter", &self.ctx.adapter)
            .finish_non_exhaustive()
    }
}

impl GpuModel {
    /// The decode step folded (true): RMSNorm made inside the q/k/v and gate/up products and
    /// SwiGLU inside the down product, each workgroup redoing that small step, 5 dispatches a
    /// layer; or (false) both as dispatches of their own, 8 a layer. The arithmetic is the same
    /// functions either way, the same bits. Unless set, the model times its first decode steps
    /// both ways and keeps the faster (`step_choice`): the folded step is twice as slow on
    /// lavapipe, where every workgroup's redone step costs CPU time, and fewer dispatches can
    /// win where a GPU's time goes to dispatches and barriers.
    pub fn set_folded(&self, folded: bool) {
        self.choice.set(Some(folded));
    }

    /// Whether the next decode step runs folded.
    pub fn folded(&self) -> bool {
        self.choice.get().folded()
    }

    /// Where the choice of the decode step stands: set, being timed, or chosen by timing.
    pub fn step_choice(&self) -> super::StepChoice {
        self.choice.get()
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The buffer the SwiGLU kernel (folded: the down product) writes: `n_layer * n_ff` f32,
    /// the MLP activations of the newest token computed, layer after layer (every step rewrites
    /// it). The app binds it as the world's instance data on the renderer's device; its usage
    /// allows `STORAGE` and `COPY_SRC`.
    pub fn activation_buffer(&self) -> wgpu::Buffer {
        self.scratch.act.clone()
    }

    /// Per-kernel GPU milliseconds of the last step run with `profile_next`, if the device has
    /// timestamp queries.
    pub fn last_profile(&self) -> Option<Vec<(KernelKind, f64)>> {
        self.profile.lock().ok()?.clone()
    }

    pub(crate) fn id(&self) -> usize {
        self as *const GpuModel as usize
    }

    pub(crate) fn uniform(&self, words: &[u32]) -> wgpu::Buffer {
        uniform_buffer(&self.ctx.device, words)
    }

    pub(crate) fn group(
        &self,
        pipeline: &wgpu::ComputePipeline,
        entries: &[(u32, &wgpu::Buffer)],
    ) -> wgpu::BindGroup {
        bind_group(&self.ctx.device, pipeline, entries)
    }
}
