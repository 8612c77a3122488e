//! What scene 2's panels share: where things were drawn (for the sidecar and the tests), the
//! caches of what is costly per frame, a token's visible text, the engine's status line.

use crate::llm_scene::state::{EngineStatus, LlmView};
use crate::shell::theme::ERROR;
use bevy::prelude::*;
use bevy_egui::egui;
use math::OrbitCamera;
use serde::Serialize;
use std::collections::HashMap;

/// Where things were drawn this frame, in physical pixels (for `--screenshot`'s sidecar and
/// the rendered-frame tests).
#[derive(Resource, Debug, Clone, Default, Serialize)]
pub struct LlmDrawn {
    /// The activation image: x, y, width, height, and pixels per texel.
    pub grid_rect: Option<[f32; 4]>,
    pub grid_px_per_texel: f32,
    /// Each token chip's rectangle, prompt then generated.
    pub chips: Vec<[f32; 4]>,
    /// The bar of GPU time per frame: x, y, width, height (`None`: not drawn, nothing measured).
    pub gpu_bar: Option<[f32; 4]>,
}

/// Caches for what is costly to recompute every frame.
#[derive(Resource, Debug, Default)]
pub(crate) struct LlmCache {
    /// Next-token bars for (view revision, sampling) last drawn.
    pub(crate) bars_key: Option<(u64, String)>,
    pub(crate) bars: Vec<(u32, f32)>,
    /// Nearest vocabulary neighbours per token id.
    pub(crate) neighbours: HashMap<u32, Vec<(u32, f32)>>,
    /// The PCA cloud's camera (dragged to turn).
    pub(crate) cloud_camera: OrbitCamera,
}

/// The most characters of a token's text `visible_piece` shows: a token is a few, and a long
/// one (a local tokenizer's, a server's) must not cost the frames that lay it out.
const PIECE_CHARS: usize = 64;

/// A token's text with whitespace made visible, its first `PIECE_CHARS` characters ("…" where
/// it was cut).
pub fn visible_piece(piece: &str) -> String {
    let mut out = String::new();
    let mut chars = piece.chars();
    for c in chars.by_ref().take(PIECE_CHARS) {
        match c {
            ' ' => out.push('·'),
            '\n' => out.push('↵'),
            '\t' => out.push('→'),
            '\r' => out.push('⏎'),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    if out.is_empty() { "∅".into() } else { out }
}

pub(crate) fn is_special(piece: &str) -> bool {
    piece.starts_with("<|") && piece.ends_with("|>")
}

/// A speed for the status line: one decimal, more where that would read 0.0 (a first step
/// that read a long prompt on a slow device is still a rate, not none).
pub fn tokens_per_sec_text(rate: f32) -> String {
    if rate > 0.0 && rate < 0.1 {
        format!("{rate:.3} tokens/s")
    } else {
        format!("{rate:.1} tokens/s")
    }
}

/// "1 step", "3 steps": a count and its noun (a regular plural).
pub fn counted(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

pub(crate) fn status_line(ui: &mut egui::Ui, view: &LlmView) {
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
                "Ready · {} · {} · {}",
                view.backend.name(),
                counted(view.steps, "step"),
                tokens_per_sec_text(view.tokens_per_sec)
            ));
        }
        EngineStatus::Generating => {
            ui.horizontal(|ui| {
                ui.spinner();
                match &view.progress {
                    Some(news) => ui.label(format!("Generating · {news}")),
                    None => ui.label(format!(
                        "Generating · {} · {}",
                        counted(view.steps, "step"),
                        tokens_per_sec_text(view.tokens_per_sec)
                    )),
                };
            });
        }
        EngineStatus::Error(e) => {
            ui.colored_label(ERROR, format!("Error: {e}"));
            if let Some(news) = &view.progress {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(news);
                });
            }
        }
    }
}

pub(crate) fn piece_of(view: &LlmView, id: u32) -> String {
    view.tokenizer
        .as_ref()
        .map(|t| visible_piece(&t.piece(id)))
        .unwrap_or_else(|| format!("#{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_pieces_are_cut_for_the_frame() {
        assert_eq!(visible_piece(" a\n"), "·a↵");
        assert_eq!(visible_piece(""), "∅");
        let exact = "é".repeat(PIECE_CHARS);
        assert_eq!(visible_piece(&exact), exact);
        let long = visible_piece(&"x".repeat(100_000));
        assert_eq!(long.chars().count(), PIECE_CHARS + 1);
        assert!(long.ends_with('…'), "{long}");
    }
}
