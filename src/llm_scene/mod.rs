//! Scene 2: what the LLM computes, drawn live. The engine (`llm::worker`) runs off the main
//! thread; this room keeps what it reported (`LlmView`), what the user set (`LlmControls`) and
//! what is selected (`LlmSelection`), and draws the views: token strip, embeddings and their PCA,
//! the 30 x 1536 activation grid (a GPU texture), attention per head, next-token bars and the
//! logit lens.
//!
//! `logic_plugin` needs no window (headless tests feed it events); `plugin` adds the panels.

pub mod activations;
pub mod bridge;
pub mod demo;
pub mod panels;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bevy::prelude::*;
use bevy::render::renderer::{RenderAdapterInfo, RenderDevice, RenderQueue};

use crate::app::shell::keyboard_free;
use crate::app::{AppOptions, Scene};
use crate::llm::gpu::{FramePacer, GpuContext};
use crate::llm::worker::{Command, Event, Worker};
use crate::llm::{
    GenerationRequest, LlmTokenizer, Model, RecordOptions, SamplingParams, StopReason, TokenInfo,
    Trace,
};
use crate::math::pca::Pca;

/// Longest prompt the live scene reads, in tokens: every token is computed on the CPU and
/// drawn, and attention grows with the square of the length (a 1,000-token prompt takes about
/// 10 s on one core). Longer prompts get a clear error and stay in the box.
pub const MAX_PROMPT_TOKENS: usize = 512;

/// The token strip draws at most this many chips (the newest); the rest are counted.
pub const MAX_CHIPS: usize = 400;

/// Where the answer is computed.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Backend {
    /// The local engine on the CPU: every internal.
    #[default]
    Local,
    /// The local model's forward pass as WGSL kernels on a GPU: every internal.
    Gpu {
        adapter: String,
        /// The kernels run on the device and queue that render the scenes.
        shared_with_renderer: bool,
        /// Checked against the renderer's device when the backend reported in (`None`: no
        /// renderer in this app, e.g. a headless test).
        same_device: Option<bool>,
    },
    /// A remote server: what it gives (traces only from `samemath serve`).
    Remote {
        url: String,
        info: crate::remote::ServerInfo,
        model: Option<String>,
    },
}

impl Backend {
    /// Full traces (activations, attention, embeddings, lens) are available.
    pub fn has_traces(&self) -> bool {
        match self {
            Backend::Local | Backend::Gpu { .. } => true,
            Backend::Remote { info, .. } => info.capabilities.traces,
        }
    }

    /// The local model computes (on the CPU or the GPU): its weights made the trace.
    pub fn is_local(&self) -> bool {
        matches!(self, Backend::Local | Backend::Gpu { .. })
    }

    pub fn name(&self) -> String {
        match self {
            Backend::Local => "the local engine (CPU)".into(),
            Backend::Gpu { adapter, .. } => format!("the local engine on the GPU ({adapter})"),
            Backend::Remote { info, url, .. } => format!("{:?} at {url}", info.api),
        }
    }
}

/// The remote server the user typed in (kept when switching back to local).
#[derive(Debug, Clone, Default)]
pub struct RemoteForm {
    pub url: String,
    /// `None`: detect.
    pub api: Option<crate::remote::ApiKind>,
    pub model: String,
    /// Never logged or shown.
    pub token: String,
    pub first_byte_timeout_secs: u64,
}

/// What the user set: the prompt and how to generate.
#[derive(Resource, Debug, Clone)]
pub struct LlmControls {
    pub remote: RemoteForm,
    pub prompt: String,
    /// Wrap the prompt in the model's chat template (else feed it raw).
    pub chat: bool,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Record the logit lens: each layer's guess through the final norm and the head, 30
    /// products with the 49,152-row head a token (several times the forward pass's own work).
    pub logit_lens: bool,
}

impl Default for LlmControls {
    fn default() -> Self {
        Self {
            prompt: "Why is the sky blue?".into(),
            chat: true,
            max_tokens: 128,
            sampling: SamplingParams::default(),
            logit_lens: true,
            remote: RemoteForm {
                url: "http://127.0.0.1:8080".into(),
                first_byte_timeout_secs: 120,
                ..RemoteForm::default()
            },
        }
    }
}

impl LlmControls {
    pub fn request(&self) -> GenerationRequest {
        GenerationRequest {
            prompt: self.prompt.clone(),
            chat: self.chat,
            max_tokens: self.max_tokens.max(1),
            sampling: self.sampling,
            record: RecordOptions {
                logit_lens: self.logit_lens,
                ..RecordOptions::FULL
            },
        }
    }

