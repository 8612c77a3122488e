// Quantized matrix x vector: y = W x for GGUF Q4_1 and Q8_0 weights, read from the file's raw
// blocks. The input was quantized to 8-bit blocks (quantize.wgsl), so each 32-weight block adds
// dw * dx * sum(qw * qx) (+ mw * sx for Q4_1's offset), as the CPU engine does. The integer
// products are summed with dot4, the same function scene 1's vertex shader uses for M * v;
// small integers add exactly in f32, so the block sums equal the CPU's.
//
// 256 threads: 4 output rows per workgroup, 64 threads per row; each thread takes a quarter
// of a block (8 weights) at a time, then the row's 64 partial sums are added in workgroup
// memory. workgroup_id.z picks the input row (batched for the logit lens).
#import samemath::math::dot4
#import samemath::llm
#import samemath::llm::blocks

struct Dims {
    rows: u32,
    cols: u32,
    // Added to the product: 0 = none; 1 = the residual stream slot `res_slot` (in `out`).
    residual: u32,
    // Output offset (in floats) of the first row; input row z's output starts z * rows later.
    out_offset: u32,
    res_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;
// The quantized input: 32 values per block as 8 vec4, row z at z * cols / 4.
@group(0) @binding(1) var<storage, read> xq: array<vec4<f32>>;
// Per block (d, d * sum(q)), row z at z * cols / 32.
@group(0) @binding(2) var<storage, read> xds: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> dims: Dims;

var<workgroup> partial: array<f32, 256>;

fn finish(lid: u32, row: u32, z: u32, acc: f32) {
    partial[lid] = acc;
    workgroupBarrier();
    let lane = lid % 64u;
    for (var stride = 32u; stride > 0u; stride = stride >> 1u) {
        if lane < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if lane == 0u && row < dims.rows {
        let sum = partial[lid];
        let o = dims.out_offset + z * dims.rows + row;
        if dims.residual != 0u {
            out[o] = out[dims.res_offset + row] + sum;
        } else {
            out[o] = sum;
        }
    }
}

@compute @workgroup_size(256)
fn q4_1(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.x * 4u + lid / 64u;
    let lane = lid % 64u;
    let z = wid.z;
    let nb = dims.cols / 32u;
    var acc = 0.0;
    if row < dims.rows {
        for (var item = lane; item < nb * 4u; item += 64u) {
            let b = item / 4u;
            let k = item % 4u;
            let blk = row * nb + b;
            let dm = q4_1_scales(blk);
            let w = q4_1_word(blk, k);
            let xi = z * (dims.cols / 4u) + b * 8u + k;
            let ds = xds[z * nb + b];
            let isum = dot4(nibbles4(w, 0u), xq[xi]) + dot4(nibbles4(w, 4u), xq[xi + 4u]);
            acc += dm.x * ds.x * isum;
            if k == 0u {
                acc += dm.y * ds.y;
            }
        }
    }
    finish(lid, row, z, acc);
}

@compute @workgroup_size(256)
fn q8_0(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.x * 4u + lid / 64u;
    let lane = lid % 64u;
    let z = wid.z;
    let nb = dims.cols / 32u;
    var acc = 0.0;
    if row < dims.rows {
        for (var item = lane; item < nb * 4u; item += 64u) {
            let b = item / 4u;
            let k = item % 4u;
            let blk = row * nb + b;
            let xi = z * (dims.cols / 4u) + b * 8u + 2u * k;
            let ds = xds[z * nb + b];
            let isum = dot4(sbytes4(q8_0_word(blk, 2u * k)), xq[xi])
                + dot4(sbytes4(q8_0_word(blk, 2u * k + 1u)), xq[xi + 1u]);
            acc += q8_0_scale(blk) * ds.x * isum;
        }
    }
    finish(lid, row, z, acc);
}
