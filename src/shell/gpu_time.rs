//! Each frame's GPU time, split into rendering and the LLM's kernels, measured by the GPU's own
//! timestamps: two around everything a frame submits (the first and last command buffers of its
//! one submission), and the GPU backend's paced chunks, timed by `llm::gpu::FramePacer`. Scene
//! 2 draws the split as a bar; `bench --scene llm` prints it. Where the adapter has no timestamp
//! queries (WebGL2, some drivers) nothing is guessed: `available` says so.
//!
//! The timestamps come back a few frames late, through a ring of small buffers mapped when the
//! GPU is done with them; a frame never waits for them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bevy::prelude::*;
use bevy::render::renderer::{
    PendingCommandBuffers, RenderDevice, RenderGraph, RenderGraphSystems, RenderQueue,
};
use bevy::render::{Render, RenderApp};

/// Frames the bar averages over.
pub const WINDOW: usize = 60;
/// Frames whose timestamps can be on their way back at once.
const SLOTS: usize = 4;
/// A resolved query set's offsets must be multiples of this.
const RESOLVE_ALIGN: u64 = wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT;

/// What the main world knows of the GPU's time per frame.
#[derive(Resource, Debug, Default, Clone)]
pub struct GpuFrameTimes {
    /// `Some(false)`: the adapter has no timestamp queries; `None`: not known yet (no renderer,
    /// or it is still starting).
    pub available: Option<bool>,
    /// Rendering's GPU milliseconds of the last measured frames, newest last.
    render: VecDeque<f64>,
    /// The LLM kernels' GPU milliseconds per frame (0 where none of its work finished), newest
    /// last; empty until a timed chunk was seen.
    llm: VecDeque<f64>,
    /// The frames' lengths in milliseconds (wall time), newest last.
    frame: VecDeque<f64>,
    /// The samples that came in this frame (for the bench's phases).
    pub fresh_render: Vec<f64>,
    pub fresh_llm: Option<f64>,
    /// Totals since the start (the sidecar's).
    pub render_frames: usize,
    pub render_total_ms: f64,
    pub llm_frames: usize,
    pub llm_total_ms: f64,
}

impl GpuFrameTimes {
    /// The mean of rendering's GPU time over the last `WINDOW` measured frames.
    pub fn render_mean(&self) -> Option<f64> {
        mean(&self.render)
    }

    /// The mean length of the last `WINDOW` frames.
    pub fn frame_mean(&self) -> Option<f64> {
        mean(&self.frame)
    }

    /// The mean of the LLM kernels' GPU time per frame over the last `WINDOW` frames, once any
    /// was timed.
    pub fn llm_mean(&self) -> Option<f64> {
        mean(&self.llm)
    }

    /// The LLM's GPU time in the frame that ended (`None`: none of its work was timed in it).
    /// Once timed work was seen, a frame without any counts as 0 ms.
    pub fn push_llm(&mut self, took: Option<std::time::Duration>) {
        self.fresh_llm = None;
        let ms = match took {
            Some(d) => d.as_secs_f64() * 1e3,
            None if self.llm.is_empty() => return,
            None => 0.0,
        };
        self.fresh_llm = Some(ms);
        self.llm_frames += 1;
        self.llm_total_ms += ms;
        push(&mut self.llm, ms);
    }

    fn push_render(&mut self, ms: f64) {
        self.fresh_render.push(ms);
        self.render_frames += 1;
        self.render_total_ms += ms;
        push(&mut self.render, ms);
    }

    /// For the screenshot's sidecar.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "available": self.available,
            "render_frames": self.render_frames,
            "render_total_ms": self.render_total_ms,
            "render_mean_ms": self.render_mean(),
            "llm_frames": self.llm_frames,
            "llm_total_ms": self.llm_total_ms,
            "llm_mean_ms": self.llm_mean(),
        })
    }
}

fn push(q: &mut VecDeque<f64>, ms: f64) {
    if q.len() == WINDOW {
        q.pop_front();
    }
    q.push_back(ms);
}

