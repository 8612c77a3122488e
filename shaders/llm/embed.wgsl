// The token's row of the Q8_0 embedding table, dequantized from the file's blocks into slot 0
// of the residual stream (`main`); `rows`: each token of a prompt's batch into its own row.
#import samemath::llm
#import samemath::llm::blocks

struct Dims {
    cols: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> step: Step;
@group(0) @binding(1) var<storage, read> weights: array<u32>;
@group(0) @binding(2) var<storage, read_write> resid: array<f32>;
@group(0) @binding(3) var<uniform> dims: Dims;
// `rows`: the batch's token ids.
@group(0) @binding(4) var<storage, read> tokens: array<u32>;

fn row_value(token: u32, i: u32) -> f32 {
    let blk = token * (dims.cols / 32u) + i / 32u;
    let j = i % 32u;
    return q8_0_scale(blk) * sbyte(q8_0_word(blk, j / 4u), j % 4u);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if i >= dims.cols {
        return;
    }
    resid[i] = row_value(step.token, i);
}

// workgroup_id.y: the token in the batch.
@compute @workgroup_size(64)
fn rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if i >= dims.cols {
        return;
    }
    resid[gid.y * dims.cols + i] = row_value(tokens[gid.y], i);
}
