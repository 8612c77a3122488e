//! `samemath serve`: the model over HTTP, ready for Cloud Run (listens on 0.0.0.0:$PORT).
//! Ollama-compatible (/api/generate, /api/chat, /api/embed, /api/tags, /api/show,
//! /api/version), OpenAI-compatible (/v1/chat/completions, /v1/models), and /api/trace, which
//! streams every internal of each step (the same JSON as `samemath trace`). /health answers 503
//! until the model is loaded. Bounded concurrency with a bounded queue (503 beyond it), a body
//! size limit, optional CORS and API key; on SIGTERM it stops accepting and gives in-flight
//! streams up to 10 s.

// Handler helpers return the HTTP error itself (`Err(Response)`), once, at the edge.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use crate::llm::{
    GenerationRequest, LlmTokenizer, Model, RecordOptions, SamplingParams, Session, Step,
    StopReason,
};
use crate::remote::TraceStep;

/// The name the model is served under.
pub const MODEL_NAME: &str = "smollm2-135m-instruct";

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub port: u16,
    pub model: Option<PathBuf>,
    /// Requests generating at once.
    pub concurrency: usize,
    /// Requests waiting beyond those; more get 503.
    pub queue: usize,
    /// `Access-Control-Allow-Origin` for browsers (`*` or an origin); none by default.
    pub cors: Option<String>,
    /// Required as `Authorization: Bearer KEY` (or `x-api-key`) on every route but /health.
    pub api_key: Option<String>,
    pub max_body_bytes: usize,
    pub threads: Option<usize>,
    /// Generate with the GPU backend (its own wgpu device) when one is usable.
    pub gpu: bool,
}

struct Loaded {
    model: Arc<Model>,
    /// What generates: the CPU engine (`model`) or the GPU backend.
    compute: Arc<dyn crate::llm::Backend>,
    tokenizer: Arc<LlmTokenizer>,
    load_secs: f64,
}

struct ServerState {
    options: ServeOptions,
    loaded: OnceLock<Loaded>,
    load_error: OnceLock<String>,
    slots: Arc<Semaphore>,
    /// Requests holding or waiting for a slot.
    in_system: AtomicUsize,
}

type Shared = Arc<ServerState>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

/// Run until SIGTERM / Ctrl-C. The model loads in the background; /health says when.
pub fn run(options: ServeOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(options))
}

async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([0, 0, 0, 0], options.port));
    let state: Shared = Arc::new(ServerState {
        slots: Arc::new(Semaphore::new(options.concurrency.max(1))),
        in_system: AtomicUsize::new(0),
        loaded: OnceLock::new(),
        load_error: OnceLock::new(),
        options: options.clone(),
    });
    let loader = state.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut progress = |m: &str| eprintln!("samemath serve: {m}");
        let result =
            crate::llm::fetch::ensure_model(loader.options.model.as_deref(), &mut progress)
                .and_then(|p| Model::load(&p).map(|(m, t)| (m, t, p)));
        match result {
            Ok((m, t, path)) => {
                let model = Arc::new(m);
                let compute: Arc<dyn crate::llm::Backend> = if loader.options.gpu {
                    match crate::llm::gpu::GpuContext::new().and_then(|ctx| {
                        crate::llm::gpu::GpuModel::load(
                            &path,
                            ctx,
                            crate::llm::gpu::DEFAULT_CONTEXT,
                        )
                    }) {
                        Ok(g) => Arc::new(g),
                        Err(e) => {
                            eprintln!("samemath serve: {e}; generating on the CPU instead");
                            model.clone()
                        }
                    }
                } else {
                    model.clone()
                };
                eprintln!("samemath serve: generating on {}", compute.describe());
                let _ = loader.loaded.set(Loaded {
                    model,
                    compute,
                    tokenizer: Arc::new(t),
                    load_secs: started.elapsed().as_secs_f64(),
                });
                eprintln!(
                    "samemath serve: model loaded in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                eprintln!("samemath serve: cannot load the model: {e}");
                let _ = loader.load_error.set(e.to_string());
            }
        }
    });
    let app = router(state.clone());
    // No Nagle: a small streamed chunk must not wait for the client's delayed ACK (~40 ms).
    let listener = tokio::net::TcpListener::bind(addr).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    eprintln!("samemath serve: listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    eprintln!("samemath serve: stopped");
    Ok(())
}

