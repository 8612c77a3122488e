//! `--screenshot PATH`: render a few frames, save the window as a PNG plus PATH.json with the
//! matrices and viewport that produced it, then exit. Lets tests and CI look without a person.

use std::path::{Path, PathBuf};

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};

use super::AppOptions;
use crate::graphics::{GraphicsSettings, SceneMatrices};

/// Frames rendered before the capture, so pipelines are compiled and the layout has settled.
const WARMUP_FRAMES: u32 = 30;
/// Give up (and exit with an error) if the capture has not landed by then.
const GIVE_UP_FRAMES: u32 = 3000;

pub(super) fn plugin(app: &mut App) {
    app.add_systems(Last, drive_screenshot);
}

/// Where the sidecar JSON goes: `shot.png` -> `shot.png.json`.
pub fn sidecar_path(png: &Path) -> PathBuf {
    let mut name = png.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

fn drive_screenshot(
    options: Res<AppOptions>,
    settings: Option<Res<GraphicsSettings>>,
    matrices: Option<Res<SceneMatrices>>,
    adapter: Option<Res<bevy::render::renderer::RenderAdapterInfo>>,
    mut frames: Local<u32>,
    mut commands: Commands,
    mut exit: MessageWriter<AppExit>,
) {
    let Some(path) = options.args.screenshot.clone() else {
        return;
    };
    *frames += 1;
    if *frames == WARMUP_FRAMES {
        let mut sidecar = match (settings, matrices) {
            (Some(s), Some(m)) => m.to_json(&s),
            _ => serde_json::json!({}),
        };
        sidecar["adapter"] = adapter
            .map(|a| serde_json::Value::from(format!("{} ({:?})", a.name, a.backend)))
            .unwrap_or_default();
        commands.spawn(Screenshot::primary_window()).observe(
            move |captured: On<ScreenshotCaptured>, mut exit: MessageWriter<AppExit>| {
                let result = save(&path, &captured.image, &sidecar);
                match result {
                    Ok(()) => {
                        info!("screenshot saved to {}", path.display());
                        exit.write(AppExit::Success);
                    }
                    Err(e) => {
                        error!("screenshot not saved: {e}");
                        exit.write(AppExit::error());
                    }
                }
            },
        );
    } else if *frames == GIVE_UP_FRAMES {
        error!("the screenshot never arrived after {GIVE_UP_FRAMES} frames");
        exit.write(AppExit::error());
    }
}

fn save(path: &Path, image: &Image, sidecar: &serde_json::Value) -> Result<(), String> {
    let rgb = image
        .clone()
        .try_into_dynamic()
        .map_err(|e| format!("unreadable capture: {e}"))?
        .to_rgb8();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    rgb.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let json = serde_json::to_string_pretty(sidecar).map_err(|e| e.to_string())?;
    let sidecar_path = sidecar_path(path);
    std::fs::write(&sidecar_path, json).map_err(|e| format!("{}: {e}", sidecar_path.display()))
}
