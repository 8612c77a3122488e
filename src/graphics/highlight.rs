//! A term of scene 1's math picked out for the hall (by a talk step): the matrix or the light
//! term framed in the accent colour, and its panel scrolled to it once when it is picked.

use bevy::prelude::*;
use bevy_egui::egui;
use serde::Deserialize;

use crate::shell::theme::ACCENT;

/// What can be picked out: the model matrix's factors and product, the normal matrix, the
/// vertex's journey, the light's scalar product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Term {
    /// T (translation).
    Translation,
    /// S (scale).
    Scale,
    RotationX,
    RotationY,
    RotationZ,
    /// M, the product of the factors.
    Model,
    /// N = transpose(inverse(M3x3)).
    Normal,
    /// The selected vertex's way from local space to a pixel.
    Vertex,
    /// dot(N, L) and the diffuse term max(N·L, 0).
    Light,
}

/// Frames in which a newly picked term's panel scrolls to it (the panel's layout settles over
/// the first few).
const SCROLL_FRAMES: u8 = 12;

/// The term picked out now; `scroll` asks its panel to bring it into view for a few frames.
#[derive(Resource, Debug, Clone, Default)]
pub struct Highlight {
    pub term: Option<Term>,
    pub scroll: u8,
}

impl Highlight {
    pub fn set(&mut self, term: Option<Term>) {
        if self.term != term {
            self.term = term;
            self.scroll = if term.is_some() { SCROLL_FRAMES } else { 0 };
        }
    }

    pub fn is(&self, term: Term) -> bool {
        self.term == Some(term)
    }
}

/// Draw `add` in an accent frame when `on`, and scroll it into view while asked.
pub fn framed<R>(
    ui: &mut egui::Ui,
    on: bool,
    scroll: &mut u8,
    add: impl FnOnce(&mut egui::Ui) -> R,
) -> R {
    if !on {
        return add(ui);
    }
    let inner = egui::Frame::new()
        .stroke(egui::Stroke::new(3.0, ACCENT))
        .inner_margin(4.0)
        .corner_radius(4.0)
        .show(ui, add);
    if *scroll > 0 {
        *scroll -= 1;
        // Up or down only: the panel keeps its sideways position.
        let target =
            egui::Rect::from_x_y_ranges(ui.clip_rect().x_range(), inner.response.rect.y_range());
        ui.scroll_to_rect(target, Some(egui::Align::Center));
    }
    inner.inner
}
