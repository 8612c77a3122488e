//! The scene-1 material: our WGSL shader fed with the user's model matrix as a uniform.
//!
//! Bevy's `Transform` is not used for placement (it cannot hold shear, and its prepass and
//! shadow passes would use Bevy's own vertex shader), so prepass and shadows are off and the
//! entity carries `NoFrustumCulling`.

use bevy::asset::RenderAssetUsages;
use bevy::asset::uuid_handle;
use bevy::camera::visibility::NoFrustumCulling;
use bevy::mesh::{Indices, MeshVertexBufferLayoutRef, PrimitiveTopology};
use bevy::prelude::*;
use bevy::render::render_resource::{
    AsBindGroup, RenderPipelineDescriptor, ShaderType, SpecializedMeshPipelineError,
};
use glam::{Mat3, Mat4, UVec4, Vec4};

use super::scene::{GraphicsSettings, MeshChoice, MeshLibrary, SceneMatrices};
use crate::shell::Scene;
use crate::shell::UiSet;
use math::mesh::MeshData;

/// The shared math (`#define_import_path samemath::math`).
pub const MATH_SHADER: Handle<Shader> = uuid_handle!("5a3e4c1e-8f0b-4b8e-9d1a-6b2f3c4d5e61");
/// The scene-1 vertex and fragment stages.
pub const MATRIX_SHADER: Handle<Shader> = uuid_handle!("5a3e4c1e-8f0b-4b8e-9d1a-6b2f3c4d5e62");

pub const MATH_WGSL: &str = include_str!("../../shaders/samemath_math.wgsl");
pub const MATRIX_WGSL: &str = include_str!("../../shaders/matrix_material.wgsl");

/// Mirrors `SceneUniform` in shaders/matrix_material.wgsl (16-byte aligned for WebGL2).
#[derive(ShaderType, Clone, Copy, Debug, PartialEq, Default)]
pub struct SceneUniform {
    pub world_from_local: Mat4,
    pub clip_from_world: Mat4,
    pub normal_from_local: Mat4,
    pub light_dir: Vec4,
    pub eye: Vec4,
    pub base_color: Vec4,
    pub coeffs: Vec4,
    pub flags: UVec4,
}

impl SceneUniform {
    pub fn new(m: &SceneMatrices, settings: &GraphicsSettings) -> Self {
        let l = &settings.lighting;
        Self {
            world_from_local: m.chain.world_from_local,
            clip_from_world: m.chain.clip_from_world(),
            normal_from_local: Mat4::from_mat3(m.normal.matrix),
            light_dir: m.light_dir.extend(0.0),
            eye: m.eye.extend(1.0),
            base_color: glam::Vec3::from(l.base_color).extend(1.0),
            coeffs: Vec4::new(l.ambient, l.diffuse, l.specular, l.shininess),
            flags: UVec4::new(
                l.ambient_on as u32,
                l.diffuse_on as u32,
                l.specular_on as u32,
                l.per_fragment as u32,
            ),
        }
    }

    pub fn normal_matrix3(&self) -> Mat3 {
        Mat3::from_mat4(self.normal_from_local)
    }
}

#[derive(Asset, TypePath, AsBindGroup, Clone, Debug)]
pub struct MatrixMaterial {
    #[uniform(0)]
    pub scene: SceneUniform,
}

/// A material of ours: `$shader` is both its vertex and fragment stage (its own vertex stage,
/// so no prepass or shadow pass, which would use Bevy's), on `position_normal_both_faces`'s
/// pipeline; `$def`s are the shader definitions that pick its variant.
macro_rules! our_material {
    ($material:ty, $shader:expr, [$($def:literal),*]) => {
        impl bevy::pbr::Material for $material {
            fn vertex_shader() -> bevy::shader::ShaderRef {
                $shader.into()
            }

            fn fragment_shader() -> bevy::shader::ShaderRef {
                $shader.into()
            }

            fn enable_prepass() -> bool {
                false
            }

            fn enable_shadows() -> bool {
                false
            }

            fn specialize(
                _pipeline: &bevy::pbr::MaterialPipeline,
                descriptor: &mut bevy::render::render_resource::RenderPipelineDescriptor,
                layout: &bevy::mesh::MeshVertexBufferLayoutRef,
                _key: bevy::pbr::MaterialPipelineKey<Self>,
            ) -> Result<(), bevy::render::render_resource::SpecializedMeshPipelineError> {
                $(descriptor.vertex.shader_defs.push($def.into());)*
                $crate::graphics::material::position_normal_both_faces(descriptor, layout)
            }
        }
    };
}
pub(crate) use our_material;

our_material!(MatrixMaterial, MATRIX_SHADER, []);

