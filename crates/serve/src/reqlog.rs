//! One log line per finished generation request (/api/generate, /api/chat,
//! /v1/chat/completions, /api/trace), not one per token: route, status, outcome (completed,
//! token limit, cut by the server, client gone, refused, error), prompt and generated tokens,
//! the seconds it held a slot and waited for one, the whole latency as `httpRequest`, and the
//! request's trace. A `Ledger` goes with the request (the middleware, the handler, the slot and
//! the generating thread each hold it); the line is written when the last of them lets go, so
//! it comes once the answer is out and the slot is free, however the request ended.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Frame, SizeHint};
use llm::StopReason;
use serde_json::json;

use crate::log::{Entry, Severity, TraceContext};
use crate::wire::Failure;

/// The routes that generate, each answered with one log line.
const LOGGED: [&str; 4] = [
    "/api/generate",
    "/api/chat",
    "/v1/chat/completions",
    "/api/trace",
];

/// A request's record, shared by all that work on it; `Ledger::off()` records nothing.
#[derive(Clone, Default)]
pub(crate) struct Ledger(Option<Arc<Mutex<Record>>>);

/// What is known of a request so far; written out when dropped.
struct Record {
    route: &'static str,
    trace: Option<TraceContext>,
    user_agent: String,
    arrived: Instant,
    /// The response's status, once the handler gave one (a non-streamed answer whose client
    /// left never has one: hyper dropped the handler).
    status: Option<u16>,
    /// The body went to hyper to its end.
    delivered: bool,
    asked_slot: Option<Instant>,
    got_slot: Option<Instant>,
    freed_slot: Option<Instant>,
    prompt_tokens: usize,
    generated: usize,
    /// Why the engine stopped, when it did by itself (its last token's reason).
    stop: Option<StopReason>,
    /// The server ended the answer at a limit of its own (`cut_at_limit`): tokens the engine
    /// still made before it stopped were not sent, and are not counted.
    cut: bool,
    /// Why the generation failed, when it did: the status it would answer, and the message.
    failure: Option<(u16, String)>,
}

impl Ledger {
    /// A ledger that records nothing (requests that are not logged).
    pub(crate) fn off() -> Self {
        Self(None)
    }

    fn record(&self) -> Option<MutexGuard<'_, Record>> {
        self.0
            .as_ref()
            .map(|r| r.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// It waits for a slot from now.
    pub(crate) fn asked_slot(&self) {
        if let Some(mut r) = self.record() {
            r.asked_slot = Some(Instant::now());
        }
    }

    pub(crate) fn got_slot(&self) {
        if let Some(mut r) = self.record() {
            r.got_slot = Some(Instant::now());
        }
    }

    pub(crate) fn freed_slot(&self) {
        if let Some(mut r) = self.record() {
            r.freed_slot = Some(Instant::now());
        }
    }

    pub(crate) fn prompt_tokens(&self, n: usize) {
        if let Some(mut r) = self.record() {
            r.prompt_tokens = n;
        }
    }

    /// One more token generated; `stop`: the engine ended with it.
    pub(crate) fn token(&self, stop: Option<StopReason>) {
        if let Some(mut r) = self.record()
            && !r.cut
        {
            r.generated += 1;
            r.stop = stop.or(r.stop);
        }
    }

    /// The answer was ended at its limit by the server after `sent` tokens went out (a
    /// trace's byte bound): it is logged as at the token limit, with the tokens sent.
    pub(crate) fn cut_at_limit(&self, sent: usize) {
        if let Some(mut r) = self.record() {
            r.stop = Some(StopReason::MaxTokens);
            r.generated = sent;
            r.cut = true;
        }
    }

    /// The generation failed (the first failure is kept).
    pub(crate) fn failed(&self, failure: &Failure) {
        if let Some(mut r) = self.record() {
            r.failure
                .get_or_insert_with(|| (failure.status().as_u16(), failure.message.clone()));
        }
    }
}

/// The middleware: a ledger for every request (recording only for the generation routes), the
/// response's status, and its body watched to its end.
pub(crate) async fn log_requests(mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let route = LOGGED.iter().find(|r| **r == path).copied();
    let ledger = match route {
        Some(route) if request.method() == Method::POST => {
            let headers = request.headers();
            let user_agent = headers
                .get(header::USER_AGENT)
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .unwrap_or_default();
            let record = Record::new(route, TraceContext::from_headers(headers), &user_agent);
            Ledger(Some(Arc::new(Mutex::new(record))))
        }
        _ => Ledger::off(),
    };
    request.extensions_mut().insert(ledger.clone());
    let response = next.run(request).await;
    match ledger.record() {
        Some(mut r) => r.status = Some(response.status().as_u16()),
        None => return response,
    }
    response.map(|inner| Body::new(Watched { inner, ledger }))
}

/// A response body that tells its ledger when it has gone out to its end.
struct Watched {
    inner: Body,
    ledger: Ledger,
}

impl Watched {
    fn delivered(&self) {
        if let Some(mut r) = self.ledger.record() {
            r.delivered = true;
        }
    }
}

impl hyper::body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // hyper stops polling a body that says it has ended (a whole JSON answer, sent with
        // its length), so its end is seen either way.
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.delivered();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.delivered();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a request ended, as its log line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The model's end token or a stop string.
    Completed,
    /// The token limit (the request's, or the context's).
    TokenLimit,
    /// The server cut it: its time limit, or shutting down.
    Cut,
    /// The client left before its answer was out.
    ClientGone,
    /// Not answered: a bad request, busy, loading, shutting down (4xx, 503).
    Refused,
    /// The server failed (500): the engine, a panic, a failed load.
    Error,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::TokenLimit => "token_limit",
            Outcome::Cut => "cut",
            Outcome::ClientGone => "client_gone",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }

    fn severity(self) -> Severity {
        match self {
            Outcome::Completed | Outcome::TokenLimit | Outcome::ClientGone => Severity::Info,
            Outcome::Cut | Outcome::Refused => Severity::Warning,
            Outcome::Error => Severity::Error,
        }
    }
}

