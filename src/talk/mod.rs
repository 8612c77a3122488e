//! Talk mode: the talk "Make your LLM Serverless" told by the live app, one click at a time.
//! Each step of a step file (`file`) is a caption and a state of the app (scene, camera,
//! selection, settings, an animation); the app stays interactive at every step. Presenter
//! clickers send PageDown / PageUp (some B, period, F5, Esc): those, Right / Left and Space move,
//! Home / End jump, B or period blanks the screen, C hides the speaker's counter and clock, T
//! (or `--talk`) opens and closes it, F5 opens it and Esc closes it. With `--demo --talk` the
//! booth plays the talk unattended, and closing it hands the screen back to the booth's own loop
//! (T opens it again); with `--demo` alone the booth's loop has the screen and the talk's keys do
//! nothing, so a visitor's key never stops the booth.
//!
//! Nothing the speaker typed is lost: a step puts its prompt in scene 2's box only while the box
//! holds none of the speaker's own (it is empty, or holds a prompt of the app's: scene 2's
//! default, the booth's, one a step of this talk names); a question typed there stays through
//! every step, the race's included, which races it. Emptying the box gives the steps theirs back.

pub mod file;
mod locate;
pub mod overlay;
pub mod race;

pub use file::{Animation, BackendName, SceneName, TalkFile, TalkStep};
pub use race::{Race, Side, TalkRace};

use bevy::prelude::*;

use crate::demo::{DEMO_PROMPTS, DemoLoop};
use crate::graphics::{GraphicsSettings, Highlight};
use crate::llm_scene::world::{Preset, StartView, WorldCamera, WorldMode, WorldState, parse_view};
use crate::llm_scene::{
    Backend, EngineStatus, LlmAction, LlmControls, LlmSelection, LlmView, run_actions,
};
use crate::shell::probe::ProbeAppExt;
use crate::shell::{KeyboardFocus, Scene};

/// Where the overlay drew its plates last frame (the caption, the counter and clock, a note), in
/// the window's physical pixels `[x, y, width, height]`: the screenshot's sidecar names them, so
/// a test can tell the step's picture from its words.
#[derive(Resource, Debug, Default, Clone)]
pub struct TalkPlates(pub Vec<[f32; 4]>);

/// What was asked at start: `--talk` (the shipped file, or the one named).
#[derive(Resource, Debug, Clone, Default)]
pub struct TalkStart {
    pub open: bool,
    pub file: Option<std::path::PathBuf>,
    /// Begin at this step (0-based; `--talk-step`, for screenshots of one step).
    pub step: usize,
    /// `--remote URL` (and `--api`): the endpoint the serverless step races; scene 2 itself
    /// stays on the local model during a talk.
    pub remote_url: Option<String>,
    pub remote_api: Option<remote::ApiKind>,
}

/// The talk as the app runs it.
#[derive(Resource, Debug, Clone, Default)]
pub struct Talk {
    pub file: Option<TalkFile>,
    /// Why the file could not be read (shown on screen; the app runs on without it).
    pub error: Option<String>,
    pub active: bool,
    pub step: usize,
    /// The step applied last (a step is applied once, when it is reached).
    pub applied: Option<usize>,
    pub blank: bool,
    /// The speaker's counter and clock.
    pub show_clock: bool,
    /// When the talk was opened (seconds of app time), for the clock.
    pub started: Option<f64>,
    /// Seconds the current step has been shown, for its animation.
    pub step_secs: f32,
    /// `--demo --talk`: the booth plays the talk unattended, this many seconds a step (closed,
    /// the booth's own loop plays until the talk is opened again).
    pub auto_secs: Option<f32>,
    /// `--demo` without `--talk`: the booth's own loop has the screen, and the talk's keys do
    /// nothing (a visitor's T or F5 does not open the talk over it).
    pub locked: bool,
    /// A view preset the world could not take yet (no model shape known): applied later.
    pending_view: Option<StartView>,
    /// The neuron the step selects, applied after the step's Reset (and once the model's
    /// shape is known, to check it).
    pending_neuron: Option<(usize, usize)>,
    /// The backend the step asks for and whether it plays one Step, sent to the engine once
    /// the model is loaded (the switch first, so the Step runs where the step says).
    pending_backend: Option<BackendName>,
    pending_play: bool,
    /// The backend the talk asked for last (forgotten when the talk opens, so it asks again).
    asked_backend: Option<BackendName>,
    /// What the current step could not show (e.g. a neuron this model does not have).
    pub note: Option<String>,
    /// The speaker moved the value the step's animation drives: it stops for this step.
    pub animation_held: bool,
    /// Counts the times a step was entered (an animation knows a fresh start by it).
    entered: u64,
    /// `--demo --talk`: the times the booth played the talk through (its last step's time ran
    /// out); the booth's rounds, as `--demo-cycles` counts them.
    pub rounds: usize,
}

