//! The bridge view ("Not so different"): scene 1's vertex transform beside scene 2's neuron,
//! and dot(N, L) beside the neuron's w·x, with the live numbers from both and the WGSL lines
//! that compute the graphics side. The numbers come from one pure function (`bridge_numbers`)
//! that tests compare against the math crate and the trace.

use bevy::prelude::*;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};
use serde::Serialize;

use crate::graphics::{
    GraphicsSettings, LightProbe, MeshChoice, MeshLibrary, SceneMatrices, SurfacePick,
};
use crate::llm_scene::{LlmSelection, LlmView};
use crate::shell::Scene;
use crate::shell::SceneViewport;
use crate::shell::probe::{ProbeAppExt, SceneProbe};
use crate::shell::theme::ACCENT;
use crate::shell::{FreeArea, UiSet};
use math::mesh::SurfaceHit;
use math::normal::safe_normalize;

/// The layer whose strongest neuron is shown when none was clicked.
pub const DEFAULT_LAYER: usize = 15;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VertexSide {
    pub index: usize,
    /// v = (x, y, z, 1).
    pub local: [f32; 4],
    /// Rows of M (world_from_local).
    pub rows: [[f32; 4]; 4],
    /// M·v, each component the dot product of a row with v.
    pub world: [f32; 4],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LightSide {
    /// The picked point was chosen by the user (else the triangle centre facing the light most).
    pub picked: bool,
    pub normal: [f32; 3],
    pub to_light: [f32; 3],
    pub n_dot_l: f32,
    /// max(N·L, 0).
    pub lambert: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NeuronSide {
    pub layer: usize,
    pub neuron: usize,
    /// Clicked in the grid (else the strongest of `DEFAULT_LAYER`).
    pub clicked: bool,
    /// The first four terms of w_gate·x: (i, w_i, x_i).
    pub first_terms: Vec<(usize, f32, f32)>,
    pub inputs: usize,
    /// w_gate·x and w_up·x over all inputs.
    pub gate: f32,
    pub up: f32,
    /// silu(gate) · up, from the dequantized weights.
    pub value: f32,
    /// What the engine computed (integer kernels).
    pub engine_value: f32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BridgeNumbers {
    pub vertex: Option<VertexSide>,
    pub light: Option<LightSide>,
    pub neuron: Option<NeuronSide>,
}

/// The bridge's numbers from the live state of both scenes.
pub fn bridge_numbers(
    matrices: &SceneMatrices,
    settings: &GraphicsSettings,
    library: &MeshLibrary,
    viewport: &SceneViewport,
    view: &LlmView,
    selection: &LlmSelection,
) -> BridgeNumbers {
    let mut fresh = FacingCache::default();
    numbers(
        matrices, settings, library, viewport, view, selection, &mut fresh,
    )
}

/// `bridge_numbers`, the unpicked light point from `cache` where nothing it depends on changed.
fn numbers(
    matrices: &SceneMatrices,
    settings: &GraphicsSettings,
    library: &MeshLibrary,
    viewport: &SceneViewport,
    view: &LlmView,
    selection: &LlmSelection,
    cache: &mut FacingCache,
) -> BridgeNumbers {
    let vertex = matrices.journey.as_ref().map(|(index, j)| {
        let m = matrices.chain.world_from_local;
        VertexSide {
            index: *index,
            local: j.local.to_array(),
            rows: [0, 1, 2, 3].map(|i| m.row(i).to_array()),
            world: j.world.to_array(),
        }
    });
    let (probe, picked) = match matrices.probe {
        Some(p) => (Some(p), true),
        None => (cache.probe(matrices, settings, viewport, library), false),
    };
    let light = probe.map(|p| LightSide {
        picked,
        normal: p.normal_world.to_array(),
        to_light: p.to_light.to_array(),
        n_dot_l: p.terms.n_dot_l,
        lambert: p.terms.n_dot_l.max(0.0),
    });
    let neuron = neuron_side(view, selection);
    BridgeNumbers {
        vertex,
        light,
        neuron,
    }
}

/// No point picked: the light's numbers at the triangle centre that faces the light most (the
/// last of equals, as `max_by` picks), each triangle's facing computed once.
fn facing_probe(
    matrices: &SceneMatrices,
    settings: &GraphicsSettings,
    viewport: &SceneViewport,
    library: &MeshLibrary,
) -> Option<LightProbe> {
    let best = library.usable(settings.mesh).and_then(|(_, mesh)| {
        let mut best: Option<(usize, f32)> = None;
        for t in 0..mesh.triangle_count() {
            let f = facing(matrices, mesh, t);
            if best.is_none_or(|(_, b)| b.total_cmp(&f) != std::cmp::Ordering::Greater) {
                best = Some((t, f));
            }
        }
        best.map(|(t, _)| t)
    });
    let mut s = settings.clone();
    s.surface_pick = best.map(|triangle| SurfacePick {
        triangle,
        weights: [1.0 / 3.0; 3],
    });
    SceneMatrices::compute(&s, viewport, library).probe
}

/// How squarely triangle `t`'s centre faces the light: its normal, through the normal matrix,
/// dotted with the light's direction.
fn facing(matrices: &SceneMatrices, mesh: &math::mesh::MeshData, t: usize) -> f32 {
    let hit = SurfaceHit {
        triangle: t,
        distance: 0.0,
        weights: [1.0 / 3.0; 3],
    };
    safe_normalize(matrices.normal.matrix * mesh.normal_at(&hit)).dot(matrices.light_dir)
}

/// `facing_probe`'s answer kept between frames: with a large `--mesh` it goes over every
/// triangle, so it is done again only when something it reads changed (the settings, the view,
/// the matrices' normal matrix and light, the meshes).
#[derive(Debug, Default)]
pub struct FacingCache {
    key: Option<FacingKey>,
    probe: Option<LightProbe>,
    /// How many times `facing_probe` ran.
    recomputed: u64,
}

/// What `facing_probe` reads. The settings by their `Debug` text (every field, each float
/// exactly; the pick is replaced, so left out), the matrices' floats by their bits, each mesh by
/// where its data is and how long (a new or replaced mesh is another allocation; `invalidate`
/// covers any other change to the library).
#[derive(Debug, Clone, PartialEq)]
struct FacingKey {
    settings: String,
    viewport: String,
    normal: [u32; 9],
    light: [u32; 3],
    meshes: Vec<(MeshChoice, Option<[usize; 6]>)>,
}

impl FacingKey {
    fn new(
        matrices: &SceneMatrices,
        settings: &GraphicsSettings,
        viewport: &SceneViewport,
        library: &MeshLibrary,
    ) -> Self {
        let unpicked = GraphicsSettings {
            surface_pick: None,
            ..settings.clone()
        };
        Self {
            settings: format!("{unpicked:?}"),
            viewport: format!("{viewport:?}"),
            normal: matrices.normal.matrix.to_cols_array().map(f32::to_bits),
            light: matrices.light_dir.to_array().map(f32::to_bits),
            meshes: library
                .entries
                .iter()
                .map(|e| {
                    let mesh = e.mesh.as_ref().ok().map(|m| {
                        [
                            m.positions.as_ptr() as usize,
                            m.positions.len(),
                            m.normals.as_ptr() as usize,
                            m.normals.len(),
                            m.indices.as_ptr() as usize,
                            m.indices.len(),
                        ]
                    });
                    (e.choice, mesh)
                })
                .collect(),
        }
    }
}

impl FacingCache {
    /// Forget the answer (the library changed).
    pub fn invalidate(&mut self) {
        self.key = None;
    }

    /// `facing_probe(matrices, settings, viewport, library)`.
    pub fn probe(
        &mut self,
        matrices: &SceneMatrices,
        settings: &GraphicsSettings,
        viewport: &SceneViewport,
        library: &MeshLibrary,
    ) -> Option<LightProbe> {
        let key = FacingKey::new(matrices, settings, viewport, library);
        if self.key.as_ref() != Some(&key) {
            self.recomputed += 1;
            self.probe = facing_probe(matrices, settings, viewport, library);
            self.key = Some(key);
        }
        self.probe
    }
}

fn neuron_side(view: &LlmView, selection: &LlmSelection) -> Option<NeuronSide> {
    // The weights must be the ones that made the trace: the local model's.
    if !view.backend.is_local() {
        return None;
    }
    let (trace, model) = (view.trace.as_ref()?, view.model.as_ref()?);
    let (layer, neuron, clicked) = match selection.neuron {
        Some((l, n)) => (l, n, true),
        None => {
            let l = DEFAULT_LAYER.min(trace.layers.len().checked_sub(1)?);
            let acts = &trace.layers[l].mlp_activation;
            let n = (0..acts.len()).max_by(|a, b| acts[*a].abs().total_cmp(&acts[*b].abs()))?;
            (l, n, false)
        }
    };
    let lt = trace.layers.get(layer)?;
    let engine_value = *lt.mlp_activation.get(neuron)?;
    let (gate_row, up_row) = model.mlp_rows(layer, neuron)?;
    let x = &lt.mlp_input;
    if x.len() != gate_row.len() {
        return None;
    }
    let gate: f32 = gate_row.iter().zip(x).map(|(w, v)| w * v).sum();
    let up: f32 = up_row.iter().zip(x).map(|(w, v)| w * v).sum();
    Some(NeuronSide {
        layer,
        neuron,
        clicked,
        first_terms: (0..4.min(x.len()))
            .map(|i| (i, gate_row[i], x[i]))
            .collect(),
        inputs: x.len(),
        gate,
        up,
        value: gate / (1.0 + (-gate).exp()) * up,
        engine_value,
    })
}

/// The source of WGSL function `name` in `shaders/samemath_math.wgsl`, through its closing brace.
pub fn wgsl_function(name: &str) -> Option<String> {
    let src = include_str!("../shaders/samemath_math.wgsl");
    let start = src.find(&format!("fn {name}("))?;
    let end = src[start..].find("\n}")? + start + 2;
    Some(src[start..end].to_string())
}

/// The bridge's numbers for this frame (also written into `--screenshot`'s sidecar).
#[derive(Resource, Debug, Clone, Default, Serialize)]
pub struct BridgeState(pub BridgeNumbers);

/// What scene 3 answers the shell: the numbers it shows, for the sidecar's "bridge" key.
struct BridgeProbe;

impl SceneProbe for BridgeProbe {
    fn key(&self) -> Option<&'static str> {
        Some("bridge")
    }

    fn sidecar(&self, world: &World) -> serde_json::Value {
        world
            .get_resource::<BridgeState>()
            .map(|b| serde_json::to_value(&b.0).unwrap_or_default())
            .unwrap_or_default()
    }
}

pub fn plugin(app: &mut App) {
    app.add_probe(BridgeProbe);
    app.init_resource::<BridgeState>().add_systems(
        EguiPrimaryContextPass,
        bridge_view
            .in_set(UiSet::Panels)
            .run_if(in_state(Scene::Bridge)),
    );
}

fn code(ui: &mut egui::Ui, name: &str) {
    let text = wgsl_function(name).unwrap_or_else(|| format!("(fn {name} not found)"));
    egui::Frame::new()
        .fill(ui.visuals().extreme_bg_color)
        .inner_margin(6.0)
        .show(ui, |ui| {
            ui.add(egui::Label::new(egui::RichText::new(text).monospace().size(12.0)).extend());
        });
}

fn num(v: f32) -> String {
    format!("{v:+.3}")
}

#[allow(clippy::too_many_arguments)]
fn bridge_view(
    mut contexts: EguiContexts,
    matrices: Res<SceneMatrices>,
    settings: Res<GraphicsSettings>,
    library: Option<Res<MeshLibrary>>,
    viewport: Res<SceneViewport>,
    view: Res<LlmView>,
    selection: Res<LlmSelection>,
    mut state: ResMut<BridgeState>,
    free: Res<FreeArea>,
    mut facing: Local<FacingCache>,
) {
    // Checked before any return, so a change on a frame that returned early is seen.
    if library.as_ref().is_some_and(|l| l.is_changed()) {
        facing.invalidate();
    }
    let Ok(ctx) = contexts.ctx_mut() else {
        return;
    };
    let empty = MeshLibrary::default();
    let library = library.as_deref().unwrap_or(&empty);
    state.0 = numbers(
        &matrices,
        &settings,
        library,
        &viewport,
        &view,
        &selection,
        &mut facing,
    );
    let b = &state.0;
    let mut root = free.ui(ctx, "bridge_root");
    egui::CentralPanel::default().show(&mut root, |ui| {
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("Not so different: the same multiply-and-add, live from both scenes");
            ui.columns(2, |cols| {
                vertex_column(&mut cols[0], b);
                neuron_column(&mut cols[1], b);
            });
            ui.separator();
            ui.columns(2, |cols| {
                light_column(&mut cols[0], b);
                activation_column(&mut cols[1], b);
            });
        });
    });
}

