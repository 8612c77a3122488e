//! /api/embed and /v1/embeddings: the mean of each input's token embedding rows, unit length.
//! Bounded: at most `EMBED_INPUTS` inputs and `EMBED_TOKENS` tokens a request, computed in a
//! slot on a blocking thread like any answer.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::args::limits::{EMBED_INPUTS, EMBED_TOKENS};
use crate::reqlog::Ledger;
use crate::slots::ticket;
use crate::state::MODEL_NAME;
use crate::state::{Shared, ready};
use crate::wire::{error, parse_body};

/// Mean of the input's token embedding rows, unit length (documented in /api/show).
pub(crate) async fn embed(State(state): State<Shared>, body: Bytes) -> Response {
    let l = match ready(&state).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let inputs: Vec<String> = match &v["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if a.len() > EMBED_INPUTS => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "input: {} strings; this server embeds at most {EMBED_INPUTS} a request",
                    a.len()
                ),
            );
        }
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "input: a string or a non-empty list of strings",
            );
        }
    };
    let ticket = match ticket(&state, &Ledger::off()).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (model, tokenizer) = (l.model.clone(), l.tokenizer.clone());
    let computed = tokio::task::spawn_blocking(move || {
        // The slot goes with the work: a client that leaves (hyper drops this handler) does
        // not free it while the inputs are still being read.
        let _ticket = ticket;
        let too_long =
            || format!("the inputs are longer than {EMBED_TOKENS} tokens in all (the limit)");
        let mut out = Vec::with_capacity(inputs.len());
        let mut tokens = 0usize;
        for text in &inputs {
            if llm::tokenizer::too_many_bytes_for(text, EMBED_TOKENS) {
                return Err(too_long());
            }
            let ids = match tokenizer.encode(text) {
                Ok(ids) if !ids.is_empty() => ids,
                Ok(_) => return Err("an input is empty".to_string()),
                Err(e) => return Err(e.to_string()),
            };
            tokens += ids.len();
            if tokens > EMBED_TOKENS {
                return Err(too_long());
            }
            let mut mean = vec![0f32; model.config.n_embd];
            for id in &ids {
                if let Ok(row) = model.embedding_row(*id) {
                    for (m, r) in mean.iter_mut().zip(row) {
                        *m += r / ids.len() as f32;
                    }
                }
            }
            let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            mean.iter_mut().for_each(|x| *x /= norm);
            out.push(mean);
        }
        Ok(out)
    })
    .await;
    let out = match computed {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let data: Vec<Value> = out
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e}))
        .collect();
    axum::Json(json!({
        "model": MODEL_NAME,
        "embeddings": out,
        "object": "list",
        "data": data,
    }))
    .into_response()
}
