//! The weights go up once as the GGUF file's raw Q4_1 / Q8_0 blocks (stacked where several
//! matrices read the same input), dequantized inside the kernels.

use std::io::{Read, Seek};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Content;
use wgpu::util::DeviceExt;

use super::context::GpuContext;
use crate::error::{LlmError, Result};
use crate::model::read_tensor;
use crate::quant::BlockType;

/// A weight matrix as the file's raw blocks.
pub(crate) struct GpuMatrix {
    pub(crate) buf: wgpu::Buffer,
    pub(crate) ty: BlockType,
    pub(crate) rows: u32,
    pub(crate) cols: u32,
}

pub(crate) struct LayerWeights {
    pub(crate) attn_norm: wgpu::Buffer,
    pub(crate) qkv: GpuMatrix,
    pub(crate) wo: GpuMatrix,
    pub(crate) ffn_norm: wgpu::Buffer,
    pub(crate) gate_up: GpuMatrix,
    pub(crate) down: GpuMatrix,
}

/// Reads the file's tensors as raw bytes.
pub(crate) struct Upload<'a, R> {
    pub(crate) content: &'a Content,
    pub(crate) reader: &'a mut R,
    pub(crate) ctx: &'a GpuContext,
    pub(crate) buffers: Vec<wgpu::Buffer>,
}

impl<R: Read + Seek> Upload<'_, R> {
    pub(crate) fn raw(&mut self, name: &str) -> Result<(GgmlDType, Vec<usize>, Vec<u8>)> {
        let t = read_tensor(self.content, self.reader, name)?;
        Ok((t.dtype(), t.shape().dims().to_vec(), t.data()?.into_owned()))
    }

    pub(crate) fn f32s(&mut self, name: &str) -> Result<wgpu::Buffer> {
        let v = read_tensor(self.content, self.reader, name)?
            .dequantize(&candle_core::Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        self.buffer(name, bytemuck::cast_slice(&v))
    }

    pub(crate) fn buffer(&mut self, name: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
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
    pub(crate) fn matrix(&mut self, names: &[String]) -> Result<GpuMatrix> {
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
