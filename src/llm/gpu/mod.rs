//! The GPU backend: SmolLM2's forward pass as WGSL compute kernels (`shaders/llm/`) on a wgpu
//! device: in the app Bevy's own render device and queue, elsewhere a device of its own.
//!
//! The weights go up once as the GGUF file's raw Q4_1 / Q8_0 blocks and are dequantized inside
//! the kernels. Each token is one command encoder and one submit: embedding row, then per layer
//! the stacked q/k/v product (RMSNorm and 8-bit quantization of its input folded in), attention
//! (with RoPE, the KV-cache write and the quantization of its output folded in), the output
//! projection added to the residual stream, the stacked gate/up product (RMSNorm folded in),
//! SwiGLU, the down projection: 6 dispatches; then the final norm and the head (for every
//! layer's residual when the logit lens is recorded) and each row's top token. (The norms can
//! also run as dispatches of their own, 8 per layer: `set_fuse_norm`; the bench times both.) The KV cache, activations and
//! residual stream stay on the GPU; what comes back is the logits (sampling runs on the CPU, as
//! for every backend) and, when recording, exactly what the [`Trace`] holds.
//!
//! The arithmetic follows the CPU engine's (`quant.rs`): inputs quantized to 8-bit blocks with
//! the same rounding, integer block sums (exact in f32), the same RoPE angles (computed on the
//! CPU and uploaded per token), so the two backends agree to float rounding.
//!
//! Only WebGPU's default limits are needed (128 MiB per storage binding, 256 invocations and
//! 16 KiB workgroup memory) and no optional features, so the same kernels can run in a browser.

pub mod lab;
pub mod pacer;
pub mod parity;
pub mod shaders;
#[cfg(target_arch = "wasm32")]
mod web_read;

pub use pacer::FramePacer;

use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Content;
use wgpu::util::DeviceExt;

use super::backend::{Backend, Cache};
use super::config::LlamaConfig;
use super::error::{LlmError, Result};
use super::model::{ForwardOutput, Logits, l2, read_tensor};
use super::quant::BlockType;
use super::tokenizer::LlmTokenizer;
use super::trace::{LayerTrace, RecordOptions, TokenInfo, TokenProb, Trace};

/// Positions a GPU KV cache holds unless asked otherwise (the app's prompts are at most 512
/// tokens): 2048 x 30 layers x 192 x 2 x 4 bytes = 94 MB of GPU memory per session.
pub const DEFAULT_CONTEXT: usize = 2048;

/// A wgpu device and queue the backend runs on, and what to call them.
#[derive(Clone, Debug)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// The adapter's name and graphics API, e.g. "NVIDIA H200 (Vulkan)".
    pub adapter: String,
    /// True when the device is the renderer's (the app), false for a device of our own.
    pub shared_with_renderer: bool,
    pub timestamps: bool,
    /// In the app: the frame loop's pacing of the model's work on the shared queue.
    pub pacer: Option<Arc<FramePacer>>,
    /// On a device of our own: the first error wgpu reported (validation, out of memory, device
    /// lost), taken by the next step. On the renderer's device the renderer's handler gets them.
    errors: Arc<Mutex<Option<String>>>,
}

impl GpuContext {
    /// The renderer's device and queue (in the app: Bevy's `RenderDevice` / `RenderQueue`).
    pub fn shared(device: wgpu::Device, queue: wgpu::Queue, adapter: &wgpu::AdapterInfo) -> Self {
        let timestamps = device.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        GpuContext {
            device,
            queue,
            adapter: adapter_name(adapter),
            shared_with_renderer: true,
            timestamps,
            pacer: None,
            errors: Default::default(),
        }
    }

    /// A device of our own on the best adapter (tests, command line, server). `WGPU_BACKEND`
    /// picks the graphics API as for the app.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Self> {
        Self::with_limits(wgpu::Limits::default())
    }

    /// As `new`, asking the device for `limits` (WebGPU's defaults in `new`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_limits(limits: wgpu::Limits) -> Result<Self> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster_wait(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| LlmError::Gpu(format!("no GPU adapter found ({e})")))?;
        let info = adapter.get_info();
        if !adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        {
            return Err(LlmError::Gpu(format!(
                "{} cannot run compute shaders (a WebGL2-class adapter)",
                adapter_name(&info)
            )));
        }
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let (device, queue) = pollster_wait(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("samemath llm"),
            required_features: if timestamps {
                wgpu::Features::TIMESTAMP_QUERY
            } else {
                wgpu::Features::empty()
            },
            required_limits: limits,
            ..Default::default()
        }))
        .map_err(|e| LlmError::Gpu(format!("{}: no device ({e})", adapter_name(&info))))?;
        // wgpu's default for an error is a panic; ours keeps it for the step to report.
        // (Error scopes would do it per call, but without wgpu's `std` feature, which Bevy's
        // build leaves off, their stack is shared by all threads, the renderer's too.)
        let errors: Arc<Mutex<Option<String>>> = Default::default();
        let slot = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut s) = slot.lock() {
                s.get_or_insert_with(|| e.to_string());
            }
        }));
        let slot = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut s) = slot.lock() {
                s.get_or_insert_with(|| format!("the device was lost ({reason:?}: {message})"));
            }
        });
        Ok(GpuContext {
            device,
            queue,
            adapter: adapter_name(&info),
            shared_with_renderer: false,
            timestamps,
            pacer: None,
            errors,
        })
    }

    /// In the browser the GPU backend needs the asynchronous path of the web build.
    #[cfg(target_arch = "wasm32")]
    pub fn new() -> Result<Self> {
        Err(LlmError::Gpu(
            "a device of its own is not available in the browser; the web build shares the renderer's"
                .into(),
        ))
    }
}

