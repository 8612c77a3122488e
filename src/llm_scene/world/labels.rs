//! The world's words, drawn at the pixels the camera chain gives for world points: what the
//! world is, the tokens' text on the floor, each layer's number and logit-lens guess, the
//! next-token pieces and probabilities; the column under the mouse (layer, neuron, value), and a
//! click selects it for the dot-product inspector and the bridge.

use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::input::EguiWantsInput;
use bevy_egui::{EguiContexts, egui};
use glam::{Vec2, Vec3};
use math::camera::{ClipChain, pixel_from_ndc};

use super::layout::{
    ATTENTION_PITCH, ATTENTION_POSITIONS, ATTENTION_UNIT, COLUMN, MLP_UNIT, PITCH, column_top,
};
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

/// Head `head` of layer `layer` at drawn slot `slot`: the position, its weight and the KV head.
fn attention_at(
    trace: &llm::Trace,
    layer: usize,
    head: usize,
    slot: usize,
) -> Option<(usize, f32, usize)> {
    let positions = trace.position + 1;
    let position = positions.saturating_sub(ATTENTION_POSITIONS) + slot;
    let weight = *trace
        .layers
        .get(layer)?
        .attention
        .get(head)?
        .get(position)?;
    Some((position, weight, *trace.kv_head_of_head.get(head)?))
}

/// The piece nearest the camera whose top is under the cursor (within its width on screen, at
/// least 6 pixels): a neuron's column or an attention tile.
fn nearest(
    chain: &ClipChain,
    layout: &WorldLayout,
    trace: &llm::Trace,
    cut: Option<usize>,
    cursor: Vec2,
) -> Option<Piece> {
    let clip_from_world = chain.clip_from_world();
    // Pixels per world unit at depth 1.
    let f = chain.clip_from_view.y_axis.y * chain.viewport.height / 2.0;
    let mut best: Option<(f32, Piece)> = None;
    let mut consider = |top: Vec3, width: f32, piece: Piece| {
        let w = (clip_from_world * top.extend(1.0)).w;
        if w <= 1e-6 || best.is_some_and(|(bw, _)| w >= bw) {
            return;
        }
        if let Some(px) = chain.project_world(top)
            && px.distance(cursor) <= (width * f / w).max(6.0)
        {
            best = Some((w, piece));
        }
    };
    for (layer, l) in trace.layers.iter().enumerate() {
        if cut.is_some_and(|c| layer > c) {
            continue;
        }
        for (neuron, &value) in l.mlp_activation.iter().enumerate() {
            let top = column_top(layout.column_base(layer, neuron), value, MLP_UNIT);
            consider(top, COLUMN, Piece::Neuron { layer, neuron });
        }
        for head in 0..l.attention.len().min(layout.heads) {
            for slot in 0..ATTENTION_POSITIONS {
                if let Some((_, weight, kv)) = attention_at(trace, layer, head, slot) {
                    let base = layout.attention_base(layer, head, kv, slot);
                    let top = column_top(base, weight, ATTENTION_UNIT);
                    consider(top, ATTENTION_PITCH, Piece::Attention { layer, head, slot });
                }
            }
        }
    }
    best.map(|(_, p)| p)
}

/// `nearest`'s answer kept between frames: a frame whose camera, view, trace, cut and cursor are
/// those of the last one costs a comparison, not the 46,080 columns and 12,960 tiles projected
/// again. A change of camera, view, trace or cut is answered by `nearest` itself (as before: a
/// flight or an orbit changes the camera each frame); a second cursor under the same camera has
/// the pieces projected once (each top on screen, the radius it answers within, its depth) and
/// from then on a moved cursor only searches them. Same answer as `nearest`, bit for bit: the
/// same arithmetic in the same order.
#[derive(Debug, Default)]
pub(super) struct HoverCache {
    /// What the answer and `candidates` are for.
    scene: Option<HoverScene>,
    /// `candidates` hold this scene's projection.
    projected: bool,
    /// The pieces a cursor in the view can be over, in `nearest`'s order (those whose top is
    /// behind the camera, or farther from the view than their radius, left out).
    candidates: Vec<Candidate>,
    /// The cursor last asked about (its bits) and the answer.
    answer: Option<([u32; 2], Option<Piece>)>,
    /// How many times all the pieces were gone over: by `nearest` (a new camera, view, trace,
    /// layout or cut; a cursor outside the view) or to project them (a second cursor).
    passes: u64,
    /// How many times the candidates were searched for a cursor.
    searches: u64,
}

