//! /api/embed and /v1/embeddings: the mean of each input's token embedding rows, unit length.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::MODEL_NAME;
use crate::state::{Shared, loaded};
use crate::wire::{error, parse_body};

/// Mean of the input's token embedding rows, unit length (documented in /api/show).
pub(crate) async fn embed(State(state): State<Shared>, body: Bytes) -> Response {
    let l = match loaded(&state) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let inputs: Vec<String> = match &v["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "input: a string or a list of strings",
            );
        }
    };
    let mut out = Vec::new();
    for text in &inputs {
        let ids = match l.tokenizer.encode(text) {
            Ok(ids) if !ids.is_empty() => ids,
            Ok(_) => return error(StatusCode::BAD_REQUEST, "an input is empty"),
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let mut mean = vec![0f32; l.model.config.n_embd];
        for id in &ids {
            if let Ok(row) = l.model.embedding_row(*id) {
                for (m, r) in mean.iter_mut().zip(row) {
                    *m += r / ids.len() as f32;
                }
            }
        }
        let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        mean.iter_mut().for_each(|x| *x /= norm);
        out.push(mean);
    }
    axum::Json(json!({
        "model": MODEL_NAME,
        "embeddings": out,
        "object": "list",
        "data": out.iter().enumerate().map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e})).collect::<Vec<_>>(),
    }))
    .into_response()
}
