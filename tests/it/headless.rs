//! Headless App tests (no window, no GPU): scene switching, keys, animation and panel logic.

use std::time::Duration;

use bevy::ecs::system::RunSystemOnce;
use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy::time::TimeUpdateStrategy;
use math::{ComposeOrder, Viewport};
use samemath::cli::{AppArgs, SceneArg};
use samemath::graphics::{GraphicsSettings, MeshChoice, MeshLibrary, SceneMatrices};
use samemath::shell::Scene;
use samemath::shell::SceneViewport;

fn app_with(args: AppArgs) -> App {
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, StatesPlugin));
    samemath::app::insert_start(&mut app, &args, None);
    app.init_resource::<ButtonInput<KeyCode>>()
        .insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_millis(
            200,
        )))
        .add_plugins(samemath::app::logic_plugin);
    app.update();
    app
}

pub(crate) fn press(app: &mut App, key: KeyCode) {
    app.world_mut()
        .resource_mut::<ButtonInput<KeyCode>>()
        .press(key);
    app.update();
    let mut keys = app.world_mut().resource_mut::<ButtonInput<KeyCode>>();
    keys.release(key);
    keys.clear();
    app.update();
}

fn scene(app: &App) -> Scene {
    *app.world().resource::<State<Scene>>().get()
}

#[test]
fn keys_switch_scenes() {
    let mut app = app_with(AppArgs::default());
    assert_eq!(scene(&app), Scene::Graphics);
    press(&mut app, KeyCode::Digit2);
    assert_eq!(scene(&app), Scene::Llm);
    press(&mut app, KeyCode::Digit1);
    assert_eq!(scene(&app), Scene::Graphics);
}

#[test]
fn tab_hides_the_panels_and_u_enlarges_the_ui() {
    use samemath::shell::theme::UiSettings;
    let mut app = app_with(AppArgs::default());
    assert!(!app.world().resource::<UiSettings>().hide_panels);
    press(&mut app, KeyCode::Tab);
    assert!(app.world().resource::<UiSettings>().hide_panels);
    press(&mut app, KeyCode::KeyU);
    assert!(app.world().resource::<UiSettings>().large);
    press(&mut app, KeyCode::Tab);
    assert!(!app.world().resource::<UiSettings>().hide_panels);
}

#[test]
fn command_line_picks_the_first_scene() {
    let app = app_with(AppArgs {
        scene: SceneArg::Llm,
        ..Default::default()
    });
    assert_eq!(scene(&app), Scene::Llm);
}

#[test]
fn animate_turns_about_y_and_reset_restores() {
    let mut app = app_with(AppArgs::default());
    press(&mut app, KeyCode::KeyA);
    assert!(app.world().resource::<GraphicsSettings>().animate);
    let before = app
        .world()
        .resource::<GraphicsSettings>()
        .model
        .rotation_deg[1];
    for _ in 0..4 {
        app.update();
    }
    let after = app
        .world()
        .resource::<GraphicsSettings>()
        .model
        .rotation_deg[1];
    // 20°/s at 0.2 s per update, four updates.
    assert!((after - before - 16.0).abs() < 1e-3, "{before} -> {after}");
    press(&mut app, KeyCode::KeyR);
    let s = app.world().resource::<GraphicsSettings>();
    assert!(!s.animate);
    assert_eq!(s.model, math::ModelParams::default());
}

#[test]
fn animation_pauses_outside_scene_one() {
    let mut app = app_with(AppArgs::default());
    app.world_mut().resource_mut::<GraphicsSettings>().animate = true;
    press(&mut app, KeyCode::Digit2);
    let before = app
        .world()
        .resource::<GraphicsSettings>()
        .model
        .rotation_deg[1];
    app.update();
    app.update();
    assert_eq!(
        app.world()
            .resource::<GraphicsSettings>()
            .model
            .rotation_deg[1],
        before
    );
}

#[test]
fn derived_matrices_follow_the_panel() {
    let mut app = app_with(AppArgs::default());
    app.world_mut().insert_resource(SceneViewport {
        physical: Viewport {
            x: 0.0,
            y: 0.0,
            width: 800.0,
            height: 600.0,
        },
        points_per_pixel: 1.0,
    });
    {
        let mut s = app.world_mut().resource_mut::<GraphicsSettings>();
        s.model.translation = [1.0, 0.0, 0.0];
        s.model.rotation_deg = [0.0, 0.0, 90.0];
        s.model.scale = [2.0, 1.0, 1.0];
        s.mesh = MeshChoice::Cube;
        s.selected_vertex = Some(3);
    }
    app.world_mut()
        .run_system_once(samemath::graphics::compute_matrices)
        .unwrap();
    let trs = app.world().resource::<SceneMatrices>().clone();
    assert_eq!(trs.mesh, MeshChoice::Cube);
    let (index, journey) = trs.journey.clone().unwrap();
    assert_eq!(index, 3);
    assert!((journey.world - trs.chain.world_from_local * journey.local).length() < 1e-6);
    app.world_mut()
        .resource_mut::<GraphicsSettings>()
        .model
        .order = ComposeOrder::Srt;
    app.world_mut()
        .run_system_once(samemath::graphics::compute_matrices)
        .unwrap();
    let srt = app.world().resource::<SceneMatrices>().clone();
    assert_ne!(trs.chain.world_from_local, srt.chain.world_from_local);
    // A singular scale raises the flag and keeps everything finite.
    app.world_mut()
        .resource_mut::<GraphicsSettings>()
        .model
        .scale = [1.0, 0.0, 1.0];
    app.world_mut()
        .run_system_once(samemath::graphics::compute_matrices)
        .unwrap();
    let m = app.world().resource::<SceneMatrices>();
    assert!(!m.normal.invertible);
    assert!(m.normal.matrix.is_finite());
}

#[test]
fn a_missing_mesh_file_is_reported_and_the_others_remain() {
    let library = MeshLibrary::load(Some(std::path::Path::new("/nonexistent/mesh.obj")));
    let file = library
        .entries
        .iter()
        .find(|e| e.choice == MeshChoice::File)
        .unwrap();
    assert!(
        file.mesh
            .as_ref()
            .unwrap_err()
            .contains("/nonexistent/mesh.obj")
    );
    assert_eq!(
        library.usable(MeshChoice::File).map(|(c, _)| c),
        Some(MeshChoice::Teapot)
    );
    assert!(library.get(MeshChoice::Cube).is_some());
}
