//! Scene 2's right panel: the next-token probabilities (recomputed from the stored logits at the
//! live sampling settings), a remote server's log-probabilities, and the logit lens.

use super::controls::not_from_this_backend;
use super::neuron::neuron_detail;
use super::shared::{LlmCache, piece_of, visible_piece};
use crate::llm_scene::state::{LlmControls, LlmSelection, LlmView};
use crate::shell::FreeArea;
use crate::shell::theme::ACCENT;
use bevy::prelude::*;
use bevy_egui::{EguiContexts, egui};
use llm::Sampler;

pub(crate) fn outputs_panel(
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
    // At most 24% of the window: the 3D view keeps the middle (the panel scrolls).
    let (size, range) = crate::shell::side_panel_size(ctx, 0.24, 360.0, 240.0);
    let panel = egui::Panel::right("llm_outputs")
        .resizable(true)
        .default_size(size)
        .size_range(range)
        .show(&mut root, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                // Text wraps to the panel: a wider line would push it past the window's edge.
                ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Wrap);
                next_token(ui, &controls, &view, &mut cache);
                ui.separator();
                logit_lens(ui, &controls, &view);
                ui.separator();
                neuron_detail(ui, &view, &selection);
            });
        });
    free.take(panel.response.rect);
}

pub(crate) fn next_token(
    ui: &mut egui::Ui,
    controls: &LlmControls,
    view: &LlmView,
    cache: &mut LlmCache,
) {
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
    // Greedy keeps one candidate; then show the plain softmax (T = 1) it takes the top of,
    // over the whole vocabulary (as the trace's candidates and the world's head bars are).
    let mut params = controls.sampling;
    if greedy {
        params.temperature = 1.0;
        params.top_k = 0;
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
pub(crate) fn prob_bar(ui: &mut egui::Ui, text: &str, p: f32, highlight: bool) {
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
    // The label fits the bar: a narrow panel (a projector's large UI) gets a smaller font
    // rather than a cut-off number.
    let room = (rect.width() - 8.0).max(1.0);
    let mut galley = painter.layout_no_wrap(
        text.to_string(),
        egui::FontId::monospace(13.0),
        egui::Color32::WHITE,
    );
    if galley.size().x > room {
        let size = (13.0 * room / galley.size().x).max(8.0);
        galley = painter.layout_no_wrap(
            text.to_string(),
            egui::FontId::monospace(size),
            egui::Color32::WHITE,
        );
    }
    let at = rect.left_center() + egui::vec2(4.0, -galley.size().y / 2.0);
    painter.galley(at, galley, egui::Color32::WHITE);
}

/// Bars from a remote server's top log-probabilities (its numbers, as it sent them).
pub(crate) fn remote_bars(ui: &mut egui::Ui, step: &remote::RemoteStep) {
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

pub(crate) fn logit_lens(ui: &mut egui::Ui, controls: &LlmControls, view: &LlmView) {
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
