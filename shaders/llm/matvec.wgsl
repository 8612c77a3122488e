// Quantized matrix x vector: y = W x for GGUF Q4_1 and Q8_0 weights, read from the file's raw
// blocks. The input is in 8-bit blocks (the CPU engine's rule), so each 32-weight block adds
// dw * dx * sum(qw * qx) (+ mw * sx for Q4_1's offset), as the CPU engine does. The integer
// products are summed with dot4, the same function scene 1's vertex shader uses for M * v;
// small integers add exactly in f32, so the block sums equal the CPU's.
//
// 256 threads: 4 output rows per workgroup, 64 threads per row; each thread takes a quarter
// of a block (8 weights) at a time, then the row's 64 partial sums are added (`row_sum`: a
// tree in workgroup memory, or subgroup sums where the device has them). workgroup_id.z picks
// the input row (batched for the logit lens). The input row goes to workgroup memory first:
// copied when already quantized (`q4_1`, `q8_0`), or made there (`*_normed`): RMSNorm of a
// residual-stream slot, x / sqrt(mean(x^2) + eps) * w, then quantized, each workgroup redoing
// that small step rather than paying a dispatch for it. `normalize` does that step once per
// row for the plain entry points instead (the head, whose 12,288 workgroups would each redo
// it, and the unfolded variant the bench compares). The `*_swiglu` entry points make the down
// product's input the same way from the gate/up product: silu(gate) * up, quantized, where
// `quantize.wgsl`'s `swiglu` is otherwise a dispatch.
// Rows up to 1536 wide.
#import samemath::math::dot4
#import samemath::llm
#import samemath::llm::blocks
#import samemath::llm::reduce

