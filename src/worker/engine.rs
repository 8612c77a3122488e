//! The engine's state machine, shared by the native thread and the browser's slices: load the
//! model (fetching it on first use, or from the page), start sessions, read prompts in slices,
//! step, stop, switch between the CPU, the GPU and a remote server.

use super::protocol::{Command, Event, GpuBackendInfo};
use super::remote::RemoteLink;
use super::{EventSender, Wait};
use llm::gpu::{self, GpuContext, GpuModel};
use llm::{Backend, GenerationRequest, LlmError, LlmTokenizer, Model, Session, TokenInfo, fetch};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Prompt tokens read per forward pass before the first token, so progress shows and Stop
/// lands between slices.
pub(super) const PREFILL_SLICE: usize = 64;

/// The state machine shared by the thread and the wasm slices.
pub(super) struct Engine {
    model_path: Option<PathBuf>,
    /// Longest prompt (in tokens) this front end accepts.
    max_prompt_tokens: usize,
    /// One Step was asked for and has not produced its token yet.
    step_pending: bool,
    /// The remote backend, when connected, and what Stop cancels.
    remote: Option<RemoteLink>,
    /// A Connect whose probe has not answered yet (the browser's: natively the probe answers
    /// before `connect` returns); it becomes `remote` once the server answers, and the backend
    /// in use stays until then (a failed or stopped Connect leaves it as it was).
    connecting: Option<RemoteLink>,
    /// The remote wait in flight, which the Worker ends from the app's thread.
    wait: Arc<std::sync::Mutex<Wait>>,
    /// Stops the Worker has sent (each command carries the count at its sending).
    stops: Arc<AtomicU64>,
    /// The count the command being handled carried.
    taken: u64,
    loaded: Option<(Arc<Model>, Arc<LlmTokenizer>)>,
    /// The GPU backend, once asked for; used while `on_gpu`.
    gpu: Option<Arc<GpuModel>>,
    on_gpu: bool,
    session: Option<Session>,
    /// Generating continuously (vs. waiting for Step).
    running: bool,
    /// When the step in progress began (in the browser a GPU step spans several polls).
    step_started: Option<web_time::Instant>,
    /// The app's frame pacer: on the CPU backend the model rests between steps for as long as
    /// keeps the frames near their idle time (`FramePacer::cpu_rest`).
    pacer: Option<Arc<llm::gpu::pacer::FramePacer>>,
    /// Until when the model rests (the engine thread waits for commands meanwhile).
    rest_until: Option<web_time::Instant>,
    /// Browser build: the model file the page downloaded (the GPU backend uploads it too).
    #[cfg(target_arch = "wasm32")]
    model_bytes: Option<Arc<Vec<u8>>>,
    /// Browser build: the last download progress reported.
    #[cfg(target_arch = "wasm32")]
    last_status: String,
    events: EventSender,
}

impl Engine {
    pub(super) fn new(
        model_path: Option<PathBuf>,
        max_prompt_tokens: usize,
        (wait, stops): (Arc<std::sync::Mutex<Wait>>, Arc<AtomicU64>),
        events: EventSender,
    ) -> Self {
        Engine {
            remote: None,
            connecting: None,
            wait,
            stops,
            taken: 0,
            model_path,
            max_prompt_tokens,
            step_pending: false,
            loaded: None,
            gpu: None,
            on_gpu: false,
            session: None,
            running: false,
            step_started: None,
            pacer: None,
            rest_until: None,
            #[cfg(target_arch = "wasm32")]
            model_bytes: None,
            #[cfg(target_arch = "wasm32")]
            last_status: String::new(),
            events,
        }
    }

    pub(super) fn send(&self, event: Event) {
        // The app went away: nothing left to tell.
        let _ = self.events.send(event);
    }

