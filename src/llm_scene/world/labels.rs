//! The world's words, drawn at the pixels the camera chain gives for world points: what the
//! world is, the tokens' text on the floor, each layer's number and logit-lens guess, the
//! next-token pieces and probabilities; the column under the mouse (layer, neuron, value), and a
//! click selects it for the dot-product inspector and the bridge.

use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::input::EguiWantsInput;
use bevy_egui::{EguiContexts, egui};
use glam::{Vec2, Vec3};

use super::hover::{HoverCache, attention_at};
use super::layout::{ATTENTION_UNIT, MLP_UNIT, PITCH, column_top};
use super::{ColumnValues, Piece, ValuesPath, WorldCamera, WorldLayout, WorldMode, WorldState};
use crate::llm_scene::activations::{grouped, local_config};
use crate::llm_scene::panels::visible_piece;
use crate::llm_scene::state::{Backend, EngineStatus, LlmSelection, LlmView};
use crate::shell::theme::ACCENT;
use crate::shell::{Narration, SceneViewport, cursor_physical};

/// Labels on dark plates (they read on a projector over any colour), none over another: a
/// label that would cover one already placed is left out. A label whose point is in the view
/// but whose plate would run past its edge (the layer numbers at the right of the blocks, beside
/// a side panel at 1280x720) moves back inside, and a line longer than the view wraps, so it is
/// read whole.
struct Labels {
    painter: egui::Painter,
    placed: Vec<egui::Rect>,
    /// The 3D view's rectangle (egui points).
    view: egui::Rect,
}

impl Labels {
    fn put(&mut self, at: egui::Pos2, align: egui::Align2, text: &str, size: f32) -> bool {
        self.draw(at, align, text, size, false)
    }

    /// As `put`, over whatever is there (the hover text).
    fn put_over(&mut self, at: egui::Pos2, align: egui::Align2, text: &str, size: f32) {
        self.draw(at, align, text, size, true);
    }

    /// A ring around a point (counted as covering its square).
    fn ring(&mut self, at: egui::Pos2, radius: f32, color: egui::Color32) {
        self.painter
            .circle_stroke(at, radius, egui::Stroke::new(2.0, color));
        self.placed.push(egui::Rect::from_center_size(
            at,
            egui::Vec2::splat(radius * 2.0 + 2.0),
        ));
    }

    fn draw(
        &mut self,
        at: egui::Pos2,
        align: egui::Align2,
        text: &str,
        size: f32,
        over: bool,
    ) -> bool {
        // Wrapped to the view's width (the legend's long lines at projector sizes).
        let galley = self.painter.layout(
            text.to_string(),
            egui::FontId::monospace(size),
            egui::Color32::from_gray(235),
            (self.view.width() - 6.0).max(24.0),
        );
        let mut rect = align.anchor_size(at, galley.size()).expand(2.0);
        if self.view.contains(at) {
            rect = inside(rect, self.view);
        }
        if !over && self.placed.iter().any(|r| r.intersects(rect)) {
            return false;
        }
        self.placed.push(rect);
        self.painter
            .rect_filled(rect, 3.0, egui::Color32::from_black_alpha(170));
        self.painter.galley(
            rect.min + egui::vec2(2.0, 2.0),
            galley,
            egui::Color32::WHITE,
        );
        true
    }
}

