//! What every route reads: the options, the model once loaded (or why it is not), the slots.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::http::StatusCode;
use axum::response::Response;
use llm::{LlmTokenizer, Model};
use tokio::sync::Semaphore;

use crate::args::ServeOptions;
use crate::log::Entry;
use crate::wire::{error, unavailable};

/// The name the model is served under.
pub const MODEL_NAME: &str = "smollm2-135m-instruct";

pub(crate) struct Loaded {
    pub(crate) model: Arc<Model>,
    /// What generates: the CPU engine (`model`) or the GPU backend.
    pub(crate) compute: Arc<dyn llm::Backend>,
    pub(crate) tokenizer: Arc<LlmTokenizer>,
    pub(crate) load_secs: f64,
}

pub(crate) struct ServerState {
    pub(crate) options: ServeOptions,
    pub(crate) loaded: OnceLock<Loaded>,
    pub(crate) load_error: OnceLock<String>,
    pub(crate) slots: Arc<Semaphore>,
    /// Requests holding or waiting for a slot.
    pub(crate) in_system: AtomicUsize,
    /// When SIGTERM came: from then on no new request gets a slot, and answers still
    /// generating `CUT_AFTER` later end with an error line instead of being killed mid-line.
    pub(crate) stopping: OnceLock<Instant>,
}

/// How long answers may go on after SIGTERM (Cloud Run kills the instance 10 s after it).
pub(crate) const CUT_AFTER: std::time::Duration = std::time::Duration::from_secs(7);

impl ServerState {
    /// Past the drain time: generation must stop now.
    pub(crate) fn must_cut(&self) -> bool {
        self.stopping
            .get()
            .is_some_and(|t| t.elapsed() >= CUT_AFTER)
    }
}

pub(crate) type Shared = Arc<ServerState>;

pub(crate) fn loaded(state: &ServerState) -> Result<&Loaded, Response> {
    match (state.loaded.get(), state.load_error.get()) {
        (Some(l), _) => Ok(l),
        // The reason names files and paths: it goes to the log (and the operator), not to
        // whoever asks over the network.
        (None, Some(_)) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model could not be loaded; the server's log says why",
        )),
        (None, None) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model is loading",
        )),
    }
}

/// How long a request that comes while the model loads waits for it: the request that woke a
/// Cloud Run instance (whose default startup probe only sees the port open) gets its answer,
/// not a 503; past this, a 503 with `Retry-After`.
pub(crate) const LOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The loaded model, waiting up to `LOAD_WAIT` while it loads (not past a SIGTERM).
pub(crate) async fn ready(state: &ServerState) -> Result<&Loaded, Response> {
    let started = Instant::now();
    loop {
        match loaded(state) {
            Ok(l) => return Ok(l),
            Err(_)
                if state.load_error.get().is_none()
                    && state.stopping.get().is_none()
                    && started.elapsed() < LOAD_WAIT =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(_) if state.load_error.get().is_none() => {
                return Err(unavailable("the model is loading".to_string()));
            }
            Err(r) => return Err(r),
        }
    }
}

/// Find (fetching on first use) and load the model on a thread of its own; /health says when.
pub(crate) fn spawn_loader(state: Shared) {
    std::thread::spawn(move || {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(&state)));
        if let Err(panic) = caught {
            let why = panic_message(&*panic);
            Entry::error(format!("loading the model failed (a bug): {why}")).emit();
            let _ = state
                .load_error
                .set(format!("loading the model failed: {why}"));
        }
    });
}

/// Find (fetching on first use) and load the model; sets `loaded` or `load_error`.
fn load(state: &ServerState) {
    let started = Instant::now();
    let mut progress = |m: &str| Entry::info(m).emit();
    let result = llm::fetch::ensure_model(state.options.model.as_deref(), &mut progress)
        .and_then(|p| Model::load(&p).map(|(m, t)| (m, t, p)));
    match result {
        Ok((m, t, path)) => {
            let model = Arc::new(m);
            let compute: Arc<dyn llm::Backend> = if state.options.gpu {
                match llm::gpu::GpuContext::new()
                    .and_then(|ctx| llm::gpu::GpuModel::load(&path, ctx, llm::gpu::DEFAULT_CONTEXT))
                {
                    Ok(g) => Arc::new(g),
                    Err(e) if state.options.require_gpu => {
                        Entry::error(format!("{e}; the GPU is required (--require-gpu)")).emit();
                        let _ = state.load_error.set(format!("no usable GPU: {e}"));
                        return;
                    }
                    Err(e) => {
                        Entry::warning(format!("{e}; generating on the CPU instead")).emit();
                        model.clone()
                    }
                }
            } else {
                model.clone()
            };
            Entry::info(format!("generating on {}", compute.describe())).emit();
            // The line goes out before the model is set: from the set on, /health answers 200,
            // and whoever waits for that (a test, the container's contract check) may read the
            // log at once and must find the line there.
            let load_secs = started.elapsed().as_secs_f64();
            Entry::info(format!("model loaded in {load_secs:.1} s")).emit();
            let _ = state.loaded.set(Loaded {
                model,
                compute,
                tokenizer: Arc::new(t),
                load_secs,
            });
        }
        Err(e) => {
            Entry::error(format!("cannot load the model: {e}")).emit();
            let _ = state.load_error.set(e.to_string());
        }
    }
}

/// A panic's message, for the line that reports it.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
