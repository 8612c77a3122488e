//! 4x4 model-matrix builders (translation, scale, rotation about X/Y/Z) and their composition.
//!
//! Convention, the same as glam and WGSL: column vectors, `M * v`, matrices stored column-major.
//! A composed model matrix `T * R * S` applies S first, then R, then T. The rotation is
//! `R = Rz * Ry * Rx` (X first). Every builder is written out from its formula so the numbers on
//! screen can be traced to a textbook line; tests compare each with glam's own constructor.

use glam::{Mat4, Vec3, Vec4};
use serde::{Deserialize, Serialize};

/// `T(t)`: moves a point by `t`; leaves directions (w = 0) alone.
pub fn translation(t: Vec3) -> Mat4 {
    Mat4::from_cols(
        Vec4::new(1.0, 0.0, 0.0, 0.0),
        Vec4::new(0.0, 1.0, 0.0, 0.0),
        Vec4::new(0.0, 0.0, 1.0, 0.0),
        Vec4::new(t.x, t.y, t.z, 1.0),
    )
}

/// `S(s)`: scales each axis by its own factor.
pub fn scale(s: Vec3) -> Mat4 {
    Mat4::from_cols(
        Vec4::new(s.x, 0.0, 0.0, 0.0),
        Vec4::new(0.0, s.y, 0.0, 0.0),
        Vec4::new(0.0, 0.0, s.z, 0.0),
        Vec4::new(0.0, 0.0, 0.0, 1.0),
    )
}

/// `Rx(theta)`: rows `[1 0 0; 0 c -s; 0 s c]`, right-handed, counter-clockwise looking down -X.
pub fn rotation_x(theta_rad: f32) -> Mat4 {
    let (s, c) = theta_rad.sin_cos();
    Mat4::from_cols(
        Vec4::new(1.0, 0.0, 0.0, 0.0),
        Vec4::new(0.0, c, s, 0.0),
        Vec4::new(0.0, -s, c, 0.0),
        Vec4::new(0.0, 0.0, 0.0, 1.0),
    )
}

/// `Ry(theta)`: rows `[c 0 s; 0 1 0; -s 0 c]`.
pub fn rotation_y(theta_rad: f32) -> Mat4 {
    let (s, c) = theta_rad.sin_cos();
    Mat4::from_cols(
        Vec4::new(c, 0.0, -s, 0.0),
        Vec4::new(0.0, 1.0, 0.0, 0.0),
        Vec4::new(s, 0.0, c, 0.0),
        Vec4::new(0.0, 0.0, 0.0, 1.0),
    )
}

/// `Rz(theta)`: rows `[c -s 0; s c 0; 0 0 1]`.
pub fn rotation_z(theta_rad: f32) -> Mat4 {
    let (s, c) = theta_rad.sin_cos();
    Mat4::from_cols(
        Vec4::new(c, s, 0.0, 0.0),
        Vec4::new(-s, c, 0.0, 0.0),
        Vec4::new(0.0, 0.0, 1.0, 0.0),
        Vec4::new(0.0, 0.0, 0.0, 1.0),
    )
}

/// One factor of the model matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Factor {
    T,
    R,
    S,
}

/// The order in which T, R and S are multiplied, written left to right as in `M = T * R * S`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ComposeOrder {
    /// `M = T * R * S`: scale, then rotate, then translate (the usual one).
    #[default]
    Trs,
    /// `M = T * S * R`.
    Tsr,
    /// `M = R * T * S`.
    Rts,
    /// `M = R * S * T`.
    Rst,
    /// `M = S * T * R`.
    Str,
    /// `M = S * R * T`: translate first, so rotation and scale act on the offset too.
    Srt,
}

impl ComposeOrder {
    pub const ALL: [ComposeOrder; 6] = [
        ComposeOrder::Trs,
        ComposeOrder::Tsr,
        ComposeOrder::Rts,
        ComposeOrder::Rst,
        ComposeOrder::Str,
        ComposeOrder::Srt,
    ];

    /// The factors as written, left to right (the last one is applied to the vertex first).
    pub fn factors(self) -> [Factor; 3] {
        use Factor::*;
        match self {
            ComposeOrder::Trs => [T, R, S],
            ComposeOrder::Tsr => [T, S, R],
            ComposeOrder::Rts => [R, T, S],
            ComposeOrder::Rst => [R, S, T],
            ComposeOrder::Str => [S, T, R],
            ComposeOrder::Srt => [S, R, T],
        }
    }