impl GpuContext {
    /// Submit the model's work in chunks paced by `pacer` (the app's frame loop).
    pub fn with_pacer(mut self, pacer: Arc<FramePacer>) -> Self {
        self.pacer = Some(pacer);
        self
    }

    /// The error wgpu reported since the last check, if any.
    pub fn take_error(&self) -> Option<String> {
        self.errors.lock().ok()?.take()
    }
}

/// "NVIDIA H200 (Vulkan)"; browsers keep the name to themselves: "the browser's adapter
/// (BrowserWebGpu)".
pub fn adapter_name(info: &wgpu::AdapterInfo) -> String {
    let name = if info.name.trim().is_empty() {
        "the browser's adapter"
    } else {
        info.name.as_str()
    };
    format!("{name} ({:?})", info.backend)
}

/// Wait for a wgpu future on native (they complete during `device.poll` or at once).
#[cfg(not(target_arch = "wasm32"))]
fn pollster_wait<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

/// The compute pipelines, one per kernel entry point.
struct Kernels {
    embed: wgpu::ComputePipeline,
    q4_1: wgpu::ComputePipeline,
    q8_0: wgpu::ComputePipeline,
    q4_1_normed: wgpu::ComputePipeline,
    q8_0_normed: wgpu::ComputePipeline,
    normalize: wgpu::ComputePipeline,
    attention: wgpu::ComputePipeline,
    swiglu: wgpu::ComputePipeline,
    lens: wgpu::ComputePipeline,
}

impl Kernels {
    /// The mat-vec entry point for `m`'s block format, reading a quantized input or making it
    /// (RMSNorm + quantization of a residual slot) in workgroup memory.
    fn matvec(&self, m: &GpuMatrix, normed: bool) -> &wgpu::ComputePipeline {
        match (m.ty, normed) {
            (BlockType::Q4_1, false) => &self.q4_1,
            (BlockType::Q8_0, false) => &self.q8_0,
            (BlockType::Q4_1, true) => &self.q4_1_normed,
            (BlockType::Q8_0, true) => &self.q8_0_normed,
        }
    }

    fn new(device: &wgpu::Device) -> Kernels {
        let module = |name: &str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(shaders::compose(name).unwrap_or_default().into()),
            })
        };
        let pipeline = |module: &wgpu::ShaderModule, entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let matvec = module("matvec");
        Kernels {
            embed: pipeline(&module("embed"), "main"),
            q4_1: pipeline(&matvec, "q4_1"),
            q8_0: pipeline(&matvec, "q8_0"),
            q4_1_normed: pipeline(&matvec, "q4_1_normed"),
            q8_0_normed: pipeline(&matvec, "q8_0_normed"),
            normalize: pipeline(&matvec, "normalize"),
            attention: pipeline(&module("attention"), "main"),
            swiglu: pipeline(&module("quantize"), "swiglu"),
            lens: pipeline(&module("lens"), "main"),
        }
    }
}

/// A weight matrix as the file's raw blocks.
struct GpuMatrix {
    buf: wgpu::Buffer,
    ty: BlockType,
    rows: u32,
    cols: u32,
}

struct LayerWeights {
    attn_norm: wgpu::Buffer,
    qkv: GpuMatrix,
    wo: GpuMatrix,
    ffn_norm: wgpu::Buffer,
    gate_up: GpuMatrix,
    down: GpuMatrix,
}

/// Activations, the residual stream and what a step reads back; shared by every cache of the
/// model (steps take turns through a lock).
struct Scratch {
    step: wgpu::Buffer,
    /// `n_layer + 1` slots of the residual stream: slot l enters layer l, slot l + 1 leaves it.
    resid: wgpu::Buffer,
    mlp_in: wgpu::Buffer,
    xq: wgpu::Buffer,
    xds: wgpu::Buffer,
    qkv: wgpu::Buffer,
    gu: wgpu::Buffer,
    act: wgpu::Buffer,
    probs: wgpu::Buffer,
    logits: wgpu::Buffer,
    top: wgpu::Buffer,
    staging: wgpu::Buffer,
}

/// Bind groups of one layer's dispatches that do not touch the KV cache.
struct LayerGroups {
    /// q/k/v and gate/up with RMSNorm folded in.
    qkv: wgpu::BindGroup,
    wo: wgpu::BindGroup,
    gate_up: wgpu::BindGroup,
    /// The unfused variant: RMSNorm + quantization as their own dispatches, then plain products.
    attn_norm: wgpu::BindGroup,
    qkv_plain: wgpu::BindGroup,
    ffn_norm: wgpu::BindGroup,
    gate_up_plain: wgpu::BindGroup,
    swiglu: wgpu::BindGroup,
    down: wgpu::BindGroup,
}

