//! Scene 1's state and logic (no GPU): the settings (model parameters, lighting, camera, mesh,
//! picks), the meshes, the matrices derived from them every frame, and the keys; what scene 1
//! was asked at start and what it answers the shell.

use crate::shell::SceneViewport;
use crate::shell::probe::{BenchStarted, SceneProbe};
use bevy::prelude::*;
use glam::{Mat4, Vec3};
use math::camera::VertexJourney;
use math::lighting::{LightTerms, LightingParams, light_direction, shade};
use math::mesh::{MeshData, SurfaceHit, cube, parse_obj, uv_sphere};
use math::normal::safe_normalize;
use math::{ClipChain, ModelParams, NormalMatrix, OrbitCamera, normal_matrix};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which mesh is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MeshChoice {
    #[default]
    Teapot,
    Cube,
    Sphere,
    /// The OBJ file given with `--mesh`.
    File,
}

impl MeshChoice {
    pub const ALL: [MeshChoice; 4] = [
        MeshChoice::Teapot,
        MeshChoice::Cube,
        MeshChoice::Sphere,
        MeshChoice::File,
    ];

    pub fn label(self) -> &'static str {
        match self {
            MeshChoice::Teapot => "Utah teapot",
            MeshChoice::Cube => "Cube",
            MeshChoice::Sphere => "UV sphere",
            MeshChoice::File => "OBJ file (--mesh)",
        }
    }
}

/// A point on the surface, stored in the mesh's own terms so it stays on the surface while
/// the matrices change.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SurfacePick {
    pub triangle: usize,
    pub weights: [f32; 3],
}

/// Everything the user controls in scene 1 (also what `--state FILE` loads).
#[derive(Resource, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GraphicsSettings {
    pub model: ModelParams,
    pub lighting: LightingParams,
    pub camera: OrbitCamera,
    pub mesh: MeshChoice,
    pub animate: bool,
    pub animate_deg_per_sec: f32,
    pub selected_vertex: Option<usize>,
    pub surface_pick: Option<SurfacePick>,
    pub show_markers: bool,
}

impl Default for GraphicsSettings {
    fn default() -> Self {
        Self {
            model: ModelParams::default(),
            lighting: LightingParams::default(),
            camera: OrbitCamera::default(),
            mesh: MeshChoice::Teapot,
            animate: false,
            animate_deg_per_sec: 20.0,
            selected_vertex: Some(0),
            surface_pick: None,
            show_markers: true,
        }
    }
}

impl GraphicsSettings {
    /// Reset the model matrix and the lighting, keeping the mesh and the camera.
    pub fn reset_model(&mut self) {
        self.model = ModelParams::default();
        self.lighting = LightingParams::default();
        self.animate = false;
    }
}

/// One loaded mesh, or why it could not be loaded.
#[derive(Debug, Clone)]
pub struct MeshEntry {
    pub choice: MeshChoice,
    pub mesh: Result<MeshData, String>,
}

/// The meshes on offer; a broken one keeps its error for the UI and the others still work.
#[derive(Resource, Debug, Clone, Default)]
pub struct MeshLibrary {
    pub entries: Vec<MeshEntry>,
}

impl MeshLibrary {
    pub fn load(user_file: Option<&std::path::Path>) -> Self {
        let teapot = crate::platform::read_asset_text("meshes/teapot.obj")
            .and_then(|text| parse_obj(&text).map_err(|e| format!("teapot.obj: {e}")));
        let mut entries = vec![
            MeshEntry {
                choice: MeshChoice::Teapot,
                mesh: teapot,
            },
            MeshEntry {
                choice: MeshChoice::Cube,
                mesh: Ok(cube()),
            },
            MeshEntry {
                choice: MeshChoice::Sphere,
                mesh: Ok(uv_sphere(64, 32)),
            },
        ];
        if let Some(path) = user_file {
            let mesh = crate::platform::read_user_text(path)
                .and_then(|text| parse_obj(&text).map_err(|e| format!("{}: {e}", path.display())));
            entries.push(MeshEntry {
                choice: MeshChoice::File,
                mesh,
            });
        }
        for entry in &entries {
            if let Err(e) = &entry.mesh {
                error!("mesh {}: {e}", entry.choice.label());
            }
        }
        Self { entries }
    }

    pub fn get(&self, choice: MeshChoice) -> Option<&MeshData> {
        self.entries
            .iter()
            .find(|e| e.choice == choice)
            .and_then(|e| e.mesh.as_ref().ok())
    }

    /// The requested mesh if it loaded, else the first one that did.
    pub fn usable(&self, choice: MeshChoice) -> Option<(MeshChoice, &MeshData)> {
        self.get(choice).map(|m| (choice, m)).or_else(|| {
            self.entries
                .iter()
                .find_map(|e| e.mesh.as_ref().ok().map(|m| (e.choice, m)))
        })
    }
}

