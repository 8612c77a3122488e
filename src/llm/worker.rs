//! The engine the app drives without ever blocking a frame: commands in (load, generate, step,
//! stop, reset), events out (progress, the prompt's tokens, each generated token with its trace
//! and logits, the end). On native builds it runs on its own thread; on wasm (no threads) the
//! same state machine runs one step per `poll`, between frames.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use super::backend::Backend;
use super::error::LlmError;
use super::fetch;
use super::gpu::{self, GpuContext, GpuModel};
use super::model::Model;
use super::session::{GenerationRequest, Session, Step, StopReason};
use super::tokenizer::LlmTokenizer;
use super::trace::TokenInfo;

/// What the app asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// Find (fetching on first use) and load the model.
    Load,
    /// A new session from this request, generating until it stops.
    Generate(GenerationRequest),
    /// One forward pass: continues the current session, or starts one from this request.
    Step(GenerationRequest),
    /// Pause after the current step; Step continues from there.
    Stop,
    /// Forget the session.
    Reset,
    /// Generate on a remote server from now on (probes it first).
    Connect(crate::remote::RemoteConfig),
    /// Back to the local engine (on the CPU; also leaves a remote server).
    UseLocal,
    /// Run the local model's forward pass on this GPU device (in the app: the renderer's).
    UseGpu(GpuContext),
}

/// The GPU backend the engine switched to.
#[derive(Debug, Clone)]
pub struct GpuBackendInfo {
    /// "adapter name (graphics API)".
    pub adapter: String,
    /// The device the kernels run on: the app compares it with the renderer's.
    pub device: wgpu::Device,
    pub shared_with_renderer: bool,
}

/// What the engine reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// Progress while finding or loading the model.
    Status(String),
    Loaded {
        model: Arc<Model>,
        tokenizer: Arc<LlmTokenizer>,
        path: PathBuf,
    },
    /// A session started: its prompt tokens (after the template) and their embedding rows.
    Prompt {
        tokens: Vec<TokenInfo>,
        embeddings: Vec<Vec<f32>>,
    },
    /// One generated token; `logits` are the full distribution it was sampled from, `seconds`
    /// the time its forward pass took.
    Token {
        step: Box<Step>,
        logits: Vec<f32>,
        seconds: f32,
    },
    /// The session ended.
    Finished(StopReason),
    /// A remote server answered the probe: generation goes there now.
    Connected {
        url: String,
        info: crate::remote::ServerInfo,
        model: Option<String>,
    },
    /// Generation is local again, on the CPU.
    Disconnected,
    /// The local model now runs on the GPU.
    GpuReady(GpuBackendInfo),
    /// One token from a remote server (a full step with trace from `samemath serve`).
    RemoteStep(Box<crate::remote::RemoteStep>),
    /// The engine stopped stepping with the session still open (after Step, or Stop): Step or
    /// Generate continue it.
    Paused,
    Error(String),
}

/// Prompt tokens read per forward pass before the first token, so progress shows and Stop
/// lands between slices.
const PREFILL_SLICE: usize = 64;

/// A connected remote server: natively the client and the runtime it blocks on; in the
/// browser, the way to the task that owns the client.
#[cfg(not(target_arch = "wasm32"))]
type RemoteLink = (crate::remote::RemoteClient, tokio::runtime::Runtime);

#[cfg(target_arch = "wasm32")]
struct RemoteLink {
    requests: Sender<(GenerationRequest, crate::llm::CancelToken)>,
}

/// One answer from the remote server, its steps and end sent as the engine's events.
async fn answer_remote(
    client: &mut crate::remote::RemoteClient,
    request: &GenerationRequest,
    token: &crate::llm::CancelToken,
    events: &Sender<Event>,
) {
    use crate::remote::{RemoteError, RemoteEvent};
    let _ = events.send(Event::Prompt {
        tokens: Vec::new(),
        embeddings: Vec::new(),
    });
    let mut on_event = |e: RemoteEvent| {
        let _ = events.send(match e {
            RemoteEvent::Status(s) => Event::Status(s),
            RemoteEvent::Step(s) => Event::RemoteStep(s),
        });
    };
    let result = client.generate(request, token, &mut on_event).await;
    let _ = events.send(match result {
        Ok(summary) => Event::Finished(summary.stop.unwrap_or(StopReason::EndToken)),
        Err(RemoteError::Cancelled) => Event::Paused,
        Err(e) => Event::Error(e.to_string()),
    });
}

