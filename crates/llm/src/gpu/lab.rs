//! Single kernels on chosen inputs, for the tests that hold each kernel to its CPU twin (and
//! for anyone curious what one kernel does). Each call uploads its inputs, dispatches once and
//! reads the outputs back: slow, but every number is the kernel's own.

use wgpu::util::DeviceExt;

use super::context::GpuContext;
use super::kernels::{bind_group, uniform_buffer};
use super::readback::read_back;
use super::shaders;
use crate::error::{LlmError, Result};

/// A buffer for one binding: its contents, and whether to read it back afterwards.
pub enum Binding<'a> {
    /// Read-only or read-write storage, initialised from these words.
    Storage(&'a [u32]),
    /// Read-write storage of this many zeroed words, read back.
    Output(usize),
    /// Read-write storage initialised from these words, read back.
    InOut(&'a [u32]),
    Uniform(&'a [u32]),
}

/// Run entry point `entry` of kernel file `kernel` with `bindings` (binding i = slot i; `None`
/// leaves a binding the entry point does not use) on `workgroups`; the `Output` bindings come
/// back in order, as words.
pub fn run(
    ctx: &GpuContext,
    kernel: &str,
    entry: &str,
    bindings: &[Option<Binding>],
    workgroups: (u32, u32, u32),
) -> Result<Vec<Vec<u32>>> {
    let device = &ctx.device;
    let src = shaders::compose(kernel, ctx.subgroups)
        .ok_or_else(|| LlmError::Gpu(format!("no kernel named {kernel}")))?;
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(kernel),
        source: wgpu::ShaderSource::Wgsl(src.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module: &module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    });
    let mut buffers = Vec::new();
    let mut outputs = Vec::new();
    for (i, b) in bindings.iter().enumerate() {
        let Some(b) = b else { continue };
        let usage = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let buf = match b {
            Binding::Storage(words) => {
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: None,
                    contents: bytemuck::cast_slice(&padded(words)),
                    usage: usage | wgpu::BufferUsages::STORAGE,
                })
            }
            Binding::Output(_) | Binding::InOut(_) => {
                let init = match b {
                    Binding::InOut(words) => words.to_vec(),
                    _ => Vec::new(),
                };
                let n = match b {
                    Binding::Output(n) => *n,
                    _ => init.len(),
                };
                let mut contents = init;
                contents.resize(n.max(1), 0);
                let buf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: None,
                    contents: bytemuck::cast_slice(&contents),
                    usage: usage | wgpu::BufferUsages::STORAGE,
                });
                outputs.push((buf.clone(), n));
                buf
            }
            Binding::Uniform(words) => uniform_buffer(device, words),
        };
        buffers.push((i as u32, buf));
    }
    let entries: Vec<(u32, &wgpu::Buffer)> = buffers.iter().map(|(i, b)| (*i, b)).collect();
    let group = bind_group(device, &pipeline, &entries);
    let total: usize = outputs.iter().map(|(_, n)| n.max(&1)).sum();
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (total * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(workgroups.0, workgroups.1, workgroups.2);
    }
    let mut at = 0;
    for (buf, n) in &outputs {
        let len = (n.max(&1) * 4) as u64;
        enc.copy_buffer_to_buffer(buf, 0, &staging, at, len);
        at += len;
    }
    let index = ctx.queue.submit([enc.finish()]);
    let bytes = read_back(device, &ctx.interrupt, &staging, at, index);
    if let Some(e) = ctx.take_error() {
        return Err(LlmError::Gpu(format!("{kernel}::{entry}: {e}")));
    }
    let bytes = bytes?;
    let words: &[u32] = bytemuck::cast_slice(&bytes);
    let mut out = Vec::new();
    let mut from = 0;
    for (_, n) in &outputs {
        out.push(words[from..from + n].to_vec());
        from += n.max(&1);
    }
    Ok(out)
}

/// At least one word, plus one spare (a Q8_0 block's last word may straddle the end).
fn padded(words: &[u32]) -> Vec<u32> {
    let mut v = words.to_vec();
    v.push(0);
    v
}

/// f32 values as the words a binding holds.
pub fn words(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Words read back as f32.
pub fn floats(v: &[u32]) -> Vec<f32> {
    v.iter().map(|x| f32::from_bits(*x)).collect()
}

/// Raw bytes (a GGUF tensor's blocks) as words, zero-padded to a whole word.
pub fn bytes_to_words(b: &[u8]) -> Vec<u32> {
    b.chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}
