//! Quantized matrix products over GGUF blocks (Q4_1 and Q8_0 weights), the way llama.cpp does them.
//!
//! candle's CPU kernel for Q4_1 is a scalar fallback, and its matmul reads the weights once per
//! input row; these kernels quantize each input vector once into 8-bit blocks (llama.cpp's
//! Q8_1: 32 int8, scale d, and s = d * sum(q)), then every 32-weight block adds
//! `dw * dx * sum(qw * qx)` (+ `mw * sx` for Q4_1's offset), the inner sum in integers.
//! A weight row is multiplied with up to four input rows while it is in cache (prefill and the
//! logit lens), and rows are split across the rayon pool.
//!
//! The blocks are repacked at load: scales and offsets as f32 arrays, the quantized values
//! contiguous. On x86-64 with AVX2 (this crate builds for x86-64-v3) the block sum is
//! `maddubs`/`madd` on 32 lanes; elsewhere (wasm, other CPUs) a scalar twin computes the same
//! integers, and the tests hold the two to each other.
//!
//! GGUF's Q4_1 block: f16 d, f16 m, 16 bytes; byte j holds weight j in its low nibble and weight
//! j + 16 in its high nibble; a weight is `q * d + m`. Q8_0: f16 d, 32 int8; a weight is `q * d`.

use half::f16;
use rayon::prelude::*;

use super::error::{LlmError, Result};

/// Weights per block.
pub const QK: usize = 32;

/// The block formats these kernels take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockType {
    Q4_1,
    Q8_0,
}

impl BlockType {
    /// Bytes of one block in the GGUF file.
    pub fn file_bytes(self) -> usize {
        match self {
            BlockType::Q4_1 => 20,
            BlockType::Q8_0 => 34,
        }
    }

    /// Bytes of one block's quantized values once repacked.
    fn packed_bytes(self) -> usize {
        match self {
            BlockType::Q4_1 => 16,
            BlockType::Q8_0 => 32,
        }
    }
}

/// A vector quantized to 8-bit blocks of 32.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Q8Vec {
    pub d: Vec<f32>,
    /// `d * sum(q)` per block (used by Q4_1's offset term).
    pub s: Vec<f32>,
    pub qs: Vec<i8>,
}

/// llama.cpp's `quantize_row_q8_1` (and `_q8_0`, which keeps only d and q): d = max|x| / 127,
/// q = round(x / d), d and d * sum(q) rounded to f16.
pub fn quantize(x: &[f32]) -> Q8Vec {
    let blocks = x.len() / QK;
    let mut out = Q8Vec {
        d: Vec::with_capacity(blocks),
        s: Vec::with_capacity(blocks),
        qs: vec![0; blocks * QK],
    };
    for (chunk, q) in x.chunks_exact(QK).zip(out.qs.chunks_exact_mut(QK)) {
        let (d, sum) = quantize_block(chunk, q);
        out.d.push(f16::from_f32(d).to_f32());
        out.s.push(f16::from_f32(sum as f32 * d).to_f32());
    }
    out
}

/// One block of `quantize`: its scale d and the sum of its quantized values, with AVX2 where
/// this build has it (`simd::quantize_block`), else `quantize_block_scalar`.
fn quantize_block(chunk: &[f32], q: &mut [i8]) -> (f32, i32) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        simd::quantize_block(chunk, q)
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    {
        quantize_block_scalar(chunk, q)
    }
}

/// `quantize_block` in plain Rust: the SIMD form gives the same bytes, d and sum (the tests
/// compare them).
#[cfg_attr(
    all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ),
    allow(dead_code)
)]
fn quantize_block_scalar(chunk: &[f32], q: &mut [i8]) -> (f32, i32) {
    let amax = chunk.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (qi, v) in q.iter_mut().zip(chunk) {
        *qi = (v * id).round() as i8;
        sum += *qi as i32;
    }
    (d, sum)
}

