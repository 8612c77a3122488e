//! What every route reads: the options, the model once loaded (or why it is not), the slots.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// The backend's fault (a lost GPU) has been logged: once, however often /health is asked.
    pub(crate) fault_logged: AtomicBool,
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
        // A lost GPU fails every step for good: every route, /health too, says so, and on
        // Cloud Run the liveness probe on /health then replaces the instance.
        (Some(l), _) => match l.compute.fault() {
            None => Ok(l),
            Some(why) => {
                if !state.fault_logged.swap(true, Ordering::Relaxed) {
                    Entry::error(format!(
                        "{why}; no request can be answered any more (/health answers 503)"
                    ))
                    .emit();
                }
                Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this instance lost its GPU and cannot answer; the server's log says why",
                ))
            }
        },
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
        let loading = state.loaded.get().is_none() && state.load_error.get().is_none();
        match loaded(state) {
            Ok(l) => return Ok(l),
            Err(_)
                if loading && state.stopping.get().is_none() && started.elapsed() < LOAD_WAIT =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(_) if loading => {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::extract::State;

    use super::*;
    use crate::log::LogFormat;

    fn options() -> ServeOptions {
        ServeOptions {
            port: 0,
            host: std::net::Ipv4Addr::LOCALHOST.into(),
            model: None,
            concurrency: 1,
            queue: 0,
            cors: None,
            api_key: None,
            max_body_bytes: 1 << 20,
            answer_time: Duration::from_secs(60),
            max_prompt_tokens: 512,
            threads: None,
            gpu: true,
            require_gpu: true,
            log_format: LogFormat::Text,
        }
    }

    async fn message(r: Response) -> String {
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        String::from_utf8_lossy(&body).into_owned()
    }

    /// The GPU backend's device goes away under a running server: /health turns 503 (Cloud
    /// Run's liveness probe then replaces the instance), and a request gets the same 503 at
    /// once, not after the wait for a model that is still loading.
    #[test]
    fn a_lost_gpu_turns_health_and_every_request_to_503() {
        let (model, tokenizer) = testkit::model::model();
        let path = llm::fetch::model_path(None);
        let ctx = llm::gpu::GpuContext::new().expect("a GPU adapter (lavapipe here)");
        let gpu = llm::gpu::GpuModel::load(&path, ctx, 64).unwrap();
        let device = gpu.context().device.clone();
        let state: Shared = Arc::new(ServerState {
            options: options(),
            loaded: OnceLock::from(Loaded {
                model: model.clone(),
                compute: Arc::new(gpu),
                tokenizer: tokenizer.clone(),
                load_secs: 0.0,
            }),
            load_error: OnceLock::new(),
            slots: Arc::new(Semaphore::new(1)),
            in_system: AtomicUsize::new(0),
            stopping: OnceLock::new(),
            fault_logged: AtomicBool::new(false),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let health = crate::meta::health(State(state.clone())).await;
            assert_eq!(health.status(), StatusCode::OK);
            assert!(ready(&state).await.is_ok());

            device.destroy();
            // wgpu calls a destroyed device's lost callback at its next poll.
            let _ = device.poll(wgpu::PollType::Poll);

            let health = crate::meta::health(State(state.clone())).await;
            assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
            let text = message(health).await;
            assert!(text.contains("lost its GPU"), "{text}");
            assert!(
                state.fault_logged.load(Ordering::Relaxed),
                "the fault is logged"
            );
            let refused = tokio::time::timeout(Duration::from_secs(5), ready(&state))
                .await
                .expect("a request is refused at once, not held as if the model were loading")
                .err()
                .expect("no request is taken on a lost GPU");
            assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        });
    }
}