fn mean(q: &VecDeque<f64>) -> Option<f64> {
    (!q.is_empty()).then(|| q.iter().sum::<f64>() / q.len() as f64)
}

/// What the render world hands the main world: whether timestamps exist, and the frames measured
/// since it last looked.
#[derive(Resource, Clone, Default)]
struct Shared(Arc<Mutex<Incoming>>);

#[derive(Default)]
struct Incoming {
    available: Option<bool>,
    render_ms: Vec<f64>,
}

/// The shell's logic side (no renderer needed): the resource the scenes and bench read.
pub fn logic_plugin(app: &mut App) {
    app.init_resource::<GpuFrameTimes>()
        .add_systems(First, take_measured.after(bevy::time::TimeSystems));
}

/// Move what the render world measured into `GpuFrameTimes`.
fn take_measured(
    shared: Option<Res<Shared>>,
    time: Res<Time<Real>>,
    mut times: ResMut<GpuFrameTimes>,
) {
    times.fresh_render.clear();
    let ms = time.delta_secs_f64() * 1e3;
    if ms > 0.0 {
        push(&mut times.frame, ms);
    }
    let Some(shared) = shared else {
        return;
    };
    let Ok(mut incoming) = shared.0.lock() else {
        return;
    };
    times.available = incoming.available;
    for ms in std::mem::take(&mut incoming.render_ms) {
        times.push_render(ms);
    }
}

/// The render world's side: timestamps around each frame's submission.
pub struct GpuTimePlugin;

impl Plugin for GpuTimePlugin {
    fn build(&self, app: &mut App) {
        let shared = Shared::default();
        app.insert_resource(shared.clone());
        if let Some(render_app) = app.get_sub_app_mut(RenderApp) {
            render_app.insert_resource(shared);
        }
    }

    fn finish(&self, app: &mut App) {
        let Some(render_app) = app.get_sub_app_mut(RenderApp) else {
            return;
        };
        let Some(device) = render_app.world().get_resource::<RenderDevice>() else {
            return;
        };
        let available = device.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        if let Some(shared) = render_app.world().get_resource::<Shared>()
            && let Ok(mut incoming) = shared.0.lock()
        {
            incoming.available = Some(available);
        }
        if !available {
            return;
        }
        let clock = FrameClock::new(device.wgpu_device());
        render_app
            .insert_resource(clock)
            .add_systems(
                RenderGraph,
                (
                    stamp_begin.in_set(RenderGraphSystems::Begin),
                    stamp_end
                        .after(RenderGraphSystems::Render)
                        .before(RenderGraphSystems::Submit),
                    map_stamps.in_set(RenderGraphSystems::Finish),
                ),
            )
            .add_systems(
                Render,
                collect_stamps.before(bevy::render::RenderSystems::Render),
            );
    }
}

/// Where a slot of the ring is.
const FREE: u8 = 0;
const WRITING: u8 = 1;
const MAPPING: u8 = 2;
const MAPPED: u8 = 3;
const FAILED: u8 = 4;

/// Timestamp queries (two a slot), the buffer they resolve into, and a small buffer a slot to
/// read them back through.
#[derive(Resource)]
struct FrameClock {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    reads: Vec<wgpu::Buffer>,
    states: Vec<Arc<AtomicU8>>,
    /// The slot this frame writes (none: every slot was still on its way back).
    current: Option<usize>,
    next: usize,
}

impl FrameClock {
    fn new(device: &wgpu::Device) -> FrameClock {
        FrameClock {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("frame time"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * SLOTS as u32,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("frame time resolve"),
                size: RESOLVE_ALIGN * SLOTS as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            reads: (0..SLOTS)
                .map(|_| {
                    device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("frame time read"),
                        size: 16,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                })
                .collect(),
            states: (0..SLOTS).map(|_| Arc::new(AtomicU8::new(FREE))).collect(),
            current: None,
            next: 0,
        }
    }

    /// An empty compute pass that writes one timestamp: at its start (`begin`) or its end.
    fn stamp(&self, device: &RenderDevice, slot: usize, begin: bool) -> wgpu::CommandEncoder {
        let mut enc =
            device
                .wgpu_device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("frame time"),
                });
        let index = 2 * slot as u32 + u32::from(!begin);
        enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("frame time"),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &self.set,
                beginning_of_pass_write_index: begin.then_some(index),
                end_of_pass_write_index: (!begin).then_some(index),
            }),
        });
        enc
    }
}