    /// Browser build: the model comes from the page, which downloads it while the app starts.
    #[cfg(target_arch = "wasm32")]
    pub(super) fn ensure_loaded(&mut self) -> bool {
        use crate::web::PageModel;
        if self.loaded.is_some() {
            return true;
        }
        // The page hands its copy over once; a load that failed tries the same bytes again.
        let bytes = match self.model_bytes.clone() {
            Some(bytes) => bytes,
            None => match crate::web::model() {
                PageModel::Ready(bytes) => {
                    let bytes = Arc::new(bytes);
                    self.model_bytes = Some(bytes.clone());
                    bytes
                }
                PageModel::Pending(status) => {
                    self.send(Event::Status(status));
                    return false;
                }
                PageModel::Failed(message) => {
                    self.send(Event::Error(message));
                    return false;
                }
            },
        };
        let path = PathBuf::from(fetch::MODEL_FILE);
        self.send(Event::Status(format!("loading {}", path.display())));
        let loaded = Model::from_bytes(&bytes, &path);
        self.adopt(loaded.map(|(m, t)| (m, t, path)))
    }

    /// Browser build: whether `command` (sent after `stops` Stops) can run now, or waits for
    /// the page's download.
    #[cfg(target_arch = "wasm32")]
    pub(super) fn ready_for(&mut self, command: &Command, stops: u64) -> bool {
        self.settle_connect();
        let have_model = self.loaded.is_some() || self.model_bytes.is_some();
        let (connected, stopped) = (self.remote.is_some(), self.stopped_since(stops));
        if !super::waits_for_download(command, have_model, connected, stopped) {
            return true;
        }
        match crate::web::download_pending() {
            Some(status) => {
                // (Connected to a server, the local download is not what the panel waits on.)
                if status != self.last_status && self.remote.is_none() {
                    self.send(Event::Status(status.clone()));
                    self.last_status = status;
                }
                false
            }
            None => true,
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn ensure_loaded(&mut self) -> bool {
        if self.loaded.is_some() {
            return true;
        }
        let events = self.events.clone();
        let mut progress = |msg: &str| {
            let _ = events.send(Event::Status(msg.to_string()));
        };
        progress("finding the model");
        let result = fetch::ensure_model(self.model_path.as_deref(), &mut progress).and_then(|p| {
            progress(&format!("loading {}", p.display()));
            Model::load(&p).map(|(m, t)| (m, t, p))
        });
        self.adopt(result)
    }

    /// Keep a loaded model and tell the app, or report why loading failed.
    fn adopt(&mut self, result: Result<(Model, LlmTokenizer, PathBuf), LlmError>) -> bool {
        if let Ok((model, ..)) = &result
            && let Some(why) = too_big_to_draw(&model.config)
        {
            self.send(Event::Error(why));
            return false;
        }
        match result {
            Ok((model, tokenizer, path)) => {
                let (model, tokenizer) = (Arc::new(model), Arc::new(tokenizer));
                self.loaded = Some((model.clone(), tokenizer.clone()));
                // The file found (or fetched): the GPU backend reads the same one.
                self.model_path = Some(path.clone());
                self.send(Event::Loaded {
                    model,
                    tokenizer,
                    path,
                });
                true
            }
            Err(e) => {
                self.send(Event::Error(e.to_string()));
                false
            }
        }
    }

    fn start(&mut self, request: &GenerationRequest) -> bool {
        self.session = None;
        if let Some(why) = too_long_to_read(&request.prompt, self.max_prompt_tokens) {
            self.send(Event::Error(why));
            return false;
        }
        if !self.ensure_loaded() {
            return false;
        }
        let Some((model, tokenizer)) = self.loaded.clone() else {
            return false;
        };
        let too_long = |tokens: usize| {
            format!(
                "the prompt is {tokens} tokens; {} reads at most {} (about {} characters of \
                 English). Shorten it: nothing was cut.",
                if self.max_prompt_tokens < model.config.context_length {
                    "the live scene"
                } else {
                    "the model"
                },
                self.max_prompt_tokens.min(model.config.context_length),
                self.max_prompt_tokens.min(model.config.context_length) * 4
            )
        };
        let backend: Arc<dyn Backend> = match (&self.gpu, self.on_gpu) {
            (Some(gpu), true) => gpu.clone(),
            _ => model.clone(),
        };
        match Session::new(backend, tokenizer.clone(), request) {
            Ok(session) if session.prompt_tokens().len() > self.max_prompt_tokens => {
                self.send(Event::Error(too_long(session.prompt_tokens().len())));
                false
            }
            Err(LlmError::PromptTooLong { tokens, .. }) => {
                self.send(Event::Error(too_long(tokens)));
                false
            }
            Ok(session) => {
                let ids = session.prompt_tokens().to_vec();
                let tokens = ids
                    .iter()
                    .map(|&id| TokenInfo {
                        id,
                        piece: tokenizer.piece(id),
                    })
                    .collect();
                let embeddings = ids
                    .iter()
                    .filter_map(|&id| model.embedding_row(id).ok())
                    .collect();
                self.send(Event::prompt(tokens, embeddings));
                self.session = Some(session);
                true
            }
            Err(e) => {
                self.send(Event::Error(e.to_string()));
                false
            }
        }
    }

    /// The Stops the Worker has sent so far.
    pub(super) fn stops(&self) -> u64 {
        self.stops.load(Ordering::SeqCst)
    }

    /// Whether a Stop was sent after the command that carried `stops`.
    fn stopped_since(&self, stops: u64) -> bool {
        self.stops() != stops
    }

    /// Take `command`, sent after `stops` Stops. A Generate, Step or Connect that a Stop (or
    /// Reset, or UseLocal) sent after it overtook is not started: it says it was stopped.
    pub(super) fn handle(&mut self, command: Command, stops: u64) {
        self.taken = stops;
        self.settle_connect();
        if self.stopped_since(stops) {
            match command {
                Command::Generate(_) | Command::Step(_) => {
                    self.send(Event::Paused);
                    return;
                }
                Command::Connect(_) => {
                    self.send(Event::Error("Connect was stopped".into()));
                    return;
                }
                _ => {}
            }
        }
        if self.remote.is_some() {
            match &command {
                Command::Generate(request) => {
                    let request = request.clone();
                    self.generate_remote(&request);
                    return;
                }
                Command::Step(_) => {
                    self.send(Event::Error(
                        "Step runs the local engine; a remote server streams whole answers \
                         (use Generate, or switch back to the local model)"
                            .into(),
                    ));
                    return;
                }
                _ => {}
            }
        }
        // A new request or a stop ends the rest between steps (the next step is the user's).
        if matches!(
            command,
            Command::Generate(_) | Command::Step(_) | Command::Stop | Command::Reset
        ) {
            self.rest_until = None;
        }
        match command {
            Command::Connect(config) => self.connect(config),
            Command::UseLocal => {
                // A Connect still probing (the browser's) is ended, so its answer cannot make
                // its server the backend after this; so is an answer in flight (the browser's
                // runs in the connection's task: natively the Worker ended it already).
                if let Ok(w) = self.wait.lock() {
                    w.token.cancel();
                }
                self.connecting = None;
                self.remote = None;
                if self.on_gpu {
                    self.on_gpu = false;
                    self.drop_session();
                }
                self.send(Event::Disconnected);
            }
            Command::UseGpu(ctx) => self.use_gpu(ctx),
            Command::Load => {
                self.ensure_loaded();
            }
            Command::Generate(request) => {
                self.step_pending = false;
                self.running = self.start(&request);
            }
            Command::Step(request) => {
                self.running = false;
                let live = self
                    .session
                    .as_ref()
                    .is_some_and(|s| s.finished().is_none());
                self.step_pending = live || self.start(&request);
            }
            Command::Stop => {
                self.clear_gpu_interrupt();
                // (The browser's GPU step in flight is given up: the next one is timed anew,
                // not from before the pause.)
                self.step_started = None;
                if self.busy() {
                    self.running = false;
                    self.step_pending = false;
                    self.send(Event::Paused);
                } else if self.remote.as_ref().is_some_and(RemoteLink::answering) {
                    // The browser's answer, in the connection's task: it ends within a second
                    // and says nothing more; the pause is said here, in order.
                    self.send(Event::Paused);
                }
            }
            Command::Reset => {
                self.clear_gpu_interrupt();
                self.running = false;
                self.step_pending = false;
                self.step_started = None;
                self.session = None;
                // (The browser's answer in flight, in the connection's task, sends nothing once
                // stopped: this comes after all it sent.)
                self.send(Event::ResetDone);
                // (Also the way back from a panic mid-step: the frames are idle again.)
                if let Some(p) = &self.pacer {
                    p.cpu_stopped();
                }
            }
            Command::Pace(pacer) => self.pacer = Some(pacer),
        }
    }

    /// How long the model still rests before its next step (none: go on). The browser's
    /// engine runs one step per poll of the frame loop and does not rest.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn resting(&self) -> Option<std::time::Duration> {
        let left = self
            .rest_until?
            .saturating_duration_since(web_time::Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// A Stop or Reset asks the GPU's waits to give up the moment it is sent (a stalled step
    /// holds this thread); by the time the engine takes the command itself, the step it was
    /// for is over, so a request no wait took is forgotten here and cannot cut the next step
    /// short (on a slow device a step's wait passes the stall mark). Cleared here rather than
    /// when the next Step comes, so a Stop sent right after a Step still reaches that step.
    fn clear_gpu_interrupt(&self) {
        if let Some(g) = &self.gpu {
            g.context().interrupt_handle().clear();
        }
    }

    fn drop_session(&mut self) {
        self.running = false;
        self.step_pending = false;
        self.step_started = None;
        self.session = None;
    }

    /// Load (once per device) and switch to the GPU backend; on failure say why and stay on
    /// the CPU.
    fn use_gpu(&mut self, ctx: GpuContext) {
        if !self.ensure_loaded() {
            return;
        }
        let reuse = self
            .gpu
            .as_ref()
            .filter(|g| g.context().device == ctx.device)
            .cloned();
        let gpu = match reuse {
            Some(g) => g,
            None => {
                self.send(Event::Status(format!(
                    "uploading the model to {}",
                    ctx.adapter
                )));
                let Some(path) = self.model_path.clone() else {
                    return;
                };
                #[cfg(target_arch = "wasm32")]
                let loaded = match &self.model_bytes {
                    Some(bytes) => GpuModel::from_bytes(bytes, &path, ctx, gpu::DEFAULT_CONTEXT),
                    None => return,
                };
                #[cfg(not(target_arch = "wasm32"))]
                let loaded = GpuModel::load(&path, ctx, gpu::DEFAULT_CONTEXT);
                match loaded {
                    Ok(g) => Arc::new(g),
                    Err(e) => {
                        self.on_gpu = false;
                        self.send(Event::GpuFailed(format!(
                            "{e}; the CPU backend runs instead"
                        )));
                        return;
                    }
                }
            }
        };
        self.remote = None;
        self.drop_session();
        let c = gpu.context();
        let info = GpuBackendInfo {
            adapter: c.adapter.clone(),
            device: c.device.clone(),
            shared_with_renderer: c.shared_with_renderer,
            activations: gpu.activation_buffer(),
            interrupt: c.interrupt_handle(),
        };
        self.gpu = Some(gpu);
        self.on_gpu = true;
        self.send(Event::GpuReady(info));
    }

    /// Work is waiting: generating, or a Step not yet done.
    pub(super) fn busy(&self) -> bool {
        self.running || self.step_pending
    }

    /// The next piece of work: a slice of a long prompt, or one token.
    pub(super) fn advance(&mut self) {
        let Some(session) = self.session.as_mut() else {
            self.running = false;
            self.step_pending = false;
            return;
        };
        let pending = session.pending_len();
        if pending > PREFILL_SLICE {
            let total = session.prompt_tokens().len();
            if let Err(e) = session.prefill(PREFILL_SLICE) {
                if matches!(e, LlmError::GpuPending) {
                    return;
                }
                self.step_pending = false;
                self.failed(e);
                return;
            }
            let done = total - (pending - PREFILL_SLICE);
            self.send(Event::Status(format!(
                "reading the prompt: {done} of {total} tokens"
            )));
            return;
        }
        if !self.step() {
            return;
        }
        if std::mem::take(&mut self.step_pending)
            && self
                .session
                .as_ref()
                .is_some_and(|s| s.finished().is_none())
        {
            self.send(Event::Paused);
        }
    }

    /// One forward pass of the current session; false while its results are on their way (a
    /// GPU step in the browser: the next poll asks again).
    pub(super) fn step(&mut self) -> bool {
        let Some(session) = self.session.as_mut() else {
            self.running = false;
            return true;
        };
        // Only the CPU backend shares the cores with the frames (the GPU's pacing is its own).
        let paced = self
            .pacer
            .clone()
            .filter(|_| !self.on_gpu && self.remote.is_none());
        if self.step_started.is_none()
            && let Some(p) = &paced
        {
            p.cpu_step_started();
        }
        let started = *self.step_started.get_or_insert_with(web_time::Instant::now);
        let result = session.step();
        if matches!(result, Err(LlmError::GpuPending)) {
            return false;
        }
        self.step_started = None;
        if let Some(p) = &paced {
            let rest = p.cpu_rest(started.elapsed());
            self.rest_until = (!rest.is_zero()).then(|| web_time::Instant::now() + rest);
        }
        match result {
            Ok(Some(step)) => {
                let seconds = started.elapsed().as_secs_f32();
                let stop = step.stop;
                let logits = session.last_logits().to_vec();
                self.send(Event::Token {
                    step: Box::new(step),
                    logits,
                    seconds,
                });
                if let Some(reason) = stop {
                    self.running = false;
                    self.send(Event::Finished(reason));
                }
            }
            Ok(None) => {
                self.running = false;
                if let Some(reason) = session.finished() {
                    self.send(Event::Finished(reason));
                }
            }
            Err(e) => self.failed(e),
        }
        true
    }

    /// A step or a prompt slice failed: the session ends with the error. On the GPU (a lost
    /// device, a rejected kernel, a stall that Stop gave up on) it says so and carries on with
    /// the CPU.
    fn failed(&mut self, e: LlmError) {
        self.running = false;
        self.session = None;
        if self.on_gpu && matches!(e, LlmError::Gpu(_)) {
            // Back to the CPU first, then the error (Disconnected readies the view, which
            // would hide an error sent before it).
            self.on_gpu = false;
            self.send(Event::Disconnected);
            self.send(Event::GpuFailed(format!(
                "{e}; switched to the CPU backend (press Generate again)"
            )));
        } else {
            self.send(Event::Error(e.to_string()));
        }
    }

    /// Probe the server; generation goes there once it answers (natively now, in the browser
    /// from the connection's task). Stop cancels the probe through the shared token.
    fn connect(&mut self, config: remote::RemoteConfig) {
        self.send(Event::Status(format!(
            "connecting to {}",
            remote::shown_url(&config.url)
        )));
        let token = self.fresh_wait(false);
        self.connecting = super::remote::connect(config, &self.events, &token);
        self.settle_connect();
    }

    /// A new token for the wait about to start (a probe, or a remote `answer`), which the
    /// Worker's Stop and Reset cancel from the UI thread while this one is inside the wait. The
    /// wait before it ends here: in the browser an answer still streams in the connection's
    /// task when the next Generate comes, and the newest request replaces it.
    fn fresh_wait(&self, answer: bool) -> llm::CancelToken {
        let token = llm::CancelToken::default();
        if let Ok(mut w) = self.wait.lock() {
            w.token.cancel();
            *w = Wait {
                token: token.clone(),
                answer,
            };
        }
        // A Stop sent between this command's check and now cancelled the wait before this
        // one: it stops this one too.
        if self.stopped_since(self.taken) {
            token.cancel();
        }
        token
    }

    /// A Connect's link becomes the backend once its server answered; one whose probe failed or
    /// was stopped is dropped.
    pub(super) fn settle_connect(&mut self) {
        match self.connecting.as_ref().map(RemoteLink::answered) {
            Some(Some(true)) => {
                self.drop_session();
                self.remote = self.connecting.take();
            }
            Some(Some(false)) => self.connecting = None,
            _ => {}
        }
    }

    /// Generate on the remote server (natively blocking this engine thread, in the browser in
    /// the connection's task); Stop cancels through the shared token.
    fn generate_remote(&mut self, request: &GenerationRequest) {
        let token = self.fresh_wait(true);
        let Some(link) = self.remote.as_mut() else {
            return;
        };
        if !link.answer(request, &token, &self.events) {
            self.remote = None;
            self.send(Event::Disconnected);
            self.send(Event::Error(
                "the connection to the remote server ended; Connect again".into(),
            ));
        }
    }
}

/// Why a prompt is refused before it is tokenized: longer than `max_tokens` tokens of
/// `llm::tokenizer::MAX_TOKEN_BYTES` could be (a pasted book would hold the engine, and Stop,
/// while it is read).
fn too_long_to_read(prompt: &str, max_tokens: usize) -> Option<String> {
    llm::tokenizer::too_many_bytes_for(prompt, max_tokens).then(|| {
        format!(
            "the prompt is {} bytes; the live scene reads at most {max_tokens} tokens (far fewer \
             bytes). Shorten it: nothing was cut.",
            prompt.len()
        )
    })
}

/// Why the scene cannot draw a model of this shape (its activation texture and 3D world are
/// sized by it), or `None`: the bounds a remote trace is held to.
fn too_big_to_draw(c: &llm::LlamaConfig) -> Option<String> {
    use llm::trace::{
        MAX_TRACE_ACTIVATIONS, MAX_TRACE_HEADS, MAX_TRACE_LAYER_HEADS, MAX_TRACE_LAYERS,
        MAX_TRACE_WIDTH,
    };
    let over = [
        ("layers", c.n_layer, MAX_TRACE_LAYERS),
        ("MLP neurons a layer", c.n_ff, MAX_TRACE_WIDTH),
        ("embedding values", c.n_embd, MAX_TRACE_WIDTH),
        ("attention heads", c.n_head, MAX_TRACE_HEADS),
        (
            "MLP neurons in all its layers",
            c.n_layer.saturating_mul(c.n_ff),
            MAX_TRACE_ACTIVATIONS,
        ),
        (
            "attention heads in all its layers",
            c.n_layer.saturating_mul(c.n_head),
            MAX_TRACE_LAYER_HEADS,
        ),
    ]
    .into_iter()
    .find(|(_, n, most)| n > most)?;
    Some(format!(
        "this model has {} {}; the scene draws at most {}",
        over.1, over.0, over.2
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_and_prompts_past_what_the_scene_takes_are_refused_up_front() {
        let mut c = llm::LlamaConfig {
            n_layer: 30,
            n_embd: 576,
            n_ff: 1536,
            n_head: 9,
            n_kv_head: 3,
            head_dim: 64,
            rope_dim: 64,
            rope_base: 10_000.0,
            rms_eps: 1e-5,
            vocab_size: 49_152,
            context_length: 8192,
        };
        assert_eq!(too_big_to_draw(&c), None);
        c.n_ff = 1_000_000;
        let why = too_big_to_draw(&c).expect("a million neurons a layer");
        assert!(why.contains("1000000 MLP neurons"), "{why}");
        c.n_ff = 1536;
        c.n_layer = 129;
        assert!(too_big_to_draw(&c).is_some_and(|w| w.contains("129 layers")));
        // Each size within its bound, their product past the world's.
        (c.n_layer, c.n_ff) = (128, 16_384);
        assert!(too_big_to_draw(&c).is_some_and(|w| w.contains("in all its layers")));

        let bytes = 512 * llm::tokenizer::MAX_TOKEN_BYTES;
        assert_eq!(too_long_to_read(&"a".repeat(bytes), 512), None);
        let why = too_long_to_read(&"a".repeat(bytes + 1), 512).expect("too long");
        assert!(why.contains("nothing was cut"), "{why}");
    }
}