struct Dims {
    rows: u32,
    cols: u32,
    // Added to the product: 0 = none; 1 = the residual stream at `res_offset` (in `out`).
    residual: u32,
    // Output offset (in floats) of the first row; input row z's output starts z * rows later.
    out_offset: u32,
    res_offset: u32,
    // Normed input: the residual slot to read, or (`from_step` 1) step.first_slot + z, or
    // (`from_step` 2: a prompt's batch) slot + z.
    slot: u32,
    from_step: u32,
    eps: f32,
    // Normed input: record the normed row at h[h_offset + z * cols] (workgroup 0 writes it);
    // SwiGLU input: the activations at h[h_offset].
    record: u32,
    h_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;
// The quantized input: 32 values per block as 8 vec4, row z at z * cols / 4.
@group(0) @binding(1) var<storage, read> xq: array<vec4<f32>>;
// Per block (d, d * sum(q)), row z at z * cols / 32.
@group(0) @binding(2) var<storage, read> xds: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> dims: Dims;
@group(0) @binding(5) var<storage, read> step: Step;
@group(0) @binding(6) var<storage, read> resid: array<f32>;
@group(0) @binding(7) var<storage, read> norm_weight: array<f32>;
@group(0) @binding(8) var<storage, read_write> h: array<f32>;
// `normalize` writes the quantized rows here for the plain entry points to read.
@group(0) @binding(9) var<storage, read_write> xq_out: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> xds_out: array<vec2<f32>>;
// `*_swiglu`: the stacked gate/up product (gates, then ups), `cols` each.
@group(0) @binding(11) var<storage, read> gate_up: array<f32>;

var<workgroup> sq: array<vec4<f32>, 384>;
var<workgroup> sds: array<vec2<f32>, 48>;
var<workgroup> vals: array<f32, 1536>;

fn load_quantized(lid: u32, z: u32) {
    let n4 = dims.cols / 4u;
    for (var i = lid; i < n4; i += 256u) {
        sq[i] = xq[z * n4 + i];
    }
    let nb = dims.cols / 32u;
    for (var b = lid; b < nb; b += 256u) {
        sds[b] = xds[z * nb + b];
    }
    workgroupBarrier();
}

fn load_normed(lid: u32, z: u32, first_wg: bool) {
    let cols = dims.cols;
    var slot = dims.slot;
    if dims.from_step == 1u {
        slot = step.first_slot + z;
    } else if dims.from_step == 2u {
        slot = dims.slot + z;
    }
    let base = slot * cols;
    var ss = 0.0;
    for (var i = lid; i < cols; i += 256u) {
        let v = resid[base + i];
        ss += v * v;
    }
    let scale = 1.0 / sqrt(workgroup_sum(lid, ss) / f32(cols) + dims.eps);
    for (var i = lid; i < cols; i += 256u) {
        let v = resid[base + i] * scale * norm_weight[i];
        vals[i] = v;
        if first_wg && dims.record != 0u {
            h[dims.h_offset + z * cols + i] = v;
        }
    }
    workgroupBarrier();
    quantize_vals(lid);
}

// silu(gate) * up from `gate_up` into `vals` (workgroup 0 records it at h[h_offset]), quantized.
fn load_swiglu(lid: u32, first_wg: bool) {
    let cols = dims.cols;
    for (var i = lid; i < cols; i += 256u) {
        let v = silu_times(gate_up[i], gate_up[cols + i]);
        vals[i] = v;
        if first_wg && dims.record != 0u {
            h[dims.h_offset + i] = v;
        }
    }
    workgroupBarrier();
    quantize_vals(lid);
}

// `vals` (`cols` values) quantized into `sq` / `sds`.
fn quantize_vals(lid: u32) {
    let cols = dims.cols;
    // The CPU's rule: per 32-value block d = max|h| / 127, q = round(h / d); then d and
    // d * sum(q) rounded to f16. One thread per block finds d, one per four values rounds.
    let nb = cols / 32u;
    for (var b = lid; b < nb; b += 256u) {
        var amax = 0.0;
        for (var j = 0u; j < 32u; j++) {
            amax = max(amax, abs(vals[b * 32u + j]));
        }
        sds[b] = vec2<f32>(amax / 127.0, 0.0);
    }
    workgroupBarrier();
    let n4 = cols / 4u;
    for (var i = lid; i < n4; i += 256u) {
        let d = sds[i / 8u].x;
        let id = select(0.0, 1.0 / d, d != 0.0);
        let v = vec4<f32>(vals[4u * i], vals[4u * i + 1u], vals[4u * i + 2u], vals[4u * i + 3u]);
        sq[i] = vec4<f32>(round_away(v.x * id), round_away(v.y * id), round_away(v.z * id), round_away(v.w * id));
    }
    workgroupBarrier();
    for (var b = lid; b < nb; b += 256u) {
        var sum = 0.0;
        for (var k = 0u; k < 8u; k++) {
            sum += dot(sq[b * 8u + k], vec4<f32>(1.0));
        }
        let d = sds[b].x;
        sds[b] = vec2<f32>(round_f16(d), round_f16(sum * d));
    }
    workgroupBarrier();
}

fn dot_q4_1(row: u32, lane: u32) -> f32 {
    let nb = dims.cols / 32u;
    var acc = 0.0;
    if row < dims.rows {
        for (var item = lane; item < nb * 4u; item += 64u) {
            let b = item / 4u;
            let k = item % 4u;
            let blk = row * nb + b;
            let dm = q4_1_scales(blk);
            let w = q4_1_word(blk, k);
            let xi = b * 8u + k;
            let ds = sds[b];
            let isum = dot4(nibbles4(w, 0u), sq[xi]) + dot4(nibbles4(w, 4u), sq[xi + 4u]);
            acc += dm.x * ds.x * isum;
            if k == 0u {
                acc += dm.y * ds.y;
            }
        }
    }
    return acc;
}

fn dot_q8_0(row: u32, lane: u32) -> f32 {
    let nb = dims.cols / 32u;
    var acc = 0.0;
    if row < dims.rows {
        for (var item = lane; item < nb * 4u; item += 64u) {
            let b = item / 4u;
            let k = item % 4u;
            let blk = row * nb + b;
            let xi = b * 8u + 2u * k;
            let isum = dot4(sbytes4(q8_0_word(blk, 2u * k)), sq[xi])
                + dot4(sbytes4(q8_0_word(blk, 2u * k + 1u)), sq[xi + 1u]);
            acc += q8_0_scale(blk) * sds[b].x * isum;
        }
    }
    return acc;
}

fn finish(lid: u32, row: u32, z: u32, acc: f32) {
    let sum = row_sum(lid, acc);
    if lid % 64u == 0u && row < dims.rows {
        let o = dims.out_offset + z * dims.rows + row;
        if dims.residual != 0u {
            out[o] = out[dims.res_offset + row] + sum;
        } else {
            out[o] = sum;
        }
    }
}

@compute @workgroup_size(256)
fn q4_1(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    enter(inv);
    let lid = inv.lid;
    load_quantized(lid, wid.z);
    let row = wid.x * 4u + lid / 64u;
    finish(lid, row, wid.z, dot_q4_1(row, lid % 64u));
}

@compute @workgroup_size(256)
fn q8_0(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    enter(inv);
    let lid = inv.lid;
    load_quantized(lid, wid.z);
    let row = wid.x * 4u + lid / 64u;
    finish(lid, row, wid.z, dot_q8_0(row, lid % 64u));
}

@compute @workgroup_size(256)
fn q4_1_normed(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    enter(inv);
    let lid = inv.lid;
    load_normed(lid, wid.z, wid.x == 0u);
    let row = wid.x * 4u + lid / 64u;
    finish(lid, row, wid.z, dot_q4_1(row, lid % 64u));
}

@compute @workgroup_size(256)
fn q8_0_normed(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    enter(inv);
    let lid = inv.lid;
    load_normed(lid, wid.z, wid.x == 0u);
    let row = wid.x * 4u + lid / 64u;
    finish(lid, row, wid.z, dot_q8_0(row, lid % 64u));
}

@compute @workgroup_size(256)
fn q4_1_swiglu(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    enter(inv);
    let lid = inv.lid;
    load_swiglu(lid, wid.x == 0u);
    let row = wid.x * 4u + lid / 64u;
    finish(lid, row, 0u, dot_q4_1(row, lid % 64u));
}

@compute @workgroup_size(256)
fn q8_0_swiglu(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    enter(inv);
    let lid = inv.lid;
    load_swiglu(lid, wid.x == 0u);
    let row = wid.x * 4u + lid / 64u;
    finish(lid, row, 0u, dot_q8_0(row, lid % 64u));
}

// RMSNorm + quantization of residual row(s) into xq_out / xds_out, one workgroup per row.
@compute @workgroup_size(256)
fn normalize(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    enter(inv);
    let lid = inv.lid;
    let z = wid.x;
    load_normed(lid, z, true);
    let n4 = dims.cols / 4u;
    for (var i = lid; i < n4; i += 256u) {
        xq_out[z * n4 + i] = sq[i];
    }
    let nb = dims.cols / 32u;
    for (var b = lid; b < nb; b += 256u) {
        xds_out[z * nb + b] = sds[b];
    }
}
