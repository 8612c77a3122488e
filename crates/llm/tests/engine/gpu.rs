//! The GPU backend (WGSL kernels in shaders/llm/) against its CPU twin, the CPU engine: kernel
//! by kernel on random shapes and values, each kernel reducing both ways where the device has
//! subgroups (the whole model: gpu_model.rs). Runs on whatever adapter wgpu finds: lavapipe
//! (software Vulkan) in CI, a real GPU where there is one.

use std::sync::{Arc, OnceLock};

use llm::LlamaConfig;
use llm::gpu::{GpuContext, GpuModel};
use llm::model::{rope, softmax, top_k};

pub(crate) fn gpu() -> &'static Arc<GpuModel> {
    static GPU: OnceLock<Arc<GpuModel>> = OnceLock::new();
    GPU.get_or_init(|| {
        let ctx = GpuContext::new().expect("a wgpu adapter (lavapipe in CI)");
        let path = llm::fetch::model_path(None);
        Arc::new(GpuModel::load(&path, ctx, 512).expect("upload the model"))
    })
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

// ---- kernels against their CPU twins ----

use llm::gpu::lab::{self, Binding, bytes_to_words, floats, words};
use llm::quant::{self, BlockType, QMatrix};

pub(crate) fn ctx() -> &'static GpuContext {
    gpu().context()
}

/// The device's two ways to reduce: subgroup operations where it has them (lavapipe has), and
/// the workgroup-memory trees every device can run.
fn contexts() -> &'static [GpuContext] {
    static BOTH: OnceLock<Vec<GpuContext>> = OnceLock::new();
    BOTH.get_or_init(|| {
        let ctx = ctx().clone();
        if ctx.subgroups {
            vec![ctx.clone(), ctx.without_subgroups()]
        } else {
            vec![ctx]
        }
    })
}

/// Case `i`'s device: the two ways to reduce take turns.
fn variant(i: usize) -> &'static GpuContext {
    let both = contexts();
    &both[i % both.len()]
}

/// xorshift64*: reproducible random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Activation-like values: mostly small, a few large outliers, some exact zeros.
    fn activations(&mut self, n: usize) -> Vec<f32> {
        let scale = [0.01, 1.0, 30.0][self.below(3)];
        (0..n)
            .map(|_| match self.below(20) {
                0 => 0.0,
                1 => self.unit() * scale * 40.0,
                _ => self.unit() * scale,
            })
            .collect()
    }
    /// GGUF blocks of `ty` with random quants and realistic f16 scales.
    fn blocks(&mut self, ty: BlockType, rows: usize, cols: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..rows * cols / 32 {
            let d = half::f16::from_f32(0.001 + 0.05 * self.unit().abs());
            out.extend_from_slice(&d.to_le_bytes());
            if ty == BlockType::Q4_1 {
                let m = half::f16::from_f32(-0.1 * self.unit().abs());
                out.extend_from_slice(&m.to_le_bytes());
            }
            for _ in 0..ty.file_bytes() - if ty == BlockType::Q4_1 { 4 } else { 2 } {
                out.push(self.next() as u8);
            }
        }
        out
    }
}

/// The CPU's quantized input as the kernels' (q, (d, s)) bindings.
fn q8_bindings(xs: &[quant::Q8Vec]) -> (Vec<u32>, Vec<u32>) {
    let q: Vec<f32> = xs
        .iter()
        .flat_map(|x| x.qs.iter().map(|q| *q as f32))
        .collect();
    let ds: Vec<f32> = xs
        .iter()
        .flat_map(|x| x.d.iter().zip(&x.s).flat_map(|(d, s)| [*d, *s]))
        .collect();
    (words(&q), words(&ds))
}

/// The kernels' quantized input against the CPU's `quant::quantize`: the same integers and
/// f16-rounded scales, except where x / d lands within float rounding of a .5 tie.
fn assert_same_quantization(what: &str, x: &[f32], q: &[f32], ds: &[f32]) {
    let cpu = quant::quantize(x);
    let mut flips = 0;
    for (i, (a, b)) in cpu.qs.iter().zip(q).enumerate() {
        if *a as f32 != *b {
            let d = cpu.d[i / 32];
            let t = x[i] / d;
            assert!(
                (*a as f32 - b).abs() == 1.0 && (t.abs().fract() - 0.5).abs() < 1e-3,
                "{what}: value {i} = {} quantized to {b}, CPU {a}",
                x[i]
            );
            flips += 1;
        }
    }
    for (b, (d, s)) in cpu.d.iter().zip(&cpu.s).enumerate() {
        assert_eq!(ds[2 * b], *d, "{what}: scale of block {b}");
        if flips == 0 {
            assert_eq!(ds[2 * b + 1], *s, "{what}: sum of block {b}");
        }
    }
    assert!(
        flips * 1000 <= x.len().max(1000),
        "{what}: {flips} tie flips"
    );
}

