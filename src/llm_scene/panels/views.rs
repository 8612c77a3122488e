//! Scene 2's middle: the token strip (chips with ids, hover for the embedding's neighbours) above
//! the activation grid, attention and embedding views.

use super::embedding::{embedding_strip, pca_cloud};
use super::grid::{activation_grid, attention};
use super::shared::{LlmCache, LlmDrawn, is_special, piece_of, visible_piece};
use crate::llm_scene::activations::ActivationTexture;
use crate::llm_scene::state::{LlmSelection, LlmView, MAX_CHIPS};
use crate::shell::FreeArea;
use crate::shell::theme::WARNING;
use bevy::prelude::*;
use bevy_egui::{EguiContexts, egui};
use llm::TokenInfo;

pub(crate) fn central_views(
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
            token_strip(
                ui,
                &view,
                &mut drawn,
                &mut cache,
                ppp,
                selection.reveal_chips,
            );
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
            // Side by side where each gets ten headings' height of width; else one under the
            // other (large UI on a projector: three narrow columns broke the headings into
            // letters).
            let heading = ui.text_style_height(&egui::TextStyle::Heading);
            if ui.available_width() >= 3.0 * 10.0 * heading {
                ui.columns(3, |cols| {
                    attention(&mut cols[0], &view, &mut selection);
                    embedding_strip(&mut cols[1], &view);
                    pca_cloud(&mut cols[2], &view, &mut cache, time.elapsed_secs());
                });
            } else {
                attention(ui, &view, &mut selection);
                ui.separator();
                embedding_strip(ui, &view);
                ui.separator();
                pca_cloud(ui, &view, &mut cache, time.elapsed_secs());
            }
        });
    });
}

/// The chips; `reveal` draws only the first N (a talk step tokenizing the prompt chip by chip).
pub(crate) fn token_strip(
    ui: &mut egui::Ui,
    view: &LlmView,
    drawn: &mut LlmDrawn,
    cache: &mut LlmCache,
    ppp: f32,
    reveal: Option<usize>,
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
    let shown = reveal.unwrap_or(usize::MAX);
    let chips = view
        .prompt_tokens
        .iter()
        .map(|t| (t, false))
        .chain(view.generated.iter().map(|t| (t, true)))
        .enumerate()
        .skip(skipped)
        .take(shown);
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

pub(crate) fn chip_tooltip(
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
