//! Scene 2's world, the stage: the model drawn as geometry by scene 1's pipeline. Tokens along the
//! floor, the newest token's embedding row beside them, the 30 layers' MLP activations stacked
//! upward as 48 x 32 blocks of columns, the residual norms as a spine, the next-token
//! probabilities as bars on top. Each column is an entity whose model matrix is T * S with
//! s_y = the trace's value (Bevy draws each kind as one instanced draw), coloured by the value
//! and lit by scene 1's light through `shade` (shaders/world_material.wgsl). The panel views
//! stay one key (V) away.
//!
//! Truth (`values`): on the GPU backend the MLP columns are drawn from the buffer the SwiGLU
//! kernel wrote, bound as the draw's instance data; on the CPU backend (and a remote's trace) the
//! trace is uploaded into a buffer of the same shape; on WebGL2 (no storage buffers in the vertex
//! stage) the columns' own matrices carry it. Where a backend sends no trace the world says so
//! and draws nothing.

mod camera;
mod hover;
mod labels;
pub mod layout;
mod material;
mod values;

pub use crate::llm_scene::view::{Preset, StartView, WorldMode, parse_view};
pub use camera::WorldCamera;
pub use layout::WorldLayout;
pub use material::{ColumnsMaterial, Paint, WorldMaterial, WorldUniform};
pub use values::{ColumnValues, ValuesPath};

use bevy::camera::visibility::NoFrustumCulling;
use bevy::mesh::MeshTag;
use bevy::prelude::*;
use bevy::render::renderer::{RenderAdapter, RenderDevice};
use bevy_egui::EguiPrimaryContextPass;
use glam::Vec4;
use math::lighting::light_direction;
use math::mesh::{MeshData, cube};

use crate::graphics::GraphicsSettings;
use crate::graphics::material::to_bevy_mesh;
use crate::llm_scene::activations::color_scale;
use crate::llm_scene::state::{LlmStart, LlmView};
use crate::shell::{Scene, SceneViewport, UiSet};
use layout::{COLUMN, EMBEDDING_UNIT, HEAD_BARS, HEAD_UNIT, MAX_TOKENS, MLP_UNIT, SPINE_UNIT};

/// What kind of thing a world entity shows, and which one.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    Neuron {
        layer: usize,
        neuron: usize,
    },
    /// Query head `head`'s weight on drawn slot `slot` (see `layout::attention_base`).
    Attention {
        layer: usize,
        head: usize,
        slot: usize,
    },
    Embedding(usize),
    Token(usize),
    Spine(usize),
    Head(usize),
}

/// The materials, one per kind of column.
#[derive(Debug, Clone)]
struct Materials {
    mlp: Handle<WorldMaterial>,
    attention: Handle<WorldMaterial>,
    embedding: Handle<WorldMaterial>,
    prompt_token: Handle<WorldMaterial>,
    generated_token: Handle<WorldMaterial>,
    spine: Handle<WorldMaterial>,
    head: Handle<WorldMaterial>,
    sampled: Handle<WorldMaterial>,
}

impl Materials {
    fn all(&self) -> [(&Handle<WorldMaterial>, Paint); 8] {
        [
            (&self.mlp, Paint::Colormap(1.0)),
            // Weights are 0..1: 1 is full amber.
            (&self.attention, Paint::Colormap(1.0)),
            (&self.embedding, Paint::Colormap(1.0)),
            (&self.prompt_token, Paint::Plain([96.0, 110.0, 140.0])),
            (&self.generated_token, Paint::Plain([90.0, 190.0, 150.0])),
            (&self.spine, Paint::Plain([170.0, 170.0, 185.0])),
            (&self.head, Paint::Plain([90.0, 120.0, 170.0])),
            (&self.sampled, Paint::Plain([255.0, 210.0, 90.0])),
        ]
    }
}