/// Everything `nearest` reads but the cursor; floats by their bits, so equal means identical.
#[derive(Debug, Clone, PartialEq)]
struct HoverScene {
    matrices: [u32; 48],
    viewport: [u32; 4],
    layout: WorldLayout,
    /// `LlmView::revision`: bumped with every new trace (`invalidate` covers any other change).
    revision: u64,
    cut: Option<usize>,
}

impl HoverScene {
    fn new(chain: &ClipChain, layout: &WorldLayout, revision: u64, cut: Option<usize>) -> Self {
        let mut matrices = [0; 48];
        let floats = [
            chain.world_from_local,
            chain.view_from_world,
            chain.clip_from_view,
        ]
        .map(|m| m.to_cols_array());
        for (bits, f) in matrices.iter_mut().zip(floats.iter().flatten()) {
            *bits = f.to_bits();
        }
        let v = chain.viewport;
        Self {
            matrices,
            viewport: [v.x, v.y, v.width, v.height].map(f32::to_bits),
            layout: *layout,
            revision,
            cut,
        }
    }
}

/// A piece's top on screen, how near the cursor must be, and its depth (clip w).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    px: Vec2,
    radius: f32,
    w: f32,
    piece: Piece,
}

impl HoverCache {
    /// Forget everything (the trace may have changed without a new revision).
    pub(super) fn invalidate(&mut self) {
        self.scene = None;
        self.projected = false;
        self.answer = None;
    }

    /// `nearest(chain, layout, trace, cut, cursor)`, where `revision` names `trace`.
    pub(super) fn nearest(
        &mut self,
        chain: &ClipChain,
        layout: &WorldLayout,
        trace: &llm::Trace,
        revision: u64,
        cut: Option<usize>,
        cursor: Vec2,
    ) -> Option<Piece> {
        if !chain.viewport.contains(cursor) {
            // The candidates are those a cursor in the view can be over.
            self.passes += 1;
            return nearest(chain, layout, trace, cut, cursor);
        }
        let scene = HoverScene::new(chain, layout, revision, cut);
        if self.scene.as_ref() != Some(&scene) {
            self.scene = Some(scene);
            self.projected = false;
            self.answer = None;
        }
        let bits = [cursor.x.to_bits(), cursor.y.to_bits()];
        match self.answer {
            Some((at, piece)) if at == bits => return piece,
            // The scene's first cursor: perhaps its only one (the camera moves on next frame).
            None if !self.projected => {
                self.passes += 1;
                let piece = nearest(chain, layout, trace, cut, cursor);
                self.answer = Some((bits, piece));
                return piece;
            }
            _ => {}
        }
        if !self.projected {
            self.project(chain, layout, trace, cut);
            self.projected = true;
        }
        self.searches += 1;
        let mut best: Option<(f32, Piece)> = None;
        for c in &self.candidates {
            if best.is_some_and(|(bw, _)| c.w >= bw) {
                continue;
            }
            if c.px.distance(cursor) <= c.radius {
                best = Some((c.w, c.piece));
            }
        }
        let piece = best.map(|(_, p)| p);
        self.answer = Some((bits, piece));
        piece
    }

