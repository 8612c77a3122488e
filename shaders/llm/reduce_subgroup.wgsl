// `reduce.wgsl`'s reductions with subgroup operations (wgpu's SUBGROUP feature): each subgroup
// adds its lanes' values in registers (subgroupAdd), one lane per subgroup writes the result to
// workgroup memory, and the subgroups' results are added in subgroup order: two barriers where
// the trees take eight (a row) or ten (the workgroup). Nothing is assumed of the subgroups' size
// or of which invocations share one: the ids come from the builtins, and a subgroup that spans
// two rows of `row_sum` adds each row's share separately. Every invocation adds the same numbers
// in the same order, so all get the same result.
#define_import_path samemath::llm::reduce

// What an entry point that reduces is given; it calls `enter` with it first (workgroup_id stays
// a parameter of its own, as in reduce.wgsl).
struct Invocation {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) sg_count: u32,
}

var<private> sg_lane: u32;
var<private> sg_id: u32;
var<private> sg_count: u32;

// Notes this invocation's subgroup ids for the reductions.
fn enter(inv: Invocation) {
    sg_lane = inv.sg_lane;
    sg_id = inv.sg_id;
    sg_count = inv.sg_count;
}

// Subgroup operations are in use.
const SUBGROUPS: bool = true;

// One value per subgroup (at least 4 lanes each: at most 64 subgroups), per row of 64 lanes.
var<workgroup> reduce_scratch: array<f32, 256>;

fn workgroup_sum(lid: u32, v: f32) -> f32 {
    let s = subgroupAdd(v);
    if sg_lane == 0u {
        reduce_scratch[sg_id] = s;
    }
    workgroupBarrier();
    var total = reduce_scratch[0];
    for (var i = 1u; i < sg_count; i++) {
        total += reduce_scratch[i];
    }
    workgroupBarrier();
    return total;
}

fn workgroup_max(lid: u32, v: f32) -> f32 {
    let s = subgroupMax(v);
    if sg_lane == 0u {
        reduce_scratch[sg_id] = s;
    }
    workgroupBarrier();
    var best = reduce_scratch[0];
    for (var i = 1u; i < sg_count; i++) {
        best = max(best, reduce_scratch[i]);
    }
    workgroupBarrier();
    return best;
}

// The sum of `v` over each row of 64 invocations (lid / 64), returned to the row's first
// invocation (the others get 0). Each subgroup's lane 0 writes the subgroup's share of every
// row (0 for the rows it has no lanes in) at [row * 64 + subgroup].
fn row_sum(lid: u32, v: f32) -> f32 {
    let row = lid / 64u;
    let first = subgroupBroadcastFirst(row);
    if subgroupAll(row == first) {
        let s = subgroupAdd(v);
        if sg_lane == 0u {
            for (var r = 0u; r < 4u; r++) {
                reduce_scratch[r * 64u + sg_id] = select(0.0, s, r == row);
            }
        }
    } else {
        for (var r = 0u; r < 4u; r++) {
            let s = subgroupAdd(select(0.0, v, r == row));
            if sg_lane == 0u {
                reduce_scratch[r * 64u + sg_id] = s;
            }
        }
    }
    workgroupBarrier();
    var total = 0.0;
    if lid % 64u == 0u {
        total = reduce_scratch[row * 64u];
        for (var i = 1u; i < sg_count; i++) {
            total += reduce_scratch[row * 64u + i];
        }
    }
    workgroupBarrier();
    return total;
}
