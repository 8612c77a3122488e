//! The world's camera: scene 1's orbit camera and matrices, with presets (overview, the
//! embedding, a layer's MLP block, the head) reached by keys and flown to smoothly; the mouse
//! orbits and zooms it as in scene 1.

use bevy::input::mouse::{AccumulatedMouseMotion, AccumulatedMouseScroll, MouseScrollUnit};
use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::input::EguiWantsInput;
use glam::Vec3;
use math::camera::ClipChain;
use math::{OrbitCamera, Viewport};

use super::WorldState;
use super::layout::WorldLayout;
use crate::llm_scene::state::{LlmSelection, LlmView};
use crate::llm_scene::view::{Preset, WorldMode};
use crate::shell::{KeyboardFocus, SceneViewport, cursor_physical, keyboard_free};

impl Preset {
    pub fn camera(self, layout: &WorldLayout) -> OrbitCamera {
        let at = |target: Vec3, distance: f32, yaw_deg: f32, pitch_deg: f32| OrbitCamera {
            target: target.to_array(),
            yaw_deg,
            pitch_deg,
            distance,
            ..OrbitCamera::default()
        };
        match self {
            Preset::Overview => at(layout.centre(), 58.0, 28.0, 12.0),
            Preset::Embedding => {
                let n = layout.embedding.saturating_sub(1);
                let middle = (layout.embedding_base(0) + layout.embedding_base(n)) / 2.0;
                at(middle, 11.0, 20.0, 40.0)
            }
            Preset::Layer(l) => {
                let l = l.min(layout.layers.saturating_sub(1));
                let n = layout.neurons.saturating_sub(1);
                let middle = (layout.column_base(l, 0) + layout.column_base(l, n)) / 2.0;
                at(middle, 21.0, 25.0, 42.0)
            }
            Preset::Head => at(
                layout.head_base(0).with_x(0.0) + Vec3::Y * 1.5,
                19.0,
                0.0,
                14.0,
            ),
        }
    }
}

/// The camera now and where it is flying to.
#[derive(Resource, Debug, Clone)]
pub struct WorldCamera {
    pub current: OrbitCamera,
    pub goal: OrbitCamera,
    pub preset: Preset,
}

impl Default for WorldCamera {
    fn default() -> Self {
        let layout = WorldLayout::new(30, 1536, 576);
        let c = Preset::Overview.camera(&layout);
        Self {
            current: c,
            goal: c,
            preset: Preset::Overview,
        }
    }
}

impl WorldCamera {
    pub fn go(&mut self, preset: Preset, layout: &WorldLayout) {
        self.preset = preset;
        self.goal = preset.camera(layout);
    }

    /// The layers above this one are hidden (and the head): a layer's close-up looks at its
    /// block from above, which the stack over it would cover.
    pub fn cut(&self) -> Option<usize> {
        match self.preset {
            Preset::Layer(l) => Some(l),
            _ => None,
        }
    }

    /// One frame of flight: most of the way in about half a second.
    pub fn fly(&mut self, dt: f32) {
        let k = 1.0 - (-dt.max(0.0) * 6.0).exp();
        let (c, g) = (&mut self.current, &self.goal);
        let mix = |a: f32, b: f32| a + (b - a) * k;
        for i in 0..3 {
            c.target[i] = mix(c.target[i], g.target[i]);
        }
        // Yaw the short way round.
        let dyaw = (g.yaw_deg - c.yaw_deg + 540.0).rem_euclid(360.0) - 180.0;
        c.yaw_deg = (c.yaw_deg + dyaw * k).rem_euclid(360.0);
        c.pitch_deg = mix(c.pitch_deg, g.pitch_deg);
        c.distance = mix(c.distance, g.distance);
        c.fov_y_deg = mix(c.fov_y_deg, g.fov_y_deg);
        *c = c.sanitized();
    }

    /// The chain every world point goes through to reach a pixel of `viewport`.
    pub fn chain(&self, viewport: Viewport) -> ClipChain {
        ClipChain {
            world_from_local: Mat4::IDENTITY,
            view_from_world: self.current.view_from_world(),
            clip_from_view: self.current.clip_from_view(viewport.aspect()),
            viewport,
        }
    }
}

