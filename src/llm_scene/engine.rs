//! Scene 2's side of the engine worker: start it, turn actions into its commands, drain its
//! events into the view every frame (never blocking), `--steps N`, and the frame loop's pacing of
//! the GPU backend.

use crate::worker::{Command, Event, Worker};
use bevy::prelude::*;
use bevy::render::renderer::{RenderAdapterInfo, RenderDevice, RenderQueue};
use llm::gpu::{FramePacer, GpuContext};
use std::sync::{Arc, Mutex};

use super::state::*;

/// The engine handle (the receiver is not `Sync`, hence the mutex; only the main thread locks).
#[derive(Resource)]
pub struct LlmEngine(pub Mutex<Worker>);

impl LlmEngine {
    pub fn send(&self, command: Command) {
        if let Ok(mut w) = self.0.lock() {
            w.send(command);
        }
    }
}

/// The frame loop's side of the GPU backend's pacing (see `llm::gpu::pacer`).
#[derive(Resource, Default, Debug, Clone)]
pub struct LlmPacer(pub Arc<FramePacer>);

/// Tell the pacer a frame went by, and how long it took; the GPU time the model's kernels took
/// in it goes to the shell's per-frame split.
pub(super) fn pace_frames(
    pacer: Res<LlmPacer>,
    time: Res<Time<Real>>,
    mut times: ResMut<crate::shell::gpu_time::GpuFrameTimes>,
) {
    times.push_llm(pacer.0.frame(time.delta()));
}

/// `--prompt`, `--raw` and `--no-lens` set the controls.
pub(super) fn apply_options(start: Res<LlmStart>, mut controls: ResMut<LlmControls>) {
    if let Some(p) = &start.prompt {
        controls.prompt = p.clone();
    }
    if start.raw {
        controls.chat = false;
    }
    if start.no_lens {
        controls.logit_lens = false;
    }
    if let Some(url) = &start.remote_url {
        controls.remote.url = url.clone();
        controls.remote.api = start.remote_api;
    }
}

/// `--steps N`: press Step N times, each once the previous pass has landed.
pub(super) fn auto_steps(
    start: Res<LlmStart>,
    view: Res<LlmView>,
    mut controls: ResMut<LlmControls>,
    mut sent: Local<usize>,
    mut connected: Local<bool>,
    mut gpu_failed: Local<bool>,
    mut actions: MessageWriter<LlmAction>,
) {
    // `--remote URL`: connect once at start; with --steps N, one answer of N tokens.
    if start.remote_url.is_some() {
        if !*connected {
            actions.write(LlmAction::Connect);
            *connected = true;
        } else if let (Some(n), Backend::Remote { .. }) = (start.steps, &view.backend)
            && *sent == 0
            && !view.busy()
        {
            controls.max_tokens = n;
            actions.write(LlmAction::Generate);
            *sent = n;
        }
        return;
    }
    // `--backend gpu`: switch once the model is loaded, and step only once on the GPU.
    if start.compute == Compute::Gpu {
        if !*connected && view.model.is_some() {
            actions.write(LlmAction::UseGpu);
            *connected = true;
        }
        // Wait for it, unless it failed (then the CPU runs all the steps, the error shown).
        if *connected && matches!(view.status, EngineStatus::Error(_)) {
            *gpu_failed = true;
        }
        if !matches!(view.backend, Backend::Gpu { .. }) && !*gpu_failed {
            return;
        }
    }
    let Some(n) = start.steps else {
        return;
    };
    if *sent < n && *sent == view.steps && view.model.is_some() && !view.busy() {
        if view.last_stop.is_some() {
            return;
        }
        actions.write(LlmAction::Step);
        *sent += 1;
    }
}

/// For `--screenshot` with `--steps N`: the N passes have landed (or the engine failed).
pub fn steps_done(start: &LlmStart, view: &LlmView) -> bool {
    match start.steps {
        None => true,
        Some(n) => {
            matches!(view.status, EngineStatus::Error(_))
                || ((view.steps >= n || view.last_stop.is_some())
                    && !view.busy()
                    && (start.remote_url.is_none() || view.last_stop.is_some()))
        }
    }
}

