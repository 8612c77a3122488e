//! The matrix panel (left): typed fields for t, s and theta, the composition order, every
//! factor and the composed matrix with live numbers, view, projection and the clip-from-local
//! chain; the lighting controls and the mesh choice (right, above the inspectors).

use std::collections::HashMap;
use std::ops::RangeInclusive;

use bevy::prelude::*;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};
use glam::{Mat3, Mat4};

use super::highlight::{Highlight, Term, framed};
use super::scene::{GraphicsSettings, MeshChoice, MeshLibrary, SceneMatrices};
use crate::shell::Scene;
use crate::shell::theme::UiSettings;
use crate::shell::theme::{ACCENT, ERROR, WARNING};
use crate::shell::{FreeArea, UiSet};
use math::{ComposeOrder, parse_finite};

/// Text typed into the number fields, kept while the field is being edited, and the last
/// refusal so the user sees what was not accepted.
#[derive(Resource, Debug, Default)]
pub struct FieldBuffers {
    pub text: HashMap<&'static str, String>,
    pub refused: Option<String>,
}

impl FieldBuffers {
    /// Accept `text` into `value` if it is a finite number within `range`; otherwise keep the
    /// value and remember the refusal. Returns whether the value changed.
    pub fn commit(
        &mut self,
        name: &str,
        text: &str,
        value: &mut f32,
        range: RangeInclusive<f32>,
    ) -> bool {
        match parse_finite(text) {
            Some(v) if !range.contains(&v) => {
                self.refused = Some(format!(
                    "{name}: {text:?} is outside {} to {}; kept {}",
                    fmt_num(*range.start()),
                    fmt_num(*range.end()),
                    fmt_num(*value)
                ));
                false
            }
            Some(v) => {
                self.refused = None;
                let changed = *value != v;
                *value = v;
                changed
            }
            None => {
                self.refused = Some(format!(
                    "{name}: {text:?} is not a finite number; kept {}",
                    fmt_num(*value)
                ));
                false
            }
        }
    }
}

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<FieldBuffers>().add_systems(
        EguiPrimaryContextPass,
        (matrix_panel, settings_panel)
            .chain()
            .in_set(UiSet::Panels)
            .run_if(in_state(Scene::Graphics))
            .run_if(|ui: Res<UiSettings>| !ui.hide_panels),
    );
}

pub fn fmt_num(v: f32) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// What a typed translation or scale may be: the bound a saved state is held to
/// (`ModelParams::sanitized`); past it the mesh leaves any sensible view, and near `f32::MAX`
/// the matrices overflow to inf and NaN.
pub const TYPED_TS: RangeInclusive<f32> = -100.0..=100.0;
/// What a typed angle may be, in degrees: a turn either way.
pub const TYPED_DEG: RangeInclusive<f32> = -360.0..=360.0;

/// A typed field plus a slider. Typing is committed on Enter or when the field loses focus, if
/// within `typed`; the slider covers `range`.
fn number_row(
    ui: &mut egui::Ui,
    buffers: &mut FieldBuffers,
    name: &'static str,
    value: &mut f32,
    range: RangeInclusive<f32>,
    typed: RangeInclusive<f32>,
) {
    ui.label(egui::RichText::new(name).monospace());
    let mut text = buffers.text.remove(name).unwrap_or_else(|| fmt_num(*value));
    let response = ui.add(
        egui::TextEdit::singleline(&mut text)
            .desired_width(64.0)
            .font(egui::TextStyle::Monospace),
    );
    if response.lost_focus() {
        buffers.commit(name, &text, value, typed);
        text = fmt_num(*value);
    } else if !response.has_focus() {
        text = fmt_num(*value);
    }
    buffers.text.insert(name, text);
    // The slider clamps its own drags only: a typed value (or a state file's) past its range
    // stays as it is, where egui's default clamping changed 50 to the slider's 5 unsaid.
    ui.add(
        egui::Slider::new(value, range)
            .show_value(false)
            .clamping(egui::SliderClamping::Edits),
    );
    ui.end_row();
}

/// A matrix as rows (our storage is column-major: row i is `m.row(i)`).
pub fn matrix_grid(ui: &mut egui::Ui, title: &str, rows: &[Vec<f32>], highlight: bool) {
    matrix_grid_sized(ui, title, rows, highlight, 13.0);
}

