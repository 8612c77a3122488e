//! The HTTP client behind `RemoteConfig` (native: reqwest on tokio; in the browser: reqwest on
//! fetch, timers from the page). Probing, streaming generation for the three APIs, embeddings;
//! Cloud Run auth, cold starts, retries, cancel.

use futures_util::StreamExt;
use serde_json::{Value, json};
use web_time::Instant;

use super::api::{
    ApiKind, Capabilities, RemoteConfig, RemoteError, RemoteEvent, RemoteSummary, ServerInfo,
    hidden, shown_text, shown_url,
};
use super::records::{Record, Seen, embedding, record, shows_progress};
use super::stream::{
    LineSplitter, MAX_LINE_BYTES, MAX_TEXT_LINE_BYTES, NdjsonParser, SseData, SseParser,
};
use super::token::{automatic_token_refused, command_token};
use super::trace_line::{self, TraceLine};
use super::wait::{
    EMBED_BODY_BYTES, ERROR_BODY_BYTES, ERROR_BODY_WAIT, JSON_BODY_BYTES, Past, backoff,
    is_retryable, read_capped, sleep, ticking,
};
use llm::{CancelToken, GenerationRequest, StopReason};

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
            .connect_timeout(std::time::Duration::from_secs(15))
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
                // Stop ends the backoff too, within a second.
                ticking(Box::pin(sleep(wait)), cancel, |_| Ok(())).await?;
                if cancel.is_cancelled() {
                    return Err(RemoteError::Cancelled);
                }
                continue;
            }
            // An error body: its start is enough to say what went wrong.
            let text = match read_capped(
                response,
                ERROR_BODY_BYTES,
                ERROR_BODY_WAIT,
                Past::Cut,
                cancel,
            )
            .await
            {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(RemoteError::Cancelled) => return Err(RemoteError::Cancelled),
                Err(_) => String::new(),
            };
            return Err(RemoteError::Status {
                url: shown_url(&self.url(path)),
                status,
                body: shown_text(&text, 300),
            });
        }
    }

    async fn get_json(
        &mut self,
        path: &str,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(RemoteEvent),
    ) -> Result<Value, RemoteError> {
        let r = self.send(path, None, cancel, on_event).await?;
        let limit = self.config.first_byte_timeout;
        let bytes = read_capped(r, JSON_BODY_BYTES, limit, Past::Fail, cancel).await?;
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
        self.probe_watched(&CancelToken::default(), &mut |_| {})
            .await
    }

    /// `probe`, which `cancel` stops within a second and which reports its waits to `on_event`
    /// ("waking the service: N s" while a serverless endpoint starts).
    pub async fn probe_watched(
        &mut self,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(RemoteEvent),
    ) -> Result<ServerInfo, RemoteError> {
        let kinds = match self.api {
            Some(k) => vec![k],
            None => vec![ApiKind::Samemath, ApiKind::Ollama, ApiKind::OpenAi],
        };
        let mut last = None;
        for kind in kinds {
            match self.probe_as(kind, cancel, on_event).await {
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
                            model_list(&info.models)
                        )));
                    }
                    return Ok(info);
                }
                // No other API kind would fare better: the server is not there, refuses us, or
                // is silent (each kind tried would cost the whole timeout again).
                Err(
                    e @ (RemoteError::Connect { .. }
                    | RemoteError::Unauthorized { .. }
                    | RemoteError::Timeout { .. }
                    | RemoteError::SlowBody { .. }
                    | RemoteError::Cancelled),
                ) => {
                    return Err(e);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(RemoteError::Unsupported("no API kind to try".into())))
    }

    async fn probe_as(
        &mut self,
        kind: ApiKind,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(RemoteEvent),
    ) -> Result<ServerInfo, RemoteError> {
        match kind {
            ApiKind::Samemath => {
                let v = self.get_json("/api/info", cancel, on_event).await?;
                let Some(version) = v["samemath"].as_str() else {
                    return Err(RemoteError::Protocol("not a samemath server".into()));
                };
                Ok(ServerInfo {
                    api: kind,
                    version: Some(shown_text(version, 64)),
                    models: model_names(&v["models"], |m| m.as_str()),
                    capabilities: Capabilities {
                        logprobs: true,
                        embeddings: true,
                        traces: true,
                    },
                })
            }
            ApiKind::Ollama => {
                let v = self.get_json("/api/version", cancel, on_event).await?;
                let version = v["version"]
                    .as_str()
                    .ok_or_else(|| RemoteError::Protocol("no version in /api/version".into()))?
                    .to_string();
                let tags = self.get_json("/api/tags", cancel, on_event).await?;
                let models = model_names(&tags["models"], |m| m["name"].as_str());
                Ok(ServerInfo {
                    api: kind,
                    // logprobs arrived in Ollama 0.12.11.
                    capabilities: Capabilities {
                        logprobs: version_at_least(&version, [0, 12, 11]),
                        embeddings: true,
                        traces: false,
                    },
                    version: Some(shown_text(&version, 64)),
                    models,
                })
            }
            ApiKind::OpenAi => {
                let v = self.get_json("/v1/models", cancel, on_event).await?;
                if !v["data"].is_array() {
                    return Err(RemoteError::Protocol("no data in /v1/models".into()));
                }
                let models = model_names(&v["data"], |m| m["id"].as_str());
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
            self.probe_watched(cancel, on_event).await?;
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
        // Trace lines are megabytes; a text API's are not.
        let max_line = match api {
            ApiKind::Samemath => MAX_LINE_BYTES,
            ApiKind::Ollama | ApiKind::OpenAi => MAX_TEXT_LINE_BYTES,
        };
        let mut ndjson = NdjsonParser::new(max_line);
        let mut lines = LineSplitter::new(max_line);
        let mut sse = SseParser::new(max_line);
        let mut seen = Seen::asking(request.max_tokens);
        let mut finished = false;
        // The idle bound runs from the last sign of progress (a token, a reasoning model's
        // thinking, a samemath line), not the last byte: keep-alive lines, SSE comments and
        // empty deltas do not keep an answer open.
        let idle_limit = self.config.first_byte_timeout;
        let mut last_token = (Instant::now(), 0);
        let mut prompt_seen = false;
        let idle = |last_token: (Instant, usize)| {
            let idle = last_token.0.elapsed();
            if idle < idle_limit {
                return Ok(());
            }
            Err(RemoteError::Dropped {
                received: last_token.1,
                reason: format!(
                    "the server sent no tokens or reasoning for {} s",
                    idle.as_secs()
                ),
            })
        };
        while !finished {
            // The next chunk, looking up each second: Stop works while a server stalls, and a
            // server that sends no token for the first-byte timeout is dropped.
            if cancel.is_cancelled() {
                return Err(RemoteError::Cancelled);
            }
            if summary.tokens != last_token.1 {
                last_token = (Instant::now(), summary.tokens);
            }
            idle(last_token)?;
            let next = ticking(bytes.next(), cancel, |_| idle(last_token)).await?;
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
            let records: Vec<Record> = match api {
                ApiKind::OpenAi => {
                    let mut out = Vec::new();
                    for d in sse.push(&chunk)? {
                        match d {
                            SseData::Json(v) => out.push(Record::Json(v)),
                            SseData::Done => finished = true,
                        }
                    }
                    out
                }
                ApiKind::Ollama => ndjson.push(&chunk)?.into_iter().map(Record::Json).collect(),
                ApiKind::Samemath => trace_lines(lines.push(&chunk)?)?,
            };
            for r in records {
                // One prompt line an answer: each one makes the app fit its token cloud again.
                if matches!(r, Record::Trace(TraceLine::Prompt(_))) {
                    if prompt_seen {
                        return Err(RemoteError::Protocol("a second prompt line".into()));
                    }
                    prompt_seen = true;
                }
                if shows_progress(api, &r) {
                    last_token = (Instant::now(), summary.tokens);
                }
                finished |= record(api, r, &mut summary, &mut seen, on_event)?;
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
            let tail: Vec<Record> = match api {
                ApiKind::OpenAi => sse
                    .finish()?
                    .into_iter()
                    .filter_map(|d| match d {
                        SseData::Json(v) => Some(Record::Json(v)),
                        SseData::Done => None,
                    })
                    .collect(),
                ApiKind::Ollama => ndjson.finish()?.into_iter().map(Record::Json).collect(),
                ApiKind::Samemath => trace_lines(lines.finish()?.into_iter().collect())?,
            };
            for r in tail {
                finished |= record(api, r, &mut summary, &mut seen, on_event)?;
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
        let limit = self.config.first_byte_timeout;
        let bytes = read_capped(r, EMBED_BODY_BYTES, limit, Past::Fail, &cancel).await?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            RemoteError::Protocol(format!("{path}: {}", shown_text(&e.to_string(), 300)))
        })?;
        embedding(&v, path)
    }
}

/// samemath lines (empty ones skipped), each parsed straight into our types.
fn trace_lines(lines: Vec<String>) -> Result<Vec<Record>, RemoteError> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| trace_line::parse(l).map(Record::Trace))
        .collect()
}