/// What one step dispatches, by kernel kind (the bench's per-kernel times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelKind {
    Embed,
    /// RMSNorm + quantization as a dispatch of its own (the final norm; the unfused variant).
    Norm,
    /// Matrix products (the q/k/v and gate/up ones with RMSNorm folded in, by default).
    MatVec,
    /// RoPE, the KV-cache write, attention and the quantization of its output.
    Attention,
    /// SwiGLU and the quantization of its output.
    Swiglu,
    Head,
    Lens,
    /// A whole step in one compute pass (what a step really costs the GPU).
    WholeStep,
}

/// GPU timestamps for the bench (where the device has them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Off,
    /// Each dispatch in a compute pass of its own, timed (adds per-pass overhead).
    PerKernel,
    /// The step's one compute pass, timed.
    WholeStep,
}

pub struct GpuModel {
    ctx: GpuContext,
    config: LlamaConfig,
    context: usize,
    kernels: Kernels,
    layers: Vec<LayerWeights>,
    head: GpuMatrix,
    scratch: Scratch,
    groups: Vec<LayerGroups>,
    embed_group: wgpu::BindGroup,
    final_norm_group: wgpu::BindGroup,
    head_group: wgpu::BindGroup,
    lens_group: wgpu::BindGroup,
    inv_freq: Vec<f32>,
    /// One step at a time on the shared scratch buffers.
    lock: Mutex<()>,
    /// Kept alive for the bind groups.
    _weights: Vec<wgpu::Buffer>,
    /// Per-kernel GPU time of the last profiled step, when timestamps are available.
    profile: Mutex<Option<Vec<(KernelKind, f64)>>>,
    /// RMSNorm inside the q/k/v and gate/up products (default) or as dispatches of its own.
    fuse_norm: std::sync::atomic::AtomicBool,
    /// Browser build: the step whose results are on their way back (see `web_read`).
    #[cfg(target_arch = "wasm32")]
    in_flight: Mutex<Option<web_read::InFlight>>,
}

impl std::fmt::Debug for GpuModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuModel")
            .field("adapter", &self.ctx.adapter)
            .finish_non_exhaustive()
    }
}

/// The GPU's KV cache of one session: per layer, keys and values of every position so far.
pub struct GpuCache {
    attention: Vec<wgpu::BindGroup>,
    len: usize,
    /// The model whose scratch buffers the bind groups use.
    owner: usize,
    /// Tells this cache from the model's other caches (a result in flight belongs to one).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    serial: u64,
    _buffers: Vec<wgpu::Buffer>,
}

/// Serial numbers of KV caches.
static CACHE_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl std::fmt::Debug for GpuCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuCache")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl GpuCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Reads the file's tensors as raw bytes.
struct Upload<'a, R> {
    content: &'a Content,
    reader: &'a mut R,
    ctx: &'a GpuContext,
    buffers: Vec<wgpu::Buffer>,
}

impl<R: Read + Seek> Upload<'_, R> {
    fn raw(&mut self, name: &str) -> Result<(GgmlDType, Vec<usize>, Vec<u8>)> {
        let t = read_tensor(self.content, self.reader, name)?;
        Ok((t.dtype(), t.shape().dims().to_vec(), t.data()?.into_owned()))
    }

    fn f32s(&mut self, name: &str) -> Result<wgpu::Buffer> {
        let v = read_tensor(self.content, self.reader, name)?
            .dequantize(&candle_core::Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        self.buffer(name, bytemuck::cast_slice(&v))
    }

    fn buffer(&mut self, name: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        // Padded to whole words, plus one: a Q8_0 block's last word may straddle the end.
        let mut data = bytes.to_vec();
        data.resize(bytes.len().div_ceil(4) * 4 + 4, 0);
        let limits = self.ctx.device.limits();
        let max = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        if data.len() as u64 > max {
            return Err(LlmError::Gpu(format!(
                "{name} needs a {} MiB buffer; this device allows {} MiB",
                data.len() >> 20,
                max >> 20
            )));
        }
        let buf = self
            .ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(name),
                contents: &data,
                usage: wgpu::BufferUsages::STORAGE,
            });
        self.buffers.push(buf.clone());
        Ok(buf)
    }

    /// One or several matrices of one block format that read the same input, rows stacked.
    fn matrix(&mut self, names: &[String]) -> Result<GpuMatrix> {
        let mut bytes = Vec::new();
        let (mut ty, mut rows, mut cols) = (None, 0, 0);
        for name in names {
            let (dtype, dims, raw) = self.raw(name)?;
            let t = match dtype {
                GgmlDType::Q4_1 => BlockType::Q4_1,
                GgmlDType::Q8_0 => BlockType::Q8_0,
                other => {
                    return Err(LlmError::Gpu(format!(
                        "{name} is {other:?}; the GPU kernels read Q4_1 and Q8_0"
                    )));
                }
            };
            let [r, c] = dims[..] else {
                return Err(LlmError::Tensor {
                    name: name.clone(),
                    reason: format!("shape {dims:?}, expected a matrix"),
                });
            };
            if ty.is_some_and(|ty| ty != t) || (cols != 0 && cols != c) {
                return Err(LlmError::Gpu(format!(
                    "{name}: stacked matrices differ in format or width"
                )));
            }
            ty = Some(t);
            rows += r;
            cols = c;
            bytes.extend_from_slice(&raw);
        }
        let ty = ty.ok_or_else(|| LlmError::Gpu("no matrix named".into()))?;
        Ok(GpuMatrix {
            buf: self.buffer(&names[0], &bytes)?,
            ty,
            rows: rows as u32,
            cols: cols as u32,
        })
    }
}

