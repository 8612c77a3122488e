// Scene 1: every vertex is moved by the user's own model matrix (a uniform, not Bevy's
// Transform), then by view-projection; normals by the normal matrix computed on the CPU.
// Lighting per vertex (Gouraud) or per fragment, from the shared math file.
#import samemath::math::{mat_vec4, safe_normalize, shade}

struct SceneUniform {
    world_from_local: mat4x4<f32>,
    clip_from_world: mat4x4<f32>,
    // Upper 3x3 = inverse-transpose of world_from_local (cofactor fallback when singular).
    normal_from_local: mat4x4<f32>,
    // xyz: unit vector from the surface towards the light (world space).
    light_dir: vec4<f32>,
    // xyz: camera position (world space).
    eye: vec4<f32>,
    base_color: vec4<f32>,
    // ambient, diffuse, specular, shininess
    coeffs: vec4<f32>,
    // ambient_on, diffuse_on, specular_on, per_fragment
    flags: vec4<u32>,
}

@group(#{MATERIAL_BIND_GROUP}) @binding(0) var<uniform> scene: SceneUniform;

struct VertexIn {
    @location(0) position: vec3<f32>,
    @location(1) normal: vec3<f32>,
}

struct VertexOut {
    @builtin(position) clip_position: vec4<f32>,
    @location(0) world_position: vec3<f32>,
    @location(1) world_normal: vec3<f32>,
    @location(2) gouraud_color: vec3<f32>,
}

fn light_at(world_position: vec3<f32>, n: vec3<f32>) -> vec3<f32> {
    let v = safe_normalize(scene.eye.xyz - world_position);
    return shade(n, scene.light_dir.xyz, v, scene.base_color.rgb, scene.coeffs, scene.flags);
}

@vertex
fn vertex(in: VertexIn) -> VertexOut {
    var out: VertexOut;
    let world = mat_vec4(scene.world_from_local, vec4<f32>(in.position, 1.0));
    out.clip_position = mat_vec4(scene.clip_from_world, world);
    out.world_position = world.xyz;
    out.world_normal = safe_normalize(mat_vec4(scene.normal_from_local, vec4<f32>(in.normal, 0.0)).xyz);
    out.gouraud_color = light_at(world.xyz, out.world_normal);
    return out;
}

@fragment
fn fragment(in: VertexOut) -> @location(0) vec4<f32> {
    if scene.flags.w != 0u {
        return vec4<f32>(light_at(in.world_position, safe_normalize(in.world_normal)), 1.0);
    }
    return vec4<f32>(in.gouraud_color, 1.0);
}
