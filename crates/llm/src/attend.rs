//! Causal self-attention over the KV cache on the CPU, in tiles: a block of query rows (the heads
//! that share one KV head, over several positions) meets a tile of keys and values while both sit
//! in the core's cache, with the softmax kept online (a running maximum and sum per query), so a
//! long prompt reads each key once per block instead of once per query.

use rayon::prelude::*;

/// Query positions per block: with the 3 heads of a KV head, 48 queries share each tile.
const ROWS: usize = 16;
/// Keys per tile: 64 keys and 64 values of 64 floats, 32 KB.
const KEYS: usize = 64;

/// A dot product summed in eight independent lanes, so that it vectorises (one AVX2 FMA per
/// eight terms) instead of running one chain of dependent adds.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
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

/// e^x for the softmax's x <= 0, branch-free so that a tile of them vectorises (libm's is a
/// call per score, and a long prompt has n^2 / 2 of them a head): x = k ln 2 + r with the
/// integer k set in the exponent bits, ln 2 split in two so that r keeps its precision
/// (Cody and Waite), and e^r for |r| <= ln 2 / 2 by its Taylor series to r^6 (relative error
/// below 3e-7). Below -87 it gives about e^-87 (the softmax's weight there is 0 to f32 anyway).
#[inline]
pub(crate) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
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

/// Attention outputs `[row][head][dim]` for queries `q` (`[row][head][dim]`, RoPE applied)
/// over `keys` and `values` (`[position][kv head][dim]`, positions `0..pos + n`): row `i` sees
/// positions `0..=pos + i`; scores are scaled by `scale`.
pub(crate) fn tiled(q: &[f32], keys: &[f32], values: &[f32], s: Shape, scale: f32) -> Vec<f32> {
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
        let mut max = vec![f32::NEG_INFINITY; nq];
        let mut sum = vec![0f32; nq];
        let mut acc = vec![0f32; nq * dim];
        let mut scores = [0f32; KEYS];
        // The tile's keys transposed ([dim][key]), so a query's 64 scores are 64 lanes summed
        // over the dimensions (no horizontal sums), and its values side by side ([key][dim]).
        let mut kt = vec![0f32; dim * KEYS];
        let mut vt = vec![0f32; KEYS * dim];
        let seen = pos + rows.end;
        for t0 in (0..seen).step_by(KEYS) {
            let t1 = (t0 + KEYS).min(seen);
            for t in t0..t1 {
                let at = (t * kv_heads + g) * dim;
                for (d, k) in keys[at..at + dim].iter().enumerate() {
                    kt[d * KEYS + (t - t0)] = *k;
                }
                vt[(t - t0) * dim..(t - t0 + 1) * dim].copy_from_slice(&values[at..at + dim]);
            }
            for j in 0..nq {
                // Causal: row i sees positions up to pos + i.
                let limit = (pos + rows.start + j / group + 1).min(t1);
                if limit <= t0 {
                    continue;
                }
                let m = limit - t0;
                scores.fill(0.0);
                for (qd, column) in query(j).iter().zip(kt.chunks_exact(KEYS)) {
                    for (s, k) in scores.iter_mut().zip(column) {
                        *s += qd * k;
                    }
                }
                let tile = &mut scores[..m];
                let mut tile_max = f32::NEG_INFINITY;
                for x in tile.iter_mut() {
                    *x *= scale;
                    tile_max = tile_max.max(*x);
                }
                let new_max = max[j].max(tile_max);
                let keep = (max[j] - new_max).exp();
                let out = &mut acc[j * dim..(j + 1) * dim];
                if keep != 1.0 {
                    sum[j] *= keep;
                    out.iter_mut().for_each(|o| *o *= keep);
                }
                tile.iter_mut().for_each(|x| *x = exp(*x - new_max));
                sum[j] += tile.iter().sum::<f32>();
                for (p, v) in tile.iter().zip(vt.chunks_exact(dim)) {
                    for (o, v) in out.iter_mut().zip(v) {
                        *o += p * v;
                    }
                }
                max[j] = new_max;
            }
        }
        for (out, s) in acc.chunks_exact_mut(dim).zip(&sum) {
            out.iter_mut().for_each(|o| *o /= s);
        }
        acc
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
        for (n, pos) in [(1, 0), (37, 0), (16, 64), (70, 131), (5, 300)] {
            let s = Shape {
                n,
                pos,
                heads: 9,
                group: 3,
                dim: 64,
            };
            let q = noise(n * 9 * 64, 1 + n as u64);
            // Large scores too: the online maximum must keep the exponentials finite.
            let q: Vec<f32> = q.iter().map(|x| x * 4.0).collect();
            let keys = noise((pos + n) * 3 * 64, 7 + pos as u64);
            let values = noise((pos + n) * 3 * 64, 11 + pos as u64);
            let got = tiled(&q, &keys, &values, s, 0.125);
            let want = naive(&q, &keys, &values, s, 0.125);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "n {n}, pos {pos}: off by {worst}");
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