/// The state machine shared by the thread and the wasm slices.
struct Engine {
    model_path: Option<PathBuf>,
    /// Longest prompt (in tokens) this front end accepts.
    max_prompt_tokens: usize,
    /// One Step was asked for and has not produced its token yet.
    step_pending: bool,
    /// The remote backend, when connected, and what Stop cancels.
    remote: Option<RemoteLink>,
    stop: Arc<std::sync::Mutex<crate::llm::CancelToken>>,
    loaded: Option<(Arc<Model>, Arc<LlmTokenizer>)>,
    /// The GPU backend, once asked for; used while `on_gpu`.
    gpu: Option<Arc<GpuModel>>,
    on_gpu: bool,
    session: Option<Session>,
    /// Generating continuously (vs. waiting for Step).
    running: bool,
    /// When the step in progress began (in the browser a GPU step spans several polls).
    step_started: Option<web_time::Instant>,
    /// Browser build: the model file the page downloaded (the GPU backend uploads it too).
    #[cfg(target_arch = "wasm32")]
    model_bytes: Option<Arc<Vec<u8>>>,
    /// Browser build: the last download progress reported.
    #[cfg(target_arch = "wasm32")]
    last_status: String,
    events: Sender<Event>,
}

impl Engine {
    fn send(&self, event: Event) {
        // The app went away: nothing left to tell.
        let _ = self.events.send(event);
    }

