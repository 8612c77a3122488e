//! The serverless steps' race: the same prompt answered by the local model and by a remote
//! endpoint side by side, each with its time to first token and tokens per second, and the
//! remote's cold start counted as it happens ("waking the service: N s"). When the network
//! fails, the step says so and the local answer goes on; when the local model never loaded, the
//! remote side races alone. Both sides decode greedily, so the same model gives the same words
//! in both places. The race asks what scene 2's prompt box holds (the step's prompt, or a
//! question the speaker typed, which the step leaves there; the step's own when the box is
//! empty); a question typed while the race step is shown is raced, from a fresh start, once the
//! box lets go of the keyboard (a click outside it, Esc, the clicker).

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use bevy::prelude::*;
use llm::{CancelToken, GenerationRequest, RecordOptions, SamplingParams};
use web_time::Instant;

use super::{Talk, TalkStart};
use crate::llm_scene::{EngineStatus, LlmControls, LlmView};

/// Tokens each side generates (a few lines of text on a projector).
pub const RACE_TOKENS: usize = 32;
/// The reply text kept per side (a bound on what a remote can make us hold and draw).
const MAX_TEXT: usize = 2_000;

/// Which side of the race.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Local,
    Remote,
}

#[derive(Debug)]
// The browser build reports only `Done` (it does not race).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
enum RaceEvent {
    Status(Who, String),
    /// The remote answered its probe (the service is awake).
    Awake,
    Token(Who, String),
    /// The side ended: cleanly, or with why not.
    Done(Who, Option<String>),
}

/// The threads' end of the race's channel: every event carries the seconds since the race
/// began, taken when it happened (not when a frame got round to it).
#[derive(Clone)]
struct Stamped {
    tx: Sender<(f32, RaceEvent)>,
    started: Instant,
}

impl Stamped {
    fn send(&self, event: RaceEvent) -> Result<(), std::sync::mpsc::SendError<(f32, RaceEvent)>> {
        self.tx.send((self.started.elapsed().as_secs_f32(), event))
    }
}

/// One side as the hall sees it.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// "this machine: CPU" or the remote's host.
    pub label: String,
    pub status: String,
    pub text: String,
    pub tokens: usize,
    /// Seconds from the start of the race.
    pub first_token_secs: Option<f32>,
    pub last_token_secs: Option<f32>,
    /// Remote: when its probe was answered (the cold start, when there was one).
    pub awake_secs: Option<f32>,
    pub finished: bool,
    pub error: Option<String>,
    /// No endpoint was given (so nothing was asked).
    pub unset: bool,
    /// Local: the model was not loaded when the race began (its load failed), so this side did
    /// not run; the race starts again once the model is there.
    pub no_model: bool,
}

impl Side {
    /// Decode speed: the tokens after the first over the time since the first.
    pub fn tokens_per_sec(&self) -> Option<f32> {
        let (first, last) = (self.first_token_secs?, self.last_token_secs?);
        (self.tokens >= 2 && last > first).then(|| (self.tokens - 1) as f32 / (last - first))
    }

    /// "first token 0.21 s · 24.5 tokens/s · 32 tokens", as far as it is known.
    pub fn figures(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.first_token_secs {
            parts.push(format!("first token {t:.2} s"));
        }
        if let Some(r) = self.tokens_per_sec() {
            parts.push(format!("{r:.1} tokens/s"));
        }
        if self.tokens > 0 {
            parts.push(format!("{} tokens", self.tokens));
        }
        if parts.is_empty() {
            "no token yet".into()
        } else {
            parts.join(" · ")
        }
    }

    /// What the side is doing, and whether it failed: its error (on the remote side the talk
    /// stays on the local model), the cold start counted live (`now`: seconds since the race
    /// began), or its status.
    pub fn state_line(&self, remote: bool, now: f32) -> (String, bool) {
        if let Some(e) = &self.error {
            let tail = if remote {
                ": the talk stays on the local model"
            } else {
                ""
            };
            let head = if self.unset || self.no_model {
                ""
            } else {
                "did not answer: "
            };
            return (format!("{head}{e}{tail}"), true);
        }
        if remote && self.awake_secs.is_none() && !self.finished {
            return (format!("waking the service: {now:.0} s"), false);
        }
        let mut s = String::new();
        if let Some(w) = self.awake_secs.filter(|_| remote) {
            s = format!("the service answered after {w:.1} s; ");
        }
        s.push_str(if self.finished { "done" } else { &self.status });
        (s, false)
    }

