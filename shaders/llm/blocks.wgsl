// Reading GGUF's raw weight blocks in a kernel that declares `weights: array<u32>` (the file's
// bytes, uploaded once as they are).
#define_import_path samemath::llm::blocks

// Q4_1 block `blk` (20 bytes = 5 words, always word-aligned): (d, m), then 16 bytes where byte j
// holds weight j (low nibble) and weight j + 16 (high nibble).
fn q4_1_scales(blk: u32) -> vec2<f32> {
    return unpack2x16float(weights[blk * 5u]);
}

fn q4_1_word(blk: u32, k: u32) -> u32 {
    return weights[blk * 5u + 1u + k];
}

// Q8_0 block `blk` (34 bytes: f16 d, 32 int8) read straight from the file's bytes: blocks
// alternate between word-aligned and half-word-aligned starts.
fn q8_0_scale(blk: u32) -> f32 {
    let at = blk * 34u;
    let w = weights[at >> 2u];
    let half = select(w >> 16u, w & 0xFFFFu, (at & 3u) == 0u);
    return unpack2x16float(half).x;
}

// Word k (quants 4k..4k+3) of Q8_0 block `blk`.
fn q8_0_word(blk: u32, k: u32) -> u32 {
    let at = blk * 34u + 2u + 4u * k;
    let i = at >> 2u;
    if (at & 3u) == 0u {
        return weights[i];
    }
    return (weights[i] >> 16u) | (weights[i + 1u] << 16u);
}
