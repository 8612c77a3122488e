//! The backend interface: where a forward pass runs. The CPU engine (`Model`) and the GPU
//! kernels (`gpu::GpuModel`) both take tokens and a KV cache and give the same
//! [`ForwardOutput`]: next-token logits and, when asked, the [`Trace`](super::Trace).

use super::config::LlamaConfig;
use super::error::{LlmError, Result};
use super::gpu::GpuCache;
use super::model::{ForwardOutput, KvCache, Model};
use super::tokenizer::LlmTokenizer;
use super::trace::RecordOptions;

/// A session's KV cache, held where its backend computes.
#[derive(Debug)]
pub enum Cache {
    Cpu(KvCache),
    Gpu(GpuCache),
}

impl Cache {
    /// Positions held.
    pub fn len(&self) -> usize {
        match self {
            Cache::Cpu(c) => c.len(),
            Cache::Gpu(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
}

impl Backend for Model {
    fn config(&self) -> &LlamaConfig {
        &self.config
    }

    fn new_cache(&self) -> Result<Cache> {
        Ok(Cache::Cpu(Model::new_cache(self)))
    }

    fn forward(
        &self,
        cache: &mut Cache,
        tokens: &[u32],
        record: RecordOptions,
        tokenizer: Option<&LlmTokenizer>,
    ) -> Result<ForwardOutput> {
        match cache {
            Cache::Cpu(kv) => Model::forward(self, kv, tokens, record, tokenizer),
            Cache::Gpu(_) => Err(LlmError::Gpu(
                "a GPU KV cache was handed to the CPU backend".into(),
            )),
        }
    }

    fn describe(&self) -> String {
        format!("CPU ({} threads)", rayon::current_num_threads())
    }
}
