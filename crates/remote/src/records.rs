//! One streamed record at a time, in our words: a samemath trace step, an Ollama line or an
//! OpenAI-compatible event folded into the answer's summary, with what a server may send checked
//! and bounded (the text of a step and of the answer, log-probabilities, alternatives); and an
//! embedding answer's vector.

use serde_json::Value;

use super::api::{
    ApiKind, RemoteError, RemoteEvent, RemoteStep, RemoteSummary, check_piece, error_message,
    stop_from_finish,
};
use super::trace_line::TraceLine;
use llm::{Trace, TraceStep};

/// Alternatives kept per step (we ask every server for 5).
const TOP_LOGPROBS: usize = 5;
/// The most text one record may carry: a token's text is a few bytes, a batch of them a few
/// hundred.
const STEP_TEXT_BYTES: usize = 64 << 10;
/// The most text one answer may have (4096 tokens of 256 bytes each).
const ANSWER_TEXT_BYTES: usize = 1 << 20;
/// The longest alternative kept: no token's text comes near it.
const ALTERNATIVE_BYTES: usize = super::api::PIECE_BYTES;
/// The most reasoning (Ollama's `thinking`, OpenAI-compatible `reasoning_content` /
/// `reasoning`) one answer may have: as much as its text. Reasoning keeps an answer open (it is
/// progress), so without a bound a server trickling it would never end.
const REASONING_BYTES: usize = ANSWER_TEXT_BYTES;
/// The most records with reasoning one answer may have, however short each: a long-thinking
/// model thinks for some tens of thousands of tokens, a record each.
const REASONING_RECORDS: usize = 1 << 15;
/// How far above 0 a log-probability may be and still count as rounding (then it is 0).
const LOGPROB_SLACK: f64 = 1e-3;
/// The most values an embedding may have (the widest models have a few thousand).
const EMBEDDING_VALUES: usize = 65_536;

/// A log-probability as the server sent it, if it can be one: finite, at most 0 (a tiny excess
/// from rounding clamps to 0). Anything else says nothing, so it is dropped.
fn logprob(x: Option<f64>) -> Option<f32> {
    let x = x?;
    if !x.is_finite() || x > LOGPROB_SLACK {
        return None;
    }
    // (Finite as f64 may still be past f32's range.)
    let x = x.min(0.0) as f32;
    x.is_finite().then_some(x)
}

/// The best alternatives, best first, at most `TOP_LOGPROBS`: only those whose log-probability
/// can be one and whose text can be a token's.
fn best<'a>(alternatives: impl Iterator<Item = (&'a str, Option<f64>)>) -> Vec<(String, f32)> {
    let mut kept: Vec<(&str, f32)> = alternatives
        .filter(|(text, _)| text.len() <= ALTERNATIVE_BYTES)
        .filter_map(|(text, l)| Some((text, logprob(l)?)))
        .collect();
    kept.sort_by(|a, b| b.1.total_cmp(&a.1));
    kept.truncate(TOP_LOGPROBS);
    kept.into_iter().map(|(t, l)| (t.to_string(), l)).collect()
}

/// Alternatives as a JSON list of `{"token", "logprob"}` (Ollama, OpenAI chat).
fn top(alternatives: &Value) -> Vec<(String, f32)> {
    let list = alternatives
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    best(
        list.iter()
            .filter_map(|t| Some((t["token"].as_str()?, t["logprob"].as_f64()))),
    )
}

/// A step as Ollama and OpenAI-compatible servers give it: text and log-probabilities, no id,
/// no trace.
fn text_step(
    index: usize,
    text: &str,
    logprob: Option<f32>,
    top_logprobs: Vec<(String, f32)>,
) -> RemoteStep {
    RemoteStep {
        index,
        text: text.to_string(),
        token: None,
        logprob,
        top_logprobs,
        trace: None,
        stop: None,
    }
}