    pub fn can_run(&self) -> bool {
        !self.prompt.trim().is_empty()
    }

    pub fn remote_config(&self) -> crate::remote::RemoteConfig {
        let f = &self.remote;
        crate::remote::RemoteConfig {
            api: f.api,
            model: Some(f.model.trim().to_string()).filter(|m| !m.is_empty()),
            token: Some(f.token.trim().to_string()).filter(|t| !t.is_empty()),
            first_byte_timeout: std::time::Duration::from_secs(f.first_byte_timeout_secs.max(1)),
            ..crate::remote::RemoteConfig::new(f.url.trim())
        }
    }
}

/// Where the engine stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum EngineStatus {
    #[default]
    NotStarted,
    Loading(String),
    Ready,
    Generating,
    Error(String),
}

/// Everything the engine reported, as the views read it.
#[derive(Resource, Debug, Default)]
pub struct LlmView {
    pub status: EngineStatus,
    pub backend: Backend,
    /// Text-only steps from a remote server (no ids, no traces): text and log-probabilities.
    pub remote_steps: Vec<crate::remote::RemoteStep>,
    /// When the first token of this answer arrived (remote speed).
    pub first_token_at: Option<web_time::Instant>,
    pub model: Option<Arc<Model>>,
    pub tokenizer: Option<Arc<LlmTokenizer>>,
    pub model_path: Option<PathBuf>,
    /// The prompt as the model saw it (after the template), and each token's embedding row.
    pub prompt_tokens: Vec<TokenInfo>,
    pub prompt_embeddings: Vec<Vec<f32>>,
    pub pca: Option<Pca>,
    pub generated: Vec<TokenInfo>,
    pub reply: String,
    /// The latest step's trace and the full logits it sampled from.
    pub trace: Option<Trace>,
    pub logits: Vec<f32>,
    /// The token sampled from `logits`.
    pub sampled: Option<TokenInfo>,
    /// Forward passes since the session started.
    pub steps: usize,
    /// Smoothed speed of the engine (forward passes per second).
    pub tokens_per_sec: f32,
    pub last_stop: Option<StopReason>,
    /// The engine waits for Step or Generate with the session open.
    pub paused: bool,
    /// Bumped whenever `trace` changes (the activation texture follows it).
    pub revision: u64,
}

impl LlmView {
    /// Fold one engine event into the view.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Status(s) => self.status = EngineStatus::Loading(s),
            Event::Loaded {
                model,
                tokenizer,
                path,
            } => {
                self.model = Some(model);
                self.tokenizer = Some(tokenizer);
                self.model_path = Some(path);
                self.status = EngineStatus::Ready;
            }
            Event::Prompt { tokens, embeddings } => {
                self.clear_session();
                self.pca = Pca::fit(&embeddings);
                self.prompt_tokens = tokens;
                self.prompt_embeddings = embeddings;
                self.status = EngineStatus::Generating;
            }
            Event::Token {
                step,
                logits,
                seconds,
            } => {
                let step = *step;
                self.steps += 1;
                if seconds > 0.0 {
                    let tps = 1.0 / seconds;
                    self.tokens_per_sec = if self.tokens_per_sec == 0.0 {
                        tps
                    } else {
                        0.8 * self.tokens_per_sec + 0.2 * tps
                    };
                }
                self.reply.push_str(&step.text);
                self.sampled = Some(step.token.clone());
                self.generated.push(step.token);
                if let Some(trace) = step.trace {
                    self.trace = Some(trace);
                    self.revision += 1;
                }
                self.logits = logits;
                self.paused = false;
                if matches!(self.status, EngineStatus::Loading(_)) {
                    self.status = EngineStatus::Generating;
                }
            }
            Event::Finished(reason) => {
                self.last_stop = Some(reason);
                self.status = EngineStatus::Ready;
            }
            Event::Paused => {
                self.paused = true;
                self.status = EngineStatus::Ready;
            }
            Event::Error(e) => self.status = EngineStatus::Error(e),
            Event::Connected { url, info, model } => {
                self.clear_session();
                self.backend = Backend::Remote { url, info, model };
                self.status = EngineStatus::Ready;
            }
            Event::GpuReady(info) => {
                self.clear_session();
                self.backend = Backend::Gpu {
                    adapter: info.adapter,
                    shared_with_renderer: info.shared_with_renderer,
                    same_device: None,
                };
                self.status = EngineStatus::Ready;
            }
            Event::Disconnected => {
                self.clear_session();
                self.backend = Backend::Local;
                self.status = if self.model.is_some() {
                    EngineStatus::Ready
                } else {
                    EngineStatus::NotStarted
                };
            }
            Event::RemoteStep(step) => {
                let step = *step;
                let now = web_time::Instant::now();
                let first = *self.first_token_at.get_or_insert(now);
                self.steps += 1;
                let secs = (now - first).as_secs_f32();
                if self.steps > 1 && secs > 0.0 {
                    self.tokens_per_sec = (self.steps - 1) as f32 / secs;
                }
                self.reply.push_str(&step.text);
                self.status = EngineStatus::Generating;
                match (step.token.clone(), step.trace.clone()) {
                    // samemath serve: a full step, drawn like a local one.
                    (Some(token), trace) => {
                        self.sampled = Some(token.clone());
                        self.generated.push(token);
                        if let Some(t) = trace {
                            self.trace = Some(t);
                            self.revision += 1;
                        }
                        self.remote_steps.push(step);
                    }
                    (None, _) => self.remote_steps.push(step),
                }
            }
        }
    }

    fn clear_session(&mut self) {
        self.prompt_tokens.clear();
        self.prompt_embeddings.clear();
        self.pca = None;
        self.generated.clear();
        self.reply.clear();
        self.trace = None;
        self.logits.clear();
        self.sampled = None;
        self.steps = 0;
        self.tokens_per_sec = 0.0;
        self.last_stop = None;
        self.paused = false;
        self.remote_steps.clear();
        self.first_token_at = None;
        self.revision += 1;
    }

    /// Forget the session (Reset), keeping the loaded model.
    pub fn reset(&mut self) {
        self.clear_session();
        if self.model.is_some() {
            self.status = EngineStatus::Ready;
        }
    }

    pub fn busy(&self) -> bool {
        matches!(
            self.status,
            EngineStatus::Generating | EngineStatus::Loading(_)
        )
    }
}