/// O overview, E embedding, L the selected layer, H head, V the world or the panel views.
pub(super) fn world_keys(
    keys: Res<ButtonInput<KeyCode>>,
    wants: Option<Res<KeyboardFocus>>,
    state: Res<WorldState>,
    selection: Res<LlmSelection>,
    mut mode: ResMut<WorldMode>,
    mut camera: ResMut<WorldCamera>,
) {
    if !keyboard_free(wants) {
        return;
    }
    if keys.just_pressed(KeyCode::KeyV) {
        mode.world = !mode.world;
    }
    let Some(layout) = state.layout else {
        return;
    };
    let layer = selection
        .neuron
        .map_or(selection.attention_layer, |(l, _)| l);
    for (key, preset) in [
        (KeyCode::KeyO, Preset::Overview),
        (KeyCode::KeyE, Preset::Embedding),
        (KeyCode::KeyL, Preset::Layer(layer)),
        (KeyCode::KeyH, Preset::Head),
    ] {
        if keys.just_pressed(key) {
            camera.go(preset, &layout);
        }
    }
}

/// Left-drag orbits, scroll zooms (in the world's viewport, when egui does not want the mouse);
/// the flight goes on toward the goal the mouse leaves.
pub(super) fn world_mouse(
    buttons: Res<ButtonInput<MouseButton>>,
    motion: Res<AccumulatedMouseMotion>,
    scroll: Res<AccumulatedMouseScroll>,
    wants: Option<Res<EguiWantsInput>>,
    windows: Query<&Window, With<PrimaryWindow>>,
    viewport: Res<SceneViewport>,
    mode: Res<WorldMode>,
    time: Res<Time>,
    mut camera: ResMut<WorldCamera>,
) {
    if mode.world
        && let Ok(window) = windows.single()
    {
        let egui_busy = wants.is_some_and(|w| w.wants_any_pointer_input());
        let cursor = cursor_physical(window);
        let in_view = cursor.is_some_and(|c| viewport.physical.contains(c)) && !egui_busy;
        if in_view && buttons.pressed(MouseButton::Left) && motion.delta != Vec2::ZERO {
            camera
                .goal
                .orbit(-motion.delta.x * 0.3, motion.delta.y * 0.3);
            let g = camera.goal;
            camera.current.yaw_deg = g.yaw_deg;
            camera.current.pitch_deg = g.pitch_deg;
        }
        if in_view && scroll.delta.y != 0.0 {
            let lines = match scroll.unit {
                MouseScrollUnit::Line => scroll.delta.y,
                MouseScrollUnit::Pixel => scroll.delta.y / 40.0,
            };
            camera.goal.zoom(lines);
        }
    }
    camera.fly(time.delta_secs());
}

/// The world's shape: the latest trace's (a remote server's too), else the local model's; on
/// a remote backend without a trace (between answers, after a reset) none, so the world stays
/// as it was rather than rebuilt in the local model's shape and back with each answer.
pub(super) fn layout_of(view: &LlmView) -> Option<WorldLayout> {
    if let Some(t) = &view.trace {
        let neurons = t.layers.first().map_or(0, |l| l.mlp_activation.len());
        let kv_heads = t.kv_head_of_head.iter().max().map_or(0, |k| k + 1);
        return Some(
            WorldLayout::new(t.layers.len(), neurons, t.embedding.len())
                .with_attention(t.kv_head_of_head.len(), kv_heads),
        );
    }
    let c = crate::llm_scene::activations::local_config(view)?;
    Some(WorldLayout::new(c.n_layer, c.n_ff, c.n_embd).with_attention(c.n_head, c.n_kv_head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm_scene::state::Backend;

    #[test]
    fn a_remote_backend_without_a_trace_keeps_the_world_as_it_is() {
        let (model, _) = testkit::model::model();
        let mut view = LlmView {
            model: Some(model.clone()),
            ..Default::default()
        };
        let local = layout_of(&view).expect("the local model's shape");
        view.backend = Backend::Remote {
            url: "http://127.0.0.1:1".into(),
            info: remote::ServerInfo {
                api: remote::ApiKind::Samemath,
                version: None,
                models: vec![],
                capabilities: Default::default(),
            },
            model: None,
        };
        assert_eq!(layout_of(&view), None);
        // A trace of another shape (a server's other model) is the world's.
        let layer = llm::LayerTrace {
            attention: vec![vec![1.0]],
            mlp_activation: vec![0.5; 16],
            mlp_input: vec![],
            residual_norm_in: 1.0,
            residual_norm_out: 1.0,
            logit_lens: None,
        };
        view.trace = Some(llm::Trace {
            position: 0,
            token: llm::TokenInfo {
                id: 1,
                piece: "a".into(),
            },
            embedding: vec![0.5; 8],
            kv_head_of_head: vec![0],
            layers: vec![layer; 4],
            top_k: vec![],
        });
        let remote = layout_of(&view).expect("the trace's shape");
        assert_ne!(remote, local);
    }
}
