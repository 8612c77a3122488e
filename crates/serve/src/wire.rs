//! How answers go on the wire: JSON errors (a failed answer's status among them), NDJSON lines, SSE events, streamed bodies, RFC 3339 dates, and the body parser.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use llm::LlmError;

use crate::args::limits;

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

/// 503 with `Retry-After: 1`: the client (or the load balancer) tries again shortly.
pub(crate) fn unavailable(message: String) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Why an answer ended before its end, and the status a non-streamed answer gets for it (a
/// streamed one has sent its 200 already, and ends with an error line).
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    pub(crate) message: String,
    /// With `Retry-After` (another instance, or this one shortly, can answer it).
    retry: bool,
}

impl Failure {
    pub(crate) fn new(status: StatusCode, message: String) -> Self {
        Self {
            status,
            message,
            retry: false,
        }
    }

    /// Why `Session::new` refused: the request (an empty prompt, one over the model's context,
    /// text the tokenizer refuses) is a 400; anything else (the GPU's cache) is the server's.
    pub(crate) fn session(e: LlmError) -> Self {
        let status = match e {
            LlmError::EmptyPrompt | LlmError::PromptTooLong { .. } | LlmError::Tokenizer(_) => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }

    /// The engine failed, or panicked (a bug).
    pub(crate) fn server(message: String) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The server cut the answer: it ran past the time limit (a 503 that the same request
    /// would meet again), or the instance is shutting down (a 503 to retry elsewhere).
    pub(crate) fn cut(message: String, retry: bool) -> Self {
        Self {
            retry,
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// A streaming client left or stopped reading: nobody reads the status.
    pub(crate) fn gone(message: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The status a non-streamed answer gets for it.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The non-streamed answer: the status, the JSON error, and `Retry-After` where it helps.
    pub(crate) fn response(self) -> Response {
        if self.retry {
            unavailable(self.message)
        } else {
            error(self.status, self.message)
        }
    }
}

pub(crate) fn now_rfc3339() -> String {
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

pub(crate) fn ndjson_line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

pub(crate) fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

pub(crate) fn stream_body(rx: mpsc::Receiver<Bytes>, content_type: &'static str) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut r = Body::from_stream(stream).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// One line to a streaming client, waiting at most `SEND_TIMEOUT` for it to read: a client
/// that stops reading loses its answer (and frees its slot) instead of holding it forever.
pub(crate) async fn send_line(tx: &mpsc::Sender<Bytes>, line: Bytes) -> Result<(), String> {
    match tokio::time::timeout(limits::SEND_TIMEOUT, tx.send(line)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("the client went away".into()),
        Err(_) => Err(format!(
            "the client read nothing for {} s",
            limits::SEND_TIMEOUT.as_secs()
        )),
    }
}

/// The next generated item, or `None` at the end, and also once a streaming client has gone
/// (`out`: its body's channel, closed when hyper drops the body): the collecting task ends, the
/// generation's channel closes with it, and a long prompt's prefill stops at its next slice
/// instead of running to the end for nobody.
pub(crate) async fn next_item<T>(
    rx: &mut mpsc::Receiver<T>,
    out: Option<&mpsc::Sender<Bytes>>,
) -> Option<T> {
    match out {
        None => rx.recv().await,
        Some(out) => tokio::select! {
            item = rx.recv() => item,
            _ = out.closed() => None,
        },
    }
}

/// Aborts the task when dropped: a non-streamed answer whose client left (hyper drops the
/// handler) stops generating.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Streamed: the channel as the body. Not streamed: the collected object, or the failure with
/// its status (400 for the request, 500 for the engine, 503 for a cut).
pub(crate) async fn finish(
    stream: bool,
    out_rx: mpsc::Receiver<Bytes>,
    collect: tokio::task::JoinHandle<Result<Value, Failure>>,
    content_type: &'static str,
) -> Response {
    if stream {
        return stream_body(out_rx, content_type);
    }
    drop(out_rx);
    let mut collect = AbortOnDrop(collect);
    match (&mut collect.0).await {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(f)) => f.response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub(crate) fn parse_body(body: &[u8]) -> Result<Value, Response> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        let d = now_rfc3339();
        assert_eq!(d.len(), 20, "{d}");
        assert!(d.starts_with("20") && d.ends_with('Z'));
    }
}
