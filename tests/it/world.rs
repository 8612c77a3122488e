//! Scene 2's world, rendered by the `samemath` binary (lavapipe under xvfb in CI): every neuron
//! column's height is the trace's activation exactly; the top of the strongest columns lands at
//! the pixel the math crate's camera chain predicts, in the colour scene 1's `shade` gives the
//! colormap of its value; and at a projector's size, with large UI, the 3D view of both scenes
//! keeps the middle of the window.

use glam::{Mat4, Vec3};
use math::Viewport;
use math::camera::ClipChain;
use math::lighting::{LightingParams, light_direction, shade};
use samemath::llm_scene::activations::activation_color;
use samemath::llm_scene::world::WorldLayout;
use samemath::llm_scene::world::layout::{COLUMN, MLP_UNIT};
use serde_json::{Value, json};

use crate::render::{Shot, render_at};

const PROMPT: &str = "The capital of France is";

fn floats(v: &Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn world_chain(w: &Value) -> ClipChain {
    let v = floats(&w["viewport"]);
    ClipChain {
        world_from_local: Mat4::IDENTITY,
        view_from_world: Mat4::from_cols_slice(&floats(&w["view_from_world"])),
        clip_from_view: Mat4::from_cols_slice(&floats(&w["clip_from_view"])),
        viewport: Viewport {
            x: v[0],
            y: v[1],
            width: v[2],
            height: v[3],
        },
    }
}

fn to_srgb_byte(c: f32) -> i32 {
    let c = c.clamp(0.0, 1.0);
    let s = if c <= 0.0031308 {
        c * 12.92
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    };
    (s * 255.0).round() as i32
}

fn to_linear(byte: u8) -> f32 {
    let c = byte as f32 / 255.0;
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// The world's MLP columns of a 3-step run at layer 29's close-up, on `backend`.
fn layer_shot(name: &str, backend: &str) -> Shot {
    render_at(
        name,
        "1920x1080",
        json!({}),
        &[
            "--scene",
            "llm",
            "--prompt",
            PROMPT,
            "--raw",
            "--steps",
            "3",
            "--view",
            "layer:29",
            "--backend",
            backend,
        ],
    )
}

fn grid(v: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn same_bits(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        })
}

#[test]
fn columns_are_the_trace_and_their_tops_land_where_the_math_says() {
    let shot = layer_shot("world_layer", "cpu");
    let llm = &shot.meta["llm"];
    let w = &llm["world"];
    assert_eq!(w["shown"], true, "{w:#}");
    assert_eq!(w["cut"], 29);
    let acts = grid(&llm["activations"]);
    // On the CPU backend the trace is written into the buffer the columns are drawn from: what
    // was uploaded, and the bound buffer read back (each column's s_y), are the activations bit
    // for bit; each column's tag is its index into that buffer.
    assert_eq!(w["values_path"], "uploaded", "{w:#}");
    assert!(same_bits(&grid(&w["uploaded"]), &acts), "uploaded != trace");
    assert!(
        same_bits(&grid(&w["heights"]), &acts),
        "bound buffer != trace"
    );
    assert_eq!(w["tags_match"], true);
    assert_column_tops(&shot, &acts);
}

/// On the GPU backend (lavapipe here) the columns are drawn from the buffer the SwiGLU kernel
/// wrote on the renderer's device: read back after the steps, it holds the GPU trace's
/// activations bit for bit (the backend's own read-back of the same buffer), they are the CPU
/// engine's within the backends' measured tolerance (teacher-forced on the GPU's tokens), and
/// the drawn column tops land where the math says in the colormap's colour.
#[test]
fn on_the_gpu_backend_the_columns_are_the_kernels_own_buffer() {
    let shot = layer_shot("world_layer_gpu", "gpu");
    let llm = &shot.meta["llm"];
    let w = &llm["world"];
    assert_eq!(llm["backend"]["kind"], "gpu", "{llm:#}\n{}", shot.stderr);
    assert_eq!(llm["backend"]["same_device"], true);
    assert_eq!(w["values_path"], "kernel buffer", "{w:#}");
    assert_eq!(w["tags_match"], true);
    let acts = grid(&llm["activations"]);
    let bound = grid(&w["heights"]);
    assert!(
        same_bits(&bound, &acts),
        "the bound buffer is not the kernel's trace"
    );

    let (model, tok) = testkit::model::model();
    let session = llm::Session::new(
        model.clone(),
        tok.clone(),
        &llm::GenerationRequest {
            chat: false,
            ..llm::GenerationRequest::new(PROMPT)
        },
    )
    .unwrap();
    let ids: Vec<u32> = serde_json::from_value(llm["generated_ids"].clone()).unwrap();
    assert_eq!(ids.len(), 3);
    let mut tokens = session.prompt_tokens().to_vec();
    tokens.extend(&ids[..2]);
    let mut cache = model.new_cache();
    let out = model
        .forward(&mut cache, &tokens, llm::RecordOptions::FULL, Some(tok))
        .unwrap();
    let cpu = out.trace.expect("a trace");
    // Per layer, the L2 distance relative to the CPU's row, as the backends' parity test
    // measures it (crates/llm/tests/engine/gpu.rs: ACTIVATION_TOLERANCE).
    let mut worst = 0.0f32;
    for (layer, row) in bound.iter().enumerate() {
        let cpu_row = &cpu.layers[layer].mlp_activation;
        assert_eq!(row.len(), cpu_row.len());
        let diff: f32 = row
            .iter()
            .zip(cpu_row)
            .map(|(g, c)| (g - c) * (g - c))
            .sum();
        let norm: f32 = cpu_row.iter().map(|c| c * c).sum();
        worst = worst.max((diff / norm.max(1e-12)).sqrt());
    }
    println!("kernel buffer vs CPU engine: worst relative L2 distance {worst:.4} over 30 layers");
    assert!(worst <= 0.15, "kernel buffer vs CPU: {worst}");
    assert_column_tops(&shot, &acts);
}

/// The top of layer 29's strongest columns (and some within the colour scale) land at the pixel
/// the math crate's camera chain predicts, in the colour `shade` gives the colormap of the value.
fn assert_column_tops(shot: &Shot, acts: &[Vec<f32>]) {
    let w = &shot.meta["llm"]["world"];
    let layout = WorldLayout::new(acts.len(), acts[0].len(), 576);
    assert_eq!(w["layout"]["cols"], layout.cols);

    let chain = world_chain(w);
    let eye = Vec3::from_slice(&floats(&w["eye"]));
    let scale = w["mlp_scale"].as_f64().unwrap() as f32;
    let labels: Vec<Vec<f32>> = serde_json::from_value(w["labels"].clone()).unwrap();
    let covered = |x: f32, y: f32| {
        labels.iter().any(|r| {
            x > r[0] - 6.0 && x < r[0] + r[2] + 6.0 && y > r[1] - 6.0 && y < r[1] + r[3] + 6.0
        })
    };
    let params = LightingParams::default();
    let light = light_direction(params.azimuth_deg, params.elevation_deg);
    // Columns of the top layer (nothing above it: the close-up hides the stack over it) whose
    // upper face the eye sees past every other column, by a ray test on the CPU; the strongest
    // (their colour saturates) and those within the colour scale, of both signs.
    let layer = 29;
    let row = &acts[layer];
    let boxes: Vec<(Vec3, Vec3)> = (0..row.len())
        .map(|n| {
            let base = layout.column_base(layer, n);
            let h = MLP_UNIT * row[n];
            let half = COLUMN / 2.0;
            (
                base + Vec3::new(-half, h.min(0.0), -half),
                base + Vec3::new(half, h.max(0.0), half),
            )
        })
        .collect();
    let hidden = |n: usize, p: Vec3| {
        let d = p - eye;
        boxes.iter().enumerate().any(|(i, (lo, hi))| {
            if i == n {
                return false;
            }
            let (mut t0, mut t1) = (0.0f32, 0.999f32);
            for k in 0..3 {
                let (a, b) = ((lo[k] - eye[k]) / d[k], (hi[k] - eye[k]) / d[k]);
                t0 = t0.max(a.min(b));
                t1 = t1.min(a.max(b));
            }
            t0 <= t1
        })
    };
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].abs().total_cmp(&row[a].abs()));
    let strong: Vec<usize> = order.iter().copied().take(60).collect();
    let within: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&n| row[n].abs() < scale * 0.9 && row[n].abs() > scale * 0.2)
        .collect();
    let mut checked = 0;
    let mut worst = 0;
    let mut signs = [0, 0];
    let mut unsaturated = 0;
    for (group, want_n) in [(strong, 6), (within, 14)] {
        let mut taken = 0;
        for n in group {
            if taken == want_n {
                break;
            }
            let value = row[n];
            let upper = layout.column_base(layer, n) + Vec3::Y * (MLP_UNIT * value).max(0.0);
            let Some(px) = chain.project_world(upper) else {
                continue;
            };
            if !chain.viewport.contains(px) || covered(px.x, px.y) || hidden(n, upper) {
                continue;
            }
            let c = activation_color(value, scale);
            let base = [to_linear(c[0]), to_linear(c[1]), to_linear(c[2])];
            let terms = shade(
                Vec3::Y,
                light,
                (eye - upper).normalize(),
                &LightingParams {
                    base_color: base,
                    ..params
                },
            );
            let want = terms.color.to_array().map(to_srgb_byte);
            let got = shot.image.get_pixel(px.x as u32, px.y as u32).0;
            let diff = (0..3)
                .map(|i| (got[i] as i32 - want[i]).abs())
                .max()
                .unwrap();
            println!("layer {layer} neuron {n}: {value:.3} at {px:?}: {got:?}, want {want:?}");
            worst = worst.max(diff);
            checked += 1;
            taken += 1;
            signs[(value < 0.0) as usize] += 1;
            unsaturated += (value.abs() < scale) as usize;
        }
    }
    println!(
        "world: {checked} column tops ({unsaturated} within the colour scale, {} negative)",
        signs[1]
    );
    assert!(
        checked >= 5,
        "only {checked} column tops in view and uncovered"
    );
    assert!(worst <= 4, "a column top's colour is off by {worst}");
}

