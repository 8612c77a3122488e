//! Where the MLP columns' heights come from: same GPU, same buffer. Where the device reads
//! storage buffers in the vertex stage, the 30 x 1,536 columns are drawn from one buffer of
//! `n_layer * n_ff` f32 (`ColumnsMaterial`): on the GPU backend it is the very buffer the SwiGLU
//! kernel wrote on the renderer's device (no read-back to draw it); on the CPU backend, a
//! remote's trace or a GPU on a device of its own, the trace is written into a buffer of ours of
//! the same shape. The attention tiles are drawn the same way from a buffer of ours that the
//! trace's weights are written into each token (so a token changes no entity: only buffers).
//! Without vertex-stage storage (WebGL2) each column entity carries its T * S.

use bevy::prelude::*;
use bevy::render::render_resource::{Buffer, BufferDescriptor, BufferUsages};
use bevy::render::renderer::{RenderAdapter, RenderDevice, RenderQueue};

use super::WorldState;
use super::layout::ATTENTION_POSITIONS;
use super::material::ColumnsMaterial;
use crate::llm_scene::state::{Backend, LlmView};

/// How the MLP columns get their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValuesPath {
    /// The GPU backend's SwiGLU output, bound as the draw's instance data.
    Kernel,
    /// The trace, written into a buffer of ours that the draw binds.
    Uploaded,
    /// No storage buffers in the vertex stage (WebGL2): each entity's T * S holds its value.
    Entities,
}

impl ValuesPath {
    /// The sidecar's name for it.
    pub fn name(self) -> &'static str {
        match self {
            ValuesPath::Kernel => "kernel buffer",
            ValuesPath::Uploaded => "uploaded",
            ValuesPath::Entities => "entities",
        }
    }

    /// What the world's legend says about it.
    pub fn describe(self) -> &'static str {
        match self {
            ValuesPath::Kernel => {
                "drawn from the GPU kernel's own activation buffer: same GPU, same buffer, \
                 no read-back"
            }
            ValuesPath::Uploaded => "the trace is uploaded each token into the buffer drawn",
            ValuesPath::Entities => {
                "the trace is uploaded each token as the columns' matrices (no storage \
                 buffers in this device's vertex stage)"
            }
        }
    }
}

/// The MLP columns' buffer and what is bound.
#[derive(Resource, Debug, Default)]
pub struct ColumnValues {
    /// Decided when the world is built: `Entities`, or one of the buffer paths.
    pub path: Option<ValuesPath>,
    pub material: Option<Handle<ColumnsMaterial>>,
    /// Our own buffer, for uploads.
    own: Option<Buffer>,
    /// The buffer the material binds now.
    bound: Option<wgpu::Buffer>,
    /// What was written into our buffer last (the `Uploaded` path), layer after layer.
    pub uploaded: Vec<f32>,
    /// `LlmView::revision` uploaded last.
    revision: Option<u64>,
    /// The attention tiles' material and buffer (always uploaded).
    pub tiles_material: Option<Handle<ColumnsMaterial>>,
    tiles_own: Option<Buffer>,
    tiles_revision: Option<u64>,
}

/// What a tile with no value this step holds (the shader collapses its box): below
/// `ABSENT_BELOW` in shaders/world_material.wgsl.
pub const ABSENT: f32 = -3.0e38;

/// The index of an attention tile in the tiles' buffer (its tag).
pub fn tile_index(heads: usize, layer: usize, head: usize, slot: usize) -> usize {
    (layer * heads + head) * ATTENTION_POSITIONS + slot
}

/// Whether the renderer can read a storage buffer in the vertex stage.
pub fn vertex_storage(adapter: Option<&RenderAdapter>, device: Option<&RenderDevice>) -> bool {
    let (Some(adapter), Some(device)) = (adapter, device) else {
        return false;
    };
    adapter
        .get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::VERTEX_STORAGE)
        && device.limits().max_storage_buffers_per_shader_stage > 0
}

impl ColumnValues {
    /// The MLP columns' material on a buffer of ours (`floats` zeros until the first trace).
    pub fn start(
        &mut self,
        device: &RenderDevice,
        floats: usize,
        materials: &mut Assets<ColumnsMaterial>,
    ) -> Handle<ColumnsMaterial> {
        let label = "world MLP columns (uploaded)";
        let (own, handle) = buffer_material(device, label, floats, materials);
        self.path = Some(ValuesPath::Uploaded);
        self.bound = Some((*own).clone());
        self.own = Some(own);
        self.material = Some(handle.clone());
        self.uploaded.clear();
        self.revision = None;
        handle
    }

    /// The attention tiles' material on a buffer of ours (`count` tiles, none shown until the
    /// first trace).
    pub fn start_tiles(
        &mut self,
        device: &RenderDevice,
        count: usize,
        materials: &mut Assets<ColumnsMaterial>,
    ) -> Handle<ColumnsMaterial> {
        let label = "world attention tiles (uploaded)";
        let (own, handle) = buffer_material(device, label, count, materials);
        self.tiles_own = Some(own);
        self.tiles_material = Some(handle.clone());
        self.tiles_revision = None;
        handle
    }

