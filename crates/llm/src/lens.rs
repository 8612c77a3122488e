//! The logit lens's head product: one Q8_0 weight row against many quantized inputs at once
//! (the residuals of every layer), the inputs interleaved so that each SIMD lane is one input.
//! Four weights are broadcast to every lane and meet four bytes of each input: with AVX-512
//! VNNI one `vpdpbusd` does that for 16 inputs, with AVX2 `maddubs` + `madd` for 8 (the sign
//! trick of quant.rs), so a block of 32 weights costs a few instructions for all the inputs
//! instead of a few per input. The block's integer sum is exact; each block then adds
//! `sum * (d_w * d_x)` with one fused multiply-add per lane, in block order, which the scalar
//! twin repeats exactly (the tests hold all three to the same bits).

use rayon::prelude::*;

use super::quant::{BlockType, Q8Vec, QK, QMatrix};

/// Inputs per group (one AVX-512 register of i32 lanes; two AVX2 registers).
pub(crate) const LANES: usize = 16;
/// Four-byte steps per block.
const STEPS: usize = QK / 4;

/// Quantized inputs laid out for the kernels: for group g, block b, step k, the 16 inputs'
/// four bytes side by side (64 bytes), and each block's input scales. For VNNI (`unsigned`),
/// whose `vpdpbusd` takes one side unsigned, the bytes are stored offset by 128 (`x ^ 0x80` is
/// `x + 128` as a byte), and 128 times the weights' block sum comes off again.
#[derive(Debug, Clone)]
pub(crate) struct LensInputs {
    pub(crate) groups: usize,
    blocks: usize,
    unsigned: bool,
    xq: Vec<u8>,
    dx: Vec<f32>,
}

impl LensInputs {
    /// The inputs of `blocks` blocks each, in the form this CPU's kernel takes.
    pub(crate) fn new(xs: &[Q8Vec], blocks: usize) -> Self {
        Self::with_form(xs, blocks, vnni())
    }

    /// The inputs of `blocks` blocks each; lanes past the last input are zeros.
    fn with_form(xs: &[Q8Vec], blocks: usize, unsigned: bool) -> Self {
        let groups = xs.len().div_ceil(LANES);
        let flip = if unsigned { 0x80 } else { 0 };
        let mut out = LensInputs {
            groups,
            blocks,
            unsigned,
            xq: vec![flip; groups * blocks * STEPS * LANES * 4],
            dx: vec![0.0; groups * blocks * LANES],
        };
        for (i, x) in xs.iter().enumerate() {
            let (g, lane) = (i / LANES, i % LANES);
            for b in 0..blocks {
                let block = &x.qs[b * QK..(b + 1) * QK];
                out.dx[(g * blocks + b) * LANES + lane] = x.d[b];
                for k in 0..STEPS {
                    let to = (((g * blocks + b) * STEPS + k) * LANES + lane) * 4;
                    for (o, v) in out.xq[to..to + 4].iter_mut().zip(&block[4 * k..]) {
                        *o = *v as u8 ^ flip;
                    }
                }
            }
        }
        out
    }

    fn group_base(&self, g: usize, b: usize) -> usize {
        g * self.blocks + b
    }

    /// Input byte `at` as the signed value it stands for.
    fn value(&self, at: usize) -> i32 {
        (self.xq[at] ^ if self.unsigned { 0x80 } else { 0 }) as i8 as i32
    }
}

/// Whether this CPU has AVX-512 VNNI (the widest form of the lens kernel).
fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// One input's most likely row and its softmax over the rows seen, kept as they stream by
/// (online softmax): the logit lens's answer without keeping a whole vocabulary of logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Top1 {
    pub row: u32,
    /// That row's value (the largest).
    pub max: f32,
    /// Σ e^(value - max) over the rows seen.
    pub sum: f32,
}

impl Top1 {
    pub(crate) const NONE: Top1 = Top1 {
        row: 0,
        max: f32::NEG_INFINITY,
        sum: 0.0,
    };

    /// The softmax probability of `row`.
    pub fn prob(&self) -> f32 {
        if self.sum > 0.0 { 1.0 / self.sum } else { 0.0 }
    }

    /// Both halves together; `later` saw rows after this one's, so a tie keeps this row.
    pub(crate) fn then(self, later: Top1) -> Top1 {
        if later.sum == 0.0 {
            return self;
        }
        if self.sum == 0.0 {
            return later;
        }
        let max = self.max.max(later.max);
        let sum = self.sum * crate::attend::exp(self.max - max)
            + later.sum * crate::attend::exp(later.max - max);
        let row = if later.max > self.max {
            later.row
        } else {
            self.row
        };
        Top1 { row, max, sum }
    }
}

