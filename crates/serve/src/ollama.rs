//! Ollama's generation routes, /api/generate and /api/chat: prompt text in, NDJSON (or one object) out, with Ollama's final statistics.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use llm::StopReason;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::generate::{
    AnswerOptions, GenItem, chat_text, check_prompt_length, sampling, start, text_request,
};
use crate::reqlog::Ledger;
use crate::state::MODEL_NAME;
use crate::state::{Shared, ready};
use crate::stops::Stops;
use crate::wire::{
    Failure, error, finish, ndjson_line, next_item, now_rfc3339, parse_body, send_line,
};

/// Ollama's two generation routes share this: prompt text in, NDJSON (or one object) out.
pub(crate) async fn ollama_common(
    state: Shared,
    body: Value,
    chat: bool,
    ledger: Ledger,
) -> Response {
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
    let model = body["model"].as_str().unwrap_or(MODEL_NAME).to_string();
    let AnswerOptions {
        stream,
        logprobs,
        top_n,
    } = AnswerOptions::read(&body, true);
    // Ollama's way to load a model (or, with `keep_alive: 0`, unload it): /api/generate with
    // no prompt, /api/chat with no messages. Nothing is generated: the answer is one object
    // (streamed: one line), done, with the reason.
    if asks_nothing(&body, chat) {
        if is_zero_duration(&body["keep_alive"]) {
            // This server keeps its one model for its life: there is nothing to unload.
            return done_at_once(&model, chat, stream, "unload", json!({}));
        }
        // Loaded: the answer comes once the model is (as Ollama's does).
        return match ready(&state).await {
            Ok(_) => done_at_once(&model, chat, stream, "load", json!({})),
            Err(r) => r,
        };
    }
    let l = match ready(&state).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let (sampling, max) = sampling(&body);
    let prompt = if chat {
        match chat_text(&l.tokenizer, &body["messages"]) {
            Ok(t) => t,
            Err(r) => return r,
        }
    } else {
        // (No prompt at all was the load above.)
        let Value::String(p) = &body["prompt"] else {
            return error(StatusCode::BAD_REQUEST, "prompt: a string");
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
    let load_ns = (l.load_secs * 1e9) as u64;
    let request = text_request(prompt, sampling, max);
    let max_prompt = state.options.max_prompt_tokens;
    // `num_predict: 0`: no tokens, at once (the prompt checked and counted, no slot taken).
    if max == Some(0) {
        let started = Instant::now();
        let counted = match check_prompt_length(l, &request, max_prompt).await {
            Ok(n) => n,
            Err(r) => return r,
        };
        let stats = json!({
            "total_duration": started.elapsed().as_nanos() as u64, "load_duration": load_ns,
            "prompt_eval_count": counted, "prompt_eval_duration": 0, "eval_count": 0,
            "eval_duration": 0,
        });
        return done_at_once(&model, chat, stream, "length", stats);
    }
    let mut rx = match start(&state, l, request, max_prompt, top_n, &ledger).await {
        Ok(rx) => rx,
        Err(r) => return r,
    };
    let started = Instant::now();
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
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

/// Whether a request asks for nothing to be generated: /api/generate without a prompt (absent,
/// null or ""), /api/chat without messages (absent, null or []), as Ollama reads them.
fn asks_nothing(body: &Value, chat: bool) -> bool {
    if chat {
        match &body["messages"] {
            Value::Null => true,
            Value::Array(list) => list.is_empty(),
            _ => false,
        }
    } else {
        match &body["prompt"] {
            Value::Null => true,
            Value::String(p) => p.is_empty(),
            _ => false,
        }
    }
}

/// Whether Ollama's `keep_alive` says zero (unload now): a number of seconds that is 0, or a Go
/// duration string worth nothing ("0", "0s", "0m", "0.0h", ...). Anything else keeps the model.
fn is_zero_duration(keep_alive: &Value) -> bool {
    match keep_alive {
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => {
            let mut zeros = 0;
            let zero = s
                .trim()
                .trim_start_matches(['+', '-'])
                .chars()
                .all(|c| match c {
                    '0' => {
                        zeros += 1;
                        true
                    }
                    // Go's units: ns, us, µs, μs, ms, s, m, h.
                    '.' | 'n' | 'u' | '\u{b5}' | '\u{3bc}' | 'm' | 's' | 'h' => true,
                    _ => false,
                });
            zero && zeros > 0
        }
        _ => false,
    }
}

/// An answer with no tokens, given at once: `done`, the reason (`load`, `unload`, `length`)
/// and `extra` fields; no text. Streamed: that object as the one NDJSON line.
fn done_at_once(model: &str, chat: bool, stream: bool, reason: &str, extra: Value) -> Response {
    let mut v = json!({"model": model, "created_at": now_rfc3339(), "done": true,
                       "done_reason": reason});
    if chat {
        v["message"] = json!({"role": "assistant", "content": ""});
    } else {
        v["response"] = json!("");
    }
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    if !stream {
        return axum::Json(v).into_response();
    }
    let mut r = Response::new(Body::from(ndjson_line(&v)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r
}

pub(crate) async fn ollama_generate(
    State(state): State<Shared>,
    Extension(ledger): Extension<Ledger>,
    body: Bytes,
) -> Response {
    match parse_body(&body) {
        Ok(v) => ollama_common(state, v, false, ledger).await,
        Err(r) => r,
    }
}

pub(crate) async fn ollama_chat(
    State(state): State<Shared>,
    Extension(ledger): Extension<Ledger>,
    body: Bytes,
) -> Response {
    match parse_body(&body) {
        Ok(v) => ollama_common(state, v, true, ledger).await,
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_prompt_and_no_messages_ask_for_nothing() {
        for (body, chat) in [
            (json!({}), false),
            (json!({"prompt": null}), false),
            (json!({"prompt": ""}), false),
            (json!({}), true),
            (json!({"messages": null}), true),
            (json!({"messages": []}), true),
        ] {
            assert!(asks_nothing(&body, chat), "{body}");
        }
        for (body, chat) in [
            (json!({"prompt": " "}), false),
            (json!({"prompt": 3}), false),
            (
                json!({"messages": [{"role": "user", "content": "hi"}]}),
                true,
            ),
            (json!({"messages": "hi"}), true),
            // Each route reads its own field.
            (json!({"messages": [], "prompt": "hi"}), false),
        ] {
            assert!(!asks_nothing(&body, chat), "{body}");
        }
    }

    #[test]
    fn keep_alive_zero_is_read_as_go_reads_it() {
        for zero in [
            json!(0),
            json!(0.0),
            json!("0"),
            json!("0s"),
            json!("0m"),
            json!("0.0h"),
            json!("0ms"),
            json!("0\u{b5}s"),
            json!("-0s"),
            json!("0h0m0s"),
        ] {
            assert!(is_zero_duration(&zero), "{zero}");
        }
        for kept in [
            json!(null),
            json!(-1),
            json!(5),
            json!("5m"),
            json!("-1"),
            json!("10s"),
            json!(""),
            json!("s"),
            json!(false),
        ] {
            assert!(!is_zero_duration(&kept), "{kept}");
        }
    }
}
