//! The generation bridge both API dialects share: reading sampling and answer options, the
//! prompt's length, waiting for a slot, running a `Session` on a blocking thread (the prompt in
//! slices, a panic reported as an error line), and the log-probabilities each step reports.

use axum::http::StatusCode;
use axum::response::Response;
use llm::{
    GenerationRequest, LlmError, LlmTokenizer, RecordOptions, SamplingParams, Session, Step,
};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::args::limits;
use crate::log::Entry;
use crate::reqlog::Ledger;
use crate::slots::{Ticket, ticket};
use crate::state::{Loaded, Shared, panic_message};
use crate::wire::{Failure, error};

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
    // Ollama's -1 (no limit) and -2 (fill the context): as many as this server gives.
    let unlimited = o["num_predict"].as_i64().is_some_and(|n| n < 0);
    let max = o["num_predict"]
        .as_u64()
        .or(unlimited.then_some(limits::MAX_TOKENS as u64))
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
        let (Some(role), Some(content)) =
            (m["role"].as_str(), m.get("content").and_then(message_text))
        else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "each message needs a string role, and content that is text: a string, a list \
                 of {\"type\": \"text\", \"text\": ...} parts (this model reads text only), \
                 or null",
            ));
        };
        pairs.push((role.to_string(), content));
    }
    Ok(tokenizer.chat_messages(&pairs))
}

/// A message's content as text: a string; OpenAI's list of content parts, when every part is
/// text (joined); null (an assistant turn that only called tools) as nothing.
fn message_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                (Some("text"), Some(t)) => Some(t),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(|texts| texts.concat()),
        _ => None,
    }
}

/// A plain-text generation request (the prompt already in its template), recording nothing.
/// Zero tokens never gets here: Ollama's `num_predict: 0` is answered at once, OpenAI's
/// `max_tokens: 0` is a 400.
pub(crate) fn text_request(
    prompt: String,
    sampling: SamplingParams,
    max: Option<usize>,
) -> GenerationRequest {
    GenerationRequest {
        prompt,
        chat: false,
        max_tokens: max.unwrap_or(256).clamp(1, limits::MAX_TOKENS),
        sampling,
        record: RecordOptions::OFF,
    }
}

/// How both APIs ask to be answered: streamed or not, with how many log-probabilities.
pub(crate) struct AnswerOptions {
    pub(crate) stream: bool,
    pub(crate) logprobs: bool,
    /// Alternatives a token lists: `top_logprobs` (at most `limits::TOP_LOGPROBS`), 0 without
    /// `logprobs` (none are computed then).
    pub(crate) top_n: usize,
}

impl AnswerOptions {
    pub(crate) fn read(v: &Value, stream_by_default: bool) -> Self {
        let logprobs = v["logprobs"].as_bool().unwrap_or(false);
        let asked = v["top_logprobs"].as_u64().unwrap_or(0);
        Self {
            stream: v["stream"].as_bool().unwrap_or(stream_by_default),
            logprobs,
            top_n: if logprobs {
                asked.min(limits::TOP_LOGPROBS as u64) as usize
            } else {
                0
            },
        }
    }
}

/// What a generation's channel carries: each token, or why it stopped early.
pub(crate) type Items = mpsc::Receiver<Result<GenItem, Failure>>;

/// Check the prompt's length (400 when it is over `max_prompt_tokens`), wait for a slot (or get
/// the 503), then start generating, each token with its `top` best alternatives; `ledger`
/// records the slot, the tokens and any failure for the request's log line.
pub(crate) async fn start(
    state: &Shared,
    l: &Loaded,
    request: GenerationRequest,
    max_prompt_tokens: usize,
    top: usize,
    ledger: &Ledger,
) -> Result<Items, Response> {
    check_prompt_length(l, &request, max_prompt_tokens).await?;
    let ticket = ticket(state, ledger).await?;
    Ok(spawn_generation(l, request, ticket, top))
}

