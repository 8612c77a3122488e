//! Engine-free triangle meshes: a cube, a UV sphere, and a small Wavefront OBJ reader.
//!
//! Each mesh is plain arrays (positions, normals, triangle indices) so the CPU inspectors and the
//! GPU draw read the very same numbers. Loaded meshes are centred and scaled to fit a 2-unit
//! box, and get smooth normals (area-weighted, welded across duplicated seam vertices).

use std::collections::HashMap;

use glam::Vec3;
use thiserror::Error;

use super::camera::{ClipChain, Ray, ray_triangle};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeshData {
    pub positions: Vec<Vec3>,
    pub normals: Vec<Vec3>,
    pub indices: Vec<u32>,
}

#[derive(Debug, Error, PartialEq)]
pub enum MeshError {
    #[error("line {line}: {message}")]
    Parse { line: usize, message: String },
    #[error("the file has no triangles")]
    Empty,
    #[error("face on line {line} uses vertex {index}, but only {count} vertices exist")]
    IndexOutOfRange {
        line: usize,
        index: i64,
        count: usize,
    },
}

/// A surface point found by a picking ray.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SurfaceHit {
    pub triangle: usize,
    pub distance: f32,
    /// Barycentric weights of the triangle's three vertices.
    pub weights: [f32; 3],
}

impl MeshData {
    pub fn triangle_count(&self) -> usize {
        self.indices.len() / 3
    }

    pub fn triangle(&self, t: usize) -> [usize; 3] {
        [
            self.indices[3 * t] as usize,
            self.indices[3 * t + 1] as usize,
            self.indices[3 * t + 2] as usize,
        ]
    }

    /// The nearest triangle hit by `ray`, with the mesh placed by `transform` (local to world).
    pub fn raycast(&self, ray: &Ray, transform: impl Fn(Vec3) -> Vec3) -> Option<SurfaceHit> {
        let world: Vec<Vec3> = self.positions.iter().map(|p| transform(*p)).collect();
        let mut best: Option<SurfaceHit> = None;
        for t in 0..self.triangle_count() {
            let [a, b, c] = self.triangle(t);
            if let Some((d, u, v)) = ray_triangle(ray, world[a], world[b], world[c])
                && best.is_none_or(|h| d < h.distance)
            {
                best = Some(SurfaceHit {
                    triangle: t,
                    distance: d,
                    weights: [1.0 - u - v, u, v],
                });
            }
        }
        best
    }

