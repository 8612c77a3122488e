//! Scene 2's keys: Space steps, Enter generates, Escape stops, Backspace resets; arrows move the
//! selected neuron, `[` `]` the attention layer.

use crate::shell::keyboard_free;
use bevy::prelude::*;

use super::state::*;

/// Space: one step; Enter: generate; Escape: stop; Backspace: reset; arrows move the selected
/// neuron (left/right: neuron, up/down: layer); `[` `]` the attention layer (when no field has
/// focus).
pub(super) fn llm_keys(
    keys: Res<ButtonInput<KeyCode>>,
    wants: Option<Res<crate::shell::KeyboardFocus>>,
    view: Res<LlmView>,
    mut selection: ResMut<LlmSelection>,
    mut actions: MessageWriter<LlmAction>,
) {
    if !keyboard_free(wants) {
        return;
    }
    let (layers, neurons) = crate::llm_scene::activations::grid_shape(&view).unwrap_or((30, 1536));
    let step = |key: KeyCode, d: i64, v: usize, n: usize| -> usize {
        if keys.just_pressed(key) {
            (v as i64 + d).rem_euclid(n.max(1) as i64) as usize
        } else {
            v
        }
    };
    let (mut layer, mut neuron) = selection.neuron.unwrap_or((0, 0));
    let arrows = [
        KeyCode::ArrowLeft,
        KeyCode::ArrowRight,
        KeyCode::ArrowUp,
        KeyCode::ArrowDown,
    ];
    if keys.any_just_pressed(arrows) {
        neuron = step(KeyCode::ArrowLeft, -1, neuron, neurons);
        neuron = step(KeyCode::ArrowRight, 1, neuron, neurons);
        layer = step(KeyCode::ArrowUp, -1, layer, layers);
        layer = step(KeyCode::ArrowDown, 1, layer, layers);
        selection.neuron = Some((layer, neuron));
    }
    let a = selection.attention_layer;
    let a = step(KeyCode::BracketLeft, -1, a, layers);
    selection.attention_layer = step(KeyCode::BracketRight, 1, a, layers);
    for (key, action) in [
        (KeyCode::Space, LlmAction::Step),
        (KeyCode::Enter, LlmAction::Generate),
        (KeyCode::Escape, LlmAction::Stop),
        (KeyCode::Backspace, LlmAction::Reset),
    ] {
        if keys.just_pressed(key) {
            actions.write(action);
        }
    }
}