/// Start the engine thread and load the model in the background (fetching it on first use).
pub(super) fn start_engine(mut commands: Commands, start: Res<LlmStart>, pacer: Res<LlmPacer>) {
    let model = start.model.clone();
    let threads = crate::worker::engine_threads();
    let mut worker = Worker::spawn_with_limit(model, threads, MAX_PROMPT_TOKENS);
    // Frames win: on the CPU the model rests between steps while they are slow.
    worker.send(Command::Pace(pacer.0.clone()));
    worker.send(Command::Load);
    commands.insert_resource(LlmEngine(Mutex::new(worker)));
}

/// Turn actions into engine commands. Generate and Step with an empty prompt do nothing (the
/// buttons are disabled); Step while generating pauses and steps once. The prompt box is never
/// cut: a prompt longer than the model's context comes back as the engine's error.
pub fn run_actions(
    mut actions: MessageReader<LlmAction>,
    controls: Res<LlmControls>,
    mut view: ResMut<LlmView>,
    mut selection: ResMut<LlmSelection>,
    engine: Option<Res<LlmEngine>>,
    gpu: Option<RendererGpu>,
    pacer: Res<LlmPacer>,
) {
    for action in actions.read() {
        let Some(engine) = engine.as_ref() else {
            continue;
        };
        match action {
            LlmAction::Generate if controls.can_run() => {
                engine.send(Command::Generate(controls.request()));
                view.status = EngineStatus::Generating;
            }
            LlmAction::Step if controls.can_run() => {
                engine.send(Command::Step(controls.request()));
                view.status = EngineStatus::Generating;
            }
            LlmAction::Stop => engine.send(Command::Stop),
            LlmAction::Reset => {
                engine.send(Command::Reset);
                view.reset();
                view.resets_pending += 1;
                *selection = LlmSelection::default();
            }
            LlmAction::Connect => {
                engine.send(Command::Connect(controls.remote_config()));
                view.connecting = true;
                view.status = EngineStatus::Loading("connecting".into());
            }
            LlmAction::UseLocal => engine.send(Command::UseLocal),
            LlmAction::UseGpu => match &gpu {
                Some(gpu) => {
                    let (device, queue, info) = gpu;
                    let ctx =
                        GpuContext::shared(device.wgpu_device().clone(), (**queue.0).clone(), info);
                    // In the browser a step is one submit between frames, read back on a
                    // later one: nothing to pace (pacing waits on the GPU).
                    #[cfg(not(target_arch = "wasm32"))]
                    let ctx = ctx.with_pacer(pacer.0.clone());
                    #[cfg(target_arch = "wasm32")]
                    let _ = &pacer;
                    engine.send(Command::UseGpu(ctx));
                    view.status = EngineStatus::Loading("starting the GPU backend".into());
                }
                None => {
                    let why = "no GPU renderer in this app to share".to_string();
                    view.gpu_unavailable = Some(why.clone());
                    view.status = EngineStatus::Error(why);
                }
            },
            _ => {}
        }
    }
}

/// The renderer's wgpu device, queue and adapter (absent in headless apps).
pub type RendererGpu<'w> = (
    Res<'w, RenderDevice>,
    Res<'w, RenderQueue>,
    Res<'w, RenderAdapterInfo>,
);

/// Drain the engine's events into the view (never blocks). A GPU backend's device is checked
/// against the renderer's as it reports in.
pub fn poll_engine(
    engine: Option<Res<LlmEngine>>,
    mut view: ResMut<LlmView>,
    renderer: Option<Res<RenderDevice>>,
) {
    let Some(engine) = engine else {
        return;
    };
    let events = match engine.0.lock() {
        Ok(mut w) => w.poll(),
        Err(_) => return,
    };
    for e in events {
        let (same, buffer) = match (&e, &renderer) {
            (Event::GpuReady(info), Some(r)) => (
                Some(info.device == *r.wgpu_device()),
                Some(info.activations.clone()),
            ),
            _ => (None, None),
        };
        view.apply(e);
        if let Backend::Gpu {
            same_device,
            activations,
            ..
        } = &mut view.backend
            && same.is_some()
        {
            *same_device = same;
            // Only a buffer of the renderer's own device can be bound to its draws.
            *activations = buffer.filter(|_| same == Some(true));
        }
    }
}
