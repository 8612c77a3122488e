//! Ollama's generation routes, /api/generate and /api/chat: prompt text in, NDJSON (or one object) out, with Ollama's final statistics.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use llm::StopReason;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::generate::{AnswerOptions, GenItem, chat_text, sampling, start, text_request};
use crate::state::MODEL_NAME;
use crate::state::{Shared, ready};
use crate::stops::Stops;
use crate::wire::{
    Failure, error, finish, ndjson_line, next_item, now_rfc3339, parse_body, send_line,
};

/// Ollama's two generation routes share this: prompt text in, NDJSON (or one object) out.
pub(crate) async fn ollama_common(state: Shared, body: Value, chat: bool) -> Response {
    let l = match ready(&state).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if let Some(m) = body["model"].as_str()
        && !m.is_empty()
        && m != MODEL_NAME
        && !m.starts_with("smollm2")
    {
        return error(
            StatusCode::NOT_FOUND,
            format!("model {m:?} not found; this server has {MODEL_NAME}"),
        );
    }
    let (sampling, max) = sampling(&body);
    let prompt = if chat {
        match chat_text(&l.tokenizer, &body["messages"]) {
            Ok(t) => t,
            Err(r) => return r,
        }
    } else {
        let p = match &body["prompt"] {
            Value::String(p) => p.as_str(),
            Value::Null => "",
            _ => return error(StatusCode::BAD_REQUEST, "prompt: a string"),
        };
        if body["raw"].as_bool() == Some(true) {
            p.to_string()
        } else {
            l.tokenizer.chat_prompt(p)
        }
    };
    let mut stops = match Stops::read(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let AnswerOptions {
        stream,
        logprobs,
        top_n,
    } = AnswerOptions::read(&body, true);
    let mut rx = match start(
        &state,
        l,
        text_request(prompt, sampling, max),
        state.options.max_prompt_tokens,
        top_n,
    )
    .await
    {
        Ok(rx) => rx,
        Err(r) => return r,
    };
    let started = Instant::now();
    let load_ns = (l.load_secs * 1e9) as u64;
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
    let model = body["model"].as_str().unwrap_or(MODEL_NAME).to_string();
    let tokenizer = l.tokenizer.clone();
    let collect = tokio::spawn(async move {
        // A streamed line with a piece of the answer.
        let partial = |piece: &str| {
            let mut v = json!({"model": model, "created_at": now_rfc3339(), "done": false});
            if chat {
                v["message"] = json!({"role": "assistant", "content": piece});
            } else {
                v["response"] = json!(piece);
            }
            v
        };
        let mut text = String::new();
        let mut count = 0u64;
        let mut prompt_count = 0usize;
        let mut first_token = None;
        let mut done_reason = "stop";
        let mut all_logprobs = Vec::new();
        // Streamed: the entries of tokens whose text has not gone out yet (part of a
        // character, or held back as the possible start of a stop string) go with the next
        // line, so every token's entry is sent.
        let mut unsent_logprobs = Vec::new();
        while let Some(item) = next_item(&mut rx, stream.then_some(&out_tx)).await {
            let GenItem {
                step,
                prompt_len,
                logprob,
                top,
            } = match item {
                Ok(x) => x,
                Err(f) => {
                    let line = ndjson_line(&json!({"error": f.message}));
                    let _ = send_line(&out_tx, line).await;
                    return Err(f);
                }
            };
            prompt_count = prompt_len;
            first_token.get_or_insert_with(Instant::now);
            count += 1;
            if matches!(step.stop, Some(StopReason::MaxTokens | StopReason::Context)) {
                done_reason = "length";
            }
            let (piece, stopped) = stops.push(&step.text);
            if stopped {
                done_reason = "stop";
            }
            text.push_str(&piece);
            if logprobs {
                let alts: Vec<Value> = top
                    .iter()
                    .map(|(t, l)| json!({"token": t, "logprob": l}))
                    .collect();
                let entry = json!({"token": tokenizer.piece(step.token.id), "logprob": logprob,
                                   "top_logprobs": alts});
                all_logprobs.push(entry.clone());
                unsent_logprobs.push(entry);
            }
            if stream && !piece.is_empty() {
                let mut v = partial(&piece);
                if logprobs {
                    v["logprobs"] = json!(std::mem::take(&mut unsent_logprobs));
                }
                if let Err(e) = send_line(&out_tx, ndjson_line(&v)).await {
                    return Err(Failure::gone(e));
                }
            }
            // A stop string ends the answer (dropping the channel ends the generation).
            if stopped {
                break;
            }
        }
        // Text held back because it might have begun a stop string, which it did not.
        let rest = stops.rest();
        text.push_str(&rest);
        if stream && (!rest.is_empty() || !unsent_logprobs.is_empty()) {
            let mut v = partial(&rest);
            if logprobs {
                v["logprobs"] = json!(unsent_logprobs);
            }
            if let Err(e) = send_line(&out_tx, ndjson_line(&v)).await {
                return Err(Failure::gone(e));
            }
        }
        let total = started.elapsed().as_nanos() as u64;
        let eval_ns = first_token
            .map_or(0, |t| t.elapsed().as_nanos() as u64)
            .max(1);
        let mut last = json!({
            "model": model, "created_at": now_rfc3339(), "done": true, "done_reason": done_reason,
            "total_duration": total, "load_duration": load_ns, "prompt_eval_count": prompt_count,
            "prompt_eval_duration": total.saturating_sub(eval_ns), "eval_count": count,
            "eval_duration": eval_ns,
        });
        if stream {
            if chat {
                last["message"] = json!({"role": "assistant", "content": ""});
            } else {
                last["response"] = json!("");
            }
            let _ = send_line(&out_tx, ndjson_line(&last)).await;
        } else {
            if chat {
                last["message"] = json!({"role": "assistant", "content": text});
            } else {
                last["response"] = json!(text);
            }
            if logprobs {
                last["logprobs"] = json!(all_logprobs);
            }
        }
        Ok(last)
    });
    finish(stream, out_rx, collect, "application/x-ndjson").await
}

pub(crate) async fn ollama_generate(State(state): State<Shared>, body: Bytes) -> Response {
    match parse_body(&body) {
        Ok(v) => ollama_common(state, v, false).await,
        Err(r) => r,
    }
}

pub(crate) async fn ollama_chat(State(state): State<Shared>, body: Bytes) -> Response {
    match parse_body(&body) {
        Ok(v) => ollama_common(state, v, true).await,
        Err(r) => r,
    }
}
