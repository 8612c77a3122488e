//! The model the tests run: SmolLM2-135M-Instruct from the user cache (`samemath fetch-model`
//! puts it there; CI does it first), loaded once per test process; and the workspace's paths.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use llm::{GenerationRequest, LlmTokenizer, Model, SamplingParams, Session, fetch};

/// The workspace root (this crate sits in `crates/testkit`).
pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The model file, or a panic that says how to get it.
pub fn model_path() -> PathBuf {
    let path = fetch::model_path(None);
    assert!(
        path.exists(),
        "{} is missing: run `samemath fetch-model` (or set {})",
        path.display(),
        fetch::MODEL_ENV
    );
    path
}

/// The CPU engine and tokenizer, loaded once.
pub fn model() -> &'static (Arc<Model>, Arc<LlmTokenizer>) {
    static MODEL: OnceLock<(Arc<Model>, Arc<LlmTokenizer>)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let (m, t) = Model::load(&model_path()).expect("load the model");
        (Arc::new(m), Arc::new(t))
    })
}

/// The local engine's greedy answer to one user message (chat template), `max_tokens` long at
/// most: what every server must give back.
pub fn local_answer(prompt: &str, max_tokens: usize) -> String {
    let (m, t) = model();
    let request = GenerationRequest {
        max_tokens,
        sampling: SamplingParams::greedy(),
        ..GenerationRequest::new(prompt)
    };
    let mut session = Session::new(m.clone(), t.clone(), &request).expect("a session");
    let mut text = String::new();
    while let Some(step) = session.step().expect("a step") {
        text.push_str(&step.text);
    }
    text
}
