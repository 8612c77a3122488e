//! Causal self-attention over the KV cache on the CPU, in tiles: a block of query rows (the heads
//! that share one KV head, over several positions) meets a tile of keys and values while both sit
//! in the core's cache, with the softmax kept online (a running maximum and sum per query), so a
//! long prompt reads each key once per block instead of once per query.

use rayon::prelude::*;

/// Query positions per block: with the 3 heads of a KV head, 48 queries share each tile.
const ROWS: usize = 16;
/// Keys per tile: 64 keys and 64 values of 64 floats, 32 KB.
const KEYS: usize = 64;
/// Queries that meet each key (and each value) together, their sums held in registers.
const QB: usize = 4;
/// Keys (for the scores) or dimensions (for the outputs) a register row: two AVX2 vectors.
const KW: usize = 16;

/// A dot product summed in eight independent lanes, so that it vectorises (one AVX2 FMA per
/// eight terms) instead of running one chain of dependent adds (the tests' reference).
#[cfg(test)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    let mut acc = [0f32; 8];
    for (x, y) in ca.iter().zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

/// ln 2 in two parts for `exp`: the high part with its low bits clear, so `k * LN2_HI` is exact.
pub(crate) const LN2_HI: f32 = 0.693_145_75;
pub(crate) const LN2_LO: f32 = 1.428_606_8e-6;

/// e^x for the softmax's x <= 0, branch-free so that a tile of them vectorises (libm's is a
/// call per score, and a long prompt has n^2 / 2 of them a head): x = k ln 2 + r with the
/// integer k set in the exponent bits, ln 2 split in two so that r keeps its precision
/// (Cody and Waite), and e^r for |r| <= ln 2 / 2 by its Taylor series to r^6 (relative error
/// below 3e-7). Below -87 it gives about e^-87 (the softmax's weight there is 0 to f32 anyway).
#[inline]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.max(-87.0);
    let k = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // k is a whole number in -126..=1: added to 1.5 * 2^23 it lands in the low bits of the
    // mantissa, read back by a bit cast (Rust's saturating float-to-int `as` does not vectorise).
    const MAGIC: f32 = 12_582_912.0;
    let k = (k + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits());
    p * f32::from_bits(k.wrapping_add(127) << 23)
}

/// `a * b + c`, one fused instruction where the CPU has FMA (x86-64-v3 does), else two (wasm:
/// a fused multiply-add without the instruction is a slow library call).
#[inline(always)]
fn madd(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(target_feature = "fma")]
    {
        a.mul_add(b, c)
    }
    #[cfg(not(target_feature = "fma"))]
    {
        a * b + c
    }
}

/// The largest value, in KW lanes (one chain of `max` does not vectorise).
pub(crate) fn lanes_max(v: &[f32]) -> f32 {
    let chunks = v.chunks_exact(KW);
    let tail = chunks.remainder();
    let mut lanes = [f32::NEG_INFINITY; KW];
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l = l.max(*x);
        }
    }
    tail.iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, x| m.max(*x))
}

/// The sum, in KW lanes (one chain of adds does not vectorise).
pub(crate) fn lanes_sum(v: &[f32]) -> f32 {
    let chunks = v.chunks_exact(KW);
    let tail: f32 = chunks.remainder().iter().sum();
    let mut lanes = [0f32; KW];
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The shape of one attention call: `n` new rows at positions `pos..pos + n`, `heads` query
/// heads in groups of `group` per KV head, `dim` floats a head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub n: usize,
    pub pos: usize,
    pub heads: usize,
    pub group: usize,
    pub dim: usize,
}

/// `Q` queries' scores against keys `kc * KW..(kc + 1) * KW` of a tile (`kt`: `[dim][key]`):
/// each lane one key's dot product, summed down the dimensions in order, the queries' sums held
/// in registers while the key rows stream by. The attention's kernel and the trace's rows both
/// score this way.
#[inline]
fn lane_scores<const Q: usize>(kt: &[f32], qv: [&[f32]; Q], kc: usize) -> [[f32; KW]; Q] {
    let mut s = [[0f32; KW]; Q];
    for d in 0..qv[0].len() {
        let k: &[f32; KW] = kt[d * KEYS + kc * KW..][..KW].try_into().unwrap();
        for (sq, q) in s.iter_mut().zip(&qv) {
            let qd = q[d];
            for (s, k) in sq.iter_mut().zip(k) {
                *s = madd(qd, *k, *s);
            }
        }
    }
    s
}

