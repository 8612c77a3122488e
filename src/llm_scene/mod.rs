//! Scene 2: what the LLM computes, drawn live. The engine (`crate::worker`) runs off the main
//! thread; this room keeps what it reported (`LlmView`), what the user set (`LlmControls`) and
//! what is selected (`LlmSelection`), and draws the views: token strip, embeddings and their PCA,
//! the 30 x 1536 activation grid (a GPU texture), attention per head, next-token bars and the
//! logit lens; and `world`, the stage: the same numbers as geometry drawn by scene 1's pipeline.
//!
//! `logic_plugin` needs no window (headless tests feed it events); `plugin` adds the panels.

pub mod activations;
mod bench;
mod engine;
mod keys;
pub mod panels;
mod probe;
mod state;
pub mod view;
#[cfg(target_arch = "wasm32")]
mod web;
pub mod world;

pub use engine::{LlmEngine, LlmPacer, RendererGpu, poll_engine, run_actions, steps_done};
pub use state::{
    Backend, Compute, EngineStatus, LlmAction, LlmControls, LlmSelection, LlmStart, LlmView,
    MAX_CHIPS, MAX_PROMPT_TOKENS, RemoteForm,
};

use bevy::prelude::*;

use crate::shell::Scene;
use crate::shell::probe::ProbeAppExt;
use engine::{apply_options, auto_steps, pace_frames, start_engine};
use keys::llm_keys;

pub fn logic_plugin(app: &mut App) {
    app.init_resource::<LlmStart>()
        .init_resource::<LlmPacer>()
        .add_systems(First, pace_frames.after(bevy::time::TimeSystems))
        .init_resource::<LlmControls>()
        .init_resource::<LlmView>()
        .init_resource::<LlmSelection>()
        .add_message::<LlmAction>()
        .add_probe(probe::LlmProbe)
        .add_systems(Startup, apply_options)
        .add_systems(
            Update,
            (
                llm_keys.run_if(in_state(Scene::Llm)),
                run_actions,
                poll_engine,
            )
                .chain(),
        );
}

pub fn plugin(app: &mut App) {
    app.add_plugins((activations::plugin, panels::plugin, world::plugin))
        .add_systems(Startup, start_engine)
        .add_systems(Update, auto_steps.before(run_actions))
        .add_systems(Last, bench::measure_llm);
    #[cfg(target_arch = "wasm32")]
    app.add_plugins(web::plugin);
}
