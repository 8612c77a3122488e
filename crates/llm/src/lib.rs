//! The LLM room (no Bevy, no egui, no tokio): the GGUF model file and where it comes from, the
//! tokenizer from the file's own vocabulary, the instrumented llama forward that records a
//! `Trace` (on the CPU, or as WGSL kernels on a wgpu device), sampling, and the streaming
//! generation session every front end drives (the app's worker, the command line, the server).

mod attend;
pub mod backend;
pub mod config;
pub mod error;
pub mod fetch;
pub mod gguf_check;
pub mod gpu;
mod lens;
pub use lens::Top1;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod session;
pub mod tokenizer;
pub mod trace;

pub use backend::{Backend, Cache};
pub use config::LlamaConfig;
pub use error::{LlmError, Result};
pub use model::{KvCache, Model};
pub use sampling::{Sampler, SamplingParams};
pub use session::{CancelToken, GenerationRequest, Session, Step, StopReason, TraceStep};
pub use tokenizer::LlmTokenizer;
pub use trace::{LayerTrace, RecordOptions, TokenInfo, TokenProb, Trace};
