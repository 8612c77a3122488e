//! The backend interface: where a forward pass runs. The CPU engine (`Model`) and the GPU
//! kernels (`gpu::GpuModel`) both take tokens and a KV cache and give the same
//! [`ForwardOutput`]: next-token logits and, when asked, the [`Trace`](super::Trace). The
//! interface names neither: each backend keeps its own cache type inside a [`Cache`].

use std::any::Any;

use super::config::LlamaConfig;
use super::error::{LlmError, Result};
use super::tokenizer::LlmTokenizer;
use super::trace::{RecordOptions, Trace};

/// What a forward pass returns: the next-token logits of the last position, and the trace.
#[derive(Debug)]
pub struct ForwardOutput {
    pub logits: Vec<f32>,
    pub trace: Option<Trace>,
}

/// A backend's own KV cache (the CPU engine's `KvCache`, the GPU's `GpuCache`).
pub trait CacheStore: Any + Send + std::fmt::Debug {
    /// Positions held.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session's KV cache, held where its backend computes.
#[derive(Debug)]
pub struct Cache(Box<dyn CacheStore>);

impl Cache {
    pub fn new(store: impl CacheStore) -> Self {
        Cache(Box::new(store))
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The backend's own cache, if this is one of its kind; else an error naming `backend`.
    pub fn get_mut<T: CacheStore>(&mut self, backend: &str) -> Result<&mut T> {
        let store: &mut dyn Any = self.0.as_mut();
        store.downcast_mut::<T>().ok_or_else(|| {
            LlmError::Gpu(format!(
                "this KV cache was made by another backend than {backend}"
            ))
        })
    }
}

/// Every backend's check before a forward pass: `tokens` new positions after the `cached` ones
/// fit a cache of `context` positions.
pub(crate) fn check_span(tokens: usize, cached: usize, context: usize) -> Result<()> {
    if tokens == 0 {
        return Err(LlmError::EmptyPrompt);
    }
    if cached + tokens > context {
        return Err(LlmError::PromptTooLong {
            tokens: cached + tokens,
            context,
        });
    }
    Ok(())
}

pub trait Backend: Send + Sync {
    fn config(&self) -> &LlamaConfig;

    /// Positions one cache of this backend holds.
    fn context_length(&self) -> usize {
        self.config().context_length
    }

    fn new_cache(&self) -> Result<Cache>;

    /// Run `tokens` at positions `cache.len()..`, extending the cache; the logits after the
    /// last token and, if asked, its trace.
    fn forward(
        &self,
        cache: &mut Cache,
        tokens: &[u32],
        record: RecordOptions,
        tokenizer: Option<&LlmTokenizer>,
    ) -> Result<ForwardOutput>;

    /// What runs it, for the UI and the command line ("CPU (2 threads)", "GPU: ...").
    fn describe(&self) -> String;

    /// A fault that fails every step from now on (the GPU device was lost), if one came: a
    /// server's health check reports it, so the instance is replaced rather than kept.
    fn fault(&self) -> Option<String> {
        None
    }
}