/// The world as built: its shape, root entity, materials, and what it last drew.
#[derive(Resource, Debug, Default)]
pub struct WorldState {
    pub layout: Option<WorldLayout>,
    root: Option<Entity>,
    /// One entity per layer's block (hidden above a close-up's layer), then the head's.
    layer_roots: Vec<Entity>,
    head_root: Option<Entity>,
    materials: Option<Materials>,
    /// `LlmView::revision` drawn last.
    revision: Option<u64>,
    /// The colour scales of the MLP columns and the embedding (99th percentile of |value|).
    pub mlp_scale: f32,
    pub embedding_scale: f32,
    /// What is on the floor: the tokens drawn (oldest first) and how many there are in all.
    pub tokens: Vec<(llm::TokenInfo, bool)>,
    /// The column under the mouse.
    pub hovered: Option<Piece>,
    /// The labels drawn last frame (physical pixels: x, y, width, height), for the sidecar.
    pub label_rects: Vec<[f32; 4]>,
    /// After a Step: when its forward pass started playing upward through the layers.
    pub pulse_started: Option<f64>,
    /// The layer the pulse is at (the ones above are not computed yet in the story).
    pub pulse_layer: Option<usize>,
}

impl WorldState {
    /// The highest layer drawn: a layer close-up's, or the pulse's while a Step plays (`None`:
    /// all, and the head).
    pub fn cut(&self, camera: &WorldCamera) -> Option<usize> {
        match (camera.cut(), self.pulse_layer) {
            (Some(c), Some(p)) => Some(c.min(p)),
            (c, p) => c.or(p),
        }
    }
}

/// How long a Step's forward pass takes to play up through the layers.
pub const PULSE_SECONDS: f64 = 1.0;

pub(super) fn plugin(app: &mut App) {
    app.add_plugins(MaterialPlugin::<WorldMaterial>::default())
        .add_plugins(MaterialPlugin::<ColumnsMaterial>::default())
        .init_resource::<WorldMode>()
        .init_resource::<WorldState>()
        .init_resource::<ColumnValues>()
        .init_resource::<WorldCamera>()
        .add_systems(Startup, material::register_shader)
        .add_systems(
            Update,
            (
                (camera::world_keys, camera::world_mouse).run_if(in_state(Scene::Llm)),
                build_world,
                update_world,
                values::bind_values,
                sync_materials,
            )
                .chain()
                .after(crate::llm_scene::poll_engine),
        )
        .add_systems(
            EguiPrimaryContextPass,
            labels::world_overlay
                .in_set(UiSet::Overlay)
                .run_if(in_state(Scene::Llm)),
        );
}

/// The renderer's adapter and device (absent in headless apps), and the columns' buffer.
type ColumnsGpu<'w> = (
    Option<Res<'w, RenderAdapter>>,
    Option<Res<'w, RenderDevice>>,
    ResMut<'w, ColumnValues>,
    ResMut<'w, Assets<ColumnsMaterial>>,
);

