//! The activation grid (30 x 1536 texels of the GPU texture, hover and click) and attention per
//! head, grouped under the KV heads.

use super::controls::not_from_this_backend;
use super::shared::{LlmDrawn, visible_piece};
use crate::llm_scene::activations::ActivationTexture;
use crate::llm_scene::state::{LlmSelection, LlmView};
use bevy::prelude::*;
use bevy_egui::egui;
use llm::TokenInfo;

pub(crate) fn activation_grid(
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

pub(crate) fn attention(ui: &mut egui::Ui, view: &LlmView, selection: &mut LlmSelection) {
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