/// What the user pointed at.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct LlmSelection {
    /// Layer whose attention is drawn.
    pub attention_layer: usize,
    /// (layer, neuron) clicked in the activation grid.
    pub neuron: Option<(usize, usize)>,
}

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

/// Asked of the scene by keys, buttons and the demo loop.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmAction {
    Generate,
    Step,
    Stop,
    Reset,
    /// Switch generation to the remote server in the controls.
    Connect,
    /// Back to the local engine (CPU).
    UseLocal,
    /// Run the local model on the renderer's GPU device.
    UseGpu,
}

/// The frame loop's side of the GPU backend's pacing (see `llm::gpu::pacer`).
#[derive(Resource, Default, Debug, Clone)]
pub struct LlmPacer(pub Arc<FramePacer>);

/// Tell the pacer a frame went by, and how long it took.
fn pace_frames(pacer: Res<LlmPacer>, time: Res<Time<Real>>) {
    pacer.0.frame(time.delta());
}

pub fn logic_plugin(app: &mut App) {
    app.init_resource::<LlmPacer>()
        .add_systems(First, pace_frames)
        .init_resource::<LlmControls>()
        .init_resource::<LlmView>()
        .init_resource::<LlmSelection>()
        .add_message::<LlmAction>()
        .add_plugins(demo::plugin)
        .add_systems(Startup, apply_options)
        .add_systems(
            Update,
            (
                llm_keys.run_if(in_state(Scene::Llm)),
                run_actions,
                poll_engine,
            )
                .chain(),
        );
}

pub fn plugin(app: &mut App) {
    app.add_plugins((activations::plugin, panels::plugin, bridge::plugin))
        .add_systems(Startup, start_engine)
        .add_systems(Update, auto_steps.before(run_actions));
}

/// `--prompt`, `--raw` and `--no-lens` set the controls.
fn apply_options(options: Option<Res<AppOptions>>, mut controls: ResMut<LlmControls>) {
    let Some(options) = options else {
        return;
    };
    if let Some(p) = &options.args.prompt {
        controls.prompt = p.clone();
    }
    if options.args.raw {
        controls.chat = false;
    }
    if options.args.no_lens {
        controls.logit_lens = false;
    }
    if let Some(url) = &options.args.remote_url {
        controls.remote.url = url.clone();
        controls.remote.api = options.args.remote_api;
    }
}

