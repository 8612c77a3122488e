//! The GPU's KV cache of one session: per layer, keys and values of every position so far, with
//! the attention kernel's bind group over them.

use super::model::GpuModel;
use crate::error::{LlmError, Result};

/// The GPU's KV cache of one session: per layer, keys and values of every position so far.
pub struct GpuCache {
    pub(crate) attention: Vec<wgpu::BindGroup>,
    /// Per layer, a prompt batch's `store_rows` and `rows` groups over the same keys and values.
    pub(crate) prompt: Vec<[wgpu::BindGroup; 2]>,
    pub(crate) len: usize,
    /// The model whose scratch buffers the bind groups use.
    pub(crate) owner: usize,
    /// Tells this cache from the model's other caches (a result in flight belongs to one).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) serial: u64,
    pub(crate) _buffers: Vec<wgpu::Buffer>,
}

/// Serial numbers of KV caches.
pub(crate) static CACHE_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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

impl GpuModel {
    pub fn new_gpu_cache(&self) -> Result<GpuCache> {
        let c = &self.config;
        let device = &self.ctx.device;
        let width = c.n_kv_head * c.head_dim;
        let mut buffers = Vec::new();
        let mut attention = Vec::new();
        let mut prompt = Vec::new();
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
            prompt.push(
                self.prompt
                    .cache_groups(device, &self.kernels, &k, &v, &dims),
            );
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
            prompt,
            len: 0,
            owner: self.id(),
            serial: CACHE_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            _buffers: buffers,
        })
    }
}

impl crate::backend::CacheStore for GpuCache {
    fn len(&self) -> usize {
        self.len
    }
}
