// The MLP's activations silu(gate) * up from the stacked gate/up product, recorded (the trace's
// neuron grid) and quantized to 8 bits for the down projection (`swiglu_rows`: each token of a
// prompt's batch, not recorded), one 32-value block per workgroup, by the CPU engine's rule (d = max|x| / 127, q = round(x / d), d and d * sum(q)
// rounded to f16).
#import samemath::llm

struct Dims {
    // Length of the vector.
    cols: u32,
    // swiglu: where this layer's activations are recorded in `act` (in floats).
    act_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> act: array<f32>;
@group(0) @binding(2) var<storage, read_write> xq: array<f32>;
@group(0) @binding(3) var<storage, read_write> xds: array<vec2<f32>>;
@group(0) @binding(4) var<uniform> dims: Dims;

var<workgroup> amax: array<f32, 32>;
var<workgroup> qsum: array<f32, 32>;

fn quantize_lane(b: u32, lane: u32, v: f32) {
    amax[lane] = abs(v);
    workgroupBarrier();
    for (var stride = 16u; stride > 0u; stride = stride >> 1u) {
        if lane < stride {
            amax[lane] = max(amax[lane], amax[lane + stride]);
        }
        workgroupBarrier();
    }
    let d = amax[0] / 127.0;
    let id = select(0.0, 1.0 / d, d != 0.0);
    let q = round_away(v * id);
    xq[b * 32u + lane] = q;
    qsum[lane] = q;
    workgroupBarrier();
    for (var stride = 16u; stride > 0u; stride = stride >> 1u) {
        if lane < stride {
            qsum[lane] += qsum[lane + stride];
        }
        workgroupBarrier();
    }
    if lane == 0u {
        xds[b] = vec2<f32>(round_f16(d), round_f16(qsum[0] * d));
    }
}

// silu(gate) * up for the gate at src[i] (its up `cols` further on).
fn silu_times_up(i: u32) -> f32 {
    return silu_times(src[i], src[dims.cols + i]);
}

@compute @workgroup_size(32)
fn swiglu(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let b = wid.x;
    let i = b * 32u + lane;
    let v = silu_times_up(i);
    act[dims.act_offset + i] = v;
    quantize_lane(b, lane, v);
}

// workgroup_id.y: the token t in the batch, whose gate/up row starts at t * 2 * cols.
@compute @workgroup_size(32)
fn swiglu_rows(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let v = silu_times_up(wid.y * 2u * dims.cols + wid.x * 32u + lane);
    quantize_lane(wid.y * (dims.cols / 32u) + wid.x, lane, v);
}