/// `matrix_grid` with the numbers at `size` points.
fn matrix_grid_sized(
    ui: &mut egui::Ui,
    title: &str,
    rows: &[Vec<f32>],
    highlight: bool,
    size: f32,
) {
    ui.vertical(|ui| {
        let text = egui::RichText::new(title).strong();
        // The title wraps (a narrow panel); the numbers keep their rows.
        ui.add(egui::Label::new(if highlight { text.color(ACCENT) } else { text }).wrap());
        egui::Frame::new()
            .fill(ui.visuals().extreme_bg_color)
            .inner_margin(4.0)
            .corner_radius(3.0)
            .show(ui, |ui| {
                for row in rows {
                    let line: Vec<String> = row.iter().map(|v| fmt_cell(*v)).collect();
                    let text = egui::RichText::new(line.join(" ")).monospace().size(size);
                    ui.add(egui::Label::new(text).extend());
                }
            });
    });
}

/// A fixed-width matrix cell; tiny negatives print as 0 rather than -0.000.
pub fn fmt_cell(v: f32) -> String {
    let v = if v.abs() < 5e-4 { 0.0 } else { v };
    format!("{v:>7.3}")
}

/// Matrices two by two, so the panel keeps its width (one by one where two do not fit).
/// Each item: its title, rows, whether it is a product (title in the accent colour) and the
/// term it is, for a talk step's highlight.
type MatrixItem = (String, Vec<Vec<f32>>, bool, Option<Term>);

fn matrix_pairs(ui: &mut egui::Ui, id: &str, items: &[MatrixItem], picked: &mut Highlight) {
    // One matrix a row where two do not fit (a projector's narrow panel): each stays whole.
    // Where even one does not fit, its numbers get smaller (down to 8 points) rather than
    // losing the last column (a translation's).
    let numbers = ui
        .painter()
        .layout_no_wrap(
            fmt_cell(0.0).repeat(4) + "   ",
            egui::FontId::monospace(13.0),
            egui::Color32::WHITE,
        )
        .size()
        .x;
    // A matrix's frame adds 8 points; a talk step's highlight 14 more (it may then scroll).
    let (frame, margins) = (8.0, 24.0);
    let width = ui.available_width();
    let columns = if width >= 2.0 * (numbers + frame) + 10.0 {
        2
    } else {
        1
    };
    let size = (13.0 * (width - margins) / numbers).clamp(8.0, 13.0);
    egui::Grid::new(id)
        .num_columns(columns)
        .spacing([10.0, 8.0])
        .show(ui, |ui| {
            for pair in items.chunks(columns) {
                for (title, rows, product, term) in pair {
                    let on = term.is_some_and(|t| picked.is(t));
                    framed(ui, on, &mut picked.scroll, |ui| {
                        matrix_grid_sized(ui, title, rows, *product || on, size)
                    });
                }
                ui.end_row();
            }
        });
}

pub fn mat4_rows(m: &Mat4) -> Vec<Vec<f32>> {
    (0..4).map(|i| m.row(i).to_array().to_vec()).collect()
}

pub fn mat3_rows(m: &Mat3) -> Vec<Vec<f32>> {
    (0..3).map(|i| m.row(i).to_array().to_vec()).collect()
}

