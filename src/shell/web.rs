//! The browser build's renderer choice and the shell's markers for the page and its tests:
//! `ready` after the first frames, `scene` on each switch (scene 2 logs `done` and `error`
//! itself). Also hands the page a frame as the renderer drew it when asked
//! (`samemathPage.capture()`), for tests whose browser cannot composite a WebGPU canvas into its
//! own screenshots.

use bevy::prelude::*;
use bevy::render::RenderPlugin;
use bevy::render::renderer::RenderAdapterInfo;
use bevy::render::settings::{Backends, WgpuSettings};
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};

use super::state::Scene;
use crate::web;

/// WebGPU where the page found it, else WebGL2.
pub fn render_plugin() -> RenderPlugin {
    let backends = if web::webgpu() {
        Backends::BROWSER_WEBGPU
    } else {
        Backends::GL
    };
    RenderPlugin {
        render_creation: WgpuSettings {
            backends: Some(backends),
            ..default()
        }
        .into(),
        ..default()
    }
}

pub fn plugin(app: &mut App) {
    app.add_systems(Update, (ready, scene_changed, capture));
}

/// The page asked for a frame: the window's next one, read back from the GPU, as a PNG.
fn capture(mut commands: Commands) {
    if !web::capture_wanted() {
        return;
    }
    commands
        .spawn(Screenshot::primary_window())
        .observe(|captured: On<ScreenshotCaptured>| {
            match super::screenshot::encode_png(&captured.image) {
                Ok(png) => web::captured(&png),
                Err(e) => web::signal("error", &format!("frame capture: {e}")),
            }
        });
}

/// Once a few frames are out: the adapter and graphics API the page runs on.
fn ready(adapter: Option<Res<RenderAdapterInfo>>, mut frames: Local<u32>) {
    let Some(adapter) = adapter else {
        return;
    };
    *frames += 1;
    if *frames == 3 {
        let detail = serde_json::json!({
            "adapter": adapter.name,
            "backend": format!("{:?}", adapter.backend),
            "graphics": if web::webgpu() { "webgpu" } else { "webgl2" },
        });
        web::signal("ready", &detail.to_string());
    }
}

fn scene_changed(scene: Res<State<Scene>>) {
    if scene.is_changed() {
        web::signal("scene", &format!("{:?}", scene.get()));
    }
}