/// SIGTERM (Cloud Run) or Ctrl-C: stop accepting; in-flight streams get 10 s, then exit.
async fn shutdown_signal() {
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
    eprintln!("samemath serve: shutting down, draining for up to 10 s");
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(10));
        eprintln!("samemath serve: drain time over, exiting");
        std::process::exit(0);
    });
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/info", get(info))
        .route("/api/version", get(version))
        .route("/api/tags", get(tags))
        .route("/api/show", post(show))
        .route("/api/generate", post(ollama_generate))
        .route("/api/chat", post(ollama_chat))
        .route("/api/embed", post(embed))
        .route("/api/trace", post(trace))
        .route("/v1/models", get(openai_models))
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/embeddings", post(embed))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(state.options.max_body_bytes))
        .with_state(state)
}

/// CORS (preflight and headers) and the optional API key.
async fn guard(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let cors = state.options.cors.clone();
    if request.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        add_cors(r.headers_mut(), cors.as_deref());
        return r;
    }
    if let Some(key) = &state.options.api_key
        && request.uri().path() != "/health"
    {
        let h = request.headers();
        let bearer = h
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let x_key = h.get("x-api-key").and_then(|v| v.to_str().ok());
        if bearer != Some(key.as_str()) && x_key != Some(key.as_str()) {
            let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong API key");
            add_cors(r.headers_mut(), cors.as_deref());
            return r;
        }
    }
    let mut r = next.run(request).await;
    add_cors(r.headers_mut(), cors.as_deref());
    r
}

fn add_cors(headers: &mut HeaderMap, origin: Option<&str>) {
    let Some(origin) = origin.and_then(|o| HeaderValue::from_str(o).ok()) else {
        return;
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, x-api-key"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
}

fn loaded(state: &ServerState) -> Result<&Loaded, Response> {
    match (state.loaded.get(), state.load_error.get()) {
        (Some(l), _) => Ok(l),
        (None, Some(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.clone())),
        (None, None) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model is loading",
        )),
    }
}

async fn health(State(state): State<Shared>) -> Response {
    match loaded(&state) {
        Ok(_) => axum::Json(json!({"status": "ok"})).into_response(),
        Err(r) => r,
    }
}

async fn info(State(state): State<Shared>) -> Response {
    axum::Json(json!({
        "samemath": env!("CARGO_PKG_VERSION"),
        "models": [MODEL_NAME],
        "loaded": state.loaded.get().is_some(),
        "capabilities": {"logprobs": true, "embeddings": true, "traces": true},
        "concurrency": state.options.concurrency,
        "compute": state.loaded.get().map(|l| l.compute.describe()),
    }))
    .into_response()
}

async fn version() -> Response {
    axum::Json(json!({"version": format!("0.12.11-samemath-{}", env!("CARGO_PKG_VERSION"))}))
        .into_response()
}

fn model_details(l: Option<&Loaded>) -> Value {
    let cfg = l.map(|l| &l.model.config);
    json!({
        "format": "gguf", "family": "llama", "families": ["llama"],
        "parameter_size": "135M", "quantization_level": "Q4_1",
        "context_length": cfg.map(|c| c.context_length),
        "embedding_length": cfg.map(|c| c.n_embd),
        "block_count": cfg.map(|c| c.n_layer),
    })
}

async fn tags(State(state): State<Shared>) -> Response {
    axum::Json(json!({"models": [{
        "name": MODEL_NAME, "model": MODEL_NAME,
        "modified_at": "2024-11-01T00:00:00Z", "size": 98_362_432u64,
        "digest": crate::llm::fetch::MODEL_SHA256,
        "details": model_details(state.loaded.get()),
    }]}))
    .into_response()
}

async fn show(State(state): State<Shared>) -> Response {
    axum::Json(json!({
        "modelfile": "", "parameters": "", "template": "ChatML (the GGUF's chat template)",
        "details": model_details(state.loaded.get()),
        "model_info": {"general.architecture": "llama"},
        "capabilities": ["completion", "embedding"],
        "samemath": {"embedding": "mean of the prompt's token embedding rows, unit length",
                     "traces": "/api/trace"},
    }))
    .into_response()
}

