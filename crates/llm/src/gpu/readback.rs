//! Reading a step's results back to the CPU (natively: blocking, after the submission completes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{LlmError, Result};

/// How long one submission may take before the backend gives up on the device: far longer than
/// any step of this model on a working GPU, long enough for software Vulkan on a busy machine
/// (which takes seconds a step), so a slow device gives a slow answer, not an error.
pub(crate) const GPU_STEP_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// A wait this long is a stall worth giving up when the user presses Stop (a shorter one is a
/// step that finishes: Stop then lands after it, as on the CPU).
pub(crate) const STALL: std::time::Duration = std::time::Duration::from_secs(1);

/// Ask the backend's waits on this context to give up: Stop while the GPU has not finished a
/// step (a stalled or far too slow device). Shared with whoever holds the engine's Stop.
#[derive(Clone, Debug, Default)]
pub struct GpuInterrupt(pub(crate) Arc<AtomicBool>);

impl GpuInterrupt {
    /// A wait already past `STALL`, or the next to pass it, returns an error; a wait that ends
    /// sooner clears the request.
    pub fn interrupt(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Forget a request no wait took (a Stop or Reset while the GPU was idle), so it cannot
    /// cut the next step short.
    pub fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    /// Whether a request is waiting for a wait to take it.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Wait for submission `index`, in slices (wgpu's own wait gives up after its timeout), for at
/// most `GPU_STEP_LIMIT` in all, or until an interrupt once the wait is past `STALL`.
pub(crate) fn wait_for(
    device: &wgpu::Device,
    index: wgpu::SubmissionIndex,
    interrupt: &GpuInterrupt,
) -> Result<()> {
    let started = web_time::Instant::now();
    loop {
        match device.poll(wgpu::PollType::Wait {
            submission_index: Some(index.clone()),
            timeout: Some(std::time::Duration::from_millis(250)),
        }) {
            Ok(_) => {
                interrupt.0.store(false, Ordering::Relaxed);
                return Ok(());
            }
            Err(wgpu::PollError::Timeout)
                if started.elapsed() >= STALL && interrupt.0.swap(false, Ordering::Relaxed) =>
            {
                return Err(LlmError::Gpu(format!(
                    "stopped after {:.1} s waiting for the GPU to finish one step: it is \
                     stalled or far too slow for this model",
                    started.elapsed().as_secs_f32()
                )));
            }
            Err(wgpu::PollError::Timeout) if started.elapsed() < GPU_STEP_LIMIT => continue,
            Err(wgpu::PollError::Timeout) => {
                return Err(LlmError::Gpu(format!(
                    "the GPU did not finish a step in {} s: it is stalled or far too slow for \
                     this model",
                    GPU_STEP_LIMIT.as_secs()
                )));
            }
            Err(e) => return Err(LlmError::Gpu(format!("waiting for the GPU: {e}"))),
        }
    }
}

/// Copy `len` bytes of a mapped-for-reading buffer out after submission `index` completes
/// (blocking: in the browser build only the model's steps read back, through `web_read`).
pub(crate) fn read_back(
    device: &wgpu::Device,
    interrupt: &GpuInterrupt,
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
    wait_for(device, index, interrupt)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::GpuContext;
    use wgpu::util::DeviceExt;

    /// `groups` workgroups of a kernel that spins a while per invocation: a step that takes as
    /// long as asked.
    fn spin(ctx: &GpuContext, groups: u32) -> wgpu::SubmissionIndex {
        let device = &ctx.device;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("spin"),
            source: wgpu::ShaderSource::Wgsl(
                "@group(0) @binding(0) var<storage, read_write> out: array<u32>;
                 @group(0) @binding(1) var<uniform> rounds: vec4<u32>;
                 @compute @workgroup_size(64)
                 fn main(@builtin(global_invocation_id) id: vec3<u32>) {
                     var x = id.x;
                     for (var i = 0u; i < rounds.x; i++) { x = x * 1664525u + out[(x >> 26u) & 63u] + i; }
                     out[id.x & 63u] = x;
                 }"
                .into(),
            ),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let out = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 256,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&[1024u32, 0, 0, 0]),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: out.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: uniform.as_entire_binding(),
                },
            ],
        });
        let mut enc = device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(groups.min(65_535), groups.div_ceil(65_535), 1);
        }
        ctx.queue.submit([enc.finish()])
    }

    #[test]
    fn stop_gives_up_a_stalled_step_and_not_a_quick_one() {
        let ctx = GpuContext::new().expect("a wgpu adapter (lavapipe in CI)");
        let interrupt = ctx.interrupt_handle();
        // A quick step with Stop already pressed: it finishes, and the request is cleared.
        interrupt.interrupt();
        wait_for(&ctx.device, spin(&ctx, 1), &interrupt).expect("a quick step");
        assert!(!interrupt.0.load(Ordering::Relaxed));
        // Workgroups for a step of about 8 s on this device, measured.
        let mut groups: u64 = 16;
        let took = loop {
            let started = web_time::Instant::now();
            wait_for(&ctx.device, spin(&ctx, groups as u32), &interrupt).expect("a step");
            let took = started.elapsed().as_secs_f64();
            if took > 0.3 || groups >= 1 << 28 {
                break took;
            }
            groups *= 4;
        };
        let groups = (groups as f64 * 8.0 / took).min((1u64 << 30) as f64) as u32;
        let index = spin(&ctx, groups);
        let stopper = interrupt.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            stopper.interrupt();
        });
        let started = web_time::Instant::now();
        let err = wait_for(&ctx.device, index.clone(), &interrupt).unwrap_err();
        let waited = started.elapsed().as_secs_f64();
        assert!(err.to_string().contains("stopped after"), "{err}");
        // Given up before the device finished the step.
        let unfinished = ctx.device.poll(wgpu::PollType::Wait {
            submission_index: Some(index.clone()),
            timeout: Some(std::time::Duration::ZERO),
        });
        assert!(
            matches!(unfinished, Err(wgpu::PollError::Timeout)),
            "{unfinished:?}"
        );
        // Let the device finish before it is dropped.
        let _ = wait_for(&ctx.device, index, &GpuInterrupt::default());
        println!(
            "{groups} workgroups take about 8 s here; Stop pressed at 1.5 s gave up the wait after \
             {waited:.2} s: {err}"
        );
    }
}