/// A quantized matrix, `rows x cols`, repacked from the file's blocks.
#[derive(Debug, Clone)]
pub struct QMatrix {
    pub ty: BlockType,
    pub rows: usize,
    pub cols: usize,
    /// Per block: the scale d.
    d: Vec<f32>,
    /// Per block: the offset m (Q4_1; empty for Q8_0).
    m: Vec<f32>,
    /// Per block: 16 bytes of nibbles (Q4_1) or 32 int8 stored as bytes (Q8_0).
    qs: Vec<u8>,
    /// Per block: 128 times its weights' sum, made by the logit lens's VNNI kernel when it
    /// first needs them (`lens.rs`).
    pub(crate) lens_sums: std::sync::OnceLock<Vec<i32>>,
}

impl QMatrix {
    /// Repack `rows x cols` weights from the GGUF bytes of a `ty` tensor.
    pub fn from_gguf(ty: BlockType, rows: usize, cols: usize, bytes: &[u8]) -> Result<Self> {
        // The size in u64, checked: in usize rows x cols can wrap (to 0 on 32-bit wasm for a
        // 65536 x 65536 matrix) and an empty slice would pass.
        let needed = crate::gguf_check::tensor_bytes(&[rows, cols], QK, ty.file_bytes());
        if cols == 0 || !cols.is_multiple_of(QK) || needed != Ok(bytes.len() as u64) {
            return Err(LlmError::Tensor {
                name: format!("{ty:?} matrix"),
                reason: format!(
                    "{} bytes do not hold {rows} x {cols} {ty:?} weights",
                    bytes.len()
                ),
            });
        }
        // The same count as rows * cols / QK, which the check above keeps from wrapping.
        let blocks = bytes.len() / ty.file_bytes();
        let mut out = QMatrix {
            ty,
            rows,
            cols,
            d: Vec::with_capacity(blocks),
            m: Vec::with_capacity(if ty == BlockType::Q4_1 { blocks } else { 0 }),
            qs: Vec::with_capacity(blocks * ty.packed_bytes()),
            lens_sums: Default::default(),
        };
        for block in bytes.chunks_exact(ty.file_bytes()) {
            out.d
                .push(f16::from_le_bytes([block[0], block[1]]).to_f32());
            match ty {
                BlockType::Q4_1 => {
                    out.m
                        .push(f16::from_le_bytes([block[2], block[3]]).to_f32());
                    out.qs.extend_from_slice(&block[4..20]);
                }
                BlockType::Q8_0 => out.qs.extend_from_slice(&block[2..34]),
            }
        }
        Ok(out)
    }