/// Spawn the columns once the model's (or the trace's) shape is known; again if it changes.
fn build_world(
    mut commands: Commands,
    view: Res<LlmView>,
    start: Res<LlmStart>,
    mut mode: ResMut<WorldMode>,
    mut state: ResMut<WorldState>,
    mut camera: ResMut<WorldCamera>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<WorldMaterial>>,
    (adapter, device, mut values, mut columns): ColumnsGpu,
) {
    let Some(layout) = camera::layout_of(&view) else {
        return;
    };
    if state.layout == Some(layout) {
        return;
    }
    if let Some(root) = state.root.take() {
        commands.entity(root).despawn();
    }
    let first = state.layout.is_none();
    let m = state.materials.get_or_insert_with(|| {
        let mut new = || {
            materials.add(WorldMaterial {
                world: WorldUniform::default(),
            })
        };
        Materials {
            mlp: new(),
            attention: new(),
            embedding: new(),
            prompt_token: new(),
            generated_token: new(),
            spine: new(),
            head: new(),
            sampled: new(),
        }
    });
    let m = m.clone();
    let mut column = |unit: f32| meshes.add(to_bevy_mesh(&column_mesh(unit)));
    let (mlp_mesh, embedding_mesh, head_mesh, spine_mesh) = (
        column(MLP_UNIT),
        column(EMBEDDING_UNIT),
        column(HEAD_UNIT),
        column(SPINE_UNIT),
    );
    let token_mesh = column(0.3);
    let attention_mesh = meshes.add(to_bevy_mesh(&column_mesh_sized(
        layout::ATTENTION_UNIT,
        layout::ATTENTION_PITCH * 0.85,
    )));
    let root = commands
        .spawn((Transform::IDENTITY, Visibility::Hidden, Name::new("world")))
        .id();
    let mut group = |name: String| {
        commands
            .spawn((
                Transform::IDENTITY,
                Visibility::Inherited,
                Name::new(name),
                ChildOf(root),
            ))
            .id()
    };
    let layer_roots: Vec<Entity> = (0..layout.layers)
        .map(|l| group(format!("layer {l}")))
        .collect();
    let head_root = group("head".into());
    let piece =
        |piece: Piece, base: glam::Vec3, mesh: &Handle<Mesh>, mat: &Handle<WorldMaterial>| {
            let parent = match piece {
                Piece::Neuron { layer, .. } | Piece::Attention { layer, .. } => layer_roots[layer],
                Piece::Head(_) => head_root,
                _ => root,
            };
            (
                piece,
                Mesh3d(mesh.clone()),
                MeshMaterial3d(mat.clone()),
                column_transform(base, 0.0),
                MeshTag(0.0f32.to_bits()),
                NoFrustumCulling,
                Visibility::Inherited,
                ChildOf(parent),
            )
        };
    let mut batch = Vec::with_capacity(layout.layers * layout.neurons + layout.embedding + 128);
    // The MLP columns: from a storage buffer where the vertex stage can read one (T here, S
    // from the buffer in the shader), else each with its own T * S (`update_world`).
    let buffered = device
        .as_deref()
        .filter(|d| values::vertex_storage(adapter.as_deref(), Some(d)));
    if let Some(device) = buffered {
        let floats = layout.layers * layout.neurons;
        let material = values.start(device, floats, &mut columns);
        let mut neurons = Vec::with_capacity(floats);
        for (layer, &layer_root) in layer_roots.iter().enumerate() {
            for neuron in 0..layout.neurons {
                neurons.push((
                    Piece::Neuron { layer, neuron },
                    Mesh3d(mlp_mesh.clone()),
                    MeshMaterial3d(material.clone()),
                    column_transform(layout.column_base(layer, neuron), 1.0),
                    MeshTag((layer * layout.neurons + neuron) as u32),
                    NoFrustumCulling,
                    Visibility::Inherited,
                    ChildOf(layer_root),
                ));
            }
        }
        commands.spawn_batch(neurons);
    } else {
        values.path = Some(ValuesPath::Entities);
        for layer in 0..layout.layers {
            for neuron in 0..layout.neurons {
                let base = layout.column_base(layer, neuron);
                batch.push(piece(
                    Piece::Neuron { layer, neuron },
                    base,
                    &mlp_mesh,
                    &m.mlp,
                ));
            }
        }
    }
    let kv_of = |head: usize| head * layout.kv_heads / layout.heads.max(1);
    // The attention tiles: from a buffer of ours where the vertex stage reads one (a token then
    // writes the buffer, not 12,960 entities), else each with its own T * S.
    if let Some(device) = buffered {
        let count = layout.layers * layout.heads * layout::ATTENTION_POSITIONS;
        let material = values.start_tiles(device, count, &mut columns);
        let mut tiles = Vec::with_capacity(count);
        for (layer, &layer_root) in layer_roots.iter().enumerate() {
            for head in 0..layout.heads {
                for slot in 0..layout::ATTENTION_POSITIONS {
                    let base = layout.attention_base(layer, head, kv_of(head), slot);
                    let index = values::tile_index(layout.heads, layer, head, slot);
                    tiles.push((
                        Piece::Attention { layer, head, slot },
                        Mesh3d(attention_mesh.clone()),
                        MeshMaterial3d(material.clone()),
                        column_transform(base, 1.0),
                        MeshTag(index as u32),
                        NoFrustumCulling,
                        Visibility::Inherited,
                        ChildOf(layer_root),
                    ));
                }
            }
        }
        commands.spawn_batch(tiles);
    } else {
        for layer in 0..layout.layers {
            for head in 0..layout.heads {
                for slot in 0..layout::ATTENTION_POSITIONS {
                    let base = layout.attention_base(layer, head, kv_of(head), slot);
                    let p = Piece::Attention { layer, head, slot };
                    batch.push(piece(p, base, &attention_mesh, &m.attention));
                }
            }
        }
    }
    for i in 0..layout.embedding {
        let base = layout.embedding_base(i);
        batch.push(piece(
            Piece::Embedding(i),
            base,
            &embedding_mesh,
            &m.embedding,
        ));
    }
    for slot in 0..MAX_TOKENS {
        let base = layout.token_base(slot, MAX_TOKENS);
        batch.push(piece(
            Piece::Token(slot),
            base,
            &token_mesh,
            &m.prompt_token,
        ));
    }
    for layer in 0..layout.layers {
        let base = layout.spine_base(layer);
        batch.push(piece(Piece::Spine(layer), base, &spine_mesh, &m.spine));
    }
    for rank in 0..HEAD_BARS {
        let base = layout.head_base(rank);
        batch.push(piece(Piece::Head(rank), base, &head_mesh, &m.head));
    }
    commands.spawn_batch(batch);
    state.layout = Some(layout);
    state.root = Some(root);
    state.layer_roots = layer_roots;
    state.head_root = Some(head_root);
    state.revision = None;
    if first {
        let preset = match start.view {
            Some(StartView::World(p)) => p,
            Some(StartView::Panels) => {
                mode.world = false;
                Preset::Overview
            }
            None => Preset::Overview,
        };
        camera.go(preset, &layout);
        camera.current = camera.goal;
    }
}