/// The keys as the tiles read them, kept that way in the cache: for each tile of `KEYS`
/// positions and each KV head, `dim` rows of `KEYS` lanes (`[tile][kv head][dim][key]`), so a
/// decoded token transposes only its own key, once, instead of every key of the context at
/// every token. Lanes past the cache's length hold zeros or old keys; no result reads them.
#[derive(Debug, Clone, Default)]
pub(crate) struct TiledKeys {
    data: Vec<f32>,
}

impl TiledKeys {
    /// Floats a tile takes for `kv_heads` heads of `dim`.
    fn tile_len(kv_heads: usize, dim: usize) -> usize {
        kv_heads * dim * KEYS
    }

    /// Rows `k` (each `kv_heads * dim`, row-major as the projection gives them) as positions
    /// `pos..`.
    pub(crate) fn append(&mut self, k: &[f32], pos: usize, kv_heads: usize, dim: usize) {
        let width = kv_heads * dim;
        let n = k.len() / width;
        let tiles = (pos + n).div_ceil(KEYS);
        let want = tiles * Self::tile_len(kv_heads, dim);
        if self.data.len() < want {
            self.data.resize(want, 0.0);
        }
        for (i, row) in k.chunks_exact(width).enumerate() {
            let t = pos + i;
            let (tile, lane) = (t / KEYS, t % KEYS);
            for (g, head) in row.chunks_exact(dim).enumerate() {
                let base = (tile * kv_heads + g) * dim * KEYS + lane;
                for (d, v) in head.iter().enumerate() {
                    self.data[base + d * KEYS] = *v;
                }
            }
        }
    }

    /// Positions `len..` dropped (whole tiles past it freed).
    pub(crate) fn truncate(&mut self, len: usize, kv_heads: usize, dim: usize) {
        self.data
            .truncate(len.div_ceil(KEYS) * Self::tile_len(kv_heads, dim));
    }

    pub(crate) fn clear(&mut self) {
        self.data.clear();
    }

    /// KV head `g`'s tile holding position `t0` (a multiple of `KEYS`): `dim` rows of `KEYS`.
    fn tile(&self, t0: usize, g: usize, kv_heads: usize, dim: usize) -> &[f32] {
        let at = ((t0 / KEYS) * kv_heads + g) * dim * KEYS;
        &self.data[at..at + dim * KEYS]
    }

    /// `dot(q, key t)` for positions `0..seen` of KV head `g`, sixteen keys at a time down the
    /// tiles' rows (the scores the attention's kernel makes, summed the same way).
    pub(crate) fn scores(&self, q: &[f32], g: usize, kv_heads: usize, seen: usize) -> Vec<f32> {
        let dim = q.len();
        let mut out = vec![0f32; seen.next_multiple_of(KW)];
        for t0 in (0..seen).step_by(KEYS) {
            let kt = self.tile(t0, g, kv_heads, dim);
            let lanes = (seen - t0).min(KEYS).next_multiple_of(KW);
            for kc in 0..lanes / KW {
                let [s] = lane_scores(kt, [q], kc);
                out[t0 + kc * KW..t0 + (kc + 1) * KW].copy_from_slice(&s);
            }
        }
        out.truncate(seen);
        out
    }

    /// Position `t`'s key for KV head `g`, into `out` (`dim` long).
    #[cfg(test)]
    fn key(&self, t: usize, g: usize, kv_heads: usize, out: &mut [f32]) {
        let dim = out.len();
        let base = ((t / KEYS) * kv_heads + g) * dim * KEYS + t % KEYS;
        for (d, o) in out.iter_mut().enumerate() {
            *o = self.data[base + d * KEYS];
        }
    }
}

