//! The shell every scene lives in: the scenes as a `States` enum, switching (keys 1/2/3, tabs),
//! fullscreen (F11), the large-UI toggle, the top bar, the rectangle left for the 3D viewport
//! once the panels are laid out, the orbit camera and theme, and the headless helpers
//! (`--screenshot`, `bench`) that ask the scenes what they need through `probe::SceneProbe`.
//! The shell knows no scene's insides.

pub mod bench;
pub mod camera;
mod focus;
mod frame;
pub mod gpu_time;
mod keys;
pub mod probe;
pub mod screenshot;
mod state;
pub mod theme;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use focus::{KeyboardFocus, keyboard_free};
pub use frame::measure_viewport;
pub use state::{
    FreeArea, Narration, Scene, SceneViewport, ShellOptions, UiSet, cursor_physical,
    side_panel_size,
};

use bevy::prelude::*;
use bevy_egui::EguiPrimaryContextPass;

use theme::UiSettings;

/// The shell with a window: theme, orbit camera, `--screenshot`, `bench` (and the page's
/// markers in the browser build).
pub fn window_plugin(app: &mut App) {
    app.add_plugins((
        camera::plugin,
        screenshot::plugin,
        bench::plugin,
        gpu_time::GpuTimePlugin,
    ))
    .add_systems(
        EguiPrimaryContextPass,
        (
            theme::apply_theme.in_set(UiSet::Theme),
            focus::settle_focus.before(UiSet::Theme),
            focus::record_focus.after(UiSet::Overlay),
        ),
    )
    .add_systems(
        PreUpdate,
        focus::keep_tab_from_egui
            .after(bevy_egui::EguiPreUpdateSet::ProcessInput)
            .before(bevy_egui::EguiPreUpdateSet::BeginPass),
    );
    #[cfg(target_arch = "wasm32")]
    app.add_plugins(web::plugin);
}

/// The shell's logic (no window needed): scene state, keys, the UI's order.
pub fn plugin(app: &mut App) {
    app.add_plugins(gpu_time::logic_plugin)
        .init_resource::<ShellOptions>()
        .init_state::<Scene>()
        .init_resource::<UiSettings>()
        .init_resource::<SceneViewport>()
        .init_resource::<FreeArea>()
        .init_resource::<state::Narration>()
        .init_resource::<KeyboardFocus>()
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
        .add_systems(Startup, keys::initial_scene)
        .add_systems(Update, (keys::scene_keys, keys::ui_keys))
        .add_systems(EguiPrimaryContextPass, frame::top_bar.in_set(UiSet::TopBar))
        .add_systems(
            EguiPrimaryContextPass,
            measure_viewport.in_set(UiSet::Viewport),
        );
}
