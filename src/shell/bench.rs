//! `samemath bench`: runs the chosen scene and prints mean and p95 frame time over N frames
//! after a warm-up, then exits. No vsync, so the figures are the real cost. Scene 1 animates
//! (`BenchStarted`); a scene that measures itself (scene 2: idle, then generating) says so
//! through its probe and uses `summarize`.

use bevy::prelude::*;
use bevy::render::renderer::RenderAdapterInfo;
use bevy::window::PrimaryWindow;

use super::probe::{BenchStarted, Probes};
use super::state::{Scene, ShellOptions};

/// Frames before measuring (pipelines compile, the layout settles).
pub const WARMUP_FRAMES: u32 = 30;

pub(super) fn plugin(app: &mut App) {
    app.add_message::<BenchStarted>()
        .add_systems(Last, measure.run_if(not(scene_drives_bench)));
}

fn scene_drives_bench(world: &World) -> bool {
    world
        .get_resource::<Probes>()
        .is_some_and(|p| p.drives_bench(world))
}

/// "NVIDIA H200 (Vulkan)", or what is known.
pub fn adapter_label(adapter: Option<&RenderAdapterInfo>) -> String {
    adapter.map_or("unknown adapter".to_string(), |a| llm::gpu::adapter_name(a))
}

/// Mean and 95th percentile of frame times, in milliseconds.
pub fn summarize(frame_ms: &[f64]) -> Option<(f64, f64)> {
    if frame_ms.is_empty() {
        return None;
    }
    let mean = frame_ms.iter().sum::<f64>() / frame_ms.len() as f64;
    let mut sorted = frame_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((0.95 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some((mean, sorted[rank - 1]))
}

fn measure(
    options: Res<ShellOptions>,
    time: Res<Time<Real>>,
    windows: Query<&Window, With<PrimaryWindow>>,
    adapter: Option<Res<RenderAdapterInfo>>,
    scene: Res<State<Scene>>,
    mut started: MessageWriter<BenchStarted>,
    mut samples: Local<Vec<f64>>,
    mut frames: Local<u32>,
    mut exit: MessageWriter<AppExit>,
) {
    let Some(bench_frames) = options.bench_frames else {
        return;
    };
    *frames += 1;
    if *frames == 1 {
        started.write(BenchStarted);
    }
    if *frames <= WARMUP_FRAMES {
        return;
    }
    samples.push(time.delta_secs_f64() * 1000.0);
    if samples.len() < bench_frames.max(1) as usize {
        return;
    }
    let (w, h) = windows
        .single()
        .map(|w| (w.physical_width(), w.physical_height()))
        .unwrap_or((0, 0));
    let adapter = adapter_label(adapter.as_deref());
    if let Some((mean, p95)) = summarize(&samples) {
        println!(
            "bench scene={:?} window={w}x{h} frames={} adapter={adapter}\n  frame time: mean {mean:.2} ms, p95 {p95:.2} ms ({:.1} fps mean)",
            scene.get(),
            samples.len(),
            1000.0 / mean
        );
    }
    exit.write(AppExit::Success);
}
