//! `samemath bench --scene llm`: N frames idle (model loaded), then N frames while the model
//! generates, and the ratio of the two p95s (frames must not wait for the model).

use bevy::prelude::*;
use bevy::render::renderer::RenderAdapterInfo;

use super::engine::LlmPacer;
use super::state::{Backend, Compute, EngineStatus, LlmAction, LlmControls, LlmStart, LlmView};
use crate::shell::bench::{WARMUP_FRAMES, adapter_label, summarize};
use crate::shell::{Scene, ShellOptions};

/// Where the scene-2 bench is.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LlmPhase {
    #[default]
    WaitModel,
    Idle,
    Generating,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn measure_llm(
    shell: Res<ShellOptions>,
    start: Res<LlmStart>,
    time: Res<Time<Real>>,
    adapter: Option<Res<RenderAdapterInfo>>,
    view: Res<LlmView>,
    mut controls: ResMut<LlmControls>,
    mut actions: MessageWriter<LlmAction>,
    mut phase: Local<LlmPhase>,
    mut frames: Local<u32>,
    mut idle: Local<Vec<f64>>,
    mut busy: Local<Vec<f64>>,
    mut exit: MessageWriter<AppExit>,
    pacer: Res<LlmPacer>,
) {
    let Some(bench_frames) = shell.bench_frames.filter(|_| shell.scene == Scene::Llm) else {
        return;
    };
    let n = bench_frames.max(1) as usize;
    let ms = time.delta_secs_f64() * 1000.0;
    *frames += 1;
    match *phase {
        LlmPhase::WaitModel => {
            if let EngineStatus::Error(e) = &view.status {
                eprintln!("samemath: bench: {e}");
                exit.write(AppExit::error());
            } else if view.model.is_some()
                && *frames > WARMUP_FRAMES
                && (start.compute != Compute::Gpu || matches!(view.backend, Backend::Gpu { .. }))
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
                let adapter = adapter_label(adapter.as_deref());
                if let (Some((im, ip)), Some((gm, gp))) = (summarize(&idle), summarize(&busy)) {
                    println!(
                        "bench scene=Llm frames={n} adapter={adapter} model on {}\n  idle:       mean {im:.2} ms, p95 {ip:.2} ms\n  generating: mean {gm:.2} ms, p95 {gp:.2} ms ({:.1} tokens/s)\n  p95 generating / idle: {:.2}x",
                        view.backend.name(),
                        view.tokens_per_sec,
                        gp / ip
                    );
                    if let Backend::Gpu { .. } = &view.backend {
                        println!(
                            "  GPU time lent to the model per frame at the end: {:.2} ms",
                            pacer.0.budget().as_secs_f64() * 1e3
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
