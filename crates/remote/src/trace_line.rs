//! samemath serve's /api/trace lines, parsed straight from their text into our types: an error,
//! the prompt line or a trace step, never through a JSON value first. A value costs some 16
//! times its text for a list of small numbers (32 bytes for "0,"), so a hostile 32 MiB line
//! could make the app build half a gigabyte before any check ran; typed, with the long lists
//! bounded as they are read (`llm::trace::at_most`), it stays within a few times the line.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::api::{RemoteError, RemoteEvent, check_piece, error_message, shown_text};
use llm::trace::{MAX_TRACE_PROMPT_TOKENS, MAX_TRACE_WIDTH, at_most};
use llm::{TokenInfo, TraceStep};

/// The most values a prompt line's embedding rows may hold together (rows × width): the app
/// fits a PCA to them, at a cost that grows with both. 1,024 rows of 4,096 (llama-3 8B's
/// width) is exactly this, though written out as JSON such a line passes the 32 MiB a
/// samemath line may have, which then binds first (about 700 rows of 4,096); SmolLM2's longest
/// /api/trace prompt is 1,024 × 576, about 7 MB.
pub const MAX_PROMPT_EMBEDDING_VALUES: usize = 1 << 22;

/// The longest error line read for its message; a longer one is reported by its size. An
/// error's message is a sentence, and a JSON value of its text would cost many times the line.
const ERROR_LINE_BYTES: usize = 64 << 10;

/// One line of a samemath trace stream.
#[derive(Debug)]
pub(crate) enum TraceLine {
    /// The server's `{"error": …}`, its message shortened.
    Error(String),
    /// The prompt line (`RemoteEvent::Prompt`), checked.
    Prompt(RemoteEvent),
    /// A step, parsed but not yet checked (`records::record` checks it against the answer).
    Step(Box<TraceStep>),
}

/// Which kind a line is, read without building anything.
#[derive(Deserialize)]
struct Kind {
    error: Option<IgnoredAny>,
    prompt: Option<IgnoredAny>,
}

