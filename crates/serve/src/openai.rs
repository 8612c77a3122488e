//! OpenAI's /v1/chat/completions: SSE chunks (or one object) with `choices[].logprobs.content[]`.

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use llm::StopReason;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::generate::{AnswerOptions, GenItem, chat_text, sampling, start, text_request};
use crate::reqlog::Ledger;
use crate::state::MODEL_NAME;
use crate::state::{Shared, ready};
use crate::stops::Stops;
use crate::wire::{Failure, error, finish, next_item, parse_body, send_line, sse};

pub(crate) async fn openai_chat(
    State(state): State<Shared>,
    Extension(ledger): Extension<Ledger>,
    body: Bytes,
) -> Response {
    let l = match ready(&state).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let prompt = match chat_text(&l.tokenizer, &v["messages"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    // One choice an answer: a request for more is refused, not answered with one.
    if v["n"].as_u64().is_some_and(|n| n != 1) || !(v["n"].is_null() || v["n"].is_u64()) {
        return error(
            StatusCode::BAD_REQUEST,
            "n: this server gives one choice (n = 1)",
        );
    }
    if let Err(message) = check_max_tokens(&v) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let mut stops = match Stops::read(&v) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let (mut sampling, max) = sampling(&v);
    if v["temperature"].is_null() {
        sampling.temperature = 0.0;
    }
    let AnswerOptions {
        stream,
        logprobs,
        top_n,
    } = AnswerOptions::read(&v, false);
    let mut rx = match start(
        &state,
        l,
        text_request(prompt, sampling, max),
        state.options.max_prompt_tokens,
        top_n,
        &ledger,
    )
    .await
    {
        Ok(rx) => rx,
        Err(r) => return r,
    };
    let id = completion_id();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tokenizer = l.tokenizer.clone();
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
    let collect = tokio::spawn(async move {
        let mut text = String::new();
        let mut content_lps = Vec::new();
        let mut finish = "stop";
        let mut count = 0;
        let mut prompt_tokens = 0;
        let chunk = |delta: Value, lp: Option<Value>, finish: Option<&str>| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created,
                   "model": MODEL_NAME, "choices": [{"index": 0, "delta": delta,
                   "logprobs": lp.map(|l| json!({"content": [l]})), "finish_reason": finish}]})
        };
        if stream {
            let _ = send_line(
                &out_tx,
                sse(&chunk(
                    json!({"role": "assistant", "content": ""}),
                    None,
                    None,
                )),
            )
            .await;
        }
        while let Some(item) = next_item(&mut rx, stream.then_some(&out_tx)).await {
            let GenItem {
                step,
                prompt_len,
                logprob,
                top,
            } = match item {
                Ok(x) => x,
                Err(f) => {
                    let line = sse(&json!({"error": {"message": f.message}}));
                    let _ = send_line(&out_tx, line).await;
                    return Err(f);
                }
            };
            prompt_tokens = prompt_len;
            count += 1;
            if matches!(step.stop, Some(StopReason::MaxTokens | StopReason::Context)) {
                finish = "length";
            }
            if step.stop == Some(StopReason::EndToken) {
                continue;
            }
            let piece = tokenizer.piece(step.token.id);
            let lp = logprobs.then(|| {
                let alts: Vec<Value> = top
                    .iter()
                    .map(|(t, l)| json!({"token": t, "logprob": l, "bytes": t.as_bytes()}))
                    .collect();
                json!({"token": piece, "logprob": logprob, "bytes": piece.as_bytes(),
                       "top_logprobs": alts})
            });
            let (piece, stopped) = stops.push(&step.text);
            if stopped {
                finish = "stop";
            }
            text.push_str(&piece);
            if let Some(l) = &lp {
                content_lps.push(l.clone());
            }
            if stream {
                let line = sse(&chunk(json!({"content": piece}), lp, None));
                send_line(&out_tx, line).await.map_err(Failure::gone)?;
            }
            // A stop string ends the answer (dropping the channel ends the generation).
            if stopped {
                break;
            }
        }
        // Text held back because it might have begun a stop string, which it did not.
        let rest = stops.rest();
        text.push_str(&rest);
        if stream && !rest.is_empty() {
            let line = sse(&chunk(json!({"content": rest}), None, None));
            send_line(&out_tx, line).await.map_err(Failure::gone)?;
        }
        if stream {
            let _ = send_line(&out_tx, sse(&chunk(json!({}), None, Some(finish)))).await;
            let _ = send_line(&out_tx, Bytes::from_static(b"data: [DONE]\n\n")).await;
        }
        Ok(
            json!({"id": id, "object": "chat.completion", "created": created,
                "model": MODEL_NAME, "choices": [{"index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs.then(|| json!({"content": content_lps})),
                "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": count,
                          "total_tokens": prompt_tokens + count}}),
        )
    });
    finish(stream, out_rx, collect, "text/event-stream").await
}

/// OpenAI's `max_tokens` and `max_completion_tokens`, when given: a whole number of at least 1
/// (0 used to be read as 1, and a token generated that nobody asked for).
fn check_max_tokens(v: &Value) -> Result<(), String> {
    for key in ["max_tokens", "max_completion_tokens"] {
        let n = &v[key];
        if !n.is_null() && n.as_u64().is_none_or(|n| n == 0) {
            let got: String = n.to_string().chars().take(40).collect();
            return Err(format!(
                "{key}: a whole number of at least 1 (got {got}); leave it out for the \
                 server's default"
            ));
        }
    }
    Ok(())
}

/// A completion's id, different for every answer of this process (clients key messages by it).
fn completion_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("chatcmpl-{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn zero_or_bad_max_tokens_are_refused() {
        for key in ["max_tokens", "max_completion_tokens"] {
            for bad in [json!(0), json!(-3), json!(1.5), json!("8")] {
                let m = super::check_max_tokens(&json!({ key: bad })).unwrap_err();
                assert!(m.starts_with(key) && m.contains("at least 1"), "{m}");
            }
            for good in [json!(1), json!(4096), json!(100_000), json!(null)] {
                assert_eq!(super::check_max_tokens(&json!({ key: good })), Ok(()));
            }
        }
        assert_eq!(super::check_max_tokens(&json!({})), Ok(()));
    }

    #[test]
    fn each_answer_has_its_own_id() {
        let (a, b) = (super::completion_id(), super::completion_id());
        assert!(a.starts_with("chatcmpl-") && b.starts_with("chatcmpl-"));
        assert_ne!(a, b);
    }
}
