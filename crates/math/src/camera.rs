//! View and projection matrices, the clip-from-local chain, NDC to pixels, and picking rays.
//!
//! `view_from_world` is a right-handed look-at; `clip_from_view` is the infinite, reverse-Z
//! perspective Bevy's 3D camera uses (depth 1 at the near plane, 0 at infinity), so our own
//! shader writes depth the way Bevy's depth test expects. Pixels: origin at the top-left of the
//! window, y down, in physical pixels; NDC y is up.

use glam::{Mat4, Vec2, Vec3, Vec4};
use serde::{Deserialize, Serialize};

/// `view_from_world` for a camera at `eye` looking at `target`.
pub fn look_at_rh(eye: Vec3, target: Vec3, up: Vec3) -> Mat4 {
    let f = (target - eye).normalize(); // forward
    let s = f.cross(up).normalize(); // right
    let u = s.cross(f); // true up
    Mat4::from_cols(
        Vec4::new(s.x, u.x, -f.x, 0.0),
        Vec4::new(s.y, u.y, -f.y, 0.0),
        Vec4::new(s.z, u.z, -f.z, 0.0),
        Vec4::new(-s.dot(eye), -u.dot(eye), f.dot(eye), 1.0),
    )
}

/// `clip_from_view`: infinite reverse-Z perspective (right-handed, looking down -Z).
pub fn perspective_infinite_reverse_rh(fov_y_rad: f32, aspect: f32, near: f32) -> Mat4 {
    let f = 1.0 / (0.5 * fov_y_rad).tan();
    Mat4::from_cols(
        Vec4::new(f / aspect, 0.0, 0.0, 0.0),
        Vec4::new(0.0, f, 0.0, 0.0),
        Vec4::new(0.0, 0.0, 0.0, -1.0),
        Vec4::new(0.0, 0.0, near, 0.0),
    )
}

/// A rectangle of the window in physical pixels (origin top-left).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Viewport {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl Viewport {
    pub fn aspect(&self) -> f32 {
        if self.height > 0.0 {
            self.width / self.height
        } else {
            1.0
        }
    }

    pub fn contains(&self, pixel: Vec2) -> bool {
        pixel.x >= self.x
            && pixel.y >= self.y
            && pixel.x < self.x + self.width
            && pixel.y < self.y + self.height
    }
}

pub fn pixel_from_ndc(ndc: Vec3, viewport: &Viewport) -> Vec2 {
    Vec2::new(
        viewport.x + (ndc.x + 1.0) * 0.5 * viewport.width,
        viewport.y + (1.0 - ndc.y) * 0.5 * viewport.height,
    )
}

pub fn ndc_from_pixel(pixel: Vec2, viewport: &Viewport) -> Vec2 {
    Vec2::new(
        (pixel.x - viewport.x) / viewport.width * 2.0 - 1.0,
        1.0 - (pixel.y - viewport.y) / viewport.height * 2.0,
    )
}

/// An orbit camera: yaw and pitch about a target, at a distance.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrbitCamera {
    pub target: [f32; 3],
    pub yaw_deg: f32,
    pub pitch_deg: f32,
    pub distance: f32,
    pub fov_y_deg: f32,
    pub near: f32,
}

impl Default for OrbitCamera {
    fn default() -> Self {
        Self {
            target: [0.0; 3],
            yaw_deg: 0.0,
            pitch_deg: 20.0,
            distance: 6.0,
            fov_y_deg: 45.0,
            near: 0.1,
        }
    }
}

impl OrbitCamera {
    pub const MIN_DISTANCE: f32 = 1.0;
    pub const MAX_DISTANCE: f32 = 60.0;

    pub fn eye(&self) -> Vec3 {
        let (yaw, pitch) = (self.yaw_deg.to_radians(), self.pitch_deg.to_radians());
        let dir = Vec3::new(
            pitch.cos() * yaw.sin(),
            pitch.sin(),
            pitch.cos() * yaw.cos(),
        );
        Vec3::from(self.target) + dir * self.distance
    }

    pub fn view_from_world(&self) -> Mat4 {
        look_at_rh(self.eye(), Vec3::from(self.target), Vec3::Y)
    }

    pub fn clip_from_view(&self, aspect: f32) -> Mat4 {
        perspective_infinite_reverse_rh(self.fov_y_deg.to_radians(), aspect, self.near)
    }

    /// Rotate by a mouse drag (degrees), keeping pitch off the poles.
    pub fn orbit(&mut self, d_yaw_deg: f32, d_pitch_deg: f32) {
        if d_yaw_deg.is_finite() && d_pitch_deg.is_finite() {
            self.yaw_deg = (self.yaw_deg + d_yaw_deg).rem_euclid(360.0);
            self.pitch_deg = (self.pitch_deg + d_pitch_deg).clamp(-89.0, 89.0);
        }
    }

