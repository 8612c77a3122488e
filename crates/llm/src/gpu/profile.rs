//! GPU timestamps: for the bench, each dispatch timed in a pass of its own, or a whole step's one
//! pass (milliseconds per kernel kind); for the app, each paced chunk's pass, the model's share
//! of a frame's GPU time.

use super::readback::read_back;

/// What one step dispatches, by kernel kind (the bench's per-kernel times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelKind {
    Embed,
    /// RMSNorm + quantization as a dispatch of its own (the final norm; the unfolded variant).
    Norm,
    /// Matrix products (in the folded variant with RMSNorm or SwiGLU made inside).
    MatVec,
    /// RoPE, the KV-cache write, attention and the quantization of its output.
    Attention,
    /// SwiGLU and the quantization of its output (the unfolded variant).
    Swiglu,
    Head,
    Lens,
    /// A prompt's matrix x matrix products (eight tokens a workgroup).
    MatMul,
    /// A prompt's keys and values rotated and stored before its tokens attend.
    StoreKv,
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

/// Timestamp queries around each dispatch (one compute pass each) for the bench, or around each
/// paced chunk's one pass for the app (`with_pairs(1)`, `span`).
pub(crate) struct Timing {
    pub(crate) set: wgpu::QuerySet,
    pub(crate) resolve: wgpu::Buffer,
    pub(crate) read: wgpu::Buffer,
    pub(crate) capacity: u32,
}

pub(crate) const MAX_TIMED: u32 = 2048;

impl Timing {
    pub(crate) fn new(device: &wgpu::Device) -> Timing {
        Timing::with_pairs(device, MAX_TIMED)
    }

    /// Room for `pairs` passes' start and end (one: the app's paced chunks, `span`).
    pub(crate) fn with_pairs(device: &wgpu::Device, pairs: u32) -> Timing {
        let capacity = pairs * 2;
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

    pub(crate) fn resolve(&self, enc: &mut wgpu::CommandEncoder, dispatches: usize) {
        let count = (dispatches as u32 * 2).min(self.capacity);
        enc.resolve_query_set(&self.set, 0..count, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, count as u64 * 8);
    }

    /// Milliseconds per kernel kind (the bench's; not in the browser build).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn read(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        kinds: &[KernelKind],
    ) -> Option<Vec<(KernelKind, f64)>> {
        let index = queue.submit([]);
        let len = (kinds.len() as u64 * 16).min(self.capacity as u64 * 8);
        let bytes = read_back(device, &Default::default(), &self.read, len, index).ok()?;
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

impl Timing {
    /// The timestamp writes of a pass timed as the first pair.
    pub(crate) fn first_pass(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }

    /// The first pass's GPU time once submission `index` is done (after `resolve(enc, 1)`);
    /// `None`: the read failed, or the stamps are no time (`stamp_span`).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn span(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        interrupt: &super::readback::GpuInterrupt,
        index: wgpu::SubmissionIndex,
    ) -> Option<std::time::Duration> {
        let bytes = read_back(device, interrupt, &self.read, 16, index).ok()?;
        let [start, end]: [u64; 2] = bytemuck::try_pod_read_unaligned(&bytes).ok()?;
        stamp_span(start, end, queue.get_timestamp_period())
    }
}

/// The time between two timestamps of one queue, `period` nanoseconds a tick. `None` where they
/// are no time: nothing was written (both zero: a driver that skips an empty pass), or the
/// clock went backwards or jumped (power states, a reset), past 10 s.
pub fn stamp_span(start: u64, end: u64, period: f32) -> Option<std::time::Duration> {
    let ticks = end.checked_sub(start).filter(|_| start != 0)?;
    let ns = ticks as f64 * f64::from(period);
    (ns < 10e9).then(|| std::time::Duration::from_nanos(ns as u64))
}

#[cfg(test)]
mod tests {
    use super::stamp_span;
    use std::time::Duration;

    #[test]
    fn two_stamps_are_a_time_only_when_the_clock_ran_forward_and_wrote() {
        assert_eq!(
            stamp_span(1_000, 3_000, 1.0),
            Some(Duration::from_nanos(2_000))
        );
        assert_eq!(stamp_span(10, 20, 2.5), Some(Duration::from_nanos(25)));
        assert_eq!(stamp_span(0, 0, 1.0), None, "nothing written");
        assert_eq!(stamp_span(3_000, 1_000, 1.0), None, "backwards");
        assert_eq!(stamp_span(1, 20_000_000_000, 1.0), None, "a jump of 20 s");
    }
}