#[test]
fn matvec_kernels_match_the_cpu_on_random_matrices() {
    let mut rng = Rng(11);
    let mut worst = 0f32;
    for case in 0..16 {
        let ty = if case % 2 == 0 {
            BlockType::Q4_1
        } else {
            BlockType::Q8_0
        };
        let rows = 1 + rng.below(300);
        let cols = 32 * (1 + rng.below(50));
        let n = 1 + rng.below(3);
        let raw = rng.blocks(ty, rows, cols);
        let m = QMatrix::from_gguf(ty, rows, cols, &raw).unwrap();
        let xs: Vec<quant::Q8Vec> = (0..n)
            .map(|_| quant::quantize(&rng.activations(cols)))
            .collect();
        let mut cpu = vec![0f32; n * rows];
        m.matmul_q8(&xs, &mut cpu);
        let (q, ds) = q8_bindings(&xs);
        let entry = if ty == BlockType::Q4_1 {
            "q4_1"
        } else {
            "q8_0"
        };
        let dims = [rows as u32, cols as u32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let out = lab::run(
            variant(case),
            "matvec",
            entry,
            &[
                Some(Binding::Storage(&bytes_to_words(&raw))),
                Some(Binding::Storage(&q)),
                Some(Binding::Storage(&ds)),
                Some(Binding::Output(n * rows)),
                Some(Binding::Uniform(&dims)),
            ],
            (rows.div_ceil(4) as u32, 1, n as u32),
        )
        .unwrap();
        let gpu = floats(&out[0]);
        for (i, (a, b)) in cpu.iter().zip(&gpu).enumerate() {
            // Block sums are exact integers on both; only the order of adding the 32-weight
            // blocks' f32 contributions differs, so the error is float rounding relative to
            // the sum of the terms' sizes (sum |w| |x|), not to the (cancelling) result.
            let (z, r) = (i / rows, i % rows);
            let w = m.dequantize_row(r);
            let x = &xs[z];
            let size: f32 = w
                .iter()
                .enumerate()
                .map(|(j, w)| (w * x.qs[j] as f32 * x.d[j / 32]).abs())
                .sum();
            let rel = (a - b).abs() / size.max(1e-6);
            worst = worst.max(rel);
            assert!(
                rel < 1e-5,
                "case {case} {ty:?} {rows}x{cols} n={n}: cpu {a} gpu {b}"
            );
        }
    }
    eprintln!("mat-vec kernels: worst difference {worst:.2e} of sum |w x|");
}

/// The prompt's matrix x matrix kernel, eight tokens a workgroup, against the mat-vec kernel
/// run on each token: the same numbers, bit for bit (each token's sums keep the mat-vec's order),
/// over both formats, token counts that leave a group part-filled, and the residual add.
#[test]
fn matmul_kernels_give_each_token_the_matvec_kernels_numbers() {
    let mut rng = Rng(23);
    for case in 0..8 {
        let ty = if case % 2 == 0 {
            BlockType::Q4_1
        } else {
            BlockType::Q8_0
        };
        let rows = 1 + rng.below(300);
        let cols = 32 * (1 + rng.below(48));
        let n = [1, 8, 13, 20, 64, 3, 9, 17][case];
        let residual = case % 3 == 1;
        let raw = rng.blocks(ty, rows, cols);
        let xs: Vec<quant::Q8Vec> = (0..n)
            .map(|_| quant::quantize(&rng.activations(cols)))
            .collect();
        let before: Vec<f32> = rng.activations(n * rows);
        let (q, ds) = q8_bindings(&xs);
        let entry = if ty == BlockType::Q4_1 {
            "q4_1"
        } else {
            "q8_0"
        };
        let weights = bytes_to_words(&raw);
        let batch = [0, n as u32, 0, 0, 0, 0];
        let mm = lab::run(
            variant(case),
            "matmul",
            entry,
            &[
                Some(Binding::Storage(&weights)),
                Some(Binding::Storage(&q)),
                Some(Binding::Storage(&ds)),
                Some(Binding::InOut(&words(&before))),
                Some(Binding::Uniform(&[
                    rows as u32,
                    cols as u32,
                    u32::from(residual),
                    0,
                ])),
                Some(Binding::Storage(&batch)),
            ],
            (rows.div_ceil(4) as u32, n.div_ceil(8) as u32, 1),
        )
        .unwrap();
        let mv = lab::run(
            variant(case),
            "matvec",
            entry,
            &[
                Some(Binding::Storage(&weights)),
                Some(Binding::Storage(&q)),
                Some(Binding::Storage(&ds)),
                Some(Binding::Output(n * rows)),
                Some(Binding::Uniform(&[
                    rows as u32,
                    cols as u32,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                ])),
            ],
            (rows.div_ceil(4) as u32, 1, n as u32),
        )
        .unwrap();
        let (got, alone) = (floats(&mm[0]), floats(&mv[0]));
        for (i, (a, b)) in got.iter().zip(&alone).enumerate() {
            let want = if residual { before[i] + b } else { *b };
            assert_eq!(
                a.to_bits(),
                want.to_bits(),
                "case {case} {ty:?} {rows}x{cols}, {n} tokens: token {} row {}: {a} vs {want}",
                i / rows,
                i % rows
            );
        }
    }
}

/// A step record as the kernels read it: pos, token, first slot, padding, then RoPE's (sin, cos).
fn step_words(pos: usize, token: u32, first_slot: u32, inv_freq: &[f32]) -> Vec<u32> {
    let mut w = vec![pos as u32, token, first_slot, 0];
    for (s, c) in LlamaConfig::rope_rotation(inv_freq, pos) {
        w.extend([s.to_bits(), c.to_bits()]);
    }
    w.extend([0, 0]);
    w
}

#[test]
fn normed_matvec_kernels_match_rms_norm_quantize_and_multiply() {
    let mut rng = Rng(13);
    let mut worst = 0f32;
    for case in 0..10 {
        let ty = if case % 2 == 0 {
            BlockType::Q4_1
        } else {
            BlockType::Q8_0
        };
        let (n, cols, rows) = (
            1 + rng.below(3),
            32 * (1 + rng.below(48)),
            1 + rng.below(200),
        );
        let x = rng.activations(n * cols);
        let w: Vec<f32> = (0..cols).map(|_| 0.5 + rng.unit()).collect();
        let raw = rng.blocks(ty, rows, cols);
        let m = QMatrix::from_gguf(ty, rows, cols, &raw).unwrap();
        let eps = 1e-5f32;
        // Slots step.first_slot + z (the logit lens's way), each normed row recorded.
        let dims = [
            rows as u32,
            cols as u32,
            0,
            0,
            0,
            0,
            1,
            eps.to_bits(),
            1,
            0,
            0,
            0,
        ];
        let entry = if ty == BlockType::Q4_1 {
            "q4_1_normed"
        } else {
            "q8_0_normed"
        };
        let out = lab::run(
            variant(case),
            "matvec",
            entry,
            &[
                Some(Binding::Storage(&bytes_to_words(&raw))),
                None,
                None,
                Some(Binding::Output(n * rows)),
                Some(Binding::Uniform(&dims)),
                Some(Binding::Storage(&step_words(0, 0, 0, &[]))),
                Some(Binding::Storage(&words(&x))),
                Some(Binding::Storage(&words(&w))),
                Some(Binding::Output(n * cols)),
            ],
            (rows.div_ceil(4) as u32, 1, n as u32),
        )
        .unwrap();
        let (y, h) = (floats(&out[0]), floats(&out[1]));
        for z in 0..n {
            let row = &x[z * cols..(z + 1) * cols];
            let scale = 1.0 / (row.iter().map(|v| v * v).sum::<f32>() / cols as f32 + eps).sqrt();
            let cpu: Vec<f32> = row.iter().zip(&w).map(|(v, w)| v * scale * w).collect();
            let g = &h[z * cols..(z + 1) * cols];
            let big = cpu.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                max_abs_diff(&cpu, g) <= 1e-6 * big.max(1e-6),
                "case {case} row {z}: RMSNorm"
            );
            // The product against the CPU's kernel on the kernel's own normed row.
            let xq = quant::quantize(g);
            let mut want = vec![0f32; rows];
            m.matmul_q8(std::slice::from_ref(&xq), &mut want);
            for r in 0..rows {
                let size: f32 = m
                    .dequantize_row(r)
                    .iter()
                    .enumerate()
                    .map(|(j, w)| (w * xq.qs[j] as f32 * xq.d[j / 32]).abs())
                    .sum();
                let got = y[z * rows + r];
                let rel = (want[r] - got).abs() / size.max(1e-6);
                worst = worst.max(rel);
                assert!(
                    rel < 1e-5,
                    "case {case} {ty:?} row {r} z {z}: cpu {} gpu {got}",
                    want[r]
                );
            }
        }
    }
    eprintln!("normed mat-vec kernels: worst difference {worst:.2e} of sum |w x|");
}