    /// The camera with every field in the range the matrices need (a saved or typed state may
    /// say anything): non-finite values become the defaults, the target within ±1000, the
    /// distance 1..60, the pitch off
    /// the poles, the field of view 10..120 degrees, the near plane positive and in front of
    /// the target.
    pub fn sanitized(self) -> Self {
        let d = Self::default();
        let finite = |v: f32, default: f32| crate::clamp_finite(v, default, f32::MIN, f32::MAX);
        let target = if self.target.iter().all(|t| t.is_finite()) {
            self.target.map(|t| t.clamp(-1000.0, 1000.0))
        } else {
            d.target
        };
        let distance =
            finite(self.distance, d.distance).clamp(Self::MIN_DISTANCE, Self::MAX_DISTANCE);
        Self {
            target,
            yaw_deg: finite(self.yaw_deg, d.yaw_deg).rem_euclid(360.0),
            pitch_deg: finite(self.pitch_deg, d.pitch_deg).clamp(-89.0, 89.0),
            distance,
            fov_y_deg: finite(self.fov_y_deg, d.fov_y_deg).clamp(10.0, 120.0),
            near: finite(self.near, d.near).clamp(0.01, distance * 0.5),
        }
    }

    /// Zoom by a scroll amount (positive = closer).
    pub fn zoom(&mut self, scroll: f32) {
        if scroll.is_finite() {
            self.distance = (self.distance * (-0.1 * scroll).exp())
                .clamp(Self::MIN_DISTANCE, Self::MAX_DISTANCE);
        }
    }
}

/// Everything that happens to one vertex on its way to the screen.
#[derive(Clone, Debug, PartialEq)]
pub struct VertexJourney {
    pub local: Vec4,
    /// After each elementary model matrix, rightmost first.
    pub model_steps: Vec<(&'static str, Vec4)>,
    pub world: Vec4,
    pub view: Vec4,
    pub clip: Vec4,
    /// `clip.xyz / clip.w`; `None` when the vertex is behind the camera (w <= 0).
    pub ndc: Option<Vec3>,
    pub pixel: Option<Vec2>,
}

/// The chain `clip = clip_from_view * view_from_world * world_from_local * v`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipChain {
    pub world_from_local: Mat4,
    pub view_from_world: Mat4,
    pub clip_from_view: Mat4,
    pub viewport: Viewport,
}

impl ClipChain {
    pub fn clip_from_world(&self) -> Mat4 {
        self.clip_from_view * self.view_from_world
    }

    pub fn clip_from_local(&self) -> Mat4 {
        self.clip_from_world() * self.world_from_local
    }

    pub fn project_world(&self, point_in_world: Vec3) -> Option<Vec2> {
        let clip = self.clip_from_world() * point_in_world.extend(1.0);
        (clip.w > 1e-6).then(|| pixel_from_ndc(clip.truncate() / clip.w, &self.viewport))
    }

