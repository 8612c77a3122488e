//! /api/trace: every internal of each step as NDJSON, one `TraceStep` per generated token (the JSON of `samemath trace`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use llm::{GenerationRequest, RecordOptions, TraceStep};
use serde_json::json;
use tokio::sync::mpsc;

use crate::args::limits;
use crate::generate::{GenItem, start};
use crate::state::{Shared, loaded};
use crate::wire::{error, ndjson_line, send_line, stream_body};

/// Every internal of each step, NDJSON, one `TraceStep` per generated token.
pub(crate) async fn trace(State(state): State<Shared>, body: Bytes) -> Response {
    let l = match loaded(&state) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let mut request: GenerationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected a generation request (prompt, chat, max_tokens, sampling, record): {e}"
                ),
            );
        }
    };
    request.record = RecordOptions::FULL;
    request.max_tokens = request.max_tokens.clamp(1, 1024);
    let prompt_cap = state
        .options
        .max_prompt_tokens
        .min(limits::TRACE_PROMPT_TOKENS);
    let mut rx = match start(&state, l, request, prompt_cap).await {
        Ok(rx) => rx,
        Err(r) => return r,
    };
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            let line = match item {
                Ok(GenItem { step, .. }) => {
                    let s = TraceStep {
                        step: step.index,
                        sampled: step.token,
                        stop: step.stop,
                        text: step.text,
                        trace: step.trace,
                    };
                    serde_json::to_value(&s).unwrap_or_default()
                }
                Err(e) => json!({"error": e}),
            };
            if send_line(&out_tx, ndjson_line(&line)).await.is_err() {
                return;
            }
        }
    });
    stream_body(out_rx, "application/x-ndjson")
}