/// `layout::column_matrix` as Bevy's transform: T(base) * S(1, value, 1), exactly (no rotation,
/// so the matrix Bevy builds from it is that product).
pub fn column_transform(base: glam::Vec3, value: f32) -> Transform {
    Transform {
        translation: base,
        rotation: Quat::IDENTITY,
        scale: glam::Vec3::new(1.0, value, 1.0),
    }
}

/// A column `unit` tall standing on y = 0, `COLUMN` wide and deep.
fn column_mesh(unit: f32) -> MeshData {
    column_mesh_sized(unit, COLUMN)
}

/// A column `unit` tall standing on y = 0, `width` wide and deep.
fn column_mesh_sized(unit: f32, width: f32) -> MeshData {
    let mut m = cube();
    for p in &mut m.positions {
        *p = glam::Vec3::new(
            p.x * width / 2.0,
            (p.y + 1.0) * unit / 2.0,
            p.z * width / 2.0,
        );
    }
    m
}

/// Each new trace: every column's S (s_y = its value) and tag; the tokens on the floor.
fn update_world(
    view: Res<LlmView>,
    time: Res<Time>,
    mut state: ResMut<WorldState>,
    mut pieces: Query<(
        &Piece,
        &mut Transform,
        &mut MeshTag,
        &mut Visibility,
        &mut MeshMaterial3d<WorldMaterial>,
    )>,
) {
    let (Some(layout), Some(materials)) = (state.layout, state.materials.clone()) else {
        return;
    };
    if state.revision == Some(view.revision) {
        return;
    }
    // A Step (not a stream of tokens): its forward pass plays upward.
    let stepped = state.revision.is_some()
        && view.trace.is_some()
        && view.status != crate::llm_scene::state::EngineStatus::Generating;
    state.pulse_started = stepped.then(|| time.elapsed_secs_f64());
    state.revision = Some(view.revision);
    let trace = view.trace.as_ref();
    let all: Vec<f32> = trace
        .map(|t| {
            t.layers
                .iter()
                .flat_map(|l| l.mlp_activation.iter().copied())
                .collect()
        })
        .unwrap_or_default();
    state.mlp_scale = color_scale(&all);
    state.embedding_scale = trace.map_or(1.0, |t| color_scale(&t.embedding));
    let tokens: Vec<(llm::TokenInfo, bool)> = view
        .prompt_tokens
        .iter()
        .map(|t| (t.clone(), false))
        .chain(view.generated.iter().map(|t| (t.clone(), true)))
        .collect();
    let skip = tokens.len().saturating_sub(MAX_TOKENS);
    state.tokens = tokens[skip..].to_vec();
    let drawn = state.tokens.len();
    for (piece, mut transform, mut tag, mut visibility, mut material) in &mut pieces {
        let (base, value, shown) = match *piece {
            Piece::Neuron { layer, neuron } => {
                let v = trace
                    .and_then(|t| t.layers.get(layer))
                    .and_then(|l| l.mlp_activation.get(neuron));
                (layout.column_base(layer, neuron), v.copied(), true)
            }
            Piece::Attention { layer, head, slot } => {
                let kv = trace.and_then(|t| t.kv_head_of_head.get(head)).copied();
                let positions = trace.map_or(0, |t| t.position + 1);
                let first = positions.saturating_sub(layout::ATTENTION_POSITIONS);
                let v = trace
                    .and_then(|t| t.layers.get(layer))
                    .and_then(|l| l.attention.get(head))
                    .and_then(|row| row.get(first + slot));
                let base = layout.attention_base(layer, head, kv.unwrap_or(0), slot);
                (base, v.copied(), true)
            }
            Piece::Embedding(i) => {
                let v = trace.and_then(|t| t.embedding.get(i));
                (layout.embedding_base(i), v.copied(), true)
            }
            Piece::Token(slot) => {
                if let Some((_, generated)) = state.tokens.get(slot) {
                    let wanted = if *generated {
                        &materials.generated_token
                    } else {
                        &materials.prompt_token
                    };
                    if material.0 != *wanted {
                        material.0 = wanted.clone();
                    }
                }
                (layout.token_base(slot, drawn), Some(1.0), slot < drawn)
            }
            Piece::Spine(layer) => {
                let v = trace
                    .and_then(|t| t.layers.get(layer))
                    .map(|l| l.residual_norm_out);
                (layout.spine_base(layer), v, true)
            }
            Piece::Head(rank) => {
                let c = trace.and_then(|t| t.top_k.get(rank));
                if let Some(c) = c {
                    let sampled = view.sampled.as_ref().is_some_and(|s| s.id == c.id);
                    let wanted = if sampled {
                        &materials.sampled
                    } else {
                        &materials.head
                    };
                    if material.0 != *wanted {
                        material.0 = wanted.clone();
                    }
                }
                (layout.head_base(rank), c.map(|c| c.prob), true)
            }
        };
        let vis = match value {
            Some(_) if shown => Visibility::Inherited,
            _ => Visibility::Hidden,
        };
        if *visibility != vis {
            *visibility = vis;
        }
        let value = value.unwrap_or(0.0);
        // Written only when it changed: an unchanged entity is not extracted again.
        let moved = column_transform(base, value);
        if *transform != moved {
            *transform = moved;
        }
        if tag.0 != value.to_bits() {
            *tag = MeshTag(value.to_bits());
        }
    }
}