    pub fn journey(&self, model_steps: Vec<(&'static str, Vec4)>, local: Vec3) -> VertexJourney {
        let local = local.extend(1.0);
        let world = self.world_from_local * local;
        let view = self.view_from_world * world;
        let clip = self.clip_from_view * view;
        let ndc = (clip.w > 1e-6).then(|| clip.truncate() / clip.w);
        let pixel = ndc.map(|n| pixel_from_ndc(n, &self.viewport));
        VertexJourney {
            local,
            model_steps,
            world,
            view,
            clip,
            ndc,
            pixel,
        }
    }

    /// The world-space ray through a pixel (origin at the near plane, unit direction).
    pub fn ray_through_pixel(&self, pixel: Vec2) -> Option<Ray> {
        let inv = self.clip_from_world().inverse();
        if !inv.is_finite() {
            return None;
        }
        let ndc = ndc_from_pixel(pixel, &self.viewport);
        // Reverse-Z: depth 1 is the near plane, smaller depths are farther away.
        let near = inv * Vec4::new(ndc.x, ndc.y, 1.0, 1.0);
        let far = inv * Vec4::new(ndc.x, ndc.y, 0.5, 1.0);
        if near.w.abs() < 1e-12 || far.w.abs() < 1e-12 {
            return None;
        }
        let (near, far) = (near.truncate() / near.w, far.truncate() / far.w);
        let dir = (far - near).normalize();
        dir.is_finite().then_some(Ray {
            origin: near,
            direction: dir,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ray {
    pub origin: Vec3,
    pub direction: Vec3,
}

/// Möller–Trumbore: distance along the ray and barycentrics (u, v) of the hit, both faces.
pub fn ray_triangle(ray: &Ray, a: Vec3, b: Vec3, c: Vec3) -> Option<(f32, f32, f32)> {
    let e1 = b - a;
    let e2 = c - a;
    let p = ray.direction.cross(e2);
    let det = e1.dot(p);
    if det.abs() < 1e-12 {
        return None;
    }
    let inv = 1.0 / det;
    let s = ray.origin - a;
    let u = s.dot(p) * inv;
    if !(0.0..=1.0).contains(&u) {
        return None;
    }
    let q = s.cross(e1);
    let v = ray.direction.dot(q) * inv;
    if v < 0.0 || u + v > 1.0 {
        return None;
    }
    let t = e2.dot(q) * inv;
    (t > 0.0).then_some((t, u, v))
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_saved_camera_gives_finite_matrices() {
        let bad = [
            OrbitCamera {
                distance: 0.0,
                ..Default::default()
            },
            OrbitCamera {
                pitch_deg: 90.0,
                ..Default::default()
            },
            OrbitCamera {
                fov_y_deg: 0.0,
                ..Default::default()
            },
            OrbitCamera {
                near: 0.0,
                distance: f32::NAN,
                ..Default::default()
            },
            OrbitCamera {
                target: [f32::INFINITY, 0.0, 0.0],
                yaw_deg: f32::NAN,
                ..Default::default()
            },
            OrbitCamera {
                fov_y_deg: 180.0,
                near: -1.0,
                pitch_deg: -1e30,
                ..Default::default()
            },
        ];
        for camera in bad {
            let c = camera.sanitized();
            let m = c.clip_from_view(16.0 / 9.0) * c.view_from_world();
            assert!(m.is_finite(), "{camera:?} -> {c:?}: {m}");
        }
        assert_eq!(OrbitCamera::default().sanitized(), OrbitCamera::default());
    }

    use super::*;

    #[test]
    fn view_and_projection_equal_glam() {
        let eye = Vec3::new(3.0, 2.0, 5.0);
        let ours = look_at_rh(eye, Vec3::ZERO, Vec3::Y);
        assert!(ours.abs_diff_eq(Mat4::look_at_rh(eye, Vec3::ZERO, Vec3::Y), 1e-5));
        let ours = perspective_infinite_reverse_rh(0.8, 1.6, 0.1);
        let glam = Mat4::perspective_infinite_reverse_rh(0.8, 1.6, 0.1);
        assert!(ours.abs_diff_eq(glam, 1e-6));
    }

    #[test]
    fn target_projects_to_viewport_centre() {
        let cam = OrbitCamera::default();
        let viewport = Viewport {
            x: 100.0,
            y: 50.0,
            width: 800.0,
            height: 600.0,
        };
        let chain = ClipChain {
            world_from_local: Mat4::IDENTITY,
            view_from_world: cam.view_from_world(),
            clip_from_view: cam.clip_from_view(viewport.aspect()),
            viewport,
        };
        let px = chain.project_world(Vec3::ZERO).unwrap();
        assert!((px - Vec2::new(500.0, 350.0)).length() < 1e-3, "{px}");
        // +Y in the world is up on screen (smaller pixel y).
        let up = chain.project_world(Vec3::Y).unwrap();
        assert!(up.y < px.y);
        // A point behind the camera has no pixel.
        assert!(chain.project_world(cam.eye() * 2.0).is_none());
        // NDC and pixels round-trip.
        let ndc = ndc_from_pixel(Vec2::new(123.0, 456.0), &viewport);
        let back = pixel_from_ndc(ndc.extend(0.0), &viewport);
        assert!((back - Vec2::new(123.0, 456.0)).length() < 1e-3);
    }

    #[test]
    fn picking_ray_hits_what_projects_there() {
        let cam = OrbitCamera {
            yaw_deg: 30.0,
            ..Default::default()
        };
        let viewport = Viewport {
            x: 0.0,
            y: 0.0,
            width: 640.0,
            height: 480.0,
        };
        let chain = ClipChain {
            world_from_local: Mat4::IDENTITY,
            view_from_world: cam.view_from_world(),
            clip_from_view: cam.clip_from_view(viewport.aspect()),
            viewport,
        };
        let (a, b, c) = (
            Vec3::new(-1.0, -1.0, 0.0),
            Vec3::new(1.0, -1.0, 0.0),
            Vec3::new(0.0, 1.0, 0.0),
        );
        let centroid = (a + b + c) / 3.0;
        let px = chain.project_world(centroid).unwrap();
        let ray = chain.ray_through_pixel(px).unwrap();
        let (t, u, v) = ray_triangle(&ray, a, b, c).unwrap();
        let hit = ray.origin + ray.direction * t;
        assert!((hit - centroid).length() < 1e-3, "{hit}");
        assert!((u - 1.0 / 3.0).abs() < 1e-3 && (v - 1.0 / 3.0).abs() < 1e-3);
    }

    #[test]
    fn orbit_clamps_and_refuses_nan() {
        let mut cam = OrbitCamera::default();
        cam.orbit(10.0, 200.0);
        assert_eq!(cam.pitch_deg, 89.0);
        cam.orbit(f32::NAN, 1.0);
        assert_eq!(cam.pitch_deg, 89.0);
        cam.zoom(1e9);
        assert_eq!(cam.distance, OrbitCamera::MIN_DISTANCE);
        cam.zoom(f32::INFINITY);
        assert!(cam.distance.is_finite());
    }
}
