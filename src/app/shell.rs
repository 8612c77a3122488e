//! Scene switching (keys 1/2/3, tabs), fullscreen (F11), the large-UI toggle, the top bar, and the
//! rectangle left for the 3D viewport once the panels are laid out.

use bevy::prelude::*;
use bevy::window::{MonitorSelection, PrimaryWindow, WindowMode};
use bevy_egui::input::EguiWantsInput;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::theme::UiSettings;
use super::{AppOptions, Scene};
use crate::math::Viewport;

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

    /// Remove a panel's rectangle from the free area (the panel sits on one of its edges).
    pub fn take(&mut self, panel: egui::Rect) {
        let free = &mut self.0;
        if (panel.min.x - free.min.x).abs() < 1.0 && panel.height() >= free.height() - 1.0 {
            free.min.x = free.min.x.max(panel.max.x);
        } else if (panel.max.x - free.max.x).abs() < 1.0 && panel.height() >= free.height() - 1.0 {
            free.max.x = free.max.x.min(panel.min.x);
        } else if (panel.min.y - free.min.y).abs() < 1.0 {
            free.min.y = free.min.y.max(panel.max.y);
        } else if (panel.max.y - free.max.y).abs() < 1.0 {
            free.max.y = free.max.y.min(panel.min.y);
        }
        free.max.x = free.max.x.max(free.min.x);
        free.max.y = free.max.y.max(free.min.y);
    }
}

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

pub(super) fn plugin(app: &mut App) {
    app.init_state::<Scene>()
        .init_resource::<UiSettings>()
        .init_resource::<SceneViewport>()
        .init_resource::<FreeArea>()
        .configure_sets(
            EguiPrimaryContextPass,
            (
                UiSet::Theme,
                UiSet::TopBar,
                UiSet::Panels,
                UiSet::Viewport,
                UiSet::Overlay,
            )
                .chain(),
        )
        .add_systems(Startup, initial_scene)
        .add_systems(Update, (scene_keys, ui_keys))
        .add_systems(EguiPrimaryContextPass, top_bar.in_set(UiSet::TopBar))
        .add_systems(
            EguiPrimaryContextPass,
            measure_viewport.in_set(UiSet::Viewport),
        );
}

fn initial_scene(options: Option<Res<AppOptions>>, mut next: ResMut<NextState<Scene>>) {
    if let Some(options) = options {
        next.set(options.args.scene.into());
    }
}

/// True when egui is typing into a field, so single-key shortcuts must stay quiet.
pub fn keyboard_free(wants: Option<Res<EguiWantsInput>>) -> bool {
    wants.is_none_or(|w| !w.wants_any_keyboard_input())
}

fn scene_keys(
    keys: Res<ButtonInput<KeyCode>>,
    wants: Option<Res<EguiWantsInput>>,
    mut next: ResMut<NextState<Scene>>,
) {
    if !keyboard_free(wants) {
        return;
    }
    if keys.just_pressed(KeyCode::Digit1) {
        next.set(Scene::Graphics);
    } else if keys.just_pressed(KeyCode::Digit2) {
        next.set(Scene::Llm);
    } else if keys.just_pressed(KeyCode::Digit3) {
        next.set(Scene::Bridge);
    }
}

fn ui_keys(
    keys: Res<ButtonInput<KeyCode>>,
    wants: Option<Res<EguiWantsInput>>,
    mut settings: ResMut<UiSettings>,
    mut windows: Query<&mut Window, With<PrimaryWindow>>,
) {
    if keys.just_pressed(KeyCode::F11) {
        for mut window in &mut windows {
            toggle_fullscreen(&mut window);
        }
    }
    let free = keyboard_free(wants);
    if free && keys.just_pressed(KeyCode::KeyU) {
        settings.large = !settings.large;
    }
    if free && keys.just_pressed(KeyCode::Tab) {
        settings.hide_panels = !settings.hide_panels;
    }
}

fn toggle_fullscreen(window: &mut Window) {
    window.mode = match window.mode {
        WindowMode::Windowed => WindowMode::BorderlessFullscreen(MonitorSelection::Current),
        _ => WindowMode::Windowed,
    };
}

fn top_bar(
    mut contexts: EguiContexts,
    state: Res<State<Scene>>,
    mut next: ResMut<NextState<Scene>>,
    mut settings: ResMut<UiSettings>,
    mut windows: Query<&mut Window, With<PrimaryWindow>>,
    adapter: Option<Res<bevy::render::renderer::RenderAdapterInfo>>,
    mut free: ResMut<FreeArea>,
) {
    let Ok(ctx) = contexts.ctx_mut() else {
        return;
    };
    free.0 = ctx.viewport_rect();
    let mut root = free.ui(ctx, "top_bar_root");
    let panel = egui::Panel::top("top_bar").show(&mut root, |ui| {
        ui.horizontal(|ui| {
            ui.heading("samemath");
            ui.separator();
            for scene in Scene::ALL {
                if ui
                    .selectable_label(*state.get() == scene, scene.title())
                    .clicked()
                {
                    next.set(scene);
                }
            }
            ui.separator();
            ui.checkbox(&mut settings.large, "Large UI (U)");
            let mut panels = !settings.hide_panels;
            if ui.checkbox(&mut panels, "Panels (Tab)").changed() {
                settings.hide_panels = !panels;
            }
            if ui.button("Fullscreen (F11)").clicked() {
                for mut window in &mut windows {
                    toggle_fullscreen(&mut window);
                }
            }
            if let Some(adapter) = &adapter {
                ui.separator();
                ui.label(format!("GPU: {}", crate::llm::gpu::adapter_name(adapter)));
            }
        });
    });
    free.take(panel.response.rect);
}

/// After the panels: the rectangle egui left free is the 3D viewport.
pub fn measure_viewport(
    mut contexts: EguiContexts,
    mut viewport: ResMut<SceneViewport>,
    free: Res<FreeArea>,
    windows: Query<&Window, With<PrimaryWindow>>,
) {
    let (Ok(ctx), Ok(window)) = (contexts.ctx_mut(), windows.single()) else {
        return;
    };
    let ppp = ctx.pixels_per_point();
    let rect = free.0;
    let (w, h) = (
        window.physical_width() as f32,
        window.physical_height() as f32,
    );
    let x0 = (rect.min.x * ppp).round().clamp(0.0, w);
    let y0 = (rect.min.y * ppp).round().clamp(0.0, h);
    let x1 = (rect.max.x * ppp).round().clamp(x0, w);
    let y1 = (rect.max.y * ppp).round().clamp(y0, h);
    let physical = Viewport {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    };
    let new = SceneViewport {
        physical,
        points_per_pixel: 1.0 / ppp,
    };
    if *viewport != new {
        *viewport = new;
    }
}