impl Talk {
    pub fn steps(&self) -> usize {
        self.file.as_ref().map_or(0, |f| f.steps.len())
    }

    pub fn current(&self) -> Option<&TalkStep> {
        self.file.as_ref()?.steps.get(self.step)
    }

    /// The app's state at step `k`: the steps up to it applied in order, over scene 1's
    /// default model matrix and light (so a factor a later step animated or named goes back
    /// when the talk does), so stepping back, jumping home or to the end, or `--talk-step`
    /// show a step the way walking to it does.
    pub fn state_at(&self, k: usize) -> Option<TalkStep> {
        let steps = &self.file.as_ref()?.steps;
        steps.get(k)?;
        let model = math::transform::ModelParams::default();
        let light = math::lighting::LightingParams::default();
        let baseline = TalkStep {
            translation: Some(model.translation),
            scale: Some(model.scale),
            rotation_deg: Some(model.rotation_deg),
            light: Some([light.azimuth_deg, light.elevation_deg]),
            ..TalkStep::default()
        };
        Some(
            steps
                .iter()
                .take(k + 1)
                .fold(baseline, |state, step| state.then(step)),
        )
    }

    /// Whether scene 2's prompt box holds what the speaker typed, which no step replaces: any
    /// text but a prompt of the app's own (scene 2's default, one of the booth's, one a step of
    /// this talk names). An empty box holds nothing of the speaker's. `--prompt` counts as typed.
    pub fn typed(&self, prompt: &str) -> bool {
        !prompt.trim().is_empty()
            && prompt != LlmControls::default().prompt
            && !DEMO_PROMPTS.contains(&prompt)
            && !self
                .file
                .iter()
                .flat_map(|f| &f.steps)
                .any(|s| s.prompt.as_deref() == Some(prompt))
    }

    /// Go to step `to`, within the file.
    pub fn go(&mut self, to: usize) {
        let last = self.steps().saturating_sub(1);
        self.step = to.min(last);
    }
}

pub fn plugin(app: &mut App) {
    app.init_resource::<TalkStart>()
        .init_resource::<DemoLoop>()
        .init_resource::<Talk>()
        .init_resource::<TalkRace>()
        .add_probe(race::TalkProbe)
        .add_systems(Startup, load_talk)
        .add_systems(Update, hold_the_demo.before(crate::demo::run_demo))
        .add_systems(PreUpdate, talk_keys.after(bevy::input::InputSystems))
        .add_systems(
            Update,
            (apply_step, drive_engine, animate, race::race_tick)
                .chain()
                // After the booth's loop, whose Stop (the talk took over mid-answer) must not
                // land after the step's own Step.
                .after(crate::demo::run_demo)
                .before(run_actions),
        )
        .add_systems(Update, select_neuron.after(run_actions));
}

/// The window's part: the caption, the counter and clock, the blank screen.
pub fn window_plugin(app: &mut App) {
    overlay::plugin(app);
}

