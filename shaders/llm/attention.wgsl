// Attention of the new token, one workgroup per query head: scores q . k_t / sqrt(head_dim) over
// positions 0..=pos of the KV head this head reads (grouped-query attention), softmax, then the
// probability-weighted sum of the values. The probabilities stay in `probs` (the trace's
// attention rows, [layer][head][pos + 1]) and double as the scores' scratch space.

#import samemath::llm

struct Dims {
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    layer: u32,
}

@group(0) @binding(0) var<storage, read> step: Step;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<f32>;
@group(0) @binding(3) var<storage, read> v_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> probs: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<uniform> dims: Dims;

var<workgroup> qh: array<f32, 256>;
var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let hd = dims.head_dim;
    let g = h / (dims.n_head / dims.n_kv_head);
    let seen = step.pos + 1u;
    let kv_width = dims.n_kv_head * hd;
    let base = (dims.layer * dims.n_head + h) * seen;
    if lid < hd {
        qh[lid] = q[h * hd + lid];
    }
    workgroupBarrier();
    let scale = 1.0 / sqrt(f32(hd));
    var m = -3.4e38;
    for (var t = lid; t < seen; t += 256u) {
        let k0 = t * kv_width + g * hd;
        var s = 0.0;
        for (var d = 0u; d < hd; d++) {
            s += qh[d] * k_cache[k0 + d];
        }
        s = s * scale;
        probs[base + t] = s;
        m = max(m, s);
    }
    red[lid] = m;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
        if lid < stride {
            red[lid] = max(red[lid], red[lid + stride]);
        }
        workgroupBarrier();
    }
    let mx = red[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var t = lid; t < seen; t += 256u) {
        let e = exp(probs[base + t] - mx);
        probs[base + t] = e;
        sum += e;
    }
    red[lid] = sum;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
        if lid < stride {
            red[lid] += red[lid + stride];
        }
        workgroupBarrier();
    }
    let total = red[0];
    for (var t = lid; t < seen; t += 256u) {
        probs[base + t] = probs[base + t] / total;
    }
    storageBarrier();
    workgroupBarrier();
    // 256 / head_dim groups of threads, each summing every group-th position for one dimension.
    let groups = 256u / hd;
    let d = lid % hd;
    let part = lid / hd;
    var acc = 0.0;
    if part < groups {
        for (var t = part; t < seen; t += groups) {
            acc += probs[base + t] * v_cache[t * kv_width + g * hd + d];
        }
    }
    red[lid] = acc;
    workgroupBarrier();
    if part == 0u {
        var o = 0.0;
        for (var p = 0u; p < groups; p++) {
            o += red[p * hd + d];
        }
        out[h * hd + d] = o;
    }
}