    /// Browser build: the model comes from the page, which downloads it while the app starts.
    #[cfg(target_arch = "wasm32")]
    fn ensure_loaded(&mut self) -> bool {
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

    /// Browser build: whether `command` can run now, or waits for the page's download.
    #[cfg(target_arch = "wasm32")]
    fn ready_for(&mut self, command: &Command) -> bool {
        if self.loaded.is_some()
            || self.model_bytes.is_some()
            || self.remote.is_some()
            || matches!(
                command,
                Command::Connect(_) | Command::Stop | Command::Reset | Command::UseLocal
            )
        {
            return true;
        }
        match crate::web::download_pending() {
            Some(status) => {
                if status != self.last_status {
                    self.send(Event::Status(status.clone()));
                    self.last_status = status;
                }
                false
            }
            None => true,
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn ensure_loaded(&mut self) -> bool {
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
                self.send(Event::Prompt { tokens, embeddings });
                self.session = Some(session);
                true
            }
            Err(e) => {
                self.send(Event::Error(e.to_string()));
                false
            }
        }
    }

    /// Generate on the remote server (natively blocking this engine thread, in the browser in
    /// the connection's task); Stop cancels through the shared token.
    fn generate_remote(&mut self, request: &GenerationRequest) {
        let token = crate::llm::CancelToken::default();
        if let Ok(mut t) = self.stop.lock() {
            *t = token.clone();
        }
        let Some(link) = self.remote.as_mut() else {
            return;
        };
        #[cfg(not(target_arch = "wasm32"))]
        {
            let (client, runtime) = link;
            runtime.block_on(answer_remote(client, request, &token, &self.events));
        }
        #[cfg(target_arch = "wasm32")]
        if link.requests.send((request.clone(), token)).is_err() {
            self.remote = None;
            self.send(Event::Disconnected);
            self.send(Event::Error(
                "the connection to the remote server ended; Connect again".into(),
            ));
        }
    }

    fn handle(&mut self, command: Command) {
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
        match command {
            Command::Connect(config) => self.connect(config),
            Command::UseLocal => {
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
                if self.busy() {
                    self.running = false;
                    self.step_pending = false;
                    self.send(Event::Paused);
                }
            }
            Command::Reset => {
                self.running = false;
                self.step_pending = false;
                self.session = None;
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn connect(&mut self, config: crate::remote::RemoteConfig) {
        let url = config.url.clone();
        self.send(Event::Status(format!("connecting to {url}")));
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => return self.send(Event::Error(e.to_string())),
        };
        let result = crate::remote::RemoteClient::new(config).and_then(|mut client| {
            let info = runtime.block_on(client.probe())?;
            Ok((client, info))
        });
        match result {
            Ok((client, info)) => {
                let model = client.model().map(String::from);
                self.running = false;
                self.step_pending = false;
                self.session = None;
                self.remote = Some((client, runtime));
                self.send(Event::Connected { url, info, model });
            }
            Err(e) => self.send(Event::Error(e.to_string())),
        }
    }

    /// Browser build: the client lives in a task on the page's event loop; it probes, reports
    /// `Connected` (then generation goes there) or the error, and answers requests in turn.
    #[cfg(target_arch = "wasm32")]
    fn connect(&mut self, config: crate::remote::RemoteConfig) {
        let url = config.url.clone();
        self.send(Event::Status(format!("connecting to {url}")));
        let mut client = match crate::remote::RemoteClient::new(config) {
            Ok(c) => c,
            Err(e) => return self.send(Event::Error(e.to_string())),
        };
        let (requests, incoming) = channel::<(GenerationRequest, crate::llm::CancelToken)>();
        let events = self.events.clone();
        wasm_bindgen_futures::spawn_local(async move {
            match client.probe().await {
                Ok(info) => {
                    let model = client.model().map(String::from);
                    let _ = events.send(Event::Connected { url, info, model });
                }
                Err(e) => {
                    let _ = events.send(Event::Error(e.to_string()));
                    return;
                }
            }
            loop {
                match incoming.try_recv() {
                    Ok((request, token)) => {
                        answer_remote(&mut client, &request, &token, &events).await;
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => {
                        crate::remote::sleep(std::time::Duration::from_millis(30)).await;
                    }
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                }
            }
        });
        self.drop_session();
        self.remote = Some(RemoteLink { requests });
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
                        self.send(Event::Error(format!("{e}; the CPU backend runs instead")));
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
        };
        self.gpu = Some(gpu);
        self.on_gpu = true;
        self.send(Event::GpuReady(info));
    }

    /// Work is waiting: generating, or a Step not yet done.
    fn busy(&self) -> bool {
        self.running || self.step_pending
    }

    /// The next piece of work: a slice of a long prompt, or one token.
    fn advance(&mut self) {
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
                self.running = false;
                self.step_pending = false;
                self.session = None;
                self.send(Event::Error(e.to_string()));
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
    fn step(&mut self) -> bool {
        let Some(session) = self.session.as_mut() else {
            self.running = false;
            return true;
        };
        let started = *self.step_started.get_or_insert_with(web_time::Instant::now);
        let result = session.step();
        if matches!(result, Err(LlmError::GpuPending)) {
            return false;
        }
        self.step_started = None;
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
            Err(e) => {
                self.running = false;
                self.session = None;
                if self.on_gpu && matches!(e, LlmError::Gpu(_)) {
                    // A lost device or a rejected kernel: say so, carry on with the CPU.
                    // Back to the CPU first, then the error (Disconnected readies the view,
                    // which would hide an error sent before it).
                    self.on_gpu = false;
                    self.send(Event::Disconnected);
                    self.send(Event::Error(format!(
                        "{e}; switched to the CPU backend (press Generate again)"
                    )));
                } else {
                    self.send(Event::Error(e.to_string()));
                }
            }
        }
        true
    }
}

/// The app's handle on the engine.
pub struct Worker {
    commands: Sender<Command>,
    events: Receiver<Event>,
    /// Cancels a remote answer in flight (the engine thread is inside it, not reading commands).
    stop: Arc<std::sync::Mutex<crate::llm::CancelToken>>,
    /// wasm: the engine itself, stepped from `poll`, and the commands waiting for the model.
    #[cfg(target_arch = "wasm32")]
    inline: (
        Engine,
        Receiver<Command>,
        std::collections::VecDeque<Command>,
    ),
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Worker {
    /// Start the engine; `model_path` overrides the cached SmolLM2 file; `threads` sizes the
    /// engine's own thread pool for the matrix products (leave a core to the renderer).
    pub fn spawn(model_path: Option<PathBuf>, threads: usize) -> Worker {
        Self::spawn_with_limit(model_path, threads, usize::MAX)
    }

    /// As `spawn`, refusing prompts longer than `max_prompt_tokens` with a clear error.
    pub fn spawn_with_limit(
        model_path: Option<PathBuf>,
        threads: usize,
        max_prompt_tokens: usize,
    ) -> Worker {
        let (command_tx, command_rx) = channel();
        let (event_tx, event_rx) = channel();
        let stop = Arc::new(std::sync::Mutex::new(crate::llm::CancelToken::default()));
        let engine = Engine {
            remote: None,
            stop: stop.clone(),
            model_path,
            max_prompt_tokens,
            step_pending: false,
            loaded: None,
            gpu: None,
            on_gpu: false,
            session: None,
            running: false,
            step_started: None,
            #[cfg(target_arch = "wasm32")]
            model_bytes: None,
            #[cfg(target_arch = "wasm32")]
            last_status: String::new(),
            events: event_tx,
        };
        #[cfg(not(target_arch = "wasm32"))]
        {
            std::thread::Builder::new()
                .name("samemath-llm".into())
                .spawn(move || {
                    lower_priority();
                    match rayon::ThreadPoolBuilder::new()
                        .num_threads(threads.max(1))
                        .thread_name(|i| format!("samemath-llm-{i}"))
                        .start_handler(|_| lower_priority())
                        .build()
                    {
                        Ok(pool) => pool.install(|| run(engine, command_rx)),
                        Err(_) => run(engine, command_rx),
                    }
                })
                .map_err(|e| eprintln!("samemath: cannot start the LLM thread: {e}"))
                .ok();
            Worker {
                commands: command_tx,
                events: event_rx,
                stop,
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = threads;
            Worker {
                commands: command_tx,
                events: event_rx,
                stop,
                inline: (engine, command_rx, Default::default()),
            }
        }
    }

    /// Queue a command; the engine takes it between steps, so Stop lands within one step.
    pub fn send(&mut self, command: Command) {
        if matches!(command, Command::Stop | Command::Reset)
            && let Ok(t) = self.stop.lock()
        {
            t.cancel();
        }
        let _ = self.commands.send(command);
    }

    /// Events since the last call; never blocks (on wasm, runs at most one step first).
    pub fn poll(&mut self) -> Vec<Event> {
        #[cfg(target_arch = "wasm32")]
        {
            let (engine, commands, held) = &mut self.inline;
            held.extend(commands.try_iter());
            while let Some(c) = held.front() {
                if !engine.ready_for(c) {
                    break;
                }
                if let Some(c) = held.pop_front() {
                    engine.handle(c);
                }
            }
            if engine.busy() {
                engine.advance();
            }
        }
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }
}

/// Let frames win over the model when they compete for cores: on Linux the calling thread goes
/// to nice 10 (through `renice` on its thread id; no unsafe FFI). Elsewhere a no-op.
#[cfg(not(target_arch = "wasm32"))]
fn lower_priority() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()).map(String::from) else {
        return;
    };
    let _ = std::process::Command::new("renice")
        .args(["-n", "10", "-p", &tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The engine thread: commands first, then one step at a time while generating.
#[cfg(not(target_arch = "wasm32"))]
fn run(mut engine: Engine, commands: Receiver<Command>) {
    use std::sync::mpsc::TryRecvError;
    loop {
        let next = if engine.busy() {
            match commands.try_recv() {
                Ok(c) => Some(c),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        } else {
            match commands.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            }
        };
        if let Some(c) = next {
            engine.handle(c);
            continue;
        }
        engine.advance();
    }
}