    /// `"T·R·S"` and so on.
    pub fn label(self) -> String {
        let names: Vec<&str> = self
            .factors()
            .iter()
            .map(|f| match f {
                Factor::T => "T",
                Factor::R => "R",
                Factor::S => "S",
            })
            .collect();
        names.join("·")
    }
}

/// What the user typed into the matrix panel: translation, scale, rotation in degrees, order.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelParams {
    pub translation: [f32; 3],
    pub scale: [f32; 3],
    pub rotation_deg: [f32; 3],
    pub order: ComposeOrder,
}

impl Default for ModelParams {
    fn default() -> Self {
        Self {
            translation: [0.0; 3],
            scale: [1.0; 3],
            rotation_deg: [0.0; 3],
            order: ComposeOrder::Trs,
        }
    }
}

/// The five factor matrices, each as uploaded to the GPU once multiplied together.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelFactors {
    pub t: Mat4,
    pub s: Mat4,
    pub rx: Mat4,
    pub ry: Mat4,
    pub rz: Mat4,
}

impl ModelFactors {
    /// `R = Rz * Ry * Rx`.
    pub fn r(&self) -> Mat4 {
        self.rz * self.ry * self.rx
    }
}

impl ModelParams {
    /// Every number finite and within what the panel offers and more (a saved state may say
    /// anything): translation and scale within ±100, angles wrapped to ±180, non-finite values
    /// the defaults'.
    pub fn sanitized(self) -> Self {
        let d = Self::default();
        let each = |v: [f32; 3], d: [f32; 3], f: &dyn Fn(f32, f32) -> f32| {
            [f(v[0], d[0]), f(v[1], d[1]), f(v[2], d[2])]
        };
        let within = |v, d| crate::clamp_finite(v, d, -100.0, 100.0);
        Self {
            translation: each(self.translation, d.translation, &within),
            scale: each(self.scale, d.scale, &within),
            rotation_deg: each(self.rotation_deg, d.rotation_deg, &crate::wrap_deg),
            order: self.order,
        }
    }

    pub fn factors(&self) -> ModelFactors {
        let [rx, ry, rz] = self.rotation_deg.map(f32::to_radians);
        ModelFactors {
            t: translation(Vec3::from(self.translation)),
            s: scale(Vec3::from(self.scale)),
            rx: rotation_x(rx),
            ry: rotation_y(ry),
            rz: rotation_z(rz),
        }
    }

    /// `world_from_local`: the composed model matrix in the chosen order.
    pub fn world_from_local(&self) -> Mat4 {
        let f = self.factors();
        self.order
            .factors()
            .iter()
            .fold(Mat4::IDENTITY, |m, factor| m * factor_matrix(&f, *factor))
    }

    /// The point after each elementary matrix, in the order they act on it (rightmost first).
    /// The rotation is split into Rx, Ry, Rz so each step is one textbook matrix.
    pub fn steps(&self, point_in_local: Vec4) -> Vec<(&'static str, Vec4)> {
        let f = self.factors();
        let mut out = Vec::with_capacity(5);
        let mut p = point_in_local;
        for factor in self.order.factors().iter().rev() {
            match factor {
                Factor::T => {
                    p = f.t * p;
                    out.push(("T·", p));
                }
                Factor::S => {
                    p = f.s * p;
                    out.push(("S·", p));
                }
                Factor::R => {
                    p = f.rx * p;
                    out.push(("Rx·", p));
                    p = f.ry * p;
                    out.push(("Ry·", p));
                    p = f.rz * p;
                    out.push(("Rz·", p));
                }
            }
        }
        out
    }

    /// True when every number is finite (the panel refuses anything else).
    pub fn is_finite(&self) -> bool {
        self.translation
            .iter()
            .chain(&self.scale)
            .chain(&self.rotation_deg)
            .all(|x| x.is_finite())
    }
}

