//! Scene 2's panels: prompt and controls (left); next-token bars, logit lens and the selected
//! neuron's dot products (right); token strip, activation grid, attention and embeddings in the
//! middle. Every number drawn comes from the engine's trace; where there is none yet, or the
//! backend cannot give it, the view says so.

mod controls;
mod embedding;
mod gpu_bar;
mod grid;
mod neuron;
mod next_token;
mod shared;
mod views;

use shared::LlmCache;
pub use shared::{LlmDrawn, counted, tokens_per_sec_text, visible_piece};

use bevy::prelude::*;
use bevy_egui::EguiPrimaryContextPass;

use crate::shell::Scene;
use crate::shell::UiSet;
use crate::shell::theme::UiSettings;

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<LlmDrawn>()
        .init_resource::<LlmCache>()
        .add_systems(
            EguiPrimaryContextPass,
            (
                (controls::controls_panel, next_token::outputs_panel)
                    .chain()
                    .run_if(|ui: Res<UiSettings>| !ui.hide_panels),
                views::central_views
                    .run_if(|mode: Res<crate::llm_scene::view::WorldMode>| !mode.world),
            )
                .chain()
                .in_set(UiSet::Panels)
                .run_if(in_state(Scene::Llm)),
        );
}