/// The longest model name kept from a server's list.
const MODEL_NAME_BYTES: usize = 256;

/// The model names in a server's list (`name` picks each entry's): those that can be one, at
/// most `MODEL_NAME_BYTES` without control characters or bidi overrides (the app shows them
/// and sends one back); the rest are left out.
fn model_names(list: &Value, name: impl Fn(&Value) -> Option<&str>) -> Vec<String> {
    list.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(name)
        .filter(|m| m.len() <= MODEL_NAME_BYTES && !m.chars().any(hidden))
        .map(String::from)
        .collect()
}

/// A server's model names for an error: the first few, each shortened and escaped.
fn model_list(models: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut list: Vec<String> = models
        .iter()
        .take(SHOWN)
        .map(|m| shown_text(m, 64))
        .collect();
    if models.len() > SHOWN {
        list.push(format!("and {} more", models.len() - SHOWN));
    }
    list.join(", ")
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
    fn versions() {
        assert!(version_at_least("0.12.11", [0, 12, 11]));
        assert!(version_at_least("0.13.0-rc1", [0, 12, 11]));
        assert!(!version_at_least("0.12.3", [0, 12, 11]));
    }

    #[test]
    fn model_lists_are_short_and_escaped() {
        let few = vec!["a".to_string(), "b\u{1b}[2J".to_string()];
        assert_eq!(model_list(&few), "a, b\\u{1b}[2J");
        let many: Vec<String> = (0..1000)
            .map(|i| format!("{i}{}", "x".repeat(500)))
            .collect();
        let shown = model_list(&many);
        assert!(shown.ends_with(", and 990 more"), "{shown}");
        assert!(shown.chars().count() < 800, "{}", shown.len());
    }
}
