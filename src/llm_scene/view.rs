//! What scene 2's middle shows: the 3D world from one of its camera presets, or the 2D panel
//! views (`--view`, V). Plain data that the state, the panels and the world all read, so none of
//! them needs another for it.

use bevy::prelude::*;

/// Where the camera can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Overview,
    Embedding,
    /// A layer's MLP block.
    Layer(usize),
    Head,
}

/// What scene 2's middle shows at start (`--view`): the world at a preset, or the panel views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartView {
    World(Preset),
    Panels,
}

/// `--view`: overview, embedding, head, layer:N (0-based) or panels.
pub fn parse_view(text: &str) -> Result<StartView, String> {
    let t = text.trim().to_ascii_lowercase();
    let preset = match t.as_str() {
        "overview" => Preset::Overview,
        "embedding" => Preset::Embedding,
        "head" => Preset::Head,
        "panels" => return Ok(StartView::Panels),
        _ => match t.strip_prefix("layer:").map(|n| n.parse::<usize>()) {
            Some(Ok(n)) if n < 4096 => Preset::Layer(n),
            _ => {
                return Err(format!(
                    "{text:?}: expected overview, embedding, head, layer:N or panels"
                ));
            }
        },
    };
    Ok(StartView::World(preset))
}

/// The world (true, the default) or the panel views in the middle of scene 2.
#[derive(Resource, Debug, Clone, Copy)]
pub struct WorldMode {
    pub world: bool,
}

impl Default for WorldMode {
    fn default() -> Self {
        Self { world: true }
    }
}
