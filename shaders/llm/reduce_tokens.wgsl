// Row sums for eight tokens at once (the prompt's matrix x matrix kernel): each token's sum over
// a row of 64 invocations, added exactly as `reduce.wgsl`'s `row_sum` adds one token's, so a
// token's product in a batch is the number the mat-vec kernel gives it alone. All eight trees
// step together: seven barriers for the eight tokens. `reduce_tokens_subgroup.wgsl` is the same
// with subgroup operations; the composer picks the pair with the `reduce` module.
#define_import_path samemath::llm::reduce_tokens
#import samemath::llm::reduce

// Token t's value of invocation i at [t * 256 + i].
var<workgroup> token_partial: array<f32, 2048>;

// The sums of `acc[t]` over each row of 64 invocations (lid / 64): invocation t of a row
// (lid % 64 == t, t < 8) gets token t's sum, the others 0. Called once, in uniform control flow.
fn row_sums(lid: u32, acc: array<f32, 8>) -> f32 {
    for (var t = 0u; t < 8u; t++) {
        token_partial[t * 256u + lid] = acc[t];
    }
    workgroupBarrier();
    let lane = lid % 64u;
    for (var stride = 32u; stride > 0u; stride = stride >> 1u) {
        if lane < stride {
            for (var t = 0u; t < 8u; t++) {
                token_partial[t * 256u + lid] += token_partial[t * 256u + lid + stride];
            }
        }
        workgroupBarrier();
    }
    if lane < 8u {
        return token_partial[lane * 256u + lid - lane];
    }
    return 0.0;
}
