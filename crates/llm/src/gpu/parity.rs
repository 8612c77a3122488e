//! GPU against CPU on the real model: both backends fed the same tokens (the CPU's greedy
//! answer), compared step by step on their logits, greedy picks, and, at recorded steps, every
//! layer's activations and attention. The drift two CPU implementations show on the same
//! blocks (our kernels against candle's) is measured alongside as the yardstick. The parity
//! test asserts on the report; `bench --llm --backend gpu` prints it (so a real GPU is checked
//! with the same code).

use crate::backend::Backend;
use crate::error::Result;
use crate::model::{Model, top_k};
use crate::session::{GenerationRequest, Session};
use crate::tokenizer::LlmTokenizer;
use crate::trace::{RecordOptions, Trace};

/// Raw-text prompts, greedy (short: lavapipe, the CI's GPU, is slow).
pub const PROMPTS: [&str; 5] = [
    "The capital of France is",
    "A haiku about matrices:",
    "2 + 2 =",
    "The sky is blue because",
    "def fibonacci(n):",
];

/// What differed, worst cases over every step and layer.
#[derive(Debug, Clone, Default)]
pub struct ParityReport {
    pub steps: usize,
    /// Steps where the GPU's greedy pick equals the CPU's.
    pub same_token: usize,
    /// The CPU's top-2 margin at each step where the picks differed.
    pub differing_margins: Vec<f32>,
    /// Largest difference of a top-10 logit, each side's logits taken relative to its best.
    pub worst_logit: f32,
    /// Per layer, activations' L2 distance relative to the CPU's L2 norm: worst and mean.
    pub worst_activation: f32,
    pub mean_activation: f32,
    /// The same measure between our CPU kernels and candle's (mean).
    pub baseline_mean_activation: f32,
    /// Largest relative L2 distance of a layer's MLP input, and of a residual norm.
    pub worst_mlp_input: f32,
    pub worst_residual_norm: f32,
    /// Largest attention probability difference.
    pub worst_attention: f32,
    /// Recorded steps whose embedding rows were not bit-identical (expected 0).
    pub embedding_mismatches: usize,
    /// Recorded steps where one side had a logit lens and the other not (expected 0).
    pub lens_mismatches: usize,
}

impl std::fmt::Display for ParityReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "same greedy token {}/{} (both fed the CPU's tokens; CPU margins where they \
             differed: {:?}); worst top-10 logit difference {:.3}; activations per layer: worst \
             {:.4}, mean {:.4} (our CPU kernels vs candle's: {:.4}); attention: worst {:.4}",
            self.same_token,
            self.steps,
            self.differing_margins,
            self.worst_logit,
            self.worst_activation,
            self.mean_activation,
            self.baseline_mean_activation,
            self.worst_attention
        )
    }
}

fn top10_relative(logits: &[f32]) -> Vec<(u32, f32)> {
    let best = top_k(logits, 1)[0].1;
    top_k(logits, 10)
        .into_iter()
        .map(|(id, l, _)| (id, l - best))
        .collect()
}

/// `|a - b| / |a|` over whole vectors.
pub fn l2_relative(cpu: &[f32], other: &[f32]) -> f32 {
    let l2 = |v: &mut dyn Iterator<Item = f32>| v.map(|x| x * x).sum::<f32>().sqrt();
    l2(&mut cpu.iter().zip(other).map(|(a, b)| a - b)) / l2(&mut cpu.iter().copied()).max(1e-12)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

impl ParityReport {
    fn layers(&mut self, c: &Trace, g: &Trace, b: &Trace, drift: &mut (Vec<f32>, Vec<f32>)) {
        if c.embedding != g.embedding {
            self.embedding_mismatches += 1;
        }
        for ((x, y), z) in c.layers.iter().zip(&g.layers).zip(&b.layers) {
            let act = l2_relative(&x.mlp_activation, &y.mlp_activation);
            self.worst_activation = self.worst_activation.max(act);
            self.worst_attention = self
                .worst_attention
                .max(max_abs_diff(&x.attention.concat(), &y.attention.concat()));
            self.worst_mlp_input = self
                .worst_mlp_input
                .max(l2_relative(&x.mlp_input, &y.mlp_input));
            self.worst_residual_norm = self
                .worst_residual_norm
                .max((x.residual_norm_out - y.residual_norm_out).abs() / x.residual_norm_out.abs());
            if x.logit_lens.is_some() != y.logit_lens.is_some() {
                self.lens_mismatches += 1;
            }
            drift.0.push(act);
            drift
                .1
                .push(l2_relative(&x.mlp_activation, &z.mlp_activation));
        }
    }
}

/// Compare `gpu` with `cpu` on `prompts`, `tokens` greedy tokens each; `baseline` is the same
/// file loaded with candle's kernels. Steps 0 and the last of each prompt are fully recorded.
pub fn compare(
    cpu: &std::sync::Arc<Model>,
    baseline: &Model,
    gpu: &dyn Backend,
    tokenizer: &std::sync::Arc<LlmTokenizer>,
    prompts: &[&str],
    tokens: usize,
) -> Result<ParityReport> {
    let mut report = ParityReport::default();
    let mut drift = (Vec::new(), Vec::new());
    let tok = Some(&**tokenizer);
    for prompt in prompts {
        let request = GenerationRequest {
            max_tokens: tokens,
            chat: false,
            ..GenerationRequest::new(*prompt)
        };
        let mut session = Session::new(cpu.clone(), tokenizer.clone(), &request)?;
        while session.step()?.is_some() {}
        let prompt_ids = session.prompt_tokens().to_vec();
        let answer = session.generated_tokens().to_vec();
        let mut cc = Backend::new_cache(&**cpu)?;
        let mut gc = gpu.new_cache()?;
        let mut bc = Backend::new_cache(baseline)?;
        let mut input = prompt_ids;
        for (i, &next) in answer.iter().enumerate() {
            let record = if i == 0 || i + 1 == answer.len() {
                RecordOptions::FULL
            } else {
                RecordOptions::OFF
            };
            let c = Backend::forward(&**cpu, &mut cc, &input, record, tok)?;
            let g = gpu.forward(&mut gc, &input, record, tok)?;
            let b = Backend::forward(baseline, &mut bc, &input, record, tok)?;
            let gt = top10_relative(&g.logits);
            let g_best = top_k(&g.logits, 1)[0];
            for (id, rel) in top10_relative(&c.logits) {
                let other = gt
                    .iter()
                    .find(|(j, _)| *j == id)
                    .map_or(g.logits[id as usize] - g_best.1, |(_, r)| *r);
                report.worst_logit = report.worst_logit.max((rel - other).abs());
            }
            report.steps += 1;
            if g_best.0 == next {
                report.same_token += 1;
            } else {
                let top2 = top_k(&c.logits, 2);
                report.differing_margins.push(top2[0].1 - top2[1].1);
            }
            if let (Some(ct), Some(gt), Some(bt)) = (&c.trace, &g.trace, &b.trace) {
                report.layers(ct, gt, bt, &mut drift);
            }
            input = vec![next];
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    report.mean_activation = mean(&drift.0);
    report.baseline_mean_activation = mean(&drift.1);
    Ok(report)
}
