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
    /// The centred rows X (n x d) give two symmetric matrices with the same nonzero eigenvalues:
    /// the covariance `X^T X` (d x d) and the Gram matrix `X X^T` (n x n). The fit takes the
    /// smaller, so its memory is min(n, d)^2 and its time grows linearly in the larger: a
    /// component is an eigenvector of the covariance, or `X^T u / |X^T u|` for the Gram
    /// matrix's eigenvector u. The top three come by power iteration with deflation.
    pub fn fit(rows: &[Vec<f32>]) -> Option<Pca> {
        let d = rows.first()?.len();
        Self::fit_by(rows, rows.len() <= d)
    }

    /// `fit`, choosing the Gram matrix (`by_gram`) or the covariance.
    fn fit_by(rows: &[Vec<f32>], by_gram: bool) -> Option<Pca> {
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
        let mut matrix = if by_gram {
            // X X^T is the sum over features of each feature's column times itself.
            let columns: Vec<Vec<f64>> = (0..d)
                .map(|j| centred.iter().map(|r| r[j]).collect())
                .collect();
            Symmetric::sum_of_outer_products(&columns, n)
        } else {
            Symmetric::sum_of_outer_products(&centred, d)
        };
        let mut components: [Vec<f32>; 3] = Default::default();
        let mut variance = [0f32; 3];
        for k in 0..3 {
            let (u, lambda) = matrix.top_eigenvector();
            let mut c = vec![0f64; d];
            if lambda > 1e-9 {
                if by_gram {
                    for (ui, row) in u.iter().zip(&centred) {
                        for (cj, x) in c.iter_mut().zip(row) {
                            *cj += ui * x;
                        }
                    }
                    let norm = c.iter().map(|x| x * x).sum::<f64>().sqrt();
                    if norm > 1e-12 {
                        c.iter_mut().for_each(|x| *x /= norm);
                    }
                } else {
                    c.copy_from_slice(&u);
                }
                matrix.deflate(&u, lambda);
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

/// A symmetric m x m matrix, stored whole (row-major) so each product reads rows in order.
struct Symmetric {
    m: usize,
    a: Vec<f64>,
}

impl Symmetric {
    /// `sum_k v_k v_k^T` over vectors of length m: the lower triangle a row at a time (the
    /// inner loop runs along contiguous memory and vectorizes), then mirrored.
    fn sum_of_outer_products(vectors: &[Vec<f64>], m: usize) -> Self {
        let mut a = vec![0f64; m * m];
        for v in vectors {
            for (i, &vi) in v.iter().enumerate() {
                let row = &mut a[i * m..i * m + i + 1];
                for (x, &vj) in row.iter_mut().zip(&v[..=i]) {
                    *x += vi * vj;
                }
            }
        }
        for i in 0..m {
            for j in 0..i {
                a[j * m + i] = a[i * m + j];
            }
        }
        Symmetric { m, a }
    }

    /// The largest eigenvalue's unit eigenvector and the eigenvalue, by power iteration from a
    /// fixed pseudo-random start (reproducible, and with no symmetry a prompt's rows could share:
    /// a ramp is orthogonal to every component of rows that read the same backwards, "A B B A");
    /// it stops once the vector holds still, or after 300 rounds (close eigenvalues converge
    /// slowly). `(_, 0.0)` for a zero matrix.
    fn top_eigenvector(&self) -> (Vec<f64>, f64) {
        let m = self.m;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut u: Vec<f64> = (0..m)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                0.5 + (seed >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect();
        let mut lambda = 0.0;
        for _ in 0..300 {
            // A u as the sum of A's rows weighted by u (A is symmetric): the inner loop has no
            // chain of adds through one sum, so it vectorizes.
            let mut next = vec![0f64; m];
            for (row, &ui) in self.a.chunks_exact(m).zip(&u) {
                for (x, a) in next.iter_mut().zip(row) {
                    *x += ui * a;
                }
            }
            let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm < 1e-12 {
                return (u, 0.0);
            }
            lambda = norm;
            let mut moved = 0f64;
            for (ui, x) in u.iter_mut().zip(next) {
                let x = x / norm;
                moved = moved.max((x - *ui).abs());
                *ui = x;
            }
            if moved < 1e-10 {
                break;
            }
        }
        (u, lambda)
    }

    /// `A -= lambda u u^T`, so the next power iteration finds the next eigenvector.
    fn deflate(&mut self, u: &[f64], lambda: f64) {
        for (row, ui) in self.a.chunks_exact_mut(self.m).zip(u) {
            for (x, uj) in row.iter_mut().zip(u) {
                *x -= lambda * ui * uj;
            }
        }
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
    fn the_gram_and_the_covariance_give_the_same_components() {
        // 9 points in 6 dimensions, spread unevenly along every axis (a fixed pseudo-random
        // sequence), so the two routes have three well-separated components to agree on.
        let mut seed = 12345u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let scale = [5.0, 3.0, 1.5, 0.7, 0.3, 0.1];
        let rows: Vec<Vec<f32>> = (0..9)
            .map(|_| scale.iter().map(|s| s * next()).collect())
            .collect();
        let gram = Pca::fit_by(&rows, true).unwrap();
        let cov = Pca::fit_by(&rows, false).unwrap();
        assert_eq!(gram.mean, cov.mean);
        for k in 0..3 {
            let rel = (gram.variance[k] - cov.variance[k]).abs() / cov.variance[k];
            assert!(
                rel < 1e-4,
                "variance {k}: {} vs {}",
                gram.variance[k],
                cov.variance[k]
            );
            let dot: f32 = gram.components[k]
                .iter()
                .zip(&cov.components[k])
                .map(|(a, b)| a * b)
                .sum();
            assert!(
                (dot.abs() - 1.0).abs() < 1e-4,
                "component {k}: |cos| = {dot}"
            );
        }
        // More rows than dimensions takes the covariance, fewer the Gram matrix.
        assert_eq!(Pca::fit(&rows), Some(cov));
        assert_eq!(Pca::fit(&rows[..5]), Pca::fit_by(&rows[..5], true));
    }

    #[test]
    fn rows_that_read_the_same_backwards_have_their_spread() {
        // "A B B A": all the spread is along B - A (four rows half of |B - A| = 1/sqrt 2 from
        // the mean: variance 4 * 1/2 / 3 = 2/3), which a start vector antisymmetric in the rows
        // never sees.
        // Fewer rows than dimensions: the Gram matrix's route, where the start vector lives.
        let (a, b) = (vec![1.0, 0.0, 0.0, 0.0, 0.0], vec![0.0, 1.0, 0.0, 0.0, 0.0]);
        let rows = vec![a.clone(), b.clone(), b, a];
        let pca = Pca::fit(&rows).unwrap();
        assert!(
            (pca.variance[0] - 2.0 / 3.0).abs() < 1e-5,
            "{:?}",
            pca.variance
        );
        let c = &pca.components[0];
        let s = std::f32::consts::FRAC_1_SQRT_2;
        assert!(
            (c[0].abs() - s).abs() < 1e-4 && (c[0] + c[1]).abs() < 1e-4,
            "{c:?}"
        );
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