/// `--talk-step` (0-based `step`) past a talk of `steps` steps: what to warn, as the talk opens
/// at its last step instead.
pub fn step_past_end(step: usize, steps: usize) -> Option<String> {
    (steps > 0 && step >= steps).then(|| {
        format!(
            "--talk-step {}: the talk has steps 1 to {steps}; it opens at step {steps}",
            step + 1
        )
    })
}

/// The booth's loop waits while the talk is open (it has the screen); each time the booth plays
/// the talk through counts as one of its rounds (`--demo-cycles` ends the run after them).
fn hold_the_demo(
    talk: Res<Talk>,
    mut demo: ResMut<DemoLoop>,
    mut counted: Local<usize>,
    mut actions: MessageWriter<LlmAction>,
    mut exit: MessageWriter<AppExit>,
) {
    if demo.held != talk.active {
        demo.held = talk.active;
    }
    while *counted < talk.rounds {
        *counted += 1;
        let played = format!("the talk played through ({} steps)", talk.steps());
        crate::demo::round_done(&mut demo, &played, &mut actions, &mut exit);
    }
}

/// Read the step file (`--talk FILE`, else the shipped one). With `--demo --talk`, the booth
/// plays the talk (its own loop waits while the talk is open); with `--demo` alone, the talk
/// stays shut.
fn load_talk(start: Res<TalkStart>, time: Res<Time>, mut talk: ResMut<Talk>, demo: Res<DemoLoop>) {
    let read = match &start.file {
        Some(path) => crate::platform::read_user_text(path)
            .and_then(|text| file::parse(&text, &path.display().to_string())),
        None => crate::platform::read_asset_text(file::SHIPPED)
            .and_then(|text| file::parse(&text, file::SHIPPED)),
    };
    match read {
        Ok(f) => talk.file = Some(f),
        Err(e) => {
            error!("talk not loaded: {e}");
            talk.error = Some(e);
        }
    }
    talk.show_clock = true;
    talk.active = start.open && talk.file.is_some();
    if let Some(warning) = step_past_end(start.step, talk.steps()) {
        warn!("{warning}");
    }
    talk.go(start.step);
    if demo.enabled {
        if talk.active {
            talk.auto_secs = Some(demo.timings.graphics_secs.max(1.0));
        } else {
            talk.locked = true;
        }
    }
    if talk.active {
        talk.started = Some(time.elapsed_secs_f64());
    }
}

