//! The vertex and light inspectors, mouse input in the 3D view (orbit, zoom, pick, move the
//! light), and the overlay markers drawn at the pixels our CPU math predicts.

use bevy::input::mouse::{AccumulatedMouseMotion, AccumulatedMouseScroll, MouseScrollUnit};
use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::input::EguiWantsInput;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};
use glam::{Vec2, Vec3, Vec4};

use super::highlight::{Highlight, Term, framed};
use super::scene::{GraphicsSettings, MeshLibrary, SceneMatrices, SurfacePick};
use crate::shell::Scene;
use crate::shell::theme::{ACCENT, WARNING};
use crate::shell::{SceneViewport, UiSet, cursor_physical};

pub(super) fn plugin(app: &mut App) {
    app.add_systems(Update, mouse_input.run_if(in_state(Scene::Graphics)))
        .add_systems(
            EguiPrimaryContextPass,
            draw_overlays
                .in_set(UiSet::Overlay)
                .run_if(in_state(Scene::Graphics)),
        );
}

fn v3(v: Vec3) -> String {
    format!("({:>7.3}, {:>7.3}, {:>7.3})", v.x, v.y, v.z)
}

fn v4(v: Vec4) -> String {
    format!("({:>7.3}, {:>7.3}, {:>7.3}, {:>7.3})", v.x, v.y, v.z, v.w)
}

/// An inspector's grid of (label, value) rows: side by side, or, where its widest label beside
/// its widest value does not fit (a narrow panel), each value under its label, wrapped at the
/// panel's edge, so nothing runs past it.
fn rows_grid(
    ui: &mut egui::Ui,
    id: &str,
    widest_label: &str,
    widest_value: &str,
    add: impl FnOnce(&mut egui::Ui, Rows),
) {
    let width = ui
        .painter()
        .layout_no_wrap(
            format!("{widest_label}{widest_value}"),
            egui::TextStyle::Monospace.resolve(ui.style()),
            egui::Color32::WHITE,
        )
        .size()
        .x;
    let stacked = ui.available_width() < width + ui.spacing().item_spacing.x;
    egui::Grid::new(id)
        .num_columns(1 + usize::from(!stacked))
        .show(ui, |ui| add(ui, Rows { stacked }));
}

/// How `rows_grid` lays out its rows.
#[derive(Clone, Copy)]
struct Rows {
    stacked: bool,
}

impl Rows {
    fn row(self, ui: &mut egui::Ui, label: &str, value: String) {
        ui.label(egui::RichText::new(label).monospace());
        let value = egui::RichText::new(value).monospace();
        if self.stacked {
            ui.end_row();
            ui.add(egui::Label::new(value).wrap());
        } else {
            ui.label(value);
        }
        ui.end_row();
    }
}

