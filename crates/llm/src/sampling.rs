//! Choosing the next token: greedy, temperature, top-k, top-p, repeat penalty, seeded.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 means greedy (always the most likely token).
    pub temperature: f32,
    /// Keep only the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1: all).
    pub top_p: f32,
    pub seed: u64,
    /// llama.cpp's rule: positive logits divided by it, negative multiplied (1: off). Within
    /// `REPEAT_PENALTY_MIN..=REPEAT_PENALTY_MAX` once sanitized.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
}

/// The range a repeat penalty is brought into. llama.cpp's server takes any value, but nothing
/// real lies outside this: 100 already makes a repeated token's logit of 10 a 0.1 (or -10 a
/// -1,000), and a tiny penalty multiplied a logit past f32's range (1e-40 made 2.0 infinite,
/// then every probability NaN, and the draw fell to the least likely candidate).
pub const REPEAT_PENALTY_MIN: f32 = 0.01;
pub const REPEAT_PENALTY_MAX: f32 = 100.0;

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            seed: 42,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self::default()
    }

    /// Out-of-range values made safe (NaN temperature is greedy, top_p clamped, a repeat
    /// penalty of 0 or less or not finite is off, any other brought within
    /// `REPEAT_PENALTY_MIN..=REPEAT_PENALTY_MAX`).
    pub fn sanitized(mut self) -> Self {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            self.temperature = 0.0;
        }
        if !self.top_p.is_finite() {
            self.top_p = 1.0;
        }
        self.top_p = self.top_p.clamp(0.0, 1.0);
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            self.repeat_penalty = 1.0;
        }
        self.repeat_penalty = self
            .repeat_penalty
            .clamp(REPEAT_PENALTY_MIN, REPEAT_PENALTY_MAX);
        self
    }
}

/// SplitMix64: tiny, seedable, the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[derive(Debug, Clone)]
pub struct Sampler {
    pub params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let params = params.sanitized();
        Self {
            params,
            rng: Rng::new(params.seed),
        }
    }

    /// Apply the repeat penalty to `logits` for tokens in `history`. A finite logit stays finite
    /// (one past 3.4e36 would otherwise overflow even a bounded penalty).
    pub fn penalize(&self, logits: &mut [f32], history: &[u32]) {
        let p = self.params.repeat_penalty;
        if p == 1.0 {
            return;
        }
        let start = history.len().saturating_sub(self.params.repeat_last_n);
        let mut seen = history[start..].to_vec();
        seen.sort_unstable();
        seen.dedup();
        for id in seen {
            if let Some(l) = logits.get_mut(id as usize) {
                let penalized = if *l > 0.0 { *l / p } else { *l * p };
                *l = if l.is_finite() {
                    penalized.clamp(f32::MIN, f32::MAX)
                } else {
                    penalized
                };
            }
        }
    }

    /// The candidates that survive top-k and top-p at the current temperature, with their
    /// renormalised probabilities, best first. What the LLM scene draws as bars. Every
    /// probability is a number: finite logits at any temperature give finite weights (the best
    /// one's is 1); logits that are not (an infinite best, a NaN) give the best one alone.
    pub fn distribution(&self, logits: &[f32]) -> Vec<(u32, f32)> {
        let p = &self.params;
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        idx.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
        if p.temperature == 0.0 {
            return idx.first().map(|i| vec![(*i, 1.0)]).unwrap_or_default();
        }
        if p.top_k > 0 {
            idx.truncate(p.top_k);
        }
        let max = idx.first().map_or(0.0, |i| logits[*i as usize]);
        if !max.is_finite() {
            // +inf - +inf (or a NaN) would make every probability NaN.
            return idx.first().map(|i| vec![(*i, 1.0)]).unwrap_or_default();
        }
        // (A NaN logit below the best weighs nothing: `max` with 0 drops the NaN.)
        let weights: Vec<f32> = idx
            .iter()
            .map(|i| ((logits[*i as usize] - max) / p.temperature).exp().max(0.0))
            .collect();
        let total: f32 = weights.iter().sum();
        let mut out = Vec::new();
        let mut cumulative = 0.0;
        for (i, w) in idx.iter().zip(weights) {
            let prob = w / total;
            out.push((*i, prob));
            cumulative += prob;
            if cumulative >= p.top_p {
                break;
            }
        }
        let kept: f32 = out.iter().map(|(_, q)| q).sum();
        out.iter_mut().for_each(|(_, q)| *q /= kept);
        out
    }

    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let mut logits = logits.to_vec();
        self.penalize(&mut logits, history);
        if self.params.temperature == 0.0 {
            return super::model::argmax(&logits);
        }
        let dist = self.distribution(&logits);
        let r = self.rng.next_f32();
        let mut cumulative = 0.0;
        for (id, prob) in &dist {
            cumulative += prob;
            if r < cumulative {
                return *id;
            }
        }
        dist.last().map_or(0, |(id, _)| *id)
    }
}

