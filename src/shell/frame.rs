//! The frame around the scenes: the top bar (scene tabs, large UI, panels, fullscreen, the GPU's
//! name) and, after the panels, the rectangle egui left free: the 3D viewport.

use bevy::prelude::*;
use bevy::render::renderer::RenderAdapterInfo;
use bevy::window::PrimaryWindow;
use bevy_egui::{EguiContexts, egui};
use math::Viewport;

use super::keys::toggle_fullscreen;
use super::state::{FreeArea, Scene, SceneViewport};
use super::theme::UiSettings;

pub(super) fn top_bar(
    mut contexts: EguiContexts,
    state: Res<State<Scene>>,
    mut next: ResMut<NextState<Scene>>,
    mut settings: ResMut<UiSettings>,
    mut windows: Query<&mut Window, With<PrimaryWindow>>,
    adapter: Option<Res<RenderAdapterInfo>>,
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
                ui.label(format!("GPU: {}", llm::gpu::adapter_name(adapter)));
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
