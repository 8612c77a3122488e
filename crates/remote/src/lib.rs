//! Remote inference, engine-free: clients for an Ollama server (as in the talk, on Cloud Run), any
//! OpenAI-compatible server, and `samemath serve`. Each streams the same step type the local
//! engine yields, filled with what the server gives (text always; log-probabilities where the
//! server has them; the full `Trace` only from `samemath serve`), and says what it lacks.
//!
//! Cloud Run: a bearer token from the caller, `$SAMEMATH_REMOTE_TOKEN`, or a command
//! (`$SAMEMATH_TOKEN_COMMAND`, else `gcloud auth print-identity-token` for https URLs); one retry
//! with a fresh token from that command on 401/403; a first-byte timeout (120 s by
//! default) with a "waking the service" status each second while a cold instance starts, and
//! the same bound on each wait for the next token and on reading a whole JSON answer; jittered
//! retries on 429/503/504 before the first token only; cancel at any time. What a server sends
//! is bounded (lines, text, reasoning, token pieces, alternatives, prompt tokens, embeddings,
//! a trace's shape) and shown shortened.

mod api;
mod client;
mod records;
pub mod stream;
mod token;
mod trace_line;
mod wait;

pub use api::{
    ApiKind, Capabilities, RemoteConfig, RemoteError, RemoteEvent, RemoteStep, RemoteSummary,
    ServerInfo, shown_url, stop_from_finish,
};
pub use client::RemoteClient;
pub use llm::TraceStep;
/// Waiting without blocking the page (the app's worker uses it in the browser build).
#[cfg(target_arch = "wasm32")]
pub use wait::sleep;