/// The light inspector's numbers at the picked surface point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LightProbe {
    pub point_world: Vec3,
    pub normal_world: Vec3,
    pub to_light: Vec3,
    pub to_eye: Vec3,
    pub half: Vec3,
    pub terms: LightTerms,
}

/// Derived each frame from the settings: exactly what is uploaded to the GPU and shown.
#[derive(Resource, Debug, Clone, PartialEq)]
pub struct SceneMatrices {
    pub mesh: MeshChoice,
    pub chain: ClipChain,
    pub normal: NormalMatrix,
    pub light_dir: Vec3,
    pub eye: Vec3,
    pub journey: Option<(usize, VertexJourney)>,
    pub probe: Option<LightProbe>,
}

impl Default for SceneMatrices {
    fn default() -> Self {
        Self {
            mesh: MeshChoice::Teapot,
            chain: ClipChain {
                world_from_local: Mat4::IDENTITY,
                view_from_world: Mat4::IDENTITY,
                clip_from_view: Mat4::IDENTITY,
                viewport: SceneViewport::default().physical,
            },
            normal: normal_matrix(&Mat4::IDENTITY),
            light_dir: Vec3::Z,
            eye: Vec3::Z,
            journey: None,
            probe: None,
        }
    }
}

impl SceneMatrices {
    pub fn compute(
        settings: &GraphicsSettings,
        viewport: &SceneViewport,
        library: &MeshLibrary,
    ) -> Self {
        let world_from_local = settings.model.world_from_local();
        let chain = ClipChain {
            world_from_local,
            view_from_world: settings.camera.view_from_world(),
            clip_from_view: settings.camera.clip_from_view(viewport.physical.aspect()),
            viewport: viewport.physical,
        };
        let normal = normal_matrix(&world_from_local);
        let light_dir = light_direction(
            settings.lighting.azimuth_deg,
            settings.lighting.elevation_deg,
        );
        let eye = settings.camera.eye();
        let usable = library.usable(settings.mesh);
        let mesh_choice = usable.map_or(settings.mesh, |(c, _)| c);
        let mesh = usable.map(|(_, m)| m);
        let journey = mesh.and_then(|m| {
            let index = settings.selected_vertex?;
            let local = *m.positions.get(index)?;
            let steps = settings.model.steps(local.extend(1.0));
            Some((index, chain.journey(steps, local)))
        });
        let probe = mesh.and_then(|m| {
            let pick = settings.surface_pick?;
            if pick.triangle >= m.triangle_count() {
                return None;
            }
            let hit = SurfaceHit {
                triangle: pick.triangle,
                distance: 0.0,
                weights: pick.weights,
            };
            let point_world = (world_from_local * m.position_at(&hit).extend(1.0)).truncate();
            let normal_world = safe_normalize(normal.matrix * m.normal_at(&hit));
            let to_eye = safe_normalize(eye - point_world);
            Some(LightProbe {
                point_world,
                normal_world,
                to_light: light_dir,
                to_eye,
                half: safe_normalize(light_dir + to_eye),
                terms: shade(normal_world, light_dir, to_eye, &settings.lighting),
            })
        });
        Self {
            mesh: mesh_choice,
            chain,
            normal,
            light_dir,
            eye,
            journey,
            probe,
        }
    }

    /// The numbers behind a frame, for `--screenshot`'s PATH.json and the tests that read it.
    pub fn to_json(&self, settings: &GraphicsSettings) -> serde_json::Value {
        let m = |m: Mat4| m.to_cols_array().to_vec();
        let v = &self.chain.viewport;
        serde_json::json!({
            "convention": "column-major 4x4, column vectors (M * v); pixels from the window's top-left",
            "mesh": format!("{:?}", self.mesh),
            "viewport": [v.x, v.y, v.width, v.height],
            "world_from_local": m(self.chain.world_from_local),
            "view_from_world": m(self.chain.view_from_world),
            "clip_from_view": m(self.chain.clip_from_view),
            "normal_from_local": self.normal.matrix.to_cols_array().to_vec(),
            "normal_matrix_invertible": self.normal.invertible,
            "light_dir": self.light_dir.to_array(),
            "eye": self.eye.to_array(),
            "selected_vertex": self.journey.as_ref().map(|(i, j)| serde_json::json!({
                "index": i,
                "local": j.local.to_array(),
                "clip": j.clip.to_array(),
                "pixel": j.pixel.map(|p| p.to_array()),
            })),
            "settings": settings,
        })
    }
}

/// What scene 1 was asked for at start (from the command line, or a test).
#[derive(Resource, Debug, Clone, Default)]
pub struct GraphicsStart {
    /// `--mesh FILE`: a Wavefront OBJ offered beside the built-in meshes.
    pub mesh: Option<PathBuf>,
    /// `--state FILE`: a saved scene-1 state (model, lighting, camera, mesh, selection).
    pub state: Option<PathBuf>,
}

