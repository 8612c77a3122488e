//! /api/trace: the internals of each step as NDJSON: first the prompt as the model reads it
//! (`{"prompt": {"tokens": [...], "embeddings": [[...]]}}`: the ids and pieces after the
//! template, and each one's embedding row), then one `TraceStep` per generated token (the JSON
//! of `samemath trace`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use llm::{GenerationRequest, RecordOptions, TraceStep};
use serde_json::json;
use tokio::sync::mpsc;

use crate::generate::{GenItem, start};
use crate::state::{Shared, ready};
use crate::wire::{error, ndjson_line, next_item, send_line, stream_body};

/// Each step with what the request records (everything, for the app), NDJSON, one `TraceStep`
/// per generated token.
pub(crate) async fn trace(State(state): State<Shared>, body: Bytes) -> Response {
    let l = match ready(&state).await {
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
    // What the request asks to record (nothing, for a client that only wants the text and
    // the tokens' ids), with at most as many top tokens as a full trace holds.
    request.record.top_k = request.record.top_k.min(RecordOptions::FULL.top_k);
    request.max_tokens = request.max_tokens.clamp(1, 1024);
    let prompt_cap = state
        .options
        .max_prompt_tokens
        .min(llm::trace::MAX_TRACE_PROMPT_TOKENS);
    let (tokenizer, model) = (l.tokenizer.clone(), l.model.clone());
    let (text, chat) = (request.prompt.clone(), request.chat);
    let mut rx = match start(&state, l, request, prompt_cap, 0).await {
        Ok(rx) => rx,
        Err(r) => return r,
    };
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        // The prompt's tokens and embedding rows (its length was checked by `start`).
        let prompt = tokio::task::spawn_blocking(move || {
            let text = if chat {
                tokenizer.chat_prompt(&text)
            } else {
                text
            };
            let ids = tokenizer.encode(&text).unwrap_or_default();
            let tokens: Vec<_> = ids
                .iter()
                .map(|&id| json!({"id": id, "piece": tokenizer.piece(id)}))
                .collect();
            let embeddings: Vec<Vec<f32>> = ids
                .iter()
                .filter_map(|&id| model.embedding_row(id).ok())
                .collect();
            json!({"prompt": {"tokens": tokens, "embeddings": embeddings}})
        })
        .await
        .unwrap_or_else(|e| json!({"error": format!("reading the prompt's tokens: {e}")}));
        if send_line(&out_tx, ndjson_line(&prompt)).await.is_err() {
            return;
        }
        while let Some(item) = next_item(&mut rx, Some(&out_tx)).await {
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
                Err(f) => json!({"error": f.message}),
            };
            if send_line(&out_tx, ndjson_line(&line)).await.is_err() {
                return;
            }
        }
    });
    stream_body(out_rx, "application/x-ndjson")
}
