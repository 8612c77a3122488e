//! Scene 2's panels: prompt and controls (left); next-token bars, logit lens and the selected
//! neuron's dot products (right); token strip, activation grid, attention and embeddings in the
//! middle. Every number drawn comes from the engine's trace; where there is none yet, or the
//! backend cannot give it, the view says so.

use std::collections::HashMap;

use bevy::prelude::*;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};
use serde::Serialize;

use super::activations::{ActivationTexture, activation_color};
use super::{Backend, EngineStatus, LlmAction, LlmControls, LlmSelection, LlmView, MAX_CHIPS};
use crate::app::Scene;
use crate::app::shell::{FreeArea, UiSet};
use crate::app::theme::UiSettings;
use crate::graphics::panel::{ACCENT, ERROR, WARNING};
use crate::llm::worker::Command;
use crate::llm::{Sampler, TokenInfo};
use crate::math::OrbitCamera;
use crate::math::camera::Viewport;
use crate::remote::ApiKind;

/// Where things were drawn this frame, in physical pixels (for `--screenshot`'s sidecar and
/// the rendered-frame tests).
#[derive(Resource, Debug, Clone, Default, Serialize)]
pub struct LlmDrawn {
    /// The activation image: x, y, width, height, and pixels per texel.
    pub grid_rect: Option<[f32; 4]>,
    pub grid_px_per_texel: f32,
    /// Each token chip's rectangle, prompt then generated.
    pub chips: Vec<[f32; 4]>,
}

/// Caches for what is costly to recompute every frame.
#[derive(Resource, Debug, Default)]
struct LlmCache {
    /// Next-token bars for (view revision, sampling) last drawn.
    bars_key: Option<(u64, String)>,
    bars: Vec<(u32, f32)>,
    /// Nearest vocabulary neighbours per token id.
    neighbours: HashMap<u32, Vec<(u32, f32)>>,
    /// The PCA cloud's camera (dragged to turn).
    cloud_camera: OrbitCamera,
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<LlmDrawn>()
        .init_resource::<LlmCache>()
        .add_systems(
            EguiPrimaryContextPass,
            (
                (controls_panel, outputs_panel)
                    .chain()
                    .run_if(|ui: Res<UiSettings>| !ui.hide_panels),
                central_views,
            )
                .chain()
                .in_set(UiSet::Panels)
                .run_if(in_state(Scene::Llm)),
        );
}

