//! The compute pipelines, one per kernel entry point of `shaders/llm/`, and the bind-group and
//! uniform helpers every dispatch is built with.

use wgpu::util::DeviceExt;

use super::shaders;
use super::upload::GpuMatrix;
use crate::quant::BlockType;

/// The compute pipelines, one per kernel entry point.
pub(crate) struct Kernels {
    pub(crate) embed: wgpu::ComputePipeline,
    q4_1: wgpu::ComputePipeline,
    q8_0: wgpu::ComputePipeline,
    q4_1_normed: wgpu::ComputePipeline,
    q8_0_normed: wgpu::ComputePipeline,
    q4_1_swiglu: wgpu::ComputePipeline,
    q8_0_swiglu: wgpu::ComputePipeline,
    pub(crate) normalize: wgpu::ComputePipeline,
    pub(crate) attention: wgpu::ComputePipeline,
    pub(crate) swiglu: wgpu::ComputePipeline,
    pub(crate) lens: wgpu::ComputePipeline,
    /// A prompt's batch (`prompt.rs`): embedding rows, matrix x matrix products, the keys and
    /// values stored, attention per token, SwiGLU per token.
    pub(crate) embed_rows: wgpu::ComputePipeline,
    mm_q4_1: wgpu::ComputePipeline,
    mm_q8_0: wgpu::ComputePipeline,
    pub(crate) store_rows: wgpu::ComputePipeline,
    pub(crate) attention_rows: wgpu::ComputePipeline,
    pub(crate) swiglu_rows: wgpu::ComputePipeline,
}

/// Where a mat-vec's 8-bit input comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// Already quantized in `xq` / `xds` (by `normalize`, attention or `swiglu`).
    Quantized,
    /// Made in workgroup memory: RMSNorm of a residual slot, quantized.
    Normed,
    /// Made in workgroup memory: silu(gate) * up from the gate/up product, quantized.
    Swiglu,
}

impl Kernels {
    /// The mat-vec entry point for `m`'s block format and its input.
    pub(crate) fn matvec(&self, m: &GpuMatrix, input: Input) -> &wgpu::ComputePipeline {
        match (m.ty, input) {
            (BlockType::Q4_1, Input::Quantized) => &self.q4_1,
            (BlockType::Q8_0, Input::Quantized) => &self.q8_0,
            (BlockType::Q4_1, Input::Normed) => &self.q4_1_normed,
            (BlockType::Q8_0, Input::Normed) => &self.q8_0_normed,
            (BlockType::Q4_1, Input::Swiglu) => &self.q4_1_swiglu,
            (BlockType::Q8_0, Input::Swiglu) => &self.q8_0_swiglu,
        }
    }

    /// The matrix x matrix entry point for `m`'s block format.
    pub(crate) fn matmul(&self, m: &GpuMatrix) -> &wgpu::ComputePipeline {
        match m.ty {
            BlockType::Q4_1 => &self.mm_q4_1,
            BlockType::Q8_0 => &self.mm_q8_0,
        }
    }

    /// The pipelines, reducing with subgroup operations when `subgroups` (`GpuContext::subgroups`).
    pub(crate) fn new(device: &wgpu::Device, subgroups: bool) -> Kernels {
        let module = |name: &str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(
                    shaders::compose(name, subgroups).unwrap_or_default().into(),
                ),
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
        let matmul = module("matmul");
        let (embed, attention, quantize) =
            (module("embed"), module("attention"), module("quantize"));
        Kernels {
            embed: pipeline(&embed, "main"),
            q4_1: pipeline(&matvec, "q4_1"),
            q8_0: pipeline(&matvec, "q8_0"),
            q4_1_normed: pipeline(&matvec, "q4_1_normed"),
            q8_0_normed: pipeline(&matvec, "q8_0_normed"),
            q4_1_swiglu: pipeline(&matvec, "q4_1_swiglu"),
            q8_0_swiglu: pipeline(&matvec, "q8_0_swiglu"),
            normalize: pipeline(&matvec, "normalize"),
            attention: pipeline(&attention, "main"),
            swiglu: pipeline(&quantize, "swiglu"),
            lens: pipeline(&module("lens"), "main"),
            embed_rows: pipeline(&embed, "rows"),
            mm_q4_1: pipeline(&matmul, "q4_1"),
            mm_q8_0: pipeline(&matmul, "q8_0"),
            store_rows: pipeline(&attention, "store_rows"),
            attention_rows: pipeline(&attention, "rows"),
            swiglu_rows: pipeline(&quantize, "swiglu_rows"),
        }
    }
}