/// The talk's keys; they are taken from the scenes' own while the talk is open (Space does not
/// also step the model, Right does not also move the selected neuron). While a field is typed
/// into only the clicker's PageDown and PageUp act: the field lets go of the keyboard (its text
/// stays) and the talk moves on. A clicker's "slideshow" button sends F5 and Esc in turn: F5
/// opens the talk where it was (it never throws the speaker back to the first step), Esc
/// closes it; while the model generates, Esc is the scene's Stop, as its button says. Under
/// `--demo` alone none of them acts (`Talk::locked`).
fn talk_keys(
    mut keys: ResMut<ButtonInput<KeyCode>>,
    focus: Option<ResMut<KeyboardFocus>>,
    time: Res<Time>,
    view: Option<Res<LlmView>>,
    scene: Option<Res<State<Scene>>>,
    mut talk: ResMut<Talk>,
) {
    if talk.locked {
        return;
    }
    if let Some(mut focus) = focus
        && focus.typing
    {
        let clicker = talk.active
            && (keys.just_pressed(KeyCode::PageDown) || keys.just_pressed(KeyCode::PageUp));
        if !clicker {
            return;
        }
        focus.release = true;
        focus.typing = false;
    }
    let toggle = keys.just_pressed(KeyCode::KeyT);
    let open = keys.just_pressed(KeyCode::F5) && !talk.active;
    if (toggle || open) && talk.file.is_some() {
        keys.clear_just_pressed(KeyCode::KeyT);
        keys.clear_just_pressed(KeyCode::F5);
        talk.active = !talk.active;
        talk.blank = false;
        talk.applied = None;
        if talk.active && talk.started.is_none() {
            talk.started = Some(time.elapsed_secs_f64());
        }
    }
    if !talk.active {
        return;
    }
    // Scene 2's keys stop the model; elsewhere Esc stays the talk's.
    let generating = view.is_some_and(|v| v.status == EngineStatus::Generating)
        && scene.is_some_and(|s| *s.get() == Scene::Llm);
    let mut take = |key: KeyCode| keys.clear_just_pressed(key);
    let next = [KeyCode::PageDown, KeyCode::ArrowRight, KeyCode::Space]
        .into_iter()
        .fold(false, |any, k| take(k) | any);
    let back = [KeyCode::PageUp, KeyCode::ArrowLeft]
        .into_iter()
        .fold(false, |any, k| take(k) | any);
    let blank = take(KeyCode::KeyB) | take(KeyCode::Period);
    let home = take(KeyCode::Home);
    // Taken: F5 with the talk open does nothing.
    take(KeyCode::F5);
    let end = take(KeyCode::End);
    // Esc on a lit screen while the model generates is left to the scene: Stop.
    let escape = (talk.blank || !generating) && take(KeyCode::Escape);
    let clock = take(KeyCode::KeyC);
    if blank {
        talk.blank = !talk.blank;
    }
    if escape {
        // Esc un-blanks first; on a lit screen it closes the talk.
        if talk.blank {
            talk.blank = false;
        } else {
            talk.active = false;
        }
    }
    if clock {
        talk.show_clock = !talk.show_clock;
    }
    let step = talk.step;
    if next {
        talk.go(step + 1);
    }
    if back {
        talk.go(step.saturating_sub(1));
    }
    if home {
        talk.go(0);
    }
    if end {
        talk.go(usize::MAX);
    }
}