/// What scene 1 answers the shell: its matrices and settings, merged into the sidecar's top level.
pub(super) struct GraphicsProbe;

impl SceneProbe for GraphicsProbe {
    fn key(&self) -> Option<&'static str> {
        None
    }

    fn sidecar(&self, world: &World) -> serde_json::Value {
        match (
            world.get_resource::<GraphicsSettings>(),
            world.get_resource::<SceneMatrices>(),
        ) {
            (Some(s), Some(m)) => m.to_json(s),
            _ => serde_json::json!({}),
        }
    }
}

pub(super) fn load_meshes(mut commands: Commands, start: Res<GraphicsStart>) {
    commands.insert_resource(MeshLibrary::load(start.mesh.as_deref()));
}

/// The shell's frame bench starts: scene 1 animates, so its figures include the matrix work.
pub(super) fn animate_on_bench(
    mut started: MessageReader<BenchStarted>,
    mut settings: ResMut<GraphicsSettings>,
) {
    if started.read().count() > 0 {
        settings.animate = true;
    }
}

/// `--state FILE`: a saved scene-1 state. A broken file is reported and the defaults are kept.
pub(super) fn load_state_file(start: Res<GraphicsStart>, mut settings: ResMut<GraphicsSettings>) {
    let Some(path) = start.state.clone() else {
        return;
    };
    let loaded = crate::platform::read_user_text(&path)
        .and_then(|text| parse_state(&text).map_err(|e| format!("{}: {e}", path.display())));
    match loaded {
        Ok(s) => *settings = s,
        Err(e) => error!("state file not loaded: {e}"),
    }
}

/// A saved scene-1 state, every number brought within what the matrices and the light take
/// (distance 0, pitch 90 or a zero field of view made every matrix NaN; 1e39 reads as an
/// infinity): `Err` only for text that is not such a state.
pub fn parse_state(text: &str) -> Result<GraphicsSettings, String> {
    let s = serde_json::from_str::<GraphicsSettings>(text).map_err(|e| e.to_string())?;
    Ok(s.sanitized())
}

impl GraphicsSettings {
    /// Every field within the range the panel offers (see each part's `sanitized`).
    pub fn sanitized(self) -> Self {
        let d = Self::default();
        let surface_pick = self.surface_pick.filter(|p| {
            p.weights.iter().all(|w| (0.0..=1.0).contains(w))
                && (p.weights.iter().sum::<f32>() - 1.0).abs() < 1e-3
        });
        Self {
            model: self.model.sanitized(),
            lighting: self.lighting.sanitized(),
            camera: self.camera.sanitized(),
            animate_deg_per_sec: math::clamp_finite(
                self.animate_deg_per_sec,
                d.animate_deg_per_sec,
                -720.0,
                720.0,
            ),
            surface_pick,
            ..self
        }
    }
}

/// R: reset, A: animate, G: Gouraud/per-fragment.
pub fn graphics_keys(
    keys: Res<ButtonInput<KeyCode>>,
    wants: Option<Res<crate::shell::KeyboardFocus>>,
    mut settings: ResMut<GraphicsSettings>,
) {
    if !crate::shell::keyboard_free(wants) {
        return;
    }
    if keys.just_pressed(KeyCode::KeyR) {
        settings.reset_model();
    }
    if keys.just_pressed(KeyCode::KeyA) {
        settings.animate = !settings.animate;
    }
    if keys.just_pressed(KeyCode::KeyG) {
        settings.lighting.per_fragment = !settings.lighting.per_fragment;
    }
}

/// The "Animate" button: a slow turn about Y.
pub fn animate(time: Res<Time>, mut settings: ResMut<GraphicsSettings>) {
    if !settings.animate {
        return;
    }
    let step = settings.animate_deg_per_sec * time.delta_secs();
    let y = &mut settings.model.rotation_deg[1];
    *y = (*y + step + 180.0).rem_euclid(360.0) - 180.0;
}

pub fn compute_matrices(
    settings: Res<GraphicsSettings>,
    viewport: Res<SceneViewport>,
    library: Option<Res<MeshLibrary>>,
    mut matrices: ResMut<SceneMatrices>,
) {
    let empty = MeshLibrary::default();
    let library = library.as_deref().unwrap_or(&empty);
    let new = SceneMatrices::compute(&settings, &viewport, library);
    if *matrices != new {
        *matrices = new;
    }
}

/// Lighting parameters for display next to the formula.
pub fn lighting_formula(p: &LightingParams) -> String {
    format!(
        "I = ka + kd·max(N·L, 0) + ks·max(N·H, 0)^n   (ka={:.2}, kd={:.2}, ks={:.2}, n={:.0})",
        p.ambient, p.diffuse, p.specular, p.shininess
    )
}
