//! /api/trace: the internals of each step as NDJSON: first the prompt as the model reads it
//! (`{"prompt": {"tokens": [...], "embeddings": [[...]]}}`: the ids and pieces after the
//! template, and each one's embedding row), then one `TraceStep` per generated token (the JSON
//! of `samemath trace`). One answer streams at most `ANSWER_BYTES`: past that it ends as at the
//! token limit. Each line is written straight to bytes, off the async threads.

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use llm::{GenerationRequest, RecordOptions, StopReason, TokenInfo, TraceStep};
use serde_json::json;
use tokio::sync::mpsc;

use crate::generate::{GenItem, start};
use crate::reqlog::Ledger;
use crate::state::{Shared, ready};
use crate::wire::{error, ndjson_line, next_item, send_line, stream_body};

/// The most bytes one /api/trace answer streams. A step's line is about 0.77 MB at any
/// position (SmolLM2's 30 layers of 1,536 MLP activations and 576 MLP inputs, the embedding
/// row, 20 candidates, the logit lens) plus 30 layers x 9 heads of position + 1 attention
/// values, about 14 bytes each as JSON: 3.8 KB more for each position. So N tokens after a
/// P-token prompt stream about N x 0.77 MB + 3.8 KB x N x (P + N/2). Measured on the CPU
/// engine: 1,024 tokens after a 44-token chat prompt (the app's longest ask: its slider's
/// most, its bench) streamed 2.94 GB, the last line 4.8 MB. The most a request may ask, 1,024
/// tokens after a 1,024-token prompt, is 0.8 + 5.9, about 6.7 GB, from a body of a hundred
/// bytes. 4 GiB lets every answer through whole after a prompt of up to about 390 tokens, and
/// up to about 700 tokens after the longest prompt: only long answers to long prompts are cut.
const ANSWER_BYTES: u64 = 4 << 30;

/// Kept back from `ANSWER_BYTES` for the answer's last line when a step's full line would not
/// fit: that step without its trace (ids, a token's text and piece: well under this).
const LAST_LINE_RESERVE: u64 = 64 << 10;

/// Each step with what the request records (everything, for the app), NDJSON, one `TraceStep`
/// per generated token.
pub(crate) async fn trace(
    State(state): State<Shared>,
    Extension(ledger): Extension<Ledger>,
    body: Bytes,
) -> Response {
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
    let mut rx = match start(&state, l, request, prompt_cap, 0, &ledger).await {
        Ok(rx) => rx,
        Err(r) => return r,
    };
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(2);
    let ledger = ledger.clone();
    tokio::spawn(async move {
        // The prompt's tokens and embedding rows (its length was checked by `start`).
        let prompt = tokio::task::spawn_blocking(move || {
            let text = if chat {
                tokenizer.chat_prompt(&text)
            } else {
                text
            };
            let ids = tokenizer.encode(&text).unwrap_or_default();
            let tokens: Vec<TokenInfo> = ids
                .iter()
                .map(|&id| TokenInfo {
                    id,
                    piece: tokenizer.piece(id),
                })
                .collect();
            let embeddings: Vec<Vec<f32>> = ids
                .iter()
                .filter_map(|&id| model.embedding_row(id).ok())
                .collect();
            prompt_line(&tokens, &embeddings)
        })
        .await
        .unwrap_or_else(|e| {
            ndjson_line(&json!({"error": format!("reading the prompt's tokens: {e}")})).into()
        });
        let mut budget = Budget::new(ANSWER_BYTES);
        budget.spent(prompt.len());
        if send_line(&out_tx, prompt.into()).await.is_err() {
            return;
        }
        while let Some(item) = next_item(&mut rx, Some(&out_tx)).await {
            let (line, last) = match item {
                Ok(GenItem { step, .. }) => {
                    let (index, engine_stop) = (step.index, step.stop);
                    let s = TraceStep {
                        step: step.index,
                        sampled: step.token,
                        stop: step.stop,
                        text: step.text,
                        trace: step.trace,
                    };
                    // A traced step is megabytes of numbers: written on a blocking thread.
                    let b = budget;
                    match tokio::task::spawn_blocking(move || b.line(s)).await {
                        Ok((line, last)) => {
                            // Ended here by the byte bound, not by the engine: logged so.
                            if last && engine_stop.is_none() {
                                ledger.cut_at_limit(index + 1);
                            }
                            (line, last)
                        }
                        Err(e) => (error_line(&format!("writing a step: {e}")), true),
                    }
                }
                Err(f) => (error_line(&f.message), true),
            };
            budget.spent(line.len());
            // Dropping the generation's channel after the last line stops it.
            if send_line(&out_tx, line.into()).await.is_err() || last {
                return;
            }
        }
    });
    stream_body(out_rx, "application/x-ndjson")
}

