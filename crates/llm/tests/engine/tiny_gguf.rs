//! A random-weight tiny llama GGUF written by the test itself: exercises the loader, the
//! tokenizer builder and the forward pass in milliseconds, and the metadata/tensor checks.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use llm::sampling::Rng;
use llm::{LlmError, Model, RecordOptions};

const N_EMBD: usize = 64;
const N_FF: usize = 128;
const N_HEAD: usize = 4;
const N_KV: usize = 2;

pub(super) struct Spec {
    pub(super) arch: &'static str,
    pub(super) block_count: u32,
    pub(super) layers_written: usize,
    pub(super) head_count: u32,
    pub(super) alignment: Option<u32>,
    /// Metadata written in place of the usual value (`None`: the key is left out).
    pub(super) overrides: Vec<(&'static str, Option<Value>)>,
}

fn random(rng: &mut Rng, shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn q8(t: &Tensor) -> QTensor {
    QTensor::quantize(t, GgmlDType::Q8_0).unwrap()
}

fn f32t(t: &Tensor) -> QTensor {
    QTensor::quantize(t, GgmlDType::F32).unwrap()
}

/// The byte-level alphabet (256 symbols), then a merge "h e" -> "he" and a control token.
fn vocab() -> (Vec<String>, Vec<String>, Vec<i32>) {
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    alphabet.sort();
    let mut tokens: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
    tokens.push("he".into());
    tokens.push("<|im_end|>".into());
    let mut types = vec![1; tokens.len()];
    *types.last_mut().unwrap() = 3;
    (tokens, vec!["h e".into()], types)
}

pub(super) fn write_tiny(path: &Path, spec: &Spec) {
    let mut rng = Rng::new(11);
    let (tokens, merges, types) = vocab();
    let vocab_size = tokens.len();
    let strs = |v: &[String]| Value::Array(v.iter().map(|s| Value::String(s.clone())).collect());
    let mut metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String(spec.arch.into())),
        ("llama.block_count", Value::U32(spec.block_count)),
        ("llama.embedding_length", Value::U32(N_EMBD as u32)),
        ("llama.feed_forward_length", Value::U32(N_FF as u32)),
        ("llama.attention.head_count", Value::U32(spec.head_count)),
        (
            "llama.attention.head_count_kv",
            Value::U32(if spec.head_count == N_HEAD as u32 {
                N_KV as u32
            } else {
                spec.head_count
            }),
        ),
        (
            "llama.rope.dimension_count",
            Value::U32((N_EMBD / N_HEAD) as u32),
        ),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.context_length", Value::U32(64)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("smollm".into())),
        ("tokenizer.ggml.tokens", strs(&tokens)),
        ("tokenizer.ggml.merges", strs(&merges)),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.iter().map(|t| Value::I32(*t)).collect()),
        ),
        (
            "tokenizer.ggml.eos_token_id",
            Value::U32(vocab_size as u32 - 1),
        ),
    ];
    if let Some(a) = spec.alignment {
        metadata.push(("general.alignment", Value::U32(a)));
    }
    for (key, value) in &spec.overrides {
        metadata.retain(|(k, _)| *k != *key);
        if let Some(v) = value {
            metadata.push((key, v.clone()));
        }
    }
    let kv = N_KV * N_EMBD / N_HEAD;
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            q8(&random(&mut rng, &[vocab_size, N_EMBD], 1.0)),
        ),
        (
            "output_norm.weight".into(),
            f32t(&random(&mut rng, &[N_EMBD], 1.0).abs().unwrap()),
        ),
    ];
    for i in 0..spec.layers_written {
        let p = format!("blk.{i}");
        let mut add = |name: &str, t: QTensor| tensors.push((format!("{p}.{name}"), t));
        add(
            "attn_norm.weight",
            f32t(&random(&mut rng, &[N_EMBD], 1.0).abs().unwrap()),
        );
        add(
            "attn_q.weight",
            q8(&random(&mut rng, &[N_EMBD, N_EMBD], 0.2)),
        );
        add("attn_k.weight", q8(&random(&mut rng, &[kv, N_EMBD], 0.2)));
        add("attn_v.weight", q8(&random(&mut rng, &[kv, N_EMBD], 0.2)));
        add(
            "attn_output.weight",
            q8(&random(&mut rng, &[N_EMBD, N_EMBD], 0.2)),
        );
        add(
            "ffn_norm.weight",
            f32t(&random(&mut rng, &[N_EMBD], 1.0).abs().unwrap()),
        );
        add(
            "ffn_gate.weight",
            q8(&random(&mut rng, &[N_FF, N_EMBD], 0.2)),
        );
        add("ffn_up.weight", q8(&random(&mut rng, &[N_FF, N_EMBD], 0.2)));
        add(
            "ffn_down.weight",
            q8(&random(&mut rng, &[N_EMBD, N_FF], 0.2)),
        );
    }
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &md, &ts).unwrap();
}

