// `reduce_tokens.wgsl` with subgroup operations: for each of the eight tokens, each subgroup adds
// its lanes' values (subgroupAdd) and one lane writes the subgroup's share of every row, as
// `reduce_subgroup.wgsl`'s `row_sum` does for one token; after one barrier for all eight, a row's
// shares are added in subgroup order, as `row_sum` adds them, so a token's product in a batch is
// the number the mat-vec kernel gives it alone. (`row_sum` token by token took two barriers each.)
#define_import_path samemath::llm::reduce_tokens
#import samemath::llm::reduce

// Token t's share of subgroup s in row r at [t * 256 + r * 64 + s].
var<workgroup> token_shares: array<f32, 2048>;

// The sums of `acc[t]` over each row of 64 invocations (lid / 64): invocation t of a row
// (lid % 64 == t, t < 8) gets token t's sum, the others 0. Called once, in uniform control flow.
fn row_sums(lid: u32, acc: array<f32, 8>) -> f32 {
    let row = lid / 64u;
    let first = subgroupBroadcastFirst(row);
    let one_row = subgroupAll(row == first);
    for (var t = 0u; t < 8u; t++) {
        if one_row {
            let s = subgroupAdd(acc[t]);
            if sg_lane == 0u {
                for (var r = 0u; r < 4u; r++) {
                    token_shares[t * 256u + r * 64u + sg_id] = select(0.0, s, r == row);
                }
            }
        } else {
            for (var r = 0u; r < 4u; r++) {
                let s = subgroupAdd(select(0.0, acc[t], r == row));
                if sg_lane == 0u {
                    token_shares[t * 256u + r * 64u + sg_id] = s;
                }
            }
        }
    }
    workgroupBarrier();
    let lane = lid % 64u;
    var total = 0.0;
    if lane < 8u {
        let at = lane * 256u + row * 64u;
        total = token_shares[at];
        for (var i = 1u; i < sg_count; i++) {
            total += token_shares[at + i];
        }
    }
    return total;
}