    fn apply(&mut self, event: RaceEvent, at: f32) {
        match event {
            RaceEvent::Status(_, s) => self.status = s,
            RaceEvent::Awake => self.awake_secs = Some(at),
            RaceEvent::Token(_, text) => {
                self.tokens += 1;
                self.first_token_secs.get_or_insert(at);
                self.last_token_secs = Some(at);
                if self.text.len() + text.len() <= MAX_TEXT {
                    self.text.push_str(&text);
                }
            }
            RaceEvent::Done(_, error) => {
                self.finished = true;
                self.error = error;
            }
        }
    }
}

/// A race under way (or run): both sides and the channel their threads report on.
pub struct Race {
    /// The talk step it belongs to.
    pub step: usize,
    /// The prompt both sides answer, and whether it went through the chat template.
    pub prompt: String,
    pub chat: bool,
    started: Instant,
    events: Mutex<Receiver<(f32, RaceEvent)>>,
    cancel: CancelToken,
    pub local: Side,
    pub remote: Side,
}

impl std::fmt::Debug for Race {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Race")
            .field("step", &self.step)
            .field("prompt", &self.prompt)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl Race {
    pub fn elapsed_secs(&self) -> f32 {
        self.started.elapsed().as_secs_f32()
    }

    pub fn finished(&self) -> bool {
        self.local.finished && self.remote.finished
    }

    /// Fold in what the threads reported, at the times they reported it.
    fn poll(&mut self) {
        let events: Vec<(f32, RaceEvent)> = match self.events.lock() {
            Ok(rx) => rx.try_iter().collect(),
            Err(_) => Vec::new(),
        };
        for (at, e) in events {
            let who = match &e {
                RaceEvent::Status(w, _) | RaceEvent::Token(w, _) | RaceEvent::Done(w, _) => *w,
                RaceEvent::Awake => Who::Remote,
            };
            match who {
                Who::Local => self.local.apply(e, at),
                Who::Remote => self.remote.apply(e, at),
            }
        }
    }
}

impl Drop for Race {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The race of the step shown, if it has one.
#[derive(Resource, Debug, Default)]
pub struct TalkRace(pub Option<Race>);

/// The remote the race asks: `--remote URL` first (the speaker's URL for this hall), else the
/// step's, else the file's.
pub fn race_url(start: &TalkStart, talk: &Talk) -> Option<String> {
    let step = talk.current().and_then(|s| s.remote.clone());
    let file = talk.file.as_ref().and_then(|f| f.remote.clone());
    start
        .remote_url
        .clone()
        .or(step)
        .or(file)
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
}

/// The prompt the race asks: the box's (the step's, or what the speaker typed there), else the
/// step's own when the box is empty.
pub fn race_prompt(talk: &Talk, controls: &LlmControls) -> String {
    if controls.prompt.trim().is_empty() {
        talk.state_at(talk.step)
            .and_then(|s| s.prompt)
            .unwrap_or_default()
    } else {
        controls.prompt.clone()
    }
}

/// Start a step's race once the local model is loaded, or without its local side once the load
/// failed (the remote side is the hall's answer then); end it when the talk moves on; start it
/// again when the box holds another prompt and no field has the keyboard (the speaker typed a
/// question, and is done).
pub(super) fn race_tick(
    talk: Res<Talk>,
    view: Res<LlmView>,
    controls: Res<LlmControls>,
    start: Res<TalkStart>,
    focus: Option<Res<crate::shell::KeyboardFocus>>,
    mut race: ResMut<TalkRace>,
) {
    let wanted = talk.active && talk.current().and_then(|s| s.side_by_side) == Some(true);
    if race
        .0
        .as_ref()
        .is_some_and(|r| !wanted || r.step != talk.step)
    {
        race.0 = None;
    }
    // A race run without the local model (its load failed), and the model is there now (loaded
    // again from the panel): both sides again, from one start.
    if race
        .0
        .as_ref()
        .is_some_and(|r| r.local.no_model && view.model.is_some())
    {
        race.0 = None;
    }
    // Typed while the race was shown: raced once the box lets go (not at every key).
    let typing = focus.is_some_and(|f| f.typing);
    let prompt = race_prompt(&talk, &controls);
    if !typing
        && race
            .0
            .as_ref()
            .is_some_and(|r| r.prompt != prompt || r.chat != controls.chat)
    {
        race.0 = None;
    }
    if let Some(r) = race.0.as_mut() {
        r.poll();
        return;
    }
    if !wanted {
        return;
    }
    let local = match (view.model.clone(), view.tokenizer.clone()) {
        (Some(model), Some(tokenizer)) => Ok((model, tokenizer)),
        // The load failed (a fetch on the hall's network): the remote side runs on its own.
        _ => match &view.status {
            EngineStatus::Error(e) => Err(format!("the local model is not loaded: {e}")),
            _ => return,
        },
    };
    let request = GenerationRequest {
        prompt,
        chat: controls.chat,
        max_tokens: RACE_TOKENS,
        sampling: SamplingParams::greedy(),
        record: RecordOptions::OFF,
    };
    let url = race_url(&start, &talk);
    let config = url.map(|url| remote::RemoteConfig {
        url,
        api: start.remote_api.or(controls.remote.api),
        ..controls.remote_config()
    });
    race.0 = Some(start_race(talk.step, local, request, config));
}

/// The local model and its tokenizer, or why there is none.
type LocalModel = Result<
    (
        std::sync::Arc<llm::Model>,
        std::sync::Arc<llm::LlmTokenizer>,
    ),
    String,
>;

fn start_race(
    step: usize,
    local: LocalModel,
    request: GenerationRequest,
    config: Option<remote::RemoteConfig>,
) -> Race {
    let (tx, rx) = channel();
    let started = Instant::now();
    let tx = Stamped { tx, started };
    let cancel = CancelToken::default();
    let mut race = Race {
        step,
        prompt: request.prompt.clone(),
        chat: request.chat,
        started,
        events: Mutex::new(rx),
        cancel: cancel.clone(),
        local: Side {
            label: "this machine (CPU)".into(),
            status: "reading the prompt".into(),
            ..Side::default()
        },
        remote: Side::default(),
    };
    if let Err(e) = &local {
        race.local.finished = true;
        race.local.no_model = true;
        race.local.error = Some(e.clone());
    }
    match &config {
        Some(c) => {
            race.remote.label = format!("remote: {}", remote::shown_url(&c.url));
            race.remote.status = "waking the service".into();
        }
        None => {
            race.remote.label = "remote".into();
            race.remote.finished = true;
            race.remote.unset = true;
            race.remote.error = Some(
                "no remote endpoint: start with --remote URL, or give the talk file a remote"
                    .into(),
            );
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        if let Ok((model, tokenizer)) = local {
            spawn_local(
                model,
                tokenizer,
                request.clone(),
                cancel.clone(),
                tx.clone(),
            );
        }
        if let Some(config) = config {
            spawn_remote(config, request, cancel, tx);
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (request, cancel);
        if local.is_ok() {
            desktop_only(Who::Local, &tx);
        }
        if config.is_some() {
            desktop_only(Who::Remote, &tx);
        }
    }
    race
}

/// The local side on a thread of its own, with the app engine's share of the cores and at its
/// low priority (frames win over the race too).
#[cfg(not(target_arch = "wasm32"))]
fn spawn_local(
    model: std::sync::Arc<llm::Model>,
    tokenizer: std::sync::Arc<llm::LlmTokenizer>,
    request: GenerationRequest,
    cancel: CancelToken,
    tx: Stamped,
) {
    let threads = crate::worker::engine_threads();
    let report = tx.clone();
    let work = move || answer_locally(model, tokenizer, &request, &cancel, &tx);
    if let Err(e) = crate::worker::spawn_low_priority("samemath-race-local", threads, work) {
        let _ = report.send(RaceEvent::Done(
            Who::Local,
            Some(format!("the local side did not start: {e}")),
        ));
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn answer_locally(
    model: std::sync::Arc<llm::Model>,
    tokenizer: std::sync::Arc<llm::LlmTokenizer>,
    request: &GenerationRequest,
    cancel: &CancelToken,
    tx: &Stamped,
) {
    let backend: std::sync::Arc<dyn llm::Backend> = model;
    let mut session = match llm::Session::new(backend, tokenizer, request) {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(RaceEvent::Done(Who::Local, Some(e.to_string())));
            return;
        }
    };
    let _ = tx.send(RaceEvent::Status(Who::Local, "answering".into()));
    while !cancel.is_cancelled() {
        match session.step() {
            Ok(Some(step)) => {
                let _ = tx.send(RaceEvent::Token(Who::Local, step.text));
                if step.stop.is_some() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send(RaceEvent::Done(Who::Local, Some(e.to_string())));
                return;
            }
        }
    }
    let _ = tx.send(RaceEvent::Done(Who::Local, None));
}

/// The remote side on its own thread: probe (the cold start), then the streamed answer. Every
/// wait is bounded by the client's first-byte timeout and its retries.
#[cfg(not(target_arch = "wasm32"))]
fn spawn_remote(
    config: remote::RemoteConfig,
    request: GenerationRequest,
    cancel: CancelToken,
    tx: Stamped,
) {
    let report = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("samemath-race-remote".into())
        .spawn(move || {
            let error = answer_remotely(config, &request, &cancel, &tx).err();
            let _ = tx.send(RaceEvent::Done(Who::Remote, error));
        });
    if let Err(e) = spawned {
        let _ = report.send(RaceEvent::Done(
            Who::Remote,
            Some(format!("the remote side did not start: {e}")),
        ));
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn answer_remotely(
    config: remote::RemoteConfig,
    request: &GenerationRequest,
    cancel: &CancelToken,
    tx: &Stamped,
) -> Result<(), String> {
    let mut on_status = |s: String| {
        let _ = tx.send(RaceEvent::Status(Who::Remote, s));
    };
    let (mut client, runtime, info) =
        match crate::worker::open_remote(config, cancel, &mut on_status) {
            Ok(link) => link,
            Err(_) if cancel.is_cancelled() => return Ok(()),
            Err(e) => return Err(e),
        };
    let _ = tx.send(RaceEvent::Awake);
    let _ = tx.send(RaceEvent::Status(
        Who::Remote,
        format!(
            "{:?}, model {}",
            info.api,
            client.model().unwrap_or("(the server's)")
        ),
    ));
    let mut on_event = |e: remote::RemoteEvent| match e {
        remote::RemoteEvent::Status(s) => {
            let _ = tx.send(RaceEvent::Status(Who::Remote, s));
        }
        remote::RemoteEvent::Step(s) => {
            let _ = tx.send(RaceEvent::Token(Who::Remote, s.text));
        }
        remote::RemoteEvent::Prompt { .. } => {}
    };
    match runtime.block_on(client.generate(request, cancel, &mut on_event)) {
        Ok(_) | Err(remote::RemoteError::Cancelled) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// The browser build has no threads to race on: the step says so on both sides (the remote
/// panel of scene 2 still connects and answers there).
#[cfg(target_arch = "wasm32")]
fn desktop_only(who: Who, tx: &Stamped) {
    let why = "the side-by-side race runs in the desktop app";
    let _ = tx.send(RaceEvent::Done(who, Some(why.into())));
}

/// What the talk answers the shell: a `--screenshot` of a race step waits for the race to end,
/// and its sidecar holds the step and both sides' figures.
pub(super) struct TalkProbe;

impl crate::shell::probe::SceneProbe for TalkProbe {
    fn key(&self) -> Option<&'static str> {
        Some("talk")
    }

    fn settled(&self, world: &World) -> bool {
        let wanted = world
            .get_resource::<Talk>()
            .is_some_and(|t| t.active && t.current().and_then(|s| s.side_by_side) == Some(true));
        !wanted
            || world
                .get_resource::<TalkRace>()
                .and_then(|r| r.0.as_ref())
                .is_some_and(|r| r.finished())
    }

    fn sidecar(&self, world: &World) -> serde_json::Value {
        let Some(talk) = world.get_resource::<Talk>().filter(|t| t.active) else {
            return serde_json::Value::Null;
        };
        let side = |s: &Side| {
            serde_json::json!({
                "label": s.label,
                "tokens": s.tokens,
                "first_token_secs": s.first_token_secs,
                "tokens_per_sec": s.tokens_per_sec(),
                "awake_secs": s.awake_secs,
                "error": s.error,
                "text": s.text,
            })
        };
        let race = world
            .get_resource::<TalkRace>()
            .and_then(|r| r.0.as_ref())
            .map(|r| serde_json::json!({"local": side(&r.local), "remote": side(&r.remote)}));
        let plates = world
            .get_resource::<super::TalkPlates>()
            .map(|p| p.0.clone())
            .unwrap_or_default();
        serde_json::json!({"step": talk.step + 1, "steps": talk.steps(), "race": race,
            "note": talk.note, "plates": plates})
    }
}