pub(super) fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("samemath-tiny-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

pub(super) const GOOD: Spec = Spec {
    arch: "llama",
    block_count: 2,
    layers_written: 2,
    head_count: N_HEAD as u32,
    alignment: None,
    overrides: Vec::new(),
};

#[test]
fn tiny_model_loads_tokenizes_and_runs() {
    let path = tmp("tiny.gguf");
    write_tiny(&path, &GOOD);
    let (model, tok) = Model::load(&path).unwrap();
    assert_eq!(model.config.n_layer, 2);
    assert_eq!(model.config.group_size(), 2);
    let ids = tok.encode("hello 42<|im_end|>").unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), "hello 42<|im_end|>");
    assert_eq!(
        *ids.last().unwrap(),
        tok.vocab_size() as u32 - 1,
        "control token"
    );
    assert_eq!(tok.piece(ids[0]), "he", "the merge applies");
    // Digits split one by one (smollm): "4" and "2" are separate tokens.
    assert!(ids.len() >= 6);
    let mut cache = model.new_cache();
    let at_once = model
        .forward(&mut cache, &ids, RecordOptions::FULL, Some(&tok))
        .unwrap();
    let trace = at_once.trace.unwrap();
    assert_eq!(trace.layers.len(), 2);
    for layer in &trace.layers {
        for row in &layer.attention {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
    let mut cache = model.new_cache();
    let mut last = Vec::new();
    for id in &ids {
        last = model
            .forward(&mut cache, &[*id], RecordOptions::OFF, None)
            .unwrap()
            .logits;
    }
    let diff = at_once
        .logits
        .iter()
        .zip(&last)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "KV cache: {diff}");
    // Streaming text: characters split over several byte tokens are held back until whole,
    // and the deltas add up to the full decode.
    let text = "h\u{e9}llo \u{1F600} \u{65E5}\u{672C}";
    let ids = tok.encode(text).unwrap();
    let mut stream = llm::tokenizer::TextStream::default();
    let deltas: Vec<String> = ids.iter().map(|id| stream.push(&tok, *id)).collect();
    assert_eq!(deltas.concat(), text);
    assert!(deltas.iter().all(|d| !d.contains('\u{FFFD}')));
    assert!(
        deltas.iter().any(|d| d.is_empty()),
        "a multi-byte character was held back"
    );
    // The context is 64 tokens: one more is a typed error, not a panic.
    let long = vec![0u32; 65];
    assert!(matches!(
        model.forward(&mut model.new_cache(), &long, RecordOptions::OFF, None),
        Err(LlmError::PromptTooLong { .. })
    ));
}

#[test]
fn wrong_architecture_and_missing_tensors_are_named() {
    let path = tmp("gpt2.gguf");
    write_tiny(
        &path,
        &Spec {
            arch: "gpt2",
            ..GOOD
        },
    );
    assert!(matches!(Model::load(&path), Err(LlmError::NotLlama(a)) if a == "gpt2"));
    let path = tmp("missing.gguf");
    write_tiny(
        &path,
        &Spec {
            block_count: 3,
            ..GOOD
        },
    );
    let err = Model::load(&path).unwrap_err();
    assert!(err.to_string().contains("blk.2.attn_norm.weight"), "{err}");
}

/// Write a tiny model as `spec` says and load it: the loader's error, as text.
pub(super) fn load_error(name: &str, spec: &Spec) -> String {
    let path = tmp(name);
    write_tiny(&path, spec);
    match Model::load(&path) {
        Ok(_) => panic!("{name} loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn hostile_headers_are_named_errors_not_panics() {
    // general.alignment = 0: candle would divide by it.
    let spec = Spec {
        alignment: Some(0),
        ..GOOD
    };
    let err = load_error("align0.gguf", &spec);
    assert!(err.contains("power of two"), "{err}");
    // As many heads as embedding values: a head size of 1 (rotary positions need pairs).
    let spec = Spec {
        head_count: N_EMBD as u32,
        ..GOOD
    };
    let err = load_error("dim1.gguf", &spec);
    assert!(err.contains("head size of 1"), "{err}");
    // 2^31 - 1 layers in a small file: refused before the list of expected tensors is built.
    let spec = Spec {
        block_count: i32::MAX as u32,
        ..GOOD
    };
    let err = load_error("layers.gguf", &spec);
    assert!(err.contains("2147483647 layers"), "{err}");
    // Cut anywhere in its header: an error each time.
    write_tiny(&tmp("whole.gguf"), &GOOD);
    let bytes = std::fs::read(tmp("whole.gguf")).unwrap();
    for n in (0..4096.min(bytes.len())).step_by(37) {
        let name = std::path::Path::new("cut.gguf");
        assert!(Model::from_bytes(&bytes[..n], name).is_err(), "cut at {n}");
    }
}
