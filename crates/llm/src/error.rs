//! The LLM room's errors: each names its cause and, where there is one, what to do.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LlmError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a GGUF file ({reason})")]
    NotGguf { path: PathBuf, reason: String },
    #[error("the model's architecture is {0:?}; samemath runs llama-architecture GGUF files")]
    NotLlama(String),
    #[error("GGUF metadata {key}: {reason}")]
    Metadata { key: String, reason: String },
    #[error("tensor {name}: {reason} (the file's tensors do not match its metadata)")]
    Tensor { name: String, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the prompt has {tokens} tokens; the model's context holds {context}")]
    PromptTooLong { tokens: usize, context: usize },
    #[error("{0}")]
    Fetch(String),
    #[error(
        "{path}: sha256 is {actual}, expected {expected}; the file is damaged or a different one. \
         Delete it and run `samemath fetch-model` again"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// The GPU backend cannot run here or failed; the CPU backend still can.
    #[error("GPU: {0}")]
    Gpu(String),
    /// Browser build: the GPU's results for this step are not back yet; call again on a later
    /// frame (nothing was consumed).
    #[error("the GPU's results for this step are still on their way")]
    GpuPending,
    #[error("tensor computation: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, LlmError>;
