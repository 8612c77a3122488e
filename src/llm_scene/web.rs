//! Scene 2's markers for the browser page and its tests: `done` when `steps=N` have run (with the
//! generated token ids, the backend and the speed), `error` for the engine's errors as they show,
//! `loaded` once the app has the local model (the page's `model` says only that its bytes came).

use bevy::prelude::*;

use super::engine::steps_done;
use super::state::{Backend, EngineStatus, LlmStart, LlmView};
use crate::web;

pub(super) fn plugin(app: &mut App) {
    app.add_systems(Update, report);
}

/// `steps=N` done (or failed): what was generated, where, how fast; and errors as they show.
pub(super) fn report(
    start: Res<LlmStart>,
    view: Res<LlmView>,
    mut reported: Local<bool>,
    mut last_error: Local<String>,
    mut loaded: Local<bool>,
) {
    if !*loaded && view.model.is_some() {
        *loaded = true;
        let path = view.model_path.as_ref().map(|p| p.display().to_string());
        web::signal("loaded", path.as_deref().unwrap_or("the model"));
    }
    if let EngineStatus::Error(e) = &view.status
        && *e != *last_error
    {
        web::signal("error", e);
        *last_error = e.clone();
    }
    if *reported || start.steps.is_none() || view.steps == 0 {
        return;
    }
    if steps_done(&start, &view) {
        *reported = true;
        let backend = match &view.backend {
            Backend::Local => "cpu".to_string(),
            Backend::Gpu { adapter, .. } => format!("gpu: {adapter}"),
            Backend::Remote { url, .. } => format!("remote: {url}"),
        };
        let detail = serde_json::json!({
            "backend": backend,
            "ids": view.generated.iter().map(|t| t.id).collect::<Vec<_>>(),
            "text": view.reply,
            "tokens_per_sec": view.tokens_per_sec,
            "steps": view.steps,
        });
        web::signal("done", &detail.to_string());
    }
}