/// Entering a step: its scene, view, prompt, settings and selection (the state the steps up to
/// it leave, `Talk::state_at`); its Step, if it has one or would show scene 2 without a trace,
/// from a fresh start of the prompt.
#[allow(clippy::too_many_arguments)]
fn apply_step(
    mut talk: ResMut<Talk>,
    mut narration: ResMut<crate::shell::Narration>,
    time: Res<Time>,
    mut next_scene: ResMut<NextState<Scene>>,
    mut controls: ResMut<LlmControls>,
    mut settings: ResMut<GraphicsSettings>,
    mut highlight: ResMut<Highlight>,
    mut actions: MessageWriter<LlmAction>,
    mut camera: Option<ResMut<WorldCamera>>,
    mut mode: Option<ResMut<WorldMode>>,
    world: Option<Res<WorldState>>,
    view: Res<LlmView>,
    mut was_active: Local<bool>,
) {
    if narration.0 != talk.active {
        narration.0 = talk.active;
    }
    // Opening the talk asks for its backend again: the speaker may have connected scene 2 to a
    // remote server (or switched it) while the talk was closed, and its steps show the local
    // model's insides.
    if talk.active && !*was_active {
        talk.asked_backend = None;
    }
    *was_active = talk.active;
    if !talk.active {
        if highlight.term.is_some() {
            highlight.set(None);
        }
        return;
    }
    talk.step_secs += time.delta_secs();
    // A view the world could not take yet (the model's shape was not known).
    if let (Some(StartView::World(p)), Some(layout), Some(camera)) = (
        talk.pending_view,
        world.as_ref().and_then(|w| w.layout),
        camera.as_deref_mut(),
    ) {
        camera.go(p, &layout);
        talk.pending_view = None;
    }
    // The booth: the next step after its time, and round again after the last; a visitor's B
    // blanks the screen until then, not for good.
    if let Some(secs) = talk.auto_secs
        && talk.step_secs >= secs
    {
        let next = (talk.step + 1) % talk.steps().max(1);
        if next == 0 {
            talk.rounds += 1;
        }
        talk.step = next;
        talk.applied = None;
        talk.blank = false;
    }
    if talk.applied == Some(talk.step) {
        return;
    }
    let Some(step) = talk.state_at(talk.step) else {
        return;
    };
    talk.applied = Some(talk.step);
    talk.step_secs = 0.0;
    talk.note = None;
    talk.animation_held = false;
    talk.entered += 1;
    // The page and its tests follow the talk.
    #[cfg(target_arch = "wasm32")]
    crate::web::signal("talk", &format!("{} of {}", talk.step + 1, talk.steps()));
    if let Some(s) = step.scene {
        next_scene.set(match s {
            SceneName::Graphics => Scene::Graphics,
            SceneName::Llm => Scene::Llm,
            SceneName::Bridge => Scene::Bridge,
        });
    }
    if let Some(view) = step.view.as_deref().and_then(|v| parse_view(v).ok()) {
        match view {
            StartView::Panels => {
                if let Some(m) = mode.as_deref_mut() {
                    m.world = false;
                }
            }
            StartView::World(p) => {
                if let Some(m) = mode.as_deref_mut() {
                    m.world = true;
                }
                match (world.as_ref().and_then(|w| w.layout), camera.as_deref_mut()) {
                    (Some(layout), Some(camera)) => camera.go(p, &layout),
                    _ => talk.pending_view = Some(StartView::World(p)),
                }
            }
        }
    }
    // A prompt the speaker typed (an audience's question) stays through every step, one that
    // names a prompt of its own included: the step's prompt goes in only where the box holds
    // nothing of the speaker's (`Talk::typed`). Raw or chat is the step's either way.
    let mut new_prompt = false;
    if !talk.typed(&controls.prompt)
        && let Some(p) = &step.prompt
        && *p != controls.prompt
    {
        controls.prompt = p.clone();
        new_prompt = true;
    }
    if let Some(raw) = step.raw {
        new_prompt |= controls.chat == raw;
        controls.chat = !raw;
    }
    // A step that plays the model's Step starts from the prompt each time it is shown, so
    // coming back to it replays the same token instead of growing the context.
    let animated = matches!(step.animation, Some(Animation::Step | Animation::Tokenize));
    // A step of scene 2 or the bridge shows a token's forward pass. One that would show none (a
    // new prompt, or no trace yet and none on its way) runs its own Step, so stepping back or
    // opening at it shows what walking to it did. Not the race: its local side needs the cores.
    let shows_trace = matches!(step.scene, Some(SceneName::Llm | SceneName::Bridge))
        && step.side_by_side != Some(true);
    let no_trace = view.trace.is_none()
        && view.prompt_tokens.is_empty()
        && view.status != EngineStatus::Generating
        && view.backend.has_traces();
    let plays = animated || (shows_trace && (new_prompt || no_trace));
    if new_prompt && !plays {
        actions.write(LlmAction::Reset);
    }
    talk.pending_play = plays;
    let m = &mut settings.model;
    m.translation = step.translation.unwrap_or(m.translation);
    m.scale = step.scale.unwrap_or(m.scale);
    m.rotation_deg = step.rotation_deg.unwrap_or(m.rotation_deg);
    if let Some([azimuth, elevation]) = step.light {
        settings.lighting.azimuth_deg = azimuth;
        settings.lighting.elevation_deg = elevation;
    }
    if step.vertex.is_some() {
        settings.selected_vertex = step.vertex;
    }
    if let Some(triangle) = step.surface_point {
        settings.surface_pick = Some(crate::graphics::SurfacePick {
            triangle,
            weights: [1.0 / 3.0; 3],
        });
    }
    talk.pending_neuron = step.neuron;
    // The backend when it changes from the talk's last ask (a switch that failed, or one the
    // speaker undid by hand, is not forced again on every step).
    if step.backend != talk.asked_backend {
        talk.asked_backend = step.backend;
        talk.pending_backend = step.backend;
    }
    highlight.set(step.highlight);
    settings.animate = false;
}