/// A token's text with whitespace made visible.
pub fn visible_piece(piece: &str) -> String {
    let mut out = String::new();
    for c in piece.chars() {
        match c {
            ' ' => out.push('·'),
            '\n' => out.push('↵'),
            '\t' => out.push('→'),
            '\r' => out.push('⏎'),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    if out.is_empty() { "∅".into() } else { out }
}

fn is_special(piece: &str) -> bool {
    piece.starts_with("<|") && piece.ends_with("|>")
}

fn status_line(ui: &mut egui::Ui, view: &LlmView) {
    match &view.status {
        EngineStatus::NotStarted => {
            ui.label("Engine starting…");
        }
        EngineStatus::Loading(s) => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(s);
            });
        }
        EngineStatus::Ready => {
            ui.label(format!(
                "Ready · {} · {} steps · {:.1} tokens/s",
                view.backend.name(),
                view.steps,
                view.tokens_per_sec
            ));
        }
        EngineStatus::Generating => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!(
                    "Generating · {} steps · {:.1} tokens/s",
                    view.steps, view.tokens_per_sec
                ));
            });
        }
        EngineStatus::Error(e) => {
            ui.colored_label(ERROR, format!("Error: {e}"));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn controls_panel(
    mut contexts: EguiContexts,
    mut controls: ResMut<LlmControls>,
    view: Res<LlmView>,
    engine: Option<Res<super::LlmEngine>>,
    mut actions: MessageWriter<LlmAction>,
    mut free: ResMut<FreeArea>,
) {
    let Ok(ctx) = contexts.ctx_mut() else {
        return;
    };
    let mut root = free.ui(ctx, "llm_controls_root");
    let panel = egui::Panel::left("llm_controls")
        .resizable(true)
        .default_size(330.0)
        .size_range(260.0..=520.0)
        .show(&mut root, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                ui.heading("Prompt");
                status_line(ui, &view);
                if let (EngineStatus::Error(_), Some(engine)) = (&view.status, &engine)
                    && ui.button("Try loading the model again").clicked()
                {
                    engine.send(Command::Load);
                }
                if let Some(p) = &view.model_path {
                    ui.small(format!("Model: {}", p.display()));
                }
                let c = &mut *controls;
                ui.add(
                    egui::TextEdit::multiline(&mut c.prompt)
                        .desired_rows(4)
                        .desired_width(f32::INFINITY)
                        .hint_text("Type a prompt…"),
                );
                let chars = c.prompt.chars().count();
                ui.small(if chars > 20_000 {
                    format!(
                        "{chars} characters (long: the model reads at most 8192 tokens, about \
                         30,000 characters)"
                    )
                } else {
                    format!("{chars} characters")
                });
                ui.horizontal(|ui| {
                    ui.radio_value(&mut c.chat, true, "Chat (template)");
                    ui.radio_value(&mut c.chat, false, "Raw");
                });
                ui.checkbox(&mut c.logit_lens, "Record the logit lens")
                    .on_hover_text(
                        "Each layer's guess goes through the final norm and the 49,152-row head: \
                         several times a token's own work. Off is faster on a slow GPU. Applies \
                         from the next Generate (or Step after a Reset).",
                    );
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
                        .add_enabled(can_run, egui::Button::new("⏭ Step (Space)"))
                        .clicked()
                    {
                        actions.write(LlmAction::Step);
                    }
                    if ui
                        .add_enabled(
                            view.status == EngineStatus::Generating,
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
fn backend_section(
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
            if ui
                .add_enabled(!f.url.trim().is_empty(), egui::Button::new("Connect"))
                .clicked()
            {
                actions.write(LlmAction::Connect);
            }
        });
}

/// What a remote server without traces cannot show.
fn not_from_this_backend(ui: &mut egui::Ui, view: &LlmView, what: &str) -> bool {
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

fn outputs_panel(
    mut contexts: EguiContexts,
    controls: Res<LlmControls>,
    view: Res<LlmView>,
    selection: Res<LlmSelection>,
    mut cache: ResMut<LlmCache>,
    mut free: ResMut<FreeArea>,
) {
    let Ok(ctx) = contexts.ctx_mut() else {
        return;
    };
    let mut root = free.ui(ctx, "llm_outputs_root");
    let panel = egui::Panel::right("llm_outputs")
        .resizable(true)
        .default_size(360.0)
        .size_range(260.0..=560.0)
        .show(&mut root, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                next_token(ui, &controls, &view, &mut cache);
                ui.separator();
                logit_lens(ui, &controls, &view);
                ui.separator();
                neuron_detail(ui, &view, &selection);
            });
        });
    free.take(panel.response.rect);
}

fn piece_of(view: &LlmView, id: u32) -> String {
    view.tokenizer
        .as_ref()
        .map(|t| visible_piece(&t.piece(id)))
        .unwrap_or_else(|| format!("#{id}"))
}