/// A slot to generate in, or a 503 when the queue is full. Dropping it frees the slot.
struct Ticket {
    state: Shared,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.state.in_system.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn ticket(state: &Shared) -> Result<Ticket, Response> {
    let limit = state.options.concurrency.max(1) + state.options.queue;
    let before = state.in_system.fetch_add(1, Ordering::SeqCst);
    if before >= limit {
        state.in_system.fetch_sub(1, Ordering::SeqCst);
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "busy: {} requests generating and {} waiting; try again",
                state.options.concurrency, state.options.queue
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(r);
    }
    match state.slots.clone().acquire_owned().await {
        Ok(permit) => Ok(Ticket {
            state: state.clone(),
            _permit: permit,
        }),
        Err(_) => {
            state.in_system.fetch_sub(1, Ordering::SeqCst);
            Err(error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))
        }
    }
}

/// Sampling from Ollama `options` or OpenAI top-level fields (greedy unless asked).
fn sampling(v: &Value) -> (SamplingParams, Option<usize>) {
    let o = if v["options"].is_object() {
        &v["options"]
    } else {
        v
    };
    let mut s = SamplingParams::greedy();
    if let Some(t) = o["temperature"].as_f64() {
        s.temperature = t as f32;
    }
    if let Some(k) = o["top_k"].as_u64() {
        s.top_k = k as usize;
    }
    if let Some(p) = o["top_p"].as_f64() {
        s.top_p = p as f32;
    }
    if let Some(seed) = o["seed"].as_u64() {
        s.seed = seed;
    }
    if let Some(r) = o["repeat_penalty"].as_f64() {
        s.repeat_penalty = r as f32;
    }
    let max = o["num_predict"]
        .as_u64()
        .or(v["max_tokens"].as_u64())
        .or(v["max_completion_tokens"].as_u64())
        .map(|n| n as usize);
    (s.sanitized(), max)
}

/// ChatML for a list of `{role, content}` messages, with the template's default system line
/// when the first message is not a system message.
fn chat_text(tokenizer: &LlmTokenizer, messages: &Value) -> Result<String, Response> {
    let Some(list) = messages.as_array().filter(|l| !l.is_empty()) else {
        return Err(error(StatusCode::BAD_REQUEST, "messages: a non-empty list"));
    };
    let mut pairs = Vec::new();
    for m in list {
        let (Some(role), Some(content)) = (m["role"].as_str(), m["content"].as_str()) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "each message needs a string role and content",
            ));
        };
        pairs.push((role.to_string(), content.to_string()));
    }
    Ok(tokenizer.chat_messages(&pairs))
}

/// A plain-text generation request (the prompt already in its template), recording nothing.
fn text_request(prompt: String, sampling: SamplingParams, max: Option<usize>) -> GenerationRequest {
    GenerationRequest {
        prompt,
        chat: false,
        max_tokens: max.unwrap_or(256).clamp(1, 4096),
        sampling,
        record: RecordOptions::OFF,
    }
}

/// How both APIs ask to be answered: streamed or not, with how many log-probabilities.
struct AnswerOptions {
    stream: bool,
    logprobs: bool,
    top_n: usize,
}

impl AnswerOptions {
    fn read(v: &Value, stream_by_default: bool) -> Self {
        Self {
            stream: v["stream"].as_bool().unwrap_or(stream_by_default),
            logprobs: v["logprobs"].as_bool().unwrap_or(false),
            top_n: v["top_logprobs"].as_u64().unwrap_or(0).min(20) as usize,
        }
    }
}

/// Wait for a slot (or get the 503), then start generating.
async fn start(
    state: &Shared,
    l: &Loaded,
    request: GenerationRequest,
) -> Result<mpsc::Receiver<Result<GenItem, String>>, Response> {
    let ticket = ticket(state).await?;
    Ok(spawn_generation(l, request, ticket))
}

/// One generated token with what the APIs report about it.
struct GenItem {
    step: Step,
    prompt_len: usize,
    /// The sampled token's natural-log probability (temperature 1).
    logprob: f32,
    /// The 5 best tokens and their log-probabilities.
    top: Vec<(String, f32)>,
}

