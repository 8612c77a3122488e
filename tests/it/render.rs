//! Real frames from the `samemath` binary (`--screenshot`), on whatever Vulkan the machine has
//! (lavapipe in CI, under xvfb-run). PNGs land in the target dir's tmp/screenshots for a look.
//! Each test asserts a measurable fact against our CPU math, read back from the sidecar JSON.

use std::path::PathBuf;
use std::process::Command;

use glam::{Mat4, Vec2, Vec3};
use image::RgbImage;
use math::Viewport;
use math::camera::ClipChain;
use math::mesh::cube;
use serde_json::{Value, json};

const WINDOW: &str = "1920x1080";
/// The clear colour, as bytes (srgb 0.055, 0.06, 0.075).
const BACKGROUND: [i32; 3] = [14, 15, 19];

pub(crate) struct Shot {
    pub image: RgbImage,
    pub meta: Value,
    pub stderr: String,
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn render(name: &str, state: Value, extra: &[&str]) -> Shot {
    render_at(name, WINDOW, state, extra)
}

pub(crate) fn render_at(name: &str, window: &str, state: Value, extra: &[&str]) -> Shot {
    let dir = out_dir();
    let png = dir.join(format!("{name}.png"));
    let state_path = dir.join(format!("{name}.state.json"));
    std::fs::write(&state_path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
    let _ = std::fs::remove_file(&png);
    let output = Command::new(env!("CARGO_BIN_EXE_samemath"))
        .args(["--window", window, "--screenshot"])
        .arg(&png)
        .arg("--state")
        .arg(&state_path)
        .args(extra)
        .output()
        .expect("run samemath");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{name}: samemath exited with {:?} (needs a display and Vulkan: run under xvfb-run \
         with WGPU_BACKEND=vulkan)\n{stderr}",
        output.status
    );
    let image = image::open(&png).unwrap().to_rgb8();
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.json", png.display())).unwrap())
            .unwrap();
    Shot {
        image,
        meta,
        stderr,
    }
}

fn mat(meta: &Value, key: &str) -> Mat4 {
    let v: Vec<f32> = serde_json::from_value(meta[key].clone()).unwrap();
    Mat4::from_cols_slice(&v)
}

fn chain(meta: &Value) -> ClipChain {
    let v: Vec<f32> = serde_json::from_value(meta["viewport"].clone()).unwrap();
    ClipChain {
        world_from_local: mat(meta, "world_from_local"),
        view_from_world: mat(meta, "view_from_world"),
        clip_from_view: mat(meta, "clip_from_view"),
        viewport: Viewport {
            x: v[0],
            y: v[1],
            width: v[2],
            height: v[3],
        },
    }
}

fn is_mesh(px: &image::Rgb<u8>) -> bool {
    (0..3).any(|c| (px.0[c] as i32 - BACKGROUND[c]).abs() > 12)
}

/// Pixels of the mesh inside the 3D viewport: (x, y, luma).
fn mesh_pixels(shot: &Shot) -> Vec<(u32, u32, f32)> {
    let vp = chain(&shot.meta).viewport;
    let mut out = Vec::new();
    for y in vp.y as u32 + 2..(vp.y + vp.height) as u32 - 2 {
        for x in vp.x as u32 + 2..(vp.x + vp.width) as u32 - 2 {
            let p = shot.image.get_pixel(x, y);
            if is_mesh(p) {
                let luma = 0.2126 * p.0[0] as f32 + 0.7152 * p.0[1] as f32 + 0.0722 * p.0[2] as f32;
                out.push((x, y, luma));
            }
        }
    }
    out
}

fn srgb_to_linear(byte: u8) -> f32 {
    let c = byte as f32 / 255.0;
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// Scene-1 state with markers off, specular off, a white surface.
fn base_state(mesh: &str) -> Value {
    json!({
        "mesh": mesh,
        "show_markers": false,
        "selected_vertex": null,
        "lighting": {
            "ambient": 0.1, "diffuse": 0.8, "specular": 0.0, "shininess": 32.0,
            "ambient_on": true, "diffuse_on": true, "specular_on": false,
            "per_fragment": true, "azimuth_deg": 0.0, "elevation_deg": 0.0,
            "base_color": [1.0, 1.0, 1.0]
        }
    })
}

#[test]
fn light_from_plus_x_brightens_the_plus_x_half() {
    let mut means = Vec::new();
    for (name, azimuth) in [("light_plus_x", 90.0), ("light_minus_x", -90.0)] {
        let mut state = base_state("Teapot");
        state["lighting"]["azimuth_deg"] = json!(azimuth);
        let shot = render(name, state, &[]);
        let origin = chain(&shot.meta).project_world(Vec3::ZERO).unwrap();
        let pixels = mesh_pixels(&shot);
        assert!(
            pixels.len() > 5000,
            "{name}: the teapot covers too few pixels"
        );
        let mean = |right: bool| {
            let side: Vec<f32> = pixels
                .iter()
                .filter(|(x, _, _)| ((*x as f32) > origin.x) == right)
                .map(|p| p.2)
                .collect();
            side.iter().sum::<f32>() / side.len() as f32
        };
        means.push((mean(true), mean(false)));
    }
    let (plus_right, plus_left) = means[0];
    let (minus_right, minus_left) = means[1];
    println!(
        "light +X: mean luma right {plus_right:.1} / left {plus_left:.1}; light -X: right \
         {minus_right:.1} / left {minus_left:.1}"
    );
    assert!(
        plus_right > plus_left + 30.0,
        "light +X: {plus_right} vs {plus_left}"
    );
    assert!(
        minus_left > minus_right + 30.0,
        "light -X: {minus_left} vs {minus_right}"
    );
}

/// Intersect the unit sphere at the origin with the ray through a pixel.
fn sphere_normal_at(chain: &ClipChain, pixel: Vec2) -> Option<Vec3> {
    let ray = chain.ray_through_pixel(pixel)?;
    let b = ray.origin.dot(ray.direction);
    let c = ray.origin.length_squared() - 1.0;
    let disc = b * b - c;
    (disc > 0.0).then(|| (ray.origin + ray.direction * (-b - disc.sqrt())).normalize())
}

#[test]
fn lambert_pixels_equal_ambient_plus_kd_n_dot_l() {
    let mut state = base_state("Sphere");
    state["lighting"]["azimuth_deg"] = json!(40.0);
    state["lighting"]["elevation_deg"] = json!(30.0);
    let shot = render("lambert_sphere", state, &[]);
    let chain = chain(&shot.meta);
    let light: Vec<f32> = serde_json::from_value(shot.meta["light_dir"].clone()).unwrap();
    let l = Vec3::from_slice(&light);
    let centre = chain.project_world(Vec3::ZERO).unwrap();
    let mut checked = 0;
    let mut worst = 0f32;
    for (dx, dy) in [
        (0.0, 0.0),
        (60.0, 0.0),
        (-60.0, 20.0),
        (30.0, -70.0),
        (-40.0, -40.0),
        (0.0, 80.0),
    ] {
        let pixel = centre + Vec2::new(dx, dy);
        let n = sphere_normal_at(&chain, pixel + Vec2::splat(0.5)).expect("pixel on the sphere");
        let expected = 0.1 + 0.8 * n.dot(l).max(0.0);
        let got = srgb_to_linear(shot.image.get_pixel(pixel.x as u32, pixel.y as u32).0[1]);
        assert!(
            (got - expected).abs() < 0.02,
            "pixel {pixel}: N={n}, expected {expected:.4}, got {got:.4}"
        );
        worst = worst.max((got - expected).abs());
        checked += 1;
    }
    println!(
        "Lambert: worst |pixel - (ka + kd max(N.L, 0))| = {worst:.4} (linear) over {checked} pixels"
    );
    assert_eq!(checked, 6);
}

fn centroid(pixels: &[(u32, u32, f32)]) -> Vec2 {
    let sum = pixels.iter().fold(Vec2::ZERO, |acc, (x, y, _)| {
        acc + Vec2::new(*x as f32, *y as f32)
    });
    sum / pixels.len() as f32 + Vec2::splat(0.5)
}

#[test]
fn translation_moves_the_centroid_as_predicted() {
    let mut shots = Vec::new();
    for (name, tx) in [("translate_0", 0.0), ("translate_1", 1.2)] {
        let mut state = base_state("Sphere");
        state["model"] = json!({"translation": [tx, 0.0, 0.0], "scale": [0.5, 0.5, 0.5]});
        shots.push(render(name, state, &[]));
    }
    let measured = centroid(&mesh_pixels(&shots[1])) - centroid(&mesh_pixels(&shots[0]));
    let c0 = chain(&shots[0].meta);
    let c1 = chain(&shots[1].meta);
    let predicted = c1
        .project_world(c1.world_from_local.transform_point3(Vec3::ZERO))
        .unwrap()
        - c0.project_world(c0.world_from_local.transform_point3(Vec3::ZERO))
            .unwrap();
    assert!(predicted.x > 100.0, "the move should be large: {predicted}");
    println!("translation: centroid moved {measured}, CPU math predicts {predicted}");
    assert!(
        (measured - predicted).length() < 3.0,
        "measured {measured}, predicted {predicted}"
    );
}

#[test]
fn vertex_marker_sits_on_the_rendered_vertex() {
    let mut state = base_state("Cube");
    // Rx(-45°) then Rz(35.26°) stands the diagonal (1, 1, 1) upright: a symmetric apex on top.
    state["model"] = json!({"rotation_deg": [-45.0, 0.0, 35.264], "scale": [0.8, 0.8, 0.8]});
    state["camera"] = json!({"pitch_deg": 0.0});
    let plain = render("vertex_plain", state.clone(), &[]);
    let chain = chain(&plain.meta);
    // The topmost projected cube vertex, by our CPU math.
    let cube = cube();
    let (index, predicted) = cube
        .positions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                i,
                chain
                    .project_world(chain.world_from_local.transform_point3(*p))
                    .unwrap(),
            )
        })
        .min_by(|a, b| a.1.y.total_cmp(&b.1.y))
        .unwrap();
    // The topmost rendered mesh pixel: the corner as the GPU drew it.
    let pixels = mesh_pixels(&plain);
    let top = pixels.iter().map(|p| p.1).min().unwrap();
    let top_row: Vec<_> = pixels.iter().filter(|p| p.1 <= top + 1).cloned().collect();
    let corner = Vec2::new(
        top_row.iter().map(|p| p.0 as f32).sum::<f32>() / top_row.len() as f32 + 0.5,
        top as f32,
    );
    assert!(
        (corner - predicted).length() <= 2.0,
        "GPU corner {corner} vs CPU {predicted}"
    );
    // Now with the marker on that vertex: its centre is the same pixel.
    state["selected_vertex"] = json!(index);
    state["show_markers"] = json!(true);
    let marked = render("vertex_marker", state, &[]);
    let magenta: Vec<Vec2> = marked
        .image
        .enumerate_pixels()
        .filter(|(_, _, p)| p.0[0] > 200 && p.0[1] < 80 && p.0[2] > 200)
        .map(|(x, y, _)| Vec2::new(x as f32 + 0.5, y as f32 + 0.5))
        .collect();
    assert!(magenta.len() > 30, "no marker drawn");
    let marker = magenta.iter().sum::<Vec2>() / magenta.len() as f32;
    let reported: Vec<f32> =
        serde_json::from_value(marked.meta["selected_vertex"]["pixel"].clone()).unwrap();
    assert!((Vec2::new(reported[0], reported[1]) - predicted).length() < 0.01);
    assert!(
        (marker - corner).length() <= 2.0,
        "marker {marker} vs rendered vertex {corner}"
    );
    println!(
        "vertex marker: drawn at {marker}, rendered corner {corner}, CPU prediction {predicted} \
         (distance {:.2} px)",
        (marker - corner).length()
    );
}