/// One token's log-probabilities in a text record: its text (when the server names it), its
/// own log-probability, its alternatives.
struct Entry<'a> {
    token: Option<&'a str>,
    logprob: Option<f32>,
    top: Vec<(String, f32)>,
}

/// The most tokens one text record is split into (a server batching tokens sends a few).
const ENTRIES: usize = 256;

/// The steps of a text record with its log-probability entries: one a token where the
/// entries' tokens (each non-empty, at most `ENTRIES`) spell the record's text, so each
/// token's numbers stay its own; else, when `any`, one step with the text and the first
/// entry's numbers (a record is a token, as servers stream them).
fn text_steps(
    summary: &mut RemoteSummary,
    text: &str,
    entries: Vec<Entry>,
    any: bool,
    limit: Option<usize>,
    on_event: &mut dyn FnMut(RemoteEvent),
) -> Result<(), RemoteError> {
    let spelled = (2..=ENTRIES).contains(&entries.len())
        && entries
            .iter()
            .all(|e| e.token.is_some_and(|t| !t.is_empty()))
        && spells(entries.iter().filter_map(|e| e.token), text);
    if spelled {
        for e in entries {
            // Past the tokens asked for, as a record of one token would be: the client cuts
            // the answer at its first extra token, so none after it reaches the app.
            if limit.is_some_and(|most| summary.tokens > most) {
                break;
            }
            let step = text_step(summary.tokens, e.token.unwrap_or(""), e.logprob, e.top);
            emit(summary, step, on_event)?;
        }
        return Ok(());
    }
    if any {
        let (logprob, top) = entries
            .into_iter()
            .next()
            .map_or((None, Vec::new()), |e| (e.logprob, e.top));
        emit(
            summary,
            text_step(summary.tokens, text, logprob, top),
            on_event,
        )?;
    }
    Ok(())
}

