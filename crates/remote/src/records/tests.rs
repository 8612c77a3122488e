//! The record readers' tests: each API's records folded into steps and a summary, and
//! what a hostile server's records get.

use super::*;
use serde_json::json;

#[test]
fn reasoning_shows_progress_and_keep_alives_do_not() {
    for (api, v, progress) in [
        (ApiKind::Ollama, json!({"done": false}), false),
        (
            ApiKind::Ollama,
            json!({"message": {"content": ""}, "done": false}),
            false,
        ),
        (
            ApiKind::Ollama,
            json!({"message": {"thinking": "hm"}, "done": false}),
            true,
        ),
        (
            ApiKind::Ollama,
            json!({"thinking": "hm", "done": false}),
            true,
        ),
        (
            ApiKind::Ollama,
            json!({"response": "a", "done": false}),
            true,
        ),
        (ApiKind::OpenAi, json!({"choices": [{"delta": {}}]}), false),
        (
            ApiKind::OpenAi,
            json!({"choices": [{"delta": {"content": ""}}]}),
            false,
        ),
        (
            ApiKind::OpenAi,
            json!({"choices": [{"delta": {"reasoning_content": "so"}}]}),
            true,
        ),
        (
            ApiKind::OpenAi,
            json!({"choices": [{"delta": {"reasoning": "so"}}]}),
            true,
        ),
        (ApiKind::OpenAi, json!({"choices": [{"text": "a"}]}), true),
    ] {
        assert_eq!(
            shows_progress(api, &Record::Json(v.clone())),
            progress,
            "{api:?} {v}"
        );
    }
    // Every samemath line is the server at work.
    let prompt = TraceLine::Prompt(RemoteEvent::Prompt {
        tokens: vec![],
        embeddings: vec![],
    });
    assert!(shows_progress(ApiKind::Samemath, &Record::Trace(prompt)));
}

/// The steps and the outcome of feeding `lines` (one answer) to `record`.
fn fold(api: ApiKind, lines: &[Value]) -> (Vec<RemoteStep>, Result<RemoteSummary, RemoteError>) {
    let mut steps = Vec::new();
    let mut summary = RemoteSummary::default();
    let mut on_event = |e| {
        if let RemoteEvent::Step(s) = e {
            steps.push(*s);
        }
    };
    let mut outcome = Ok(());
    let mut seen = Seen::default();
    for v in lines {
        if let Err(e) = record(
            api,
            Record::Json(v.clone()),
            &mut summary,
            &mut seen,
            &mut on_event,
        ) {
            outcome = Err(e);
            break;
        }
    }
    (steps, outcome.map(|()| summary))
}

#[test]
fn alternatives_are_few_and_log_probabilities_possible() {
    // 100,000 alternatives, the best last: 5 kept, best first.
    let many: Vec<Value> = (0..100_000)
        .map(|i| json!({"token": format!("t{i}"), "logprob": -1.0 - 1e-4 * f64::from(100_000 - i)}))
        .collect();
    let line = json!({"response": "a", "done": false,
                      "logprobs": [{"token": "a", "logprob": -0.5, "top_logprobs": many}]});
    let (steps, r) = fold(ApiKind::Ollama, &[line]);
    r.unwrap();
    let top = &steps[0].top_logprobs;
    assert_eq!(top.len(), TOP_LOGPROBS);
    assert_eq!(top[0].0, "t99999");
    assert!(top.windows(2).all(|w| w[0].1 >= w[1].1), "{top:?}");

    // Impossible values: above 0, past f32's range, not numbers; and a text no token has.
    // Rounding clamps to 0.
    let line = json!({"response": "b", "done": false, "logprobs": [{"token": "b",
        "logprob": 5.0, "top_logprobs": [
            {"token": "x", "logprob": 5.0}, {"token": "y", "logprob": 1e39},
            {"token": "z", "logprob": -1e39}, {"token": "w", "logprob": "-1"},
            {"token": "r", "logprob": 1e-6}, {"token": "b", "logprob": -0.25},
            {"token": "l".repeat(ALTERNATIVE_BYTES + 1), "logprob": -0.1}]}]});
    let (steps, r) = fold(ApiKind::Ollama, &[line]);
    r.unwrap();
    assert_eq!(steps[0].logprob, None);
    assert_eq!(
        steps[0].top_logprobs,
        vec![("r".to_string(), 0.0), ("b".to_string(), -0.25)]
    );
    let line = json!({"response": "c", "done": false,
                      "logprobs": [{"token": "c", "logprob": 1e39, "top_logprobs": []}]});
    let (steps, _) = fold(ApiKind::Ollama, &[line]);
    assert_eq!(steps[0].logprob, None);

    // OpenAI completions: a map, sorted, then cut; its own log-probability checked too.
    let map: serde_json::Map<String, Value> = (0..50)
        .map(|i| (format!("k{i}"), json!(-f64::from(i))))
        .chain([("up".to_string(), json!(3.0))])
        .collect();
    let line = json!({"choices": [{"text": "k0", "logprobs": {
        "token_logprobs": [7.0], "top_logprobs": [map]}}]});
    let (steps, r) = fold(ApiKind::OpenAi, &[line]);
    r.unwrap();
    assert_eq!(steps[0].logprob, None);
    let names: Vec<&str> = steps[0].top_logprobs.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(names, ["k0", "k1", "k2", "k3", "k4"]);
}

