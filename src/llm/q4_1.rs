//! Q4_1 x Q8_1 matrix-vector product over the raw GGUF blocks, the way llama.cpp does it.
//!
//! candle's CPU kernel for Q4_1 is a scalar fallback; this one is written so the compiler
//! vectorises it (x86-64-v3 here): the input vector is quantized once per product into Q8_1
//! blocks (32 int8, scale d8, and s8 = d8 * sum(q8)), then each 32-weight block of a row adds
//! `d4 * d8 * sum(q4 * q8) + m4 * s8`, the inner sum in integers. Rows are split across the
//! rayon pool. GGUF's Q4_1 block: f16 d, f16 m, 16 bytes; byte j holds weight j in its low
//! nibble and weight j + 16 in its high nibble; a weight is `q * d + m`.

use half::f16;
use rayon::prelude::*;

use super::error::{LlmError, Result};

/// Weights per block.
pub const QK: usize = 32;
/// Bytes per Q4_1 block: d, m (f16 each) and 16 bytes of nibbles.
pub const BLOCK_BYTES: usize = 20;

/// A vector quantized to Q8_1 blocks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Q8_1Vec {
    pub d: Vec<f32>,
    pub s: Vec<f32>,
    pub qs: Vec<i8>,
}

/// llama.cpp's `quantize_row_q8_1`: d = max|x| / 127, q = round(x / d), d and d * sum(q) kept
/// as f16.
pub fn quantize_q8_1(x: &[f32]) -> Q8_1Vec {
    let blocks = x.len() / QK;
    let mut out = Q8_1Vec {
        d: Vec::with_capacity(blocks),
        s: Vec::with_capacity(blocks),
        qs: vec![0; blocks * QK],
    };
    for (b, chunk) in x.chunks_exact(QK).enumerate() {
        let amax = chunk.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = &mut out.qs[b * QK..(b + 1) * QK];
        let mut sum = 0i32;
        for (qi, v) in q.iter_mut().zip(chunk) {
            *qi = (v * id).round() as i8;
            sum += *qi as i32;
        }
        out.d.push(f16::from_f32(d).to_f32());
        out.s.push(f16::from_f32(sum as f32 * d).to_f32());
    }
    out
}

/// A Q4_1 matrix, `rows x cols`, kept as the file's bytes.
#[derive(Debug, Clone)]
pub struct Q4_1Matrix {
    pub rows: usize,
    pub cols: usize,
    bytes: Vec<u8>,
}

impl Q4_1Matrix {
    pub fn new(rows: usize, cols: usize, bytes: Vec<u8>) -> Result<Self> {
        if !cols.is_multiple_of(QK) || bytes.len() != rows * cols / QK * BLOCK_BYTES {
            return Err(LlmError::Tensor {
                name: "Q4_1 matrix".into(),
                reason: format!(
                    "{} bytes do not hold {rows} x {cols} Q4_1 weights",
                    bytes.len()
                ),
            });
        }
        Ok(Self { rows, cols, bytes })
    }

    fn row(&self, r: usize) -> &[u8] {
        let n = self.cols / QK * BLOCK_BYTES;
        &self.bytes[r * n..(r + 1) * n]
    }

    /// `out[r] = dot(row r, x)` with `x` already quantized.
    pub fn matvec_q8(&self, x: &Q8_1Vec, out: &mut [f32]) {
        out.par_iter_mut()
            .enumerate()
            .with_min_len(16)
            .for_each(|(r, o)| *o = dot_row(self.row(r), x));
    }

    /// `y = W x` for each row of `xs` (`n x cols`, row-major), giving `n x rows`.
    pub fn matmul(&self, xs: &[f32], n: usize) -> Vec<f32> {
        let mut out = vec![0f32; n * self.rows];
        for (x, o) in xs
            .chunks_exact(self.cols)
            .zip(out.chunks_exact_mut(self.rows))
        {
            self.matvec_q8(&quantize_q8_1(x), o);
        }
        out
    }

    /// The weights as f32, for tests and reference: `q * d + m`.
    pub fn dequantize_row(&self, r: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.cols);
        for block in self.row(r).chunks_exact(BLOCK_BYTES) {
            let (d, m) = scales(block);
            let mut w = [0f32; QK];
            for j in 0..QK / 2 {
                let byte = block[4 + j];
                w[j] = (byte & 0x0F) as f32 * d + m;
                w[j + QK / 2] = (byte >> 4) as f32 * d + m;
            }
            out.extend_from_slice(&w);
        }
        out
    }
}

fn scales(block: &[u8]) -> (f32, f32) {
    let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
    let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
    (d, m)
}

