//! `samemath bench`: runs the chosen scene (scene 1 animating) and prints mean and p95 frame
//! time over N frames after a warm-up, then exits. No vsync, so the figures are the real cost.
//! For scene 2: N frames idle (model loaded), then N frames while the model generates, and the
//! ratio of the two p95s.

use bevy::prelude::*;
use bevy::window::PrimaryWindow;

use super::AppOptions;
use crate::cli::SceneArg;
use crate::graphics::GraphicsSettings;
use crate::llm_scene::{EngineStatus, LlmAction, LlmControls, LlmView};

const WARMUP_FRAMES: u32 = 30;

pub(super) fn plugin(app: &mut App) {
    app.add_systems(Last, (measure, measure_llm));
}

/// Where the scene-2 bench is.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
enum LlmPhase {
    #[default]
    WaitModel,
    Idle,
    Generating,
}

#[allow(clippy::too_many_arguments)]
fn measure_llm(
    options: Res<AppOptions>,
    time: Res<Time<Real>>,
    adapter: Option<Res<bevy::render::renderer::RenderAdapterInfo>>,
    view: Option<Res<LlmView>>,
    controls: Option<ResMut<LlmControls>>,
    mut actions: MessageWriter<LlmAction>,
    mut phase: Local<LlmPhase>,
    mut frames: Local<u32>,
    mut idle: Local<Vec<f64>>,
    mut busy: Local<Vec<f64>>,
    mut exit: MessageWriter<AppExit>,
    pacer: Option<Res<crate::llm_scene::LlmPacer>>,
) {
    let (Some(bench), Some(view), Some(mut controls)) = (&options.bench, view, controls) else {
        return;
    };
    if options.args.scene != SceneArg::Llm {
        return;
    }
    let n = bench.frames.max(1) as usize;
    let ms = time.delta_secs_f64() * 1000.0;
    *frames += 1;
    match *phase {
        LlmPhase::WaitModel => {
            if let EngineStatus::Error(e) = &view.status {
                eprintln!("samemath: bench: {e}");
                exit.write(AppExit::error());
            } else if view.model.is_some()
                && *frames > WARMUP_FRAMES
                && (options.args.llm_backend != crate::tools::BackendArg::Gpu
                    || matches!(view.backend, crate::llm_scene::Backend::Gpu { .. }))
            {
                *phase = LlmPhase::Idle;
            }
        }
        LlmPhase::Idle => {
            idle.push(ms);
            if idle.len() >= n {
                controls.prompt = BENCH_PROMPT.into();
                controls.max_tokens = 1024;
                actions.write(LlmAction::Generate);
                *phase = LlmPhase::Generating;
            }
        }
        LlmPhase::Generating => {
            if view.steps > 0 && view.status == EngineStatus::Generating {
                busy.push(ms);
            } else if view.status == EngineStatus::Ready && view.last_stop.is_some() {
                // The answer ended early: ask again, keep measuring.
                actions.write(LlmAction::Generate);
            }
            if busy.len() >= n {
                let adapter = adapter.map_or("unknown adapter".to_string(), |a| {
                    crate::llm::gpu::adapter_name(&a)
                });
                if let (Some((im, ip)), Some((gm, gp))) = (summarize(&idle), summarize(&busy)) {
                    println!(
                        "bench scene=Llm frames={n} adapter={adapter} model on {}\n  idle:       mean {im:.2} ms, p95 {ip:.2} ms\n  generating: mean {gm:.2} ms, p95 {gp:.2} ms ({:.1} tokens/s)\n  p95 generating / idle: {:.2}x",
                        view.backend.name(),
                        view.tokens_per_sec,
                        gp / ip
                    );
                    if let (Some(p), crate::llm_scene::Backend::Gpu { .. }) =
                        (&pacer, &view.backend)
                    {
                        println!(
                            "  GPU time lent to the model per frame at the end: {:.2} ms",
                            p.0.budget().as_secs_f64() * 1e3
                        );
                    }
                }
                actions.write(LlmAction::Stop);
                exit.write(AppExit::Success);
            }
        }
    }
}

/// What scene 2's bench asks the model.
const BENCH_PROMPT: &str = "Write a long story about a lighthouse keeper and a storm.";

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
    options: Res<AppOptions>,
    time: Res<Time<Real>>,
    windows: Query<&Window, With<PrimaryWindow>>,
    adapter: Option<Res<bevy::render::renderer::RenderAdapterInfo>>,
    mut settings: Option<ResMut<GraphicsSettings>>,
    mut samples: Local<Vec<f64>>,
    mut frames: Local<u32>,
    mut exit: MessageWriter<AppExit>,
) {
    let Some(bench) = &options.bench else {
        return;
    };
    if options.args.scene == SceneArg::Llm {
        return;
    }
    *frames += 1;
    if *frames == 1
        && let Some(s) = settings.as_mut()
    {
        s.animate = true;
    }
    if *frames <= WARMUP_FRAMES {
        return;
    }
    samples.push(time.delta_secs_f64() * 1000.0);
    if samples.len() < bench.frames.max(1) as usize {
        return;
    }
    let (w, h) = windows
        .single()
        .map(|w| (w.physical_width(), w.physical_height()))
        .unwrap_or((0, 0));
    let adapter = adapter.map_or("unknown adapter".to_string(), |a| {
        crate::llm::gpu::adapter_name(&a)
    });
    if let Some((mean, p95)) = summarize(&samples) {
        println!(
            "bench scene={:?} window={w}x{h} frames={} adapter={adapter}\n  frame time: mean {mean:.2} ms, p95 {p95:.2} ms ({:.1} fps mean)",
            options.args.scene,
            samples.len(),
            1000.0 / mean
        );
    }
    exit.write(AppExit::Success);
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    fn p95_of_known_samples() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let (mean, p95) = summarize(&samples).unwrap();
        assert_eq!(mean, 50.5);
        assert_eq!(p95, 95.0);
        assert!(summarize(&[]).is_none());
    }
}
