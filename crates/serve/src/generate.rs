//! The generation bridge both API dialects share: reading sampling and answer options, waiting for a slot, running a `Session` on a blocking thread, and the log-probabilities each step reports.

use axum::http::StatusCode;
use axum::response::Response;
use llm::{GenerationRequest, LlmTokenizer, RecordOptions, SamplingParams, Session, Step};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::slots::{Ticket, ticket};
use crate::state::{Loaded, Shared};
use crate::wire::error;

/// Sampling from Ollama `options` or OpenAI top-level fields (greedy unless asked).
pub(crate) fn sampling(v: &Value) -> (SamplingParams, Option<usize>) {
    let o = if v["options"].is_object() {
        &v["options"]
    } else {
        v
    };
    let mut s = SamplingParams::greedy();
    if let Some(t) = o["temperature"].as_f64() {
        s.temperature = t as f32;
    }
    if let Some(k) = o["top_k"].as_u64() {
        s.top_k = k as usize;
    }
    if let Some(p) = o["top_p"].as_f64() {
        s.top_p = p as f32;
    }
    if let Some(seed) = o["seed"].as_u64() {
        s.seed = seed;
    }
    if let Some(r) = o["repeat_penalty"].as_f64() {
        s.repeat_penalty = r as f32;
    }
    let max = o["num_predict"]
        .as_u64()
        .or(v["max_tokens"].as_u64())
        .or(v["max_completion_tokens"].as_u64())
        .map(|n| n as usize);
    (s.sanitized(), max)
}

/// ChatML for a list of `{role, content}` messages, with the template's default system line
/// when the first message is not a system message.
pub(crate) fn chat_text(tokenizer: &LlmTokenizer, messages: &Value) -> Result<String, Response> {
    let Some(list) = messages.as_array().filter(|l| !l.is_empty()) else {
        return Err(error(StatusCode::BAD_REQUEST, "messages: a non-empty list"));
    };
    let mut pairs = Vec::new();
    for m in list {
        let (Some(role), Some(content)) = (m["role"].as_str(), m["content"].as_str()) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "each message needs a string role and content",
            ));
        };
        pairs.push((role.to_string(), content.to_string()));
    }
    Ok(tokenizer.chat_messages(&pairs))
}

/// A plain-text generation request (the prompt already in its template), recording nothing.
pub(crate) fn text_request(
    prompt: String,
    sampling: SamplingParams,
    max: Option<usize>,
) -> GenerationRequest {
    GenerationRequest {
        prompt,
        chat: false,
        max_tokens: max.unwrap_or(256).clamp(1, 4096),
        sampling,
        record: RecordOptions::OFF,
    }
}

/// How both APIs ask to be answered: streamed or not, with how many log-probabilities.
pub(crate) struct AnswerOptions {
    pub(crate) stream: bool,
    pub(crate) logprobs: bool,
    pub(crate) top_n: usize,
}

impl AnswerOptions {
    pub(crate) fn read(v: &Value, stream_by_default: bool) -> Self {
        Self {
            stream: v["stream"].as_bool().unwrap_or(stream_by_default),
            logprobs: v["logprobs"].as_bool().unwrap_or(false),
            top_n: v["top_logprobs"].as_u64().unwrap_or(0).min(20) as usize,
        }
    }
}

/// Wait for a slot (or get the 503), then start generating.
pub(crate) async fn start(
    state: &Shared,
    l: &Loaded,
    request: GenerationRequest,
) -> Result<mpsc::Receiver<Result<GenItem, String>>, Response> {
    let ticket = ticket(state).await?;
    Ok(spawn_generation(l, request, ticket))
}

/// One generated token with what the APIs report about it.
pub(crate) struct GenItem {
    pub(crate) step: Step,
    pub(crate) prompt_len: usize,
    /// The sampled token's natural-log probability (temperature 1).
    pub(crate) logprob: f32,
    /// The 5 best tokens and their log-probabilities.
    pub(crate) top: Vec<(String, f32)>,
}

/// Generate on a blocking thread; each step (or the error) goes through the channel.
pub(crate) fn spawn_generation(
    l: &Loaded,
    request: GenerationRequest,
    ticket: Ticket,
) -> mpsc::Receiver<Result<GenItem, String>> {
    let (tx, rx) = mpsc::channel(64);
    let (model, tokenizer) = (l.compute.clone(), l.tokenizer.clone());
    let threads = ticket.state.options.threads;
    let state = ticket.state.clone();
    tokio::task::spawn_blocking(move || {
        let _ticket = ticket;
        let run = || {
            let mut session = match Session::new(model, tokenizer, &request) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e.to_string()));
                    return;
                }
            };
            let prompt_len = session.prompt_tokens().len();
            let mut made = 0usize;
            loop {
                if state.must_cut() {
                    let _ = tx.blocking_send(Err(format!(
                        "the server is shutting down (SIGTERM): the answer was cut after {made} \
                         tokens; ask again"
                    )));
                    return;
                }
                made += 1;
                match session.step() {
                    Ok(Some(step)) => {
                        let item = GenItem {
                            top: top_logprobs(session.last_logits(), session.tokenizer(), 5),
                            logprob: logprob_of(session.last_logits(), step.token.id),
                            prompt_len,
                            step,
                        };
                        if tx.blocking_send(Ok(item)).is_err() {
                            return; // the client went away
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e.to_string()));
                        return;
                    }
                }
            }
        };
        match threads.and_then(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().ok()) {
            Some(pool) => pool.install(run),
            None => run(),
        }
    });
    rx
}

/// The `k` best tokens with natural-log probabilities (first entry: the best).
pub(crate) fn top_logprobs(
    logits: &[f32],
    tokenizer: &LlmTokenizer,
    k: usize,
) -> Vec<(String, f32)> {
    llm::model::top_k(logits, k)
        .into_iter()
        .map(|(id, _, p)| (tokenizer.piece(id), p.max(1e-30).ln()))
        .collect()
}

pub(crate) fn logprob_of(logits: &[f32], id: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    logits
        .get(id as usize)
        .map_or(f32::NEG_INFINITY, |l| l - max - sum.ln())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sampling_reads_both_dialects() {
        let (s, max) =
            sampling(&json!({"options": {"temperature": 0.7, "num_predict": 9, "seed": 3}}));
        assert_eq!((s.temperature, max, s.seed), (0.7, Some(9), 3));
        let (s, max) = sampling(&json!({"temperature": 0.0, "max_tokens": 4}));
        assert_eq!((s.temperature, max), (0.0, Some(4)));
    }
}