/// Camera and light into every material; the world shown only in scene 2's world view.
fn sync_materials(
    mut state: ResMut<WorldState>,
    time: Res<Time>,
    mode: Res<WorldMode>,
    scene: Res<State<Scene>>,
    view: Res<LlmView>,
    camera: Res<WorldCamera>,
    viewport: Res<SceneViewport>,
    graphics: Res<GraphicsSettings>,
    mut materials: ResMut<Assets<WorldMaterial>>,
    (values, mut columns): (Res<ColumnValues>, ResMut<Assets<ColumnsMaterial>>),
    mut roots: Query<&mut Visibility, Without<Piece>>,
) {
    let (Some(layout), Some(root)) = (state.layout, state.root) else {
        return;
    };
    // The pulse climbs the layers, one after another, in PULSE_SECONDS.
    let pulse = state.pulse_started.and_then(|t0| {
        let t = (time.elapsed_secs_f64() - t0) / PULSE_SECONDS;
        // (A trace may have no layers: then the pulse stays at 0.)
        (t < 1.0).then(|| {
            ((t.max(0.0) * layout.layers as f64) as usize).min(layout.layers.saturating_sub(1))
        })
    });
    if pulse.is_none() {
        state.pulse_started = None;
    }
    state.pulse_layer = pulse;
    let Some(m) = state.materials.clone() else {
        return;
    };
    let m = &m;
    let show = *scene.get() == Scene::Llm && mode.world && view.trace.is_some();
    let mut set = |entity: Entity, on: bool, inherit: bool| {
        if let Ok(mut v) = roots.get_mut(entity) {
            let wanted = match (on, inherit) {
                (false, _) => Visibility::Hidden,
                (true, true) => Visibility::Inherited,
                (true, false) => Visibility::Visible,
            };
            if *v != wanted {
                *v = wanted;
            }
        }
    };
    set(root, show, false);
    let cut = state.cut(&camera);
    for (l, &e) in state.layer_roots.iter().enumerate() {
        set(e, cut.is_none_or(|c| l <= c), true);
    }
    if let Some(h) = state.head_root {
        set(h, cut.is_none(), true);
    }
    if !show {
        return;
    }
    let l = &graphics.lighting;
    let chain = camera.chain(viewport.physical);
    let base = WorldUniform {
        clip_from_world: chain.clip_from_world(),
        light_dir: light_direction(l.azimuth_deg, l.elevation_deg).extend(0.0),
        eye: camera.current.eye().extend(1.0),
        coeffs: Vec4::new(l.ambient, l.diffuse, l.specular, l.shininess),
        flags: glam::UVec4::new(
            l.ambient_on as u32,
            l.diffuse_on as u32,
            l.specular_on as u32,
            1,
        ),
        ..WorldUniform::default()
    };
    for (handle, paint) in m.all() {
        let paint = match paint {
            Paint::Colormap(_) if *handle == m.mlp => Paint::Colormap(state.mlp_scale),
            Paint::Colormap(_) if *handle == m.embedding => Paint::Colormap(state.embedding_scale),
            p => p,
        };
        let uniform = base.with_paint(paint);
        if materials.get(handle).is_some_and(|x| x.world != uniform)
            && let Some(mut x) = materials.get_mut(handle)
        {
            x.world = uniform;
        }
    }
    // The buffer-drawn columns: the MLP's at the MLP's scale, the tiles' as the attention's
    // entities are painted (weights 0..1).
    let buffered = [
        (&values.material, Paint::Colormap(state.mlp_scale)),
        (&values.tiles_material, Paint::Colormap(1.0)),
    ];
    for (handle, paint) in buffered {
        let Some(handle) = handle else {
            continue;
        };
        let uniform = base.with_paint(paint);
        if columns.get(handle).is_some_and(|x| x.world != uniform)
            && let Some(mut x) = columns.get_mut(handle)
        {
            x.world = uniform;
        }
    }
}