pub(super) fn world_overlay(
    mut contexts: EguiContexts,
    view: Res<LlmView>,
    mode: Res<WorldMode>,
    camera: Res<WorldCamera>,
    viewport: Res<SceneViewport>,
    windows: Query<&Window, With<PrimaryWindow>>,
    buttons: Res<ButtonInput<MouseButton>>,
    wants: Option<Res<EguiWantsInput>>,
    mut state: ResMut<WorldState>,
    mut selection: ResMut<LlmSelection>,
    mut press: Local<Option<Vec2>>,
    narration: Res<Narration>,
    values: Res<ColumnValues>,
    mut hover: Local<HoverCache>,
) {
    // Anything done to the view (a new trace, always with a new revision) is looked at again,
    // also when it happened on a frame this overlay returned early.
    if view.is_changed() {
        hover.invalidate();
    }
    if !mode.world {
        return;
    }
    let Ok(ctx) = contexts.ctx_mut() else {
        return;
    };
    let k = viewport.points_per_pixel;
    let v = viewport.physical;
    let clip = egui::Rect::from_min_size(
        egui::pos2(v.x * k, v.y * k),
        egui::vec2(v.width * k, v.height * k),
    );
    if clip.width() < 2.0 || clip.height() < 2.0 {
        return;
    }
    let painter = ctx
        .layer_painter(egui::LayerId::new(
            egui::Order::Background,
            egui::Id::new("world_labels"),
        ))
        .with_clip_rect(clip);
    let mut labels = Labels {
        painter: painter.clone(),
        placed: Vec::new(),
        view: clip,
    };
    state.label_rects.clear();
    let chain = camera.chain(v);
    let to_pos = |p: Vec3| {
        chain
            .project_world(p)
            .map(|px| egui::pos2(px.x * k, px.y * k))
    };
    let Some(trace) = &view.trace else {
        let why = empty_world_note(&view, narration.0);
        labels.put(clip.center(), egui::Align2::CENTER_CENTER, &why, 18.0);
        return;
    };
    let Some(layout) = state.layout else {
        return;
    };
    let columns = values.path.map_or("", ValuesPath::describe);
    let path = match &view.backend {
        Backend::Local => format!("CPU backend: {columns}"),
        Backend::Gpu { .. } => format!("GPU backend: {columns}"),
        Backend::Remote { .. } => format!("remote server: its trace, checked; {columns}"),
    };
    let legend = format!(
        "{} layers x {} MLP activations of {:?}: each a box, T times S with s_y = the value,\n\
         lit by scene 1's light\n{path}\nO overview · E embedding · L layer · H head · V panels",
        layout.layers,
        layout.neurons,
        visible_piece(&trace.token.piece),
    );
    if !narration.0 {
        labels.put(
            clip.left_top() + egui::vec2(6.0, 6.0),
            egui::Align2::LEFT_TOP,
            &legend,
            11.0,
        );
    }

    // Tokens on the floor, the text under each (the newest first, where there is room).
    let drawn = state.tokens.len();
    for (slot, (token, _)) in state.tokens.iter().enumerate().rev() {
        if let Some(p) = to_pos(layout.token_base(slot, drawn) + Vec3::new(0.0, 0.0, 0.3)) {
            let text = visible_piece(&token.piece);
            labels.put(p, egui::Align2::CENTER_TOP, &text, 12.0);
        }
    }
    if let Some(p) = to_pos(layout.embedding_base(layout.embedding.saturating_sub(1))) {
        // The vocabulary's size only where the local model gave the trace.
        let rows = local_config(&view).map_or(String::new(), |c| grouped(c.vocab_size) + " x ");
        let text = format!(
            "embedding of {:?}: row {} of the {rows}{} matrix",
            visible_piece(&trace.token.piece),
            trace.token.id,
            grouped(layout.embedding)
        );
        labels.put(p, egui::Align2::LEFT_TOP, &text, 12.0);
    }

    // Layer numbers and the logit lens at the right of each block.
    let right = |layer: usize| {
        layout.column_base(layer, layout.cols - 1) + Vec3::new(PITCH * 2.0, 0.0, 0.0)
    };
    let cut = state.cut(&camera);
    let shown = |layer: usize| cut.is_none_or(|c| layer <= c);
    for (i, l) in trace.layers.iter().enumerate().rev() {
        if !shown(i) {
            continue;
        }
        if state.pulse_layer == Some(i) {
            if let Some(p) = to_pos(right(i)) {
                labels.put(
                    p,
                    egui::Align2::LEFT_CENTER,
                    &format!("computing layer {i}"),
                    14.0,
                );
            }
            continue;
        }
        let lens = l.logit_lens.as_ref().map_or(String::new(), |t| {
            format!(
                "  lens {:?} {:.0}%",
                visible_piece(&t.piece),
                t.prob * 100.0
            )
        });
        if let Some(p) = to_pos(right(i)) {
            let text = format!("L{i:02}  |x| {:.1}{lens}", l.residual_norm_out);
            labels.put(p, egui::Align2::LEFT_CENTER, &text, 11.0);
        }
    }

    // The head: each candidate's piece and probability above its bar.
    let head_bars = if cut.is_some() {
        0
    } else {
        super::layout::HEAD_BARS
    };
    for (rank, c) in trace.top_k.iter().enumerate().take(head_bars) {
        let top = column_top(layout.head_base(rank), c.prob, super::layout::HEAD_UNIT);
        if let Some(p) = to_pos(top + Vec3::Y * 0.2) {
            let text = format!("{} {:.0}%", visible_piece(&c.piece), c.prob * 100.0);
            labels.put(p, egui::Align2::CENTER_BOTTOM, &text, 12.0);
        }
    }

    // The column under the mouse, and a click to select it.
    let window = windows.single().ok();
    let cursor = window.and_then(cursor_physical);
    let egui_busy = wants.is_some_and(|w| w.wants_any_pointer_input());
    state.hovered = cursor
        .filter(|c| v.contains(*c) && !egui_busy)
        .and_then(|c| hover.nearest(&chain, &layout, trace, view.revision, cut, c));
    if let Some(piece) = state.hovered
        && let Some(c) = cursor
        && let Some((text, top)) = describe(piece, trace, &layout)
    {
        let p = egui::pos2(c.x * k + 14.0, c.y * k + 10.0);
        labels.put_over(p, egui::Align2::LEFT_TOP, &text, 13.0);
        if let Some(t) = to_pos(top) {
            labels.ring(t, 6.0, ACCENT);
        }
    }
    if buttons.just_pressed(MouseButton::Left) {
        *press = cursor;
    }
    if buttons.just_released(MouseButton::Left) {
        let still = press
            .take()
            .zip(cursor)
            .is_some_and(|(a, b)| a.distance(b) <= 3.0);
        if still && let Some(Piece::Neuron { layer, neuron }) = state.hovered {
            selection.neuron = Some((layer, neuron));
        }
    }
    if let Some((layer, neuron)) = selection.neuron
        && let Some(value) = trace
            .layers
            .get(layer)
            .and_then(|l| l.mlp_activation.get(neuron))
        && let Some(t) = to_pos(column_top(
            layout.column_base(layer, neuron),
            *value,
            MLP_UNIT,
        ))
    {
        labels.ring(t, 8.0, egui::Color32::WHITE);
    }
    state.label_rects = labels
        .placed
        .iter()
        .map(|r| [r.min.x / k, r.min.y / k, r.width() / k, r.height() / k])
        .collect();
}

