// The 256-wide workgroup reductions the LLM kernels share (one tree, so every kernel sums in the
// same order): each invocation brings its value, every invocation gets the result. Called in
// uniform control flow, as workgroupBarrier() must be; the scratch is free again on return.
#define_import_path samemath::llm::reduce

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
