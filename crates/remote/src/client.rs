//! The HTTP client behind `RemoteConfig` (native: reqwest on tokio; in the browser: reqwest on
//! fetch, timers from the page). Probing, streaming generation for the three APIs, embeddings;
//! Cloud Run auth, cold starts, retries, cancel.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::{Either, select};
use serde_json::{Value, json};
use web_time::Instant;

use super::api::{
    ApiKind, Capabilities, RemoteConfig, RemoteError, RemoteEvent, RemoteStep, RemoteSummary,
    ServerInfo, shown_url, stop_from_finish,
};
use super::stream::{NdjsonParser, SseData, SseParser};
use super::token::{automatic_token_refused, command_token};
use llm::{CancelToken, GenerationRequest, StopReason, TraceStep};

/// Where the bearer token came from (only a command's can be refreshed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenSource {
    Given,
    Env,
    Command,
    None,
}

pub struct RemoteClient {
    config: RemoteConfig,
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    source: TokenSource,
    api: Option<ApiKind>,
    model: Option<String>,
}

impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Wait `d` without blocking: tokio's timer natively, the page's `setTimeout` in the browser.
#[cfg(not(target_arch = "wasm32"))]
pub async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

#[cfg(target_arch = "wasm32")]
pub async fn sleep(d: Duration) {
    use wasm_bindgen::prelude::*;
    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_name = setTimeout)]
        fn set_timeout(callback: &js_sys::Function, ms: i32) -> JsValue;
    }
    let ms = d.as_millis().min(i32::MAX as u128) as i32;
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// `fut`, looking up once a second while it is pending: Stop (`cancel`) ends the wait, and so
/// does an error from `tick`, called each second with the time waited so far.
async fn ticking<F: std::future::Future + Unpin>(
    mut fut: F,
    cancel: &CancelToken,
    mut tick: impl FnMut(Duration) -> Result<(), RemoteError>,
) -> Result<F::Output, RemoteError> {
    let mut waited = Duration::ZERO;
    loop {
        match select(fut, Box::pin(sleep(Duration::from_secs(1)))).await {
            Either::Left((out, _)) => return Ok(out),
            Either::Right((_, pending)) => {
                fut = pending;
                if cancel.is_cancelled() {
                    return Err(RemoteError::Cancelled);
                }
                waited += Duration::from_secs(1);
                tick(waited)?;
            }
        }
    }
}

/// The most of an error body read (its first 300 characters are shown).
const ERROR_BODY_BYTES: usize = 64 << 10;
/// The most of a JSON answer read (probes: /api/info, /api/tags, /v1/models, ...).
const JSON_BODY_BYTES: usize = 4 << 20;
/// The most of an embedding answer read.
const EMBED_BODY_BYTES: usize = 16 << 20;