/// Generate on a blocking thread; each step (or the error) goes through the channel.
fn spawn_generation(
    l: &Loaded,
    request: GenerationRequest,
    ticket: Ticket,
) -> mpsc::Receiver<Result<GenItem, String>> {
    let (tx, rx) = mpsc::channel(64);
    let (model, tokenizer) = (l.compute.clone(), l.tokenizer.clone());
    let threads = ticket.state.options.threads;
    tokio::task::spawn_blocking(move || {
        let _ticket = ticket;
        let run = || {
            let mut session = match Session::new(model, tokenizer, &request) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e.to_string()));
                    return;
                }
            };
            let prompt_len = session.prompt_tokens().len();
            loop {
                match session.step() {
                    Ok(Some(step)) => {
                        let item = GenItem {
                            top: top_logprobs(session.last_logits(), session.tokenizer(), 5),
                            logprob: logprob_of(session.last_logits(), step.token.id),
                            prompt_len,
                            step,
                        };
                        if tx.blocking_send(Ok(item)).is_err() {
                            return; // the client went away
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e.to_string()));
                        return;
                    }
                }
            }
        };
        match threads.and_then(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().ok()) {
            Some(pool) => pool.install(run),
            None => run(),
        }
    });
    rx
}

/// The `k` best tokens with natural-log probabilities (first entry: the best).
fn top_logprobs(logits: &[f32], tokenizer: &LlmTokenizer, k: usize) -> Vec<(String, f32)> {
    crate::llm::model::top_k(logits, k)
        .into_iter()
        .map(|(id, _, p)| (tokenizer.piece(id), p.max(1e-30).ln()))
        .collect()
}

fn logprob_of(logits: &[f32], id: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    logits
        .get(id as usize)
        .map_or(f32::NEG_INFINITY, |l| l - max - sum.ln())
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn ndjson_line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn stream_body(rx: mpsc::Receiver<Bytes>, content_type: &'static str) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut r = Body::from_stream(stream).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Ollama's two generation routes share this: prompt text in, NDJSON (or one object) out.
async fn ollama_common(state: Shared, body: Value, chat: bool) -> Response {
    let l = match loaded(&state) {
        Ok(l) => l,
        Err(r) => return r,
    };
    if let Some(m) = body["model"].as_str()
        && !m.is_empty()
        && m != MODEL_NAME
        && !m.starts_with("smollm2")
    {
        return error(
            StatusCode::NOT_FOUND,
            format!("model {m:?} not found; this server has {MODEL_NAME}"),
        );
    }
    let (sampling, max) = sampling(&body);
    let prompt = if chat {
        match chat_text(&l.tokenizer, &body["messages"]) {
            Ok(t) => t,
            Err(r) => return r,
        }
    } else {
        let p = body["prompt"].as_str().unwrap_or("");
        if body["raw"].as_bool() == Some(true) {
            p.to_string()
        } else {
            l.tokenizer.chat_prompt(p)
        }
    };
    let AnswerOptions {
        stream,
        logprobs,
        top_n,
    } = AnswerOptions::read(&body, true);
    let mut rx = match start(&state, l, text_request(prompt, sampling, max)).await {
        Ok(rx) => rx,
        Err(r) => return r,
    };
    let started = Instant::now();
    let load_ns = (l.load_secs * 1e9) as u64;
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
    let model = body["model"].as_str().unwrap_or(MODEL_NAME).to_string();
    let tokenizer = l.tokenizer.clone();
    let collect = tokio::spawn(async move {
        let mut text = String::new();
        let mut count = 0u64;
        let mut prompt_count = 0usize;
        let mut first_token = None;
        let mut done_reason = "stop";
        let mut all_logprobs = Vec::new();
        while let Some(item) = rx.recv().await {
            let GenItem {
                step,
                prompt_len,
                logprob,
                top,
            } = match item {
                Ok(x) => x,
                Err(e) => {
                    let line = ndjson_line(&json!({"error": e}));
                    let _ = out_tx.send(line).await;
                    return Err(e);
                }
            };
            prompt_count = prompt_len;
            first_token.get_or_insert_with(Instant::now);
            count += 1;
            if step.stop == Some(StopReason::MaxTokens) {
                done_reason = "length";
            }
            let piece = step.text.clone();
            text.push_str(&piece);
            let lp = logprobs.then(|| {
                let alts: Vec<Value> = top
                    .iter()
                    .take(top_n)
                    .map(|(t, l)| json!({"token": t, "logprob": l}))
                    .collect();
                json!([{"token": tokenizer.piece(step.token.id), "logprob": logprob,
                        "top_logprobs": alts}])
            });
            if let Some(lp) = &lp {
                all_logprobs.push(lp[0].clone());
            }
            if stream && !piece.is_empty() {
                let mut v = json!({"model": model, "created_at": now_rfc3339(), "done": false});
                if chat {
                    v["message"] = json!({"role": "assistant", "content": piece});
                } else {
                    v["response"] = json!(piece);
                }
                if let Some(lp) = lp {
                    v["logprobs"] = lp;
                }
                if out_tx.send(ndjson_line(&v)).await.is_err() {
                    return Err("the client went away".into());
                }
            }
        }
        let total = started.elapsed().as_nanos() as u64;
        let eval_ns = first_token
            .map_or(0, |t| t.elapsed().as_nanos() as u64)
            .max(1);
        let mut last = json!({
            "model": model, "created_at": now_rfc3339(), "done": true, "done_reason": done_reason,
            "total_duration": total, "load_duration": load_ns, "prompt_eval_count": prompt_count,
            "prompt_eval_duration": total.saturating_sub(eval_ns), "eval_count": count,
            "eval_duration": eval_ns,
        });
        if stream {
            if chat {
                last["message"] = json!({"role": "assistant", "content": ""});
            } else {
                last["response"] = json!("");
            }
            let _ = out_tx.send(ndjson_line(&last)).await;
        } else {
            if chat {
                last["message"] = json!({"role": "assistant", "content": text});
            } else {
                last["response"] = json!(text);
            }
            if logprobs {
                last["logprobs"] = json!(all_logprobs);
            }
        }
        Ok(last)
    });
    finish(stream, out_rx, collect, "application/x-ndjson").await
}

/// Streamed: the channel as the body. Not streamed: the collected object, or the error.
async fn finish(
    stream: bool,
    out_rx: mpsc::Receiver<Bytes>,
    collect: tokio::task::JoinHandle<Result<Value, String>>,
    content_type: &'static str,
) -> Response {
    if stream {
        return stream_body(out_rx, content_type);
    }
    drop(out_rx);
    match collect.await {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn ollama_generate(State(state): State<Shared>, body: Bytes) -> Response {
    match parse_body(&body) {
        Ok(v) => ollama_common(state, v, false).await,
        Err(r) => r,
    }
}

async fn ollama_chat(State(state): State<Shared>, body: Bytes) -> Response {
    match parse_body(&body) {
        Ok(v) => ollama_common(state, v, true).await,
        Err(r) => r,
    }
}

fn parse_body(body: &[u8]) -> Result<Value, Response> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    if !v.is_object() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        ));
    }
    Ok(v)
}

