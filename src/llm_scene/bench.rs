//! `samemath bench --scene llm`: one step (so there is a trace to draw), N frames idle with the
//! panel views in the middle, N idle with the 3D world (the difference is what the world's
//! columns cost a frame), then N while the model generates with the world shown, and the ratio
//! of the generating and idle p95s (frames must not wait for the model); and each phase's GPU
//! time per frame, rendering and the LLM's kernels apart (`shell::gpu_time`).

use bevy::prelude::*;
use bevy::render::renderer::RenderAdapterInfo;

use super::engine::LlmPacer;
use super::state::{Backend, Compute, EngineStatus, LlmAction, LlmControls, LlmStart, LlmView};
use super::world::{ColumnValues, WorldMode, WorldState};
use crate::shell::bench::{WARMUP_FRAMES, adapter_label, summarize};
use crate::shell::gpu_time::GpuFrameTimes;
use crate::shell::{Scene, ShellOptions};

/// Where the scene-2 bench is.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LlmPhase {
    #[default]
    WaitModel,
    /// One step asked for: the world needs a trace to draw.
    Prime,
    IdlePanels,
    Idle,
    Generating,
}

/// GPU milliseconds per frame by timestamps, gathered per phase.
#[derive(Default)]
pub(super) struct GpuPhases {
    idle_render: Vec<f64>,
    busy_render: Vec<f64>,
    busy_llm: Vec<f64>,
}

/// Frames left out after the middle switches (pipelines and buffers are made then).
const SWITCH_FRAMES: usize = 10;

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
    mut idle_panels: Local<Vec<f64>>,
    // The frames while generating, and the tokens made meanwhile: (steps seen last frame,
    // tokens counted).
    (mut busy, mut counted): (Local<Vec<f64>>, Local<(usize, usize)>),
    mut mode: ResMut<WorldMode>,
    (world, values): (Res<WorldState>, Res<ColumnValues>),
    mut exit: MessageWriter<AppExit>,
    (pacer, gpu_times, mut gpu): (Res<LlmPacer>, Res<GpuFrameTimes>, Local<GpuPhases>),
) {
    let Some(bench_frames) = shell.bench_frames.filter(|_| shell.scene == Scene::Llm) else {
        return;
    };
    let n = bench_frames.max(1) as usize;
    let ms = time.delta_secs_f64() * 1000.0;
    *frames += 1;
    // An error in any phase ends the bench (a lost GPU device mid-answer would otherwise leave
    // it waiting for a step that never comes).
    if let EngineStatus::Error(e) = &view.status {
        eprintln!("samemath: bench: {e}");
        exit.write(AppExit::error());
        return;
    }
    match *phase {
        LlmPhase::WaitModel => {
            if view.model.is_some()
                && *frames > WARMUP_FRAMES
                && (start.compute != Compute::Gpu || matches!(view.backend, Backend::Gpu { .. }))
            {
                actions.write(LlmAction::Step);
                *phase = LlmPhase::Prime;
            }
        }
        LlmPhase::Prime => {
            if view.trace.is_some() && view.status == EngineStatus::Ready {
                mode.world = false;
                *phase = LlmPhase::IdlePanels;
            }
        }
        LlmPhase::IdlePanels => {
            idle_panels.push(ms);
            if idle_panels.len() >= n + SWITCH_FRAMES {
                mode.world = true;
                *phase = LlmPhase::Idle;
            }
        }
        LlmPhase::Idle => {
            idle.push(ms);
            if idle.len() > SWITCH_FRAMES {
                gpu.idle_render.extend(&gpu_times.fresh_render);
            }
            if idle.len() >= n + SWITCH_FRAMES {
                controls.prompt = BENCH_PROMPT.into();
                controls.max_tokens = 1024;
                actions.write(LlmAction::Generate);
                *phase = LlmPhase::Generating;
            }
        }
        LlmPhase::Generating => {
            if view.steps > 0 && view.status == EngineStatus::Generating {
                let (last, total) = *counted;
                // A new answer starts its count at 0.
                let new = if busy.is_empty() {
                    0
                } else if view.steps >= last {
                    view.steps - last
                } else {
                    view.steps
                };
                *counted = (view.steps, total + new);
                busy.push(ms);
                gpu.busy_render.extend(&gpu_times.fresh_render);
                gpu.busy_llm.extend(gpu_times.fresh_llm);
            } else if view.status == EngineStatus::Ready && view.last_stop.is_some() {
                // The answer ended early: ask again, keep measuring.
                actions.write(LlmAction::Generate);
            }
            if busy.len() >= n {
                let adapter = adapter_label(adapter.as_deref());
                let columns = world.layout.map_or(0, |l| l.layers * l.neurons);
                let path = values.path.map_or("none", |p| p.name());
                if let (Some((pm, pp)), Some((im, ip)), Some((gm, gp))) = (
                    summarize(&idle_panels[SWITCH_FRAMES..]),
                    summarize(&idle[SWITCH_FRAMES..]),
                    summarize(&busy),
                ) {
                    println!(
                        "bench scene=Llm frames={n} adapter={adapter} model on {}\n  idle, panel views: mean {pm:.2} ms, p95 {pp:.2} ms\n  idle, 3D world:    mean {im:.2} ms, p95 {ip:.2} ms ({columns} neuron columns, values {path}: {:+.2} ms a frame at the mean, {:.2}x)\n  generating, world: mean {gm:.2} ms, p95 {gp:.2} ms ({:.1} tokens/s)\n  p95 generating / idle (world): {:.2}x",
                        view.backend.name(),
                        im - pm,
                        im / pm,
                        view.tokens_per_sec,
                        gp / ip
                    );
                    if let Backend::Gpu { .. } = &view.backend {
                        println!(
                            "  GPU time lent to the model per frame at the end: {:.2} ms",
                            pacer.0.budget().as_secs_f64() * 1e3
                        );
                    } else {
                        let secs: f64 = busy.iter().sum::<f64>() / 1e3;
                        let tokens = counted.1;
                        println!(
                            "  the CPU backend computes {:.0}% of the time at the end (it rests \
                             while frames are slow); {tokens} tokens in the {secs:.1} s measured: \
                             {:.1} tokens/s overall",
                            pacer.0.cpu_duty() * 100.0,
                            tokens as f64 / secs.max(1e-9)
                        );
                    }
                }
                println!("{}", gpu_lines(&gpu, gpu_times.available, &view.backend));
                actions.write(LlmAction::Stop);
                exit.write(AppExit::Success);
            }
        }
    }
}