#[test]
fn a_record_of_several_tokens_is_a_step_a_token() {
    let lp = |t: &str, l: f64| {
        json!({"token": t, "logprob": l, "top_logprobs": [
        {"token": t, "logprob": l}]})
    };
    let texts_and_logprobs = |steps: &[RemoteStep]| -> Vec<(String, Option<f32>)> {
        steps.iter().map(|s| (s.text.clone(), s.logprob)).collect()
    };
    let want = vec![
        ("Hel".to_string(), Some(-0.5)),
        ("lo".to_string(), Some(-1.0)),
        (" w".to_string(), Some(-2.0)),
    ];
    // Ollama.
    let line = json!({"response": "Hello w", "done": false,
                      "logprobs": [lp("Hel", -0.5), lp("lo", -1.0), lp(" w", -2.0)]});
    let (steps, r) = fold(ApiKind::Ollama, std::slice::from_ref(&line));
    assert_eq!(r.unwrap().tokens, 3);
    assert_eq!(texts_and_logprobs(&steps), want);
    // Asked for one token, the record's third never reaches the app (the client cuts at
    // the second, the first past what was asked).
    let mut seen = Seen::asking(1);
    let mut summary = RemoteSummary::default();
    let mut n = 0;
    record(
        ApiKind::Ollama,
        Record::Json(line),
        &mut summary,
        &mut seen,
        &mut |_| n += 1,
    )
    .unwrap();
    assert_eq!((n, summary.tokens), (2, 2));
    assert_eq!(steps[1].top_logprobs, vec![("lo".to_string(), -1.0)]);
    assert_eq!(steps.iter().map(|s| s.index).collect::<Vec<_>>(), [0, 1, 2]);
    // OpenAI chat.
    let line = json!({"choices": [{"delta": {"content": "Hello w"}, "logprobs": {
        "content": [lp("Hel", -0.5), lp("lo", -1.0), lp(" w", -2.0)]}}]});
    let (steps, r) = fold(ApiKind::OpenAi, &[line]);
    r.unwrap();
    assert_eq!(texts_and_logprobs(&steps), want);
    // OpenAI completions.
    let line = json!({"choices": [{"text": "Hello w", "logprobs": {
        "tokens": ["Hel", "lo", " w"], "token_logprobs": [-0.5, -1.0, -2.0],
        "top_logprobs": [{"Hel": -0.5}, {"lo": -1.0}, {" w": -2.0}]}}]});
    let (steps, r) = fold(ApiKind::OpenAi, &[line]);
    r.unwrap();
    assert_eq!(texts_and_logprobs(&steps), want);
    assert_eq!(steps[2].top_logprobs, vec![(" w".to_string(), -2.0)]);
    // Tokens that do not spell the text: one step, as before.
    let line = json!({"response": "Hello", "done": false,
                      "logprobs": [lp("Hel", -0.5), lp("xx", -1.0)]});
    let (steps, _) = fold(ApiKind::Ollama, &[line]);
    assert_eq!(
        texts_and_logprobs(&steps),
        [("Hello".to_string(), Some(-0.5))]
    );
}

