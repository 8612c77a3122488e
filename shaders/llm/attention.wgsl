// Attention, one workgroup per query head and token, RoPE and the KV-cache write folded in.
// GGML llama's RoPE turns dimensions 2i and 2i+1 by pos * freq_i (angles from the CPU); the
// cache holds rows [position][kv head][dim], read as vec4. Then scores q . k_t / sqrt(head_dim)
// over positions 0..=pos, softmax, the probability-weighted sum of the values, and the result
// quantized to 8-bit blocks for the output projection. Four threads share a position's score (a
// quarter of the dimensions each), and sixteen groups of threads share the weighted sum.
//
// `main`: the new token of a decode step. The head rotates its query and its KV head's key at
// `step.pos`, the first head of each KV group stores that key and value in the layer's cache,
// and the others use theirs from workgroup memory. The probabilities stay in `probs` (the
// trace's attention rows, [layer][head][pos + 1]) and double as the scores' scratch space.
//
// A prompt's batch (`step.pos` its first position, `step.token` its length, `step.rot` the
// angles of each token in turn): `store_rows` rotates and stores every token's keys and values
// first, one workgroup per token; then `rows` attends, one workgroup per head and token, over
// the cache alone, with `probs` as scratch ([token][head][context]). Each token's numbers are
// the ones `main` gives it.
#import samemath::llm
#import samemath::llm::reduce