/// Attention outputs `[row][head][dim]` for queries `q` (`[row][head][dim]`, RoPE applied)
/// over `keys` (tiled) and `values` (`[position][kv head][dim]`), positions `0..pos + n`: row
/// `i` sees positions `0..=pos + i`; scores are scaled by `scale`.
pub(crate) fn tiled(q: &[f32], keys: &TiledKeys, values: &[f32], s: Shape, scale: f32) -> Vec<f32> {
    let Shape {
        n,
        pos,
        heads,
        group,
        dim,
    } = s;
    let kv_heads = heads / group;
    let blocks = n.div_ceil(ROWS);
    let tasks: Vec<(usize, usize)> = (0..kv_heads)
        .flat_map(|g| (0..blocks).map(move |b| (g, b)))
        .collect();
    let block = |(g, b): (usize, usize)| -> Vec<f32> {
        let rows = b * ROWS..((b + 1) * ROWS).min(n);
        // Query j of the block: row rows.start + j / group, head g * group + j % group.
        let nq = rows.len() * group;
        let query = |j: usize| {
            let (i, h) = (rows.start + j / group, g * group + j % group);
            &q[(i * heads + h) * dim..(i * heads + h + 1) * dim]
        };
        // Heads are padded to whole register rows of KW floats (zeros that add nothing).
        let dp = dim.next_multiple_of(KW);
        let zeros = vec![0f32; dim];
        let mut max = vec![f32::NEG_INFINITY; nq];
        let mut sum = vec![0f32; nq];
        let mut acc = vec![0f32; nq * dp];
        // The tile's keys come transposed ([dim][key], from the cache), so the scores of 16
        // keys are lanes summed over the dimensions (no horizontal sums); its values side by
        // side ([key][dim]) are read in place where a head's row is whole register rows
        // (SmolLM2's 64), else copied into rows padded to them.
        let padded = dp != dim;
        let mut vt = if padded {
            vec![0f32; KEYS * dp]
        } else {
            Vec::new()
        };
        let mut probs = [[0f32; KEYS]; QB];
        let seen = pos + rows.end;
        for t0 in (0..seen).step_by(KEYS) {
            let t1 = (t0 + KEYS).min(seen);
            let kt = keys.tile(t0, g, kv_heads, dim);
            if padded {
                for t in t0..t1 {
                    let at = (t * kv_heads + g) * dim;
                    vt[(t - t0) * dp..(t - t0) * dp + dim].copy_from_slice(&values[at..at + dim]);
                }
            }
            // Key `key` of this tile's values, `dc`'th register row.
            let value = |key: usize, dc: usize| -> &[f32; KW] {
                let at = if padded {
                    key * dp + dc * KW
                } else {
                    ((t0 + key) * kv_heads + g) * dim + dc * KW
                };
                let from = if padded { &vt[..] } else { values };
                from[at..at + KW].try_into().unwrap()
            };
            // QB queries at a time: each key row read once serves all of them, and their
            // scores and outputs stay in registers while the dimensions or keys stream by.
            for j0 in (0..nq).step_by(QB) {
                let qn = (nq - j0).min(QB);
                // Causal: row i sees positions up to pos + i; `limit` keys of this tile.
                let limit: [usize; QB] = std::array::from_fn(|k| {
                    let j = j0 + k;
                    if k < qn {
                        (pos + rows.start + j / group + 1)
                            .min(t1)
                            .saturating_sub(t0)
                    } else {
                        0
                    }
                });
                let most = limit.iter().copied().max().unwrap_or(0);
                if most == 0 {
                    continue;
                }
                let qv: [&[f32]; QB] =
                    std::array::from_fn(|k| if k < qn { query(j0 + k) } else { &zeros[..] });
                for kc in 0..most.div_ceil(KW) {
                    let s = lane_scores(kt, qv, kc);
                    for (p, sq) in probs.iter_mut().zip(&s) {
                        p[kc * KW..(kc + 1) * KW].copy_from_slice(sq);
                    }
                }
                for (k, p) in probs.iter_mut().enumerate() {
                    let m = limit[k];
                    if m == 0 {
                        p.fill(0.0);
                        continue;
                    }
                    let j = j0 + k;
                    let tile = &mut p[..m];
                    tile.iter_mut().for_each(|x| *x *= scale);
                    let tile_max = lanes_max(tile);
                    let new_max = max[j].max(tile_max);
                    let keep = (max[j] - new_max).exp();
                    if keep != 1.0 {
                        sum[j] *= keep;
                        acc[j * dp..(j + 1) * dp]
                            .iter_mut()
                            .for_each(|o| *o *= keep);
                    }
                    tile.iter_mut().for_each(|x| *x = exp(*x - new_max));
                    sum[j] += lanes_sum(tile);
                    // Keys past the limit weigh nothing.
                    p[m..].fill(0.0);
                    max[j] = new_max;
                }
                for dc in 0..dp / KW {
                    let mut o = [[0f32; KW]; QB];
                    for (k, o) in o.iter_mut().enumerate().take(qn) {
                        o.copy_from_slice(&acc[(j0 + k) * dp + dc * KW..][..KW]);
                    }
                    for key in 0..most {
                        let v = value(key, dc);
                        for (o, p) in o.iter_mut().zip(&probs) {
                            let p = p[key];
                            for (o, v) in o.iter_mut().zip(v) {
                                *o = madd(p, *v, *o);
                            }
                        }
                    }
                    for (k, o) in o.iter().enumerate().take(qn) {
                        acc[(j0 + k) * dp + dc * KW..][..KW].copy_from_slice(o);
                    }
                }
            }
        }
        let mut out = vec![0f32; nq * dim];
        for ((out, a), s) in out
            .chunks_exact_mut(dim)
            .zip(acc.chunks_exact(dp))
            .zip(&sum)
        {
            for (o, a) in out.iter_mut().zip(a) {
                *o = a / s;
            }
        }
        out
    };
    let outs: Vec<Vec<f32>> = tasks.par_iter().map(|&t| block(t)).collect();
    let mut y = vec![0f32; n * heads * dim];
    for (&(g, b), acc) in tasks.iter().zip(&outs) {
        for (j, out) in acc.chunks_exact(dim).enumerate() {
            let (i, h) = (b * ROWS + j / group, g * group + j % group);
            y[(i * heads + h) * dim..(i * heads + h + 1) * dim].copy_from_slice(out);
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain way: each query's softmax over its positions, then the weighted values.
    fn naive(q: &[f32], keys: &[f32], values: &[f32], s: Shape, scale: f32) -> Vec<f32> {
        let kv_heads = s.heads / s.group;
        let mut y = Vec::new();
        for i in 0..s.n {
            for h in 0..s.heads {
                let g = h / s.group;
                let qh = &q[(i * s.heads + h) * s.dim..][..s.dim];
                let seen = s.pos + i + 1;
                let mut p: Vec<f64> = (0..seen)
                    .map(|t| {
                        let k = &keys[(t * kv_heads + g) * s.dim..][..s.dim];
                        qh.iter().zip(k).map(|(a, b)| (a * b) as f64).sum::<f64>() * scale as f64
                    })
                    .collect();
                let m = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                p.iter_mut().for_each(|x| *x = (*x - m).exp());
                let z: f64 = p.iter().sum();
                for d in 0..s.dim {
                    let v: f64 = (0..seen)
                        .map(|t| p[t] * values[(t * kv_heads + g) * s.dim + d] as f64)
                        .sum();
                    y.push((v / z) as f32);
                }
            }
        }
        y
    }

    /// A reproducible spread of values in -1..1.
    fn noise(len: usize, seed: u64) -> Vec<f32> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn tiles_agree_with_the_plain_softmax_at_block_and_tile_edges() {
        // Rows across several blocks (ROWS = 16), positions across several tiles (KEYS = 64),
        // after a cache already holding some, and a first call from position 0.
        // SmolLM2's heads (9 on 3 KV heads of 64), and a head size that is no whole number
        // of register rows, without sharing.
        let cases = [(1, 0), (37, 0), (16, 64), (70, 131), (5, 300)]
            .map(|(n, pos)| (n, pos, 9, 3, 64))
            .into_iter()
            .chain([(21, 50, 4, 1, 24), (3, 70, 4, 2, 8)]);
        for (n, pos, heads, group, dim) in cases {
            let s = Shape {
                n,
                pos,
                heads,
                group,
                dim,
            };
            let kv = heads / group;
            let q = noise(n * heads * dim, 1 + n as u64);
            // Large scores too: the online maximum must keep the exponentials finite.
            let q: Vec<f32> = q.iter().map(|x| x * 4.0).collect();
            let keys = noise((pos + n) * kv * dim, 7 + pos as u64);
            let values = noise((pos + n) * kv * dim, 11 + pos as u64);
            let mut tiles = TiledKeys::default();
            tiles.append(&keys, 0, kv, dim);
            let got = tiled(&q, &tiles, &values, s, 0.125);
            // Scores down the tiles: each key's dot product with a query.
            let qh = &q[..dim];
            let scores = tiles.scores(qh, 0, kv, pos + n);
            assert_eq!(scores.len(), pos + n);
            for (t, got) in scores.iter().enumerate() {
                let want = dot(qh, &keys[t * kv * dim..][..dim]);
                assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "score {t}");
            }
            // Each position's key back out of the tiles.
            let mut key = vec![0f32; dim];
            for t in [0, pos + n - 1] {
                for g in 0..kv {
                    tiles.key(t, g, kv, &mut key);
                    assert_eq!(key, keys[(t * kv + g) * dim..][..dim], "key {t}, head {g}");
                }
            }
            let want = naive(&q, &keys, &values, s, 0.125);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "n {n}, pos {pos}, dim {dim}: off by {worst}");
        }
    }

    #[test]
    fn the_fast_exponential_is_within_3e7_of_e_to_the_x() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -(i as f32) * 87.0 / 200_000.0;
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64) - want).abs() / want);
        }
        assert!(worst < 3e-7, "relative error {worst:e}");
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
    }

    #[test]
    fn the_lane_dot_product_is_a_dot_product() {
        for len in [0, 3, 8, 64, 67] {
            let a = noise(len, 3);
            let b = noise(len, 5);
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - want).abs() < 1e-5, "{len}");
        }
    }
}