    /// The rows of several matrices of one format and width, one under the other.
    pub fn stack(parts: &[&QMatrix]) -> Option<QMatrix> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|m| m.ty != first.ty || m.cols != first.cols)
        {
            return None;
        }
        Some(QMatrix {
            ty: first.ty,
            rows: parts.iter().map(|m| m.rows).sum(),
            cols: first.cols,
            d: parts.iter().flat_map(|m| m.d.iter().copied()).collect(),
            m: parts.iter().flat_map(|m| m.m.iter().copied()).collect(),
            qs: parts.iter().flat_map(|m| m.qs.iter().copied()).collect(),
            lens_sums: Default::default(),
        })
    }

    pub(crate) fn blocks_per_row(&self) -> usize {
        self.cols / QK
    }

    pub(crate) fn row(&self, r: usize) -> Row<'_> {
        self.rows(r, 1)
    }

    /// Rows `first..first + count` as one run of blocks (rows are stored one after another).
    pub(crate) fn rows(&self, first: usize, count: usize) -> Row<'_> {
        let nb = self.blocks_per_row();
        let all = Row {
            ty: self.ty,
            d: &self.d,
            m: &self.m,
            qs: &self.qs,
        };
        all.blocks(first * nb, (first + count) * nb)
    }

    /// The weights of row `r` as f32 (embedding lookup, tests).
    pub fn dequantize_row(&self, r: usize) -> Vec<f32> {
        let row = self.row(r);
        let mut out = Vec::with_capacity(self.cols);
        for b in 0..self.blocks_per_row() {
            let d = row.d[b];
            match self.ty {
                BlockType::Q4_1 => {
                    let (m, nib) = (row.m[b], &row.qs[b * 16..b * 16 + 16]);
                    out.extend(nib.iter().map(|v| (v & 0x0F) as f32 * d + m));
                    out.extend(nib.iter().map(|v| (v >> 4) as f32 * d + m));
                }
                BlockType::Q8_0 => out.extend(
                    row.qs[b * 32..b * 32 + 32]
                        .iter()
                        .map(|v| *v as i8 as f32 * d),
                ),
            }
        }
        out
    }

    /// `out[i * rows + r] = dot(row r, xs[i])` for already quantized inputs.
    pub fn matmul_q8(&self, xs: &[Q8Vec], out: &mut [f32]) {
        let (n, rows) = (xs.len(), self.rows);
        assert_eq!(out.len(), n * rows, "output size");
        if n == 0 || rows == 0 {
            return;
        }
        // A few large tasks per thread: fewer wake-ups than one task per row.
        let per_task = rows.div_ceil(rayon::current_num_threads() * 4).max(16);
        // Results land row by row (`rows x n`); for one input that is already `out`'s layout.
        let mut by_row = if n == 1 {
            Vec::new()
        } else {
            vec![0f32; rows * n]
        };
        let target: &mut [f32] = if n == 1 { out } else { &mut by_row };
        let xs: Vec<&Q8Vec> = xs.iter().collect();
        target
            .par_chunks_mut(per_task * n)
            .enumerate()
            .for_each(|(t, chunk)| {
                if n == 1 && self.one_input(t * per_task, xs[0], chunk) {
                    return;
                }
                for (i, dots) in chunk.chunks_exact_mut(n).enumerate() {
                    let row = self.row(t * per_task + i);
                    for (group, dots) in xs.chunks(4).zip(dots.chunks_mut(4)) {
                        let got = row.dot_many(group);
                        // A whole group is a fixed-size copy (a slice of unknown length is
                        // a call to memcpy).
                        match <&mut [f32; 4]>::try_from(&mut *dots) {
                            Ok(all) => *all = got,
                            Err(_) => dots.copy_from_slice(&got[..group.len()]),
                        }
                    }
                }
            });
        // Back to `n x rows`, sixteen inputs a task: each row's sixteen values are one read,
        // and each input's row of outputs is written in order.
        if n > 1 {
            const AT: usize = 16;
            out.par_chunks_mut(AT * rows)
                .enumerate()
                .for_each(|(t, part)| {
                    let first = t * AT;
                    for (r, dots) in by_row.chunks_exact(n).enumerate() {
                        for (k, o) in part.chunks_exact_mut(rows).enumerate() {
                            o[r] = dots[first + k];
                        }
                    }
                });
        }
    }

    /// `out[i] = dot(row first + i, x)` in one call where this CPU has a kernel for a run of
    /// rows (x86-64: AVX-512 VNNI or AVX2); false (`out` untouched) where not: then
    /// `dot_many` a row.
    pub(crate) fn one_input(&self, first: usize, x: &Q8Vec, out: &mut [f32]) -> bool {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        {
            let run = self.rows(first, out.len());
            simd::one_input(&run, self.blocks_per_row(), x, out);
            true
        }
        #[cfg(not(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        )))]
        {
            let _ = (first, x, out);
            false
        }
    }

    /// `y = W x` for each row of `xs` (`n x cols`, row-major), giving `n x rows`.
    pub fn matmul(&self, xs: &[f32], n: usize) -> Vec<f32> {
        let q: Vec<Q8Vec> = xs.chunks_exact(self.cols).take(n).map(quantize).collect();
        let mut out = vec![0f32; n * self.rows];
        self.matmul_q8(&q, &mut out);
        out
    }
}

/// One repacked row.
#[derive(Clone, Copy)]
pub(crate) struct Row<'a> {
    ty: BlockType,
    pub(crate) d: &'a [f32],
    m: &'a [f32],
    pub(crate) qs: &'a [u8],
}

impl<'a> Row<'a> {
    /// Blocks `from..to` of this run (row `r` of a run of `nb`-block rows is
    /// `r * nb..(r + 1) * nb`).
    pub(crate) fn blocks(&self, from: usize, to: usize) -> Row<'a> {
        let pb = self.ty.packed_bytes();
        Row {
            ty: self.ty,
            d: &self.d[from..to],
            m: if self.m.is_empty() {
                &[]
            } else {
                &self.m[from..to]
            },
            qs: &self.qs[from * pb..to * pb],
        }
    }

    /// Dot products of this row with up to four inputs (unused lanes are 0).
    pub(crate) fn dot_many(&self, xs: &[&Q8Vec]) -> [f32; 4] {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        {
            simd::dot_many(self, xs)
        }
        #[cfg(not(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        )))]
        {
            scalar_dot_many(self, xs)
        }
    }
}