#[test]
fn swiglu_kernel_matches_silu_gate_times_up() {
    let mut rng = Rng(17);
    for case in 0..8 {
        let ff = 32 * (1 + rng.below(60));
        let gu = rng.activations(2 * ff);
        let out = lab::run(
            ctx(),
            "quantize",
            "swiglu",
            &[
                Some(Binding::Storage(&words(&gu))),
                Some(Binding::Output(ff)),
                Some(Binding::Output(ff)),
                Some(Binding::Output(ff / 32 * 2)),
                Some(Binding::Uniform(&[ff as u32, 0, 0, 0])),
            ],
            ((ff / 32) as u32, 1, 1),
        )
        .unwrap();
        let act = floats(&out[0]);
        for i in 0..ff {
            let (g, u) = (gu[i], gu[ff + i]);
            let cpu = g / (1.0 + (-g).exp()) * u;
            assert!(
                (cpu - act[i]).abs() <= 1e-5 * cpu.abs().max(1e-3),
                "case {case} neuron {i}: cpu {cpu} gpu {}",
                act[i]
            );
        }
        assert_same_quantization(
            &format!("case {case}"),
            &act,
            &floats(&out[1]),
            &floats(&out[2]),
        );
    }
}

#[test]
fn attention_kernel_rotates_caches_attends_and_quantizes_like_the_cpu() {
    let mut rng = Rng(23);
    for case in 0..10 {
        let hd = [32, 64, 128][rng.below(3)];
        let nkv = 1 + rng.below(3);
        let nh = nkv * (1 + rng.below(4));
        let ctx_len = 300;
        let pos = rng.below(ctx_len);
        let seen = pos + 1;
        let w = nkv * hd;
        let inv_freq: Vec<f32> = (0..hd / 2)
            .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / hd as f32))
            .collect();
        let qkv = rng.activations((nh + 2 * nkv) * hd);
        // Keys and values of the earlier positions ([position][kv head][dim]).
        let k_rows: Vec<f32> = (0..ctx_len * w).map(|_| rng.unit()).collect();
        let v_rows: Vec<f32> = (0..ctx_len * w).map(|_| rng.unit()).collect();
        let dims = [nh as u32, nkv as u32, hd as u32, 0, ctx_len as u32, 0, 0, 0];
        let out = lab::run(
            variant(case),
            "attention",
            "main",
            &[
                Some(Binding::Storage(&step_words(pos, 0, 0, &inv_freq))),
                Some(Binding::Storage(&words(&qkv))),
                Some(Binding::InOut(&words(&k_rows))),
                Some(Binding::InOut(&words(&v_rows))),
                Some(Binding::Output(nh * seen)),
                Some(Binding::Output(nh * hd)),
                Some(Binding::Output(nh * hd / 32 * 2)),
                Some(Binding::Uniform(&dims)),
            ],
            (nh as u32, 1, 1),
        )
        .unwrap();
        let (k_after, v_after) = (floats(&out[0]), floats(&out[1]));
        let (probs, xq, xds) = (floats(&out[2]), floats(&out[3]), floats(&out[4]));
        // The CPU engine's steps: RoPE (model::rope), the cache row, softmax, weighted values.
        let rot: Vec<(f32, f32)> = LlamaConfig::rope_rotation(&inv_freq, pos).collect();
        let mut q = qkv[..nh * hd].to_vec();
        let mut k_new = qkv[nh * hd..nh * hd + w].to_vec();
        rope(&mut q, hd, &rot);
        rope(&mut k_new, hd, &rot);
        let mut keys = k_rows.clone();
        keys[pos * w..(pos + 1) * w].copy_from_slice(&k_new);
        let mut values = v_rows.clone();
        values[pos * w..(pos + 1) * w].copy_from_slice(&qkv[nh * hd + w..]);
        // The new key and value landed in the cache at `pos`, nothing else moved.
        assert_eq!(values, v_after, "case {case}: value cache");
        assert_eq!(keys, k_after, "case {case}: key cache");
        let mut y = vec![0f32; nh * hd];
        for h in 0..nh {
            let g = h / (nh / nkv);
            let qh = &q[h * hd..(h + 1) * hd];
            let mut p: Vec<f32> = (0..seen)
                .map(|t| {
                    let kt = &keys[t * w + g * hd..t * w + (g + 1) * hd];
                    qh.iter().zip(kt).map(|(a, b)| a * b).sum::<f32>() / (hd as f32).sqrt()
                })
                .collect();
            softmax(&mut p);
            let gp = &probs[h * seen..(h + 1) * seen];
            assert!(
                max_abs_diff(&p, gp) < 1e-5,
                "case {case} head {h}: probabilities"
            );
            for d in 0..hd {
                y[h * hd + d] = (0..seen).map(|t| p[t] * values[t * w + g * hd + d]).sum();
            }
        }
        // The output arrives quantized: compare its dequantized values with the CPU's output,
        // and its integers with the CPU's quantization of that output.
        let cpu_q = quant::quantize(&y);
        for (i, (qg, qc)) in xq.iter().zip(&cpu_q.qs).enumerate() {
            let b = i / 32;
            let (dg, dc) = (xds[2 * b], cpu_q.d[b]);
            assert!(
                (qg * dg - *qc as f32 * dc).abs() <= 1.01 * dc.max(1e-6),
                "case {case} value {i}: gpu {qg}*{dg} cpu {qc}*{dc}"
            );
        }
    }
}

