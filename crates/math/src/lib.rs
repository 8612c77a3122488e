//! Engine-free math of scene 1: matrix builders, the clip-from-local chain, normal matrix,
//! dot-product lighting and meshes. No Bevy here: it mirrors `shaders/` and is tested against
//! glam and hand-computed values.

pub mod camera;
pub mod lighting;
pub mod mesh;
pub mod normal;
pub mod pca;
pub mod transform;

pub use camera::{ClipChain, OrbitCamera, Ray, VertexJourney, Viewport};
pub use lighting::{LightTerms, LightingParams};
pub use normal::{NormalMatrix, normal_matrix};
pub use transform::{ComposeOrder, ModelParams};

/// Parse a number typed into a field: finite values only (NaN, inf and text are refused).
pub fn parse_finite(text: &str) -> Option<f32> {
    text.trim().parse::<f32>().ok().filter(|v| v.is_finite())
}

/// `v` when finite and within `lo..=hi` after clamping, `default` when not finite: for values a
/// saved or typed state may carry.
pub fn clamp_finite(v: f32, default: f32, lo: f32, hi: f32) -> f32 {
    if v.is_finite() {
        v.clamp(lo, hi)
    } else {
        default
    }
}

/// An angle in degrees as -180..180 (`default` when not finite).
pub fn wrap_deg(v: f32, default: f32) -> f32 {
    if v.is_finite() {
        (v + 180.0).rem_euclid(360.0) - 180.0
    } else {
        default
    }
}

#[cfg(test)]
mod tests {
    use super::parse_finite;

    #[test]
    fn fields_refuse_non_finite_input() {
        assert_eq!(parse_finite(" 2.5 "), Some(2.5));
        assert_eq!(parse_finite("-1e3"), Some(-1000.0));
        for bad in ["", "abc", "NaN", "nan", "inf", "-inf", "1e40", "1,5"] {
            assert_eq!(parse_finite(bad), None, "{bad}");
        }
    }
}