/// The portable twin of the SIMD kernel: the same integer block sums (the tests compare them).
#[cfg_attr(
    all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ),
    allow(dead_code)
)]
fn scalar_dot_many(row: &Row, xs: &[&Q8Vec]) -> [f32; 4] {
    let mut out = [0f32; 4];
    for (x, o) in xs.iter().zip(out.iter_mut()) {
        let mut acc = 0f32;
        for b in 0..row.d.len() {
            let q8 = &x.qs[b * QK..(b + 1) * QK];
            let sum: i32 = match row.ty {
                BlockType::Q4_1 => {
                    let nib = &row.qs[b * 16..b * 16 + 16];
                    (0..16)
                        .map(|j| {
                            (nib[j] & 0x0F) as i32 * q8[j] as i32
                                + (nib[j] >> 4) as i32 * q8[j + 16] as i32
                        })
                        .sum()
                }
                BlockType::Q8_0 => row.qs[b * 32..b * 32 + 32]
                    .iter()
                    .zip(q8)
                    .map(|(w, v)| *w as i8 as i32 * *v as i32)
                    .sum(),
            };
            acc += row.d[b] * x.d[b] * sum as f32;
            if row.ty == BlockType::Q4_1 {
                acc += row.m[b] * x.s[b];
            }
        }
        *o = acc;
    }
    out
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[allow(unsafe_code)]
mod simd;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::Rng;

    fn random_bytes(rng: &mut Rng, ty: BlockType, rows: usize, cols: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(rows * cols / QK * ty.file_bytes());
        for _ in 0..rows * cols / QK {
            let d = f16::from_f32(rng.next_f32() * 0.02 + 0.001);
            bytes.extend_from_slice(&d.to_le_bytes());
            if ty == BlockType::Q4_1 {
                let m = f16::from_f32(-rng.next_f32() * 0.15);
                bytes.extend_from_slice(&m.to_le_bytes());
            }
            bytes.extend((0..ty.packed_bytes()).map(|_| (rng.next_u64() & 0xFF) as u8));
        }
        bytes
    }

    /// The exact product of the dequantized weights with the dequantized quantized input, in f64.
    fn reference(w: &QMatrix, r: usize, q: &Q8Vec) -> f64 {
        let wr = w.dequantize_row(r);
        wr.iter()
            .enumerate()
            .map(|(j, v)| *v as f64 * q.qs[j] as f64 * q.d[j / QK] as f64)
            .sum::<f64>()
            + if w.ty == BlockType::Q4_1 {
                // Q4_1's offset uses the f16-rounded block sum s, as llama.cpp does.
                let row = w.row(r);
                (0..row.d.len())
                    .map(|b| {
                        let sum: i32 = q.qs[b * QK..(b + 1) * QK].iter().map(|v| *v as i32).sum();
                        row.m[b] as f64 * (q.s[b] as f64 - sum as f64 * q.d[b] as f64)
                    })
                    .sum::<f64>()
            } else {
                0.0
            }
    }

    #[test]
    fn nibble_order_is_ggufs() {
        // One block: d = 1, m = 0, byte 0 = 0x21 -> weight 0 is 1, weight 16 is 2.
        let mut bytes = vec![];
        bytes.extend_from_slice(&f16::from_f32(1.0).to_le_bytes());
        bytes.extend_from_slice(&f16::from_f32(0.0).to_le_bytes());
        bytes.push(0x21);
        bytes.extend([0u8; 15]);
        let w = QMatrix::from_gguf(BlockType::Q4_1, 1, 32, &bytes)
            .unwrap()
            .dequantize_row(0);
        assert_eq!((w[0], w[1], w[16]), (1.0, 0.0, 2.0));
    }

    #[test]
    fn products_equal_the_dequantized_product_for_both_types_and_batch_sizes() {
        let mut rng = Rng::new(5);
        for ty in [BlockType::Q4_1, BlockType::Q8_0] {
            for (rows, cols, n) in [(1, 32, 1), (7, 64, 3), (33, 576, 5), (64, 1536, 1)] {
                let w = QMatrix::from_gguf(ty, rows, cols, &random_bytes(&mut rng, ty, rows, cols))
                    .unwrap();
                let xs: Vec<f32> = (0..n * cols).map(|_| rng.next_f32() * 4.0 - 2.0).collect();
                let got = w.matmul(&xs, n);
                for i in 0..n {
                    let q = quantize(&xs[i * cols..(i + 1) * cols]);
                    for r in 0..rows {
                        let (g, want) = (got[i * rows + r] as f64, reference(&w, r, &q));
                        assert!(
                            (g - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{ty:?} {rows}x{cols} input {i} row {r}: {g} vs {want}"
                        );
                        // The scalar twin agrees with whichever kernel ran.
                        let s = scalar_dot_many(&w.row(r), &[&q])[0] as f64;
                        assert!((g - s).abs() < 1e-4 * (1.0 + s.abs()), "{g} vs scalar {s}");
                    }
                }
            }
        }
    }

    #[test]
    fn quantize_keeps_scale_and_sum() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) / 7.0).collect();
        let q = quantize(&x);
        assert_eq!(q.qs.len(), 64);
        let amax = x[..32].iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!((q.d[0] - amax / 127.0).abs() < 1e-3);
        let sum: i32 = q.qs[..32].iter().map(|v| *v as i32).sum();
        assert!((q.s[0] - sum as f32 * q.d[0]).abs() < 0.02 * q.s[0].abs().max(1.0));
        let zeros = quantize(&[0.0; 32]);
        assert_eq!((zeros.d[0], zeros.s[0]), (0.0, 0.0));
        // -128 never appears (symmetric range), so the SIMD sign trick cannot overflow.
        assert!(quantize(&[-1.0; 32]).qs.iter().all(|v| *v == -127));
    }

    /// The SIMD block quantizer gives the scalar one's bytes, scale and sum, ties at .5
    /// (rounded away from zero) and empty blocks included.
    #[test]
    fn both_quantizers_give_the_same_blocks() {
        let mut rng = Rng::new(17);
        let mut blocks: Vec<Vec<f32>> = (0..200)
            .map(|k| {
                let scale = [1e-3, 1.0, 40.0][k % 3];
                (0..QK)
                    .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
                    .collect()
            })
            .collect();
        // amax 127 makes id 1, so these land exactly on halves.
        let mut ties: Vec<f32> = (0..QK).map(|i| i as f32 - 15.5).collect();
        ties[0] = 127.0;
        ties[1] = -0.5;
        blocks.push(ties);
        blocks.push(vec![0.0; QK]);
        blocks.push(vec![-1.0; QK]);
        for block in &blocks {
            let mut a = [0i8; QK];
            let mut b = [0i8; QK];
            let (da, sa) = quantize_block_scalar(block, &mut a);
            let (db, sb) = quantize_block(block, &mut b);
            assert_eq!((a, da.to_bits(), sa), (b, db.to_bits(), sb), "{block:?}");
        }
    }

    #[test]
    fn agrees_with_candles_quantized_matmul() {
        use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
        use candle_core::{Device, Module, Tensor};
        let mut rng = Rng::new(9);
        let (rows, cols) = (96, 576);
        for (ty, gty) in [
            (BlockType::Q4_1, GgmlDType::Q4_1),
            (BlockType::Q8_0, GgmlDType::Q8_0),
        ] {
            let w: Vec<f32> = (0..rows * cols).map(|_| rng.next_f32() - 0.5).collect();
            let wt = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&wt, gty).unwrap();
            let ours = QMatrix::from_gguf(ty, rows, cols, &q.data().unwrap()).unwrap();
            let x: Vec<f32> = (0..cols).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
            let xt = Tensor::from_slice(&x, (1, cols), &Device::Cpu).unwrap();
            let theirs = QMatMul::from_qtensor(q)
                .unwrap()
                .forward(&xt)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for (a, b) in ours.matmul(&x, 1).iter().zip(&theirs) {
                // Q4_1: the two differ only in how the f16 block sum s is rounded.
                assert!((a - b).abs() < 2e-2, "{ty:?}: {a} vs {b}");
            }
        }
    }

    /// A run of rows against one input in one call (the decode's form: VNNI's loop where this
    /// CPU has it, AVX2's where not) gives the bits of `dot_many` and of AVX2's `dot_n` a row,
    /// for every row length, odd block counts and partial sixteens included.
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    #[test]
    fn one_inputs_products_are_the_same_bits_in_every_form() {
        let mut rng = Rng::new(9);
        for (blocks, ty) in [1, 2, 3, 15, 16, 17, 18, 33, 48]
            .into_iter()
            .flat_map(|b| [(b, BlockType::Q4_1), (b, BlockType::Q8_0)])
        {
            let cols = blocks * QK;
            let w = QMatrix::from_gguf(ty, 3, cols, &random_bytes(&mut rng, ty, 3, cols)).unwrap();
            let x: Vec<f32> = (0..cols).map(|_| rng.next_f32() * 4.0 - 2.0).collect();
            let q = quantize(&x);
            // A run of rows in one call (the decode's `matmul`) and one row at a time.
            let mut run = [f32::NAN; 3];
            if !w.one_input(0, &q, &mut run) {
                run.copy_from_slice(&w.matmul(&x, 1));
            }
            for (r, in_run) in run.iter().enumerate() {
                let row = w.row(r);
                let got = row.dot_many(&[&q])[0];
                assert_eq!(
                    got.to_bits(),
                    in_run.to_bits(),
                    "{ty:?}, {blocks} blocks, run"
                );
                // SAFETY: the crate's tests run on the CPU it is built for (x86-64-v3).
                #[allow(unsafe_code)]
                let avx2 = unsafe { simd::dot_n::<1>(&row, [&q])[0] };
                assert_eq!(
                    got.to_bits(),
                    avx2.to_bits(),
                    "{ty:?}, {blocks} blocks, row {r}"
                );
            }
        }
    }

    #[test]
    fn stacked_matrices_give_each_parts_product() {
        let mut rng = Rng::new(11);
        let ty = BlockType::Q4_1;
        let a = QMatrix::from_gguf(ty, 5, 64, &random_bytes(&mut rng, ty, 5, 64)).unwrap();
        let b = QMatrix::from_gguf(ty, 3, 64, &random_bytes(&mut rng, ty, 3, 64)).unwrap();
        let both = QMatrix::stack(&[&a, &b]).unwrap();
        let x: Vec<f32> = (0..128).map(|_| rng.next_f32() - 0.5).collect();
        let (ya, yb, y) = (a.matmul(&x, 2), b.matmul(&x, 2), both.matmul(&x, 2));
        for i in 0..2 {
            assert_eq!(&y[i * 8..i * 8 + 5], &ya[i * 5..i * 5 + 5]);
            assert_eq!(&y[i * 8 + 5..i * 8 + 8], &yb[i * 3..i * 3 + 3]);
        }
        let c = QMatrix::from_gguf(
            BlockType::Q8_0,
            1,
            64,
            &random_bytes(&mut rng, BlockType::Q8_0, 1, 64),
        );
        assert!(QMatrix::stack(&[&a, &c.unwrap()]).is_none());
    }

    #[test]
    fn wrong_sizes_are_errors() {
        assert!(QMatrix::from_gguf(BlockType::Q4_1, 2, 32, &[0; 20]).is_err());
        assert!(QMatrix::from_gguf(BlockType::Q4_1, 1, 30, &[0; 20]).is_err());
        assert!(QMatrix::from_gguf(BlockType::Q8_0, 1, 32, &[0; 33]).is_err());
        // Data for three rows of four.
        assert!(QMatrix::from_gguf(BlockType::Q8_0, 4, 64, &[0; 3 * 2 * 34]).is_err());
    }

    /// rows x cols past usize (2^64 here; 2^32 on wasm, where 65536 x 65536 is enough) must not
    /// wrap to a size of 0 that an empty slice matches: the first product would then slice it.
    #[test]
    fn sizes_that_wrap_are_errors() {
        assert!(QMatrix::from_gguf(BlockType::Q8_0, 1 << 33, 1 << 31, &[]).is_err());
        assert!(QMatrix::from_gguf(BlockType::Q4_1, usize::MAX / 16 + 1, 32, &[]).is_err());
    }
}