/// Once the model is loaded: the step's backend (if it is not the one running), then its Step
/// from a fresh start of the prompt, in that order, so the Step runs where the step says.
fn drive_engine(mut talk: ResMut<Talk>, view: Res<LlmView>, mut actions: MessageWriter<LlmAction>) {
    if !talk.active || view.model.is_none() {
        return;
    }
    // Scene 2 on a remote server (the speaker's Connect, or `--remote` before the talk opened):
    // a step that runs the model runs it here, on the talk's backend, since a remote sends no
    // trace (or not this model's) for the world to draw.
    if talk.pending_play
        && talk.pending_backend.is_none()
        && matches!(view.backend, Backend::Remote { .. })
    {
        talk.pending_backend = Some(talk.asked_backend.unwrap_or(BackendName::Cpu));
    }
    if let Some(want) = talk.pending_backend.take() {
        let switch: &[LlmAction] = match (want, &view.backend) {
            (BackendName::Gpu, Backend::Local) => &[LlmAction::UseGpu],
            (BackendName::Cpu, Backend::Gpu { .. } | Backend::Remote { .. }) => {
                &[LlmAction::UseLocal]
            }
            // Local first: if the GPU backend fails to start, the CPU one runs the Step rather
            // than the remote.
            (BackendName::Gpu, Backend::Remote { .. }) => &[LlmAction::UseLocal, LlmAction::UseGpu],
            _ => &[],
        };
        if !switch.is_empty() {
            for action in switch {
                actions.write(*action);
            }
            // A switch starts a new session: one Step gives the views a trace again.
            talk.pending_play = true;
        }
    }
    if std::mem::take(&mut talk.pending_play) {
        actions.write(LlmAction::Reset);
        actions.write(LlmAction::Step);
    }
}

/// The step's neuron, after the step's Reset (which clears the selection) and once the model's
/// shape is known: selected when this model has it, else the step says why not.
fn select_neuron(mut talk: ResMut<Talk>, view: Res<LlmView>, mut selection: ResMut<LlmSelection>) {
    let Some((layer, neuron)) = talk.pending_neuron else {
        return;
    };
    // Not before the step's own Reset (or backend switch) has gone out: it clears the
    // selection.
    if talk.pending_play || talk.pending_backend.is_some() {
        return;
    }
    let Some(model) = view.model.as_ref() else {
        return;
    };
    let (layers, neurons) = (model.config.n_layer, model.config.n_ff);
    talk.pending_neuron = None;
    if layer < layers && neuron < neurons {
        selection.neuron = Some((layer, neuron));
    } else {
        talk.note = Some(format!(
            "step {}: neuron ({layer}, {neuron}) is not in this model ({layers} layers x \
             {neurons} neurons); nothing selected",
            talk.step + 1
        ));
    }
}

/// Seconds between two chips of the tokenize animation.
pub const CHIP_SECS: f32 = 0.7;

