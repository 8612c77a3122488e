// The top token of each row of logits with its softmax probability: the logit lens's answer per
// layer (and the final distribution's best token), without reading 49,152 logits per layer back.
// One workgroup per row; ties go to the lowest index, as on the CPU.
#import samemath::llm::reduce

struct Dims {
    vocab: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
// Per row: (token id as f32 bits, logit, probability, 0).
@group(0) @binding(1) var<storage, read_write> top: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> dims: Dims;

var<workgroup> best: array<f32, 256>;
var<workgroup> best_at: array<u32, 256>;

@compute @workgroup_size(256)
fn main(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    enter(inv);
    let lid = inv.lid;
    let base = wid.x * dims.vocab;
    var m = -3.4e38;
    var at = 0xFFFFFFFFu;
    for (var i = lid; i < dims.vocab; i += 256u) {
        let l = logits[base + i];
        if l > m {
            m = l;
            at = i;
        }
    }
    best[lid] = m;
    best_at[lid] = at;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
        if lid < stride {
            let o = best[lid + stride];
            let oa = best_at[lid + stride];
            if o > best[lid] || (o == best[lid] && oa < best_at[lid]) {
                best[lid] = o;
                best_at[lid] = oa;
            }
        }
        workgroupBarrier();
    }
    let mx = best[0];
    let id = best_at[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var i = lid; i < dims.vocab; i += 256u) {
        sum += exp(logits[base + i] - mx);
    }
    let total = workgroup_sum(lid, sum);
    if lid == 0u {
        top[wid.x] = vec4<f32>(bitcast<f32>(id), mx, 1.0 / total, 0.0);
    }
}