/// What the record says happened: a server failure first (a bug must show), then a client that
/// left before a 200 answer was out, then the failure or the status, then the engine's stop.
fn outcome(
    status: Option<u16>,
    delivered: bool,
    failure: Option<u16>,
    stop: Option<StopReason>,
) -> Outcome {
    match (status, failure) {
        (_, Some(f)) if f >= 500 && f != 503 => Outcome::Error,
        (None, _) => Outcome::ClientGone,
        (Some(s), _) if (200..300).contains(&s) && !delivered => Outcome::ClientGone,
        (_, Some(503)) => Outcome::Cut,
        (_, Some(_)) => Outcome::Refused,
        (Some(s), None) if s >= 500 && s != 503 => Outcome::Error,
        (Some(s), None) if s >= 400 => Outcome::Refused,
        _ if matches!(stop, Some(StopReason::MaxTokens | StopReason::Context)) => {
            Outcome::TokenLimit
        }
        _ => Outcome::Completed,
    }
}

/// Seconds, to the millisecond.
fn secs(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

impl Record {
    fn new(route: &'static str, trace: Option<TraceContext>, user_agent: &str) -> Self {
        Self {
            route,
            trace,
            // Cut at once: the record need not hold a long header until the answer is out.
            user_agent: user_agent.chars().take(crate::log::MAX_FIELD).collect(),
            arrived: Instant::now(),
            status: None,
            delivered: false,
            asked_slot: None,
            got_slot: None,
            freed_slot: None,
            prompt_tokens: 0,
            generated: 0,
            stop: None,
            cut: false,
            failure: None,
        }
    }

    /// The line, as of `now`, naming the trace in `project` (when known).
    fn entry(&self, now: Instant, project: Option<&str>) -> Entry {
        let outcome = outcome(
            self.status,
            self.delivered,
            self.failure.as_ref().map(|f| f.0),
            self.stop,
        );
        let queued = self.asked_slot.map_or(0.0, |a| {
            secs(self.got_slot.unwrap_or(now).saturating_duration_since(a))
        });
        let held = self.got_slot.map_or(0.0, |g| {
            secs(self.freed_slot.unwrap_or(now).saturating_duration_since(g))
        });
        let latency = secs(now.saturating_duration_since(self.arrived));
        let status = self
            .status
            .map_or_else(|| "no status".to_string(), |s| s.to_string());
        let mut message = format!(
            "POST {} {status} {}: {} prompt tokens, {} generated, slot held {held:.3} s, \
             queued {queued:.3} s, {latency:.3} s in all",
            self.route,
            outcome.name(),
            self.prompt_tokens,
            self.generated,
        );
        if let Some((_, why)) = &self.failure {
            message.push_str(": ");
            message.push_str(why);
        }
        let mut http = json!({"requestMethod": "POST", "requestUrl": self.route,
                              "latency": format!("{latency:.3}s")});
        if let Some(s) = self.status {
            http["status"] = s.into();
        }
        if !self.user_agent.is_empty() {
            http["userAgent"] = self.user_agent.as_str().into();
        }
        let mut entry = Entry::new(outcome.severity(), message)
            .field("route", self.route)
            .field("status", self.status)
            .field("outcome", outcome.name())
            .field("prompt_tokens", self.prompt_tokens)
            .field("generated_tokens", self.generated)
            .field("slot_secs", held)
            .field("queue_secs", queued)
            .field("httpRequest", http);
        if let Some((_, why)) = &self.failure {
            entry = entry.field("error", why.as_str());
        }
        entry.trace_in(self.trace.as_ref(), project)
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.entry(Instant::now(), crate::log::project()).emit();
    }
}

#[cfg(test)]
mod tests {
    use std::mem::ManuallyDrop;
    use std::time::Duration;

    use axum::http::StatusCode;
    use serde_json::Value;

    use super::*;
    use crate::log::LogFormat;

    #[test]
    fn the_outcome_reads_the_status_the_failure_and_the_stop() {
        use Outcome::*;
        let max = Some(StopReason::MaxTokens);
        let end = Some(StopReason::EndToken);
        for (status, delivered, failure, stop, want) in [
            (Some(200), true, None, end, Completed),
            (Some(200), true, None, None, Completed),
            (Some(200), true, None, max, TokenLimit),
            (Some(200), true, None, Some(StopReason::Context), TokenLimit),
            // A streamed answer that ended with an error line.
            (Some(200), true, Some(503), None, Cut),
            (Some(200), true, Some(500), None, Error),
            // The client left: no status (a non-streamed answer), or a body not read out.
            (None, false, None, None, ClientGone),
            (Some(200), false, None, max, ClientGone),
            // ...but a bug shows whatever the client did.
            (None, false, Some(500), None, Error),
            (Some(503), true, Some(503), None, Cut),
            (Some(400), true, Some(400), None, Refused),
            (Some(400), false, None, None, Refused),
            (Some(404), true, None, None, Refused),
            (Some(503), true, None, None, Refused),
            (Some(500), true, None, None, Error),
        ] {
            assert_eq!(
                outcome(status, delivered, failure, stop),
                want,
                "{status:?} {failure:?}"
            );
        }
        assert_eq!(Completed.severity(), Severity::Info);
        assert_eq!(ClientGone.severity(), Severity::Info);
        assert_eq!(Refused.severity(), Severity::Warning);
        assert_eq!(Cut.severity(), Severity::Warning);
        assert_eq!(Error.severity(), Severity::Error);
    }

    /// A record that writes nothing when the test drops it.
    fn record(trace: Option<TraceContext>, user_agent: &str) -> ManuallyDrop<Record> {
        ManuallyDrop::new(Record::new("/api/chat", trace, user_agent))
    }

    fn json(r: &Record, now: Instant, project: Option<&str>) -> Value {
        serde_json::from_str(&r.entry(now, project).line(LogFormat::Json)).unwrap()
    }

    /// An /api/trace answer ended by the server's byte bound is logged as at the token limit,
    /// with the tokens that went out (not those the engine made after the cut).
    #[test]
    fn an_answer_cut_at_the_servers_limit_is_logged_at_the_token_limit() {
        let ledger = Ledger(Some(Arc::new(Mutex::new(Record::new(
            "/api/trace",
            None,
            "t",
        )))));
        for _ in 0..5 {
            ledger.token(None);
        }
        ledger.cut_at_limit(4);
        ledger.token(None);
        let v = {
            let mut r = ledger.record().unwrap();
            r.status = Some(200);
            r.delivered = true;
            json(&r, r.arrived, None)
        };
        assert_eq!(v["outcome"], "token_limit", "{v}");
        assert_eq!(v["generated_tokens"], 4, "{v}");
        // (Its line is written when the test lets go of it, as a request's is.)
    }

    #[test]
    fn a_finished_request_is_one_line_with_its_numbers_and_trace() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "x-cloud-trace-context",
            "4bf92f3577b34da6a3ce929d0e0e4736/7;o=1".parse().unwrap(),
        );
        let mut r = record(TraceContext::from_headers(&headers), "curl/8");
        let t0 = r.arrived;
        r.asked_slot = Some(t0 + Duration::from_millis(10));
        r.got_slot = Some(t0 + Duration::from_millis(260));
        r.freed_slot = Some(t0 + Duration::from_millis(1260));
        r.prompt_tokens = 31;
        for _ in 0..7 {
            r.generated += 1;
        }
        r.stop = Some(StopReason::MaxTokens);
        r.status = Some(200);
        r.delivered = true;
        let v = json(&r, t0 + Duration::from_millis(1500), Some("proj"));
        assert_eq!(v["severity"], "INFO");
        assert_eq!(v["route"], "/api/chat");
        assert_eq!(v["status"], 200);
        assert_eq!(v["outcome"], "token_limit");
        assert_eq!(
            (v["prompt_tokens"].as_u64(), v["generated_tokens"].as_u64()),
            (Some(31), Some(7))
        );
        assert_eq!(
            (v["queue_secs"].as_f64(), v["slot_secs"].as_f64()),
            (Some(0.25), Some(1.0))
        );
        assert_eq!(v["httpRequest"]["requestMethod"], "POST");
        assert_eq!(v["httpRequest"]["requestUrl"], "/api/chat");
        assert_eq!(v["httpRequest"]["status"], 200);
        assert_eq!(v["httpRequest"]["latency"], "1.500s");
        assert_eq!(v["httpRequest"]["userAgent"], "curl/8");
        assert_eq!(
            v["logging.googleapis.com/trace"],
            "projects/proj/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(v["logging.googleapis.com/spanId"], "0000000000000007");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.starts_with("POST /api/chat 200 token_limit: 31 prompt tokens, 7 generated"),
            "{message}"
        );
        // A text line says the same, on one line.
        let text = r
            .entry(t0 + Duration::from_millis(1500), None)
            .line(LogFormat::Text);
        assert_eq!(text, format!("samemath serve: {message}"));
    }

    #[test]
    fn a_failure_is_an_error_line_with_its_cause_bounded() {
        // A user agent of a megabyte with a newline in it: cut, escaped.
        let agent = format!("evil\n{}", "x".repeat(1 << 20));
        let mut r = record(None, &agent);
        assert!(r.user_agent.len() <= 4 * crate::log::MAX_FIELD);
        r.status = Some(200);
        r.delivered = true;
        let cause = format!("the engine failed: {}", "\u{1b}".repeat(10_000));
        let failure = Failure::server(cause.clone());
        assert_eq!(failure.status(), StatusCode::INTERNAL_SERVER_ERROR);
        r.failure = Some((failure.status().as_u16(), failure.message.clone()));
        let line = r.entry(Instant::now(), None).line(LogFormat::Json);
        assert!(line.len() <= crate::log::MAX_LINE, "{} bytes", line.len());
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["severity"].as_str(), v["outcome"].as_str()),
            (Some("ERROR"), Some("error"))
        );
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with("the engine failed: \u{1b}")
        );
        assert!(
            v["httpRequest"]["userAgent"]
                .as_str()
                .unwrap()
                .starts_with("evil\nxxx")
        );
        assert!(v.get("logging.googleapis.com/trace").is_none());
        // A request whose client left before any answer: no status, INFO.
        let gone = record(None, "");
        let v = json(&gone, Instant::now(), Some("proj"));
        assert_eq!(
            (v["outcome"].as_str(), v["severity"].as_str()),
            (Some("client_gone"), Some("INFO"))
        );
        assert!(v["status"].is_null() && v["httpRequest"].get("status").is_none());
        assert!(v["httpRequest"].get("userAgent").is_none());
    }

    #[test]
    fn a_ledger_that_is_off_records_nothing() {
        let off = Ledger::off();
        off.asked_slot();
        off.got_slot();
        off.token(Some(StopReason::EndToken));
        off.failed(&Failure::server("x".into()));
        off.freed_slot();
        assert!(off.record().is_none());
    }
}
