//! The Bevy shell: window, scenes as a `States` enum, egui theme, orbit camera, presenter keys,
//! and the headless helpers (`--screenshot`, `bench`).

pub mod bench;
pub mod camera;
pub mod screenshot;
pub mod shell;
pub mod theme;
#[cfg(target_arch = "wasm32")]
pub mod web;

use std::process::ExitCode;

use bevy::asset::AssetMetaCheck;
use bevy::prelude::*;
use bevy::window::{MonitorSelection, PresentMode, WindowMode};
use bevy_egui::EguiPlugin;

use crate::cli::{AppArgs, BenchArgs, SceneArg};

/// The scenes, switched by keys 1/2 and by the tabs.
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

impl From<SceneArg> for Scene {
    fn from(arg: SceneArg) -> Self {
        match arg {
            SceneArg::Graphics => Scene::Graphics,
            SceneArg::Llm => Scene::Llm,
            SceneArg::Bridge => Scene::Bridge,
        }
    }
}

/// What the command line asked for.
#[derive(Resource, Debug, Clone, Default)]
pub struct AppOptions {
    pub args: AppArgs,
    pub bench: Option<BenchArgs>,
}

/// Build and run the windowed app.
pub fn run(args: AppArgs, bench: Option<BenchArgs>) -> ExitCode {
    if let Err(message) = display_available() {
        eprintln!("samemath: {message}");
        return ExitCode::from(2);
    }
    let mut app = App::new();
    app.add_plugins(AppPlugin(AppOptions { args, bench }));
    match app.run() {
        AppExit::Success => ExitCode::SUCCESS,
        AppExit::Error(code) => ExitCode::from(code.get()),
    }
}

/// On Linux this build opens its window through X11 (XWayland on Wayland desktops); say so
/// instead of letting winit panic when there is no X display.
fn display_available() -> Result<(), String> {
    if cfg!(all(
        unix,
        not(target_os = "macos"),
        not(target_arch = "wasm32")
    )) && std::env::var_os("DISPLAY").is_none()
    {
        return Err(
            "no X display: DISPLAY is unset. Run it from a desktop session \
                    (XWayland on Wayland), or headless under `xvfb-run -a samemath ...`."
                .into(),
        );
    }
    Ok(())
}

pub struct AppPlugin(pub AppOptions);

impl Plugin for AppPlugin {
    fn build(&self, app: &mut App) {
        let options = self.0.clone();
        let (width, height) = options.args.window.unwrap_or((1600, 900));
        let present_mode = if options.bench.is_some() {
            PresentMode::AutoNoVsync
        } else {
            PresentMode::AutoVsync
        };
        let plugins = DefaultPlugins
            .set(WindowPlugin {
                primary_window: Some(Window {
                    title: "samemath: the same GPU math".into(),
                    resolution: (width, height).into(),
                    present_mode,
                    mode: if options.args.fullscreen {
                        WindowMode::BorderlessFullscreen(MonitorSelection::Current)
                    } else {
                        WindowMode::Windowed
                    },
                    // The browser build draws into the page's canvas, sized by the page.
                    canvas: cfg!(target_arch = "wasm32").then(|| "#samemath-canvas".into()),
                    fit_canvas_to_parent: cfg!(target_arch = "wasm32"),
                    ..default()
                }),
                ..default()
            })
            .set(AssetPlugin {
                meta_check: AssetMetaCheck::Never,
                ..default()
            });
        #[cfg(target_arch = "wasm32")]
        let plugins = plugins.set(web::render_plugin());
        app.add_plugins(plugins)
            .add_plugins(EguiPlugin::default())
            .insert_resource(ClearColor(theme::BACKGROUND))
            .insert_resource(theme::UiSettings {
                large: options.args.large_ui,
                hide_panels: options.args.hide_panels,
            })
            .insert_resource(options)
            .add_plugins((
                logic_plugin,
                theme::plugin,
                camera::plugin,
                crate::graphics::plugin,
                crate::llm_scene::plugin,
                screenshot::plugin,
                bench::plugin,
            ));
        #[cfg(target_arch = "wasm32")]
        app.add_plugins(web::plugin);
    }
}

/// Everything that needs no window or GPU: scene state, keys, scene-1 logic. Headless tests
/// add this next to `MinimalPlugins`.
pub fn logic_plugin(app: &mut App) {
    app.add_plugins((
        shell::plugin,
        crate::graphics::logic_plugin,
        crate::llm_scene::logic_plugin,
    ));
}