/// Indices, logits and softmax probabilities of the `k` largest logits, best first (a tie
/// keeps the lower index first).
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32, f32)> {
    let k = k.min(logits.len());
    if k == 0 {
        return Vec::new();
    }
    let (max, sum) = softmax_parts(logits);
    // One scan keeps the best k in order; a logit enters only when it beats the last of them,
    // so nearly every one costs a single comparison.
    let mut best: Vec<u32> = Vec::with_capacity(k + 1);
    for (i, l) in logits.iter().enumerate() {
        if best.len() == k && !l.total_cmp(&logits[best[k - 1] as usize]).is_gt() {
            continue;
        }
        let at = best.partition_point(|j| logits[*j as usize].total_cmp(l).is_ge());
        best.insert(at, i as u32);
        best.truncate(k);
    }
    best.into_iter()
        .map(|i| {
            let l = logits[i as usize];
            (i, l, crate::attend::exp(l - max) / sum)
        })
        .collect()
}

/// The largest value and the sum of e^(value - largest), in 16 lanes so that both vectorise.
fn softmax_parts(values: &[f32]) -> (f32, f32) {
    const W: usize = 16;
    let max = crate::attend::lanes_max(values);
    let chunks = values.chunks_exact(W);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| crate::attend::exp(v - max))
        .sum();
    let mut sums = [0f32; W];
    for c in chunks {
        for (s, v) in sums.iter_mut().zip(c) {
            *s += crate::attend::exp(v - max);
        }
    }
    (max, sums.iter().sum::<f32>() + tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_maximum() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9], &[]), 1);
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let logits = [4.0, 3.0, 2.0, 1.0, 0.0];
        let s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 3,
            top_p: 1.0,
            ..Default::default()
        });
        let d = s.distribution(&logits);
        assert_eq!(d.len(), 3);
        assert!((d.iter().map(|x| x.1).sum::<f32>() - 1.0).abs() < 1e-6);
        let s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
            ..Default::default()
        });
        assert_eq!(s.distribution(&logits).len(), 1);
    }

    #[test]
    fn seeded_sampling_repeats_and_follows_the_distribution() {
        let logits = [1.0f32, 1.0, 1.0, 1.0];
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 7,
            ..Default::default()
        };
        let draw = |n| {
            let mut s = Sampler::new(params);
            (0..n).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(50), draw(50));
        let counts = draw(4000).iter().fold([0; 4], |mut c, i| {
            c[*i as usize] += 1;
            c
        });
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn repeat_penalty_follows_llama_cpp() {
        let s = Sampler::new(SamplingParams {
            repeat_penalty: 2.0,
            ..Default::default()
        });
        let mut l = vec![2.0, -2.0, 1.0];
        s.penalize(&mut l, &[0, 1]);
        assert_eq!(l, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn bad_parameters_are_made_safe() {
        let p = SamplingParams {
            temperature: f32::NAN,
            top_p: 7.0,
            repeat_penalty: -1.0,
            ..Default::default()
        }
        .sanitized();
        assert_eq!((p.temperature, p.top_p, p.repeat_penalty), (0.0, 1.0, 1.0));
    }

    #[test]
    fn repeat_penalties_are_bounded() {
        let penalty = |r| {
            SamplingParams {
                repeat_penalty: r,
                ..Default::default()
            }
            .sanitized()
            .repeat_penalty
        };
        assert_eq!(penalty(1e-40), REPEAT_PENALTY_MIN);
        assert_eq!(penalty(1e-3), REPEAT_PENALTY_MIN);
        assert_eq!(penalty(1e9), REPEAT_PENALTY_MAX);
        assert_eq!(penalty(1.3), 1.3);
        for off in [0.0, -2.0, f32::NAN, f32::INFINITY] {
            assert_eq!(penalty(off), 1.0, "{off}");
        }
    }

    /// A tiny penalty divided a repeated token's positive logit to +inf: every probability was
    /// NaN, and the draw fell through to the last, least likely candidate, every step.
    #[test]
    fn a_tiny_repeat_penalty_favours_the_repeated_token_and_makes_no_nan() {
        let logits = [2.0, 1.0, -1.0, 0.5];
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repeat_penalty: 1e-40,
            ..Default::default()
        });
        let mut penalized = logits.to_vec();
        s.penalize(&mut penalized, &[0]);
        let d = s.distribution(&penalized);
        assert!(d.iter().all(|(_, p)| p.is_finite()), "{d:?}");
        assert_eq!(d[0].0, 0, "{d:?}");
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[0]), 0);
        }
    }

    /// Finite logits, any penalty and any temperature a request can send: probabilities that
    /// are numbers and sum to 1, the best token first.
    #[test]
    fn no_sampling_path_makes_nan_from_finite_inputs() {
        let extremes = [f32::MAX, -f32::MAX, 0.0, 1.0, -1e-30, 3e36];
        let same = [-f32::MAX; 4];
        for logits in [&extremes[..], &same[..]] {
            for repeat_penalty in [1e-40, 0.01, 0.5, 1.0, 2.0, 100.0, 1e30] {
                for temperature in [1e-45, 1e-30, 1e-3, 1.0, 1e30, f32::MAX] {
                    for top_k in [0, 3] {
                        let mut s = Sampler::new(SamplingParams {
                            temperature,
                            top_k,
                            top_p: 0.9,
                            repeat_penalty,
                            ..Default::default()
                        });
                        let history: Vec<u32> = (0..logits.len() as u32).collect();
                        let mut l = logits.to_vec();
                        s.penalize(&mut l, &history);
                        let case = format!("penalty {repeat_penalty}, t {temperature}, k {top_k}");
                        assert!(l.iter().all(|x| x.is_finite()), "{case}: {l:?}");
                        let d = s.distribution(&l);
                        assert!(!d.is_empty(), "{case}");
                        assert!(
                            d.iter().all(|(_, p)| p.is_finite() && *p >= 0.0),
                            "{case}: {d:?}"
                        );
                        let total: f32 = d.iter().map(|(_, p)| p).sum();
                        assert!((total - 1.0).abs() < 1e-5, "{case}: {d:?}");
                        let best = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        assert_eq!(l[d[0].0 as usize], best, "{case}: {d:?}");
                        let id = s.sample(logits, &history);
                        assert!((id as usize) < logits.len(), "{case}");
                    }
                }
            }
        }
        // Logits that are not finite (a broken backend): still numbers, the best alone.
        let s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            ..Default::default()
        });
        for bad in [
            [1.0, f32::INFINITY, 0.0],
            [1.0, f32::NAN, 0.0],
            [f32::NEG_INFINITY; 3],
        ] {
            let d = s.distribution(&bad);
            assert!(d.iter().all(|(_, p)| p.is_finite()), "{bad:?}: {d:?}");
        }
        let d = s.distribution(&[2.0, -f32::NAN, 1.0]);
        assert!(d.iter().all(|(_, p)| p.is_finite()), "{d:?}");
        assert_eq!(d[0].0, 0);
    }

    #[test]
    fn top_k_gives_the_sorts_best_with_their_softmax() {
        let mut rng = Rng::new(3);
        for n in [1, 5, 17, 1000] {
            // Whole numbers, so there are ties.
            let logits: Vec<f32> = (0..n)
                .map(|_| (rng.next_f32() * 40.0).floor() - 20.0)
                .collect();
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
            let max = logits[order[0] as usize] as f64;
            let sum: f64 = logits.iter().map(|l| (*l as f64 - max).exp()).sum();
            for k in [0, 1, 3, 20] {
                let got = top_k(&logits, k);
                assert_eq!(got.len(), k.min(n), "n {n}, k {k}");
                for ((id, logit, prob), want) in got.iter().zip(&order) {
                    assert_eq!(
                        (*id, *logit),
                        (*want, logits[*want as usize]),
                        "n {n}, k {k}"
                    );
                    let p = (*logit as f64 - max).exp() / sum;
                    assert!(
                        (*prob as f64 - p).abs() < 1e-6 * p.max(1e-3),
                        "{prob} vs {p}"
                    );
                }
            }
        }
    }
}
