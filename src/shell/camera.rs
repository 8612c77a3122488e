//! The 3D camera: Bevy's `Camera3d` renders into the free viewport; its view and projection
//! come from our own math (scene 1 uploads them itself), so Bevy's tonemapping and dithering
//! are off and what the shader writes is what lands in the pixel.

use bevy::camera::CameraOutputMode;
use bevy::camera::Viewport as BevyViewport;
use bevy::camera::visibility::RenderLayers;
use bevy::core_pipeline::tonemapping::{DebandDither, Tonemapping};
use bevy::prelude::*;
use bevy::render::render_resource::BlendState;
use bevy_egui::{EguiGlobalSettings, PrimaryEguiContext};

use super::state::SceneViewport;

#[derive(Component, Debug)]
pub struct MainCamera;

pub(super) fn plugin(app: &mut App) {
    app.add_systems(Startup, spawn_camera).add_systems(
        PostUpdate,
        apply_viewport.before(bevy::camera::CameraUpdateSystems),
    );
}

fn spawn_camera(mut commands: Commands, mut egui_settings: ResMut<EguiGlobalSettings>) {
    // egui gets its own camera on top, so the 3D camera's viewport does not clip the panels.
    egui_settings.auto_create_primary_context = false;
    commands.spawn((
        PrimaryEguiContext,
        Camera2d,
        RenderLayers::none(),
        Camera {
            order: 1,
            output_mode: CameraOutputMode::Write {
                blend_state: Some(BlendState::ALPHA_BLENDING),
                clear_color: ClearColorConfig::None,
            },
            clear_color: ClearColorConfig::None,
            ..default()
        },
    ));
    commands.spawn((
        MainCamera,
        Camera3d::default(),
        Tonemapping::None,
        DebandDither::Disabled,
        Transform::from_xyz(0.0, 0.0, 6.0).looking_at(Vec3::ZERO, Vec3::Y),
    ));
}

/// Keep the camera inside the panel-free rectangle; switch it off when that is empty (a
/// minimized or 1x1 window), instead of handing wgpu an invalid viewport.
fn apply_viewport(viewport: Res<SceneViewport>, mut cameras: Query<&mut Camera, With<MainCamera>>) {
    let v = viewport.physical;
    for mut camera in &mut cameras {
        let usable = v.width >= 1.0 && v.height >= 1.0;
        let wanted = usable.then(|| BevyViewport {
            physical_position: UVec2::new(v.x as u32, v.y as u32),
            physical_size: UVec2::new(v.width as u32, v.height as u32),
            ..default()
        });
        if camera.is_active != usable {
            camera.is_active = usable;
        }
        let same = match (&camera.viewport, &wanted) {
            (Some(a), Some(b)) => {
                a.physical_position == b.physical_position && a.physical_size == b.physical_size
            }
            (None, None) => true,
            _ => false,
        };
        if !same {
            camera.viewport = wanted;
        }
    }
}
