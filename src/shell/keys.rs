//! The shell's keys: 1/2/3 switch scenes, F11 fullscreen, U the large UI, Tab the panels; and the
//! first scene from the start options.

use bevy::prelude::*;
use bevy::window::{MonitorSelection, PrimaryWindow, WindowMode};

use super::focus::{KeyboardFocus, keyboard_free};
use super::state::{Scene, ShellOptions};
use super::theme::UiSettings;

pub(super) fn initial_scene(
    options: Option<Res<ShellOptions>>,
    mut next: ResMut<NextState<Scene>>,
) {
    if let Some(options) = options {
        next.set(options.scene);
    }
}

pub(super) fn scene_keys(
    keys: Res<ButtonInput<KeyCode>>,
    wants: Option<Res<KeyboardFocus>>,
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

pub(super) fn ui_keys(
    keys: Res<ButtonInput<KeyCode>>,
    wants: Option<Res<KeyboardFocus>>,
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

pub(super) fn toggle_fullscreen(window: &mut Window) {
    window.mode = match window.mode {
        WindowMode::Windowed => WindowMode::BorderlessFullscreen(MonitorSelection::Current),
        _ => WindowMode::Windowed,
    };
}