/// The share of pixels in a box around the window's middle that are not the background.
fn lit_middle(shot: &Shot) -> f32 {
    let (w, h) = shot.image.dimensions();
    let (cx, cy) = (w / 2, h / 2);
    let mut lit = 0;
    let mut all = 0;
    for y in cy - 30..cy + 30 {
        for x in cx - 30..cx + 30 {
            let p = shot.image.get_pixel(x, y).0;
            let bg = [14, 15, 19];
            if (0..3).any(|i| (p[i] as i32 - bg[i]).abs() > 12) {
                lit += 1;
            }
            all += 1;
        }
    }
    lit as f32 / all as f32
}

#[test]
fn the_3d_view_keeps_the_middle_of_the_window_at_projector_sizes() {
    for (window, large) in [("1280x720", true), ("1920x1080", false)] {
        let (ww, wh) = {
            let (a, b) = window.split_once('x').unwrap();
            (a.parse::<f32>().unwrap(), b.parse::<f32>().unwrap())
        };
        let mut extra = vec!["--steps", "2", "--prompt", PROMPT, "--raw"];
        if large {
            extra.push("--large-ui");
        }
        for scene in ["graphics", "llm"] {
            let mut args = vec!["--scene", scene];
            args.extend(&extra);
            let name = format!(
                "stage_{scene}_{window}{}",
                if large { "_large" } else { "" }
            );
            let shot = render_at(&name, window, json!({"show_markers": false}), &args);
            let v = if scene == "llm" {
                floats(&shot.meta["llm"]["world"]["viewport"])
            } else {
                floats(&shot.meta["viewport"])
            };
            let lit = lit_middle(&shot);
            println!(
                "{name}: 3D view {:.0}x{:.0} at x {:.0} ({:.0}% of the width); the middle {:.0}% lit",
                v[2],
                v[3],
                v[0],
                100.0 * v[2] / ww,
                100.0 * lit
            );
            assert!(
                v[2] >= 0.45 * ww && v[3] >= 0.8 * (wh - 60.0),
                "{name}: {v:?}"
            );
            assert!(v[0] < ww / 2.0 && v[0] + v[2] > ww / 2.0, "{name}: {v:?}");
            assert!(
                lit > 0.1,
                "{name}: the middle of the window is {:.0}% lit",
                100.0 * lit
            );
            if scene == "llm" {
                // Every label is read whole: none runs past the 3D view's edge into a panel.
                let labels = shot.meta["llm"]["world"]["labels"].as_array().unwrap();
                assert!(labels.len() > 10, "{name}: {} labels", labels.len());
                for r in labels {
                    let r = floats(r);
                    assert!(
                        r[0] >= v[0] - 1.0
                            && r[1] >= v[1] - 1.0
                            && r[0] + r[2] <= v[0] + v[2] + 1.0
                            && r[1] + r[3] <= v[1] + v[3] + 1.0,
                        "{name}: label {r:?} runs past the view {v:?}"
                    );
                }
            }
        }
    }
}