#[test]
fn lens_kernel_finds_each_rows_top_token_and_probability() {
    let mut rng = Rng(29);
    let (rows, vocab) = (5, 49_152);
    let mut logits: Vec<f32> = (0..rows * vocab).map(|_| rng.unit() * 10.0).collect();
    // A tie: the lowest index wins, as on the CPU.
    logits[7] = 50.0;
    logits[900] = 50.0;
    for ctx in contexts() {
        let out = lab::run(
            ctx,
            "lens",
            "main",
            &[
                Some(Binding::Storage(&words(&logits))),
                Some(Binding::Output(rows * 4)),
                Some(Binding::Uniform(&[vocab as u32, 0, 0, 0])),
            ],
            (rows as u32, 1, 1),
        )
        .unwrap();
        let top = floats(&out[0]);
        for r in 0..rows {
            let row = &logits[r * vocab..(r + 1) * vocab];
            let (id, logit, prob) = top_k(row, 1)[0];
            assert_eq!(top[r * 4].to_bits(), id, "row {r}");
            assert_eq!(top[r * 4 + 1], logit);
            // The probability against an f64 softmax: the kernel's sum is within 1e-5; the
            // CPU's one-by-one f32 sum over 49,152 terms drifts further (4e-4 seen), so 1e-3.
            let exact = 1.0 / row.iter().map(|l| ((l - logit) as f64).exp()).sum::<f64>();
            let gpu = top[r * 4 + 2] as f64;
            assert!(
                (gpu - exact).abs() <= 1e-5 * exact,
                "row {r}: {gpu} vs {exact}"
            );
            assert!(
                (prob as f64 - exact).abs() <= 1e-3 * exact,
                "row {r}: cpu {prob}"
            );
        }
        assert_eq!(top[0].to_bits(), 7);
    }
}

#[test]
fn embed_kernel_dequantizes_the_tokens_row() {
    let mut rng = Rng(31);
    let (rows, cols) = (37, 96);
    let raw = rng.blocks(BlockType::Q8_0, rows, cols);
    let m = QMatrix::from_gguf(BlockType::Q8_0, rows, cols, &raw).unwrap();
    for token in [0, 1, 2, 17, 36] {
        let out = lab::run(
            ctx(),
            "embed",
            "main",
            &[
                Some(Binding::Storage(&step_words(0, token, 0, &[]))),
                Some(Binding::Storage(&bytes_to_words(&raw))),
                Some(Binding::Output(cols)),
                Some(Binding::Uniform(&[cols as u32, 0, 0, 0])),
            ],
            ((cols as u32).div_ceil(64), 1, 1),
        )
        .unwrap();
        assert_eq!(
            floats(&out[0]),
            m.dequantize_row(token as usize),
            "token {token}"
        );
    }
}
