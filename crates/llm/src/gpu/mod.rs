//! The GPU backend: SmolLM2's forward pass as WGSL compute kernels (`shaders/llm/`) on a wgpu
//! device: in the app Bevy's own render device and queue, elsewhere a device of its own.
//!
//! The weights go up once as the GGUF file's raw Q4_1 / Q8_0 blocks and are dequantized inside
//! the kernels. Each token is one command encoder and one submit: embedding row, then per layer
//! RMSNorm with the 8-bit quantization of its output, the stacked q/k/v product, attention (with
//! RoPE, the KV-cache write and the quantization of its output folded in), the output
//! projection added to the residual stream, RMSNorm, the stacked gate/up product, SwiGLU, the
//! down projection: 8 dispatches; then the final norm and the head (for every layer's residual
//! when the logit lens is recorded) and each row's top token. (The folded step makes the
//! two norms inside the products they feed and SwiGLU inside the down product, 5 dispatches per
//! layer, the same bits; unless told which, the model times its first decode steps both ways
//! and keeps the faster, `choice.rs`.) A prompt
//! goes in batches of 64 tokens, one pass each (`prompt.rs`). The KV cache, activations and
//! residual stream stay on the GPU; what comes back is the logits (sampling runs on the CPU, as
//! for every backend) and, when recording, exactly what the [`Trace`] holds.
//!
//! The arithmetic follows the CPU engine's (`quant.rs`): inputs quantized to 8-bit blocks with
//! the same rounding, integer block sums (exact in f32), the same RoPE angles (computed on the
//! CPU and uploaded per token), so the two backends agree to float rounding.
//!
//! Only WebGPU's default limits are needed (128 MiB per storage binding, 256 invocations and
//! 16 KiB workgroup memory) and no optional features, so the same kernels can run in a browser.
//! Where the device has wgpu's SUBGROUP feature (native only), the sums and maxima across a
//! workgroup or a row's 64 threads use subgroup operations (`reduce_subgroup.wgsl`, two barriers
//! each) instead of trees in workgroup memory (`reduce.wgsl`, eight to ten); the two add in
//! different orders, so the numbers differ by float rounding, each within the parity tests'
//! tolerances of the CPU.

mod build;
mod cache;
mod choice;
mod context;
mod encode;
mod forward;
mod kernels;
pub mod lab;
mod model;
pub mod pacer;
pub mod parity;
mod prefill;
mod profile;
mod prompt;
mod readback;
pub mod shaders;
mod upload;
#[cfg(target_arch = "wasm32")]
mod web_read;

pub use cache::GpuCache;
pub use choice::{StepChoice, TRIES as STEP_TRIES, step_name};
pub use context::{GpuContext, adapter_name};
pub use model::{DEFAULT_CONTEXT, GpuModel};
pub use pacer::FramePacer;
pub use profile::{KernelKind, Profile, stamp_span};
pub use prompt::BATCH as PROMPT_BATCH;
pub use readback::GpuInterrupt;