/// The prompt's length in tokens; 400 for a prompt over `max` tokens, or one that leaves no
/// room in the backend's context for a token of answer (the GPU's cache is as long as the
/// default limit), before it takes a slot. Bytes first (`llm::tokenizer::MAX_TOKEN_BYTES`),
/// then the real count, off the async threads.
pub(crate) async fn check_prompt_length(
    l: &Loaded,
    request: &GenerationRequest,
    max: usize,
) -> Result<usize, Response> {
    let context = l.compute.context_length();
    let max = max.min(context.saturating_sub(1));
    let too_long = |what: String| {
        Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "the prompt is {what}; this server takes prompts of at most {max} tokens \
                 (--max-prompt-tokens, and its backend's context of {context} positions)"
            ),
        ))
    };
    if llm::tokenizer::too_many_bytes_for(&request.prompt, max) {
        return too_long(format!("{} bytes", request.prompt.len()));
    }
    // The engine refuses it too, but only once a slot is taken, and inside a 200 stream.
    if request.prompt.trim().is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            LlmError::EmptyPrompt.to_string(),
        ));
    }
    let tokenizer = l.tokenizer.clone();
    let (text, chat) = (request.prompt.clone(), request.chat);
    let counted = tokio::task::spawn_blocking(move || {
        let text = if chat {
            tokenizer.chat_prompt(&text)
        } else {
            text
        };
        tokenizer.encode(&text).map(|ids| ids.len())
    })
    .await;
    match counted {
        Ok(Ok(n)) if n > max => too_long(format!("{n} tokens")),
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(error(StatusCode::BAD_REQUEST, e.to_string())),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// One generated token with what the APIs report about it.
pub(crate) struct GenItem {
    pub(crate) step: Step,
    pub(crate) prompt_len: usize,
    /// The sampled token's natural-log probability (temperature 1).
    pub(crate) logprob: f32,
    /// The best tokens (as many as asked) and their log-probabilities.
    pub(crate) top: Vec<(String, f32)>,
}

/// Generate on a blocking thread; each step (or the failure) goes through the channel.
pub(crate) fn spawn_generation(
    l: &Loaded,
    request: GenerationRequest,
    ticket: Ticket,
    top: usize,
) -> Items {
    // Steps with traces are megabytes each at long positions: only a couple wait at a time.
    let (tx, rx) = mpsc::channel(if request.record.enabled { 2 } else { 64 });
    let (model, tokenizer) = (l.compute.clone(), l.tokenizer.clone());
    let threads = ticket.state.options.threads;
    let state = ticket.state.clone();
    let ledger = ticket.held.0.clone();
    let panic_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let _ticket = ticket;
        let started = std::time::Instant::now();
        let answer_time = state.options.answer_time;
        // Whether the server cuts the answer here, after `made` tokens, and why.
        let cut = |made: usize| {
            if state.must_cut() {
                Some(Failure::cut(
                    format!(
                        "the server is shutting down (SIGTERM): the answer was cut after {made} \
                         tokens; ask again"
                    ),
                    true,
                ))
            } else if started.elapsed() >= answer_time {
                Some(Failure::cut(
                    format!(
                        "the answer took longer than {} s (the server's limit): cut after \
                         {made} tokens",
                        answer_time.as_secs()
                    ),
                    false,
                ))
            } else {
                None
            }
        };
        // A failure goes to the client and to the request's log line.
        let fail = |failure: Failure| {
            ledger.failed(&failure);
            let _ = tx.blocking_send(Err(failure));
        };
        let run = || {
            let mut session = match Session::new(model, tokenizer, &request) {
                Ok(s) => s,
                Err(e) => return fail(Failure::session(e)),
            };
            let prompt_len = session.prompt_tokens().len();
            ledger.prompt_tokens(prompt_len);
            // The prompt in slices: bounded memory, and a request whose client left (or that
            // the server cuts) stops between slices.
            while session.pending_len() > 1 {
                if tx.is_closed() {
                    return;
                }
                if let Some(failure) = cut(0) {
                    return fail(failure);
                }
                if let Err(e) = session.prefill(limits::PREFILL_SLICE) {
                    return fail(Failure::server(e.to_string()));
                }
            }
            let mut made = 0usize;
            loop {
                if let Some(failure) = cut(made) {
                    return fail(failure);
                }
                made += 1;
                match session.step() {
                    Ok(Some(step)) => {
                        ledger.token(step.stop);
                        let item = GenItem {
                            top: top_logprobs(session.last_logits(), session.tokenizer(), top),
                            logprob: logprob_of(session.last_logits(), step.token.id),
                            prompt_len,
                            step,
                        };
                        if tx.blocking_send(Ok(item)).is_err() {
                            return; // the client went away
                        }
                    }
                    Ok(None) => return,
                    Err(e) => return fail(Failure::server(e.to_string())),
                }
            }
        };
        let guarded = || {
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
            if let Err(panic) = caught {
                let why = panic_message(&*panic);
                Entry::error(format!("generation failed (a bug): {why}")).emit();
                let failure =
                    Failure::server(format!("the server failed while generating (a bug): {why}"));
                ledger.failed(&failure);
                let _ = panic_tx.blocking_send(Err(failure));
            }
        };
        match threads.and_then(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().ok()) {
            Some(pool) => pool.install(guarded),
            None => guarded(),
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
        // Ollama's "no limit": the server's most, not the default 256.
        for n in [-1, -2] {
            let (_, max) = sampling(&json!({"options": {"num_predict": n}}));
            assert_eq!(max, Some(limits::MAX_TOKENS));
        }
        assert_eq!(sampling(&json!({"options": {}})).1, None);
    }

    #[test]
    fn message_content_is_text_in_any_of_its_forms() {
        let parts = json!([{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}]);
        assert_eq!(message_text(&parts).as_deref(), Some("What is 2+2?"));
        assert_eq!(message_text(&json!("hi")).as_deref(), Some("hi"));
        assert_eq!(message_text(&Value::Null).as_deref(), Some(""));
        for bad in [
            json!([{"type": "image_url", "image_url": {"url": "data:"}}]),
            json!([{"type": "text"}]),
            json!([{"type": "text", "text": "a"}, 7]),
            json!(7),
            json!({"text": "a"}),
        ] {
            assert_eq!(message_text(&bad), None, "{bad}");
        }
    }
}
