//! `--screenshot PATH`: render a few frames, save the window as a PNG plus PATH.json with the
//! matrices and viewport that produced it, then exit. Lets tests and CI look without a person.

use std::path::{Path, PathBuf};

use bevy::prelude::*;
use bevy::render::renderer::RenderAdapterInfo;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};

use super::probe::Probes;
use super::state::ShellOptions;

/// Frames rendered before the capture, so pipelines are compiled and the layout has settled
/// (counted from when every scene has settled, e.g. `--steps` have landed).
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

/// Counts frames (all, and since every scene settled) until the capture.
#[derive(Default)]
struct Frames {
    total: u32,
    settled: u32,
}

fn drive_screenshot(world: &mut World, mut frames: Local<Frames>) {
    let Some(path) = world
        .get_resource::<ShellOptions>()
        .and_then(|o| o.screenshot.clone())
    else {
        return;
    };
    frames.total += 1;
    let settled = world
        .get_resource::<Probes>()
        .is_none_or(|p| p.settled(world));
    if settled {
        frames.settled += 1;
    }
    if frames.settled == WARMUP_FRAMES {
        let mut sidecar = world
            .get_resource::<Probes>()
            .map_or_else(|| serde_json::json!({}), |p| p.sidecar(world));
        sidecar["adapter"] = world
            .get_resource::<RenderAdapterInfo>()
            .map(|a| serde_json::Value::from(llm::gpu::adapter_name(a)))
            .unwrap_or_default();
        sidecar["gpu_time"] = world
            .get_resource::<super::gpu_time::GpuFrameTimes>()
            .map(|t| t.json())
            .unwrap_or_default();
        world.commands().spawn(Screenshot::primary_window()).observe(
            move |captured: On<ScreenshotCaptured>, mut exit: MessageWriter<AppExit>| {
                match save(&path, &captured.image, &sidecar) {
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
    } else if frames.total == GIVE_UP_FRAMES {
        error!("the screenshot never arrived after {GIVE_UP_FRAMES} frames");
        world.write_message(AppExit::error());
    }
}

fn save(path: &Path, image: &Image, sidecar: &serde_json::Value) -> Result<(), String> {
    let png = encode_png(image)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))?;
    let json = serde_json::to_string_pretty(sidecar).map_err(|e| e.to_string())?;
    let sidecar_path = sidecar_path(path);
    std::fs::write(&sidecar_path, json).map_err(|e| format!("{}: {e}", sidecar_path.display()))
}

/// A captured frame as PNG bytes (RGB).
pub fn encode_png(image: &Image) -> Result<Vec<u8>, String> {
    let rgb = image
        .clone()
        .try_into_dynamic()
        .map_err(|e| format!("unreadable capture: {e}"))?
        .to_rgb8();
    let mut png = std::io::Cursor::new(Vec::new());
    rgb.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| format!("encoding the capture: {e}"))?;
    Ok(png.into_inner())
}
