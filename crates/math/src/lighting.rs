//! Dot-product lighting: ambient + Lambert `max(dot(N, L), 0)` + Blinn-Phong specular.
//!
//! The CPU twin of `shade()` in shaders/samemath_math.wgsl, used by the light inspector and by
//! the tests that check rendered pixels. All vectors are unit length, in world space;
//! `L` points from the surface towards the light, `V` from the surface towards the eye.

use glam::{Vec3, Vec4};
use serde::{Deserialize, Serialize};

use super::normal::safe_normalize;

/// The scalar product, written out: the one operation a vertex transform and a neuron share.
pub fn dot4(a: Vec4, b: Vec4) -> f32 {
    a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w
}

pub fn dot3(a: Vec3, b: Vec3) -> f32 {
    dot4(a.extend(0.0), b.extend(0.0))
}

/// Lambert's cosine law: how squarely the light hits the surface.
pub fn lambert(n: Vec3, l: Vec3) -> f32 {
    dot3(n, l).max(0.0)
}

/// Blinn-Phong: `max(dot(N, H), 0)^shininess` with `H = normalize(L + V)`, zero when the light is
/// behind the surface.
pub fn blinn_phong(n: Vec3, l: Vec3, v: Vec3, shininess: f32) -> f32 {
    if dot3(n, l) <= 0.0 {
        return 0.0;
    }
    let h = safe_normalize(l + v);
    dot3(n, h).max(0.0).powf(shininess)
}

/// Light direction from two angles (degrees): azimuth about +Y from +Z towards +X, elevation
/// above the XZ plane. Returns the unit vector pointing towards the light.
pub fn light_direction(azimuth_deg: f32, elevation_deg: f32) -> Vec3 {
    let (az, el) = (azimuth_deg.to_radians(), elevation_deg.to_radians());
    Vec3::new(el.cos() * az.sin(), el.sin(), el.cos() * az.cos())
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LightingParams {
    pub ambient: f32,
    pub diffuse: f32,
    pub specular: f32,
    pub shininess: f32,
    pub ambient_on: bool,
    pub diffuse_on: bool,
    pub specular_on: bool,
    /// Per-fragment (Phong shading) when true, per-vertex (Gouraud) when false.
    pub per_fragment: bool,
    pub azimuth_deg: f32,
    pub elevation_deg: f32,
    /// Linear RGB of the surface.
    pub base_color: [f32; 3],
}

impl Default for LightingParams {
    fn default() -> Self {
        Self {
            ambient: 0.12,
            diffuse: 0.8,
            specular: 0.5,
            shininess: 32.0,
            ambient_on: true,
            diffuse_on: true,
            specular_on: true,
            per_fragment: true,
            azimuth_deg: 45.0,
            elevation_deg: 35.0,
            base_color: [0.85, 0.55, 0.25],
        }
    }
}

impl LightingParams {
    /// Every number within its slider's range (a saved state may say anything): the three
    /// weights 0..1, the exponent 1..256, the light's azimuth wrapped, its elevation off the
    /// poles, the colour 0..1; non-finite values the defaults'.
    pub fn sanitized(self) -> Self {
        let d = Self::default();
        let unit = |v, d| crate::clamp_finite(v, d, 0.0, 1.0);
        Self {
            ambient: unit(self.ambient, d.ambient),
            diffuse: unit(self.diffuse, d.diffuse),
            specular: unit(self.specular, d.specular),
            shininess: crate::clamp_finite(self.shininess, d.shininess, 1.0, 256.0),
            azimuth_deg: crate::wrap_deg(self.azimuth_deg, d.azimuth_deg),
            elevation_deg: crate::clamp_finite(self.elevation_deg, d.elevation_deg, -89.0, 89.0),
            base_color: [0, 1, 2].map(|i| unit(self.base_color[i], d.base_color[i])),
            ..self
        }
    }
}

/// Each term of the lighting equation at one point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LightTerms {
    pub n_dot_l: f32,
    pub ambient: f32,
    pub diffuse: f32,
    pub specular: f32,
    /// `ambient + diffuse + specular`.
    pub intensity: f32,
    /// Final linear RGB: `base * (ambient + diffuse) + specular`, clamped to [0, 1].
    pub color: Vec3,
}

pub fn shade(n: Vec3, l: Vec3, v: Vec3, p: &LightingParams) -> LightTerms {
    let n = safe_normalize(n);
    let ambient = if p.ambient_on { p.ambient } else { 0.0 };
    let diffuse = if p.diffuse_on {
        p.diffuse * lambert(n, l)
    } else {
        0.0
    };
    let specular = if p.specular_on {
        p.specular * blinn_phong(n, l, v, p.shininess)
    } else {
        0.0
    };
    let color = (Vec3::from(p.base_color) * (ambient + diffuse) + Vec3::splat(specular))
        .clamp(Vec3::ZERO, Vec3::ONE);
    LightTerms {
        n_dot_l: dot3(n, l),
        ambient,
        diffuse,
        specular,
        intensity: ambient + diffuse + specular,
        color,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambert_is_a_clamped_cosine() {
        assert_eq!(lambert(Vec3::Y, Vec3::Y), 1.0);
        assert!((lambert(Vec3::Y, Vec3::new(0.0, 0.5, 0.866_025_4)) - 0.5).abs() < 1e-6);
        assert_eq!(lambert(Vec3::Y, -Vec3::Y), 0.0);
    }

    #[test]
    fn blinn_phong_peaks_at_the_mirror_direction() {
        let n = Vec3::Y;
        let l = Vec3::new(1.0, 1.0, 0.0).normalize();
        let mirror = Vec3::new(-1.0, 1.0, 0.0).normalize();
        assert!((blinn_phong(n, l, mirror, 16.0) - 1.0).abs() < 1e-6);
        assert!(blinn_phong(n, l, Vec3::new(1.0, 0.2, 0.0).normalize(), 16.0) < 0.5);
        assert_eq!(blinn_phong(n, -l, mirror, 16.0), 0.0);
    }

    #[test]
    fn terms_toggle_and_sum() {
        let mut p = LightingParams::default();
        let (n, l, v) = (Vec3::Z, light_direction(30.0, 0.0), Vec3::Z);
        let t = shade(n, l, v, &p);
        assert!((t.intensity - (t.ambient + t.diffuse + t.specular)).abs() < 1e-6);
        assert!((t.diffuse - p.diffuse * 30f32.to_radians().cos()).abs() < 1e-5);
        p.specular_on = false;
        p.ambient_on = false;
        let t = shade(n, l, v, &p);
        assert_eq!((t.ambient, t.specular), (0.0, 0.0));
        assert!((t.color - Vec3::from(p.base_color) * t.diffuse).length() < 1e-6);
        // A zero normal shades with ambient only, never NaN.
        let t = shade(Vec3::ZERO, l, v, &LightingParams::default());
        assert!(t.color.is_finite() && t.diffuse == 0.0);
    }

    #[test]
    fn light_direction_angles() {
        assert!((light_direction(90.0, 0.0) - Vec3::X).length() < 1e-6);
        assert!((light_direction(0.0, 90.0) - Vec3::Y).length() < 1e-6);
        assert!((light_direction(0.0, 0.0) - Vec3::Z).length() < 1e-6);
    }
}
