// Scene 2's world: every column (a neuron's activation, an embedding value, a next-token
// probability, a token) is a box moved and sized by its own 4x4 model matrix T * S, with
// s_y = the value itself, and lit by the same dot-product light as scene 1's mesh.
//
// Two ways the value reaches the vertex stage:
// - VALUES_IN_BUFFER (the MLP columns and the attention tiles, where the device has storage
//   buffers in the vertex stage): the instance's matrix is T alone, its tag is the column's
//   index into `values`, and S(1, values[tag], 1) is built here. For the MLP columns on the GPU
//   backend `values` is the very buffer the SwiGLU kernel wrote; otherwise the trace uploaded
//   into a buffer of the same shape.
// - otherwise: the instance's matrix is T * S (built on the CPU) and the value rides along as
//   the tag's bits, for the colour.
#import samemath::math::{mat_vec4, safe_normalize, shade}
#import bevy_pbr::mesh_functions::{get_world_from_local, get_tag}

struct WorldUniform {
    clip_from_world: mat4x4<f32>,
    // xyz: unit vector from the surface towards the light (scene 1's light).
    light_dir: vec4<f32>,
    eye: vec4<f32>,
    // ambient, diffuse, specular, shininess (scene 1's)
    coeffs: vec4<f32>,
    flags: vec4<u32>,
    // x: the colour scale (|value| for full colour); y: 1 = diverging colormap, 0 = `plain`.
    params: vec4<f32>,
    // sRGB 0..255 of the colormap: zero, positive end, negative end; and the plain colour.
    zero: vec4<f32>,
    positive: vec4<f32>,
    negative: vec4<f32>,
    plain: vec4<f32>,
}

@group(#{MATERIAL_BIND_GROUP}) @binding(0) var<uniform> world: WorldUniform;
#ifdef VALUES_IN_BUFFER
// layer * n_ff + neuron -> the activation (n_layer * n_ff f32, layer after layer).
@group(#{MATERIAL_BIND_GROUP}) @binding(1) var<storage, read> values: array<f32>;
// A stored value below this is "no value" (values.rs: ABSENT).
const ABSENT_BELOW: f32 = -1.0e37;
#endif

struct VertexIn {
    @builtin(instance_index) instance_index: u32,
    @location(0) position: vec3<f32>,
    @location(1) normal: vec3<f32>,
}

struct VertexOut {
    @builtin(position) clip_position: vec4<f32>,
    @location(0) world_position: vec3<f32>,
    @location(1) world_normal: vec3<f32>,
    @location(2) @interpolate(flat) value: f32,
}

@vertex
fn vertex(in: VertexIn) -> VertexOut {
    var out: VertexOut;
#ifdef VALUES_IN_BUFFER
    // T from the instance, S(1, value, 1) from the kernel's (or the uploaded) buffer: the
    // vertex is moved by T * S as T * (S * v).
    let stored = values[get_tag(in.instance_index)];
    // ABSENT marks a column with no value this step (an attention tile past the positions):
    // its box collapses to one point and draws nothing.
    let absent = stored < ABSENT_BELOW;
    let value = select(stored, 0.0, absent);
    let scale = mat4x4<f32>(
        vec4<f32>(1.0, 0.0, 0.0, 0.0),
        vec4<f32>(0.0, value, 0.0, 0.0),
        vec4<f32>(0.0, 0.0, 1.0, 0.0),
        vec4<f32>(0.0, 0.0, 0.0, 1.0),
    );
    let translate = get_world_from_local(in.instance_index);
    let local = mat_vec4(scale, vec4<f32>(in.position, 1.0));
    let p = mat_vec4(translate, local);
    let n = mat_vec4(translate, mat_vec4(scale, vec4<f32>(in.normal, 0.0)));
#else
    // T * S of this column, built on the CPU: S's s_y is the value, its bits the tag.
    let value = bitcast<f32>(get_tag(in.instance_index));
    let world_from_local = get_world_from_local(in.instance_index);
    let p = mat_vec4(world_from_local, vec4<f32>(in.position, 1.0));
    let n = mat_vec4(world_from_local, vec4<f32>(in.normal, 0.0));
#endif
    out.clip_position = mat_vec4(world.clip_from_world, p);
#ifdef VALUES_IN_BUFFER
    if absent {
        out.clip_position = vec4<f32>(0.0, 0.0, 0.0, 1.0);
    }
#endif
    out.world_position = p.xyz;
    // A box's faces are axis-aligned and S is diagonal, so S * n points where the
    // inverse-transpose would (a negative s_y turns the top face down, as it should).
    out.world_normal = safe_normalize(n.xyz);
    out.value = value;
    return out;
}

fn srgb_to_linear(c: vec3<f32>) -> vec3<f32> {
    let low = c / 12.92;
    let high = pow((c + vec3<f32>(0.055)) / 1.055, vec3<f32>(2.4));
    return select(high, low, c <= vec3<f32>(0.04045));
}

// The activation grid's colormap (src/llm_scene/activations.rs), byte for byte: 0 near the
// background, +scale full amber, -scale full blue, rounded to sRGB bytes.
fn colormap(value: f32) -> vec3<f32> {
    var t = 0.0;
    if world.params.x > 0.0 {
        t = clamp(value / world.params.x, -1.0, 1.0);
    }
    let end = select(world.negative.rgb, world.positive.rgb, t >= 0.0);
    let bytes = round(world.zero.rgb + (end - world.zero.rgb) * abs(t));
    return srgb_to_linear(bytes / 255.0);
}

@fragment
fn fragment(in: VertexOut) -> @location(0) vec4<f32> {
    var base = srgb_to_linear(world.plain.rgb / 255.0);
    if world.params.y > 0.5 {
        base = colormap(in.value);
    }
    let v = safe_normalize(world.eye.xyz - in.world_position);
    let n = safe_normalize(in.world_normal);
    return vec4<f32>(shade(n, world.light_dir.xyz, v, base, world.coeffs, world.flags), 1.0);
}