/// Sixteen inputs' `Top1`s at once, a lane each, folded over tiles of rows: the largest value
/// and its first row by comparisons, then the exponentials' sum against the new maximum (the
/// old sum rescaled once a tile), so the loops run over whole vectors of lanes.
#[derive(Debug, Clone, Copy)]
struct Online {
    max: [f32; LANES],
    sum: [f32; LANES],
    row: [u32; LANES],
}

impl Online {
    const NONE: Online = Online {
        max: [f32::NEG_INFINITY; LANES],
        sum: [0.0; LANES],
        row: [0; LANES],
    };

    /// Rows `first..` with their values in `values` (`width` a row), this group's lanes
    /// starting at `lane`: with AVX-512 where the CPU has it (a lane group is one register
    /// there; this crate's baseline, AVX2, took two and spilled), the same operations in the
    /// same order either way, so the same bits.
    fn fold(&mut self, values: &[f32], width: usize, lane: usize, first: usize) {
        assert!(lane + LANES <= width && values.len().is_multiple_of(width));
        #[cfg(target_arch = "x86_64")]
        if vnni() {
            // SAFETY: the CPU has AVX-512F (`vnni` checked it); lengths checked above.
            #[allow(unsafe_code)]
            unsafe {
                simd::fold_avx512(self, values, width, lane, first)
            };
            return;
        }
        self.fold_portable(values, width, lane, first);
    }

    /// `fold` in plain Rust (arrays of lanes the compiler vectorises).
    fn fold_portable(&mut self, values: &[f32], width: usize, lane: usize, first: usize) {
        let lanes = |v: &[f32]| -> [f32; LANES] {
            let mut out = [0f32; LANES];
            out.copy_from_slice(&v[lane..lane + LANES]);
            out
        };
        let (mut max, mut row) = (self.max, self.row);
        for (r, v) in values.chunks_exact(width).enumerate() {
            let v = lanes(v);
            for l in 0..LANES {
                // Strictly larger: a tie keeps the earlier row.
                let better = v[l] > max[l];
                max[l] = if better { v[l] } else { max[l] };
                row[l] = if better { (first + r) as u32 } else { row[l] };
            }
        }
        let mut sum: [f32; LANES] =
            std::array::from_fn(|l| self.sum[l] * crate::attend::exp(self.max[l] - max[l]));
        for v in values.chunks_exact(width) {
            let v = lanes(v);
            for l in 0..LANES {
                sum[l] += crate::attend::exp(v[l] - max[l]);
            }
        }
        *self = Online { max, sum, row };
    }

    /// Each lane's answer (none where no value was a number).
    fn tops(&self) -> impl Iterator<Item = Top1> + '_ {
        (0..LANES).map(|l| {
            if self.max[l] > f32::NEG_INFINITY {
                Top1 {
                    row: self.row[l],
                    max: self.max[l],
                    sum: self.sum[l],
                }
            } else {
                Top1::NONE
            }
        })
    }
}

/// Rows a task runs through the kernel before folding their values into its `Online`s (the
/// values stay in L1 between the two).
const TILE: usize = 16;

