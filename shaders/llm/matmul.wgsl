// Quantized matrix x matrix for a prompt: Y[t] = W X[t] for the batch's token rows t, GGUF
// Q4_1 or Q8_0 weights read from the file's raw blocks, each row X[t] already in 8-bit blocks
// (the prompt's `normalize` or attention or SwiGLU made them). matvec.wgsl does one token; this
// decodes each weight once for eight tokens, so a prompt reads the weights an eighth as often.
//
// 256 threads: 4 output rows per workgroup, 64 threads per row; workgroup_id.y picks eight
// tokens. A thread walks its row's blocks a quarter block (8 weights) at a time exactly as
// matvec.wgsl's thread does, keeping one sum per token in the same order, and the row's 64
// partial sums are added as the mat-vec kernel's `row_sum` adds them, all eight tokens at once
// (`reduce_tokens.wgsl`, trees or subgroups as the device reduces): each token's product is the
// number the mat-vec kernel gives for that token alone.
#import samemath::math::dot4
#import samemath::llm
#import samemath::llm::blocks
#import samemath::llm::reduce
#import samemath::llm::reduce_tokens

struct Dims {
    rows: u32,
    cols: u32,
    // 1: add the product to what `out` holds there (the batch's residual stream, in place).
    residual: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;
// Token t's quantized row: 32 values per block as 8 vec4, at t * cols / 4.
@group(0) @binding(1) var<storage, read> xq: array<vec4<f32>>;
// Token t's per-block (d, d * sum(q)), at t * cols / 32.
@group(0) @binding(2) var<storage, read> xds: array<vec2<f32>>;
// Token t's product at t * rows.
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> dims: Dims;
// The batch: `token` holds how many tokens it has.
@group(0) @binding(5) var<storage, read> step: Step;

const TOKENS: u32 = 8u;

fn sums_q4_1(row: u32, lane: u32, t0: u32, n: u32) -> array<f32, 8> {
    var acc: array<f32, 8>;
    let nb = dims.cols / 32u;
    let n4 = dims.cols / 4u;
    if row < dims.rows {
        for (var item = lane; item < nb * 4u; item += 64u) {
            let b = item / 4u;
            let k = item % 4u;
            let blk = row * nb + b;
            let dm = q4_1_scales(blk);
            let w = q4_1_word(blk, k);
            let lo = nibbles4(w, 0u);
            let hi = nibbles4(w, 4u);
            for (var t = 0u; t < n; t++) {
                let x = (t0 + t) * n4 + b * 8u + k;
                let ds = xds[(t0 + t) * nb + b];
                let isum = dot4(lo, xq[x]) + dot4(hi, xq[x + 4u]);
                acc[t] += dm.x * ds.x * isum;
                if k == 0u {
                    acc[t] += dm.y * ds.y;
                }
            }
        }
    }
    return acc;
}

fn sums_q8_0(row: u32, lane: u32, t0: u32, n: u32) -> array<f32, 8> {
    var acc: array<f32, 8>;
    let nb = dims.cols / 32u;
    let n4 = dims.cols / 4u;
    if row < dims.rows {
        for (var item = lane; item < nb * 4u; item += 64u) {
            let b = item / 4u;
            let k = item % 4u;
            let blk = row * nb + b;
            let scale = q8_0_scale(blk);
            let w0 = sbytes4(q8_0_word(blk, 2u * k));
            let w1 = sbytes4(q8_0_word(blk, 2u * k + 1u));
            for (var t = 0u; t < n; t++) {
                let x = (t0 + t) * n4 + b * 8u + 2u * k;
                let isum = dot4(w0, xq[x]) + dot4(w1, xq[x + 1u]);
                acc[t] += scale * xds[(t0 + t) * nb + b].x * isum;
            }
        }
    }
    return acc;
}

// Each token's 64 partial sums of a row added as matvec.wgsl adds them; lane t of the row
// stores token t's.
fn finish(lid: u32, row: u32, t0: u32, n: u32, acc: array<f32, 8>) {
    let sum = row_sums(lid, acc);
    let lane = lid % 64u;
    if lane < n && row < dims.rows {
        store(t0 + lane, row, sum);
    }
}

// Token t's product for `row`, added to what is there when asked.
fn store(t: u32, row: u32, sum: f32) {
    let o = t * dims.rows + row;
    if dims.residual != 0u {
        out[o] = out[o] + sum;
    } else {
        out[o] = sum;
    }
}

@compute @workgroup_size(256)
fn q4_1(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    enter(inv);
    let lid = inv.lid;
    let row = wid.x * 4u + lid / 64u;
    let t0 = wid.y * TOKENS;
    let n = min(TOKENS, max(step.token, t0) - t0);
    finish(lid, row, t0, n, sums_q4_1(row, lid % 64u, t0, n));
}

@compute @workgroup_size(256)
fn q8_0(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    enter(inv);
    let lid = inv.lid;
    let row = wid.x * 4u + lid / 64u;
    let t0 = wid.y * TOKENS;
    let n = min(TOKENS, max(step.token, t0) - t0);
    finish(lid, row, t0, n, sums_q8_0(row, lid % 64u, t0, n));
}
