// RMSNorm then 8-bit quantization of the result, one workgroup per row:
// h = x / sqrt(mean(x^2) + eps) * w, written as f32 (recorded for the trace) and as the
// quantized blocks the next mat-vec reads. The row is a slot of the residual stream: a fixed
// slot in a layer, or (logit lens and final norm) slots `step.first_slot + workgroup_id.x`.
#import samemath::llm

struct Dims {
    cols: u32,
    // Residual slot to read, unless `from_step` is set.
    slot: u32,
    from_step: u32,
    eps: f32,
    // Where the f32 result goes in `h` (in floats); row r adds r * cols.
    h_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> step: Step;
@group(0) @binding(1) var<storage, read> resid: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> h: array<f32>;
@group(0) @binding(4) var<storage, read_write> xq: array<f32>;
@group(0) @binding(5) var<storage, read_write> xds: array<vec2<f32>>;
@group(0) @binding(6) var<uniform> dims: Dims;

var<workgroup> red: array<f32, 256>;
// The row after normalisation, and its quantized values (rows up to 1536 wide).
var<workgroup> vals: array<f32, 1536>;
var<workgroup> qs: array<f32, 1536>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let r = wid.x;
    let slot = select(dims.slot, step.first_slot + r, dims.from_step != 0u);
    let base = slot * dims.cols;
    var ss = 0.0;
    for (var i = lid; i < dims.cols; i += 256u) {
        let v = resid[base + i];
        ss += v * v;
    }
    red[lid] = ss;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
        if lid < stride {
            red[lid] += red[lid + stride];
        }
        workgroupBarrier();
    }
    let scale = 1.0 / sqrt(red[0] / f32(dims.cols) + dims.eps);
    let out = dims.h_offset + r * dims.cols;
    for (var i = lid; i < dims.cols; i += 256u) {
        let v = resid[base + i] * scale * weight[i];
        h[out + i] = v;
        vals[i] = v;
    }
    workgroupBarrier();
    // Every thread quantizes its values, each reading its block's 32 values from workgroup
    // memory for the scale (the CPU's rule: d = max|h| / 127, q = round(h / d)).
    let nb = dims.cols / 32u;
    for (var i = lid; i < dims.cols; i += 256u) {
        let b0 = (i / 32u) * 32u;
        var amax = 0.0;
        for (var j = 0u; j < 32u; j++) {
            amax = max(amax, abs(vals[b0 + j]));
        }
        let d = amax / 127.0;
        let id = select(0.0, 1.0 / d, d != 0.0);
        let q = round_away(vals[i] * id);
        xq[r * dims.cols + i] = q;
        qs[i] = q;
    }
    workgroupBarrier();
    for (var b = lid; b < nb; b += 256u) {
        var amax = 0.0;
        var sum = 0.0;
        for (var j = 0u; j < 32u; j++) {
            amax = max(amax, abs(vals[b * 32u + j]));
            sum += qs[b * 32u + j];
        }
        let d = amax / 127.0;
        xds[r * nb + b] = vec2<f32>(round_f16(d), round_f16(sum * d));
    }
}
