//! Bounds on what a `samemath serve` answer can make the client and the app hold: a trace
//! within each dimension's bound but too big in all (layers × width), steps whose shape changes
//! within an answer or does not match the prompt line's embeddings, and token pieces of
//! 100,000 bytes.

use std::time::Duration;

use llm::trace::{LayerTrace, MAX_TRACE_LAYERS, MAX_TRACE_WIDTH, TokenInfo, TokenProb, Trace};
use llm::{StopReason, TraceStep};
use remote::{ApiKind, RemoteError};
use testkit::http::{scripted, streamed};

use super::run_fake;

/// A trace of `layers` layers of `width` MLP activations, `heads` heads and an embedding of
/// `embedding` values, at position 0.
fn trace(layers: usize, width: usize, heads: usize, embedding: usize) -> Trace {
    Trace {
        position: 0,
        token: TokenInfo {
            id: 1,
            piece: "a".into(),
        },
        embedding: vec![0.5; embedding],
        kv_head_of_head: (0..heads).collect(),
        layers: (0..layers)
            .map(|_| LayerTrace {
                attention: vec![vec![1.0]; heads],
                mlp_activation: vec![0.0; width],
                mlp_input: Vec::new(),
                residual_norm_in: 1.0,
                residual_norm_out: 1.0,
                logit_lens: None,
            })
            .collect(),
        top_k: Vec::new(),
    }
}

/// One /api/trace step line.
fn step(step: usize, piece: &str, trace: Option<Trace>, stop: bool) -> String {
    let line = TraceStep {
        step,
        sampled: TokenInfo {
            id: 7,
            piece: piece.into(),
        },
        stop: stop.then_some(StopReason::MaxTokens),
        text: "t".into(),
        trace,
    };
    serde_json::to_string(&line).unwrap() + "\n"
}

/// The prompt line: one token, its embedding row `width` wide.
fn prompt(width: usize) -> String {
    serde_json::json!({"prompt": {"tokens": [{"id": 1, "piece": "a"}],
                                  "embeddings": [vec![0.5; width]]}})
    .to_string()
        + "\n"
}

/// The answer `lines` make, from a scripted samemath server: its text or error, and the text
/// that arrived.
fn answer(lines: &[String]) -> (Result<String, RemoteError>, String) {
    let port = scripted(vec![(Duration::ZERO, streamed(lines.concat().as_bytes()))]);
    let (r, _, text) = run_fake(port, |c| c.api = Some(ApiKind::Samemath));
    (r, text)
}

fn protocol_error(r: &Result<String, RemoteError>, says: &str) -> bool {
    matches!(r, Err(RemoteError::Protocol(m)) if m.contains(says))
}

#[test]
fn well_shaped_answers_pass() {
    let t = || Some(trace(2, 16, 3, 8));
    let lines = [prompt(8), step(0, "a", t(), false), step(1, "b", t(), true)];
    let (r, _) = answer(&lines);
    assert_eq!(r.unwrap(), "tt");
}

#[test]
fn a_trace_too_big_in_all_layers_is_refused() {
    // 128 layers of 16,384 activations: each within its bound, 2 million columns together.
    let big = trace(MAX_TRACE_LAYERS, MAX_TRACE_WIDTH, 1, 8);
    let (r, text) = answer(&[prompt(8), step(0, "a", Some(big), true)]);
    assert!(protocol_error(&r, "MLP activations in all layers"), "{r:?}");
    assert_eq!(text, "");
}

#[test]
fn steps_of_another_shape_than_the_first_are_refused() {
    let lines = [
        prompt(8),
        step(0, "a", Some(trace(2, 16, 3, 8)), false),
        step(1, "b", Some(trace(2, 32, 3, 8)), true),
    ];
    let (r, text) = answer(&lines);
    assert!(protocol_error(&r, "the answer's first step had"), "{r:?}");
    assert_eq!(text, "t", "the first step is kept");
    // Layers and heads count too.
    for other in [trace(3, 16, 3, 8), trace(2, 16, 4, 8)] {
        let lines = [
            step(0, "a", Some(trace(2, 16, 3, 8)), false),
            step(1, "b", Some(other), true),
        ];
        assert!(protocol_error(&answer(&lines).0, "first step had"));
    }
    // An embedding of another width than the prompt line's rows.
    let lines = [prompt(8), step(0, "a", Some(trace(2, 16, 3, 9)), true)];
    let (r, _) = answer(&lines);
    assert!(protocol_error(&r, "the prompt line's rows 8"), "{r:?}");
}

#[test]
fn pieces_of_100000_bytes_are_refused() {
    let long = "p".repeat(100_000);
    let (r, _) = answer(&[step(0, &long, None, true)]);
    assert!(protocol_error(&r, "sampled token"), "{r:?}");
    let mut t = trace(2, 16, 3, 8);
    t.token.piece = long.clone();
    let (r, _) = answer(&[step(0, "a", Some(t), true)]);
    assert!(protocol_error(&r, "trace token"), "{r:?}");
    let mut t = trace(2, 16, 3, 8);
    t.top_k.push(TokenProb {
        id: 7,
        piece: long.clone(),
        logit: 1.0,
        prob: 0.5,
    });
    let (r, _) = answer(&[step(0, "a", Some(t), true)]);
    assert!(protocol_error(&r, "candidate 0"), "{r:?}");
    let mut t = trace(2, 16, 3, 8);
    t.layers[1].logit_lens = Some(TokenProb {
        id: 7,
        piece: long.clone(),
        logit: 1.0,
        prob: 0.5,
    });
    let (r, _) = answer(&[step(0, "a", Some(t), true)]);
    assert!(protocol_error(&r, "logit lens at layer 1"), "{r:?}");
    let line = serde_json::json!({"prompt": {"tokens": [{"id": 1, "piece": long}],
                                             "embeddings": [[0.5]]}});
    let (r, _) = answer(&[line.to_string() + "\n"]);
    assert!(protocol_error(&r, "prompt line's token 0"), "{r:?}");
}
