// Shared pieces of the LLM kernels: the per-token step record and the rounding that makes the
// GPU's 8-bit input blocks equal the CPU engine's (crates/llm/src/quant.rs, llama.cpp's quantize_row_q8_1).
#define_import_path samemath::llm

// Written once per token before its commands are submitted.
struct Step {
    // Position of the token being processed (0-based; a prompt's batch: of its first token).
    pos: u32,
    // Its token id (a prompt's batch: how many tokens it holds).
    token: u32,
    // First residual slot the final norm reads (logit lens: 1; otherwise the last slot; a
    // prompt's batch: its last row).
    first_slot: u32,
    // Padding: `rot` starts 8-byte aligned at 16.
    _pad: u32,
    // RoPE (sin, cos) of each pair of a head's dimensions at `pos` (a batch: at each of its
    // positions in turn), computed on the CPU as the CPU engine does, so both rotate by the
    // same numbers.
    rot: array<vec2<f32>>,
}

// f32 rounded to the nearest f16 value (ties to even), returned as f32: what the CPU engine's
// `f16::from_f32(x).to_f32()` gives for the scales of quantized inputs.
fn round_f16(x: f32) -> f32 {
    let a = abs(x);
    if a >= 65520.0 {
        // Beyond f16's range: infinity, as on the CPU.
        return bitcast<f32>((bitcast<u32>(x) & 0x80000000u) | 0x7F800000u);
    }
    if a < 6.103515625e-5 {
        // f16 subnormals: multiples of 2^-24. round() ties to even.
        return round(x * 16777216.0) / 16777216.0;
    }
    let b = bitcast<u32>(x);
    let lsb = (b >> 13u) & 1u;
    return bitcast<f32>((b + 0xFFFu + lsb) & 0xFFFFE000u);
}

// SwiGLU's activation: silu(gate) * up. One function for the SwiGLU kernels and the down
// product that makes its input itself, so their activations are the same bits.
fn silu_times(g: f32, up: f32) -> f32 {
    return g / (1.0 + exp(-g)) * up;
}

// Rust's f32::round: halves away from zero (WGSL's round() ties to even).
fn round_away(x: f32) -> f32 {
    let t = trunc(x);
    if abs(x - t) >= 0.5 {
        return t + sign(x);
    }
    return t;
}

// A signed byte of a packed word, as f32.
fn sbyte(w: u32, i: u32) -> f32 {
    return f32(bitcast<i32>(w << (24u - 8u * i)) >> 24u);
}

// Four signed bytes of a packed word.
fn sbytes4(w: u32) -> vec4<f32> {
    return vec4<f32>(sbyte(w, 0u), sbyte(w, 1u), sbyte(w, 2u), sbyte(w, 3u));
}

// Four unsigned nibbles of a Q4_1 word: bytes 0..3, low (shift 0) or high (shift 4) halves.
fn nibbles4(w: u32, shift: u32) -> vec4<f32> {
    let v = w >> shift;
    return vec4<f32>(f32(v & 15u), f32((v >> 8u) & 15u), f32((v >> 16u) & 15u), f32((v >> 24u) & 15u));
}
