//! `--screenshot PATH`: render a few frames, save the window as a PNG plus PATH.json with the
//! matrices and viewport that produced it, then exit. Lets tests and CI look without a person.

use std::path::{Path, PathBuf};

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};

use super::AppOptions;
use crate::graphics::{GraphicsSettings, SceneMatrices};
use crate::llm_scene::activations::ActivationTexture;
use crate::llm_scene::panels::LlmDrawn;
use crate::llm_scene::{Backend, LlmView, steps_done};

/// Frames rendered before the capture, so pipelines are compiled and the layout has settled
/// (counted from when `--steps` have landed, if given).
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

/// What scene 2 showed, for the sidecar: where the grid and chips were drawn and the values.
fn llm_json(
    view: &LlmView,
    drawn: Option<&LlmDrawn>,
    texture: Option<&ActivationTexture>,
) -> serde_json::Value {
    let activations: Vec<&Vec<f32>> = view
        .trace
        .as_ref()
        .map(|t| t.layers.iter().map(|l| &l.mlp_activation).collect())
        .unwrap_or_default();
    serde_json::json!({
        "status": format!("{:?}", view.status),
        "steps": view.steps,
        "prompt_tokens": view.prompt_tokens.len(),
        "generated_tokens": view.generated.len(),
        "drawn": drawn,
        "activation_scale": texture.map(|t| t.scale),
        "layout": texture.map(|t| {
            let l = t.layout;
            serde_json::json!({"layers": l.layers, "neurons": l.neurons, "tile_w": l.tile_w,
                "tile_h": l.tile_h, "tiles_x": l.tiles_x, "gap": l.gap})
        }),
        "token": view.trace.as_ref().map(|t| t.token.clone()),
        "generated_ids": view.generated.iter().map(|t| t.id).collect::<Vec<_>>(),
        "backend": match &view.backend {
            Backend::Local => serde_json::json!({"kind": "cpu"}),
            Backend::Gpu { adapter, shared_with_renderer, same_device } => serde_json::json!({
                "kind": "gpu",
                "adapter": adapter,
                "shared_with_renderer": shared_with_renderer,
                "same_device": same_device,
            }),
            Backend::Remote { url, .. } => serde_json::json!({"kind": "remote", "url": url}),
        },
        "activations": activations,
    })
}

#[allow(clippy::too_many_arguments)]
fn drive_screenshot(
    options: Res<AppOptions>,
    settings: Option<Res<GraphicsSettings>>,
    matrices: Option<Res<SceneMatrices>>,
    view: Option<Res<LlmView>>,
    drawn: Option<Res<LlmDrawn>>,
    texture: Option<Res<ActivationTexture>>,
    bridge: Option<Res<crate::llm_scene::bridge::BridgeState>>,
    adapter: Option<Res<bevy::render::renderer::RenderAdapterInfo>>,
    mut total: Local<u32>,
    mut frames: Local<u32>,
    mut commands: Commands,
    mut exit: MessageWriter<AppExit>,
) {
    let Some(path) = options.args.screenshot.clone() else {
        return;
    };
    *total += 1;
    if view.as_ref().is_none_or(|v| steps_done(&options, v)) {
        *frames += 1;
    }
    if *frames == WARMUP_FRAMES {
        let mut sidecar = match (settings, matrices) {
            (Some(s), Some(m)) => m.to_json(&s),
            _ => serde_json::json!({}),
        };
        if let Some(v) = &view {
            sidecar["llm"] = llm_json(v, drawn.as_deref(), texture.as_deref());
        }
        if let Some(b) = &bridge {
            sidecar["bridge"] = serde_json::to_value(&b.0).unwrap_or_default();
        }
        sidecar["adapter"] = adapter
            .map(|a| serde_json::Value::from(crate::llm::gpu::adapter_name(&a)))
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
    } else if *total == GIVE_UP_FRAMES {
        error!("the screenshot never arrived after {GIVE_UP_FRAMES} frames");
        exit.write(AppExit::error());
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