fn vertex_column(ui: &mut egui::Ui, b: &BridgeNumbers) {
    ui.label(
        egui::RichText::new("Scene 1: a vertex, M·v")
            .strong()
            .color(ACCENT),
    );
    let Some(v) = &b.vertex else {
        ui.weak("Select a vertex in scene 1 (click near one).");
        return;
    };
    ui.label(format!(
        "vertex {}: v = ({}, {}, {}, {})",
        v.index,
        num(v.local[0]),
        num(v.local[1]),
        num(v.local[2]),
        num(v.local[3])
    ));
    for (i, row) in v.rows.iter().enumerate() {
        let terms: Vec<String> = row
            .iter()
            .zip(&v.local)
            .map(|(m, x)| format!("{}·{}", num(*m), num(*x)))
            .collect();
        ui.monospace(format!(
            "(M·v)[{i}] = {} = {}",
            terms.join(" + "),
            num(v.world[i])
        ));
    }
    ui.small("Each output is one dot product of a row of M with v: 4 multiply-adds.");
    ui.label("WGSL (shaders/samemath_math.wgsl), run for every vertex:");
    code(ui, "mat_vec4");
    code(ui, "dot4");
}

fn neuron_column(ui: &mut egui::Ui, b: &BridgeNumbers) {
    ui.label(
        egui::RichText::new("Scene 2: a neuron, W·x")
            .strong()
            .color(ACCENT),
    );
    let Some(n) = &b.neuron else {
        ui.weak("Run the model in scene 2 (Step or Generate) to have a neuron to show.");
        return;
    };
    ui.label(format!(
        "layer {}, neuron {} ({})",
        n.layer,
        n.neuron,
        if n.clicked {
            "clicked in scene 2"
        } else {
            "the strongest of its layer; click one in scene 2 to choose"
        }
    ));
    let terms: Vec<String> = n
        .first_terms
        .iter()
        .map(|(_, w, x)| format!("{}·{}", num(*w), num(*x)))
        .collect();
    ui.monospace(format!(
        "w_gate·x = {} + … ({} terms) = {}",
        terms.join(" + "),
        n.inputs,
        num(n.gate)
    ));
    ui.monospace(format!("w_up·x   = … ({} terms) = {}", n.inputs, num(n.up)));
    ui.small(format!(
        "A row of a {}-wide weight matrix times the token's vector: the same dot product as a \
         row of M times v, {} multiply-adds instead of 4.",
        n.inputs, n.inputs
    ));
    ui.label(
        "On the CPU backend crates/llm/src/quant.rs computes it (32 int8 multiply-adds per block, as \
         llama.cpp does); on the GPU backend the mat-vec kernel, with the very dot4 the vertex \
         shader's mat_vec4 calls (shaders/llm/matvec.wgsl):",
    );
    let lines = matvec_dot4_lines();
    egui::Frame::new()
        .fill(ui.visuals().extreme_bg_color)
        .inner_margin(6.0)
        .show(ui, |ui| {
            ui.add(egui::Label::new(egui::RichText::new(lines).monospace().size(12.0)).extend());
        });
}