/// What scene 2's bench asks the model.
const BENCH_PROMPT: &str = "Write a long story about a lighthouse keeper and a storm.";

/// The bench's GPU-time lines: rendering idle and generating, and the LLM's kernels per frame.
fn gpu_lines(gpu: &GpuPhases, available: Option<bool>, backend: &Backend) -> String {
    match available {
        None => return "  GPU time per frame: not known (no renderer reported)".into(),
        Some(false) => {
            return "  GPU time per frame: not measurable on this adapter (no timestamp queries)"
                .into();
        }
        Some(true) => {}
    }
    let render = |v: &[f64]| {
        summarize(v).map_or("no frame measured".into(), |(m, p)| {
            format!("mean {m:.3} ms, p95 {p:.3} ms ({} frames)", v.len())
        })
    };
    // A chunk counts in the frame its read-back finished in.
    let llm = match backend {
        b if b.on_renderer() => match summarize(&gpu.busy_llm) {
            Some((m, p)) => format!(
                "mean {m:.3} ms a frame, p95 {p:.3} ms ({} frames, each chunk in the frame it \
                 finished in)",
                gpu.busy_llm.len()
            ),
            None => "none timed".into(),
        },
        Backend::Gpu { .. } => "on a device of their own, not in the frame's split".into(),
        _ => "none (the model does not run on this GPU)".into(),
    };
    format!(
        "  GPU time per frame (timestamps):\n    rendering, idle (world):  {}\n    rendering, generating:    {}\n    LLM kernels, generating:  {llm}",
        render(&gpu.idle_render),
        render(&gpu.busy_render),
    )
}
