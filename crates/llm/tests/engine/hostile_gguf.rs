//! Hostile model files built from the tiny GGUF (`tiny_gguf.rs`): tensors that share bytes,
//! more layers than the tensors can hold, optional keys present with values that cannot be,
//! and paths that are not files. Each is a named error before anything large is allocated.

use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use llm::gpu::{GpuContext, GpuModel};
use llm::{LlmError, Model};

use super::tiny_gguf::{GOOD, Spec, tmp, write_tiny};

/// The tiny model's bytes with tensor `name`'s data offset replaced by tensor `like`'s: the two
/// then claim the same bytes (what a file does to make a small file load as a huge model).
fn with_shared_offset(name: &str, like: &str) -> Vec<u8> {
    let path = tmp(&format!("shared-{name}.gguf"));
    write_tiny(&path, &GOOD);
    let mut bytes = std::fs::read(&path).unwrap();
    let content = Content::read(&mut std::io::Cursor::new(&bytes)).unwrap();
    let offset = content.tensor_infos[like].offset;
    // A tensor entry: u64 name length, the name, u32 dimension count, u64 per dimension, u32
    // type, u64 offset.
    let mut key = (name.len() as u64).to_le_bytes().to_vec();
    key.extend(name.as_bytes());
    let at = bytes
        .windows(key.len())
        .position(|w| w == key.as_slice())
        .expect("the tensor's entry")
        + key.len();
    let dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let at = at + 4 + 8 * dims + 4;
    bytes[at..at + 8].copy_from_slice(&offset.to_le_bytes());
    bytes
}

#[test]
fn tensors_that_share_bytes_are_refused_by_name() {
    let bytes = with_shared_offset("blk.1.attn_q.weight", "blk.0.attn_q.weight");
    let err = Model::from_bytes(&bytes, Path::new("shared.gguf")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LlmError::Tensor { .. }), "{text}");
    assert!(text.contains("overlap"), "{text}");
    assert!(text.contains("blk.0.attn_q.weight"), "{text}");
    assert!(text.contains("blk.1.attn_q.weight"), "{text}");
    // The GPU loader reads the header the same way (where this machine has an adapter).
    match GpuContext::new() {
        Ok(ctx) => {
            let err = GpuModel::from_bytes(&bytes, Path::new("shared.gguf"), ctx, 64).unwrap_err();
            assert!(err.to_string().contains("overlap"), "{err}");
        }
        Err(e) => eprintln!("the GPU loader is not checked here: {e}"),
    }
}

#[test]
fn more_layers_than_the_tensors_hold_is_a_block_count_error() {
    // 20 tensors (2 + 9 per layer for 2 layers): 20 layers would need 182.
    let spec = Spec {
        block_count: 20,
        ..GOOD
    };
    let path = tmp("layers20.gguf");
    write_tiny(&path, &spec);
    let err = Model::load(&path).unwrap_err();
    assert!(
        matches!(&err, LlmError::Metadata { key, .. } if key == "llama.block_count"),
        "{err}"
    );
    // The first tensor the file lacks is named too.
    assert!(err.to_string().contains("blk.2.attn_norm.weight"), "{err}");
}

/// The error of loading the tiny model with `key` set to `value`.
fn error_with(file: &str, key: &'static str, value: Value) -> LlmError {
    let path = tmp(file);
    write_tiny(
        &path,
        &Spec {
            overrides: vec![(key, Some(value))],
            ..GOOD
        },
    );
    Model::load(&path).unwrap_err()
}

#[test]
fn optional_keys_present_but_invalid_are_named() {
    let cases = [
        ("llama.attention.head_count_kv", Value::U32(0)),
        ("llama.context_length", Value::U32(0)),
        ("llama.context_length", Value::U32(1 << 31)),
        ("llama.context_length", Value::U64(1 << 40)),
        ("llama.rope.dimension_count", Value::U32(0)),
        ("llama.rope.freq_base", Value::F32(-1.0)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::String("x".into()),
        ),
    ];
    for (i, (key, value)) in cases.into_iter().enumerate() {
        let err = error_with(&format!("optional{i}.gguf"), key, value);
        assert!(
            matches!(&err, LlmError::Metadata { key: k, .. } if k == key),
            "{key}: {err}"
        );
    }
    // Missing, each still has its default.
    let spec = Spec {
        overrides: vec![
            ("llama.context_length", None),
            ("llama.rope.dimension_count", None),
            ("llama.rope.freq_base", None),
            ("llama.attention.layer_norm_rms_epsilon", None),
        ],
        ..GOOD
    };
    let path = tmp("defaults.gguf");
    write_tiny(&path, &spec);
    let (model, _) = Model::load(&path).unwrap();
    assert_eq!(model.config.context_length, 2048);
    assert_eq!(model.config.rope_dim, model.config.head_dim);
}

#[test]
fn a_directory_is_not_a_model_file() {
    let dir = tmp("a-folder.gguf");
    std::fs::create_dir_all(&dir).unwrap();
    let err = Model::load(&dir).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    match GpuContext::new() {
        Ok(ctx) => {
            let err = GpuModel::load(&dir, ctx, 64).unwrap_err();
            assert!(err.to_string().contains("is a directory"), "{err}");
        }
        Err(e) => eprintln!("the GPU loader is not checked here: {e}"),
    }
}

/// A FIFO with no writer: opening it would wait for one forever.
#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let fifo = tmp("pipe.gguf");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("no mkfifo here; skipped");
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || tx.send(Model::load(&path).map(|_| ()).map_err(|e| e.to_string())));
    let got = rx.recv_timeout(std::time::Duration::from_secs(10));
    // Unblock a loader still waiting in open (a writer that closes at once), then tidy up.
    if got.is_err() {
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    }
    let _ = std::fs::remove_file(&fifo);
    let err = got.expect("the loader answered within 10 s").unwrap_err();
    assert!(err.contains("not a regular file"), "{err}");
}
