//! `samemath serve`: the model over HTTP, ready for Cloud Run (listens on 0.0.0.0:$PORT there,
//! on loopback elsewhere unless asked).
//! Ollama-compatible (/api/generate, /api/chat, /api/embed, /api/tags, /api/show,
//! /api/version), OpenAI-compatible (/v1/chat/completions, /v1/models), and /api/trace, which
//! streams every internal of each step (the same JSON as `samemath trace`). /health answers 503
//! until the model is loaded. Bounded concurrency with a bounded queue (503 beyond it), a body
//! size limit, optional CORS and API key; on SIGTERM it stops accepting and gives in-flight
//! streams 7 s, then cuts them with an error line. Every request is bounded (`args::limits`).
//! The log (`log`) is text, or JSON lines for Cloud Logging, with a line per finished generation
//! request (`reqlog`).

// Handler helpers return the HTTP error itself (`Err(Response)`), once, at the edge.
#![allow(clippy::result_large_err)]

mod args;
mod embed;
mod generate;
mod guard;
mod listen;
pub mod log;
mod meta;
mod ollama;
mod openai;
mod reqlog;
mod slots;
mod state;
mod stops;
mod trace;
mod wire;

pub use args::{Compute, ServeArgs, ServeOptions};
pub use state::MODEL_NAME;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use tokio::sync::Semaphore;

use crate::log::Entry;
use crate::state::{ServerState, Shared};

/// Run until SIGTERM / Ctrl-C. The model loads in the background; /health says when.
pub fn run(options: ServeOptions) -> anyhow::Result<()> {
    log::init(options.log_format);
    log::find_project();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(options))
}

async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let addr = SocketAddr::from((options.host, options.port));
    let state: Shared = Arc::new(ServerState {
        slots: Arc::new(Semaphore::new(options.concurrency.max(1))),
        in_system: AtomicUsize::new(0),
        loaded: OnceLock::new(),
        load_error: OnceLock::new(),
        stopping: OnceLock::new(),
        fault_logged: Default::default(),
        options: options.clone(),
    });
    state::spawn_loader(state.clone());
    let app = router(state.clone());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    // The address bound, not the one asked for: with `--port 0` the system picks the port,
    // and the log is where whoever started the server learns it.
    let bound = listener.local_addr().unwrap_or(addr);
    Entry::info(format!("listening on http://{bound}")).emit();
    listen::serve_until(listener, app, shutdown_signal(state.clone())).await?;
    Entry::info("stopped").emit();
    Ok(())
}

/// SIGTERM (Cloud Run) or Ctrl-C: stop accepting; in-flight answers get `CUT_AFTER` to finish,
/// then end with an error line; the process exits 0 once they are out (at the latest after 9 s,
/// inside Cloud Run's 10).
async fn shutdown_signal(state: Shared) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    let _ = state.stopping.set(std::time::Instant::now());
    state.slots.close();
    Entry::info(format!(
        "shutting down: answers in progress get {} s to finish",
        state::CUT_AFTER.as_secs()
    ))
    .emit();
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(9));
        Entry::warning("drain time over, exiting").emit();
        std::process::exit(0);
    });
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(meta::health))
        .route("/api/info", get(meta::info))
        .route("/api/version", get(meta::version))
        .route("/api/tags", get(meta::tags))
        .route("/api/show", post(meta::show))
        .route("/api/generate", post(ollama::ollama_generate))
        .route("/api/chat", post(ollama::ollama_chat))
        .route("/api/embed", post(embed::embed))
        .route("/api/trace", post(trace::trace))
        .route("/v1/models", get(meta::openai_models))
        .route("/v1/chat/completions", post(openai::openai_chat))
        .route("/v1/embeddings", post(embed::embed))
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .layer(DefaultBodyLimit::max(state.options.max_body_bytes))
        // Outermost: a guard's refusal is logged too.
        .layer(middleware::from_fn(reqlog::log_requests))
        .with_state(state)
}