/// Mean of the input's token embedding rows, unit length (documented in /api/show).
async fn embed(State(state): State<Shared>, body: Bytes) -> Response {
    let l = match loaded(&state) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let inputs: Vec<String> = match &v["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "input: a string or a list of strings",
            );
        }
    };
    let mut out = Vec::new();
    for text in &inputs {
        let ids = match l.tokenizer.encode(text) {
            Ok(ids) if !ids.is_empty() => ids,
            Ok(_) => return error(StatusCode::BAD_REQUEST, "an input is empty"),
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let mut mean = vec![0f32; l.model.config.n_embd];
        for id in &ids {
            if let Ok(row) = l.model.embedding_row(*id) {
                for (m, r) in mean.iter_mut().zip(row) {
                    *m += r / ids.len() as f32;
                }
            }
        }
        let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        mean.iter_mut().for_each(|x| *x /= norm);
        out.push(mean);
    }
    axum::Json(json!({
        "model": MODEL_NAME,
        "embeddings": out,
        "object": "list",
        "data": out.iter().enumerate().map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e})).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// Every internal of each step, NDJSON, one `TraceStep` per generated token.
async fn trace(State(state): State<Shared>, body: Bytes) -> Response {
    let l = match loaded(&state) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let mut request: GenerationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected a generation request (prompt, chat, max_tokens, sampling, record): {e}"
                ),
            );
        }
    };
    request.record = RecordOptions::FULL;
    request.max_tokens = request.max_tokens.clamp(1, 1024);
    let mut rx = match start(&state, l, request).await {
        Ok(rx) => rx,
        Err(r) => return r,
    };
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            let line = match item {
                Ok(GenItem { step, .. }) => {
                    let s = TraceStep {
                        step: step.index,
                        sampled: step.token,
                        stop: step.stop,
                        text: step.text,
                        trace: step.trace,
                    };
                    serde_json::to_value(&s).unwrap_or_default()
                }
                Err(e) => json!({"error": e}),
            };
            if out_tx.send(ndjson_line(&line)).await.is_err() {
                return;
            }
        }
    });
    stream_body(out_rx, "application/x-ndjson")
}

