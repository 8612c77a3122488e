//! The newest token's embedding as a colour strip, and the prompt's tokens in 3D through their
//! principal directions, drawn with scene 1's camera matrices.

use super::controls::not_from_this_backend;
use super::shared::{LlmCache, visible_piece};
use crate::llm_scene::activations::activation_color;
use crate::llm_scene::state::{Backend, LlmView};
use crate::shell::theme::ACCENT;
use bevy::prelude::*;
use bevy_egui::egui;
use math::OrbitCamera;
use math::camera::Viewport;

pub(crate) fn embedding_strip(ui: &mut egui::Ui, view: &LlmView) {
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

pub(crate) fn pca_cloud(ui: &mut egui::Ui, view: &LlmView, cache: &mut LlmCache, seconds: f32) {
    ui.heading("The prompt's tokens in 3D");
    if matches!(view.backend, Backend::Remote { .. }) && view.prompt_tokens.is_empty() {
        ui.weak(if view.backend.has_traces() {
            "The server sends the prompt's tokens with its answer: press Generate."
        } else {
            "This server does not send the prompt's tokens (samemath serve does)."
        });
        return;
    }
    let Some(pca) = &view.pca else {
        ui.weak("Needs a prompt of two or more tokens.");
        return;
    };
    let width = pca.mean.len();
    ui.small(format!(
        "p = P·(x − mean): P is a 3×{width} matrix (the top principal directions of these \
         embeddings) times a {width}-vector, the same matrix × vector as clip = P·V·M·v in \
         scene 1. Drawn with scene 1's camera matrices; drag to turn."
    ));
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
    let chain = math::ClipChain {
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