#[test]
fn singular_scale_renders_without_nan() {
    for (name, scale) in [
        ("scale_y0", [1.0, 0.0, 1.0]),
        ("scale_all0", [0.0, 0.0, 0.0]),
    ] {
        let mut state = base_state("Teapot");
        state["model"] = json!({"scale": scale});
        let shot = render(name, state, &[]);
        assert_eq!(shot.meta["normal_matrix_invertible"], json!(false));
        let vp = chain(&shot.meta).viewport;
        let black = shot
            .image
            .enumerate_pixels()
            .filter(|(x, y, p)| vp.contains(Vec2::new(*x as f32, *y as f32)) && p.0 == [0, 0, 0])
            .count();
        assert_eq!(black, 0, "{name}: black (NaN) pixels in the viewport");
        if name == "scale_y0" {
            assert!(
                mesh_pixels(&shot).len() > 1000,
                "the flattened teapot should show"
            );
        }
    }
}

#[test]
fn a_broken_mesh_file_is_reported_and_the_app_keeps_going() {
    let broken = out_dir().join("broken.obj");
    std::fs::write(&broken, "v 0 0 0\nf 1 2 3\n").unwrap();
    let mut state = base_state("File");
    state["show_markers"] = json!(true);
    let shot = render("broken_mesh", state, &["--mesh", broken.to_str().unwrap()]);
    assert!(shot.stderr.contains("OBJ file"), "{}", shot.stderr);
    assert!(shot.stderr.contains("line 2"), "{}", shot.stderr);
    assert_eq!(shot.meta["mesh"], json!("Teapot"));
    assert!(mesh_pixels(&shot).len() > 5000);
}

#[test]
fn a_one_pixel_window_does_not_panic() {
    let shot = render_at("one_pixel", "1x1", base_state("Teapot"), &[]);
    assert!(!shot.stderr.contains("panicked"), "{}", shot.stderr);
    assert!(shot.image.width() >= 1 && shot.image.height() >= 1);
}