/// One row against a Q8_1 vector: sum over blocks of `d4*d8*sum(q4*q8) + m4*s8`.
#[inline]
fn dot_row(row: &[u8], x: &Q8_1Vec) -> f32 {
    let mut acc = 0f32;
    for ((block, q8), (d8, s8)) in row
        .chunks_exact(BLOCK_BYTES)
        .zip(x.qs.chunks_exact(QK))
        .zip(x.d.iter().zip(&x.s))
    {
        let (d4, m4) = scales(block);
        // Unpack the nibbles (weight j low, weight j + 16 high), then one 32-wide int dot
        // product: both loops have fixed trip counts the compiler turns into SIMD.
        let mut w = [0i8; QK];
        for j in 0..QK / 2 {
            let byte = block[4 + j];
            w[j] = (byte & 0x0F) as i8;
            w[j + QK / 2] = (byte >> 4) as i8;
        }
        let mut sum = 0i32;
        for (a, b) in w.iter().zip(q8) {
            sum += (*a as i16 * *b as i16) as i32;
        }
        acc += d4 * d8 * sum as f32 + m4 * s8;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::sampling::Rng;

    fn random_matrix(rng: &mut Rng, rows: usize, cols: usize) -> Q4_1Matrix {
        let mut bytes = Vec::with_capacity(rows * cols / QK * BLOCK_BYTES);
        for _ in 0..rows * cols / QK {
            let d = f16::from_f32(rng.next_f32() * 0.02 + 0.001);
            let m = f16::from_f32(-rng.next_f32() * 0.15);
            bytes.extend_from_slice(&d.to_le_bytes());
            bytes.extend_from_slice(&m.to_le_bytes());
            bytes.extend((0..16).map(|_| (rng.next_u64() & 0xFF) as u8));
        }
        Q4_1Matrix::new(rows, cols, bytes).unwrap()
    }

    #[test]
    fn nibble_order_is_ggufs() {
        // One block: d = 1, m = 0, byte 0 = 0x21 -> weight 0 is 1, weight 16 is 2.
        let mut bytes = vec![];
        bytes.extend_from_slice(&f16::from_f32(1.0).to_le_bytes());
        bytes.extend_from_slice(&f16::from_f32(0.0).to_le_bytes());
        bytes.push(0x21);
        bytes.extend([0u8; 15]);
        let w = Q4_1Matrix::new(1, 32, bytes).unwrap().dequantize_row(0);
        assert_eq!((w[0], w[1], w[16]), (1.0, 0.0, 2.0));
    }

    #[test]
    fn matvec_equals_the_dequantized_product() {
        let mut rng = Rng::new(5);
        for (rows, cols) in [(1, 32), (7, 64), (33, 576), (64, 1536)] {
            let w = random_matrix(&mut rng, rows, cols);
            let x: Vec<f32> = (0..cols).map(|_| rng.next_f32() * 4.0 - 2.0).collect();
            let got = w.matmul(&x, 1);
            // Reference in f64 with the same quantized input (dequantized back).
            let q = quantize_q8_1(&x);
            for (r, g) in got.iter().enumerate() {
                let wr = w.dequantize_row(r);
                let mut want = 0f64;
                for (b, chunk) in wr.chunks_exact(QK).enumerate() {
                    let (d4, m4) = scales(&w.row(r)[b * BLOCK_BYTES..]);
                    let mut int = 0f64;
                    for (j, _) in chunk.iter().enumerate() {
                        let qw = ((chunk[j] - m4) / d4).round() as f64;
                        int += qw * q.qs[b * QK + j] as f64;
                    }
                    want += d4 as f64 * q.d[b] as f64 * int + m4 as f64 * q.s[b] as f64;
                }
                assert!(
                    ((*g as f64) - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{g} vs {want}"
                );
                // And close to the float product (the Q8_1 rounding is the only loss).
                let exact: f64 = wr.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                let scale: f64 = wr
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                assert!(
                    ((*g as f64) - exact).abs() < 0.02 * scale + 1e-4,
                    "{g} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn quantize_q8_1_keeps_scale_and_sum() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) / 7.0).collect();
        let q = quantize_q8_1(&x);
        assert_eq!(q.qs.len(), 64);
        let amax = x[..32].iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!((q.d[0] - amax / 127.0).abs() < 1e-3);
        let sum: i32 = q.qs[..32].iter().map(|v| *v as i32).sum();
        assert!((q.s[0] - sum as f32 * q.d[0]).abs() < 0.02 * q.s[0].abs().max(1.0));
        let zeros = quantize_q8_1(&[0.0; 32]);
        assert_eq!((zeros.d[0], zeros.s[0]), (0.0, 0.0));
    }

    #[test]
    fn agrees_with_candles_q4_1_matmul() {
        use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
        use candle_core::{Device, Module, Tensor};
        let mut rng = Rng::new(9);
        let (rows, cols) = (96, 576);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.next_f32() - 0.5).collect();
        let wt = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&wt, GgmlDType::Q4_1).unwrap();
        let ours = Q4_1Matrix::new(rows, cols, q.data().unwrap().into_owned()).unwrap();
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
            // The two differ only in how the f16 block sum s8 is rounded.
            assert!((a - b).abs() < 2e-2, "{a} vs {b}");
        }
    }

    #[test]
    fn wrong_sizes_are_errors() {
        assert!(Q4_1Matrix::new(2, 32, vec![0; 20]).is_err());
        assert!(Q4_1Matrix::new(1, 30, vec![0; 20]).is_err());
    }
}
