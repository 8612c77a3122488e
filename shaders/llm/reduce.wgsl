// The 256-wide workgroup reductions the LLM kernels share (one tree, so every kernel sums in the
// same order): each invocation brings its value, every invocation gets the result. Called in
// uniform control flow, as workgroupBarrier() must be; the scratch is free again on return.
// `reduce_subgroup.wgsl` is the same module with subgroup operations, for devices that have them
// (wgpu's SUBGROUP feature); the kernels import whichever the device can run.
#define_import_path samemath::llm::reduce

// What an entry point that reduces is given; it calls `enter` with it first. Only ids that
// differ between a workgroup's invocations belong here: a browser's uniformity analysis takes a
// struct parameter as a whole, so workgroup_id (uniform, loop bounds depend on it) stays a
// parameter of its own.
struct Invocation {
    @builtin(local_invocation_index) lid: u32,
}

// Nothing to note without subgroups.
fn enter(inv: Invocation) {}

// Subgroup operations are in use (false here).
const SUBGROUPS: bool = false;

var<workgroup> reduce_scratch: array<f32, 256>;

// The sum of `v` over the workgroup's 256 invocations (`lid`: local_invocation_index).
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    reduce_scratch[lid] = v;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
        if lid < stride {
            reduce_scratch[lid] += reduce_scratch[lid + stride];
        }
        workgroupBarrier();
    }
    let total = reduce_scratch[0];
    workgroupBarrier();
    return total;
}

// The largest `v` over the workgroup's 256 invocations.
fn workgroup_max(lid: u32, v: f32) -> f32 {
    reduce_scratch[lid] = v;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
        if lid < stride {
            reduce_scratch[lid] = max(reduce_scratch[lid], reduce_scratch[lid + stride]);
        }
        workgroupBarrier();
    }
    let best = reduce_scratch[0];
    workgroupBarrier();
    return best;
}

// The sum of `v` over each row of 64 invocations (lid / 64), returned to the row's first
// invocation (lid % 64 == 0; what the others get is not the sum). A tree over the row's lanes.
fn row_sum(lid: u32, v: f32) -> f32 {
    reduce_scratch[lid] = v;
    workgroupBarrier();
    let lane = lid % 64u;
    for (var stride = 32u; stride > 0u; stride = stride >> 1u) {
        if lane < stride {
            reduce_scratch[lid] += reduce_scratch[lid + stride];
        }
        workgroupBarrier();
    }
    let total = reduce_scratch[lid];
    workgroupBarrier();
    return total;
}