/// The lines of the GPU mat-vec kernel that import and call the shared `dot4`.
pub fn matvec_dot4_lines() -> String {
    include_str!("../shaders/llm/matvec.wgsl")
        .lines()
        .filter(|l| l.contains("dot4") && !l.trim_start().starts_with("//"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
}

fn light_column(ui: &mut egui::Ui, b: &BridgeNumbers) {
    ui.label(
        egui::RichText::new("Light on a surface: dot(N, L)")
            .strong()
            .color(ACCENT),
    );
    let Some(l) = &b.light else {
        ui.weak("No surface point (the mesh did not load).");
        return;
    };
    if !l.picked {
        ui.small(
            "The triangle centre that faces the light most; click the surface in scene 1 to \
             choose a point.",
        );
    }
    ui.monospace(format!(
        "N·L = {}·{} + {}·{} + {}·{} = {}",
        num(l.normal[0]),
        num(l.to_light[0]),
        num(l.normal[1]),
        num(l.to_light[1]),
        num(l.normal[2]),
        num(l.to_light[2]),
        num(l.n_dot_l)
    ));
    ui.monospace(format!("lambert = max(N·L, 0) = {}", num(l.lambert)));
    ui.small("How much the surface faces the light: an alignment, then a cut-off.");
    code(ui, "lambert");
}

fn activation_column(ui: &mut egui::Ui, b: &BridgeNumbers) {
    ui.label(
        egui::RichText::new("A neuron's alignment: w·x, then silu")
            .strong()
            .color(ACCENT),
    );
    let Some(n) = &b.neuron else {
        ui.weak("No trace yet.");
        return;
    };
    let silu = n.gate / (1.0 + (-n.gate).exp());
    ui.monospace(format!("g = w_gate·x = {}", num(n.gate)));
    ui.monospace(format!("silu(g) = g / (1 + e^-g) = {}", num(silu)));
    ui.monospace(format!("silu(g)·(w_up·x) = {}", num(n.value)));
    ui.monospace(format!("the engine's value:  {}", num(n.engine_value)));
    ui.small(
        "How much the token's vector faces the neuron's weights, then a soft cut-off: Lambert's \
         max(N·L, 0) and SiLU are the same idea.",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphics::MeshEntry;
    use math::mesh::{cube, uv_sphere};

    fn library(sphere: u32) -> MeshLibrary {
        MeshLibrary {
            entries: vec![
                MeshEntry {
                    choice: MeshChoice::Cube,
                    mesh: Ok(cube()),
                },
                MeshEntry {
                    choice: MeshChoice::Sphere,
                    mesh: Ok(uv_sphere(sphere, sphere / 2)),
                },
            ],
        }
    }

    /// Equal to the last bit (`Debug` writes each float exactly).
    fn same(a: Option<LightProbe>, b: Option<LightProbe>) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    /// The triangle the bridge picked before the single pass: `max_by`, each comparison
    /// normalising both normals.
    fn by_max_by(matrices: &SceneMatrices, mesh: &math::mesh::MeshData) -> Option<usize> {
        (0..mesh.triangle_count())
            .max_by(|&a, &b| facing(matrices, mesh, a).total_cmp(&facing(matrices, mesh, b)))
    }

    /// The single pass picks the triangle `max_by` picked (the last of equals: the cube's two
    /// triangles of a face face the light alike).
    #[test]
    fn the_facing_triangle_is_the_one_max_by_picked() {
        let library = library(24);
        let viewport = SceneViewport::default();
        for mesh in [MeshChoice::Cube, MeshChoice::Sphere] {
            for (azimuth, rotation) in [(0.0, 0.0), (35.0, 0.0), (90.0, 45.0), (200.0, 10.0)] {
                let mut settings = GraphicsSettings {
                    mesh,
                    surface_pick: None,
                    ..Default::default()
                };
                settings.lighting.azimuth_deg = azimuth;
                settings.lighting.elevation_deg = 0.0;
                settings.model.rotation_deg = [0.0, rotation, 0.0];
                let matrices = SceneMatrices::compute(&settings, &viewport, &library);
                let data = library.get(mesh).unwrap();
                let expected = by_max_by(&matrices, data).map(|triangle| SurfacePick {
                    triangle,
                    weights: [1.0 / 3.0; 3],
                });
                let s = GraphicsSettings {
                    surface_pick: expected,
                    ..settings.clone()
                };
                let before = SceneMatrices::compute(&s, &viewport, &library).probe;
                assert!(before.is_some());
                let now = facing_probe(&matrices, &settings, &viewport, &library);
                assert!(same(now, before), "{mesh:?} {azimuth} {rotation}");
            }
        }
    }

    /// Each kind of change gives a fresh computation's answer; a frame with none does no work.
    #[test]
    fn the_facing_cache_answers_as_a_fresh_computation_and_works_only_on_change() {
        let mut library = library(48);
        let mut viewport = SceneViewport::default();
        let mut settings = GraphicsSettings {
            mesh: MeshChoice::Sphere,
            surface_pick: None,
            ..Default::default()
        };
        let mut cache = FacingCache::default();
        let mut matrices = SceneMatrices::compute(&settings, &viewport, &library);
        let check = |cache: &mut FacingCache,
                     matrices: &SceneMatrices,
                     settings: &GraphicsSettings,
                     viewport: &SceneViewport,
                     library: &MeshLibrary,
                     recomputed: u64| {
            let fresh = facing_probe(matrices, settings, viewport, library);
            assert!(fresh.is_some());
            assert!(same(
                cache.probe(matrices, settings, viewport, library),
                fresh
            ));
            assert_eq!(cache.recomputed, recomputed);
            fresh
        };
        let first = check(&mut cache, &matrices, &settings, &viewport, &library, 1);

        // Unchanged frames (the matrices computed again, as each frame does): no work.
        for _ in 0..5 {
            matrices = SceneMatrices::compute(&settings, &viewport, &library);
            check(&mut cache, &matrices, &settings, &viewport, &library, 1);
        }

        // The light moved.
        settings.lighting.azimuth_deg += 40.0;
        matrices = SceneMatrices::compute(&settings, &viewport, &library);
        let lit = check(&mut cache, &matrices, &settings, &viewport, &library, 2);
        assert!(!same(lit, first), "a stale answer would be wrong");

        // The model turned.
        settings.model.rotation_deg = [0.0, 30.0, 10.0];
        matrices = SceneMatrices::compute(&settings, &viewport, &library);
        let turned = check(&mut cache, &matrices, &settings, &viewport, &library, 3);
        assert!(!same(turned, lit));

        // The camera moved (the eye: the half vector).
        settings.camera.yaw_deg += 25.0;
        matrices = SceneMatrices::compute(&settings, &viewport, &library);
        let moved = check(&mut cache, &matrices, &settings, &viewport, &library, 4);
        assert!(!same(moved, turned));

        // The lighting's other numbers (shininess: the specular term).
        settings.lighting.shininess *= 2.0;
        matrices = SceneMatrices::compute(&settings, &viewport, &library);
        let shiny = check(&mut cache, &matrices, &settings, &viewport, &library, 5);
        assert!(!same(shiny, moved));

        // Another mesh chosen.
        settings.mesh = MeshChoice::Cube;
        matrices = SceneMatrices::compute(&settings, &viewport, &library);
        let cubed = check(&mut cache, &matrices, &settings, &viewport, &library, 6);
        assert!(!same(cubed, shiny));

        // A new library (the same choices, another sphere), the old one still alive.
        settings.mesh = MeshChoice::Sphere;
        matrices = SceneMatrices::compute(&settings, &viewport, &library);
        check(&mut cache, &matrices, &settings, &viewport, &library, 7);
        let old = std::mem::replace(&mut library, self::library(40));
        matrices = SceneMatrices::compute(&settings, &viewport, &library);
        let remeshed = check(&mut cache, &matrices, &settings, &viewport, &library, 8);
        let before = facing_probe(&matrices, &settings, &viewport, &old);
        assert!(!same(remeshed, before));

        // The view resized.
        viewport.physical.width -= 300.0;
        matrices = SceneMatrices::compute(&settings, &viewport, &library);
        check(&mut cache, &matrices, &settings, &viewport, &library, 9);

        // The matrices alone changed (computed from other settings than these).
        let mut other = settings.clone();
        other.lighting.elevation_deg -= 30.0;
        let skewed = SceneMatrices::compute(&other, &viewport, &library);
        check(&mut cache, &skewed, &settings, &viewport, &library, 10);

        // The library changed in place: the app's `invalidate`.
        cache.invalidate();
        check(&mut cache, &skewed, &settings, &viewport, &library, 11);

        // A picked point does not use the cache.
        settings.surface_pick = Some(SurfacePick {
            triangle: 3,
            weights: [0.2, 0.3, 0.5],
        });
        let picked = SceneMatrices::compute(&settings, &viewport, &library);
        let (view, selection) = (LlmView::default(), LlmSelection::default());
        let b = numbers(
            &picked, &settings, &library, &viewport, &view, &selection, &mut cache,
        );
        assert!(b.light.as_ref().is_some_and(|l| l.picked));
        assert_eq!(cache.recomputed, 11);
        assert_eq!(
            b,
            bridge_numbers(&picked, &settings, &library, &viewport, &view, &selection)
        );
        drop(old);
    }
}