/// A response body, at most `cap` bytes: past it, the start (`truncate`) or an error.
async fn read_capped(
    response: reqwest::Response,
    cap: usize,
    truncate: bool,
) -> Result<Vec<u8>, RemoteError> {
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RemoteError::Dropped {
            received: 0,
            reason: e.without_url().to_string(),
        })?;
        if out.len() + chunk.len() > cap {
            if truncate {
                out.extend_from_slice(&chunk[..cap - out.len()]);
                return Ok(out);
            }
            return Err(RemoteError::Protocol(format!(
                "the answer is longer than {cap} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn is_retryable(status: u16) -> bool {
    matches!(status, 429 | 503 | 504)
}

/// Exponential backoff with jitter: ~0.5 s, 1 s, 2 s, ... times a factor in [0.5, 1.5).
fn backoff(attempt: u32) -> Duration {
    let nanos = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let jitter = 0.5 + (nanos.wrapping_mul(6364136223846793005) >> 40) as f64 / (1u64 << 24) as f64;
    Duration::from_secs_f64(0.5 * 2f64.powi(attempt as i32) * jitter)
}

impl RemoteClient {
    pub fn new(config: RemoteConfig) -> Result<Self, RemoteError> {
        let base = config.base()?;
        let (token, source) = match (&config.token, std::env::var("SAMEMATH_REMOTE_TOKEN")) {
            (Some(t), _) if !t.trim().is_empty() => {
                (Some(t.trim().to_string()), TokenSource::Given)
            }
            // Automatic tokens (the environment's, a command's, gcloud's) only go where they
            // belong: Cloud Run, hosts the user allowed, loopback.
            _ if automatic_token_refused(&base).is_some() => (None, TokenSource::None),
            (_, Ok(t)) if !t.trim().is_empty() => (Some(t.trim().to_string()), TokenSource::Env),
            _ => match command_token(base.starts_with("https://")) {
                Some(t) => (Some(t), TokenSource::Command),
                None => (None, TokenSource::None),
            },
        };
        let http = reqwest::Client::builder();
        // (In the browser, fetch owns connections.)
        #[cfg(not(target_arch = "wasm32"))]
        let http = http
            .connect_timeout(Duration::from_secs(15))
            .tcp_nodelay(true);
        let http = http.build().map_err(|e| RemoteError::Connect {
            url: shown_url(&base),
            reason: e.to_string(),
        })?;
        Ok(Self {
            api: config.api,
            model: config.model.clone(),
            config,
            base,
            http,
            token,
            source,
        })
    }

    pub fn api(&self) -> Option<ApiKind> {
        self.api
    }

    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn connect_error(&self, e: reqwest::Error) -> RemoteError {
        // (reqwest names the whole URL, query included: the error says `url` instead.)
        let e = e.without_url();
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason = format!("{reason}: {s}");
            source = s.source();
        }
        // A browser reports a refused connection and a CORS refusal alike, as a failed fetch.
        // (Its text is the JS error with a stack trace: the first line says it.)
        if cfg!(target_arch = "wasm32") {
            let first = reason
                .lines()
                .next()
                .unwrap_or_default()
                .replace("JsValue(", "");
            reason = format!(
                "{first}. The browser could not reach it: the server is down, or it does not \
                 allow this page's origin (CORS). Start samemath serve with --cors '*' (or this \
                 page's origin); for Ollama set OLLAMA_ORIGINS to this page's origin"
            );
        }
        RemoteError::Connect {
            url: shown_url(&self.base),
            reason,
        }
    }

    /// Send a request (GET without a body, else POST JSON) until the response headers arrive:
    /// a fresh token once on 401/403, backoff on 429/503/504, a status each second while
    /// waiting (cold start), the first-byte timeout, cancel.
    async fn send(
        &mut self,
        path: &str,
        body: Option<&Value>,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(RemoteEvent),
    ) -> Result<reqwest::Response, RemoteError> {
        let started = Instant::now();
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            let mut req = match body {
                Some(b) => self.http.post(self.url(path)).json(b),
                None => self.http.get(self.url(path)),
            };
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let first_byte_timeout = self.config.first_byte_timeout;
            let base = &self.base;
            let sent = ticking(Box::pin(req.send()), cancel, |_| {
                let waited = started.elapsed();
                if waited >= first_byte_timeout {
                    return Err(RemoteError::Timeout {
                        url: shown_url(base),
                        secs: waited.as_secs(),
                    });
                }
                on_event(RemoteEvent::Status(format!(
                    "waking the service: {} s",
                    waited.as_secs()
                )));
                Ok(())
            })
            .await?;
            let response = sent.map_err(|e| self.connect_error(e))?;
            let status = response.status().as_u16();
            if response.status().is_success() {
                return Ok(response);
            }
            if matches!(status, 401 | 403) {
                if !refreshed && self.source == TokenSource::Command {
                    refreshed = true;
                    self.token = command_token(self.base.starts_with("https://"));
                    on_event(RemoteEvent::Status("refreshing the identity token".into()));
                    continue;
                }
                if self.source == TokenSource::None
                    && let Some(why) = automatic_token_refused(&self.base)
                {
                    on_event(RemoteEvent::Status(format!(
                        "no automatic token sent: {why}; give one for this URL (--token, the \
                         field) or allow the host in $SAMEMATH_TOKEN_HOSTS"
                    )));
                }
                return Err(RemoteError::Unauthorized {
                    url: shown_url(&self.base),
                    status,
                });
            }
            if is_retryable(status) && attempt < self.config.max_retries {
                attempt += 1;
                let wait = backoff(attempt - 1);
                on_event(RemoteEvent::Status(format!(
                    "the service answered {status}: retrying in {:.1} s ({attempt} of {})",
                    wait.as_secs_f64(),
                    self.config.max_retries
                )));
                sleep(wait).await;
                if cancel.is_cancelled() {
                    return Err(RemoteError::Cancelled);
                }
                continue;
            }
            // An error body: its start is enough to say what went wrong.
            let text = read_capped(response, ERROR_BODY_BYTES, true)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let body: String = text.chars().take(300).collect();
            return Err(RemoteError::Status {
                url: shown_url(&self.url(path)),
                status,
                body,
            });
        }
    }

    async fn get_json(&mut self, path: &str) -> Result<Value, RemoteError> {
        let cancel = CancelToken::default();
        let r = self.send(path, None, &cancel, &mut |_| {}).await?;
        let bytes = read_capped(r, JSON_BODY_BYTES, false).await?;
        let text = String::from_utf8_lossy(&bytes);
        serde_json::from_str(&text).map_err(|_| {
            RemoteError::Protocol(format!(
                "{path} did not answer JSON: {:?}",
                text.chars().take(80).collect::<String>()
            ))
        })
    }

    /// Find out what the server is (unless the config says) and what it offers.
    pub async fn probe(&mut self) -> Result<ServerInfo, RemoteError> {
        let kinds = match self.api {
            Some(k) => vec![k],
            None => vec![ApiKind::Samemath, ApiKind::Ollama, ApiKind::OpenAi],
        };
        let mut last = None;
        for kind in kinds {
            match self.probe_as(kind).await {
                Ok(info) => {
                    self.api = Some(info.api);
                    if self.model.is_none() {
                        self.model = info.models.first().cloned();
                    }
                    if let Some(m) = &self.model
                        && !info.models.is_empty()
                        && !info.models.contains(m)
                    {
                        return Err(RemoteError::Unsupported(format!(
                            "the server has no model {m:?}; it has {}",
                            info.models.join(", ")
                        )));
                    }
                    return Ok(info);
                }
                Err(e @ (RemoteError::Connect { .. } | RemoteError::Unauthorized { .. })) => {
                    return Err(e);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(RemoteError::Unsupported("no API kind to try".into())))
    }

    async fn probe_as(&mut self, kind: ApiKind) -> Result<ServerInfo, RemoteError> {
        match kind {
            ApiKind::Samemath => {
                let v = self.get_json("/api/info").await?;
                let Some(version) = v["samemath"].as_str() else {
                    return Err(RemoteError::Protocol("not a samemath server".into()));
                };
                Ok(ServerInfo {
                    api: kind,
                    version: Some(version.to_string()),
                    models: v["models"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|m| m.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default(),
                    capabilities: Capabilities {
                        logprobs: true,
                        embeddings: true,
                        traces: true,
                    },
                })
            }
            ApiKind::Ollama => {
                let v = self.get_json("/api/version").await?;
                let version = v["version"]
                    .as_str()
                    .ok_or_else(|| RemoteError::Protocol("no version in /api/version".into()))?
                    .to_string();
                let tags = self.get_json("/api/tags").await?;
                let models = tags["models"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|m| m["name"].as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(ServerInfo {
                    api: kind,
                    // logprobs arrived in Ollama 0.12.11.
                    capabilities: Capabilities {
                        logprobs: version_at_least(&version, [0, 12, 11]),
                        embeddings: true,
                        traces: false,
                    },
                    version: Some(version),
                    models,
                })
            }
            ApiKind::OpenAi => {
                let v = self.get_json("/v1/models").await?;
                let models: Vec<String> = v["data"]
                    .as_array()
                    .ok_or_else(|| RemoteError::Protocol("no data in /v1/models".into()))?
                    .iter()
                    .filter_map(|m| m["id"].as_str().map(String::from))
                    .collect();
                Ok(ServerInfo {
                    api: kind,
                    version: None,
                    models,
                    capabilities: Capabilities {
                        logprobs: true,
                        embeddings: true,
                        traces: false,
                    },
                })
            }
        }
    }

    /// Stream an answer. Steps and statuses go to `on_event` as they come; the summary at the
    /// end. A mid-stream error line is an error; what arrived before it stays with the caller.
    pub async fn generate(
        &mut self,
        request: &GenerationRequest,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(RemoteEvent),
    ) -> Result<RemoteSummary, RemoteError> {
        if self.api.is_none() || self.model.is_none() {
            self.probe().await?;
        }
        let api = self.api.unwrap_or(ApiKind::OpenAi);
        let model = self.model.clone().unwrap_or_default();
        let s = &request.sampling;
        let (path, body) = match (api, request.chat) {
            (ApiKind::Samemath, _) => (
                "/api/trace",
                serde_json::to_value(request).unwrap_or_default(),
            ),
            (ApiKind::Ollama, chat) => {
                let options = json!({
                    "temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p,
                    "seed": s.seed, "num_predict": request.max_tokens,
                    "repeat_penalty": s.repeat_penalty,
                });
                let mut b = json!({"model": model, "stream": true, "options": options,
                                   "logprobs": true, "top_logprobs": 5});
                if chat {
                    b["messages"] = json!([{"role": "user", "content": request.prompt}]);
                    ("/api/chat", b)
                } else {
                    b["prompt"] = json!(request.prompt);
                    b["raw"] = json!(true);
                    ("/api/generate", b)
                }
            }
            (ApiKind::OpenAi, true) => (
                "/v1/chat/completions",
                json!({"model": model, "stream": true, "max_tokens": request.max_tokens,
                       "temperature": s.temperature, "top_p": s.top_p, "seed": s.seed,
                       "logprobs": true, "top_logprobs": 5,
                       "messages": [{"role": "user", "content": request.prompt}]}),
            ),
            (ApiKind::OpenAi, false) => (
                "/v1/completions",
                json!({"model": model, "stream": true, "max_tokens": request.max_tokens,
                       "temperature": s.temperature, "top_p": s.top_p, "seed": s.seed,
                       "logprobs": 5, "prompt": request.prompt}),
            ),
        };
        let started = Instant::now();
        let response = self.send(path, Some(&body), cancel, on_event).await?;
        let mut summary = RemoteSummary {
            first_byte_secs: started.elapsed().as_secs_f64(),
            ..RemoteSummary::default()
        };
        let mut bytes = response.bytes_stream();
        let mut ndjson = NdjsonParser::default();
        let mut sse = SseParser::default();
        let mut finished = false;
        let idle_limit = self.config.first_byte_timeout;
        while !finished {
            // The next chunk, looking up each second: Stop works while a server stalls, and a
            // server silent for the first-byte timeout is dropped.
            if cancel.is_cancelled() {
                return Err(RemoteError::Cancelled);
            }
            let received = summary.tokens;
            let next = ticking(bytes.next(), cancel, |idle| {
                if idle >= idle_limit {
                    return Err(RemoteError::Dropped {
                        received,
                        reason: format!("the server sent nothing for {} s", idle.as_secs()),
                    });
                }
                Ok(())
            })
            .await?;
            let chunk = match next {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    return Err(RemoteError::Dropped {
                        received: summary.tokens,
                        reason: e.without_url().to_string(),
                    });
                }
                None => break,
            };
            let records: Vec<Value> = if api == ApiKind::OpenAi {
                let mut out = Vec::new();
                for d in sse.push(&chunk)? {
                    match d {
                        SseData::Json(v) => out.push(v),
                        SseData::Done => finished = true,
                    }
                }
                out
            } else {
                ndjson.push(&chunk)?
            };
            for v in records {
                finished |= self.record(api, &v, &mut summary, on_event)?;
                if finished {
                    break;
                }
                // A server that goes on past what was asked is cut at its first extra token.
                if summary.tokens > request.max_tokens {
                    on_event(RemoteEvent::Status(format!(
                        "the server sent more than the {} tokens asked for: cut there",
                        request.max_tokens
                    )));
                    summary.stop = Some(StopReason::MaxTokens);
                    finished = true;
                    break;
                }
            }
        }
        if !finished {
            let tail: Vec<Value> = if api == ApiKind::OpenAi {
                sse.finish()?
                    .into_iter()
                    .filter_map(|d| match d {
                        SseData::Json(v) => Some(v),
                        SseData::Done => None,
                    })
                    .collect()
            } else {
                ndjson.finish()?.into_iter().collect()
            };
            for v in tail {
                finished |= self.record(api, &v, &mut summary, on_event)?;
            }
        }
        if !finished && summary.stop.is_none() {
            return Err(RemoteError::Dropped {
                received: summary.tokens,
                reason: "the stream ended before the server said it was done".into(),
            });
        }
        Ok(summary)
    }

    /// Fold one streamed record into the summary; true when it ends the answer.
    fn record(
        &self,
        api: ApiKind,
        v: &Value,
        summary: &mut RemoteSummary,
        on_event: &mut dyn FnMut(RemoteEvent),
    ) -> Result<bool, RemoteError> {
        if let Some(e) = v.get("error") {
            let msg = e["message"].as_str().or(e.as_str()).map(String::from);
            return Err(RemoteError::Server(msg.unwrap_or_else(|| e.to_string())));
        }
        let mut emit = |summary: &mut RemoteSummary, step: RemoteStep| {
            summary.tokens += 1;
            summary.text.push_str(&step.text);
            on_event(RemoteEvent::Step(Box::new(step)));
        };
        let top = |alts: &Value| -> Vec<(String, f32)> {
            alts.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| {
                            Some((
                                t["token"].as_str()?.to_string(),
                                t["logprob"].as_f64()? as f32,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        match api {
            ApiKind::Samemath if v.get("prompt").is_some() => {
                on_event(crate::api::prompt_event(&v["prompt"])?);
                Ok(false)
            }
            ApiKind::Samemath => {
                let step: TraceStep = serde_json::from_value(v.clone())
                    .map_err(|e| RemoteError::Protocol(format!("bad trace step: {e}")))?;
                // The scene indexes what it draws by the trace's own shape: check it here.
                if let Some(trace) = &step.trace {
                    trace.check_shape().map_err(|e| {
                        RemoteError::Protocol(format!("trace step {}: {e}", step.step))
                    })?;
                }
                let logprob = step.trace.as_ref().and_then(|t| {
                    t.top_k
                        .iter()
                        .find(|c| c.id == step.sampled.id)
                        .map(|c| c.prob.ln())
                });
                let top_logprobs = step
                    .trace
                    .as_ref()
                    .map(|t| {
                        t.top_k
                            .iter()
                            .take(5)
                            .map(|c| (c.piece.clone(), c.prob.ln()))
                            .collect()
                    })
                    .unwrap_or_default();
                let stop = step.stop;
                emit(
                    summary,
                    RemoteStep {
                        index: step.step,
                        text: step.text,
                        token: Some(step.sampled),
                        logprob,
                        top_logprobs,
                        trace: step.trace,
                        stop,
                    },
                );
                if let Some(s) = stop {
                    summary.stop = Some(s);
                    return Ok(true);
                }
                Ok(false)
            }
            ApiKind::Ollama => {
                let text = v["message"]["content"]
                    .as_str()
                    .or(v["response"].as_str())
                    .unwrap_or("");
                let lps = v["logprobs"].as_array();
                let first = lps.and_then(|a| a.first());
                if !text.is_empty() || first.is_some() {
                    let step = text_step(
                        summary.tokens,
                        text,
                        first.and_then(|l| l["logprob"].as_f64()).map(|x| x as f32),
                        first.map(|l| top(&l["top_logprobs"])).unwrap_or_default(),
                    );
                    emit(summary, step);
                }
                if v["done"].as_bool() == Some(true) {
                    let ns = |k: &str| v[k].as_f64().map(|x| x / 1e9);
                    if let (Some(n), Some(d)) = (v["eval_count"].as_f64(), ns("eval_duration"))
                        && d > 0.0
                    {
                        summary.server_tokens_per_sec = Some(n / d);
                    }
                    summary.load_secs = ns("load_duration");
                    summary.stop = Some(stop_from_finish(
                        v["done_reason"].as_str().unwrap_or("stop"),
                    ));
                    return Ok(true);
                }
                Ok(false)
            }
            ApiKind::OpenAi => {
                let choice = &v["choices"][0];
                let text = choice["delta"]["content"]
                    .as_str()
                    .or(choice["text"].as_str())
                    .unwrap_or("");
                // Chat: logprobs.content[]; completions: logprobs.tokens / token_logprobs.
                let entry = choice["logprobs"]["content"].get(0).cloned();
                let (logprob, top_logprobs) = match &entry {
                    Some(e) => (
                        e["logprob"].as_f64().map(|x| x as f32),
                        top(&e["top_logprobs"]),
                    ),
                    None => (
                        choice["logprobs"]["token_logprobs"][0]
                            .as_f64()
                            .map(|x| x as f32),
                        choice["logprobs"]["top_logprobs"][0]
                            .as_object()
                            .map(|m| {
                                let mut v: Vec<(String, f32)> = m
                                    .iter()
                                    .filter_map(|(k, l)| Some((k.clone(), l.as_f64()? as f32)))
                                    .collect();
                                v.sort_by(|a, b| b.1.total_cmp(&a.1));
                                v
                            })
                            .unwrap_or_default(),
                    ),
                };
                if !text.is_empty() || logprob.is_some() {
                    let step = text_step(summary.tokens, text, logprob, top_logprobs);
                    emit(summary, step);
                }
                if let Some(reason) = choice["finish_reason"].as_str() {
                    summary.stop = Some(stop_from_finish(reason));
                }
                Ok(false)
            }
        }
    }

    /// An embedding vector for `text` (what the server calls one; see its docs).
    pub async fn embed(&mut self, text: &str) -> Result<Vec<f32>, RemoteError> {
        if self.api.is_none() || self.model.is_none() {
            self.probe().await?;
        }
        let model = self.model.clone().unwrap_or_default();
        let cancel = CancelToken::default();
        let (path, body) = match self.api {
            Some(ApiKind::OpenAi) => ("/v1/embeddings", json!({"model": model, "input": text})),
            _ => ("/api/embed", json!({"model": model, "input": text})),
        };
        let r = self.send(path, Some(&body), &cancel, &mut |_| {}).await?;
        let bytes = read_capped(r, EMBED_BODY_BYTES, false).await?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| RemoteError::Protocol(format!("{path}: {e}")))?;
        let vec = v["embeddings"][0]
            .as_array()
            .or(v["data"][0]["embedding"].as_array())
            .ok_or_else(|| RemoteError::Protocol(format!("{path}: no embedding in the answer")))?;
        Ok(vec
            .iter()
            .filter_map(|x| x.as_f64().map(|x| x as f32))
            .collect())
    }
}

/// A step as Ollama and OpenAI-compatible servers give it: text and log-probabilities, no id,
/// no trace.
fn text_step(
    index: usize,
    text: &str,
    logprob: Option<f32>,
    top_logprobs: Vec<(String, f32)>,
) -> RemoteStep {
    RemoteStep {
        index,
        text: text.to_string(),
        token: None,
        logprob,
        top_logprobs,
        trace: None,
        stop: None,
    }
}

/// "0.12.11" >= [0, 12, 11] (pre-release suffixes ignored).
fn version_at_least(version: &str, want: [u64; 3]) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let got = [
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    ];
    got >= want
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_backoff() {
        assert!(version_at_least("0.12.11", [0, 12, 11]));
        assert!(version_at_least("0.13.0-rc1", [0, 12, 11]));
        assert!(!version_at_least("0.12.3", [0, 12, 11]));
        for attempt in 0..4 {
            let d = backoff(attempt).as_secs_f64();
            let base = 0.5 * 2f64.powi(attempt as i32);
            assert!(d >= base * 0.5 && d < base * 1.5, "{d}");
        }
    }
}
