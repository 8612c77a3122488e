//! The normal matrix: how a model matrix must transform surface normals.
//!
//! Normals transform by the inverse-transpose of the model matrix's upper 3x3 (so they stay
//! perpendicular to the surface under non-uniform scale). WGSL has no `inverse()`, so this is
//! computed here on the CPU and uploaded. When the matrix is singular (a scale of 0 flattens
//! the mesh) the inverse does not exist: we fall back to the cofactor matrix, which is
//! `det * inverse-transpose` wherever the inverse exists and stays finite where it does not,
//! and raise a flag so the UI can say "not invertible: normals undefined". Whether it is
//! singular is judged without regard to scale (`SINGULAR_RATIO`).

use glam::{DMat3, Mat3, Mat4, Vec3};

/// Below this |det| / (|a| |b| |c|) of the 3x3 part's columns (the volume they span against
/// the box of their lengths, 1 for orthogonal ones whatever their scale) the matrix is treated
/// as not invertible: its columns lie (nearly) in one plane. Being scale-free, a uniform scale
/// of 0.002 (det 8e-9) is invertible and a flattening one is not.
pub const SINGULAR_RATIO: f64 = 1e-6;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormalMatrix {
    /// `normal_from_local`: multiply a local normal by this, then normalize.
    pub matrix: Mat3,
    /// Determinant of the model matrix's upper 3x3.
    pub det: f32,
    /// False when the model matrix is singular and `matrix` is the cofactor fallback.
    pub invertible: bool,
}

/// The cofactor matrix of `m`: column i is the cross product of the other two columns.
/// For invertible `m` it equals `det(m) * inverse(m)^T`.
pub fn cofactor(m: Mat3) -> Mat3 {
    Mat3::from_cols(
        m.y_axis.cross(m.z_axis),
        m.z_axis.cross(m.x_axis),
        m.x_axis.cross(m.y_axis),
    )
}

pub fn normal_matrix(world_from_local: &Mat4) -> NormalMatrix {
    // In f64: the determinant of f32 columns cannot overflow or vanish there.
    let m = Mat3::from_mat4(*world_from_local).as_dmat3();
    let det = m.determinant();
    let lengths = m.x_axis.length() * m.y_axis.length() * m.z_axis.length();
    let c = DMat3::from_cols(
        m.y_axis.cross(m.z_axis),
        m.z_axis.cross(m.x_axis),
        m.x_axis.cross(m.y_axis),
    );
    let invertible = det.is_finite() && det != 0.0 && det.abs() > SINGULAR_RATIO * lengths;
    // A normal's direction is all that counts, so any positive multiple of the
    // inverse-transpose serves: the exact one where f32 holds it, else scaled down. The
    // cofactor matrix is det times it, so its sign must come off (a mirror, det < 0, would
    // otherwise turn every normal inward).
    let matrix = if invertible {
        fit_f32(c * (1.0 / det))
    } else if det.is_finite() && det != 0.0 {
        // Nearly flat, still a side to face: the mirror's sign comes off here too.
        fit_f32(c * det.signum())
    } else {
        fit_f32(c)
    };
    NormalMatrix {
        matrix,
        det: if det.is_finite() {
            det.clamp(-f32::MAX as f64, f32::MAX as f64) as f32
        } else {
            0.0
        },
        invertible,
    }
}

/// `m` in f32, divided by its largest entry where f32 cannot hold it (zero if not finite).
fn fit_f32(m: DMat3) -> Mat3 {
    if !m.is_finite() {
        return Mat3::ZERO;
    }
    let exact = m.as_mat3();
    if exact.is_finite() {
        return exact;
    }
    let largest = m.to_cols_array().iter().fold(0f64, |a, x| a.max(x.abs()));
    (m * (1.0 / largest)).as_mat3()
}