impl GpuModel {
    /// Upload the model in `path` to `ctx`'s device.
    pub fn load(path: &Path, ctx: GpuContext, context: usize) -> Result<GpuModel> {
        let mut file = File::open(path).map_err(|source| LlmError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::read(&mut file, path, ctx, context)
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
        let content = Content::read(reader).map_err(|e| LlmError::NotGguf {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
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
        let storage = |label: &str, floats: usize| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (floats.max(1) * 4) as u64,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let readback = v + 4 * l + (l + 1) * d + l * d + l * ff + l * nh * context;
        let limits = device.limits();
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        for (what, floats) in [
            ("the logit lens's logits", l * v),
            ("the attention record", l * nh * context),
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
        let kernels = Kernels::new(device);
        let uniform = |words: &[u32]| uniform_buffer(device, words);
        let eps = (config.rms_eps as f32).to_bits();
        let s = &scratch;
        let group = |pipeline: &wgpu::ComputePipeline, entries: &[(u32, &wgpu::Buffer)]| {
            bind_group(device, pipeline, entries)
        };
        // matvec.wgsl's Dims for an input made from residual slot(s) (`slot: None`: the slots
        // step.first_slot + z), the normed row recorded at `record` in `mlp_in` if given.
        let norm_dims = |rows: u32, slot: Option<u32>, record: Option<u32>| {
            [
                rows,
                d as u32,
                0,
                0,
                0,
                slot.unwrap_or(0),
                u32::from(slot.is_none()),
                eps,
                u32::from(record.is_some()),
                record.unwrap_or(0),
                0,
                0,
            ]
        };
        // A mat-vec reading the quantized input in `xq`/`xds`; its product goes to `out`, or is
        // added to the residual stream (`Some((from, to))`, offsets in floats).
        let matvec = |m: &GpuMatrix, out: &wgpu::Buffer, residual: Option<(u32, u32)>| {
            let (res_on, out_offset, res_offset) = match residual {
                Some((res, out)) => (1, out, res),
                None => (0, 0, 0),
            };
            let dims = uniform(&[
                m.rows, m.cols, res_on, out_offset, res_offset, 0, 0, 0, 0, 0, 0, 0,
            ]);
            group(
                kernels.matvec(m, false),
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
                kernels.matvec(m, true),
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
            let dims = uniform(&norm_dims(0, slot, record));
            group(
                &kernels.normalize,
                &[
                    (4, &dims),
                    (5, &s.step),
                    (6, &s.resid),
                    (7, weight),
                    (8, &s.mlp_in),
                    (9, &s.xq),
                    (10, &s.xds),
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
        let inv_freq = config.rope_inv_freq();
        let ctx = ctx.clone();
        let owner_weights = weights;
        Ok(GpuModel {
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
            fuse_norm: std::sync::atomic::AtomicBool::new(false),
            #[cfg(target_arch = "wasm32")]
            in_flight: Mutex::new(None),
            lens_group,
            inv_freq,
            lock: Mutex::new(()),
            _weights: owner_weights,
            profile: Mutex::new(None),
        })
    }

    /// RMSNorm folded into the q/k/v and gate/up products (true, the default) or run as
    /// dispatches of their own; the arithmetic is the same function either way (the bench
    /// times both).
    pub fn set_fuse_norm(&self, fuse: bool) {
        self.fuse_norm
            .store(fuse, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Per-kernel GPU milliseconds of the last step run with `profile_next`, if the device has
    /// timestamp queries.
    pub fn last_profile(&self) -> Option<Vec<(KernelKind, f64)>> {
        self.profile.lock().ok()?.clone()
    }

    fn id(&self) -> usize {
        self as *const GpuModel as usize
    }

    pub fn new_gpu_cache(&self) -> Result<GpuCache> {
        let c = &self.config;
        let device = &self.ctx.device;
        let width = c.n_kv_head * c.head_dim;
        let mut buffers = Vec::new();
        let mut attention = Vec::new();
        let s = &self.scratch;
        for layer in 0..c.n_layer {
            let kv = |label| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: (self.context * width * 4) as u64,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            };
            let (k, v) = (kv("keys"), kv("values"));
            let dims = self.uniform(&[
                c.n_head as u32,
                c.n_kv_head as u32,
                c.head_dim as u32,
                layer as u32,
                self.context as u32,
                0,
                0,
                0,
            ]);
            attention.push(self.group(
                &self.kernels.attention,
                &[
                    (0, &s.step),
                    (1, &s.qkv),
                    (2, &k),
                    (3, &v),
                    (4, &s.probs),
                    (5, &s.xq),
                    (6, &s.xds),
                    (7, &dims),
                ],
            ));
            buffers.extend([k, v]);
        }
        if let Some(e) = self.ctx.take_error() {
            return Err(LlmError::Gpu(format!(
                "no room for a KV cache of {} positions: {e}",
                self.context
            )));
        }
        Ok(GpuCache {
            attention,
            len: 0,
            owner: self.id(),
            serial: CACHE_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            _buffers: buffers,
        })
    }

    fn uniform(&self, words: &[u32]) -> wgpu::Buffer {
        uniform_buffer(&self.ctx.device, words)
    }

    fn group(
        &self,
        pipeline: &wgpu::ComputePipeline,
        entries: &[(u32, &wgpu::Buffer)],
    ) -> wgpu::BindGroup {
        bind_group(&self.ctx.device, pipeline, entries)
    }

    /// Record one token's dispatches. `head_rows`: how many residual slots go through the final
    /// norm and head (`None`: a prompt token whose logits nobody reads).
    fn encode_token<'s>(
        &'s self,
        pass: &mut impl Sink<'s>,
        cache: &'s GpuCache,
        head_rows: Option<u32>,
        lens: bool,
    ) {
        let c = &self.config;
        let k = &self.kernels;
        let blocks = |n: usize| (n / 32) as u32;
        let mv = |m: &GpuMatrix, z: u32| (m.rows.div_ceil(4), 1, z);
        pass.run(
            KernelKind::Embed,
            &k.embed,
            &self.embed_group,
            ((c.n_embd as u32).div_ceil(64), 1, 1),
        );
        let fuse = self.fuse_norm.load(std::sync::atomic::Ordering::Relaxed);
        for (i, (w, g)) in self.layers.iter().zip(&self.groups).enumerate() {
            if fuse {
                let qkv = k.matvec(&w.qkv, true);
                pass.run(KernelKind::MatVec, qkv, &g.qkv, mv(&w.qkv, 1));
            } else {
                pass.run(KernelKind::Norm, &k.normalize, &g.attn_norm, (1, 1, 1));
                let qkv = k.matvec(&w.qkv, false);
                pass.run(KernelKind::MatVec, qkv, &g.qkv_plain, mv(&w.qkv, 1));
            }
            pass.run(
                KernelKind::Attention,
                &k.attention,
                &cache.attention[i],
                (c.n_head as u32, 1, 1),
            );
            pass.run(
                KernelKind::MatVec,
                k.matvec(&w.wo, false),
                &g.wo,
                mv(&w.wo, 1),
            );
            if fuse {
                let gate_up = k.matvec(&w.gate_up, true);
                pass.run(KernelKind::MatVec, gate_up, &g.gate_up, mv(&w.gate_up, 1));
            } else {
                pass.run(KernelKind::Norm, &k.normalize, &g.ffn_norm, (1, 1, 1));
                let gate_up = k.matvec(&w.gate_up, false);
                pass.run(
                    KernelKind::MatVec,
                    gate_up,
                    &g.gate_up_plain,
                    mv(&w.gate_up, 1),
                );
            }
            pass.run(
                KernelKind::Swiglu,
                &k.swiglu,
                &g.swiglu,
                (blocks(c.n_ff), 1, 1),
            );
            pass.run(
                KernelKind::MatVec,
                k.matvec(&w.down, false),
                &g.down,
                mv(&w.down, 1),
            );
        }
        if let Some(rows) = head_rows {
            pass.run(
                KernelKind::Norm,
                &k.normalize,
                &self.final_norm_group,
                (rows, 1, 1),
            );
            pass.run(
                KernelKind::Head,
                k.matvec(&self.head, false),
                &self.head_group,
                mv(&self.head, rows),
            );
            if lens {
                pass.run(KernelKind::Lens, &k.lens, &self.lens_group, (rows, 1, 1));
            }
        }
    }

    /// Submit `ops` a chunk at a time, each when the frame has GPU time to lend, waiting for
    /// each to finish (its time is what the pacer charges); `tail` adds the readback copies to
    /// the last chunk and returns their size.
    fn submit_paced(
        &self,
        pacer: &FramePacer,
        ops: &[Op<'_>],
        tail: impl FnOnce(&mut wgpu::CommandEncoder) -> u64,
    ) -> Result<(wgpu::SubmissionIndex, u64)> {
        let mut tail = Some(tail);
        let mut at = 0;
        let mut i = 0;
        loop {
            pacer.wait_turn();
            let end = (i + pacer.chunk()).min(ops.len());
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for op in &ops[i..end] {
                    pass.set_pipeline(op.pipeline);
                    pass.set_bind_group(0, op.group, &[]);
                    let (x, y, z) = op.workgroups;
                    pass.dispatch_workgroups(x, y, z);
                }
            }
            if end == ops.len()
                && let Some(tail) = tail.take()
            {
                at = tail(&mut enc);
            }
            let started = web_time::Instant::now();
            let index = self.ctx.queue.submit([enc.finish()]);
            self.ctx
                .device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(index.clone()),
                    timeout: Some(std::time::Duration::from_secs(30)),
                })
                .map_err(|e| LlmError::Gpu(format!("waiting for the GPU: {e}")))?;
            pacer.charge(started.elapsed(), end - i);
            i = end;
            if i >= ops.len() {
                return Ok((index, at));
            }
        }
    }

    fn write_step(&self, pos: usize, token: u32, first_slot: u32) {
        let mut words: Vec<u32> = vec![pos as u32, token, first_slot, 0];
        for (sin, cos) in LlamaConfig::rope_rotation(&self.inv_freq, pos) {
            words.push(sin.to_bits());
            words.push(cos.to_bits());
        }
        self.ctx
            .queue
            .write_buffer(&self.scratch.step, 0, bytemuck::cast_slice(&words));
    }

    /// Run `tokens` at positions `cache.len()..`; see [`Backend::forward`].
    pub fn forward_gpu(
        &self,
        cache: &mut GpuCache,
        tokens: &[u32],
        record: RecordOptions,
        tokenizer: Option<&LlmTokenizer>,
        profile: Profile,
    ) -> Result<ForwardOutput> {
        let c = &self.config;
        let (n, pos) = (tokens.len(), cache.len);
        super::backend::check_span(n, pos, self.context)?;
        if cache.owner != self.id() {
            return Err(LlmError::Gpu(
                "this KV cache belongs to another model".into(),
            ));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(LlmError::Tensor {
                name: "token_embd.weight".into(),
                reason: format!("token {bad} is outside the table"),
            });
        }
        let _turn = self
            .lock
            .lock()
            .map_err(|_| LlmError::Gpu("an earlier step failed mid-way".into()))?;
        let result = self.run_tokens(cache, tokens, record, tokenizer, profile);
        if let Some(e) = self.ctx.take_error() {
            return Err(LlmError::Gpu(e));
        }
        result
    }

    fn run_tokens(
        &self,
        cache: &mut GpuCache,
        tokens: &[u32],
        record: RecordOptions,
        tokenizer: Option<&LlmTokenizer>,
        profile: Profile,
    ) -> Result<ForwardOutput> {
        let c = &self.config;
        let (l, d, ff, nh, v) = (c.n_layer, c.n_embd, c.n_ff, c.n_head, c.vocab_size);
        let (n, pos) = (tokens.len(), cache.len);
        let s = &self.scratch;
        let lens = record.enabled && record.logit_lens && tokenizer.is_some();
        #[cfg(target_arch = "wasm32")]
        let key = web_read::StepKey {
            cache: cache.serial,
            pos,
            tokens: tokens.to_vec(),
            record: record.enabled,
            lens,
        };
        #[cfg(target_arch = "wasm32")]
        if let Some(bytes) = self.web_collect(&key)? {
            return Ok(self.finish(cache, tokens, record, lens, tokenizer, &bytes));
        }
        let paced = self
            .ctx
            .pacer
            .as_deref()
            .filter(|_| profile == Profile::Off);
        // Prompt tokens before the last: their KV entries are all that is kept.
        for (i, &t) in tokens[..n - 1].iter().enumerate() {
            self.write_step(pos + i, t, l as u32);
            if let Some(pacer) = paced {
                let mut ops = Vec::new();
                self.encode_token(&mut ops, cache, None, false);
                self.submit_paced(pacer, &ops, |_| 0)?;
                continue;
            }
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = Dispatcher::new(&mut enc, None, Profile::Off);
                self.encode_token(&mut pass, cache, None, false);
            }
            self.ctx.queue.submit([enc.finish()]);
        }
        let last_pos = pos + n - 1;
        let (first_slot, rows) = if lens { (1, l as u32) } else { (l as u32, 1) };
        self.write_step(last_pos, tokens[n - 1], first_slot);
        let timing =
            (profile != Profile::Off && self.ctx.timestamps).then(|| Timing::new(&self.ctx.device));
        // What comes back: the last row's logits, then (recording) the trace's numbers.
        let seen = last_pos + 1;
        let copies = |enc: &mut wgpu::CommandEncoder| -> u64 {
            let f = |floats: usize| (floats * 4) as u64;
            let mut at = 0u64;
            let mut copy = |src: &wgpu::Buffer, from: u64, len: u64| {
                enc.copy_buffer_to_buffer(src, from, &s.staging, at, len);
                at += len;
            };
            copy(&s.logits, f((rows as usize - 1) * v), f(v));
            if record.enabled {
                copy(&s.top, 0, f(4 * rows as usize));
                copy(&s.resid, 0, f((l + 1) * d));
                copy(&s.mlp_in, 0, f(l * d));
                copy(&s.act, 0, f(l * ff));
                copy(&s.probs, 0, f(l * nh * seen));
            }
            at
        };
        let (index, at, kinds) = if let Some(pacer) = paced {
            let mut ops = Vec::new();
            self.encode_token(&mut ops, cache, Some(rows), lens);
            let (index, at) = self.submit_paced(pacer, &ops, copies)?;
            (index, at, Vec::new())
        } else {
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            let kinds = {
                let mut pass = Dispatcher::new(&mut enc, timing.as_ref(), profile);
                self.encode_token(&mut pass, cache, Some(rows), lens);
                pass.finish()
            };
            let at = copies(&mut enc);
            if let Some(t) = &timing {
                t.resolve(&mut enc, kinds.len());
            }
            (self.ctx.queue.submit([enc.finish()]), at, kinds)
        };
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (index, kinds, timing);
            self.web_start(key, at)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let bytes = read_back(&self.ctx.device, &s.staging, at, index)?;
            if let Some(t) = &timing
                && let Some(ms) = t.read(&self.ctx.device, &self.ctx.queue, &kinds)
                && let Ok(mut p) = self.profile.lock()
            {
                *p = Some(ms);
            }
            Ok(self.finish(cache, tokens, record, lens, tokenizer, &bytes))
        }
    }

    /// The step's results, read back: the cache now holds its positions; logits and trace
    /// (`lens`: whether the step computed the logit lens, as `run_tokens` decided).
    fn finish(
        &self,
        cache: &mut GpuCache,
        tokens: &[u32],
        record: RecordOptions,
        lens: bool,
        tokenizer: Option<&LlmTokenizer>,
        bytes: &[u8],
    ) -> ForwardOutput {
        let c = &self.config;
        let (l, d, ff, nh, v) = (c.n_layer, c.n_embd, c.n_ff, c.n_head, c.vocab_size);
        let (n, pos) = (tokens.len(), cache.len);
        let rows = if lens { l } else { 1 };
        let last_pos = pos + n - 1;
        let seen = last_pos + 1;
        cache.len = pos + n;
        let floats: &[f32] = bytemuck::cast_slice(bytes);
        let (logits, rest) = floats.split_at(v);
        let logits = Logits(logits.to_vec());
        let trace = if record.enabled {
            let (top, rest) = rest.split_at(4 * rows);
            let (resid, rest) = rest.split_at((l + 1) * d);
            let (mlp_in, rest) = rest.split_at(l * d);
            let (act, probs) = rest.split_at(l * ff);
            let slot = |i: usize| &resid[i * d..(i + 1) * d];
            let layers = (0..l)
                .map(|i| LayerTrace {
                    attention: (0..nh)
                        .map(|h| probs[(i * nh + h) * seen..(i * nh + h + 1) * seen].to_vec())
                        .collect(),
                    mlp_activation: act[i * ff..(i + 1) * ff].to_vec(),
                    mlp_input: mlp_in[i * d..(i + 1) * d].to_vec(),
                    residual_norm_in: l2(slot(i)),
                    residual_norm_out: l2(slot(i + 1)),
                    logit_lens: match tokenizer {
                        Some(tok) if lens => {
                            let t = &top[i * 4..i * 4 + 4];
                            let id = t[0].to_bits();
                            Some(TokenProb {
                                id,
                                piece: tok.piece(id),
                                logit: t[1],
                                prob: t[2],
                            })
                        }
                        _ => None,
                    },
                })
                .collect();
            let last = tokens[n - 1];
            Some(Trace {
                position: last_pos,
                token: TokenInfo {
                    id: last,
                    piece: tokenizer.map(|t| t.piece(last)).unwrap_or_default(),
                },
                embedding: slot(0).to_vec(),
                kv_head_of_head: (0..nh).map(|h| c.kv_head_of(h)).collect(),
                layers,
                top_k: tokenizer
                    .map(|t| logits.top(record.top_k, t))
                    .unwrap_or_default(),
            })
        } else {
            None
        };
        ForwardOutput {
            logits: logits.0,
            trace,
        }
    }
}

/// A kernel's small per-dispatch constants.
fn uniform_buffer(device: &wgpu::Device, words: &[u32]) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("dims"),
        contents: bytemuck::cast_slice(words),
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

/// A bind group for `pipeline`'s group 0: (binding, buffer) pairs, whole buffers.
fn bind_group(
    device: &wgpu::Device,
    pipeline: &wgpu::ComputePipeline,
    entries: &[(u32, &wgpu::Buffer)],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = entries
        .iter()
        .map(|(binding, buf)| wgpu::BindGroupEntry {
            binding: *binding,
            resource: buf.as_entire_binding(),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

/// Copy `len` bytes of a mapped-for-reading buffer out after submission `index` completes
/// (blocking: in the browser build only the model's steps read back, through `web_read`).
fn read_back(
    device: &wgpu::Device,
    staging: &wgpu::Buffer,
    len: u64,
    index: wgpu::SubmissionIndex,
) -> Result<Vec<u8>> {
    if cfg!(target_arch = "wasm32") {
        return Err(LlmError::Gpu(
            "a blocking read-back would freeze the page; the browser build reads the model's \
             steps back asynchronously"
                .into(),
        ));
    }
    let slice = staging.slice(..len);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: Some(std::time::Duration::from_secs(30)),
        })
        .map_err(|e| LlmError::Gpu(format!("waiting for the GPU: {e}")))?;
    let mapped = loop {
        match rx.try_recv() {
            Ok(r) => break r,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                device
                    .poll(wgpu::PollType::Poll)
                    .map_err(|e| LlmError::Gpu(format!("waiting for the GPU: {e}")))?;
                std::thread::yield_now();
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                return Err(LlmError::Gpu("the device was lost".into()));
            }
        }
    };
    mapped.map_err(|e| LlmError::Gpu(format!("reading results back: {e}")))?;
    let bytes = slice.get_mapped_range().to_vec();
    staging.unmap();
    Ok(bytes)
}

/// Timestamp queries around each dispatch (one compute pass each) for the bench.
struct Timing {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    capacity: u32,
}

const MAX_TIMED: u32 = 2048;

impl Timing {
    fn new(device: &wgpu::Device) -> Timing {
        let capacity = MAX_TIMED * 2;
        Timing {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel times"),
                ty: wgpu::QueryType::Timestamp,
                count: capacity,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: capacity as u64 * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            read: device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: capacity as u64 * 8,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            capacity,
        }
    }

    fn resolve(&self, enc: &mut wgpu::CommandEncoder, dispatches: usize) {
        let count = (dispatches as u32 * 2).min(self.capacity);
        enc.resolve_query_set(&self.set, 0..count, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, count as u64 * 8);
    }

    /// Milliseconds per kernel kind (the bench's; not in the browser build).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    fn read(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        kinds: &[KernelKind],
    ) -> Option<Vec<(KernelKind, f64)>> {
        let index = queue.submit([]);
        let len = (kinds.len() as u64 * 16).min(self.capacity as u64 * 8);
        let bytes = read_back(device, &self.read, len, index).ok()?;
        let stamps: &[u64] = bytemuck::cast_slice(&bytes);
        let period = queue.get_timestamp_period() as f64;
        let mut totals: std::collections::BTreeMap<KernelKind, f64> = Default::default();
        for (i, kind) in kinds.iter().enumerate() {
            let (a, b) = (stamps[2 * i], stamps[2 * i + 1]);
            *totals.entry(*kind).or_default() += b.saturating_sub(a) as f64 * period / 1e6;
        }
        Some(totals.into_iter().collect())
    }
}

/// Where `encode_token` puts its dispatches.
trait Sink<'s> {
    fn run(
        &mut self,
        kind: KernelKind,
        pipeline: &'s wgpu::ComputePipeline,
        group: &'s wgpu::BindGroup,
        workgroups: (u32, u32, u32),
    );
}

/// One dispatch, kept for submitting in chunks.
struct Op<'s> {
    pipeline: &'s wgpu::ComputePipeline,
    group: &'s wgpu::BindGroup,
    workgroups: (u32, u32, u32),
}

impl<'s> Sink<'s> for Vec<Op<'s>> {
    fn run(
        &mut self,
        _: KernelKind,
        pipeline: &'s wgpu::ComputePipeline,
        group: &'s wgpu::BindGroup,
        workgroups: (u32, u32, u32),
    ) {
        self.push(Op {
            pipeline,
            group,
            workgroups,
        });
    }
}