impl QMatrix {
    /// The output head for the logit lens and the real next token in one read of the weights:
    /// `out_last[r] = dot(row r, last)` for every row (the logits sampling needs), and for each
    /// of `lens` only its best row and softmax sum (`Top1`), kept per block of rows and merged
    /// in row order, so no input's full logits are ever stored.
    pub fn head_with_lens(&self, lens: &[Q8Vec], last: &Q8Vec, out_last: &mut [f32]) -> Vec<Top1> {
        let rows = self.rows;
        assert_eq!(out_last.len(), rows, "output size");
        let n = lens.len();
        let per_task = rows
            .div_ceil(rayon::current_num_threads() * 4)
            .clamp(64, 1024);
        let inputs: Vec<&Q8Vec> = lens.iter().chain(std::iter::once(last)).collect();
        // A Q8_0 head (the tied embedding) takes the lens inputs a SIMD lane each, where there
        // is SIMD for it (elsewhere, wasm, the per-input products are the faster way).
        let packed = (cfg!(target_arch = "x86_64") && self.ty == BlockType::Q8_0 && n > 0)
            .then(|| LensInputs::new(lens, self.blocks_per_row()));
        let blocks = self.blocks_per_row();
        let sums = packed
            .as_ref()
            .filter(|p| p.unsigned)
            .map(|_| self.lens_sums());
        // Each row's lens values side by side, a lane each (lanes past `n` are never read).
        let width = n.div_ceil(LANES) * LANES;
        let parts: Vec<Vec<Top1>> = out_last
            .par_chunks_mut(per_task)
            .enumerate()
            .map(|(t, chunk)| {
                let first = t * per_task;
                let mut tile = vec![0f32; TILE * width];
                let mut online = vec![Online::NONE; width / LANES];
                for (c, outs) in chunk.chunks_mut(TILE).enumerate() {
                    let start = first + c * TILE;
                    let values = &mut tile[..outs.len() * width];
                    if let Some(p) = &packed {
                        let run = self.rows(start, outs.len());
                        let sums = match sums {
                            Some(all) => &all[start * blocks..(start + outs.len()) * blocks],
                            None => &[],
                        };
                        products(run.d, run.qs, sums, p, values);
                        if !self.one_input(start, last, outs) {
                            for (i, out) in outs.iter_mut().enumerate() {
                                *out = self.row(start + i).dot_many(&[last])[0];
                            }
                        }
                    } else {
                        for (i, out) in outs.iter_mut().enumerate() {
                            let weights = self.row(start + i);
                            for (g, group) in inputs.chunks(4).enumerate() {
                                let got = weights.dot_many(group);
                                for (j, v) in got.iter().take(group.len()).enumerate() {
                                    match g * 4 + j {
                                        input if input < n => values[i * width + input] = *v,
                                        _ => *out = *v,
                                    }
                                }
                            }
                        }
                    }
                    for (g, o) in online.iter_mut().enumerate() {
                        o.fold(values, width, g * LANES, start);
                    }
                }
                online.iter().flat_map(Online::tops).take(n).collect()
            })
            .collect();
        (0..n)
            .map(|i| parts.iter().fold(Top1::NONE, |acc, part| acc.then(part[i])))
            .collect()
    }
}

/// `out[r * width + i] = dot(row r, input i)` for each of a run of Q8_0 rows (`d`: their block
/// scales, `qs`: their 32 bytes a block, `sums`: 128 times each block's sum, needed by the VNNI
/// form) and every input, `width` being `groups * LANES` (lanes past the inputs get 0).
pub(crate) fn products(d: &[f32], qs: &[u8], sums: &[i32], x: &LensInputs, out: &mut [f32]) {
    let count = d.len() / x.blocks;
    let width = x.groups * LANES;
    assert!(d.len() == count * x.blocks && qs.len() == d.len() * QK);
    assert!(out.len() >= count * width);
    #[cfg(target_arch = "x86_64")]
    if x.unsigned && vnni() {
        assert_eq!(sums.len(), d.len(), "block sums");
        // SAFETY: the CPU has the features (checked just above); lengths checked above.
        #[allow(unsafe_code)]
        unsafe {
            simd::rows_vnni(d, qs, sums, x, out)
        };
        return;
    }
    // Only the VNNI form needs the block sums.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = sums;
    let b = x.blocks;
    for (r, out) in out.chunks_exact_mut(width).take(count).enumerate() {
        row(
            &d[r * b..(r + 1) * b],
            &qs[r * b * QK..(r + 1) * b * QK],
            x,
            out,
        );
    }
}

impl QMatrix {
    /// 128 times each block's weight sum, made once on first use (the VNNI form's correction).
    fn lens_sums(&self) -> &[i32] {
        self.lens_sums.get_or_init(|| {
            let all = self.rows(0, self.rows);
            all.qs
                .par_chunks(QK)
                .map(|b| 128 * b.iter().map(|w| *w as i8 as i32).sum::<i32>())
                .collect()
        })
    }
}

/// `out[i] = dot(row, input i)` for one Q8_0 row (`d`: its block scales, `qs`: its 32 bytes a
/// block) and every input (`out` holds `groups * LANES`; lanes past the inputs get 0), without
/// VNNI (`products` has it).
pub(crate) fn row(d: &[f32], qs: &[u8], x: &LensInputs, out: &mut [f32]) {
    assert!(d.len() >= x.blocks && qs.len() >= x.blocks * QK);
    assert!(out.len() >= x.groups * LANES);
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    if !x.unsigned {
        // SAFETY: the crate is built for AVX2 and FMA (x86-64-v3); lengths checked above.
        #[allow(unsafe_code)]
        unsafe {
            simd::row_avx2(d, qs, x, out)
        };
        return;
    }
    row_scalar(d, qs, x, out);
}

