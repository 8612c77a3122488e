//! A dark theme that reads well on a projector, and the "large UI" toggle.

use bevy::prelude::*;
use bevy_egui::{EguiContexts, egui};

/// The 3D viewport's background (also the clear colour).
pub const BACKGROUND: Color = Color::srgb(0.055, 0.06, 0.075);

/// Text colours for warnings, errors and highlights (they survive a projector's washed-out blacks).
pub const WARNING: egui::Color32 = egui::Color32::from_rgb(255, 170, 60);
pub const ERROR: egui::Color32 = egui::Color32::from_rgb(255, 110, 110);
pub const ACCENT: egui::Color32 = egui::Color32::from_rgb(120, 200, 255);

/// Presenter settings shared by every scene.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Default)]
pub struct UiSettings {
    pub large: bool,
    /// Hide the side panels (Tab), so the scene fills the screen on stage.
    pub hide_panels: bool,
}

impl UiSettings {
    pub fn zoom(&self) -> f32 {
        if self.large { 1.6 } else { 1.0 }
    }
}

pub(super) fn apply_theme(
    mut contexts: EguiContexts,
    settings: Res<UiSettings>,
    mut applied: Local<Option<UiSettings>>,
) {
    let Ok(ctx) = contexts.ctx_mut() else {
        return;
    };
    if *applied == Some(*settings) {
        return;
    }
    style(ctx);
    ctx.set_zoom_factor(settings.zoom());
    *applied = Some(*settings);
}

/// The theme's colours, text sizes and spacing (the zoom aside) on `ctx`.
pub(super) fn style(ctx: &egui::Context) {
    let mut visuals = egui::Visuals::dark();
    visuals.panel_fill = egui::Color32::from_rgb(22, 24, 30);
    visuals.window_fill = egui::Color32::from_rgb(22, 24, 30);
    visuals.extreme_bg_color = egui::Color32::from_rgb(12, 13, 17);
    visuals.selection.bg_fill = egui::Color32::from_rgb(40, 90, 160);
    ctx.set_theme(egui::ThemePreference::Dark);
    ctx.set_visuals_of(egui::Theme::Dark, visuals);
    ctx.all_styles_mut(|style| {
        use egui::{FontFamily, FontId, TextStyle};
        style.text_styles = [
            (
                TextStyle::Heading,
                FontId::new(20.0, FontFamily::Proportional),
            ),
            (TextStyle::Body, FontId::new(15.0, FontFamily::Proportional)),
            (
                TextStyle::Monospace,
                FontId::new(14.0, FontFamily::Monospace),
            ),
            (
                TextStyle::Button,
                FontId::new(15.0, FontFamily::Proportional),
            ),
            (
                TextStyle::Small,
                FontId::new(12.0, FontFamily::Proportional),
            ),
        ]
        .into();
        style.spacing.item_spacing = egui::vec2(8.0, 5.0);
        // egui's debug builds mark rects off the pixel grid in orange ("Unaligned"): a
        // debugging aid for egui itself, and at a projector's zoom most edges are off the grid.
        #[cfg(debug_assertions)]
        {
            style.debug.show_unaligned = false;
        }
    });
}
