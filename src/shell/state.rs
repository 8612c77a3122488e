//! The shell's state every room may read: the scenes as a `States` enum, what the shell was asked
//! for at start, the order of the UI work in egui's pass, the area the panels leave free and the
//! 3D viewport inside it, and whether keys are free for shortcuts.

use std::path::PathBuf;

use bevy::prelude::*;
use bevy_egui::egui;
use math::Viewport;

/// The scenes, switched by keys 1/2/3 and by the tabs.
#[derive(States, Default, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scene {
    /// Scene 1: a mesh moved by 4x4 matrices and lit with dot products.
    #[default]
    Graphics,
    /// Scene 2: the LLM, drawn as it runs.
    Llm,
    /// Scene 3: the bridge, both scenes' multiply-adds side by side.
    Bridge,
}

impl Scene {
    pub const ALL: [Scene; 3] = [Scene::Graphics, Scene::Llm, Scene::Bridge];

    pub fn title(self) -> &'static str {
        match self {
            Scene::Graphics => "1  Matrices & light",
            Scene::Llm => "2  LLM",
            Scene::Bridge => "3  Not so different",
        }
    }
}

/// What the shell was asked for at start (from the command line, or a test).
#[derive(Resource, Debug, Clone, Default)]
pub struct ShellOptions {
    /// The scene shown first.
    pub scene: Scene,
    /// `--screenshot PATH`: render, save PATH (and PATH.json), exit.
    pub screenshot: Option<PathBuf>,
    /// `bench --frames N`: measure N frames and exit.
    pub bench_frames: Option<u32>,
}

/// The order of the UI work inside egui's pass each frame.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UiSet {
    Theme,
    TopBar,
    Panels,
    Viewport,
    Overlay,
}

/// The window area (egui points) still free after the panels laid out so far this frame.
/// Each panel system shows its panel in a `Ui` over this rectangle and then shrinks it.
#[derive(Resource, Debug, Clone, Copy, PartialEq)]
pub struct FreeArea(pub egui::Rect);

impl Default for FreeArea {
    fn default() -> Self {
        Self(egui::Rect::NOTHING)
    }
}

impl FreeArea {
    /// A root `Ui` covering the free area, to show a panel in.
    pub fn ui(&self, ctx: &egui::Context, id: &str) -> egui::Ui {
        egui::Ui::new(
            ctx.clone(),
            egui::Id::new(id),
            egui::UiBuilder::new()
                .layer_id(egui::LayerId::background())
                .max_rect(self.0),
        )
    }

    /// Remove a panel's rectangle from the free area (the panel sits on one of its edges; a
    /// side panel whose content is wider than the window reaches past its edge and is still a
    /// side panel, not a top one that would take the whole height).
    pub fn take(&mut self, panel: egui::Rect) {
        let free = &mut self.0;
        let full_height = panel.height() >= free.height() - 1.0;
        // A full-height panel sits on the side it is nearer to (one as wide as the free area
        // takes it all, from the left).
        let left = panel.min.x - free.min.x <= free.max.x - panel.max.x;
        if full_height && left {
            free.min.x = free.min.x.max(panel.max.x);
        } else if full_height {
            free.max.x = free.max.x.min(panel.min.x);
        } else if panel.min.y <= free.min.y + 1.0 {
            free.min.y = free.min.y.max(panel.max.y);
        } else if panel.max.y >= free.max.y - 1.0 {
            free.max.y = free.max.y.min(panel.min.y);
        }
        free.max.x = free.max.x.max(free.min.x);
        free.max.y = free.max.y.max(free.min.y);
    }
}

/// A narration is on (talk mode): its captions tell the story, so a scene leaves out its own
/// explanatory legend.
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Narration(pub bool);

/// The part of the window not covered by panels: where the 3D scene is drawn.
#[derive(Resource, Debug, Clone, Copy, PartialEq)]
pub struct SceneViewport {
    /// In physical pixels, origin top-left.
    pub physical: Viewport,
    /// egui points per physical pixel, to draw overlays at physical positions.
    pub points_per_pixel: f32,
}

impl Default for SceneViewport {
    fn default() -> Self {
        Self {
            physical: Viewport {
                x: 0.0,
                y: 0.0,
                width: 1.0,
                height: 1.0,
            },
            points_per_pixel: 1.0,
        }
    }
}

/// A side panel's default width and range (egui points): at most `share` of the window, so the
/// 3D view keeps the middle of the window at every size and UI scale (the panels scroll).
pub fn side_panel_size(
    ctx: &egui::Context,
    share: f32,
    default: f32,
    min: f32,
) -> (f32, std::ops::RangeInclusive<f32>) {
    // Whole points, so the panel's edge stays on the grid at zoom 1.
    let max = (ctx.content_rect().width() * share).floor().max(1.0);
    let min = min.min(max);
    (default.clamp(min, max), min..=max)
}

/// The mouse in physical pixels, origin top-left (what `SceneViewport` is measured in).
pub fn cursor_physical(window: &Window) -> Option<Vec2> {
    window
        .cursor_position()
        .map(|p| Vec2::new(p.x, p.y) * window.scale_factor())
}
