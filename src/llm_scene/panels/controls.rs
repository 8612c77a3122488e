//! Scene 2's left panel: the prompt, chat or raw, Generate / Step / Stop / Reset, the sampling
//! settings, the engine's state and speed, the reply; and the Backend section (CPU, the GPU on
//! the renderer's own device, or a remote server).

use super::shared::status_line;
use crate::llm_scene::activations::{grouped, local_config};
use crate::llm_scene::state::{
    Backend, EngineStatus, LlmAction, LlmControls, LlmView, MAX_PROMPT_TOKENS,
};
use crate::shell::FreeArea;
use crate::shell::gpu_time::GpuFrameTimes;
use crate::shell::theme::ACCENT;
use crate::worker::Command;
use bevy::prelude::*;
use bevy_egui::{EguiContexts, egui};
use remote::ApiKind;

#[allow(clippy::too_many_arguments)]
pub(crate) fn controls_panel(
    mut contexts: EguiContexts,
    mut controls: ResMut<LlmControls>,
    view: Res<LlmView>,
    engine: Option<Res<crate::llm_scene::engine::LlmEngine>>,
    mut actions: MessageWriter<LlmAction>,
    mut free: ResMut<FreeArea>,
    (times, mut drawn): (Res<GpuFrameTimes>, ResMut<super::LlmDrawn>),
    narration: Option<Res<crate::shell::Narration>>,
) {
    let Ok(ctx) = contexts.ctx_mut() else {
        return;
    };
    // While the talk runs, Space is its key (the next step), not this button's.
    let step_label = if narration.is_some_and(|n| n.0) {
        "⏭ Step"
    } else {
        "⏭ Step (Space)"
    };
    let ppp = ctx.pixels_per_point();
    let mut root = free.ui(ctx, "llm_controls_root");
    // At most 28% of the window: the 3D view keeps the middle (the panel scrolls).
    let (size, range) = crate::shell::side_panel_size(ctx, 0.28, 330.0, 260.0);
    let panel = egui::Panel::left("llm_controls")
        .resizable(true)
        .default_size(size)
        .size_range(range)
        .show(&mut root, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                ui.heading("Prompt");
                status_line(ui, &view);
                drawn.gpu_bar = super::gpu_bar::gpu_time_bar(ui, &times, &view).map(|r| {
                    [
                        r.left() * ppp,
                        r.top() * ppp,
                        r.width() * ppp,
                        r.height() * ppp,
                    ]
                });
                // Only where the model is missing and nothing is fetching it (the browser's
                // download runs on beside an error of a Connect).
                if let (EngineStatus::Error(_), Some(engine)) = (&view.status, &engine)
                    && view.model.is_none()
                    && view.progress.is_none()
                    && ui.button("Try loading the model again").clicked()
                {
                    engine.send(Command::Load);
                }
                // The model that answers: the server's on a remote backend, not the local file.
                match (&view.backend, &view.model_path) {
                    (crate::llm_scene::Backend::Remote { model, url, .. }, _) => {
                        ui.small(format!(
                            "Model: {} on {url}",
                            model.as_deref().unwrap_or("the server's default")
                        ));
                    }
                    (_, Some(p)) => {
                        ui.small(format!("Model: {}", p.display()));
                    }
                    _ => {}
                }
                let c = &mut *controls;
                ui.add(
                    egui::TextEdit::multiline(&mut c.prompt)
                        .desired_rows(4)
                        .desired_width(f32::INFINITY)
                        .hint_text("Type a prompt…"),
                );
                let chars = c.prompt.chars().count();
                // About four characters of English a token.
                ui.small(if chars > 3 * MAX_PROMPT_TOKENS {
                    format!(
                        "{chars} characters (long: the local engine reads at most \
                         {MAX_PROMPT_TOKENS} tokens, about {} characters of English; a remote \
                         server has its own limit)",
                        4 * MAX_PROMPT_TOKENS
                    )
                } else {
                    format!("{chars} characters")
                });
                ui.horizontal(|ui| {
                    ui.radio_value(&mut c.chat, true, "Chat (template)");
                    ui.radio_value(&mut c.chat, false, "Raw");
                });
                let head = local_config(&view).map_or("the head".to_string(), |c| {
                    format!("the {}-row head", grouped(c.vocab_size))
                });
                ui.checkbox(&mut c.logit_lens, "Record the logit lens")
                    .on_hover_text(format!(
                        "Each layer's guess goes through the final norm and {head}: several \
                         times a token's own work. Off is faster on a slow GPU. Applies from the \
                         next Generate (or Step after a Reset)."
                    ));
                let can_run = c.can_run()
                    && (view.model.is_some() || matches!(view.backend, Backend::Remote { .. }));
                ui.horizontal_wrapped(|ui| {
                    if ui
                        .add_enabled(can_run, egui::Button::new("▶ Generate (Enter)"))
                        .clicked()
                    {
                        actions.write(LlmAction::Generate);
                    }
                    if ui
                        .add_enabled(can_run, egui::Button::new(step_label))
                        .clicked()
                    {
                        actions.write(LlmAction::Step);
                    }
                    if ui
                        .add_enabled(
                            view.status == EngineStatus::Generating || view.connecting,
                            egui::Button::new("⏹ Stop (Esc)"),
                        )
                        .clicked()
                    {
                        actions.write(LlmAction::Stop);
                    }
                    if ui.button("↺ Reset (Backspace)").clicked() {
                        actions.write(LlmAction::Reset);
                    }
                });
                if !c.can_run() {
                    ui.small("Type a prompt to enable Generate and Step.");
                }
                ui.separator();
                backend_section(ui, c, &view, &mut actions);
                ui.separator();
                ui.heading("Sampling");
                let s = &mut c.sampling;
                egui::Grid::new("sampling").num_columns(2).show(ui, |ui| {
                    ui.label("temperature");
                    ui.add(egui::Slider::new(&mut s.temperature, 0.0..=2.0));
                    ui.end_row();
                    ui.label("top-k");
                    ui.add(egui::Slider::new(&mut s.top_k, 0..=200));
                    ui.end_row();
                    ui.label("top-p");
                    ui.add(egui::Slider::new(&mut s.top_p, 0.05..=1.0));
                    ui.end_row();
                    ui.label("seed");
                    ui.add(egui::DragValue::new(&mut s.seed));
                    ui.end_row();
                    ui.label("repeat penalty");
                    ui.add(egui::Slider::new(&mut s.repeat_penalty, 1.0..=2.0));
                    ui.end_row();
                    ui.label("max tokens");
                    ui.add(egui::Slider::new(&mut c.max_tokens, 1..=1024));
                    ui.end_row();
                });
                ui.small("temperature 0 = greedy. The bars on the right follow these live.");
                ui.separator();
                ui.heading("Reply");
                if view.reply.is_empty() {
                    ui.weak("(nothing generated yet)");
                } else {
                    ui.label(&view.reply);
                }
                if let Some(stop) = view.last_stop {
                    ui.small(format!("stopped: {stop:?}"));
                }
            });
        });
    free.take(panel.response.rect);
}

