//! The wgpu device and queue the GPU backend runs on: the renderer's (in the app), or a device of
//! its own on the best adapter, with wgpu's errors kept for the next step to report.

use std::sync::{Arc, Mutex, OnceLock};

use super::pacer::FramePacer;
use super::readback::GpuInterrupt;
use crate::error::{LlmError, Result};

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
    /// The kernels reduce with subgroup operations (the device has wgpu's SUBGROUP feature;
    /// never in the browser, whose WGSL would need `enable subgroups`, which naga does not
    /// parse yet); otherwise with trees in workgroup memory. `without_subgroups` picks the trees.
    pub subgroups: bool,
    /// In the app: the frame loop's pacing of the model's work on the shared queue.
    pub pacer: Option<Arc<FramePacer>>,
    /// On a device of our own: the first error wgpu reported (validation, out of memory, device
    /// lost), taken by the next step. On the renderer's device the renderer's handler gets them.
    pub(crate) errors: Arc<Mutex<Option<String>>>,
    /// On a device of our own: why it was lost, for good (every later step fails). A server
    /// reports it on its health check, so the instance is replaced.
    pub(crate) lost: Arc<OnceLock<String>>,
    /// Stop for a wait on a stalled device (see `interrupt_handle`).
    pub(crate) interrupt: GpuInterrupt,
}

impl GpuContext {
    /// The renderer's device and queue (in the app: Bevy's `RenderDevice` / `RenderQueue`).
    pub fn shared(device: wgpu::Device, queue: wgpu::Queue, adapter: &wgpu::AdapterInfo) -> Self {
        let timestamps = device.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let subgroups = offers_subgroups(device.features());
        GpuContext {
            device,
            queue,
            adapter: adapter_name(adapter),
            shared_with_renderer: true,
            timestamps,
            subgroups,
            pacer: None,
            errors: Default::default(),
            lost: Default::default(),
            interrupt: Default::default(),
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
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        // wgpu reads `WGPU_BACKEND` only when built with its "std" feature, which a build
        // without Bevy (the server, the command line) lacks: read here, so it always picks.
        if let Ok(list) = std::env::var("WGPU_BACKEND") {
            descriptor.backends = wgpu::Backends::from_comma_list(&list);
        }
        let instance = wgpu::Instance::new(descriptor);
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
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP;
        let (device, queue) = pollster_wait(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("samemath llm"),
            required_features: adapter.features() & wanted,
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
        let lost: Arc<OnceLock<String>> = Default::default();
        let gone = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            let why = format!("the device was lost ({reason:?}: {message})");
            if let Ok(mut s) = slot.lock() {
                s.get_or_insert_with(|| why.clone());
            }
            let _ = gone.set(why);
        });
        let features = device.features();
        Ok(GpuContext {
            device,
            queue,
            adapter: adapter_name(&info),
            shared_with_renderer: false,
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroups: offers_subgroups(features),
            pacer: None,
            errors,
            lost,
            interrupt: Default::default(),
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
    /// Why the device was lost, once it has been (a device of our own; the renderer's reports
    /// to the renderer). Nothing runs on it after that.
    pub fn lost(&self) -> Option<&str> {
        self.lost.get().map(String::as_str)
    }

    /// Submit the model's work in chunks paced by `pacer` (the app's frame loop).
    pub fn with_pacer(mut self, pacer: Arc<FramePacer>) -> Self {
        self.pacer = Some(pacer);
        self
    }

    /// What Stop calls so that a step waiting on a stalled device gives up (with an error the
    /// caller can fall back from) instead of holding the engine for `GPU_STEP_LIMIT`.
    pub fn interrupt_handle(&self) -> GpuInterrupt {
        self.interrupt.clone()
    }

    /// The error wgpu reported since the last check, if any.
    pub fn take_error(&self) -> Option<String> {
        self.errors.lock().ok()?.take()
    }

    /// The same device with the kernels reducing in workgroup-memory trees (the fallback for
    /// devices without subgroups), for the bench and the tests that compare both.
    pub fn without_subgroups(mut self) -> Self {
        self.subgroups = false;
        self
    }
}

/// Whether the kernels may use subgroup operations on a device with `features`.
fn offers_subgroups(features: wgpu::Features) -> bool {
    !cfg!(target_arch = "wasm32") && features.contains(wgpu::Features::SUBGROUP)
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
pub(crate) fn pollster_wait<F: std::future::Future>(f: F) -> F::Output {
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