async fn openai_models() -> Response {
    axum::Json(json!({"object": "list", "data": [
        {"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "samemath"}
    ]}))
    .into_response()
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

async fn openai_chat(State(state): State<Shared>, body: Bytes) -> Response {
    let l = match loaded(&state) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let prompt = match chat_text(&l.tokenizer, &v["messages"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (mut sampling, max) = sampling(&v);
    if v["temperature"].is_null() {
        sampling.temperature = 0.0;
    }
    let AnswerOptions {
        stream,
        logprobs,
        top_n,
    } = AnswerOptions::read(&v, false);
    let mut rx = match start(&state, l, text_request(prompt, sampling, max)).await {
        Ok(rx) => rx,
        Err(r) => return r,
    };
    let id = format!("chatcmpl-{}", std::process::id());
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tokenizer = l.tokenizer.clone();
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
    let collect = tokio::spawn(async move {
        let mut text = String::new();
        let mut content_lps = Vec::new();
        let mut finish = "stop";
        let mut count = 0;
        let mut prompt_tokens = 0;
        let chunk = |delta: Value, lp: Option<Value>, finish: Option<&str>| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created,
                   "model": MODEL_NAME, "choices": [{"index": 0, "delta": delta,
                   "logprobs": lp.map(|l| json!({"content": [l]})), "finish_reason": finish}]})
        };
        if stream {
            let _ = out_tx
                .send(sse(&chunk(
                    json!({"role": "assistant", "content": ""}),
                    None,
                    None,
                )))
                .await;
        }
        while let Some(item) = rx.recv().await {
            let GenItem {
                step,
                prompt_len,
                logprob,
                top,
            } = match item {
                Ok(x) => x,
                Err(e) => {
                    let _ = out_tx.send(sse(&json!({"error": {"message": e}}))).await;
                    return Err(e);
                }
            };
            prompt_tokens = prompt_len;
            count += 1;
            if step.stop == Some(StopReason::MaxTokens) {
                finish = "length";
            }
            if step.stop == Some(StopReason::EndToken) {
                continue;
            }
            let piece = tokenizer.piece(step.token.id);
            let lp = logprobs.then(|| {
                let alts: Vec<Value> = top
                    .iter()
                    .take(top_n)
                    .map(|(t, l)| json!({"token": t, "logprob": l, "bytes": t.as_bytes()}))
                    .collect();
                json!({"token": piece, "logprob": logprob, "bytes": piece.as_bytes(),
                       "top_logprobs": alts})
            });
            text.push_str(&step.text);
            if let Some(l) = &lp {
                content_lps.push(l.clone());
            }
            if stream
                && out_tx
                    .send(sse(&chunk(json!({"content": step.text}), lp, None)))
                    .await
                    .is_err()
            {
                return Err("the client went away".into());
            }
        }
        if stream {
            let _ = out_tx
                .send(sse(&chunk(json!({}), None, Some(finish))))
                .await;
            let _ = out_tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
        }
        Ok(
            json!({"id": id, "object": "chat.completion", "created": created,
                "model": MODEL_NAME, "choices": [{"index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs.then(|| json!({"content": content_lps})),
                "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": count,
                          "total_tokens": prompt_tokens + count}}),
        )
    });
    finish(stream, out_rx, collect, "text/event-stream").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        let d = now_rfc3339();
        assert_eq!(d.len(), 20, "{d}");
        assert!(d.starts_with("20") && d.ends_with('Z'));
    }

    #[test]
    fn sampling_reads_both_dialects() {
        let (s, max) =
            sampling(&json!({"options": {"temperature": 0.7, "num_predict": 9, "seed": 3}}));
        assert_eq!((s.temperature, max, s.seed), (0.7, Some(9), 3));
        let (s, max) = sampling(&json!({"temperature": 0.0, "max_tokens": 4}));
        assert_eq!((s.temperature, max), (0.0, Some(4)));
    }
}
