//! The LLM room, engine-free (no Bevy): the GGUF model file and where it comes from, the
//! tokenizer from the file's own vocabulary, the instrumented llama forward that records a
//! `Trace` (on the CPU, or as WGSL kernels on a wgpu device), sampling, and the streaming
//! generation session every front end drives.

pub mod backend;
pub mod config;
pub mod error;
pub mod fetch;
pub mod gpu;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod session;
pub mod tokenizer;
pub mod trace;
pub mod worker;

pub use backend::{Backend, Cache};
pub use config::LlamaConfig;
pub use error::{LlmError, Result};
pub use model::{KvCache, Model};
pub use sampling::{Sampler, SamplingParams};
pub use session::{CancelToken, GenerationRequest, Session, Step, StopReason};
pub use tokenizer::LlmTokenizer;
pub use trace::{LayerTrace, RecordOptions, TokenInfo, TokenProb, Trace};