/// Both inspectors, inside the right panel.
pub fn inspectors(
    ui: &mut egui::Ui,
    settings: &mut GraphicsSettings,
    matrices: &SceneMatrices,
    library: Option<&MeshLibrary>,
    highlight: &mut Highlight,
) {
    let vertex_count = library
        .and_then(|l| l.get(matrices.mesh))
        .map_or(0, |m| m.positions.len());
    ui.heading("Vertex inspector");
    ui.horizontal_wrapped(|ui| {
        ui.label("vertex #");
        let mut index = settings.selected_vertex.unwrap_or(0);
        let max = vertex_count.saturating_sub(1);
        if ui
            .add(egui::DragValue::new(&mut index).range(0..=max))
            .changed()
        {
            settings.selected_vertex = Some(index.min(max));
        }
        ui.label(format!("of {vertex_count}; or click near one"));
        ui.checkbox(&mut settings.show_markers, "markers");
    });
    let on = highlight.is(Term::Vertex);
    framed(ui, on, &mut highlight.scroll, |ui| {
        // Inside the frame: a talk step's highlight narrows the room.
        match &matrices.journey {
            Some((_, j)) => {
                rows_grid(
                    ui,
                    "journey",
                    "P·V·M·v (clip)",
                    &v4(Vec4::splat(-0.5)),
                    |ui, rows| {
                        rows.row(ui, "v (local)", v4(j.local));
                        for (label, p) in &j.model_steps {
                            rows.row(ui, label, v4(*p));
                        }
                        rows.row(ui, "M·v (world)", v4(j.world));
                        rows.row(ui, "V·M·v (view)", v4(j.view));
                        rows.row(ui, "P·V·M·v (clip)", v4(j.clip));
                        match (j.ndc, j.pixel) {
                            (Some(ndc), Some(px)) => {
                                rows.row(ui, "NDC = clip/w", v3(ndc));
                                rows.row(ui, "pixel", format!("({:.1}, {:.1})", px.x, px.y));
                            }
                            _ => {
                                ui.colored_label(WARNING, "behind the camera (w <= 0): no pixel");
                                ui.end_row();
                            }
                        }
                    },
                );
            }
            None => {
                ui.label("No vertex selected.");
            }
        }
    });
    ui.separator();
    ui.heading("Light inspector");
    let on = highlight.is(Term::Light);
    framed(ui, on, &mut highlight.scroll, |ui| match &matrices.probe {
        Some(p) => {
            rows_grid(
                ui,
                "probe",
                "colour = base·(a+d) + s",
                &v3(Vec3::splat(-0.5)),
                |ui, rows| {
                    rows.row(ui, "P (world)", v3(p.point_world));
                    rows.row(ui, "N = normalize(N_mat·n)", v3(p.normal_world));
                    rows.row(ui, "L (to light)", v3(p.to_light));
                    rows.row(ui, "V (to eye)", v3(p.to_eye));
                    rows.row(ui, "H = normalize(L+V)", v3(p.half));
                    rows.row(ui, "dot(N, L)", format!("{:.4}", p.terms.n_dot_l));
                    rows.row(ui, "ambient  ka", format!("{:.4}", p.terms.ambient));
                    rows.row(
                        ui,
                        "diffuse  kd·max(N·L,0)",
                        format!("{:.4}", p.terms.diffuse),
                    );
                    rows.row(
                        ui,
                        "specular ks·(N·H)^n",
                        format!("{:.4}", p.terms.specular),
                    );
                    rows.row(ui, "intensity I", format!("{:.4}", p.terms.intensity));
                    rows.row(
                        ui,
                        "colour = base·(a+d) + s",
                        format!(
                            "({:.3}, {:.3}, {:.3})",
                            p.terms.color.x, p.terms.color.y, p.terms.color.z
                        ),
                    );
                },
            );
        }
        None => {
            ui.label("Click a point of the surface to see its lighting.");
        }
    });
}

#[derive(Default, Debug)]
struct DragState {
    active: bool,
    moved_px: f32,
}

/// Left-drag orbits, scroll zooms, right-drag moves the light, a click picks a vertex and a
/// surface point. Input that egui has taken is ignored.
fn mouse_input(
    buttons: Res<ButtonInput<MouseButton>>,
    motion: Res<AccumulatedMouseMotion>,
    scroll: Res<AccumulatedMouseScroll>,
    wants: Option<Res<EguiWantsInput>>,
    windows: Query<&Window, With<PrimaryWindow>>,
    viewport: Res<SceneViewport>,
    matrices: Res<SceneMatrices>,
    library: Option<Res<MeshLibrary>>,
    mut settings: ResMut<GraphicsSettings>,
    mut drag: Local<DragState>,
) {
    let Ok(window) = windows.single() else {
        return;
    };
    let egui_busy = wants.is_some_and(|w| w.wants_any_pointer_input());
    let cursor = cursor_physical(window);
    let in_view = cursor.is_some_and(|c| viewport.physical.contains(c)) && !egui_busy;
    if buttons.just_pressed(MouseButton::Left) && in_view {
        *drag = DragState {
            active: true,
            moved_px: 0.0,
        };
    }
    if drag.active && buttons.pressed(MouseButton::Left) {
        drag.moved_px += motion.delta.length();
        if drag.moved_px > 3.0 {
            settings
                .camera
                .orbit(-motion.delta.x * 0.3, motion.delta.y * 0.3);
        }
    }
    if drag.active && buttons.just_released(MouseButton::Left) {
        drag.active = false;
        if drag.moved_px <= 3.0
            && let (Some(c), Some(library)) = (cursor, library.as_deref())
        {
            pick(&mut settings, &matrices, library, c);
        }
    }
    if in_view && buttons.pressed(MouseButton::Right) {
        let l = &mut settings.lighting;
        l.azimuth_deg = (l.azimuth_deg + motion.delta.x * 0.4 + 180.0).rem_euclid(360.0) - 180.0;
        l.elevation_deg = (l.elevation_deg - motion.delta.y * 0.4).clamp(-89.0, 89.0);
    }
    if in_view && scroll.delta.y != 0.0 {
        let lines = match scroll.unit {
            MouseScrollUnit::Line => scroll.delta.y,
            MouseScrollUnit::Pixel => scroll.delta.y / 40.0,
        };
        settings.camera.zoom(lines);
    }
}