fn next_token(ui: &mut egui::Ui, controls: &LlmControls, view: &LlmView, cache: &mut LlmCache) {
    ui.heading("Next token");
    if view.logits.is_empty() {
        match view.remote_steps.last() {
            Some(step) if !step.top_logprobs.is_empty() => remote_bars(ui, step),
            Some(_) => {
                ui.weak("This server sends no log-probabilities: no bars to draw.");
            }
            None => {
                ui.weak("No forward pass yet: press Generate or Step.");
            }
        }
        return;
    }
    let greedy = controls.sampling.temperature == 0.0;
    // Greedy keeps one candidate; then show the plain softmax (T = 1) it takes the top of.
    let mut params = controls.sampling;
    if greedy {
        params.temperature = 1.0;
        params.top_k = 10;
        params.top_p = 1.0;
    }
    let key = (view.revision, format!("{params:?}"));
    if cache.bars_key.as_ref() != Some(&key) {
        let mut dist = Sampler::new(params).distribution(&view.logits);
        dist.truncate(12);
        cache.bars = dist;
        cache.bars_key = Some(key);
    }
    ui.small(if greedy {
        "Greedy: the top bar is taken. Bars: softmax of the logits (T = 1)."
    } else {
        "What the sampler draws from now (temperature, top-k, top-p applied to the stored logits)."
    });
    let sampled = view.sampled.as_ref().map(|t| t.id);
    for (id, p) in &cache.bars {
        let text = format!("{}  {:.1}%  (#{id})", piece_of(view, *id), p * 100.0);
        prob_bar(ui, &text, *p, Some(*id) == sampled);
    }
    if let Some(t) = &view.sampled {
        ui.label(
            egui::RichText::new(format!("sampled: {}", visible_piece(&t.piece)))
                .monospace()
                .color(ACCENT),
        );
    }
}

