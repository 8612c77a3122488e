//! Which piece of the 3D world is under the mouse: `nearest` goes over every neuron's column and
//! attention tile the camera sees, and `HoverCache` keeps its answer between frames (and the
//! pieces' projection under one camera), so a frame where nothing moved costs a comparison.

use glam::{Vec2, Vec3};
use math::camera::{ClipChain, pixel_from_ndc};

use super::Piece;
use super::layout::{
    ATTENTION_PITCH, ATTENTION_POSITIONS, ATTENTION_UNIT, COLUMN, MLP_UNIT, WorldLayout, column_top,
};

/// Head `head` of layer `layer` at drawn slot `slot`: the position, its weight and the KV head.
pub(super) fn attention_at(
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

/// Every piece the world draws for `trace` up to layer `cut`, in drawing order (which settles
/// ties between pieces at the same depth): `visit` gets its top, its width and the piece.
fn each_piece(
    layout: &WorldLayout,
    trace: &llm::Trace,
    cut: Option<usize>,
    mut visit: impl FnMut(Vec3, f32, Piece),
) {
    for (layer, l) in trace.layers.iter().enumerate() {
        if cut.is_some_and(|c| layer > c) {
            continue;
        }
        for (neuron, &value) in l.mlp_activation.iter().enumerate() {
            let top = column_top(layout.column_base(layer, neuron), value, MLP_UNIT);
            visit(top, COLUMN, Piece::Neuron { layer, neuron });
        }
        for head in 0..l.attention.len().min(layout.heads) {
            for slot in 0..ATTENTION_POSITIONS {
                if let Some((_, weight, kv)) = attention_at(trace, layer, head, slot) {
                    let base = layout.attention_base(layer, head, kv, slot);
                    let top = column_top(base, weight, ATTENTION_UNIT);
                    visit(top, ATTENTION_PITCH, Piece::Attention { layer, head, slot });
                }
            }
        }
    }
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
    let consider = |top: Vec3, width: f32, piece: Piece| {
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
    each_piece(layout, trace, cut, consider);
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
        let add = |top: Vec3, width: f32, piece: Piece| {
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
        each_piece(layout, trace, cut, add);
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
}