    /// Each piece's top as `nearest` projects it (`project_world` is `pixel_from_ndc` of the same
    /// clip position), kept where a cursor in the view can be within its radius.
    fn project(
        &mut self,
        chain: &ClipChain,
        layout: &WorldLayout,
        trace: &llm::Trace,
        cut: Option<usize>,
    ) {
        self.passes += 1;
        self.candidates.clear();
        let clip_from_world = chain.clip_from_world();
        let f = chain.clip_from_view.y_axis.y * chain.viewport.height / 2.0;
        let v = chain.viewport;
        let mut add = |top: Vec3, width: f32, piece: Piece| {
            let clip = clip_from_world * top.extend(1.0);
            let w = clip.w;
            if w <= 1e-6 {
                return;
            }
            let px = pixel_from_ndc(clip.truncate() / clip.w, &v);
            let radius = (width * f / w).max(6.0);
            // Its distance from the view's rectangle, less than from any cursor in it; with room
            // for rounding (a candidate too many costs nothing but its search).
            let dx = (v.x - px.x).max(px.x - (v.x + v.width)).max(0.0);
            let dy = (v.y - px.y).max(px.y - (v.y + v.height)).max(0.0);
            if Vec2::new(dx, dy).length() > radius * 1.01 + 16.0 {
                return;
            }
            self.candidates.push(Candidate {
                px,
                radius,
                w,
                piece,
            });
        };
        for (layer, l) in trace.layers.iter().enumerate() {
            if cut.is_some_and(|c| layer > c) {
                continue;
            }
            for (neuron, &value) in l.mlp_activation.iter().enumerate() {
                let top = column_top(layout.column_base(layer, neuron), value, MLP_UNIT);
                add(top, COLUMN, Piece::Neuron { layer, neuron });
            }
            for head in 0..l.attention.len().min(layout.heads) {
                for slot in 0..ATTENTION_POSITIONS {
                    if let Some((_, weight, kv)) = attention_at(trace, layer, head, slot) {
                        let base = layout.attention_base(layer, head, kv, slot);
                        let top = column_top(base, weight, ATTENTION_UNIT);
                        add(top, ATTENTION_PITCH, Piece::Attention { layer, head, slot });
                    }
                }
            }
        }
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
    use crate::llm_scene::world::{Preset, WorldCamera};
    use math::Viewport;

    /// A small trace of `layers` layers, `neurons` activations and `heads` heads (two KV heads)
    /// over 60 positions, its numbers from `seed`.
    fn trace(layers: usize, neurons: usize, heads: usize, seed: f32) -> llm::Trace {
        let wave = |i: usize, k: f32| ((i as f32 * k + seed).sin() * 1.7).abs() * 1.5;
        let layer = |l: usize| llm::LayerTrace {
            attention: (0..heads)
                .map(|h| {
                    (0..60)
                        .map(|p| wave(l * 977 + h * 61 + p, 0.31) / 3.0)
                        .collect()
                })
                .collect(),
            mlp_activation: (0..neurons).map(|n| wave(l * 131 + n, 0.77)).collect(),
            mlp_input: vec![],
            residual_norm_in: 1.0,
            residual_norm_out: 1.0,
            logit_lens: None,
        };
        llm::Trace {
            position: 59,
            token: llm::TokenInfo {
                id: 1,
                piece: "a".into(),
            },
            embedding: vec![0.5; 16],
            kv_head_of_head: (0..heads).map(|h| h * 2 / heads).collect(),
            layers: (0..layers).map(layer).collect(),
            top_k: vec![],
        }
    }

    fn layout_of(t: &llm::Trace) -> WorldLayout {
        WorldLayout::new(
            t.layers.len(),
            t.layers[0].mlp_activation.len(),
            t.embedding.len(),
        )
        .with_attention(t.kv_head_of_head.len(), 2)
    }

    fn camera(preset: Preset, layout: &WorldLayout) -> WorldCamera {
        let mut c = WorldCamera::default();
        c.go(preset, layout);
        c.current = c.goal;
        c
    }

    const VIEW: Viewport = Viewport {
        x: 100.0,
        y: 40.0,
        width: 1280.0,
        height: 720.0,
    };

    /// Where neuron `neuron` of layer `layer`'s top lands (a cursor over it).
    fn over(
        chain: &ClipChain,
        layout: &WorldLayout,
        t: &llm::Trace,
        layer: usize,
        n: usize,
    ) -> Vec2 {
        let value = t.layers[layer].mlp_activation[n];
        chain
            .project_world(column_top(layout.column_base(layer, n), value, MLP_UNIT))
            .expect("in front of the camera")
    }

    /// Asks the cache about each cursor in turn; each answer is `nearest`'s.
    fn ask(
        cache: &mut HoverCache,
        (chain, layout, t): (&ClipChain, &WorldLayout, &llm::Trace),
        revision: u64,
        cut: Option<usize>,
        cursors: &[Vec2],
    ) -> (u64, u64) {
        for &c in cursors {
            let fresh = nearest(chain, layout, t, cut, c);
            assert_eq!(
                cache.nearest(chain, layout, t, revision, cut, c),
                fresh,
                "{c}"
            );
        }
        (cache.passes, cache.searches)
    }

    /// Each kind of change gives `nearest`'s answer again (for the first cursor from `nearest`,
    /// for the next from the projection); a frame with none of them does no work, and a moved
    /// cursor only searches what was projected.
    #[test]
    fn the_hover_cache_answers_as_nearest_and_works_only_on_change() {
        let t = trace(4, 96, 3, 0.0);
        let layout = layout_of(&t);
        let mut cam = camera(Preset::Overview, &layout);
        let mut chain = cam.chain(VIEW);
        let c1 = over(&chain, &layout, &t, 2, 40);
        let e = Vec2::new(500.0, 330.0);
        let mut cache = HoverCache::default();
        assert!(
            nearest(&chain, &layout, &t, None, c1).is_some(),
            "over a column"
        );
        assert_eq!(
            ask(&mut cache, (&chain, &layout, &t), 1, None, &[c1]),
            (1, 0)
        );

        // Unchanged frames (the chain built again, as each frame does): no work.
        for _ in 0..5 {
            let again = cam.chain(VIEW);
            assert_eq!(
                ask(&mut cache, (&again, &layout, &t), 1, None, &[c1]),
                (1, 0)
            );
        }

        // The cursor moved: projected once, then only searched (back and forth too).
        let c2 = over(&chain, &layout, &t, 3, 7);
        assert!(nearest(&chain, &layout, &t, None, c2).is_some());
        assert_eq!(
            ask(&mut cache, (&chain, &layout, &t), 1, None, &[c2]),
            (2, 1)
        );
        let scene = (&chain, &layout, &t);
        assert_eq!(ask(&mut cache, scene, 1, None, &[e, c2, e, c1]), (2, 5));
        assert_eq!(ask(&mut cache, scene, 1, None, &[c1, c1]), (2, 5));

        // The camera moved (an orbit).
        let before = nearest(&chain, &layout, &t, None, c2);
        cam.goal.orbit(25.0, 10.0);
        cam.current = cam.goal;
        chain = cam.chain(VIEW);
        assert_ne!(
            nearest(&chain, &layout, &t, None, c2),
            before,
            "another answer"
        );
        let scene = (&chain, &layout, &t);
        assert_eq!(ask(&mut cache, scene, 1, None, &[c2]), (3, 5));
        assert_eq!(ask(&mut cache, scene, 1, None, &[e, c2]), (4, 7));
        assert_eq!(ask(&mut cache, scene, 1, None, &[c2]), (4, 7));

        // The view changed size (a panel opened).
        let narrower = Viewport {
            width: 900.0,
            ..VIEW
        };
        chain = cam.chain(narrower);
        let scene = (&chain, &layout, &t);
        assert_eq!(ask(&mut cache, scene, 1, None, &[c2, e]), (6, 8));

        // A new trace (a new revision), the same shape.
        let next = trace(4, 96, 3, 1.3);
        let c3 = over(&chain, &layout, &next, 1, 50);
        assert_ne!(
            nearest(&chain, &layout, &next, None, c3),
            nearest(&chain, &layout, &t, None, c3)
        );
        assert_eq!(
            ask(&mut cache, (&chain, &layout, &next), 2, None, &[c3, e]),
            (8, 9)
        );

        // A trace of another shape (a remote model's).
        let other = trace(3, 150, 2, 0.4);
        let other_layout = layout_of(&other);
        let scene = (&chain, &other_layout, &other);
        assert_eq!(ask(&mut cache, scene, 3, None, &[c3, e]), (10, 10));

        // The cut (a layer's close-up, or the pulse) hides layers.
        let c4 = over(&chain, &other_layout, &other, 2, 20);
        assert_ne!(
            nearest(&chain, &other_layout, &other, None, c4),
            nearest(&chain, &other_layout, &other, Some(1), c4)
        );
        assert_eq!(ask(&mut cache, scene, 3, None, &[c4]), (10, 11));
        assert_eq!(ask(&mut cache, scene, 3, Some(1), &[c4, e]), (12, 12));

        // The view's resource changed, the revision not: `invalidate` has all looked at again.
        cache.invalidate();
        assert_eq!(ask(&mut cache, scene, 3, Some(1), &[e, c4]), (14, 13));

        // A cursor outside the view is answered by `nearest` itself; the cache stays as it was.
        let outside = Vec2::new(50.0, 30.0);
        assert_eq!(ask(&mut cache, scene, 3, Some(1), &[outside]), (15, 13));
        assert_eq!(ask(&mut cache, scene, 3, Some(1), &[c4]), (15, 13));
    }

    /// The candidates left out (behind the camera, or farther from the view than they reach)
    /// never change an answer: over a grid of cursors and every column's top, from afar, a
    /// layer's close-up and from inside the stack, the cache says what `nearest` says.
    #[test]
    fn the_hover_cache_agrees_with_nearest_everywhere_in_the_view() {
        let t = trace(4, 96, 3, 0.7);
        let layout = layout_of(&t);
        let pieces = 4 * 96 + 4 * 3 * ATTENTION_POSITIONS;
        let mut inside = camera(Preset::Layer(1), &layout);
        inside.current.distance = 1.5;
        inside.current.pitch_deg = 5.0;
        let poses = [
            (camera(Preset::Overview, &layout), None),
            (camera(Preset::Layer(2), &layout), Some(2)),
            (inside, None),
        ];
        let mut left_out = false;
        for (cam, cut) in poses {
            let chain = cam.chain(VIEW);
            let mut cache = HoverCache::default();
            let mut cursors: Vec<Vec2> = (0..=48)
                .flat_map(|i| {
                    (0..=27).map(move |j| {
                        Vec2::new(
                            VIEW.x + i as f32 * (VIEW.width - 1.0) / 48.0,
                            VIEW.y + j as f32 * (VIEW.height - 1.0) / 27.0,
                        )
                    })
                })
                .collect();
            for layer in 0..4 {
                for n in (0..96).step_by(5) {
                    let value = t.layers[layer].mlp_activation[n];
                    let top = column_top(layout.column_base(layer, n), value, MLP_UNIT);
                    cursors.extend(chain.project_world(top).filter(|p| VIEW.contains(*p)));
                }
            }
            let (mut hits, count) = (0, cursors.len() as u64);
            for c in cursors {
                let fresh = nearest(&chain, &layout, &t, cut, c);
                assert_eq!(cache.nearest(&chain, &layout, &t, 0, cut, c), fresh, "{c}");
                hits += usize::from(fresh.is_some());
            }
            assert!(hits > 10, "{hits} cursors over a piece");
            // The first cursor answered by `nearest`, the others from one projection.
            assert_eq!((cache.passes, cache.searches), (2, count - 1));
            left_out |= cache.candidates.len() < pieces;
        }
        assert!(left_out, "some pose leaves pieces out");
    }

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