    /// The vertex whose projection is nearest to `pixel` (within `radius_px`), skipping vertices
    /// farther from `eye` than `max_distance` (those hidden behind the surface under the cursor).
    pub fn nearest_vertex(
        &self,
        chain: &ClipChain,
        eye: Vec3,
        pixel: glam::Vec2,
        radius_px: f32,
        max_distance: Option<f32>,
    ) -> Option<usize> {
        let clip_from_local = chain.clip_from_local();
        let mut best: Option<(usize, f32)> = None;
        for (i, p) in self.positions.iter().enumerate() {
            if let Some(limit) = max_distance {
                let world = (chain.world_from_local * p.extend(1.0)).truncate();
                if world.distance(eye) > limit {
                    continue;
                }
            }
            let clip = clip_from_local * p.extend(1.0);
            if clip.w <= 1e-6 {
                continue;
            }
            let px = super::camera::pixel_from_ndc(clip.truncate() / clip.w, &chain.viewport);
            let d = px.distance(pixel);
            if d <= radius_px && best.is_none_or(|(_, bd)| d < bd) {
                best = Some((i, d));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The interpolated local-space normal at a hit (not normalized).
    pub fn normal_at(&self, hit: &SurfaceHit) -> Vec3 {
        let [a, b, c] = self.triangle(hit.triangle);
        self.normals[a] * hit.weights[0]
            + self.normals[b] * hit.weights[1]
            + self.normals[c] * hit.weights[2]
    }

    pub fn position_at(&self, hit: &SurfaceHit) -> Vec3 {
        let [a, b, c] = self.triangle(hit.triangle);
        self.positions[a] * hit.weights[0]
            + self.positions[b] * hit.weights[1]
            + self.positions[c] * hit.weights[2]
    }

    /// Centre the bounding box on the origin and scale its longest side to `size`.
    fn fit_to(&mut self, size: f32) {
        let (min, max) = self.positions.iter().fold(
            (Vec3::splat(f32::MAX), Vec3::splat(f32::MIN)),
            |(lo, hi), p| (lo.min(*p), hi.max(*p)),
        );
        let extent = (max - min).max_element();
        if !(extent.is_finite() && extent > 0.0) {
            return;
        }
        let centre = (min + max) * 0.5;
        let k = size / extent;
        for p in &mut self.positions {
            *p = (*p - centre) * k;
        }
    }

    /// Area-weighted vertex normals; vertices at the same position share one normal so the
    /// seams of a patch-built mesh do not show.
    fn compute_smooth_normals(&mut self) {
        let key = |p: Vec3| {
            let q = (p * 1e4).round();
            (q.x as i64, q.y as i64, q.z as i64)
        };
        let mut welded: HashMap<(i64, i64, i64), Vec3> = HashMap::new();
        for t in 0..self.triangle_count() {
            let [a, b, c] = self.triangle(t);
            let (pa, pb, pc) = (self.positions[a], self.positions[b], self.positions[c]);
            let n = (pb - pa).cross(pc - pa); // length = 2 * area
            for p in [pa, pb, pc] {
                *welded.entry(key(p)).or_insert(Vec3::ZERO) += n;
            }
        }
        self.normals = self
            .positions
            .iter()
            .map(|p| {
                welded
                    .get(&key(*p))
                    .copied()
                    .unwrap_or(Vec3::Y)
                    .normalize_or(Vec3::Y)
            })
            .collect();
    }
}

/// A cube from -1 to 1 with flat faces (4 vertices per face, 24 in all).
pub fn cube() -> MeshData {
    let mut m = MeshData::default();
    let faces = [
        (Vec3::X, Vec3::Y, Vec3::Z),
        (-Vec3::X, Vec3::Y, -Vec3::Z),
        (Vec3::Y, Vec3::Z, Vec3::X),
        (-Vec3::Y, Vec3::Z, -Vec3::X),
        (Vec3::Z, Vec3::X, Vec3::Y),
        (-Vec3::Z, Vec3::X, -Vec3::Y),
    ];
    for (n, u, v) in faces {
        // u x v = n, so (corner order) is counter-clockwise seen from outside.
        let v = if u.cross(v).dot(n) > 0.0 { v } else { -v };
        let base = m.positions.len() as u32;
        for (su, sv) in [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)] {
            m.positions.push(n + u * su + v * sv);
            m.normals.push(n);
        }
        m.indices
            .extend([base, base + 1, base + 2, base, base + 2, base + 3]);
    }
    m
}

/// A UV sphere of radius 1 with exact normals (`N = position`).
pub fn uv_sphere(segments: u32, rings: u32) -> MeshData {
    let (segments, rings) = (segments.max(3), rings.max(2));
    let mut m = MeshData::default();
    for r in 0..=rings {
        let phi = std::f32::consts::PI * r as f32 / rings as f32; // 0 at +Y
        for s in 0..=segments {
            let theta = std::f32::consts::TAU * s as f32 / segments as f32;
            let p = Vec3::new(phi.sin() * theta.sin(), phi.cos(), phi.sin() * theta.cos());
            m.positions.push(p);
            m.normals.push(p);
        }
    }
    let row = segments + 1;
    for r in 0..rings {
        for s in 0..segments {
            let (a, b) = (r * row + s, (r + 1) * row + s);
            if r != 0 {
                m.indices.extend([a, b, a + 1]);
            }
            if r != rings - 1 {
                m.indices.extend([a + 1, b, b + 1]);
            }
        }
    }
    m
}

/// Read `v` and `f` lines of a Wavefront OBJ (polygons become triangle fans, `v/vt/vn` forms
/// and negative indices accepted, everything else ignored), fit to a 2-unit box, smooth normals.
pub fn parse_obj(text: &str) -> Result<MeshData, MeshError> {
    let mut m = MeshData::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let mut words = raw.split_whitespace();
        match words.next() {
            Some("v") => {
                let xyz: Vec<f32> = words
                    .take(3)
                    .map(|w| w.parse::<f32>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| MeshError::Parse {
                        line,
                        message: format!("bad vertex coordinate: {e}"),
                    })?;
                if xyz.len() != 3 || xyz.iter().any(|x| !x.is_finite()) {
                    return Err(MeshError::Parse {
                        line,
                        message: "a vertex needs three finite numbers".into(),
                    });
                }
                m.positions.push(Vec3::new(xyz[0], xyz[1], xyz[2]));
            }
            Some("f") => {
                let mut corners = Vec::new();
                for w in words {
                    let first = w.split('/').next().unwrap_or("");
                    let index: i64 = first.parse().map_err(|_| MeshError::Parse {
                        line,
                        message: format!("bad face index {w:?}"),
                    })?;
                    let count = m.positions.len();
                    let resolved = if index > 0 {
                        index - 1
                    } else {
                        count as i64 + index
                    };
                    if index == 0 || resolved < 0 || resolved >= count as i64 {
                        return Err(MeshError::IndexOutOfRange { line, index, count });
                    }
                    corners.push(resolved as u32);
                }
                if corners.len() < 3 {
                    return Err(MeshError::Parse {
                        line,
                        message: "a face needs at least three vertices".into(),
                    });
                }
                for k in 1..corners.len() - 1 {
                    m.indices.extend([corners[0], corners[k], corners[k + 1]]);
                }
            }
            _ => {}
        }
    }
    if m.indices.is_empty() {
        return Err(MeshError::Empty);
    }
    m.fit_to(2.0);
    m.compute_smooth_normals();
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitrary_obj_text_gives_a_finite_mesh_or_an_error() {
        const WORDS: &[&str] = &[
            "v",
            "f",
            "vn",
            "vt",
            "#",
            "1",
            "2",
            "3",
            "-1",
            "-4",
            "0",
            "1/2/3",
            "2//1",
            "1e38",
            "-3e38",
            "nan",
            "inf",
            "0.5",
            "x",
            "",
            "\n",
            "\n",
            "\n",
            "99999999999999999999",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..(next() % 60) {
                text.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
                text.push(' ');
            }
            if let Ok(m) = parse_obj(&text) {
                assert!(m.normals.iter().all(|n| n.is_finite()), "{text:?}");
                assert!(m.indices.iter().all(|&i| (i as usize) < m.positions.len()));
            }
        }
    }

    #[test]
    fn cube_faces_point_outwards() {
        let c = cube();
        assert_eq!((c.positions.len(), c.triangle_count()), (24, 12));
        for t in 0..c.triangle_count() {
            let [a, b, d] = c.triangle(t);
            let n = (c.positions[b] - c.positions[a]).cross(c.positions[d] - c.positions[a]);
            assert!(n.normalize().dot(c.normals[a]) > 0.99);
        }
    }

    #[test]
    fn sphere_normals_are_unit_positions() {
        let s = uv_sphere(16, 8);
        assert!(s.positions.iter().all(|p| (p.length() - 1.0).abs() < 1e-5));
        assert_eq!(s.triangle_count(), 16 * 2 * (8 - 1));
        assert!(s.indices.iter().all(|i| (*i as usize) < s.positions.len()));
    }

    #[test]
    fn obj_reader_triangulates_fits_and_reports_errors() {
        let quad = "v 0 0 0\nv 4 0 0\nv 4 4 0\nv 0 4 0\nf 1/1/1 2/2/2 3/3/3 -1\n";
        let m = parse_obj(quad).unwrap();
        assert_eq!(m.triangle_count(), 2);
        assert!((m.positions[2] - Vec3::new(1.0, 1.0, 0.0)).length() < 1e-6);
        assert!(m.normals.iter().all(|n| (*n - Vec3::Z).length() < 1e-6));
        assert_eq!(parse_obj("# nothing\n"), Err(MeshError::Empty));
        assert!(matches!(
            parse_obj("v 0 0 0\nf 1 2 3\n"),
            Err(MeshError::IndexOutOfRange { line: 2, .. })
        ));
        assert!(matches!(
            parse_obj("v 0 zero 0\n"),
            Err(MeshError::Parse { line: 1, .. })
        ));
        assert!(matches!(
            parse_obj("v 0 0 nan\n"),
            Err(MeshError::Parse { .. })
        ));
    }

    #[test]
    fn teapot_asset_loads() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../assets/meshes/teapot.obj"
        ))
        .unwrap();
        let m = parse_obj(&text).unwrap();
        assert_eq!(m.positions.len(), 792);
        assert_eq!(m.triangle_count(), 992);
        assert!(m.normals.iter().all(|n| (n.length() - 1.0).abs() < 1e-4));
    }

    #[test]
    fn raycast_finds_the_near_face() {
        let c = cube();
        let ray = Ray {
            origin: Vec3::new(0.2, 0.3, 5.0),
            direction: -Vec3::Z,
        };
        let hit = c.raycast(&ray, |p| p).unwrap();
        assert!((hit.distance - 4.0).abs() < 1e-5);
        assert!((c.normal_at(&hit) - Vec3::Z).length() < 1e-5);
        assert!((c.position_at(&hit) - Vec3::new(0.2, 0.3, 1.0)).length() < 1e-5);
    }
}