fn matrix_panel(
    mut contexts: EguiContexts,
    mut settings: ResMut<GraphicsSettings>,
    mut buffers: ResMut<FieldBuffers>,
    matrices: Res<SceneMatrices>,
    mut free: ResMut<FreeArea>,
    mut highlight: ResMut<Highlight>,
) {
    let Ok(ctx) = contexts.ctx_mut() else {
        return;
    };
    let highlight = &mut *highlight;
    let mut root = free.ui(ctx, "matrix_panel_root");
    // At most 28% of the window: the 3D view keeps the middle (the panel scrolls).
    let (size, range) = crate::shell::side_panel_size(ctx, 0.28, 540.0, 300.0);
    let panel = egui::Panel::left("matrix_panel")
        .resizable(true)
        .default_size(size)
        .size_range(range)
        .show(&mut root, |ui| {
            egui::ScrollArea::both().show(ui, |ui| {
                ui.heading("Model matrix M");
                ui.label(
                    "Column vectors: v' = M·v. R = Rz·Ry·Rx. Matrices are shown row by row; \
                     these are the exact f32 numbers uploaded to the GPU.",
                );
                let s = &mut *settings;
                egui::Grid::new("model_fields")
                    .num_columns(3)
                    .spacing([6.0, 4.0])
                    .show(ui, |ui| {
                        let b = &mut *buffers;
                        let m = &mut s.model;
                        let [tx, ty, tz] = &mut m.translation;
                        let [sx, sy, sz] = &mut m.scale;
                        let [rx, ry, rz] = &mut m.rotation_deg;
                        let (t, sc, deg) = (-5.0..=5.0, -3.0..=3.0, -180.0..=180.0);
                        for (name, value, slider, typed) in [
                            ("t_x", tx, &t, TYPED_TS),
                            ("t_y", ty, &t, TYPED_TS),
                            ("t_z", tz, &t, TYPED_TS),
                            ("s_x", sx, &sc, TYPED_TS),
                            ("s_y", sy, &sc, TYPED_TS),
                            ("s_z", sz, &sc, TYPED_TS),
                            ("θ_x°", rx, &deg, TYPED_DEG),
                            ("θ_y°", ry, &deg, TYPED_DEG),
                            ("θ_z°", rz, &deg, TYPED_DEG),
                        ] {
                            number_row(ui, b, name, value, slider.clone(), typed);
                        }
                    });
                if let Some(refused) = &buffers.refused {
                    ui.colored_label(ERROR, format!("Refused: {refused}"));
                }
                // Wrapped: on a narrow panel the buttons go to the next line, not past its edge.
                ui.horizontal_wrapped(|ui| {
                    ui.label("Order:");
                    egui::ComboBox::from_id_salt("compose_order")
                        .selected_text(format!("M = {}", s.model.order.label()))
                        .show_ui(ui, |ui| {
                            for order in ComposeOrder::ALL {
                                ui.selectable_value(
                                    &mut s.model.order,
                                    order,
                                    format!("M = {}", order.label()),
                                );
                            }
                        });
                    if ui.button("Reset (R)").clicked() {
                        s.reset_model();
                    }
                    ui.toggle_value(&mut s.animate, "Animate (A)");
                });
                ui.label(format!(
                    "The rightmost factor acts first: {} applies {} first.",
                    s.model.order.label(),
                    s.model.order.label().chars().last().unwrap_or('S')
                ));
                if !matrices.normal.invertible {
                    ui.colored_label(
                        WARNING,
                        format!(
                            "⚠ M is not invertible (det = {:.3}): normals undefined. \
                             Using the cofactor matrix instead.",
                            matrices.normal.det
                        ),
                    );
                }
                ui.separator();
                let f = s.model.factors();
                let chain = &matrices.chain;
                matrix_pairs(
                    ui,
                    "factors",
                    &[
                        (
                            "T (translation)".into(),
                            mat4_rows(&f.t),
                            false,
                            Some(Term::Translation),
                        ),
                        (
                            "S (scale)".into(),
                            mat4_rows(&f.s),
                            false,
                            Some(Term::Scale),
                        ),
                        ("Rx".into(), mat4_rows(&f.rx), false, Some(Term::RotationX)),
                        ("Ry".into(), mat4_rows(&f.ry), false, Some(Term::RotationY)),
                        ("Rz".into(), mat4_rows(&f.rz), false, Some(Term::RotationZ)),
                        (
                            format!("M = {}", s.model.order.label()),
                            mat4_rows(&chain.world_from_local),
                            true,
                            Some(Term::Model),
                        ),
                    ],
                    highlight,
                );
                let on = highlight.is(Term::Normal);
                framed(ui, on, &mut highlight.scroll, |ui| {
                    matrix_grid(
                        ui,
                        &format!(
                            "Normal matrix N = transpose(inverse(M3x3)), det = {:.4}",
                            matrices.normal.det
                        ),
                        &mat3_rows(&matrices.normal.matrix),
                        on,
                    )
                });
                ui.separator();
                ui.heading("Camera");
                ui.label("clip = P · V · M · v   (P: reverse-Z infinite perspective, as Bevy's)");
                matrix_pairs(
                    ui,
                    "camera",
                    &[
                        (
                            "V (view_from_world)".into(),
                            mat4_rows(&chain.view_from_world),
                            false,
                            None,
                        ),
                        (
                            "P (clip_from_view)".into(),
                            mat4_rows(&chain.clip_from_view),
                            false,
                            None,
                        ),
                        (
                            "P·V·M (clip_from_local)".into(),
                            mat4_rows(&chain.clip_from_local()),
                            true,
                            None,
                        ),
                    ],
                    highlight,
                );
            });
        });
    free.take(panel.response.rect);
}

