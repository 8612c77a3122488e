//! The LLM engine against llama.cpp (fixtures from tests/reference/make_fixtures.py, run on the
//! same GGUF), and its own invariants. Needs the model: `samemath fetch-model` (CI does it).

use llm::fetch;
use llm::model::{argmax, top_k};
use llm::{GenerationRequest, LlmError, Model, RecordOptions, SamplingParams, Session, StopReason};
use serde_json::Value;
use testkit::model::{model, model_path};

/// The logit tolerance against llama.cpp, on top-10 logits taken relative to each side's best
/// logit (a common shift changes no probability). Both engines quantize the activations to 8
/// bits per 32-value block before every matrix product (Q8_1 for the Q4_1 layers, Q8_0 for the
/// head) and multiply integers, with the same block formulas (crates/llm/src/quant.rs follows
/// llama.cpp's); but a float summed in another order flips an int8 rounding now and then, and
/// those flips compound through 30 layers; llama.cpp also keeps its KV cache in f16, we in f32.
/// llama.cpp is not consistent with itself at that level either: on "The capital of France is"
/// its batched and token-by-token paths differ by 0.07, its f16 and f32 KV caches by 0.15.
/// Measured here: at most 0.59 over 22 prompts (printed by the test; 0.84 before the head, too,
/// took 8-bit inputs as llama.cpp's does).
const LOGIT_TOLERANCE: f32 = 1.0;