/// Whether `pieces`, one after another, are `text`.
fn spells<'a>(pieces: impl Iterator<Item = &'a str>, text: &str) -> bool {
    let mut rest = text;
    for piece in pieces {
        match rest.strip_prefix(piece) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Count a step into the summary and pass it on, unless its text or the answer's would pass
/// its bound (the app keeps both, and lays the text out).
fn emit(
    summary: &mut RemoteSummary,
    step: RemoteStep,
    on_event: &mut dyn FnMut(RemoteEvent),
) -> Result<(), RemoteError> {
    if step.text.len() > STEP_TEXT_BYTES {
        return Err(RemoteError::Protocol(format!(
            "step {} carries {} bytes of text, more than the {STEP_TEXT_BYTES} one step may have",
            summary.tokens,
            step.text.len()
        )));
    }
    if summary.text.len() + step.text.len() > ANSWER_TEXT_BYTES {
        return Err(RemoteError::Protocol(format!(
            "the answer's text passed {ANSWER_TEXT_BYTES} bytes after {} tokens",
            summary.tokens
        )));
    }
    summary.tokens += 1;
    summary.text.push_str(&step.text);
    on_event(RemoteEvent::Step(Box::new(step)));
    Ok(())
}

/// What an answer's earlier records said, for the checks across them.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// samemath: the prompt line's embedding width (when it had rows).
    prompt_width: Option<usize>,
    /// samemath: the first trace's shape (layers, MLP width, heads, embedding width); the
    /// scene sizes its world by it, and every later step must have it too.
    shape: Option<[usize; 4]>,
    /// Ollama, OpenAI-compatible: the bytes of reasoning so far.
    reasoning_bytes: usize,
    /// Ollama, OpenAI-compatible: the records that carried reasoning.
    reasoning_records: usize,
    /// The tokens the request asked for at most (`None`: not bounded here).
    max_tokens: Option<usize>,
}

impl Seen {
    /// An answer's checks, for a request of at most `max_tokens` tokens.
    pub(crate) fn asking(max_tokens: usize) -> Seen {
        Seen {
            max_tokens: Some(max_tokens),
            ..Seen::default()
        }
    }
}

/// A trace's shape as `Seen::shape` keeps it.
fn shape(t: &Trace) -> [usize; 4] {
    [
        t.layers.len(),
        t.layers.first().map_or(0, |l| l.mlp_activation.len()),
        t.kv_head_of_head.len(),
        t.embedding.len(),
    ]
}

/// A samemath trace step's pieces (its token, the trace's token, the candidates, the logit
/// lens), each at most `PIECE_BYTES`.
fn check_pieces(step: &TraceStep) -> Result<(), RemoteError> {
    let n = step.step;
    check_piece(&format!("step {n}'s sampled token"), &step.sampled.piece)?;
    let Some(t) = &step.trace else {
        return Ok(());
    };
    check_piece(&format!("step {n}'s trace token"), &t.token.piece)?;
    for (i, c) in t.top_k.iter().enumerate() {
        check_piece(&format!("step {n}'s candidate {i}"), &c.piece)?;
    }
    for (i, l) in t.layers.iter().enumerate() {
        if let Some(lens) = &l.logit_lens {
            check_piece(&format!("step {n}'s logit lens at layer {i}"), &lens.piece)?;
        }
    }
    Ok(())
}

/// The reasoning an Ollama or OpenAI-compatible record carries, in bytes.
fn reasoning_bytes(api: ApiKind, v: &Value) -> usize {
    let len = |f: &Value| f.as_str().map_or(0, str::len);
    match api {
        ApiKind::Samemath => 0,
        ApiKind::Ollama => len(&v["thinking"]) + len(&v["message"]["thinking"]),
        ApiKind::OpenAi => {
            let d = &v["choices"][0]["delta"];
            len(&d["reasoning_content"]) + len(&d["reasoning"])
        }
    }
}

/// A server's duration in nanoseconds as seconds, or a count, if it can be one: finite, not
/// negative. Anything else says nothing.
fn non_negative(x: Option<f64>) -> Option<f64> {
    x.filter(|x| x.is_finite() && *x >= 0.0)
}

/// Whether a record shows the server at work: any samemath line (the prompt, a step), or text
/// or reasoning (Ollama's `thinking`; `reasoning_content` from llama.cpp's server, vLLM and
/// DeepSeek; `reasoning` from Ollama's /v1 and OpenRouter). A reasoning model can think for
/// minutes before its first token; keep-alive lines and empty deltas show nothing.
pub(crate) fn shows_progress(api: ApiKind, record: &Record) -> bool {
    let v = match record {
        Record::Trace(_) => return true,
        Record::Json(v) => v,
    };
    let any = |fields: &[&Value]| {
        fields
            .iter()
            .any(|f| f.as_str().is_some_and(|t| !t.is_empty()))
    };
    match api {
        ApiKind::Samemath => true,
        ApiKind::Ollama => any(&[
            &v["response"],
            &v["thinking"],
            &v["message"]["content"],
            &v["message"]["thinking"],
        ]),
        ApiKind::OpenAi => {
            let c = &v["choices"][0];
            let d = &c["delta"];
            any(&[
                &c["text"],
                &d["content"],
                &d["reasoning_content"],
                &d["reasoning"],
            ])
        }
    }
}

/// One streamed record: an Ollama line or an OpenAI-compatible event as JSON, or a samemath
/// line already in our types.
#[derive(Debug)]
pub(crate) enum Record {
    Json(Value),
    Trace(TraceLine),
}

/// Fold one streamed record into the summary; true when it ends the answer.
pub(crate) fn record(
    api: ApiKind,
    record: Record,
    summary: &mut RemoteSummary,
    seen: &mut Seen,
    on_event: &mut dyn FnMut(RemoteEvent),
) -> Result<bool, RemoteError> {
    let v = match record {
        Record::Json(v) => v,
        Record::Trace(line) => return trace_line(line, summary, seen, on_event),
    };
    if let Some(e) = v.get("error") {
        return Err(RemoteError::Server(error_message(e)));
    }
    let v = &v;
    match api {
        ApiKind::Samemath => Err(RemoteError::Protocol(
            "a samemath line read as plain JSON".into(),
        )),
        ApiKind::Ollama | ApiKind::OpenAi if reasoning_bytes(api, v) > 0 => {
            seen.reasoning_bytes += reasoning_bytes(api, v);
            seen.reasoning_records += 1;
            if seen.reasoning_bytes > REASONING_BYTES {
                return Err(RemoteError::Protocol(format!(
                    "the server's reasoning passed {REASONING_BYTES} bytes after {} tokens",
                    summary.tokens
                )));
            }
            if seen.reasoning_records > REASONING_RECORDS {
                return Err(RemoteError::Protocol(format!(
                    "the server's reasoning passed {REASONING_RECORDS} records after {} tokens",
                    summary.tokens
                )));
            }
            text_record(api, v, summary, seen.max_tokens, on_event)
        }
        ApiKind::Ollama | ApiKind::OpenAi => {
            text_record(api, v, summary, seen.max_tokens, on_event)
        }
    }
}

/// Fold one samemath line into the summary; true when it ends the answer.
fn trace_line(
    line: TraceLine,
    summary: &mut RemoteSummary,
    seen: &mut Seen,
    on_event: &mut dyn FnMut(RemoteEvent),
) -> Result<bool, RemoteError> {
    match line {
        TraceLine::Error(m) => Err(RemoteError::Server(m)),
        TraceLine::Prompt(event) => {
            if let RemoteEvent::Prompt { embeddings, .. } = &event {
                seen.prompt_width = embeddings.first().map(Vec::len);
            }
            on_event(event);
            Ok(false)
        }
        TraceLine::Step(step) => {
            let step = *step;
            check_pieces(&step)?;
            // The scene indexes what it draws by the trace's own shape, and sizes its world by
            // the first one: check it here, and hold the answer's steps to one shape.
            if let Some(trace) = &step.trace {
                let bad =
                    |e: String| RemoteError::Protocol(format!("trace step {}: {e}", step.step));
                trace.check_shape().map_err(bad)?;
                let [layers, width, heads, embedding] = shape(trace);
                let first = *seen.shape.get_or_insert([layers, width, heads, embedding]);
                if first != [layers, width, heads, embedding] {
                    return Err(bad(format!(
                        "{layers} layers of {width} MLP activations, {heads} heads and {embedding} \
                         embedding values, where the answer's first step had {} layers of {} \
                         activations, {} heads and {} embedding values",
                        first[0], first[1], first[2], first[3]
                    )));
                }
                if let Some(w) = seen.prompt_width
                    && w != embedding
                {
                    return Err(bad(format!(
                        "an embedding of {embedding} values, the prompt line's rows {w}"
                    )));
                }
            }
            let logprob = step.trace.as_ref().and_then(|t| {
                t.top_k
                    .iter()
                    .find(|c| c.id == step.sampled.id)
                    .and_then(|c| logprob(Some(f64::from(c.prob).ln())))
            });
            let top_logprobs = step
                .trace
                .as_ref()
                .map(|t| {
                    best(
                        t.top_k
                            .iter()
                            .map(|c| (c.piece.as_str(), Some(f64::from(c.prob).ln()))),
                    )
                })
                .unwrap_or_default();
            let stop = step.stop;
            let step = RemoteStep {
                index: step.step,
                text: step.text,
                token: Some(step.sampled),
                logprob,
                top_logprobs,
                trace: step.trace,
                stop,
            };
            emit(summary, step, on_event)?;
            if let Some(s) = stop {
                summary.stop = Some(s);
                return Ok(true);
            }
            Ok(false)
        }
    }
}

/// Fold an Ollama line or an OpenAI-compatible event into the summary; true when it ends the
/// answer.
fn text_record(
    api: ApiKind,
    v: &Value,
    summary: &mut RemoteSummary,
    max_tokens: Option<usize>,
    on_event: &mut dyn FnMut(RemoteEvent),
) -> Result<bool, RemoteError> {
    match api {
        ApiKind::Samemath => Ok(false),
        ApiKind::Ollama => {
            let text = v["message"]["content"]
                .as_str()
                .or(v["response"].as_str())
                .unwrap_or("");
            let entries: Vec<Entry> = v["logprobs"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|l| Entry {
                    token: l["token"].as_str(),
                    logprob: logprob(l["logprob"].as_f64()),
                    top: top(&l["top_logprobs"]),
                })
                .collect();
            let any = !text.is_empty() || !entries.is_empty();
            text_steps(summary, text, entries, any, max_tokens, on_event)?;
            if v["done"].as_bool() == Some(true) {
                // Counts and durations that cannot be one say nothing (no "-5.0 tokens/s").
                let ns = |k: &str| non_negative(v[k].as_f64()).map(|x| x / 1e9);
                if let (Some(n), Some(d)) =
                    (non_negative(v["eval_count"].as_f64()), ns("eval_duration"))
                    && d > 0.0
                {
                    summary.server_tokens_per_sec = Some(n / d).filter(|r| r.is_finite());
                }
                summary.load_secs = ns("load_duration");
                summary.stop = Some(stop_from_finish(
                    v["done_reason"].as_str().unwrap_or("stop"),
                ));
                return Ok(true);
            }
            Ok(false)
        }
        ApiKind::OpenAi => {
            let choice = &v["choices"][0];
            let text = choice["delta"]["content"]
                .as_str()
                .or(choice["text"].as_str())
                .unwrap_or("");
            // Chat: logprobs.content[]; completions: logprobs.tokens / token_logprobs /
            // top_logprobs, side by side.
            let lps = &choice["logprobs"];
            let entries: Vec<Entry> = match lps["content"].as_array() {
                Some(content) if !content.is_empty() => content
                    .iter()
                    .map(|e| Entry {
                        token: e["token"].as_str(),
                        logprob: logprob(e["logprob"].as_f64()),
                        top: top(&e["top_logprobs"]),
                    })
                    .collect(),
                _ => {
                    let n = lps["token_logprobs"].as_array().map_or(0, Vec::len);
                    (0..n)
                        .map(|i| Entry {
                            token: lps["tokens"][i].as_str(),
                            logprob: logprob(lps["token_logprobs"][i].as_f64()),
                            top: lps["top_logprobs"][i]
                                .as_object()
                                .map(|m| best(m.iter().map(|(k, l)| (k.as_str(), l.as_f64()))))
                                .unwrap_or_default(),
                        })
                        .collect()
                }
            };
            let any = !text.is_empty() || entries.first().is_some_and(|e| e.logprob.is_some());
            text_steps(summary, text, entries, any, max_tokens, on_event)?;
            if let Some(reason) = choice["finish_reason"].as_str() {
                summary.stop = Some(stop_from_finish(reason));
            }
            Ok(false)
        }
    }
}

/// The vector of an embedding answer (Ollama's `embeddings[0]`, OpenAI's `data[0].embedding`):
/// every value a finite number, at most `EMBEDDING_VALUES` of them.
pub(crate) fn embedding(v: &Value, path: &str) -> Result<Vec<f32>, RemoteError> {
    let bad = |why: String| RemoteError::Protocol(format!("{path}: {why}"));
    let values = v["embeddings"][0]
        .as_array()
        .or(v["data"][0]["embedding"].as_array())
        .ok_or_else(|| bad("no embedding in the answer".into()))?;
    if values.len() > EMBEDDING_VALUES {
        return Err(bad(format!(
            "an embedding of {} values, more than {EMBEDDING_VALUES}",
            values.len()
        )));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64()
                .map(|x| x as f32)
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(format!("value {i} of the embedding is not a finite number")))
        })
        .collect()
}

#[cfg(test)]
mod tests;