/// The step's animation, a function of the seconds it has been shown (the chips: of the
/// seconds since the prompt's tokens arrived). When the speaker moves the value it drives (a
/// slider, a drag), it lets go for the rest of the step.
fn animate(
    mut talk: ResMut<Talk>,
    view: Res<LlmView>,
    time: Res<Time>,
    mut settings: ResMut<GraphicsSettings>,
    mut selection: ResMut<LlmSelection>,
    mut chips_since: Local<Option<f32>>,
    mut written: Local<Option<(u64, f32)>>,
) {
    let animation = talk
        .current()
        .filter(|_| talk.active)
        .and_then(|s| s.animation);
    if animation == Some(Animation::Tokenize) && !view.prompt_tokens.is_empty() {
        let since = chips_since.get_or_insert(0.0);
        *since += time.delta_secs();
        let n = 1 + (*since / CHIP_SECS) as usize;
        let reveal = (n < view.prompt_tokens.len()).then_some(n);
        if selection.reveal_chips != reveal {
            selection.reveal_chips = reveal;
        }
    } else {
        *chips_since = None;
        if selection.reveal_chips.is_some() {
            selection.reveal_chips = None;
        }
    }
    if !talk.active || talk.blank || talk.animation_held {
        return;
    }
    let t = talk.step_secs;
    let s = &mut *settings;
    let (value, to) = match animation {
        Some(Animation::SweepTx) => (&mut s.model.translation[0], 1.5 * (t * 1.2).sin()),
        Some(Animation::PulseSy) => (&mut s.model.scale[1], 1.0 + 0.5 * (t * 1.5).sin()),
        Some(Animation::TurnThetaX) => (
            &mut s.model.rotation_deg[0],
            (t * 45.0 + 180.0).rem_euclid(360.0) - 180.0,
        ),
        Some(Animation::CircleLight) => (
            &mut s.lighting.azimuth_deg,
            (t * 60.0 + 180.0).rem_euclid(360.0) - 180.0,
        ),
        _ => {
            *written = None;
            return;
        }
    };
    // Not what this animation wrote last frame: the speaker took it over.
    if let Some((entered, last)) = *written
        && entered == talk.entered
        && *value != last
    {
        talk.animation_held = true;
        *written = None;
        return;
    }
    *value = to;
    *written = Some((talk.entered, to));
}

/// The most of the prompt's tokens a caption's `{tokens}` shows, "… and N more" after them (an
/// audience's question of hundreds of tokens would cover the stage).
pub const CAPTION_TOKENS: usize = 16;
/// The most characters of one token a caption shows ("…" where it was cut).
pub const CAPTION_PIECE_CHARS: usize = 16;

/// A caption with `{tokens}` replaced by the model's real split of the prompt (the pieces as
/// the chips show them, `·` for a space; the first `CAPTION_TOKENS` of them, each cut to
/// `CAPTION_PIECE_CHARS`), or by a note while there is none yet.
pub fn caption_text(step: &TalkStep, view: &LlmView) -> String {
    // A GPU step where the GPU backend could not start says so: its caption describes kernels
    // that are not running.
    if step.backend == Some(BackendName::Gpu)
        && !matches!(view.backend, Backend::Gpu { .. })
        && let Some(why) = &view.gpu_unavailable
    {
        let why: String = why.chars().take(120).collect();
        return format!(
            "{}\n(No GPU backend here: {why}. The model runs on the CPU.)",
            tokens_in(step, view)
        );
    }
    tokens_in(step, view)
}

/// `step`'s caption with `{tokens}` filled in (see `caption_text`).
fn tokens_in(step: &TalkStep, view: &LlmView) -> String {
    if !step.caption.contains("{tokens}") {
        return step.caption.clone();
    }
    let tokens = &view.prompt_tokens;
    let split = if tokens.is_empty() {
        "(the model is reading it)".to_string()
    } else {
        let mut split = tokens
            .iter()
            .take(CAPTION_TOKENS)
            .map(|t| {
                let piece = crate::llm_scene::panels::visible_piece(&t.piece);
                if piece.chars().count() > CAPTION_PIECE_CHARS {
                    let cut: String = piece.chars().take(CAPTION_PIECE_CHARS).collect();
                    format!("{}\u{2026}", cut.trim_end_matches('\u{2026}'))
                } else {
                    piece
                }
            })
            .collect::<Vec<_>>()
            .join(" | ");
        if tokens.len() > CAPTION_TOKENS {
            split.push_str(&format!(
                " \u{2026} and {} more",
                tokens.len() - CAPTION_TOKENS
            ));
        }
        split
    };
    step.caption.replace("{tokens}", &split)
}

/// The views a talk's steps may name, for a test: all the presets and the panels.
pub fn preset_of(step: &TalkStep) -> Option<Preset> {
    match parse_view(step.view.as_deref()?).ok()? {
        StartView::World(p) => Some(p),
        StartView::Panels => None,
    }
}