fn factor_matrix(f: &ModelFactors, factor: Factor) -> Mat4 {
    match factor {
        Factor::T => f.t,
        Factor::R => f.r(),
        Factor::S => f.s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glam::Quat;

    fn close(a: Mat4, b: Mat4) -> bool {
        a.to_cols_array()
            .iter()
            .zip(b.to_cols_array())
            .all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn builders_equal_glam() {
        let t = Vec3::new(1.5, -2.0, 3.25);
        assert_eq!(translation(t), Mat4::from_translation(t));
        let s = Vec3::new(2.0, 0.5, -3.0);
        assert_eq!(scale(s), Mat4::from_scale(s));
        for deg in [-170.0f32, -45.0, 0.0, 10.0, 90.0, 123.4] {
            let a = deg.to_radians();
            assert!(close(rotation_x(a), Mat4::from_rotation_x(a)), "{deg}");
            assert!(close(rotation_y(a), Mat4::from_rotation_y(a)), "{deg}");
            assert!(close(rotation_z(a), Mat4::from_rotation_z(a)), "{deg}");
        }
    }

    #[test]
    fn builders_match_hand_computed_values() {
        // Rz(90°) takes +X to +Y; Rx(90°) takes +Y to +Z; Ry(90°) takes +Z to +X.
        let x = Vec4::new(1.0, 0.0, 0.0, 1.0);
        let r = rotation_z(90f32.to_radians()) * x;
        assert!((r - Vec4::new(0.0, 1.0, 0.0, 1.0)).length() < 1e-6);
        let r = rotation_x(90f32.to_radians()) * Vec4::new(0.0, 1.0, 0.0, 1.0);
        assert!((r - Vec4::new(0.0, 0.0, 1.0, 1.0)).length() < 1e-6);
        let r = rotation_y(90f32.to_radians()) * Vec4::new(0.0, 0.0, 1.0, 1.0);
        assert!((r - Vec4::new(1.0, 0.0, 0.0, 1.0)).length() < 1e-6);
        // Rx(30°) row 1 = [0, cos 30, -sin 30, 0].
        let m = rotation_x(30f32.to_radians());
        assert!((m.row(1) - Vec4::new(0.0, 0.866_025_4, -0.5, 0.0)).length() < 1e-6);
        // Translation moves points (w=1) but not directions (w=0).
        let t = translation(Vec3::new(1.0, 2.0, 3.0));
        assert_eq!(
            t * Vec4::new(1.0, 1.0, 1.0, 1.0),
            Vec4::new(2.0, 3.0, 4.0, 1.0)
        );
        assert_eq!(
            t * Vec4::new(1.0, 1.0, 1.0, 0.0),
            Vec4::new(1.0, 1.0, 1.0, 0.0)
        );
        assert_eq!(
            scale(Vec3::new(2.0, 3.0, 4.0)) * Vec4::new(1.0, 1.0, 1.0, 1.0),
            Vec4::new(2.0, 3.0, 4.0, 1.0)
        );
    }

    #[test]
    fn composition_order_matters() {
        let mut p = ModelParams {
            translation: [2.0, 0.0, 0.0],
            scale: [3.0, 1.0, 1.0],
            rotation_deg: [0.0, 0.0, 90.0],
            order: ComposeOrder::Trs,
        };
        let v = Vec4::new(1.0, 0.0, 0.0, 1.0);
        let trs = p.world_from_local() * v;
        p.order = ComposeOrder::Srt;
        let srt = p.world_from_local() * v;
        // T·R·S: scale to (3,0,0), rotate to (0,3,0), move to (2,3,0).
        assert!(
            (trs - Vec4::new(2.0, 3.0, 0.0, 1.0)).length() < 1e-5,
            "{trs}"
        );
        // S·R·T: move to (3,0,0), rotate to (0,3,0), scale x: (0,3,0).
        assert!(
            (srt - Vec4::new(0.0, 3.0, 0.0, 1.0)).length() < 1e-5,
            "{srt}"
        );
        assert!((trs - srt).length() > 1.0);
    }

    #[test]
    fn composed_matrix_equals_glam_srt() {
        let p = ModelParams {
            translation: [0.5, -1.0, 2.0],
            scale: [1.0, 2.0, 0.5],
            rotation_deg: [10.0, 20.0, 30.0],
            order: ComposeOrder::Trs,
        };
        let [x, y, z] = p.rotation_deg.map(f32::to_radians);
        let q = Quat::from_rotation_z(z) * Quat::from_rotation_y(y) * Quat::from_rotation_x(x);
        let glam_m = Mat4::from_scale_rotation_translation(
            Vec3::from(p.scale),
            q,
            Vec3::from(p.translation),
        );
        assert!(close(p.world_from_local(), glam_m));
    }

    #[test]
    fn steps_end_at_model_times_vertex() {
        for order in ComposeOrder::ALL {
            let p = ModelParams {
                translation: [1.0, 2.0, 3.0],
                scale: [2.0, 1.0, 0.5],
                rotation_deg: [15.0, -30.0, 60.0],
                order,
            };
            let v = Vec4::new(0.3, -0.7, 1.1, 1.0);
            let steps = p.steps(v);
            assert_eq!(steps.len(), 5);
            let last = steps.last().unwrap().1;
            assert!(
                (last - p.world_from_local() * v).length() < 1e-5,
                "{order:?}"
            );
        }
        assert_eq!(ComposeOrder::Srt.label(), "S·R·T");
    }
}
