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
    let gpu = adapter.map(|a| llm::gpu::adapter_name(&a));
    let mut panels = !settings.hide_panels;
    let mut clicked = BarClicks::default();
    let panel = egui::Panel::top("top_bar").show(&mut root, |ui| {
        clicked = bar(
            ui,
            *state.get(),
            &mut settings.large,
            &mut panels,
            gpu.as_deref(),
        );
    });
    if panels == settings.hide_panels {
        settings.hide_panels = !panels;
    }
    if let Some(scene) = clicked.scene {
        next.set(scene);
    }
    if clicked.fullscreen {
        for mut window in &mut windows {
            toggle_fullscreen(&mut window);
        }
    }
    free.take(panel.response.rect);
}

/// What the top bar's row was clicked for.
#[derive(Debug, Default)]
struct BarClicks {
    scene: Option<Scene>,
    fullscreen: bool,
}

/// The least room (points) the GPU's name is shown in, shortened; with less it is left to the
/// fullscreen button's hover text.
const GPU_NAME_WIDTH: f32 = 120.0;
/// The narrowest window (points) that shows the title: at 1280x720 with the large UI (800
/// points) the row's controls alone take about 700, and the stage is worth more than a title
/// the window's own bar shows.
const TITLE_WIDTH: f32 = 900.0;

/// The top bar's row: title, scene tabs, large UI, panels, fullscreen and the GPU's name. It
/// stays one line at 1280x720 with the large UI (no title there, the GPU's name only in the
/// room left, shortened, whole on hover) and wraps rather than run off a narrower window.
fn bar(
    ui: &mut egui::Ui,
    current: Scene,
    large: &mut bool,
    panels: &mut bool,
    gpu: Option<&str>,
) -> BarClicks {
    let mut clicked = BarClicks::default();
    let titled = ui.available_width() >= TITLE_WIDTH;
    ui.horizontal_wrapped(|ui| {
        if titled {
            ui.heading("samemath");
            ui.separator();
        }
        for scene in Scene::ALL {
            if ui
                .selectable_label(current == scene, scene.title())
                .clicked()
            {
                clicked.scene = Some(scene);
            }
        }
        ui.separator();
        ui.checkbox(large, "Large UI (U)");
        ui.checkbox(panels, "Panels (Tab)");
        let mut fullscreen = ui.button("Fullscreen (F11)");
        if let Some(gpu) = gpu {
            let name = format!("GPU: {gpu}");
            if ui.available_size_before_wrap().x >= GPU_NAME_WIDTH {
                ui.separator();
                ui.add(egui::Label::new(name).truncate());
            } else {
                fullscreen = fullscreen.on_hover_text(name);
            }
        }
        clicked.fullscreen = fullscreen.clicked();
    });
    clicked
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The row's rectangle in a window of `width` x 450 points (1280x720 at the large UI's 1.6
    /// is 800 x 450), with the theme's text sizes.
    fn row_in(width: f32, gpu: &str) -> egui::Rect {
        let ctx = egui::Context::default();
        super::super::theme::style(&ctx);
        let input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(width, 450.0),
            )),
            ..Default::default()
        };
        let mut row = egui::Rect::NOTHING;
        let mut out = ctx.run_ui(input, |ui| {
            egui::Panel::top("top_bar").show(ui, |ui| {
                let (mut large, mut panels) = (true, true);
                bar(ui, Scene::Llm, &mut large, &mut panels, Some(gpu));
                row = ui.min_rect();
            });
        });
        // No painter here: the font atlas's upload is dropped on purpose.
        out.textures_delta.clear();
        row
    }

    #[test]
    fn the_top_bar_stays_inside_a_projectors_window() {
        let long = "NVIDIA GeForce RTX 4090 Laptop GPU (Vulkan)";
        for width in [800.0, 600.0, 1200.0] {
            let row = row_in(width, long);
            assert!(row.max.x <= width + 0.5, "{width}: {row:?}");
        }
        // One line high on the projector (the stage keeps its height) and where there is room.
        for width in [800.0, 1200.0] {
            let height = row_in(width, long).height();
            assert!(height < 40.0, "{width}: {height}");
        }
    }
}