/// What the world drew, for the screenshot's sidecar: its camera chain and light, the colour
/// scales, its shape, and every neuron column's height and tag as the entities hold them.
pub fn sidecar(world: &World) -> serde_json::Value {
    use serde_json::json;
    let (Some(state), Some(camera), Some(viewport), Some(mode)) = (
        world.get_resource::<WorldState>(),
        world.get_resource::<WorldCamera>(),
        world.get_resource::<SceneViewport>(),
        world.get_resource::<WorldMode>(),
    ) else {
        return json!(null);
    };
    let Some(layout) = state.layout else {
        return json!(null);
    };
    // Each neuron column's s_y as the draw gets it: the entity's own S (tag = its bits), or the
    // bound buffer read back at the column's tag (its index; the entity's S is 1).
    let values = world.get_resource::<ColumnValues>();
    let path = values.and_then(|v| v.path);
    let bound = match path {
        Some(ValuesPath::Entities) | None => None,
        Some(_) => values::read_bound(world),
    };
    let mut heights = vec![vec![f32::NAN; layout.neurons]; layout.layers];
    let mut tags_match = true;
    if let Some(mut q) = world.try_query::<(&Piece, &Transform, &MeshTag)>() {
        for (piece, t, tag) in q.iter(world) {
            if let Piece::Neuron { layer, neuron } = *piece {
                if path == Some(ValuesPath::Entities) {
                    heights[layer][neuron] = t.scale.y;
                    tags_match &= tag.0 == t.scale.y.to_bits();
                } else {
                    let at = layer * layout.neurons + neuron;
                    heights[layer][neuron] = bound
                        .as_ref()
                        .and_then(|b| b.get(at))
                        .copied()
                        .unwrap_or(f32::NAN);
                    tags_match &= tag.0 as usize == at && t.scale.y == 1.0;
                }
            }
        }
    }
    let uploaded: Vec<&[f32]> = values
        .filter(|v| v.path == Some(ValuesPath::Uploaded))
        .map(|v| v.uploaded.chunks(layout.neurons.max(1)).collect())
        .unwrap_or_default();
    let chain = camera.chain(viewport.physical);
    let v = chain.viewport;
    json!({
        "shown": mode.world,
        "preset": format!("{:?}", camera.preset),
        "cut": camera.cut(),
        "view_from_world": chain.view_from_world.to_cols_array(),
        "clip_from_view": chain.clip_from_view.to_cols_array(),
        "viewport": [v.x, v.y, v.width, v.height],
        "eye": camera.current.eye().to_array(),
        "mlp_scale": state.mlp_scale,
        "embedding_scale": state.embedding_scale,
        "layout": {"layers": layout.layers, "neurons": layout.neurons,
            "embedding": layout.embedding, "cols": layout.cols},
        "values_path": path.map(ValuesPath::name),
        "heights": heights,
        "uploaded": uploaded,
        "tags_match": tags_match,
        "labels": state.label_rects,
    })
}