/// The prompt line's body, its lists bounded as they are read.
#[derive(Deserialize)]
struct PromptLine {
    #[serde(deserialize_with = "at_most::<MAX_TRACE_PROMPT_TOKENS, _, _>")]
    tokens: Vec<TokenInfo>,
    #[serde(deserialize_with = "at_most::<MAX_TRACE_PROMPT_TOKENS, _, _>")]
    embeddings: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct WithPrompt {
    prompt: PromptLine,
}

#[derive(Deserialize)]
struct WithError {
    error: Value,
}

/// `line` (not empty) as a trace line, or what is wrong with it.
pub(crate) fn parse(line: &str) -> Result<TraceLine, RemoteError> {
    let shown = |e: serde_json::Error| shown_text(&e.to_string(), 300);
    let malformed = |why: String| {
        let start: String = line.chars().take(80).collect();
        RemoteError::Protocol(format!("malformed JSON line ({why}): {start:?}"))
    };
    // (A struct reads from a JSON list too, by position: every line is an object.)
    if !line.trim_start().starts_with('{') {
        return Err(malformed("not an object".into()));
    }
    let kind: Kind = serde_json::from_str(line).map_err(|e| malformed(shown(e)))?;
    if kind.error.is_some() {
        if line.len() > ERROR_LINE_BYTES {
            return Ok(TraceLine::Error(format!(
                "an error line of {} bytes (not shown)",
                line.len()
            )));
        }
        let e = serde_json::from_str::<WithError>(line)
            .map_err(|e| RemoteError::Protocol(format!("bad error line: {}", shown(e))))?
            .error;
        return Ok(TraceLine::Error(error_message(&e)));
    }
    if kind.prompt.is_some() {
        let p = serde_json::from_str::<WithPrompt>(line)
            .map_err(|e| RemoteError::Protocol(format!("the prompt line: {}", shown(e))))?
            .prompt;
        return prompt_event(p).map(TraceLine::Prompt);
    }
    let step = serde_json::from_str::<TraceStep>(line)
        .map_err(|e| RemoteError::Protocol(format!("bad trace step: {}", shown(e))))?;
    Ok(TraceLine::Step(Box::new(step)))
}

/// The prompt line's tokens and embedding rows, checked: at most `MAX_TRACE_PROMPT_TOKENS`
/// (serve's cap; bounded while parsing); as many rows as tokens, each of one width within the
/// trace bounds, at most `MAX_PROMPT_EMBEDDING_VALUES` in all; finite values; each token's
/// piece at most `PIECE_BYTES`.
fn prompt_event(p: PromptLine) -> Result<RemoteEvent, RemoteError> {
    let bad = |why: String| RemoteError::Protocol(format!("the prompt line: {why}"));
    let PromptLine { tokens, embeddings } = p;
    if embeddings.len() != tokens.len() {
        return Err(bad(format!(
            "{} tokens with {} embedding rows",
            tokens.len(),
            embeddings.len()
        )));
    }
    let width = embeddings.first().map_or(0, Vec::len);
    let max_values = MAX_PROMPT_EMBEDDING_VALUES;
    if width > MAX_TRACE_WIDTH || embeddings.len() * width > max_values {
        return Err(bad(format!(
            "{} embedding rows of {width} values, more than {MAX_TRACE_WIDTH} a row or \
             {max_values} in all",
            embeddings.len()
        )));
    }
    for (i, t) in tokens.iter().enumerate() {
        check_piece(&format!("the prompt line's token {i}"), &t.piece)?;
    }
    if embeddings
        .iter()
        .any(|r| r.len() != width || r.iter().any(|x| !x.is_finite()))
    {
        return Err(bad(
            "embedding rows of different widths or non-finite values".into(),
        ));
    }
    Ok(RemoteEvent::Prompt { tokens, embeddings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A prompt line of `rows` tokens, each with an embedding row of `width` values.
    fn prompt(rows: usize, width: usize) -> String {
        let tokens: Vec<_> = (0..rows).map(|i| json!({"id": i, "piece": "a"})).collect();
        json!({"prompt": {"tokens": tokens, "embeddings": vec![vec![0.5; width]; rows]}})
            .to_string()
    }

    fn refused(line: &str) -> String {
        match parse(line) {
            Err(RemoteError::Protocol(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prompt_lines_are_at_most_prompt_tokens_long() {
        match parse(&prompt(MAX_TRACE_PROMPT_TOKENS, 1)) {
            Ok(TraceLine::Prompt(RemoteEvent::Prompt { tokens, embeddings })) => {
                assert_eq!(
                    (tokens.len(), embeddings.len()),
                    (MAX_TRACE_PROMPT_TOKENS, MAX_TRACE_PROMPT_TOKENS)
                );
            }
            other => panic!("{other:?}"),
        }
        let m = refused(&prompt(MAX_TRACE_PROMPT_TOKENS + 1, 1));
        assert!(m.contains("at most 1024"), "{m}");
        // Rows without tokens count too.
        let rows = json!({"prompt": {"tokens": [{"id": 1, "piece": "a"}],
                                     "embeddings": vec![vec![0.5]; MAX_TRACE_PROMPT_TOKENS + 1]}});
        assert!(refused(&rows.to_string()).contains("at most 1024"));
        let rows = json!({"prompt": {"tokens": [{"id": 1, "piece": "a"}],
                                     "embeddings": [[0.5], [0.5]]}});
        assert!(refused(&rows.to_string()).contains("1 tokens with 2 embedding rows"));
    }

    #[test]
    fn prompt_embeddings_are_bounded_in_rows_times_width() {
        // 1,024 rows of llama-3 8B's width: within this bound (the line's own 32 MiB binds
        // first over the wire).
        assert!(parse(&prompt(MAX_TRACE_PROMPT_TOKENS, 4096)).is_ok());
        // Each within its bound, together past it: refused.
        assert!(refused(&prompt(257, MAX_TRACE_WIDTH)).contains("in all"));
        // Too wide alone.
        assert!(refused(&prompt(1, MAX_TRACE_WIDTH + 1)).contains("a row"));
    }

    #[test]
    fn long_prompt_pieces_are_refused() {
        let line = json!({"prompt": {"tokens": [{"id": 1, "piece": "a"},
                                                {"id": 2, "piece": "b".repeat(100_000)}],
                                     "embeddings": [[0.5], [0.5]]}});
        let m = refused(&line.to_string());
        assert!(m.contains("token 1") && m.contains("100000 bytes"), "{m}");
    }

    #[test]
    fn each_kind_of_line_is_told_apart() {
        let e = parse(r#"{"error": {"message": "model not loaded\u001b[2J"}}"#);
        assert!(
            matches!(&e, Ok(TraceLine::Error(m)) if m == "model not loaded\\u{1b}[2J"),
            "{e:?}"
        );
        let e = parse(r#"{"error": "busy"}"#);
        assert!(
            matches!(&e, Ok(TraceLine::Error(m)) if m == "busy"),
            "{e:?}"
        );
        // A long error is told by its size, not read into a value.
        let long = json!({"error": vec![0; 100_000]}).to_string();
        let e = parse(&long);
        assert!(
            matches!(&e, Ok(TraceLine::Error(m)) if m.contains("bytes (not shown)")),
            "{e:?}"
        );
        let step = r#"{"step": 3, "sampled": {"id": 7, "piece": " Paris"}, "stop": null,
                       "text": " Paris", "trace": null}"#;
        match parse(step) {
            Ok(TraceLine::Step(s)) => assert_eq!((s.step, s.sampled.id), (3, 7)),
            other => panic!("{other:?}"),
        }
        assert!(refused(r#"{"step": "three"}"#).starts_with("bad trace step"));
        assert!(refused("{not json").starts_with("malformed JSON line"));
        assert!(refused("[1, 2]").starts_with("malformed JSON line"));
    }
}