/// `--steps N`: press Step N times, each once the previous pass has landed.
fn auto_steps(
    options: Option<Res<AppOptions>>,
    view: Res<LlmView>,
    mut controls: ResMut<LlmControls>,
    mut sent: Local<usize>,
    mut connected: Local<bool>,
    mut gpu_failed: Local<bool>,
    mut actions: MessageWriter<LlmAction>,
) {
    let Some(options) = options else {
        return;
    };
    // `--remote URL`: connect once at start; with --steps N, one answer of N tokens.
    if options.args.remote_url.is_some() {
        if !*connected {
            actions.write(LlmAction::Connect);
            *connected = true;
        } else if let (Some(n), Backend::Remote { .. }) = (options.args.steps, &view.backend)
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
    if options.args.llm_backend == crate::tools::BackendArg::Gpu {
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
    let Some(n) = options.args.steps else {
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
pub fn steps_done(options: &AppOptions, view: &LlmView) -> bool {
    match options.args.steps {
        None => true,
        Some(n) => {
            matches!(view.status, EngineStatus::Error(_))
                || ((view.steps >= n || view.last_stop.is_some())
                    && !view.busy()
                    && (options.args.remote_url.is_none() || view.last_stop.is_some()))
        }
    }
}

/// Start the engine thread and load the model in the background (fetching it on first use).
fn start_engine(mut commands: Commands, options: Option<Res<AppOptions>>) {
    let model = options.as_ref().and_then(|o| o.args.model.clone());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Leave a core to Bevy's renderer when there are few.
    let threads = if cores <= 2 { 1 } else { cores - 1 };
    let mut worker = Worker::spawn_with_limit(model, threads, MAX_PROMPT_TOKENS);
    worker.send(Command::Load);
    commands.insert_resource(LlmEngine(Mutex::new(worker)));
}

/// Space: one step; Enter: generate; Escape: stop; Backspace: reset; arrows move the selected
/// neuron (left/right: neuron, up/down: layer); `[` `]` the attention layer (when no field has
/// focus).
fn llm_keys(
    keys: Res<ButtonInput<KeyCode>>,
    wants: Option<Res<bevy_egui::input::EguiWantsInput>>,
    view: Res<LlmView>,
    mut selection: ResMut<LlmSelection>,
    mut actions: MessageWriter<LlmAction>,
) {
    if !keyboard_free(wants) {
        return;
    }
    let (layers, neurons) = view
        .model
        .as_ref()
        .map_or((30, 1536), |m| (m.config.n_layer, m.config.n_ff));
    let step = |key: KeyCode, d: i64, v: usize, n: usize| -> usize {
        if keys.just_pressed(key) {
            (v as i64 + d).rem_euclid(n.max(1) as i64) as usize
        } else {
            v
        }
    };
    let (mut layer, mut neuron) = selection.neuron.unwrap_or((0, 0));
    let arrows = [
        KeyCode::ArrowLeft,
        KeyCode::ArrowRight,
        KeyCode::ArrowUp,
        KeyCode::ArrowDown,
    ];
    if keys.any_just_pressed(arrows) {
        neuron = step(KeyCode::ArrowLeft, -1, neuron, neurons);
        neuron = step(KeyCode::ArrowRight, 1, neuron, neurons);
        layer = step(KeyCode::ArrowUp, -1, layer, layers);
        layer = step(KeyCode::ArrowDown, 1, layer, layers);
        selection.neuron = Some((layer, neuron));
    }
    let a = selection.attention_layer;
    let a = step(KeyCode::BracketLeft, -1, a, layers);
    selection.attention_layer = step(KeyCode::BracketRight, 1, a, layers);
    for (key, action) in [
        (KeyCode::Space, LlmAction::Step),
        (KeyCode::Enter, LlmAction::Generate),
        (KeyCode::Escape, LlmAction::Stop),
        (KeyCode::Backspace, LlmAction::Reset),
    ] {
        if keys.just_pressed(key) {
            actions.write(action);
        }
    }
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
                *selection = LlmSelection::default();
            }
            LlmAction::Connect => {
                engine.send(Command::Connect(controls.remote_config()));
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
                    view.status = EngineStatus::Error("no GPU renderer in this app to share".into())
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
        let same = match (&e, &renderer) {
            (Event::GpuReady(info), Some(r)) => Some(info.device == *r.wgpu_device()),
            _ => None,
        };
        view.apply(e);
        if let Backend::Gpu { same_device, .. } = &mut view.backend
            && same.is_some()
        {
            *same_device = same;
        }
    }
}
