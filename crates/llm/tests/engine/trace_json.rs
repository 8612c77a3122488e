//! A trace from elsewhere (a remote server's JSON) is checked, not trusted: hostile variants of a
//! valid trace read as a typed error or as a trace whose check says `Ok` or why not, and what
//! passes holds only finite numbers within the bounds the scene draws.

use llm::TraceStep;
use llm::trace::{LayerTrace, MAX_TRACE_POSITION, TokenInfo, TokenProb, Trace};

fn valid() -> Trace {
    let (layers, heads, position) = (3, 6, 4);
    let candidate = TokenProb {
        id: 7,
        piece: "b".into(),
        logit: 2.0,
        prob: 0.25,
    };
    Trace {
        position,
        token: TokenInfo {
            id: 1,
            piece: "a".into(),
        },
        embedding: vec![0.5; 8],
        kv_head_of_head: (0..heads).map(|h| h / 3).collect(),
        layers: (0..layers)
            .map(|i| LayerTrace {
                attention: vec![vec![0.2; position + 1]; heads],
                mlp_activation: vec![-0.5; 16],
                mlp_input: vec![0.1; 8],
                residual_norm_in: 1.0,
                residual_norm_out: 2.0,
                logit_lens: (i == 1).then(|| candidate.clone()),
            })
            .collect(),
        top_k: vec![candidate],
    }
}

#[test]
fn hostile_trace_json_is_a_typed_error_or_checked() {
    let trace = valid();
    assert_eq!(trace.check_shape(), Ok(()));
    // One line of /api/trace, as our client reads it.
    let step = TraceStep {
        step: 2,
        sampled: trace.token.clone(),
        stop: None,
        text: "a".into(),
        trace: Some(trace),
    };
    let base = serde_json::to_value(&step).unwrap();
    let (mut passed, mut refused, mut unread) = (0, 0, 0);
    for v in testkit::json::mutated(&base, 11, 4000) {
        match serde_json::from_value::<TraceStep>(v) {
            Err(_) => unread += 1,
            Ok(TraceStep { trace: None, .. }) => passed += 1,
            Ok(TraceStep { trace: Some(t), .. }) => match t.check_shape() {
                Err(_) => refused += 1,
                Ok(()) => {
                    passed += 1;
                    assert!(t.position <= MAX_TRACE_POSITION);
                    let numbers = t.layers.iter().flat_map(|l| {
                        l.mlp_activation
                            .iter()
                            .chain(l.attention.iter().flatten())
                            .chain(&l.mlp_input)
                            .chain([&l.residual_norm_in, &l.residual_norm_out])
                    });
                    assert!(numbers.chain(&t.embedding).all(|x| x.is_finite()));
                    assert!(t.top_k.iter().all(|c| (0.0..=1.0).contains(&c.prob)));
                }
            },
        }
    }
    println!("{passed} passed, {refused} refused by the check, {unread} not a trace step");
    assert!(passed > 0 && refused > 0 && unread > 0);
}