/// One probability as a bar the panel's width, its label inside.
fn prob_bar(ui: &mut egui::Ui, text: &str, p: f32, highlight: bool) {
    let width = ui.available_width();
    let (rect, _) = ui.allocate_exact_size(egui::vec2(width, 20.0), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
    let mut bar = rect;
    bar.set_width(rect.width() * p.clamp(0.0, 1.0));
    let color = if highlight {
        ACCENT
    } else {
        egui::Color32::from_rgb(90, 110, 140)
    };
    painter.rect_filled(bar, 2.0, color);
    painter.text(
        rect.left_center() + egui::vec2(4.0, 0.0),
        egui::Align2::LEFT_CENTER,
        text,
        egui::FontId::monospace(13.0),
        egui::Color32::WHITE,
    );
}

/// Bars from a remote server's top log-probabilities (its numbers, as it sent them).
fn remote_bars(ui: &mut egui::Ui, step: &crate::remote::RemoteStep) {
    ui.small(
        "From the server's top log-probabilities for the last token (probabilities e^logprob).",
    );
    for (i, (token, lp)) in step.top_logprobs.iter().enumerate() {
        let p = lp.exp();
        let text = format!("{}  {:.1}%", visible_piece(token), p * 100.0);
        prob_bar(ui, &text, p, i == 0);
    }
    ui.label(
        egui::RichText::new(format!("received: {}", visible_piece(&step.text)))
            .monospace()
            .color(ACCENT),
    );
}

fn logit_lens(ui: &mut egui::Ui, controls: &LlmControls, view: &LlmView) {
    ui.heading("Logit lens");
    if not_from_this_backend(ui, view, "The logit lens") {
        return;
    }
    let Some(trace) = &view.trace else {
        ui.weak("No trace yet.");
        return;
    };
    if trace.layers.iter().all(|l| l.logit_lens.is_none()) {
        ui.weak(if controls.logit_lens {
            "Not recorded for this step: it was run with the logit lens off (the next Generate records it)."
        } else {
            "Off: tick \"Record the logit lens\" in the Prompt panel (it applies from the next Generate)."
        });
        return;
    }
    ui.small("The token each layer would say if the model stopped there (final norm + head).");
    egui::Grid::new("lens").striped(true).show(ui, |ui| {
        for (i, layer) in trace.layers.iter().enumerate() {
            ui.monospace(format!("L{i:02}"));
            match &layer.logit_lens {
                Some(t) => {
                    ui.monospace(visible_piece(&t.piece));
                    ui.monospace(format!("{:.0}%", t.prob * 100.0));
                }
                None => {
                    ui.weak("not recorded");
                    ui.label("");
                }
            }
            ui.end_row();
        }
    });
}

/// The clicked neuron as the dot products that make it.
fn neuron_detail(ui: &mut egui::Ui, view: &LlmView, selection: &LlmSelection) {
    ui.heading("Neuron");
    if matches!(view.backend, Backend::Remote { .. }) {
        ui.weak("A neuron's weights live on the server: its dot products need the local model.");
        return;
    }
    let Some((layer, neuron)) = selection.neuron else {
        ui.weak("Click a neuron in the activation grid.");
        return;
    };
    let (Some(trace), Some(model)) = (&view.trace, &view.model) else {
        ui.weak("No trace yet.");
        return;
    };
    let Some(lt) = trace.layers.get(layer) else {
        return;
    };
    let Some(value) = lt.mlp_activation.get(neuron) else {
        return;
    };
    ui.label(format!("layer {layer}, neuron {neuron}: value {value:.4}"));
    let Some((gate, up)) = model.mlp_rows(layer, neuron) else {
        ui.weak("This model file's weight format is not one the decomposition can read.");
        return;
    };
    let x = &lt.mlp_input;
    if x.len() != gate.len() {
        ui.weak("The trace has no MLP input for this layer.");
        return;
    }
    let g: f32 = gate.iter().zip(x).map(|(w, v)| w * v).sum();
    let u: f32 = up.iter().zip(x).map(|(w, v)| w * v).sum();
    let silu = g / (1.0 + (-g).exp());
    egui::Grid::new("neuron").num_columns(2).show(ui, |ui| {
        ui.monospace("x");
        ui.monospace(format!("RMSNorm(residual), {} values", x.len()));
        ui.end_row();
        ui.monospace("g = w_gate·x");
        ui.monospace(format!("{g:.4}"));
        ui.end_row();
        ui.monospace("u = w_up·x");
        ui.monospace(format!("{u:.4}"));
        ui.end_row();
        ui.monospace("silu(g) = g/(1+e^-g)");
        ui.monospace(format!("{silu:.4}"));
        ui.end_row();
        ui.monospace("silu(g)·u");
        ui.monospace(format!("{:.4}", silu * u));
        ui.end_row();
        ui.monospace("engine's value");
        ui.monospace(format!("{value:.4}"));
        ui.end_row();
    });
    ui.small(
        "The engine multiplies 4-bit weights by 8-bit-rounded inputs (as llama.cpp does); this \
         panel uses the dequantized weights and the f32 input, so the last digits can differ.",
    );
    ui.label("Largest terms of w_gate·x (w·x = Σ wᵢxᵢ):");
    let mut terms: Vec<(usize, f32)> = gate.iter().zip(x).map(|(w, v)| w * v).enumerate().collect();
    terms.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    for (i, t) in terms.iter().take(6) {
        ui.monospace(format!(
            "  w[{i:>3}]·x[{i:>3}] = {:+.3}·{:+.3} = {t:+.4}",
            gate[*i], x[*i]
        ));
    }
}

fn central_views(
    mut contexts: EguiContexts,
    view: Res<LlmView>,
    mut selection: ResMut<LlmSelection>,
    texture: Option<Res<ActivationTexture>>,
    mut drawn: ResMut<LlmDrawn>,
    mut cache: ResMut<LlmCache>,
    time: Res<Time>,
    free: Res<FreeArea>,
) {
    let Ok(ctx) = contexts.ctx_mut() else {
        return;
    };
    let ppp = ctx.pixels_per_point();
    let mut root = free.ui(ctx, "llm_central_root");
    drawn.chips.clear();
    egui::CentralPanel::default().show(&mut root, |ui| {
        egui::ScrollArea::vertical().show(ui, |ui| {
            token_strip(ui, &view, &mut drawn, &mut cache, ppp);
            ui.separator();
            let budget = (ui.available_height() * 0.5).max(120.0);
            activation_grid(
                ui,
                &view,
                &mut selection,
                texture.as_deref(),
                &mut drawn,
                ppp,
                budget,
            );
            ui.separator();
            ui.columns(3, |cols| {
                attention(&mut cols[0], &view, &mut selection);
                embedding_strip(&mut cols[1], &view);
                pca_cloud(&mut cols[2], &view, &mut cache, time.elapsed_secs());
            });
        });
    });
}

fn token_strip(
    ui: &mut egui::Ui,
    view: &LlmView,
    drawn: &mut LlmDrawn,
    cache: &mut LlmCache,
    ppp: f32,
) {
    ui.heading("Tokens");
    if !view.backend.has_traces() {
        ui.small(format!(
            "{} sends text pieces, not token ids, and not the prompt's tokens.",
            view.backend.name()
        ));
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing = egui::vec2(3.0, 3.0);
            for step in view.remote_steps.iter().rev().take(MAX_CHIPS).rev() {
                egui::Frame::new()
                    .fill(egui::Color32::from_rgb(40, 70, 60))
                    .stroke(egui::Stroke::new(1.0, egui::Color32::from_gray(110)))
                    .corner_radius(3.0)
                    .inner_margin(egui::Margin::symmetric(4, 1))
                    .show(ui, |ui| {
                        ui.label(egui::RichText::new(visible_piece(&step.text)).monospace());
                    });
            }
        });
        return;
    }
    if view.prompt_tokens.is_empty() {
        ui.weak("The prompt's tokens appear here when it runs (Generate or Step).");
        return;
    }
    ui.small(format!(
        "{} prompt tokens (template included) + {} generated. Chips are the model's units: \
         a word can be several.",
        view.prompt_tokens.len(),
        view.generated.len()
    ));
    let total = view.prompt_tokens.len() + view.generated.len();
    let skipped = total.saturating_sub(MAX_CHIPS);
    if skipped > 0 {
        ui.colored_label(WARNING, format!("… {skipped} earlier tokens not drawn"));
    }
    let chips = view
        .prompt_tokens
        .iter()
        .map(|t| (t, false))
        .chain(view.generated.iter().map(|t| (t, true)))
        .enumerate()
        .skip(skipped);
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing = egui::vec2(3.0, 3.0);
        for (i, (token, generated)) in chips {
            let special = is_special(&token.piece);
            let fill = match (special, generated) {
                (true, _) => egui::Color32::from_rgb(70, 50, 90),
                (false, true) => egui::Color32::from_rgb(40, 70, 60),
                (false, false) => egui::Color32::from_rgb(45, 52, 68),
            };
            let r = egui::Frame::new()
                .fill(fill)
                .stroke(egui::Stroke::new(1.0, egui::Color32::from_gray(110)))
                .corner_radius(3.0)
                .inner_margin(egui::Margin::symmetric(4, 1))
                .show(ui, |ui| {
                    ui.vertical(|ui| {
                        ui.label(egui::RichText::new(visible_piece(&token.piece)).monospace());
                        ui.label(egui::RichText::new(token.id.to_string()).small().weak());
                    });
                })
                .response;
            let rect = r.rect;
            drawn.chips.push([
                rect.min.x * ppp,
                rect.min.y * ppp,
                rect.width() * ppp,
                rect.height() * ppp,
            ]);
            let r = r.interact(egui::Sense::hover());
            r.on_hover_ui(|ui| chip_tooltip(ui, view, token, i, cache));
        }
    });
}

