//! Where a step's dispatches go: one compute pass (or, profiling, one timed pass each), or a list
//! of `Op`s the frame pacer submits a chunk at a time.

use super::profile::{KernelKind, MAX_TIMED, Profile, Timing};

/// Where `encode_token` puts its dispatches.
pub(crate) trait Sink<'s> {
    fn run(
        &mut self,
        kind: KernelKind,
        pipeline: &'s wgpu::ComputePipeline,
        group: &'s wgpu::BindGroup,
        workgroups: (u32, u32, u32),
    );
}

/// Counts dispatches by kernel kind, in the order each kind first runs; submits nothing.
#[derive(Default)]
pub(crate) struct Count(pub(crate) Vec<(KernelKind, usize)>);

impl<'s> Sink<'s> for Count {
    fn run(
        &mut self,
        kind: KernelKind,
        _: &'s wgpu::ComputePipeline,
        _: &'s wgpu::BindGroup,
        _: (u32, u32, u32),
    ) {
        match self.0.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.0.push((kind, 1)),
        }
    }
}

/// One dispatch, kept for submitting in chunks.
pub(crate) struct Op<'s> {
    pub(crate) pipeline: &'s wgpu::ComputePipeline,
    pub(crate) group: &'s wgpu::BindGroup,
    pub(crate) workgroups: (u32, u32, u32),
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
pub(crate) struct Dispatcher<'a> {
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
    pub(crate) fn new(
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
                            timestamp_writes: Some(t.first_pass()),
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

    pub(crate) fn run(
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

    pub(crate) fn finish(mut self) -> Vec<KernelKind> {
        self.pass = None;
        std::mem::take(&mut self.kinds)
    }
}