    /// The buffer the draw binds now.
    pub fn bound(&self) -> Option<&wgpu::Buffer> {
        self.bound.as_ref()
    }
}

/// A storage buffer of `floats` f32 of ours (written by the queue, read back for the sidecar)
/// and a material drawing from it.
fn buffer_material(
    device: &RenderDevice,
    label: &str,
    floats: usize,
    materials: &mut Assets<ColumnsMaterial>,
) -> (Buffer, Handle<ColumnsMaterial>) {
    let own = device.create_buffer(&BufferDescriptor {
        label: Some(label),
        size: (floats.max(1) * 4) as u64,
        usage: BufferUsages::STORAGE | BufferUsages::COPY_DST | BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let handle = materials.add(ColumnsMaterial {
        world: Default::default(),
        values: own.clone(),
    });
    (own, handle)
}

/// Each frame: bind the kernel's buffer while the GPU backend runs on the renderer's device,
/// else ours, and write each new trace into ours.
pub(super) fn bind_values(
    view: Res<LlmView>,
    state: Res<WorldState>,
    mut values: ResMut<ColumnValues>,
    queue: Option<Res<RenderQueue>>,
    mut materials: ResMut<Assets<ColumnsMaterial>>,
) {
    let (Some(layout), Some(handle), Some(own), Some(queue)) = (
        state.layout,
        values.material.clone(),
        values.own.clone(),
        queue,
    ) else {
        return;
    };
    let floats = layout.layers * layout.neurons;
    let kernel = match &view.backend {
        Backend::Gpu {
            activations: Some(b),
            ..
        } if b.size() >= (floats * 4) as u64 => Some(b.clone()),
        _ => None,
    };
    let (path, want) = match kernel {
        Some(b) => {
            values.revision = None;
            values.uploaded.clear();
            (ValuesPath::Kernel, b)
        }
        None => {
            if values.revision != Some(view.revision) {
                values.revision = Some(view.revision);
                let data: Vec<f32> = match &view.trace {
                    Some(t) => (0..layout.layers)
                        .flat_map(|l| {
                            let row = t.layers.get(l).map(|x| &x.mlp_activation[..]);
                            (0..layout.neurons)
                                .map(move |n| row.and_then(|r| r.get(n)).copied().unwrap_or(0.0))
                        })
                        .collect(),
                    None => vec![0.0; floats],
                };
                queue.write_buffer(&own, 0, bytemuck::cast_slice(&data));
                values.uploaded = data;
            }
            (ValuesPath::Uploaded, (*own).clone())
        }
    };
    values.path = Some(path);
    upload_tiles(&view, &layout, &mut values, &queue);
    if values.bound.as_ref() != Some(&want)
        && let Some(mut m) = materials.get_mut(&handle)
    {
        m.values = Buffer::from(want.clone());
        values.bound = Some(want);
    }
}

/// Each new trace's attention weights into the tiles' buffer: tile (layer, head, slot) is the
/// weight on the `slot`-th of the newest `ATTENTION_POSITIONS` positions, `ABSENT` past them.
fn upload_tiles(
    view: &LlmView,
    layout: &super::WorldLayout,
    values: &mut ColumnValues,
    queue: &RenderQueue,
) {
    let Some(own) = values.tiles_own.as_ref() else {
        return;
    };
    if values.tiles_revision == Some(view.revision) {
        return;
    }
    values.tiles_revision = Some(view.revision);
    let mut data = vec![ABSENT; layout.layers * layout.heads * ATTENTION_POSITIONS];
    if let Some(t) = &view.trace {
        let first = (t.position + 1).saturating_sub(ATTENTION_POSITIONS);
        for (layer, lt) in t.layers.iter().enumerate().take(layout.layers) {
            for (head, row) in lt.attention.iter().enumerate().take(layout.heads) {
                for (slot, w) in row.iter().skip(first).take(ATTENTION_POSITIONS).enumerate() {
                    data[tile_index(layout.heads, layer, head, slot)] = *w;
                }
            }
        }
    }
    queue.write_buffer(own, 0, bytemuck::cast_slice(&data));
}

/// The bound buffer's contents, read back (for the screenshot's sidecar only: the draw never
/// reads it back). `None` in the browser, or when the device does not answer within 30 s.
pub fn read_bound(world: &World) -> Option<Vec<f32>> {
    #[cfg(target_arch = "wasm32")]
    {
        let _ = world;
        None
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let values = world.get_resource::<ColumnValues>()?;
        let device = world.get_resource::<RenderDevice>()?;
        let queue = world.get_resource::<RenderQueue>()?;
        let bound = values.bound.as_ref()?;
        let size = bound.size();
        let staging = device.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("world columns read-back (sidecar)"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = device
            .wgpu_device()
            .create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(bound, 0, &staging, 0, size);
        let index = queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r.is_ok());
        });
        device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: Some(std::time::Duration::from_secs(30)),
            })
            .ok()?;
        if !rx.recv_timeout(std::time::Duration::from_secs(30)).ok()? {
            return None;
        }
        let floats = bytemuck::pod_collect_to_vec::<u8, f32>(&staging.slice(..).get_mapped_range());
        staging.unmap();
        Some(floats)
    }
}