fn chip_tooltip(
    ui: &mut egui::Ui,
    view: &LlmView,
    token: &TokenInfo,
    index: usize,
    cache: &mut LlmCache,
) {
    ui.label(format!("token {index}: id {} {:?}", token.id, token.piece));
    let embedding = view.prompt_embeddings.get(index).cloned().or_else(|| {
        view.model
            .as_ref()
            .and_then(|m| m.embedding_row(token.id).ok())
    });
    let (Some(model), Some(e)) = (&view.model, embedding) else {
        return;
    };
    let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
    ui.label(format!("embedding: {} values, length {norm:.3}", e.len()));
    if cache.neighbours.len() > 512 {
        cache.neighbours.clear();
    }
    let neighbours = cache
        .neighbours
        .entry(token.id)
        .or_insert_with(|| model.nearest_tokens(&e, 9).unwrap_or_default());
    if neighbours.is_empty() {
        ui.weak("Nearest neighbours: not available for this weight format.");
        return;
    }
    ui.label("Nearest in the vocabulary (cosine):");
    for (id, c) in neighbours.iter().filter(|(id, _)| *id != token.id).take(8) {
        ui.monospace(format!("  {:<16} {c:.3}", piece_of(view, *id)));
    }
}

fn activation_grid(
    ui: &mut egui::Ui,
    view: &LlmView,
    selection: &mut LlmSelection,
    texture: Option<&ActivationTexture>,
    drawn: &mut LlmDrawn,
    ppp: f32,
    max_height: f32,
) {
    ui.heading("MLP activations: silu(gate·x)·(up·x), every neuron");
    drawn.grid_rect = None;
    if not_from_this_backend(ui, view, "Activations") {
        return;
    }
    let (Some(texture), Some(id)) = (texture, texture.and_then(|t| t.egui_id)) else {
        return;
    };
    let Some(trace) = &view.trace else {
        ui.weak("No forward pass yet: press Generate or Step.");
        return;
    };
    let layout = texture.layout;
    ui.small(format!(
        "{} layers × {} neurons of token {:?}; one tile per layer (L0 top-left), amber +, blue −, \
         colour full at ±{:.2}. Hover to read, click for the dot products.",
        layout.layers,
        layout.neurons,
        visible_piece(&trace.token.piece),
        texture.scale
    ));
    let (tw, th) = layout.size();
    // A whole number of physical pixels per texel, so every neuron keeps its exact colour.
    let fit_w = (ui.available_width() * ppp / tw as f32).floor();
    let fit_h = (max_height * ppp / th as f32).floor();
    let scale = fit_w.min(fit_h).clamp(1.0, 8.0);
    let size = egui::vec2(tw as f32 * scale / ppp, th as f32 * scale / ppp);
    // Snap to the pixel grid.
    let cursor = ui.cursor().min;
    let snapped = egui::pos2((cursor.x * ppp).ceil() / ppp, (cursor.y * ppp).ceil() / ppp);
    ui.add_space(snapped.y - cursor.y);
    let (rect, response) = ui.allocate_exact_size(
        size + egui::vec2(snapped.x - cursor.x, 0.0),
        egui::Sense::click(),
    );
    let image_rect = egui::Rect::from_min_size(egui::pos2(snapped.x, rect.min.y), size);
    ui.painter().image(
        id,
        image_rect,
        egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
        egui::Color32::WHITE,
    );
    drawn.grid_rect = Some([
        image_rect.min.x * ppp,
        image_rect.min.y * ppp,
        image_rect.width() * ppp,
        image_rect.height() * ppp,
    ]);
    drawn.grid_px_per_texel = scale;
    let cell_at = |p: egui::Pos2| {
        let tx = ((p.x - image_rect.min.x) * ppp / scale).floor();
        let ty = ((p.y - image_rect.min.y) * ppp / scale).floor();
        (tx >= 0.0 && ty >= 0.0)
            .then(|| layout.cell(tx as usize, ty as usize))
            .flatten()
    };
    if let Some((layer, neuron)) = response.hover_pos().and_then(cell_at)
        && let Some(v) = trace
            .layers
            .get(layer)
            .and_then(|l| l.mlp_activation.get(neuron))
    {
        response
            .clone()
            .on_hover_text(format!("layer {layer}, neuron {neuron}: {v:.4}"));
    }
    if response.clicked()
        && let Some(cell) = response.interact_pointer_pos().and_then(cell_at)
    {
        selection.neuron = Some(cell);
    }
    if let Some((layer, neuron)) = selection.neuron {
        let (x, y) = layout.texel(layer, neuron);
        let p = image_rect.min + egui::vec2(x as f32, y as f32) * scale / ppp;
        ui.painter().rect_stroke(
            egui::Rect::from_min_size(p, egui::vec2(scale, scale) / ppp).expand(2.0),
            0.0,
            egui::Stroke::new(1.5, egui::Color32::WHITE),
            egui::StrokeKind::Outside,
        );
    }
}

