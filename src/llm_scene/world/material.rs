//! The world's materials: `shaders/world_material.wgsl`, whose vertex stage moves each column by
//! its own T * S with `mat_vec4` and whose light is scene 1's `shade`, fed with scene 2's orbit
//! camera and scene 1's light. `ColumnsMaterial` is the same shader reading the MLP columns'
//! values from a storage buffer (the GPU kernel's own, or the uploaded trace).

use bevy::asset::uuid_handle;
use bevy::prelude::*;
use bevy::render::render_resource::{AsBindGroup, Buffer, ShaderType};
use glam::{Mat4, UVec4, Vec4};

use crate::llm_scene::activations::{NEGATIVE, POSITIVE, ZERO};

pub const WORLD_SHADER: Handle<Shader> = uuid_handle!("5a3e4c1e-8f0b-4b8e-9d1a-6b2f3c4d5e63");
pub const WORLD_WGSL: &str = include_str!("../../../shaders/world_material.wgsl");

/// Mirrors `WorldUniform` in shaders/world_material.wgsl (16-byte aligned for WebGL2).
#[derive(ShaderType, Clone, Copy, Debug, PartialEq, Default)]
pub struct WorldUniform {
    pub clip_from_world: Mat4,
    pub light_dir: Vec4,
    pub eye: Vec4,
    pub coeffs: Vec4,
    pub flags: UVec4,
    pub params: Vec4,
    pub zero: Vec4,
    pub positive: Vec4,
    pub negative: Vec4,
    pub plain: Vec4,
}

/// How a kind of column is coloured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Paint {
    /// The activation grid's diverging colormap at this scale.
    Colormap(f32),
    /// One colour (sRGB bytes).
    Plain([f32; 3]),
}

impl WorldUniform {
    pub fn with_paint(mut self, paint: Paint) -> Self {
        let rgb = |c: [f32; 3]| Vec4::new(c[0], c[1], c[2], 255.0);
        self.zero = rgb(ZERO);
        self.positive = rgb(POSITIVE);
        self.negative = rgb(NEGATIVE);
        match paint {
            Paint::Colormap(scale) => self.params = Vec4::new(scale, 1.0, 0.0, 0.0),
            Paint::Plain(c) => {
                self.params = Vec4::ZERO;
                self.plain = rgb(c);
            }
        }
        self
    }
}

#[derive(Asset, TypePath, AsBindGroup, Clone, Debug)]
pub struct WorldMaterial {
    #[uniform(0)]
    pub world: WorldUniform,
}

/// Columns drawn from a storage buffer (the MLP's, the attention tiles'), where the device reads
/// one in the vertex stage: each instance's matrix is T alone and its tag the column's index
/// into `values`, whose value is S's s_y.
#[derive(Asset, TypePath, AsBindGroup, Clone, Debug)]
pub struct ColumnsMaterial {
    #[uniform(0)]
    pub world: WorldUniform,
    /// One f32 per column (the MLP's: `n_layer * n_ff`, layer after layer).
    #[storage(1, read_only, buffer, visibility(vertex))]
    pub values: Buffer,
}

// Both run shaders/world_material.wgsl; the columns' variant reads s_y from the buffer.
crate::graphics::material::our_material!(WorldMaterial, WORLD_SHADER, []);
crate::graphics::material::our_material!(ColumnsMaterial, WORLD_SHADER, ["VALUES_IN_BUFFER"]);

pub(super) fn register_shader(mut shaders: ResMut<Assets<Shader>>) {
    let path = "shaders/world_material.wgsl";
    if let Err(e) = shaders.insert(WORLD_SHADER.id(), Shader::from_wgsl(WORLD_WGSL, path)) {
        error!("cannot register {path}: {e}");
    }
}