fn error_line(message: &str) -> Vec<u8> {
    ndjson_line(&json!({"error": message})).into()
}

/// The prompt line, written straight from the lists (a JSON value of 1,024 rows of 576 numbers
/// would cost several times the line's 7 MB).
fn prompt_line(tokens: &[TokenInfo], embeddings: &[Vec<f32>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + embeddings.iter().map(|r| r.len() * 12).sum::<usize>());
    out.extend_from_slice(br#"{"prompt":{"tokens":"#);
    // (Writing lists of plain values to a Vec cannot fail.)
    let _ = serde_json::to_writer(&mut out, tokens);
    out.extend_from_slice(br#","embeddings":"#);
    let _ = serde_json::to_writer(&mut out, embeddings);
    out.extend_from_slice(b"}}\n");
    out
}

/// A step as one NDJSON line.
fn step_bytes(step: &TraceStep) -> Vec<u8> {
    let mut out = serde_json::to_vec(step).unwrap_or_default();
    out.push(b'\n');
    out
}

/// What an answer has streamed, against its bound.
#[derive(Debug, Clone, Copy)]
struct Budget {
    most: u64,
    sent: u64,
    /// The length of the last line that went out (the prompt line's, before the first step).
    last_line: u64,
}

impl Budget {
    fn new(most: u64) -> Self {
        Self {
            most,
            sent: 0,
            last_line: 0,
        }
    }

    fn spent(&mut self, len: usize) {
        self.sent += len as u64;
        self.last_line = len as u64;
    }

    /// A step's line, and whether it is the answer's last. Each line is a little longer than
    /// the one before (its attention rows are one longer), so when two more lines like the
    /// last one, with an eighth to spare, would pass the bound, this step ends the answer: its
    /// `stop` is `max_tokens`, as at the token limit, which every client reads as the end. A
    /// line that would pass the bound even so (a first step, a jump) goes without its trace.
    fn line(&self, mut step: TraceStep) -> (Vec<u8>, bool) {
        let room = self.most.saturating_sub(self.sent + LAST_LINE_RESERVE);
        let next = self.last_line + self.last_line / 8;
        if step.stop.is_none() && 2 * next > room {
            step.stop = Some(StopReason::MaxTokens);
        }
        let line = step_bytes(&step);
        if line.len() as u64 <= room {
            return (line, step.stop.is_some());
        }
        step.trace = None;
        step.stop = Some(step.stop.unwrap_or(StopReason::MaxTokens));
        (step_bytes(&step), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm::{LayerTrace, Trace};

    /// A step at `position` shaped like SmolLM2's but narrower: 4 layers of 3 heads, each head
    /// with position + 1 attention values.
    fn step(index: usize, position: usize) -> TraceStep {
        let layer = LayerTrace {
            attention: vec![vec![0.125; position + 1]; 3],
            mlp_activation: vec![0.5; 16],
            mlp_input: vec![0.25; 8],
            residual_norm_in: 1.0,
            residual_norm_out: 2.0,
            logit_lens: None,
        };
        let token = TokenInfo {
            id: 7,
            piece: " a".into(),
        };
        TraceStep {
            step: index,
            sampled: token.clone(),
            stop: None,
            text: " a".into(),
            trace: Some(Trace {
                position,
                token,
                embedding: vec![0.5; 8],
                kv_head_of_head: vec![0, 0, 1],
                layers: vec![layer; 4],
                top_k: Vec::new(),
            }),
        }
    }

    /// Stream steps of growing positions through a budget of `most` bytes, as `trace` does;
    /// the lines that went out.
    fn stream(most: u64, steps: usize) -> Vec<Vec<u8>> {
        let mut budget = Budget::new(most);
        let prompt = prompt_line(&[], &[]);
        budget.spent(prompt.len());
        let mut lines = vec![prompt];
        for i in 0..steps {
            let (line, last) = budget.line(step(i, 10 + i));
            budget.spent(line.len());
            lines.push(line);
            if last {
                break;
            }
        }
        lines
    }

    fn parsed(line: &[u8]) -> TraceStep {
        serde_json::from_slice(line).expect("a step line")
    }

    #[test]
    fn an_answer_ends_as_at_the_token_limit_before_its_bound() {
        let most = LAST_LINE_RESERVE + 200_000;
        let lines = stream(most, 10_000);
        let total: usize = lines.iter().map(Vec::len).sum();
        assert!(total as u64 <= most, "{total} bytes of at most {most}");
        // Cut well before the 10,000 steps, yet most of the room used.
        let steps = &lines[1..];
        assert!(steps.len() > 10 && steps.len() < 10_000, "{}", steps.len());
        assert!(total as u64 > most / 2, "{total} of {most}");
        // Every line a whole step; the last one says max_tokens and keeps its trace.
        let (last, before) = steps.split_last().unwrap();
        for l in before {
            assert_eq!(parsed(l).stop, None);
        }
        let last = parsed(last);
        assert_eq!(last.stop, Some(StopReason::MaxTokens));
        assert!(last.trace.is_some());
        assert_eq!(last.step, steps.len() - 1);
    }

    #[test]
    fn a_step_too_long_for_what_is_left_goes_without_its_trace() {
        let one = step_bytes(&step(0, 10)).len() as u64;
        let most = LAST_LINE_RESERVE + one / 2;
        let lines = stream(most, 5);
        assert_eq!(lines.len(), 2, "the prompt line and one step");
        let total: usize = lines.iter().map(Vec::len).sum();
        assert!(total as u64 <= most);
        let s = parsed(&lines[1]);
        assert_eq!(
            (s.stop, s.trace.is_none()),
            (Some(StopReason::MaxTokens), true)
        );
        assert_eq!(s.sampled.id, 7);
    }

    #[test]
    fn an_answer_within_its_bound_is_untouched() {
        let lines = stream(ANSWER_BYTES, 20);
        assert_eq!(lines.len(), 21);
        for (i, l) in lines[1..].iter().enumerate() {
            assert_eq!(parsed(l), step(i, 10 + i));
        }
        // The model's own stop stays what it was.
        let mut end = step(3, 13);
        end.stop = Some(StopReason::EndToken);
        let (line, last) = Budget::new(ANSWER_BYTES).line(end.clone());
        assert!(last);
        assert_eq!(parsed(&line), end);
    }

    #[test]
    fn the_prompt_line_is_what_clients_read() {
        let tokens = vec![
            TokenInfo {
                id: 1,
                piece: "<|im_start|>".into(),
            },
            TokenInfo {
                id: 2,
                piece: "\"q\"".into(),
            },
        ];
        let rows = vec![vec![0.5, -1.0], vec![1e-7, 3.0]];
        let line = prompt_line(&tokens, &rows);
        assert!(line.ends_with(b"}\n"));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            v["prompt"]["tokens"],
            json!([{"id": 1, "piece": "<|im_start|>"}, {"id": 2, "piece": "\"q\""}])
        );
        let read: Vec<Vec<f32>> =
            serde_json::from_value(v["prompt"]["embeddings"].clone()).unwrap();
        assert_eq!(read, rows);
    }

    /// Numbers written straight from f32 (the shortest text that reads back as the same f32,
    /// "1e-7"; a JSON value wrote the f64 it widens to, "1.0000000116860974e-7") read back
    /// as the very same numbers, subnormals and extremes included.
    #[test]
    fn every_f32_reads_back_the_same() {
        let mut bits = 0x9E37_79B9u32;
        let mut values = vec![f32::MIN_POSITIVE, f32::MAX, -f32::MAX, 1e-45, 0.1, 1e-7];
        for _ in 0..200_000 {
            bits = bits.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let x = f32::from_bits(bits);
            if x.is_finite() {
                values.push(x);
            }
        }
        let text = serde_json::to_vec(&values).unwrap();
        let read: Vec<f32> = serde_json::from_slice(&text).unwrap();
        for (a, b) in values.iter().zip(&read) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a:e} read back as {b:e}");
        }
    }
}
