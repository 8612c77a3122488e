//! Routes about the server and its model: /health, /api/info, Ollama's /api/version, /api/tags and /api/show, OpenAI's /v1/models.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::MODEL_NAME;
use crate::state::{Loaded, Shared, loaded};

pub(crate) async fn health(State(state): State<Shared>) -> Response {
    match loaded(&state) {
        Ok(_) => axum::Json(json!({"status": "ok"})).into_response(),
        Err(r) => r,
    }
}

pub(crate) async fn info(State(state): State<Shared>) -> Response {
    axum::Json(json!({
        "samemath": env!("CARGO_PKG_VERSION"),
        "models": [MODEL_NAME],
        "loaded": state.loaded.get().is_some(),
        "capabilities": {"logprobs": true, "embeddings": true, "traces": true},
        "concurrency": state.options.concurrency,
        "compute": state.loaded.get().map(|l| l.compute.describe()),
    }))
    .into_response()
}

pub(crate) async fn version() -> Response {
    axum::Json(json!({"version": format!("0.12.11-samemath-{}", env!("CARGO_PKG_VERSION"))}))
        .into_response()
}

pub(crate) fn model_details(l: Option<&Loaded>) -> Value {
    let cfg = l.map(|l| &l.model.config);
    json!({
        "format": "gguf", "family": "llama", "families": ["llama"],
        "parameter_size": "135M", "quantization_level": "Q4_1",
        "context_length": cfg.map(|c| c.context_length),
        "embedding_length": cfg.map(|c| c.n_embd),
        "block_count": cfg.map(|c| c.n_layer),
    })
}

pub(crate) async fn tags(State(state): State<Shared>) -> Response {
    axum::Json(json!({"models": [{
        "name": MODEL_NAME, "model": MODEL_NAME,
        "modified_at": "2024-11-01T00:00:00Z", "size": 98_362_432u64,
        "digest": llm::fetch::MODEL_SHA256,
        "details": model_details(state.loaded.get()),
    }]}))
    .into_response()
}

pub(crate) async fn show(State(state): State<Shared>) -> Response {
    axum::Json(json!({
        "modelfile": "", "parameters": "", "template": "ChatML (the GGUF's chat template)",
        "details": model_details(state.loaded.get()),
        "model_info": {"general.architecture": "llama"},
        "capabilities": ["completion", "embedding"],
        "samemath": {"embedding": "mean of the prompt's token embedding rows, unit length",
                     "traces": "/api/trace"},
    }))
    .into_response()
}

pub(crate) async fn openai_models() -> Response {
    axum::Json(json!({"object": "list", "data": [
        {"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "samemath"}
    ]}))
    .into_response()
}