fn fixture(name: &str) -> Value {
    let path = testkit::model::workspace_dir()
        .join("tests/reference/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn tokenizer_matches_llama_cpp_and_round_trips() {
    let (_, tok) = model();
    let fx = fixture("tokenizer.json");
    assert_eq!(fx["model_sha256"], fetch::MODEL_SHA256);
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 200);
    let mut mismatches = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ours = tok.encode(text).unwrap();
        if ours != ids(&case["ids"]) {
            mismatches.push(format!(
                "{text:?}: ours {ours:?}, llama.cpp {}",
                case["ids"]
            ));
        }
        assert_eq!(tok.decode(&ours).unwrap(), text, "round trip of {text:?}");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

#[test]
fn logits_and_greedy_tokens_match_llama_cpp() {
    let (model, tok) = model();
    let fx = fixture("logits.json");
    let prompts = fx["prompts"].as_array().unwrap();
    assert!(prompts.len() >= 20);
    let (mut agree, mut total, mut worst) = (0usize, 0usize, 0f32);
    let mut disagreements = Vec::new();
    let mut failures = Vec::new();
    for p in prompts {
        let name = p["name"].as_str().unwrap();
        let tokens = ids(&p["tokens"]);
        assert_eq!(
            tok.encode(p["text"].as_str().unwrap()).unwrap(),
            tokens,
            "{name}"
        );
        let mut cache = model.new_cache();
        let out = model
            .forward(&mut cache, &tokens, RecordOptions::OFF, None)
            .unwrap();
        // Top-10: logits within the tolerance; the best token the same unless llama.cpp's own
        // top two are closer than the tolerance.
        let theirs: Vec<(u32, f32)> = serde_json::from_value(p["top10"].clone()).unwrap();
        let ours = top_k(&out.logits, 10);
        // Compared relative to each side's own best logit: a constant shift of all logits
        // changes no probability, so it is not a difference.
        let (their_best, our_best) = (theirs[0].1, out.logits[theirs[0].0 as usize]);
        let mut prompt_worst = 0f32;
        let mut raw_worst = 0f32;
        for (id, logit) in &theirs {
            let ours_rel = out.logits[*id as usize] - our_best;
            prompt_worst = prompt_worst.max((ours_rel - (logit - their_best)).abs());
            raw_worst = raw_worst.max((out.logits[*id as usize] - logit).abs());
        }
        worst = worst.max(prompt_worst);
        println!(
            "{name}: top-10 logit difference {prompt_worst:.4} (relative), {raw_worst:.4} (raw); \
             ours top-3 {:?}, llama.cpp {:?}",
            ours.iter().take(3).map(|t| (t.0, t.1)).collect::<Vec<_>>(),
            &theirs[..3]
        );
        if prompt_worst >= LOGIT_TOLERANCE {
            failures.push(format!("{name}: a top-10 logit differs by {prompt_worst}"));
        }
        if ours[0].0 != theirs[0].0 && theirs[0].1 - theirs[1].1 > LOGIT_TOLERANCE {
            failures.push(format!(
                "{name}: best token {} vs llama.cpp {}",
                ours[0].0, theirs[0].0
            ));
        }
        // Greedy, teacher-forced on llama.cpp's tokens so one early tie does not cascade.
        let greedy = ids(&p["greedy"]);
        let margins: Vec<f32> = serde_json::from_value(p["greedy_margins"].clone()).unwrap();
        let mut logits = out.logits;
        for (step, want) in greedy.iter().enumerate() {
            let got = argmax(&logits);
            total += 1;
            if got == *want {
                agree += 1;
            } else {
                disagreements.push(format!(
                    "{name} step {step}: ours {got}, llama.cpp {want} (their top-2 margin {:.3})",
                    margins[step]
                ));
            }
            logits = model
                .forward(&mut cache, &[*want], RecordOptions::OFF, None)
                .unwrap()
                .logits;
        }
    }
    let rate = agree as f64 / total as f64;
    println!(
        "greedy agreement with llama.cpp: {agree}/{total} = {:.2}%; worst top-10 logit \
         difference {worst:.4}",
        rate * 100.0
    );
    for d in &disagreements {
        println!("  {d}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(rate >= 0.95, "greedy agreement {rate:.4} < 0.95");
}

fn traced(prompt: &str) -> llm::Trace {
    let (model, tok) = model();
    let tokens = tok.encode(prompt).unwrap();
    let mut cache = model.new_cache();
    model
        .forward(&mut cache, &tokens, RecordOptions::FULL, Some(tok))
        .unwrap()
        .trace
        .unwrap()
}

#[test]
fn trace_has_every_internal_and_attention_rows_sum_to_one() {
    let (model, _) = model();
    let cfg = &model.config;
    let trace = traced("The capital of France is");
    assert_eq!(trace.embedding.len(), cfg.n_embd);
    assert_eq!(trace.layers.len(), cfg.n_layer);
    assert_eq!(trace.kv_head_of_head, vec![0, 0, 0, 1, 1, 1, 2, 2, 2]);
    for layer in &trace.layers {
        assert_eq!(layer.attention.len(), cfg.n_head);
        for row in &layer.attention {
            assert_eq!(row.len(), trace.position + 1);
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "attention row sums to {sum}");
        }
        assert_eq!(layer.mlp_activation.len(), cfg.n_ff);
        assert!(layer.residual_norm_in > 0.0 && layer.residual_norm_out > 0.0);
        assert!(layer.logit_lens.is_some());
    }
    assert_eq!(trace.top_k.len(), 20);
    assert_eq!(trace.top_k[0].piece, " Paris");
    assert_eq!(
        trace.layers.last().unwrap().logit_lens.as_ref().unwrap().id,
        trace.top_k[0].id,
        "the last layer's lens is the model's own answer"
    );
    // The embedding row is the token's row of the table: the same for the same token.
    let again = traced(" is");
    assert_eq!(again.embedding, trace.embedding);
}

#[test]
fn prompt_at_once_equals_token_by_token() {
    let (model, tok) = model();
    // Past one tile of the attention's keys (64 positions), so both ways cross its edge.
    let tokens = tok
        .encode(&"Game graphics and LLMs run the same math. ".repeat(9))
        .unwrap();
    assert!(tokens.len() > 64, "{} tokens", tokens.len());
    let mut cache = model.new_cache();
    let at_once = model
        .forward(&mut cache, &tokens, RecordOptions::FULL, Some(tok))
        .unwrap();
    let mut cache = model.new_cache();
    let mut last = None;
    for t in &tokens {
        last = Some(
            model
                .forward(&mut cache, &[*t], RecordOptions::FULL, Some(tok))
                .unwrap(),
        );
    }
    let one_by_one = last.unwrap();
    // The same arithmetic in the same order either way (each input's products, the tiles'
    // keys and sums): the same bits.
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(
        bits(&at_once.logits) == bits(&one_by_one.logits),
        "logits differ"
    );
    let (a, b) = (at_once.trace.unwrap(), one_by_one.trace.unwrap());
    assert_eq!(a.position, b.position);
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        for (ra, rb) in la.attention.iter().zip(&lb.attention) {
            for (x, y) in ra.iter().zip(rb) {
                assert!((x - y).abs() < 1e-4);
            }
        }
        for (x, y) in la.mlp_activation.iter().zip(&lb.mlp_activation) {
            assert!((x - y).abs() < 1e-3 * (1.0 + x.abs()));
        }
    }
}

#[test]
fn session_streams_stops_and_cancels() {
    let (model, tok) = model();
    let mut request = GenerationRequest::new("The capital of France is");
    request.chat = false;
    request.max_tokens = 12;
    let mut session = Session::new(model.clone(), tok.clone(), &request).unwrap();
    let mut text = String::new();
    let mut steps = 0;
    while let Some(step) = session.step().unwrap() {
        text.push_str(&step.text);
        steps += 1;
    }
    assert!(text.contains("Paris"), "{text}");
    assert!(steps <= 12);
    assert!(matches!(
        session.finished(),
        Some(StopReason::EndToken | StopReason::MaxTokens)
    ));
    // Cancel between steps: the next step does not run.
    let mut session = Session::new(model.clone(), tok.clone(), &request).unwrap();
    session.step().unwrap().unwrap();
    session.cancel_token().cancel();
    assert!(session.step().unwrap().is_none());
    assert_eq!(session.finished(), Some(StopReason::Cancelled));
    assert_eq!(session.generated_tokens().len(), 1);
    // Seeded sampling is reproducible.
    request.sampling = SamplingParams {
        temperature: 0.9,
        seed: 3,
        ..Default::default()
    };
    let run = || {
        let mut s = Session::new(model.clone(), tok.clone(), &request).unwrap();
        while s.step().unwrap().is_some() {}
        s.generated_tokens().to_vec()
    };
    assert_eq!(run(), run());
}

#[test]
fn bad_prompts_are_typed_errors() {
    let (model, tok) = model();
    let empty = Session::new(model.clone(), tok.clone(), &GenerationRequest::new("  "));
    assert!(matches!(empty, Err(LlmError::EmptyPrompt)));
    let mut long = GenerationRequest::new("token ".repeat(9000));
    long.chat = false;
    match Session::new(model.clone(), tok.clone(), &long) {
        Err(LlmError::PromptTooLong { tokens, context }) => {
            assert!(tokens >= 8192 && context == 8192)
        }
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
}

#[test]
fn broken_model_files_are_typed_errors() {
    let dir = std::env::temp_dir().join(format!("samemath-llm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_gguf = dir.join("not.gguf");
    std::fs::write(&not_gguf, b"definitely not a gguf file").unwrap();
    assert!(matches!(
        Model::load(&not_gguf),
        Err(LlmError::NotGguf { .. })
    ));
    // The real file cut short: the header reads, the tensors do not.
    let bytes = std::fs::read(model_path()).unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = Model::load(&truncated).unwrap_err();
    assert!(matches!(err, LlmError::Tensor { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn greedy_argmax_and_top_k_agree() {
    let (model, tok) = model();
    let tokens = tok.encode("1, 2, 3,").unwrap();
    let out = model
        .forward(&mut model.new_cache(), &tokens, RecordOptions::OFF, None)
        .unwrap();
    assert_eq!(top_k(&out.logits, 1)[0].0, argmax(&out.logits));
    // smollm splits digits from the space before them: " " then "4".
    let mut request = GenerationRequest::new("1, 2, 3,");
    request.chat = false;
    request.max_tokens = 2;
    let mut session = Session::new(model.clone(), tok.clone(), &request).unwrap();
    let mut text = String::new();
    while let Some(step) = session.step().unwrap() {
        text.push_str(&step.text);
    }
    assert_eq!(text, " 4");
}
