// RoPE on the new token's queries and keys (GGML llama's interleaved pairs: dimensions 2i and
// 2i+1 of each head turn by angle pos * freq_i), then its keys and values go into this layer's
// GPU-resident KV cache at `step.pos`. One thread per pair (queries, then keys) or value.
#import samemath::llm

struct Dims {
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> step: Step;
// q (n_head * head_dim), k, v (n_kv_head * head_dim each), as the stacked product left them.
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> q: array<f32>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(5) var<uniform> dims: Dims;

fn rotated(at: u32, pair: u32) -> vec2<f32> {
    let sc = step.rot[pair % (dims.head_dim / 2u)];
    let a = qkv[at];
    let b = qkv[at + 1u];
    return vec2<f32>(a * sc.y - b * sc.x, a * sc.x + b * sc.y);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let q_pairs = dims.n_head * dims.head_dim / 2u;
    let kv_width = dims.n_kv_head * dims.head_dim;
    let kv_pairs = kv_width / 2u;
    let row = step.pos * kv_width;
    if i < q_pairs {
        let r = rotated(2u * i, i);
        q[2u * i] = r.x;
        q[2u * i + 1u] = r.y;
    } else if i < q_pairs + kv_pairs {
        let p = i - q_pairs;
        let r = rotated(2u * q_pairs + 2u * p, p);
        k_cache[row + 2u * p] = r.x;
        k_cache[row + 2u * p + 1u] = r.y;
    } else if i < q_pairs + kv_pairs + kv_width {
        let j = i - q_pairs - kv_pairs;
        v_cache[row + j] = qkv[2u * q_pairs + kv_width + j];
    }
}