/// The pipeline our materials share: positions at location 0 and normals at 1 (the only
/// attributes the shaders read), and both faces drawn, since a mirroring scale (a negative
/// factor, or a negative activation in scene 2's world) flips the winding.
pub fn position_normal_both_faces(
    descriptor: &mut RenderPipelineDescriptor,
    layout: &MeshVertexBufferLayoutRef,
) -> Result<(), SpecializedMeshPipelineError> {
    let vertex_layout = layout.0.get_layout(&[
        Mesh::ATTRIBUTE_POSITION.at_shader_location(0),
        Mesh::ATTRIBUTE_NORMAL.at_shader_location(1),
    ])?;
    descriptor.vertex.buffers = vec![vertex_layout];
    descriptor.primitive.cull_mode = None;
    Ok(())
}

/// The drawn entity and the GPU copies of the meshes.
#[derive(Resource, Debug)]
pub struct SceneHandles {
    pub material: Handle<MatrixMaterial>,
    pub meshes: Vec<(MeshChoice, Handle<Mesh>)>,
    pub entity: Entity,
}

#[derive(Component, Debug)]
pub struct SceneMesh;

pub(super) fn plugin(app: &mut App) {
    app.add_plugins(MaterialPlugin::<MatrixMaterial>::default())
        .add_systems(Startup, (register_shaders, spawn_scene_mesh).chain())
        .add_systems(
            bevy_egui::EguiPrimaryContextPass,
            sync_gpu
                .in_set(UiSet::Viewport)
                .after(super::scene::compute_matrices),
        );
}

fn register_shaders(mut shaders: ResMut<Assets<Shader>>) {
    let sources = [
        (&MATH_SHADER, MATH_WGSL, "shaders/samemath_math.wgsl"),
        (&MATRIX_SHADER, MATRIX_WGSL, "shaders/matrix_material.wgsl"),
    ];
    for (handle, source, path) in sources {
        if let Err(e) = shaders.insert(handle.id(), Shader::from_wgsl(source, path)) {
            error!("cannot register {path}: {e}");
        }
    }
}

pub fn to_bevy_mesh(data: &MeshData) -> Mesh {
    let positions: Vec<[f32; 3]> = data.positions.iter().map(|p| p.to_array()).collect();
    let normals: Vec<[f32; 3]> = data.normals.iter().map(|n| n.to_array()).collect();
    Mesh::new(
        PrimitiveTopology::TriangleList,
        RenderAssetUsages::RENDER_WORLD,
    )
    .with_inserted_attribute(Mesh::ATTRIBUTE_POSITION, positions)
    .with_inserted_attribute(Mesh::ATTRIBUTE_NORMAL, normals)
    .with_inserted_indices(Indices::U32(data.indices.clone()))
}

fn spawn_scene_mesh(
    mut commands: Commands,
    library: Res<MeshLibrary>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<MatrixMaterial>>,
) {
    let handles: Vec<(MeshChoice, Handle<Mesh>)> = library
        .entries
        .iter()
        .filter_map(|e| {
            e.mesh
                .as_ref()
                .ok()
                .map(|m| (e.choice, meshes.add(to_bevy_mesh(m))))
        })
        .collect();
    let material = materials.add(MatrixMaterial {
        scene: SceneUniform::default(),
    });
    let mut entity = commands.spawn((
        SceneMesh,
        MeshMaterial3d(material.clone()),
        NoFrustumCulling,
        Transform::IDENTITY,
        Visibility::Hidden,
    ));
    if let Some((_, first)) = handles.first() {
        entity.insert(Mesh3d(first.clone()));
    }
    let entity = entity.id();
    commands.insert_resource(SceneHandles {
        material,
        meshes: handles,
        entity,
    });
}

/// Upload this frame's matrices, swap the mesh, show it only in scene 1.
fn sync_gpu(
    matrices: Res<SceneMatrices>,
    settings: Res<GraphicsSettings>,
    scene: Res<State<Scene>>,
    handles: Option<Res<SceneHandles>>,
    mut materials: ResMut<Assets<MatrixMaterial>>,
    mut query: Query<(&mut Visibility, Option<&mut Mesh3d>), With<SceneMesh>>,
    mut commands: Commands,
) {
    let Some(handles) = handles else {
        return;
    };
    let uniform = SceneUniform::new(&matrices, &settings);
    if materials
        .get(&handles.material)
        .is_some_and(|m| m.scene != uniform)
        && let Some(mut material) = materials.get_mut(&handles.material)
    {
        material.scene = uniform;
    }
    let Ok((mut visibility, mesh3d)) = query.get_mut(handles.entity) else {
        return;
    };
    let wanted = handles
        .meshes
        .iter()
        .find(|(c, _)| *c == matrices.mesh)
        .map(|(_, h)| h.clone());
    let show = *scene.get() == Scene::Graphics && wanted.is_some();
    let vis = if show {
        Visibility::Visible
    } else {
        Visibility::Hidden
    };
    if *visibility != vis {
        *visibility = vis;
    }
    match (mesh3d, wanted) {
        (Some(mut current), Some(h)) if current.0 != h => current.0 = h,
        (None, Some(h)) => {
            commands.entity(handles.entity).insert(Mesh3d(h));
        }
        _ => {}
    }
}