#[test]
fn step_and_answer_text_are_bounded() {
    let line = |n: usize| json!({"response": "a".repeat(n), "done": false});
    let (steps, r) = fold(ApiKind::Ollama, &[line(STEP_TEXT_BYTES + 1)]);
    assert!(steps.is_empty());
    assert!(
        matches!(&r, Err(RemoteError::Protocol(m)) if m.contains("bytes of text")),
        "{r:?}"
    );
    // Steps each within their bound, together past the answer's.
    let lines = vec![line(STEP_TEXT_BYTES); ANSWER_TEXT_BYTES / STEP_TEXT_BYTES + 1];
    let (steps, r) = fold(ApiKind::Ollama, &lines);
    assert_eq!(steps.len(), ANSWER_TEXT_BYTES / STEP_TEXT_BYTES);
    assert!(
        matches!(&r, Err(RemoteError::Protocol(m)) if m.contains("answer's text")),
        "{r:?}"
    );
    // Right at the bound: fine.
    let (_, r) = fold(
        ApiKind::OpenAi,
        &[json!({"choices": [{"text": "b".repeat(STEP_TEXT_BYTES)}]})],
    );
    assert_eq!(r.unwrap().text.len(), STEP_TEXT_BYTES);
}

#[test]
fn impossible_ollama_timings_say_nothing() {
    let done = |eval_count: Value, eval_duration: Value, load_duration: Value| {
        let line = json!({"response": "", "done": true, "eval_count": eval_count,
                          "eval_duration": eval_duration, "load_duration": load_duration});
        let (_, r) = fold(ApiKind::Ollama, &[line]);
        let s = r.unwrap();
        (s.server_tokens_per_sec, s.load_secs)
    };
    assert_eq!(
        done(json!(10), json!(2e9), json!(5e8)),
        (Some(5.0), Some(0.5))
    );
    assert_eq!(done(json!(-10), json!(2e9), json!(-5e8)), (None, None));
    assert_eq!(done(json!(10), json!(-2e9), json!("x")), (None, None));
    // Finite, but past what a rate can be (1e308 / 1e-9 overflows).
    assert_eq!(done(json!(1e308), json!(1), json!(0)), (None, Some(0.0)));
    assert_eq!(done(json!(0), json!(0), json!(null)), (None, None));
}

#[test]
fn reasoning_is_bounded_like_the_answers_text() {
    let chunk = "r".repeat(STEP_TEXT_BYTES);
    let line = json!({"message": {"thinking": chunk}, "done": false});
    let lines = vec![line; REASONING_BYTES / STEP_TEXT_BYTES + 1];
    let (steps, r) = fold(ApiKind::Ollama, &lines);
    assert!(steps.is_empty());
    assert!(
        matches!(&r, Err(RemoteError::Protocol(m)) if m.contains("reasoning passed")),
        "{r:?}"
    );
    // One byte a record, endlessly: ended by the count of records.
    let line = json!({"thinking": "x", "done": false});
    let (_, r) = fold(ApiKind::Ollama, &vec![line; REASONING_RECORDS + 1]);
    assert!(
        matches!(&r, Err(RemoteError::Protocol(m)) if m.contains("records")),
        "{r:?}"
    );
    // Up to the bound: fine, and text in the same record still counts.
    let line = json!({"choices": [{"delta": {"reasoning": chunk, "content": "a"}}]});
    let lines = vec![line; REASONING_BYTES / STEP_TEXT_BYTES];
    let (steps, r) = fold(ApiKind::OpenAi, &lines);
    assert_eq!(steps.len(), REASONING_BYTES / STEP_TEXT_BYTES);
    r.unwrap();
}

#[test]
fn server_errors_are_shortened_and_escaped() {
    let long = format!("boom\u{1b}[2J{}", "x".repeat(10_000));
    let (_, r) = fold(ApiKind::Ollama, &[json!({"error": long})]);
    let Err(RemoteError::Server(m)) = r else {
        panic!("{r:?}");
    };
    assert!(
        m.chars().count() <= 300 && m.starts_with("boom\\u{1b}[2J"),
        "{m}"
    );
    assert!(!m.chars().any(char::is_control), "{m}");
}

#[test]
fn embeddings_are_finite_numbers_of_bounded_length() {
    let path = "/api/embed";
    assert_eq!(
        embedding(&json!({"embeddings": [[0.5, -1.0]]}), path).unwrap(),
        vec![0.5, -1.0]
    );
    assert_eq!(
        embedding(&json!({"data": [{"embedding": [2.0]}]}), path).unwrap(),
        vec![2.0]
    );
    for bad in [
        json!({"embeddings": [[0.5, "x", 1.0]]}),
        json!({"embeddings": [[0.5, null]]}),
        json!({"embeddings": [[1e39]]}),
        json!({"embeddings": [vec![0.0; EMBEDDING_VALUES + 1]]}),
        json!({"embeddings": []}),
    ] {
        let r = embedding(&bad, path);
        assert!(matches!(r, Err(RemoteError::Protocol(_))), "{r:?}");
    }
}