/// Normalize, or return zero for a (near) zero vector instead of NaN. Mirrors `safe_normalize`
/// in shaders/samemath_math.wgsl.
pub fn safe_normalize(v: Vec3) -> Vec3 {
    let len2 = v.length_squared();
    if len2 > 1e-20 && len2.is_finite() {
        v / len2.sqrt()
    } else {
        Vec3::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::{rotation_y, scale, translation};

    #[test]
    fn inverse_transpose_matches_glam() {
        let m = translation(Vec3::new(1.0, 2.0, 3.0))
            * rotation_y(0.7)
            * scale(Vec3::new(2.0, 0.5, 3.0));
        let n = normal_matrix(&m);
        assert!(n.invertible);
        let expected = Mat3::from_mat4(m).inverse().transpose();
        assert!(n.matrix.abs_diff_eq(expected, 1e-5));
    }

    #[test]
    fn non_uniform_scale_keeps_normals_perpendicular() {
        // A plane tilted 45° in XY: tangent (1, 1, 0), normal (1, -1, 0)/sqrt2.
        let tangent = Vec3::new(1.0, 1.0, 0.0);
        let normal = Vec3::new(1.0, -1.0, 0.0).normalize();
        let m = scale(Vec3::new(4.0, 1.0, 1.0));
        let n = normal_matrix(&m);
        let tangent_world = Mat3::from_mat4(m) * tangent;
        let normal_world = (n.matrix * normal).normalize();
        assert!(normal_world.dot(tangent_world).abs() < 1e-6);
        // The naive way (transforming the normal by M) breaks perpendicularity.
        let naive = (Mat3::from_mat4(m) * normal).normalize();
        assert!(naive.dot(tangent_world).abs() > 0.5);
    }

    #[test]
    fn singular_scale_gives_finite_fallback_and_flag() {
        let m = scale(Vec3::new(1.0, 0.0, 1.0));
        let n = normal_matrix(&m);
        assert!(!n.invertible);
        assert!(n.matrix.is_finite());
        // The flattened mesh is the XZ plane: every normal maps onto ±Y or to zero.
        for v in [Vec3::X, Vec3::Y, Vec3::Z, Vec3::new(1.0, 2.0, 3.0)] {
            let w = safe_normalize(n.matrix * v);
            assert!(w.is_finite());
            assert!(w.x.abs() < 1e-6 && w.z.abs() < 1e-6, "{w}");
        }
        // Two zero scales: the cofactor is all zero, safe_normalize yields zero, not NaN.
        let n2 = normal_matrix(&scale(Vec3::new(0.0, 0.0, 1.0)));
        assert!(!n2.invertible);
        assert_eq!(safe_normalize(n2.matrix * Vec3::Z), Vec3::ZERO);
    }

    #[test]
    fn small_large_and_mirrored_scales_stay_invertible_and_face_out() {
        // The top face's normal (+Y) must stay up under each scale, and be flagged invertible:
        // a fixed |det| cut-off called 0.002 singular, and its fallback (det times the
        // inverse-transpose) turned a mirror's normals inward.
        for s in [
            Vec3::splat(0.002),
            Vec3::new(-0.002, 0.002, 0.002),
            Vec3::new(-1.0, 1.0, 1.0),
            Vec3::splat(1e13),
            Vec3::new(1e-30, 1.0, 1.0),
        ] {
            let n = normal_matrix(&scale(s));
            assert!(n.invertible, "{s}");
            assert!(n.matrix.is_finite(), "{s}");
            assert!((n.matrix * Vec3::Y).y > 0.0, "{s}: {}", n.matrix);
            // The mirrored axis' normal flips with the mirror, as the surface does.
            let x = safe_normalize(n.matrix * Vec3::X).x;
            assert_eq!(x.signum(), s.x.signum(), "{s}");
            assert!(
                n.det != 0.0 && n.det.signum() == s.x.signum(),
                "{s}: {}",
                n.det
            );
        }
        // Columns in one plane are singular at any scale.
        let flat = Mat4::from_mat3(Mat3::from_cols(
            Vec3::new(1e-3, 0.0, 0.0),
            Vec3::new(0.0, 1e-3, 0.0),
            Vec3::new(1e-3, 1e-3, 0.0),
        ));
        assert!(!normal_matrix(&flat).invertible);
        // Nearly flat (two columns all but parallel) and mirrored: not invertible, yet each
        // normal still faces the way the exact inverse-transpose turns it.
        let cols = Mat3::from_cols(
            Vec3::new(-1.0, 0.0, 0.0),
            Vec3::new(0.0, 1.0, 0.0),
            Vec3::new(0.0, 1.0, 1e-7),
        );
        let n = normal_matrix(&Mat4::from_mat3(cols));
        assert!(!n.invertible && n.det < 0.0, "{}", n.det);
        let exact = cols.as_dmat3().inverse().transpose();
        for v in [Vec3::X, Vec3::Y, Vec3::Z, Vec3::new(1.0, 2.0, 3.0)] {
            let want = (exact * v.as_dvec3()).normalize();
            let got = safe_normalize(n.matrix * v).as_dvec3();
            assert!(got.dot(want) > 0.99, "{v}: {got} against {want}");
        }
    }

    #[test]
    fn nan_input_does_not_leak() {
        let n = normal_matrix(&Mat4::from_cols_array(&[f32::NAN; 16]));
        assert!(!n.invertible);
        assert!(n.matrix.is_finite());
    }
}