/// Local engine or a remote server (Ollama, OpenAI-compatible, samemath serve).
pub(crate) fn backend_section(
    ui: &mut egui::Ui,
    c: &mut LlmControls,
    view: &LlmView,
    actions: &mut MessageWriter<LlmAction>,
) {
    ui.heading("Backend");
    match &view.backend {
        Backend::Local => {
            ui.label("Local: SmolLM2 on this machine's CPU, every internal recorded.");
            if ui
                .add_enabled(view.model.is_some(), egui::Button::new("Run it on the GPU"))
                .on_hover_text(
                    "The same forward pass as WGSL compute kernels, on the wgpu device and \
                     queue that render the scenes",
                )
                .clicked()
            {
                actions.write(LlmAction::UseGpu);
            }
        }
        Backend::Gpu {
            adapter,
            shared_with_renderer,
            same_device,
            ..
        } => {
            ui.colored_label(ACCENT, format!("Local, on the GPU: {adapter}"));
            ui.small(match (shared_with_renderer, same_device) {
                (true, Some(true)) => {
                    "The kernels run on the renderer's own wgpu device and queue: the one \
                     drawing scene 1 and this scene (device identity checked)."
                }
                (true, Some(false)) => "Asked for the renderer's device, but got another one.",
                (true, None) => "The kernels run on the renderer's wgpu device and queue.",
                (false, _) => "The kernels run on a wgpu device of their own.",
            });
            if ui.button("Back to the CPU").clicked() {
                actions.write(LlmAction::UseLocal);
            }
        }
        Backend::Remote { url, info, model } => {
            ui.colored_label(ACCENT, format!("Remote: {url}"));
            ui.small(info.describe(model.as_deref()));
            if ui.button("Use the local model").clicked() {
                actions.write(LlmAction::UseLocal);
            }
        }
    }
    egui::CollapsingHeader::new("Remote server (Cloud Run, Ollama, OpenAI-compatible)")
        .default_open(false)
        .show(ui, |ui| {
            let f = &mut c.remote;
            egui::Grid::new("remote_form")
                .num_columns(2)
                .show(ui, |ui| {
                    ui.label("URL");
                    ui.add(egui::TextEdit::singleline(&mut f.url).desired_width(200.0));
                    ui.end_row();
                    ui.label("API");
                    egui::ComboBox::from_id_salt("remote_api")
                        .selected_text(match f.api {
                            None => "detect",
                            Some(ApiKind::Ollama) => "Ollama",
                            Some(ApiKind::OpenAi) => "OpenAI-compatible",
                            Some(ApiKind::Samemath) => "samemath serve",
                        })
                        .show_ui(ui, |ui| {
                            ui.selectable_value(&mut f.api, None, "detect");
                            ui.selectable_value(&mut f.api, Some(ApiKind::Ollama), "Ollama");
                            ui.selectable_value(
                                &mut f.api,
                                Some(ApiKind::OpenAi),
                                "OpenAI-compatible",
                            );
                            ui.selectable_value(
                                &mut f.api,
                                Some(ApiKind::Samemath),
                                "samemath serve",
                            );
                        });
                    ui.end_row();
                    ui.label("model");
                    ui.add(
                        egui::TextEdit::singleline(&mut f.model)
                            .hint_text("the server's first")
                            .desired_width(200.0),
                    );
                    ui.end_row();
                    ui.label("token");
                    ui.add(
                        egui::TextEdit::singleline(&mut f.token)
                            .password(true)
                            .hint_text("$SAMEMATH_REMOTE_TOKEN or gcloud")
                            .desired_width(200.0),
                    );
                    ui.end_row();
                    ui.label("first byte (s)");
                    ui.add(egui::DragValue::new(&mut f.first_byte_timeout_secs).range(1..=3600));
                    ui.end_row();
                });
            // One Connect at a time, and none while an answer runs (its Stop would go to the
            // wrong wait).
            let can_connect = !f.url.trim().is_empty()
                && !view.connecting
                && view.status != EngineStatus::Generating;
            if ui
                .add_enabled(can_connect, egui::Button::new("Connect"))
                .clicked()
            {
                actions.write(LlmAction::Connect);
            }
        });
}

/// What a remote server without traces cannot show.
pub(crate) fn not_from_this_backend(ui: &mut egui::Ui, view: &LlmView, what: &str) -> bool {
    if view.backend.has_traces() {
        return false;
    }
    ui.weak(format!(
        "{what}: not given by {}. It sends text and log-probabilities only; connect \
         `samemath serve` or use the local model to see them.",
        view.backend.name()
    ));
    true
}