fn attention(ui: &mut egui::Ui, view: &LlmView, selection: &mut LlmSelection) {
    ui.heading("Attention of the newest token");
    if not_from_this_backend(ui, view, "Attention") {
        return;
    }
    let Some(trace) = &view.trace else {
        ui.weak("No forward pass yet.");
        return;
    };
    let layers = trace.layers.len();
    if layers == 0 {
        return;
    }
    selection.attention_layer = selection.attention_layer.min(layers - 1);
    ui.add(egui::Slider::new(&mut selection.attention_layer, 0..=layers - 1).text("layer"));
    let layer = &trace.layers[selection.attention_layer];
    let positions = layer.attention.first().map_or(0, Vec::len);
    // The newest positions that fit, one column each.
    let shown = positions.min(48);
    let first = positions - shown;
    ui.small(format!(
        "Rows: the {} query heads, grouped under the KV head they read. Columns: positions \
         {first}..{}; brighter = more weight. Each row sums to 1.",
        layer.attention.len(),
        positions.saturating_sub(1)
    ));
    let width = ui.available_width().max(120.0);
    let cell_w = (width - 40.0) / shown.max(1) as f32;
    let cell_h = 14.0;
    let groups = trace.kv_head_of_head.iter().max().map_or(1, |m| m + 1);
    let height = layer.attention.len() as f32 * cell_h + groups as f32 * 6.0;
    let (rect, response) = ui.allocate_exact_size(egui::vec2(width, height), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    let tokens: Vec<&TokenInfo> = view.prompt_tokens.iter().chain(&view.generated).collect();
    let mut y = rect.min.y;
    let mut hover = None;
    for g in 0..groups {
        for (h, row) in layer.attention.iter().enumerate() {
            if trace.kv_head_of_head.get(h) != Some(&g) {
                continue;
            }
            painter.text(
                egui::pos2(rect.min.x, y + cell_h / 2.0),
                egui::Align2::LEFT_CENTER,
                format!("q{h}/kv{g}"),
                egui::FontId::monospace(10.0),
                egui::Color32::GRAY,
            );
            for (col, p) in row[first..].iter().enumerate() {
                let cell = egui::Rect::from_min_size(
                    egui::pos2(rect.min.x + 40.0 + col as f32 * cell_w, y),
                    egui::vec2(cell_w - 1.0, cell_h - 1.0),
                );
                let v = (p.clamp(0.0, 1.0).sqrt() * 255.0) as u8;
                painter.rect_filled(cell, 0.0, egui::Color32::from_rgb(v / 3, v, v));
                if response.hover_pos().is_some_and(|m| cell.contains(m)) {
                    hover = Some((h, first + col, *p));
                }
            }
            y += cell_h;
        }
        y += 6.0;
    }
    if let Some((h, pos, p)) = hover {
        let piece = tokens
            .get(pos)
            .map_or(String::new(), |t| visible_piece(&t.piece));
        response.on_hover_text(format!("head {h} → position {pos} {piece:?}: {p:.4}"));
    }
}

fn embedding_strip(ui: &mut egui::Ui, view: &LlmView) {
    ui.heading("Embedding");
    if not_from_this_backend(ui, view, "Embeddings") {
        return;
    }
    let Some(trace) = &view.trace else {
        ui.weak("No forward pass yet.");
        return;
    };
    let e = &trace.embedding;
    ui.small(format!(
        "Row {} of the embedding matrix: token {:?} as {} numbers (amber +, blue −).",
        trace.token.id,
        visible_piece(&trace.token.piece),
        e.len()
    ));
    let scale = e.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
    let per_row = 96;
    let width = ui.available_width();
    let cell = width / per_row as f32;
    let rows = e.len().div_ceil(per_row);
    let (rect, _) =
        ui.allocate_exact_size(egui::vec2(width, rows as f32 * cell), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    for (i, v) in e.iter().enumerate() {
        let c = activation_color(*v, scale);
        let p = rect.min + egui::vec2((i % per_row) as f32 * cell, (i / per_row) as f32 * cell);
        painter.rect_filled(
            egui::Rect::from_min_size(p, egui::vec2(cell, cell)),
            0.0,
            egui::Color32::from_rgb(c[0], c[1], c[2]),
        );
    }
}

fn pca_cloud(ui: &mut egui::Ui, view: &LlmView, cache: &mut LlmCache, seconds: f32) {
    ui.heading("The prompt's tokens in 3D");
    if matches!(view.backend, Backend::Remote { .. }) {
        ui.weak("The prompt's tokens are not sent by remote servers.");
        return;
    }
    let Some(pca) = &view.pca else {
        ui.weak("Needs a prompt of two or more tokens.");
        return;
    };
    ui.small(
        "p = P·(x − mean): P is a 3×576 matrix (the top principal directions of these \
         embeddings) times a 576-vector, the same matrix × vector as clip = P·V·M·v in scene 1. \
         Drawn with scene 1's camera matrices; drag to turn.",
    );
    let width = ui.available_width().max(160.0);
    let (rect, response) = ui.allocate_exact_size(egui::vec2(width, 260.0), egui::Sense::drag());
    if response.dragged() {
        let d = response.drag_delta();
        cache.cloud_camera.orbit(-d.x * 0.4, d.y * 0.4);
    } else {
        cache.cloud_camera.yaw_deg = (seconds * 8.0).rem_euclid(360.0);
    }
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 3.0, ui.visuals().extreme_bg_color);
    let points: Vec<[f32; 3]> = view
        .prompt_embeddings
        .iter()
        .map(|e| pca.project(e))
        .collect();
    let extent = points
        .iter()
        .flat_map(|p| p.iter())
        .fold(0f32, |a, v| a.max(v.abs()))
        .max(1e-6);
    let camera = OrbitCamera {
        distance: 4.2,
        ..cache.cloud_camera
    };
    let viewport = Viewport {
        x: rect.min.x,
        y: rect.min.y,
        width: rect.width(),
        height: rect.height(),
    };
    let chain = crate::math::ClipChain {
        world_from_local: glam::Mat4::IDENTITY,
        view_from_world: camera.view_from_world(),
        clip_from_view: camera.clip_from_view(viewport.aspect()),
        viewport,
    };
    for (p, token) in points.iter().zip(&view.prompt_tokens) {
        let world = glam::Vec3::from(*p) / extent;
        let Some(px) = chain.project_world(world) else {
            continue;
        };
        let pos = egui::pos2(px.x, px.y);
        painter.circle_filled(pos, 4.0, ACCENT);
        painter.text(
            pos + egui::vec2(6.0, 0.0),
            egui::Align2::LEFT_CENTER,
            visible_piece(&token.piece),
            egui::FontId::monospace(11.0),
            egui::Color32::LIGHT_GRAY,
        );
    }
    ui.small(format!(
        "variance along the 3 axes: {:.3}, {:.3}, {:.3}",
        pca.variance[0], pca.variance[1], pca.variance[2]
    ));
}
