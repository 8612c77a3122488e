//! What scene 2 answers the shell (`shell::probe`): whether `--steps N` have landed, what it
//! drew for the screenshot's sidecar (where the grid and chips were, the trace's values), and
//! that it runs `bench` itself.

use bevy::prelude::*;
use serde_json::json;

use super::activations::ActivationTexture;
use super::engine::steps_done;
use super::panels::LlmDrawn;
use super::state::{Backend, LlmStart, LlmView};
use crate::shell::probe::SceneProbe;
use crate::shell::{Scene, ShellOptions};

pub(super) struct LlmProbe;

impl SceneProbe for LlmProbe {
    fn key(&self) -> Option<&'static str> {
        Some("llm")
    }

    fn settled(&self, world: &World) -> bool {
        match (
            world.get_resource::<LlmStart>(),
            world.get_resource::<LlmView>(),
        ) {
            // A Step's forward pass plays through the world's layers first.
            (Some(start), Some(view)) => {
                steps_done(start, view)
                    && world
                        .get_resource::<super::world::WorldState>()
                        .is_none_or(|w| w.pulse_started.is_none())
            }
            _ => true,
        }
    }

    fn sidecar(&self, world: &World) -> serde_json::Value {
        match world.get_resource::<LlmView>() {
            Some(view) => {
                let mut j = llm_json(
                    view,
                    world.get_resource::<LlmDrawn>(),
                    world.get_resource::<ActivationTexture>(),
                );
                j["world"] = super::world::sidecar(world);
                j
            }
            None => json!(null),
        }
    }

    fn drives_bench(&self, world: &World) -> bool {
        world
            .get_resource::<ShellOptions>()
            .is_some_and(|o| o.bench_frames.is_some() && o.scene == Scene::Llm)
    }
}

/// What scene 2 showed, for the sidecar: where the grid and chips were drawn and the values.
pub(super) fn llm_json(
    view: &LlmView,
    drawn: Option<&LlmDrawn>,
    texture: Option<&ActivationTexture>,
) -> serde_json::Value {
    let activations: Vec<&Vec<f32>> = view
        .trace
        .as_ref()
        .map(|t| t.layers.iter().map(|l| &l.mlp_activation).collect())
        .unwrap_or_default();
    json!({
        "status": format!("{:?}", view.status),
        "steps": view.steps,
        "prompt_tokens": view.prompt_tokens.len(),
        "generated_tokens": view.generated.len(),
        "drawn": drawn,
        "activation_scale": texture.map(|t| t.scale),
        "layout": texture.map(|t| {
            let l = t.layout;
            json!({"layers": l.layers, "neurons": l.neurons, "tile_w": l.tile_w,
                "tile_h": l.tile_h, "tiles_x": l.tiles_x, "gap": l.gap})
        }),
        "token": view.trace.as_ref().map(|t| t.token.clone()),
        "generated_ids": view.generated.iter().map(|t| t.id).collect::<Vec<_>>(),
        "backend": match &view.backend {
            Backend::Local => json!({"kind": "cpu"}),
            Backend::Gpu { adapter, shared_with_renderer, same_device, .. } => json!({
                "kind": "gpu",
                "adapter": adapter,
                "shared_with_renderer": shared_with_renderer,
                "same_device": same_device,
            }),
            Backend::Remote { url, .. } => json!({"kind": "remote", "url": url}),
        },
        "activations": activations,
    })
}
