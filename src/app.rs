//! The app, as a table of contents: the window and Bevy's plugins, then the rooms (the shell,
//! scene 1, scene 2, the bridge, the booth loop). The command line's answers become each room's
//! own start resource here, so no room reads the command line.

use std::process::ExitCode;

use bevy::asset::AssetMetaCheck;
use bevy::prelude::*;
use bevy::window::{MonitorSelection, PresentMode, WindowMode};
use bevy_egui::EguiPlugin;

use crate::cli::{AppArgs, BackendArg, BenchArgs, SceneArg};
use crate::demo::DemoLoop;
use crate::graphics::GraphicsStart;
use crate::llm_scene::{Compute, LlmStart};
use crate::shell::theme::{self, UiSettings};
use crate::shell::{Scene, ShellOptions};

/// Build and run the windowed app.
pub fn run(args: AppArgs, bench: Option<BenchArgs>) -> ExitCode {
    if let Err(message) = display_available() {
        eprintln!("samemath: {message}");
        return ExitCode::from(2);
    }
    let mut app = App::new();
    app.add_plugins(AppPlugin { args, bench });
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

pub struct AppPlugin {
    pub args: AppArgs,
    pub bench: Option<BenchArgs>,
}

impl Plugin for AppPlugin {
    fn build(&self, app: &mut App) {
        let args = &self.args;
        let (width, height) = args.window.unwrap_or((1600, 900));
        let present_mode = if self.bench.is_some() {
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
                    mode: if args.fullscreen {
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
        let plugins = plugins.set(crate::shell::web::render_plugin());
        app.add_plugins(plugins)
            .add_plugins(EguiPlugin::default())
            .insert_resource(ClearColor(theme::BACKGROUND));
        insert_start(app, args, self.bench.as_ref());
        app.add_plugins((
            logic_plugin,
            crate::shell::window_plugin,
            crate::graphics::plugin,
            crate::llm_scene::plugin,
            crate::bridge::plugin,
            crate::talk::window_plugin,
        ));
    }
}

/// Each room's start resource from the command line (headless tests call this too).
pub fn insert_start(app: &mut App, args: &AppArgs, bench: Option<&BenchArgs>) {
    app.insert_resource(ShellOptions {
        scene: scene_of(args.scene),
        screenshot: args.screenshot.clone(),
        bench_frames: bench.map(|b| b.frames),
    })
    .insert_resource(UiSettings {
        large: args.large_ui,
        hide_panels: args.hide_panels,
    })
    .insert_resource(GraphicsStart {
        mesh: args.mesh.clone(),
        state: args.state.clone(),
    })
    .insert_resource(LlmStart {
        model: args.model.clone(),
        prompt: args.prompt.clone(),
        raw: args.raw,
        no_lens: args.no_lens,
        compute: match args.llm_backend {
            BackendArg::Cpu => Compute::Cpu,
            BackendArg::Gpu => Compute::Gpu,
        },
        // With --talk the URL is the race's (its serverless step wakes the service in front of
        // the hall); scene 2 stays on the local model.
        remote_url: args.remote_url.clone().filter(|_| args.talk.is_none()),
        remote_api: args.remote_api,
        steps: args.steps,
        view: args.view,
    });
    if args.demo {
        let mut demo = DemoLoop::enabled(args.demo_pace, args.demo_cycles);
        if let Some(n) = args.demo_tokens {
            demo.timings.max_tokens = n.clamp(1, 4096);
        }
        app.insert_resource(demo);
    }
    app.insert_resource(crate::talk::TalkStart {
        open: args.talk.is_some(),
        file: args.talk.clone().flatten(),
        step: args.talk_step.map_or(0, |n| n.saturating_sub(1)),
        remote_url: args.remote_url.clone(),
        remote_api: args.remote_api,
    });
}

fn scene_of(arg: SceneArg) -> Scene {
    match arg {
        SceneArg::Graphics => Scene::Graphics,
        SceneArg::Llm => Scene::Llm,
        SceneArg::Bridge => Scene::Bridge,
    }
}

/// Everything that needs no window or GPU: scene state, keys, scene logic. Headless tests add
/// this next to `MinimalPlugins`.
pub fn logic_plugin(app: &mut App) {
    app.add_plugins((
        crate::shell::plugin,
        crate::graphics::logic_plugin,
        crate::llm_scene::logic_plugin,
        crate::demo::plugin,
        crate::talk::plugin,
    ));
}