/// Which residual row(s) a normed input reads (matvec.wgsl's `slot` and `from_step`).
#[derive(Clone, Copy)]
pub(crate) enum NormRows {
    /// This slot of the residual stream.
    Slot(u32),
    /// The slots step.first_slot + z.
    FromStep,
    /// The rows z of a prompt's batch.
    Batch,
}

/// matvec.wgsl's Dims, field by field (the WGSL struct says what each means); `words` gives the
/// uniform's twelve words.
#[derive(Clone, Copy, Default)]
pub(crate) struct MatvecDims {
    pub(crate) rows: u32,
    pub(crate) cols: u32,
    /// Add the residual stream at `res_offset` to the product.
    pub(crate) residual: bool,
    pub(crate) out_offset: u32,
    pub(crate) res_offset: u32,
    /// A normed input's rows.
    pub(crate) from: Option<NormRows>,
    pub(crate) eps: f32,
    /// Where the made input row is recorded (in floats), if it is.
    pub(crate) record: Option<u32>,
}

impl MatvecDims {
    /// A product of `rows` outputs over `cols`-wide rows; the other fields as needed.
    pub(crate) fn new(rows: u32, cols: u32) -> Self {
        MatvecDims {
            rows,
            cols,
            ..Default::default()
        }
    }

    pub(crate) fn words(&self) -> [u32; 12] {
        let (slot, from_step) = match self.from {
            None => (0, 0),
            Some(NormRows::Slot(slot)) => (slot, 0),
            Some(NormRows::FromStep) => (0, 1),
            Some(NormRows::Batch) => (0, 2),
        };
        [
            self.rows,
            self.cols,
            u32::from(self.residual),
            self.out_offset,
            self.res_offset,
            slot,
            from_step,
            self.eps.to_bits(),
            u32::from(self.record.is_some()),
            self.record.unwrap_or(0),
            0,
            0,
        ]
    }
}

/// matvec.wgsl's Dims for an input made from residual rows `cols` wide: `rows` outputs, RMSNorm's
/// `eps`, the rows `from`, the normed row recorded at `record` (in floats) if given.
pub(crate) fn norm_dims(
    rows: u32,
    cols: usize,
    eps: f64,
    from: NormRows,
    record: Option<u32>,
) -> [u32; 12] {
    MatvecDims {
        from: Some(from),
        eps: eps as f32,
        record,
        ..MatvecDims::new(rows, cols as u32)
    }
    .words()
}

/// The buffers of matvec.wgsl's `normalize`: RMSNorm of `resid`'s rows times `weight`, quantized
/// into `xq` / `xds` (`record`: where a recorded row goes; `dims` from `norm_dims`).
pub(crate) struct NormBuffers<'a> {
    pub(crate) dims: &'a wgpu::Buffer,
    pub(crate) step: &'a wgpu::Buffer,
    pub(crate) resid: &'a wgpu::Buffer,
    pub(crate) weight: &'a wgpu::Buffer,
    pub(crate) record: &'a wgpu::Buffer,
    pub(crate) xq: &'a wgpu::Buffer,
    pub(crate) xds: &'a wgpu::Buffer,
}

impl NormBuffers<'_> {
    /// The `normalize` dispatch's bind group over these buffers.
    pub(crate) fn group(&self, device: &wgpu::Device, kernels: &Kernels) -> wgpu::BindGroup {
        bind_group(
            device,
            &kernels.normalize,
            &[
                (4, self.dims),
                (5, self.step),
                (6, self.resid),
                (7, self.weight),
                (8, self.record),
                (9, self.xq),
                (10, self.xds),
            ],
        )
    }
}

/// A storage buffer of `floats` 32-bit words (at least one) that copies may read and write.
pub(crate) fn storage_buffer(device: &wgpu::Device, label: &str, floats: usize) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (floats.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// A kernel's small per-dispatch constants.
pub(crate) fn uniform_buffer(device: &wgpu::Device, words: &[u32]) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("dims"),
        contents: bytemuck::cast_slice(words),
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

/// A bind group for `pipeline`'s group 0: (binding, buffer) pairs, whole buffers.
pub(crate) fn bind_group(
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