/// A click: the surface point under it, and the nearest vertex not hidden behind that surface.
pub fn pick(
    settings: &mut GraphicsSettings,
    matrices: &SceneMatrices,
    library: &MeshLibrary,
    pixel: Vec2,
) {
    let Some(mesh) = library.get(matrices.mesh) else {
        return;
    };
    let chain = &matrices.chain;
    let hit = chain.ray_through_pixel(pixel).and_then(|ray| {
        let m = chain.world_from_local;
        mesh.raycast(&ray, |p| (m * p.extend(1.0)).truncate())
            .map(|h| (h, ray))
    });
    let limit = hit.map(|(h, ray)| {
        let point = ray.origin + ray.direction * h.distance;
        point.distance(matrices.eye) + 0.05
    });
    settings.surface_pick = hit.map(|(h, _)| SurfacePick {
        triangle: h.triangle,
        weights: h.weights,
    });
    if let Some(v) = mesh.nearest_vertex(chain, matrices.eye, pixel, 24.0, limit) {
        settings.selected_vertex = Some(v);
    }
}

fn draw_overlays(
    mut contexts: EguiContexts,
    settings: Res<GraphicsSettings>,
    matrices: Res<SceneMatrices>,
    viewport: Res<SceneViewport>,
) {
    if !settings.show_markers {
        return;
    }
    let Ok(ctx) = contexts.ctx_mut() else {
        return;
    };
    let k = viewport.points_per_pixel;
    let to_pos = |px: Vec2| egui::pos2(px.x * k, px.y * k);
    let v = viewport.physical;
    let clip = egui::Rect::from_min_size(
        egui::pos2(v.x * k, v.y * k),
        egui::vec2(v.width * k, v.height * k),
    );
    let painter = ctx
        .layer_painter(egui::LayerId::new(
            egui::Order::Foreground,
            egui::Id::new("scene1_overlay"),
        ))
        .with_clip_rect(clip);
    if let Some((index, j)) = &matrices.journey
        && let Some(px) = j.pixel
    {
        let c = to_pos(px);
        let color = egui::Color32::from_rgb(255, 0, 255);
        painter.circle_stroke(c, 8.0, egui::Stroke::new(2.0, color));
        painter.line_segment(
            [c - egui::vec2(12.0, 0.0), c + egui::vec2(12.0, 0.0)],
            egui::Stroke::new(1.0, color),
        );
        painter.line_segment(
            [c - egui::vec2(0.0, 12.0), c + egui::vec2(0.0, 12.0)],
            egui::Stroke::new(1.0, color),
        );
        painter.text(
            c + egui::vec2(12.0, -12.0),
            egui::Align2::LEFT_BOTTOM,
            format!("v{index}"),
            egui::FontId::monospace(13.0),
            egui::Color32::WHITE,
        );
    }
    if let Some(p) = &matrices.probe {
        let chain = &matrices.chain;
        if let (Some(a), Some(n), Some(l)) = (
            chain.project_world(p.point_world),
            chain.project_world(p.point_world + p.normal_world * 0.4),
            chain.project_world(p.point_world + p.to_light * 0.4),
        ) {
            let yellow = egui::Color32::from_rgb(255, 220, 60);
            painter.circle_filled(to_pos(a), 4.0, ACCENT);
            painter.arrow(
                to_pos(a),
                to_pos(n) - to_pos(a),
                egui::Stroke::new(2.0, ACCENT),
            );
            painter.arrow(
                to_pos(a),
                to_pos(l) - to_pos(a),
                egui::Stroke::new(2.0, yellow),
            );
            painter.text(
                to_pos(n),
                egui::Align2::LEFT_BOTTOM,
                "N",
                egui::FontId::monospace(13.0),
                ACCENT,
            );
            painter.text(
                to_pos(l),
                egui::Align2::LEFT_BOTTOM,
                "L",
                egui::FontId::monospace(13.0),
                yellow,
            );
        }
    }
}