/// Dispatches into one compute pass, or, when timing, one pass per dispatch with timestamps.
struct Dispatcher<'a> {
    enc: &'a mut wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Timestamps per dispatch (`PerKernel`); `WholeStep` times the one pass instead.
    timing: Option<&'a Timing>,
    kinds: Vec<KernelKind>,
}

impl<'s> Sink<'s> for Dispatcher<'_> {
    fn run(
        &mut self,
        kind: KernelKind,
        pipeline: &'s wgpu::ComputePipeline,
        group: &'s wgpu::BindGroup,
        workgroups: (u32, u32, u32),
    ) {
        Dispatcher::run(self, kind, pipeline, group, workgroups);
    }
}

impl<'a> Dispatcher<'a> {
    fn new(
        enc: &'a mut wgpu::CommandEncoder,
        timing: Option<&'a Timing>,
        profile: Profile,
    ) -> Self {
        let mut d = Dispatcher {
            enc,
            pass: None,
            timing: None,
            kinds: Vec::new(),
        };
        match (timing, profile) {
            (Some(t), Profile::WholeStep) => {
                d.pass = Some(
                    d.enc
                        .begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: None,
                            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                                query_set: &t.set,
                                beginning_of_pass_write_index: Some(0),
                                end_of_pass_write_index: Some(1),
                            }),
                        })
                        .forget_lifetime(),
                );
                d.kinds.push(KernelKind::WholeStep);
            }
            (Some(t), Profile::PerKernel) => d.timing = Some(t),
            _ => {}
        }
        d
    }

    fn run(
        &mut self,
        kind: KernelKind,
        pipeline: &wgpu::ComputePipeline,
        group: &wgpu::BindGroup,
        (x, y, z): (u32, u32, u32),
    ) {
        match self.timing {
            Some(t) if (self.kinds.len() as u32) < MAX_TIMED => {
                let i = self.kinds.len() as u32;
                let mut pass = self.enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &t.set,
                        beginning_of_pass_write_index: Some(2 * i),
                        end_of_pass_write_index: Some(2 * i + 1),
                    }),
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, group, &[]);
                pass.dispatch_workgroups(x, y, z);
                self.kinds.push(kind);
            }
            _ => {
                let pass = self.pass.get_or_insert_with(|| {
                    self.enc
                        .begin_compute_pass(&wgpu::ComputePassDescriptor::default())
                        .forget_lifetime()
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, group, &[]);
                pass.dispatch_workgroups(x, y, z);
            }
        }
    }

    fn finish(mut self) -> Vec<KernelKind> {
        self.pass = None;
        std::mem::take(&mut self.kinds)
    }
}

impl Backend for GpuModel {
    fn config(&self) -> &LlamaConfig {
        &self.config
    }

    fn context_length(&self) -> usize {
        self.context
    }

    fn new_cache(&self) -> Result<Cache> {
        Ok(Cache::Gpu(self.new_gpu_cache()?))
    }

    fn forward(
        &self,
        cache: &mut Cache,
        tokens: &[u32],
        record: RecordOptions,
        tokenizer: Option<&LlmTokenizer>,
    ) -> Result<ForwardOutput> {
        match cache {
            Cache::Gpu(cache) => self.forward_gpu(cache, tokens, record, tokenizer, Profile::Off),
            Cache::Cpu(_) => Err(LlmError::Gpu(
                "a CPU KV cache was handed to the GPU backend".into(),
            )),
        }
    }

    fn describe(&self) -> String {
        format!("GPU: {}", self.ctx.adapter)
    }
}