/// Read the slots the GPU is done with (never waiting: a poll only fires finished callbacks).
fn collect_stamps(
    clock: Option<Res<FrameClock>>,
    device: Res<RenderDevice>,
    queue: Res<RenderQueue>,
    shared: Res<Shared>,
) {
    let Some(clock) = clock else {
        return;
    };
    let _ = device.wgpu_device().poll(wgpu::PollType::Poll);
    let period = queue.get_timestamp_period();
    for (slot, state) in clock.states.iter().enumerate() {
        match state.load(Ordering::Acquire) {
            MAPPED => {
                let read = &clock.reads[slot];
                let stamps: Option<[u64; 2]> =
                    bytemuck::try_pod_read_unaligned(&read.slice(..).get_mapped_range()).ok();
                read.unmap();
                state.store(FREE, Ordering::Release);
                if let Some(took) = stamps.and_then(|[a, b]| llm::gpu::stamp_span(a, b, period))
                    && let Ok(mut incoming) = shared.0.lock()
                {
                    incoming.render_ms.push(took.as_secs_f64() * 1e3);
                }
            }
            FAILED => state.store(FREE, Ordering::Release),
            _ => {}
        }
    }
}

/// First in the frame's submission: the starting timestamp.
fn stamp_begin(
    mut clock: ResMut<FrameClock>,
    device: Res<RenderDevice>,
    mut pending: ResMut<PendingCommandBuffers>,
) {
    let slot = clock.next;
    clock.current = None;
    if clock.states[slot].load(Ordering::Acquire) != FREE {
        return;
    }
    clock.states[slot].store(WRITING, Ordering::Release);
    clock.current = Some(slot);
    clock.next = (slot + 1) % SLOTS;
    let enc = clock.stamp(&device, slot, true);
    pending.push([enc.finish()]);
}

/// Last in the frame's submission: the ending timestamp, resolved and copied to the slot's
/// buffer.
fn stamp_end(
    clock: Res<FrameClock>,
    device: Res<RenderDevice>,
    mut pending: ResMut<PendingCommandBuffers>,
) {
    let Some(slot) = clock.current else {
        return;
    };
    let mut enc = clock.stamp(&device, slot, false);
    let at = RESOLVE_ALIGN * slot as u64;
    let first = 2 * slot as u32;
    enc.resolve_query_set(&clock.set, first..first + 2, &clock.resolve, at);
    enc.copy_buffer_to_buffer(&clock.resolve, at, &clock.reads[slot], 0, 16);
    pending.push_encoder(enc);
}

/// After the submission: ask for the slot's buffer once the GPU is done with it.
fn map_stamps(mut clock: ResMut<FrameClock>) {
    let Some(slot) = clock.current.take() else {
        return;
    };
    let state = clock.states[slot].clone();
    state.store(MAPPING, Ordering::Release);
    clock.reads[slot]
        .slice(..)
        .map_async(wgpu::MapMode::Read, move |r| {
            state.store(if r.is_ok() { MAPPED } else { FAILED }, Ordering::Release);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llm_frames_count_from_the_first_timed_one() {
        let mut t = GpuFrameTimes::default();
        t.push_llm(None);
        assert_eq!(t.llm_mean(), None, "nothing timed yet: no figure");
        t.push_llm(Some(std::time::Duration::from_millis(3)));
        t.push_llm(None);
        assert_eq!(t.llm_frames, 2);
        assert!((t.llm_mean().unwrap() - 1.5).abs() < 1e-9);
        for _ in 0..WINDOW {
            t.push_llm(None);
        }
        assert_eq!(
            t.llm_mean(),
            Some(0.0),
            "the window moved past the timed frame"
        );
    }
}
