//! Principal components of a few high-dimensional vectors (the prompt's token embeddings), so they
//! can be drawn in 3D: the projection is one 3 x d matrix times each centred vector, the same
//! matrix-times-vector as a vertex transform.

/// The top three principal directions of a set of vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    pub mean: Vec<f32>,
    /// Rows of the 3 x d projection matrix (unit length; a row is zero when the data has fewer
    /// than three independent directions).
    pub components: [Vec<f32>; 3],
    /// Variance along each component.
    pub variance: [f32; 3],
}

impl Pca {
    /// Fit to `rows` (each of the same length d). `None` for fewer than two rows or ragged rows.
    ///
    /// Works on the n x n Gram matrix of the centred rows (n is a prompt's token count, d = 576),
    /// with power iteration and deflation; a component is `X^T u / |X^T u|` for the Gram matrix's
    /// eigenvector u.
    pub fn fit(rows: &[Vec<f32>]) -> Option<Pca> {
        let n = rows.len();
        let d = rows.first()?.len();
        if n < 2 || d == 0 || rows.iter().any(|r| r.len() != d) {
            return None;
        }
        let mut mean = vec![0f32; d];
        for r in rows {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v / n as f32;
            }
        }
        let centred: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| r.iter().zip(&mean).map(|(v, m)| (v - m) as f64).collect())
            .collect();
        let mut gram = vec![vec![0f64; n]; n];
        for i in 0..n {
            for j in 0..=i {
                let g: f64 = centred[i].iter().zip(&centred[j]).map(|(a, b)| a * b).sum();
                gram[i][j] = g;
                gram[j][i] = g;
            }
        }
        let mut components: [Vec<f32>; 3] = Default::default();
        let mut variance = [0f32; 3];
        for k in 0..3 {
            // Power iteration from a fixed, non-symmetric start (reproducible).
            let mut u: Vec<f64> = (0..n).map(|i| 1.0 + i as f64 * 0.37).collect();
            let mut lambda = 0.0;
            for _ in 0..300 {
                let next: Vec<f64> = gram
                    .iter()
                    .map(|row| row.iter().zip(&u).map(|(g, x)| g * x).sum())
                    .collect();
                let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
                if norm < 1e-12 {
                    lambda = 0.0;
                    break;
                }
                lambda = norm;
                u = next.into_iter().map(|x| x / norm).collect();
            }
            let mut c = vec![0f64; d];
            if lambda > 1e-9 {
                for (ui, row) in u.iter().zip(&centred) {
                    for (cj, x) in c.iter_mut().zip(row) {
                        *cj += ui * x;
                    }
                }
                let norm = c.iter().map(|x| x * x).sum::<f64>().sqrt();
                if norm > 1e-12 {
                    c.iter_mut().for_each(|x| *x /= norm);
                }
                // Deflate: G -= lambda u u^T.
                for i in 0..n {
                    for j in 0..n {
                        gram[i][j] -= lambda * u[i] * u[j];
                    }
                }
            }
            components[k] = c.into_iter().map(|x| x as f32).collect();
            variance[k] = (lambda / (n - 1) as f64) as f32;
        }
        Some(Pca {
            mean,
            components,
            variance,
        })
    }

    /// `P (x - mean)`: the 3 x d matrix times the centred vector.
    pub fn project(&self, x: &[f32]) -> [f32; 3] {
        let mut out = [0f32; 3];
        for (o, c) in out.iter_mut().zip(&self.components) {
            *o = c
                .iter()
                .zip(x.iter().zip(&self.mean))
                .map(|(p, (v, m))| p * (v - m))
                .sum();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_direction_of_spread_and_projects_by_a_matrix() {
        // Points along (1, 1, 0, 0) with a little spread along (0, 0, 1, 0).
        let rows: Vec<Vec<f32>> = (0..8)
            .map(|i| {
                let t = i as f32 - 3.5;
                vec![t, t, 0.1 * (i % 2) as f32, 5.0]
            })
            .collect();
        let pca = Pca::fit(&rows).unwrap();
        let c0 = &pca.components[0];
        let s = std::f32::consts::FRAC_1_SQRT_2;
        assert!((c0[0].abs() - s).abs() < 1e-4 && (c0[1].abs() - s).abs() < 1e-4);
        assert!(pca.variance[0] > pca.variance[1] && pca.variance[1] >= pca.variance[2]);
        // Components are orthonormal.
        for a in 0..3 {
            for b in 0..3 {
                let dot: f32 = pca.components[a]
                    .iter()
                    .zip(&pca.components[b])
                    .map(|(x, y)| x * y)
                    .sum();
                let want = if a == b && pca.variance[a] > 0.0 {
                    1.0
                } else {
                    0.0
                };
                assert!((dot - want).abs() < 1e-3, "{a}.{b} = {dot}");
            }
        }
        // The projection is a plain 3 x d matrix times (x - mean).
        let p = pca.project(&rows[0]);
        let by_hand: f32 = (0..4).map(|j| c0[j] * (rows[0][j] - pca.mean[j])).sum();
        assert!((p[0] - by_hand).abs() < 1e-5);
        assert!((p[0].abs() - 3.5 * 2f32.sqrt()).abs() < 1e-3);
    }

    #[test]
    fn too_few_or_ragged_rows_give_none() {
        assert!(Pca::fit(&[]).is_none());
        assert!(Pca::fit(&[vec![1.0, 2.0]]).is_none());
        assert!(Pca::fit(&[vec![1.0, 2.0], vec![1.0]]).is_none());
        // Identical rows: no spread, zero components, no NaN.
        let same = Pca::fit(&[vec![1.0, 2.0], vec![1.0, 2.0]]).unwrap();
        assert!(same.project(&[1.0, 2.0]).iter().all(|v| v.is_finite()));
    }
}