/// The portable twin: the same integer block sums and the same fused multiply-adds in the same
/// order, so the same bits.
pub(crate) fn row_scalar(d: &[f32], qs: &[u8], x: &LensInputs, out: &mut [f32]) {
    for g in 0..x.groups {
        let mut total = [0f32; LANES];
        for b in 0..x.blocks {
            let base = x.group_base(g, b);
            for (lane, t) in total.iter_mut().enumerate() {
                let mut sum = 0i32;
                for k in 0..STEPS {
                    let at = ((base * STEPS + k) * LANES + lane) * 4;
                    for j in 0..4 {
                        let w = qs[b * QK + 4 * k + j] as i8 as i32;
                        sum += w * x.value(at + j);
                    }
                }
                let scale = d[b] * x.dx[base * LANES + lane];
                *t = (sum as f32).mul_add(scale, *t);
            }
        }
        out[g * LANES..(g + 1) * LANES].copy_from_slice(&total);
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize;
    use crate::sampling::Rng;

    /// A matrix of random blocks (scales small and positive).
    fn random_matrix(rng: &mut Rng, ty: BlockType, rows: usize, cols: usize) -> QMatrix {
        let mut bytes = Vec::new();
        for _ in 0..rows * cols / QK {
            let d = half::f16::from_f32(rng.next_f32() * 0.02 + 0.001);
            bytes.extend_from_slice(&d.to_le_bytes());
            if ty == BlockType::Q4_1 {
                let m = half::f16::from_f32(-rng.next_f32() * 0.15);
                bytes.extend_from_slice(&m.to_le_bytes());
            }
            let packed = if ty == BlockType::Q4_1 { 16 } else { 32 };
            bytes.extend((0..packed).map(|_| (rng.next_u64() & 0xFF) as u8));
        }
        QMatrix::from_gguf(ty, rows, cols, &bytes).unwrap()
    }

    #[test]
    fn the_lens_head_gives_each_inputs_top_row_and_the_last_inputs_every_value() {
        let mut rng = Rng::new(13);
        let (rows, cols, n) = (1000, 96, 21);
        let ty = BlockType::Q8_0;
        let w = random_matrix(&mut rng, ty, rows, cols);
        let xs: Vec<f32> = (0..(n + 1) * cols)
            .map(|_| rng.next_f32() * 4.0 - 2.0)
            .collect();
        let all = w.matmul(&xs, n + 1);
        let q: Vec<Q8Vec> = xs.chunks_exact(cols).map(quantize).collect();
        let mut last = vec![0f32; rows];
        let tops = w.head_with_lens(&q[..n], &q[n], &mut last);
        assert_eq!(
            last,
            all[n * rows..],
            "the last input's values, bit for bit"
        );
        for (i, top) in tops.iter().enumerate() {
            // The lens kernel adds the blocks in its own order: the same value to rounding.
            let (id, logit, prob) = crate::model::top_k(&all[i * rows..(i + 1) * rows], 1)[0];
            assert_eq!(top.row, id, "input {i}");
            assert!(
                (top.max - logit).abs() < 1e-5 * (1.0 + logit.abs()),
                "{top:?} vs {logit}"
            );
            assert!(
                (top.prob() - prob).abs() < 1e-4 * prob.max(1e-3),
                "{top:?} vs {prob}"
            );
        }
        // A Q4_1 head takes the general path: the same values as its matmul, bit for bit.
        let ty = BlockType::Q4_1;
        let w = random_matrix(&mut rng, ty, rows, cols);
        let all = w.matmul(&xs, n + 1);
        let tops = w.head_with_lens(&q[..n], &q[n], &mut last);
        assert_eq!(last, all[n * rows..]);
        for (i, top) in tops.iter().enumerate() {
            let (id, logit, _) = crate::model::top_k(&all[i * rows..(i + 1) * rows], 1)[0];
            assert_eq!((top.row, top.max), (id, logit), "Q4_1 input {i}");
        }
        // No lens inputs: only the values.
        assert!(w.head_with_lens(&[], &q[0], &mut last).is_empty());
        assert_eq!(last, all[..rows]);
    }

    /// The fold in this CPU's form (AVX-512 where it has it) gives the portable fold's bits,
    /// from the empty state and after it, ties and far-apart values included.
    #[test]
    fn both_folds_give_the_same_bits() {
        let mut rng = Rng::new(3);
        let width = 2 * LANES;
        let (mut fast, mut portable) = (Online::NONE, Online::NONE);
        for tile in 0..40 {
            let mut values: Vec<f32> = (0..TILE * width)
                .map(|_| (rng.next_f32() - 0.5) * [1.0, 30.0, 200.0][tile % 3])
                .collect();
            // A tie with the best so far, and a row equal to the one before it (the fold reads
            // the second group's lanes, LANES..2 * LANES).
            values[width + LANES + 3] = portable.max[3].max(values[LANES + 3]);
            values[2 * width + LANES + 5] = values[width + LANES + 5];
            values[3 * width + LANES + 5] = values[width + LANES + 5] + 1e3;
            values[4 * width + LANES + 5] = values[3 * width + LANES + 5];
            let first = tile * TILE;
            fast.fold(&values, width, LANES, first);
            portable.fold_portable(&values, width, LANES, first);
            let bits = |o: &Online| {
                let f = |v: &[f32; LANES]| v.map(f32::to_bits);
                (f(&o.max), f(&o.sum), o.row)
            };
            assert_eq!(bits(&fast), bits(&portable), "tile {tile}");
        }
    }

    #[test]
    fn every_form_gives_the_scalar_twins_bits_and_the_exact_dot_product() {
        let mut rng = Rng::new(21);
        let blocks = 18;
        for inputs in [1, 7, 16, 29, 33] {
            let xs: Vec<Q8Vec> = (0..inputs)
                .map(|_| {
                    let v: Vec<f32> = (0..blocks * QK)
                        .map(|_| rng.next_f32() * 6.0 - 3.0)
                        .collect();
                    quantize(&v)
                })
                .collect();
            // This CPU's form (VNNI's unsigned inputs where it has it) and the signed one.
            let packed = LensInputs::new(&xs, blocks);
            let signed = LensInputs::with_form(&xs, blocks, false);
            let width = packed.groups * LANES;
            for count in (0..12).map(|t| 1 + t % 6) {
                // A run of `count` rows; the checks below look at its last.
                let d: Vec<f32> = (0..count * blocks)
                    .map(|_| rng.next_f32() * 0.02 + 1e-3)
                    .collect();
                // Every byte, -128 included.
                let qs: Vec<u8> = (0..count * blocks * QK)
                    .map(|_| (rng.next_u64() & 0xFF) as u8)
                    .collect();
                let sums: Vec<i32> = qs
                    .chunks_exact(QK)
                    .map(|b| 128 * b.iter().map(|w| *w as i8 as i32).sum::<i32>())
                    .collect();
                let mut fast = vec![f32::NAN; count * width];
                products(&d, &qs, &sums, &packed, &mut fast);
                let mut scalar = vec![f32::NAN; width];
                let mut of_signed = vec![f32::NAN; width];
                for r in 0..count {
                    let (d, qs) = (
                        &d[r * blocks..(r + 1) * blocks],
                        &qs[r * blocks * QK..(r + 1) * blocks * QK],
                    );
                    row_scalar(d, qs, &packed, &mut scalar);
                    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    row_scalar(d, qs, &signed, &mut of_signed);
                    assert_eq!(bits(&scalar), bits(&of_signed), "both forms, scalar");
                    assert_eq!(
                        bits(&scalar),
                        bits(&fast[r * width..(r + 1) * width]),
                        "{inputs} inputs, row {r} of {count}"
                    );
                    #[cfg(all(
                        target_arch = "x86_64",
                        target_feature = "avx2",
                        target_feature = "fma"
                    ))]
                    {
                        let mut avx2 = vec![f32::NAN; width];
                        // SAFETY: the crate's tests run on the CPU it is built for (x86-64-v3).
                        #[allow(unsafe_code)]
                        unsafe {
                            simd::row_avx2(d, qs, &signed, &mut avx2)
                        };
                        assert_eq!(bits(&scalar), bits(&avx2), "{inputs} inputs, AVX2");
                    }
                }
                let (d, qs) = (&d[(count - 1) * blocks..], &qs[(count - 1) * blocks * QK..]);
                for (i, x) in xs.iter().enumerate() {
                    let exact: f64 = (0..blocks)
                        .map(|b| {
                            let s: i32 = (0..QK)
                                .map(|j| qs[b * QK + j] as i8 as i32 * x.qs[b * QK + j] as i32)
                                .sum();
                            s as f64 * d[b] as f64 * x.d[b] as f64
                        })
                        .sum();
                    let got = scalar[i] as f64;
                    assert!(
                        (got - exact).abs() < 1e-4 * (1.0 + exact.abs()),
                        "{got} vs {exact}"
                    );
                }
                assert!(
                    scalar[inputs..].iter().all(|v| *v == 0.0),
                    "padding lanes are 0"
                );
            }
        }
    }
}