fn settings_panel(
    mut contexts: EguiContexts,
    mut settings: ResMut<GraphicsSettings>,
    library: Option<Res<MeshLibrary>>,
    matrices: Res<SceneMatrices>,
    mut free: ResMut<FreeArea>,
    mut highlight: ResMut<Highlight>,
) {
    let Ok(ctx) = contexts.ctx_mut() else {
        return;
    };
    let mut root = free.ui(ctx, "inspector_panel_root");
    // At most 24% of the window: the 3D view keeps the middle (the panel scrolls).
    let (size, range) = crate::shell::side_panel_size(ctx, 0.24, 460.0, 260.0);
    let panel = egui::Panel::right("inspector_panel")
        .resizable(true)
        .default_size(size)
        .size_range(range)
        .show(&mut root, |ui| {
            egui::ScrollArea::both().show(ui, |ui| {
                let s = &mut *settings;
                ui.heading("Mesh");
                ui.horizontal_wrapped(|ui| {
                    for choice in MeshChoice::ALL {
                        let entry = library
                            .as_ref()
                            .and_then(|l| l.entries.iter().find(|e| e.choice == choice));
                        match entry.map(|e| &e.mesh) {
                            Some(Ok(_))
                                if ui
                                    .selectable_label(matrices.mesh == choice, choice.label())
                                    .clicked() =>
                            {
                                s.mesh = choice;
                                s.selected_vertex = Some(0);
                                s.surface_pick = None;
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) => {
                                ui.add_enabled(false, egui::Button::new(choice.label()));
                            }
                            None => {}
                        }
                    }
                });
                if let Some(library) = &library {
                    for entry in &library.entries {
                        if let Err(e) = &entry.mesh {
                            ui.colored_label(
                                ERROR,
                                format!("{} could not be loaded: {e}", entry.choice.label()),
                            );
                        }
                    }
                }
                if matrices.mesh != s.mesh {
                    ui.colored_label(
                        WARNING,
                        format!("Showing {} instead.", matrices.mesh.label()),
                    );
                }
                ui.separator();
                ui.heading("Light");
                let l = &mut s.lighting;
                // Wrapped rows and sliders sized to the panel: nothing runs past a narrow edge.
                ui.horizontal_wrapped(|ui| {
                    ui.checkbox(&mut l.ambient_on, "ambient");
                    ui.checkbox(&mut l.diffuse_on, "Lambert");
                    ui.checkbox(&mut l.specular_on, "Blinn-Phong");
                });
                ui.horizontal_wrapped(|ui| {
                    ui.radio_value(&mut l.per_fragment, false, "per vertex (Gouraud)");
                    ui.radio_value(&mut l.per_fragment, true, "per fragment (G)");
                });
                // Each label beside its slider where both fit, above it where they do not.
                let label = ui
                    .painter()
                    .layout_no_wrap(
                        "light elevation°".into(),
                        egui::TextStyle::Body.resolve(ui.style()),
                        egui::Color32::WHITE,
                    )
                    .size()
                    .x;
                let width = ui.available_width();
                let stacked = width < label + 200.0;
                ui.spacing_mut().slider_width = if stacked {
                    (width - 90.0).clamp(40.0, 200.0)
                } else {
                    (width - label - 130.0).clamp(40.0, 160.0)
                };
                egui::Grid::new("light_grid")
                    .num_columns(if stacked { 1 } else { 2 })
                    .show(ui, |ui| {
                        let row = |ui: &mut egui::Ui, text: &str, slider: egui::Slider| {
                            ui.label(text);
                            if stacked {
                                ui.end_row();
                            }
                            ui.add(slider);
                            ui.end_row();
                        };
                        row(
                            ui,
                            "ka (ambient)",
                            egui::Slider::new(&mut l.ambient, 0.0..=1.0),
                        );
                        row(
                            ui,
                            "kd (diffuse)",
                            egui::Slider::new(&mut l.diffuse, 0.0..=1.0),
                        );
                        row(
                            ui,
                            "ks (specular)",
                            egui::Slider::new(&mut l.specular, 0.0..=1.0),
                        );
                        row(
                            ui,
                            "n (shininess)",
                            egui::Slider::new(&mut l.shininess, 1.0..=256.0).logarithmic(true),
                        );
                        row(
                            ui,
                            "light azimuth°",
                            egui::Slider::new(&mut l.azimuth_deg, -180.0..=180.0),
                        );
                        row(
                            ui,
                            "light elevation°",
                            egui::Slider::new(&mut l.elevation_deg, -89.0..=89.0),
                        );
                    });
                let d = matrices.light_dir;
                ui.label(
                    egui::RichText::new(format!("L = ({:.3}, {:.3}, {:.3})", d.x, d.y, d.z))
                        .monospace(),
                );
                ui.label("Right-drag in the view to move it.");
                ui.label(super::scene::lighting_formula(l));
                ui.separator();
                super::inspect::inspectors(ui, s, &matrices, library.as_deref(), &mut highlight);
            });
        });
    free.take(panel.response.rect);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value past the slider's range, typed or from a state file, is kept through a pass of
    /// the row as egui draws it.
    #[test]
    fn a_value_past_the_sliders_range_is_kept() {
        let ctx = egui::Context::default();
        let mut buffers = FieldBuffers::default();
        let mut value = 50.0f32;
        for _ in 0..2 {
            let mut out = ctx.run_ui(egui::RawInput::default(), |ui| {
                egui::Grid::new("rows").show(ui, |ui| {
                    number_row(ui, &mut buffers, "t_x", &mut value, -5.0..=5.0, TYPED_TS);
                });
            });
            // No painter here: the font atlas's upload is dropped on purpose.
            out.textures_delta.clear();
        }
        assert_eq!(value, 50.0);
    }
}
