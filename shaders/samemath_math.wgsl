// The small math both worlds share: the scalar product, matrix x vector, and dot-product
// lighting. Scene 1's vertex and fragment stages import it; the LLM's mat-vec kernels import it
// too, so "the same math" is one function in one file. CPU twins: crates/math/src/lighting.rs.
#define_import_path samemath::math

// The scalar product, written out as four multiply-adds: a vertex coordinate and a neuron's
// pre-activation are both sums of this.
fn dot4(a: vec4<f32>, b: vec4<f32>) -> f32 {
    return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}

// Matrix x vector for column-major matrices (column vectors, M.v): output i is the dot product
// of row i of M with v.
fn mat_vec4(m: mat4x4<f32>, v: vec4<f32>) -> vec4<f32> {
    let rows = transpose(m);
    return vec4<f32>(dot4(rows[0], v), dot4(rows[1], v), dot4(rows[2], v), dot4(rows[3], v));
}

// normalize(), but a zero vector stays zero instead of becoming NaN.
fn safe_normalize(v: vec3<f32>) -> vec3<f32> {
    let len2 = dot(v, v);
    if len2 > 1e-20 {
        return v * inverseSqrt(len2);
    }
    return vec3<f32>(0.0);
}

// Lambert: max(dot(N, L), 0).
fn lambert(n: vec3<f32>, l: vec3<f32>) -> f32 {
    return max(dot4(vec4<f32>(n, 0.0), vec4<f32>(l, 0.0)), 0.0);
}

// Blinn-Phong: max(dot(N, H), 0)^shininess with H = normalize(L + V); 0 when the light is behind.
fn blinn_phong(n: vec3<f32>, l: vec3<f32>, v: vec3<f32>, shininess: f32) -> f32 {
    if dot(n, l) <= 0.0 {
        return 0.0;
    }
    let h = safe_normalize(l + v);
    return pow(max(dot(n, h), 0.0), shininess);
}

// ambient + diffuse * lambert + specular * blinn_phong, each term switched by a flag.
// coeffs = (ambient, diffuse, specular, shininess); flags = (ambient_on, diffuse_on, specular_on, _).
fn shade(n: vec3<f32>, l: vec3<f32>, v: vec3<f32>, base: vec3<f32>, coeffs: vec4<f32>, flags: vec4<u32>) -> vec3<f32> {
    let ambient = select(0.0, coeffs.x, flags.x != 0u);
    let diffuse = select(0.0, coeffs.y * lambert(n, l), flags.y != 0u);
    let specular = select(0.0, coeffs.z * blinn_phong(n, l, v, coeffs.w), flags.z != 0u);
    return clamp(base * (ambient + diffuse) + vec3<f32>(specular), vec3<f32>(0.0), vec3<f32>(1.0));
}