/// `rect` moved the least that puts it inside `view` (its top-left corner, where it is larger).
fn inside(rect: egui::Rect, view: egui::Rect) -> egui::Rect {
    let dx = if rect.right() > view.right() {
        (view.right() - rect.right()).max(view.left() - rect.left())
    } else {
        (view.left() - rect.left()).max(0.0)
    };
    let dy = if rect.bottom() > view.bottom() {
        (view.bottom() - rect.bottom()).max(view.top() - rect.top())
    } else {
        (view.top() - rect.top()).max(0.0)
    };
    rect.translate(egui::vec2(dx, dy))
}

/// What a hovered piece is (its numbers, from the trace) and the middle of its top.
fn describe(piece: Piece, trace: &llm::Trace, layout: &WorldLayout) -> Option<(String, Vec3)> {
    match piece {
        Piece::Neuron { layer, neuron } => {
            let value = *trace.layers.get(layer)?.mlp_activation.get(neuron)?;
            let top = column_top(layout.column_base(layer, neuron), value, MLP_UNIT);
            Some((
                format!("layer {layer}, neuron {neuron}: {value:.4} (click: its dot products)"),
                top,
            ))
        }
        Piece::Attention { layer, head, slot } => {
            let (position, weight, kv) = attention_at(trace, layer, head, slot)?;
            let base = layout.attention_base(layer, head, kv, slot);
            Some((
                format!(
                    "layer {layer}, head {head} (KV head {kv}): weight {weight:.3} on position \
                     {position}"
                ),
                column_top(base, weight, ATTENTION_UNIT),
            ))
        }
        _ => None,
    }
}

/// What the world says while it has no trace to draw. During a talk (`narration`) Space moves
/// the talk, so the note names the Step button (and the talk's steps run the model themselves).
fn empty_world_note(view: &LlmView, narration: bool) -> String {
    if !view.backend.has_traces() {
        format!(
            "{} sends no trace: nothing of the model's insides to draw here.\nIts tokens \
             and probabilities are in the panels (V).",
            view.backend.name()
        )
    } else if let EngineStatus::Loading(s) = &view.status {
        s.clone()
    } else if let Some(news) = &view.progress {
        news.clone()
    } else {
        // The local model's width; a remote server's model may be another.
        let neurons = local_config(view).map_or(String::new(), |c| grouped(c.n_ff) + " ");
        let what = format!("every layer's {neurons}MLP activations");
        if view.status == EngineStatus::Generating {
            format!(
                "The model is reading the prompt: the newest token's forward pass is drawn \
                 here,\n{what} as columns."
            )
        } else if narration {
            format!(
                "No token yet: the talk's steps run the model, or the Step button in the panels \
                 (V).\nThe newest token's forward pass is drawn here, {what}."
            )
        } else {
            format!(
                "Step (Space) or Generate (Enter): the newest token's forward pass is drawn \
                 here,\n{what} as columns."
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a talk Space moves the talk: the empty world's note does not ask for it there.
    #[test]
    fn the_empty_worlds_note_names_space_only_outside_a_talk() {
        let view = LlmView::default();
        let outside = empty_world_note(&view, false);
        assert!(outside.contains("Step (Space)"), "{outside}");
        let talk = empty_world_note(&view, true);
        assert!(!talk.contains("Space"), "{talk}");
        assert!(talk.contains("Step button"), "{talk}");
    }

    #[test]
    fn a_plate_past_the_views_edge_moves_back_inside() {
        let view = egui::Rect::from_min_max(egui::pos2(100.0, 50.0), egui::pos2(500.0, 400.0));
        let past_right =
            egui::Rect::from_min_size(egui::pos2(450.0, 60.0), egui::vec2(120.0, 20.0));
        let moved = inside(past_right, view);
        assert_eq!(moved.right(), 500.0);
        assert_eq!(moved.size(), past_right.size());
        assert_eq!(moved.top(), 60.0, "only as far as needed");
        let past_corner =
            egui::Rect::from_min_size(egui::pos2(80.0, 390.0), egui::vec2(50.0, 30.0));
        let moved = inside(past_corner, view);
        assert_eq!((moved.left(), moved.bottom()), (100.0, 400.0));
        // Wider than the view: its left edge stays in it.
        let wide = egui::Rect::from_min_size(egui::pos2(300.0, 60.0), egui::vec2(600.0, 20.0));
        assert_eq!(inside(wide, view).left(), 100.0);
        let within = egui::Rect::from_min_size(egui::pos2(200.0, 100.0), egui::vec2(50.0, 20.0));
        assert_eq!(inside(within, view), within);
    }
}
