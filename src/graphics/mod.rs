//! Scene 1: a mesh moved by the user's own 4x4 model matrix and lit with dot products.
//!
//! `logic_plugin` holds what needs no GPU (settings, animation, meshes, the derived matrices);
//! `plugin` adds the material, the panels, the inspectors and mouse input.

pub mod highlight;
pub mod inspect;
pub mod material;
pub mod panel;
mod scene;

pub use highlight::{Highlight, Term};
pub use scene::{
    GraphicsSettings, GraphicsStart, LightProbe, MeshChoice, MeshEntry, MeshLibrary, SceneMatrices,
    SurfacePick, compute_matrices, graphics_keys, parse_state,
};

use bevy::prelude::*;

use crate::shell::probe::{BenchStarted, ProbeAppExt};
use crate::shell::{Scene, UiSet};
use scene::{GraphicsProbe, animate, animate_on_bench, load_meshes, load_state_file};

/// The scene-1 logic, without window or GPU.
pub fn logic_plugin(app: &mut App) {
    app.init_resource::<GraphicsStart>()
        .init_resource::<GraphicsSettings>()
        .init_resource::<SceneMatrices>()
        .init_resource::<Highlight>()
        .add_message::<BenchStarted>()
        .add_probe(GraphicsProbe)
        .add_systems(PreStartup, (load_meshes, load_state_file))
        .add_systems(Update, animate_on_bench)
        .add_systems(
            Update,
            (graphics_keys, animate)
                .chain()
                .run_if(in_state(Scene::Graphics)),
        );
}

/// Scene 1 with its material, panels, inspectors and mouse input.
pub fn plugin(app: &mut App) {
    app.add_plugins((material::plugin, panel::plugin, inspect::plugin))
        .add_systems(
            bevy_egui::EguiPrimaryContextPass,
            compute_matrices
                .in_set(UiSet::Viewport)
                .after(crate::shell::measure_viewport),
        );
}
