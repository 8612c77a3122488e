//! Remote inference, engine-free: clients for an Ollama server (as in the talk, on Cloud Run), any
//! OpenAI-compatible server, and `samemath serve`. Each streams the same step type the local
//! engine yields, filled with what the server gives (text always; log-probabilities where the
//! server has them; the full `Trace` only from `samemath serve`), and says what it lacks.
//!
//! Cloud Run: a bearer token from the caller, `$SAMEMATH_REMOTE_TOKEN`, or a command
//! (`$SAMEMATH_TOKEN_COMMAND`, else `gcloud auth print-identity-token` for https URLs); one retry
//! with a fresh token from that command on 401/403; a first-byte timeout (120 s by
//! default) with a "waking the service" status each second while a cold instance starts;
//! jittered retries on 429/503/504 before the first token only; cancel at any time.

mod api;
mod client;
pub mod stream;
mod token;

pub use api::{
    ApiKind, Capabilities, RemoteConfig, RemoteError, RemoteEvent, RemoteStep, RemoteSummary,
    ServerInfo, shown_url, stop_from_finish,
};
pub use client::RemoteClient;
/// Waiting without blocking the page (the app's worker uses it in the browser build).
#[cfg(target_arch = "wasm32")]
pub use client::sleep;
pub use llm::TraceStep;