struct Dims {
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    layer: u32,
    // Positions the cache holds.
    context: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> step: Step;
// The stacked q/k/v product of the new token.
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> v_cache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> probs: array<f32>;
@group(0) @binding(5) var<storage, read_write> xq: array<f32>;
@group(0) @binding(6) var<storage, read_write> xds: array<vec2<f32>>;
@group(0) @binding(7) var<uniform> dims: Dims;

var<workgroup> qh: array<f32, 256>;
var<workgroup> k_new: array<f32, 256>;
var<workgroup> v_new: array<f32, 256>;
var<workgroup> red: array<f32, 256>;
var<workgroup> red4: array<vec4<f32>, 256>;

fn rotate(at: u32, pair: u32) -> vec2<f32> {
    let sc = step.rot[pair];
    let a = qkv[at];
    let b = qkv[at + 1u];
    return vec2<f32>(a * sc.y - b * sc.x, a * sc.x + b * sc.y);
}

// Sum (or max, `is_max`) of red[0..32) and red[32..64) into red[0] and red[32].
fn reduce_halves(lid: u32, is_max: bool) {
    for (var stride = 16u; stride > 0u; stride = stride >> 1u) {
        if lid < 64u && (lid % 32u) < stride {
            if is_max {
                red[lid] = max(red[lid], red[lid + stride]);
            } else {
                red[lid] += red[lid + stride];
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn main(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    enter(inv);
    let lid = inv.lid;
    let h = wid.x;
    let hd = dims.head_dim;
    let g = h / (dims.n_head / dims.n_kv_head);
    let pos = step.pos;
    let kv_width = dims.n_kv_head * hd;
    let q_width = dims.n_head * hd;
    if lid < hd / 2u {
        let q = rotate(h * hd + 2u * lid, lid);
        qh[2u * lid] = q.x;
        qh[2u * lid + 1u] = q.y;
        let k = rotate(q_width + g * hd + 2u * lid, lid);
        k_new[2u * lid] = k.x;
        k_new[2u * lid + 1u] = k.y;
    }
    if lid < hd {
        v_new[lid] = qkv[q_width + kv_width + g * hd + lid];
    }
    workgroupBarrier();
    // The first head of the group stores the new key and value; the others use theirs.
    let hd4 = hd / 4u;
    let row4 = (pos * kv_width + g * hd) / 4u;
    if h % (dims.n_head / dims.n_kv_head) == 0u && lid < hd4 {
        let at = 4u * lid;
        k_cache[row4 + lid] = vec4<f32>(k_new[at], k_new[at + 1u], k_new[at + 2u], k_new[at + 3u]);
        v_cache[row4 + lid] = vec4<f32>(v_new[at], v_new[at + 1u], v_new[at + 2u], v_new[at + 3u]);
    }
    attend(lid, h, pos, (dims.layer * dims.n_head + h) * (pos + 1u), 0u, true);
}

// A prompt's keys and values into the cache, one workgroup per token: a thread per four
// dimensions of a KV head, rotated as `main` rotates them.
@compute @workgroup_size(256)
fn store_rows(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.x;
    let hd = dims.head_dim;
    let kv_width = dims.n_kv_head * hd;
    let q_width = dims.n_head * hd;
    let at = t * (q_width + 2u * kv_width);
    let half = hd / 2u;
    let row4 = (step.pos + t) * kv_width / 4u;
    for (var j = lid; j < kv_width / 4u; j += 256u) {
        let g = (4u * j) / hd;
        let pair = ((4u * j) % hd) / 2u;
        let k0 = rotate(at + q_width + 4u * j, t * half + pair);
        let k1 = rotate(at + q_width + 4u * j + 2u, t * half + pair + 1u);
        k_cache[row4 + j] = vec4<f32>(k0.x, k0.y, k1.x, k1.y);
        let v = at + q_width + kv_width + 4u * j;
        v_cache[row4 + j] = vec4<f32>(qkv[v], qkv[v + 1u], qkv[v + 2u], qkv[v + 3u]);
    }
}

// A prompt token's attention (workgroup_id.y: the token in the batch, x: the head), after
// `store_rows` has put the whole batch in the cache.
@compute @workgroup_size(256)
fn rows(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    enter(inv);
    let lid = inv.lid;
    let h = wid.x;
    let t = wid.y;
    let hd = dims.head_dim;
    let at = t * (dims.n_head + 2u * dims.n_kv_head) * hd;
    if lid < hd / 2u {
        let q = rotate(at + h * hd + 2u * lid, t * (hd / 2u) + lid);
        qh[2u * lid] = q.x;
        qh[2u * lid + 1u] = q.y;
    }
    workgroupBarrier();
    attend(lid, h, step.pos + t, (t * dims.n_head + h) * dims.context, t * dims.n_head * hd, false);
}

// Head `h`'s attention for the query in `qh` at position `pos`: probabilities at probs[base..],
// the quantized output at xq[out_at + h * head_dim..] (scales likewise). `fresh`: the key and
// value at `pos` are taken from k_new / v_new (`main`), not from the cache.
fn attend(lid: u32, h: u32, pos: u32, base: u32, out_at: u32, fresh: bool) {
    let hd = dims.head_dim;
    let g = h / (dims.n_head / dims.n_kv_head);
    let seen = pos + 1u;
    let kv_width = dims.n_kv_head * hd;
    let hd4 = hd / 4u;
    let scale = 1.0 / sqrt(f32(hd));
    // Scores: 64 positions at a time, four threads per position.
    let quarter = lid % 4u;
    let per = hd4 / 4u;
    var m = -3.4e38;
    for (var t0 = 0u; t0 < seen; t0 += 64u) {
        let t = t0 + lid / 4u;
        var s = 0.0;
        if t < seen {
            let first = quarter * per;
            if fresh && t == pos {
                for (var j = first; j < first + per; j++) {
                    let q4 = vec4<f32>(qh[4u * j], qh[4u * j + 1u], qh[4u * j + 2u], qh[4u * j + 3u]);
                    let k4 = vec4<f32>(k_new[4u * j], k_new[4u * j + 1u], k_new[4u * j + 2u], k_new[4u * j + 3u]);
                    s += dot(q4, k4);
                }
            } else {
                let row = (t * kv_width + g * hd) / 4u;
                for (var j = first; j < first + per; j++) {
                    let q4 = vec4<f32>(qh[4u * j], qh[4u * j + 1u], qh[4u * j + 2u], qh[4u * j + 3u]);
                    s += dot(q4, k_cache[row + j]);
                }
            }
        }
        red[lid] = s;
        workgroupBarrier();
        if quarter == 0u && t < seen {
            let score = (red[lid] + red[lid + 1u] + red[lid + 2u] + red[lid + 3u]) * scale;
            probs[base + t] = score;
            m = max(m, score);
        }
        workgroupBarrier();
    }
    let mx = workgroup_max(lid, m);
    var sum = 0.0;
    for (var t = lid; t < seen; t += 256u) {
        let e = exp(probs[base + t] - mx);
        probs[base + t] = e;
        sum += e;
    }
    let total = workgroup_sum(lid, sum);
    for (var t = lid; t < seen; t += 256u) {
        probs[base + t] = probs[base + t] / total;
    }
    storageBarrier();
    workgroupBarrier();
    // The weighted sum of values: thread = (a vec4 of dimensions, one of 256 / (hd / 4) groups
    // of positions).
    let groups = 256u / hd4;
    let j4 = lid % hd4;
    let part = lid / hd4;
    var acc = vec4<f32>(0.0);
    for (var t = part; t < seen; t += groups) {
        var v = vec4<f32>(0.0);
        if fresh && t == pos {
            v = vec4<f32>(v_new[4u * j4], v_new[4u * j4 + 1u], v_new[4u * j4 + 2u], v_new[4u * j4 + 3u]);
        } else {
            v = v_cache[(t * kv_width + g * hd) / 4u + j4];
        }
        acc += probs[base + t] * v;
    }
    red4[lid] = acc;
    workgroupBarrier();
    // Thread d < hd gathers dimension d over the groups.
    let d = lid;
    var o = 0.0;
    if d < hd {
        for (var p = 0u; p < groups; p++) {
            o += red4[p * hd4 + d / 4u][d % 4u];
        }
    }
    workgroupBarrier();
    // Quantize this head's output, one 32-value block per half-warp of the first hd threads,
    // by the CPU's rule (see quantize.wgsl).
    let has_output = d < hd;
    for (var b0 = 0u; b0 < hd; b0 += 64u) {
        let mine = has_output && d >= b0 && d < b0 + 64u;
        let lane = d - b0;
        if lid < 64u {
            red[lid] = 0.0;
        }
        workgroupBarrier();
        if mine {
            red[lane] = abs(o);
        }
        workgroupBarrier();
        reduce_halves(lid, true);
        var q = 0.0;
        var dq = 0.0;
        if mine {
            dq = red[(lane / 32u) * 32u] / 127.0;
            let id = select(0.0, 1.0 / dq, dq != 0.0);
            q = round_away(o * id);
            xq[out_at + h * hd + d] = q;
        }
        workgroupBarrier();
        if lid < 64u {
            red[lid] = 0.0;
        }
        workgroupBarrier();
        if mine {
            red[lane] = q;
        }
        workgroupBarrier();
        reduce_halves(lid, false);
        if mine && lane % 32u == 0u {
            xds[(out_at + h * hd + d) / 32u] = vec2<f32>(round_f16(dq), round_f16(red[lane] * dq));
        }
        workgroupBarrier();
    }
}
