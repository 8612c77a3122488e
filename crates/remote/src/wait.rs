//! Waiting with bounds: a timer that does not block (tokio natively, the page's in the browser),
//! a wait that looks up each second for Stop and its own limit, capped and timed body reads, and
//! the backoff between retries.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::{Either, select};
use web_time::Instant;

use super::api::{RemoteError, shown_url};
use llm::CancelToken;

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
pub(crate) async fn ticking<F: std::future::Future + Unpin>(
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
pub(crate) const ERROR_BODY_BYTES: usize = 64 << 10;
/// The longest wait for an error body: it only says what went wrong, so what came is enough.
pub(crate) const ERROR_BODY_WAIT: Duration = Duration::from_secs(10);
/// The most of a JSON answer read (probes: /api/info, /api/tags, /v1/models, ...).
pub(crate) const JSON_BODY_BYTES: usize = 4 << 20;
/// The most of an embedding answer read.
pub(crate) const EMBED_BODY_BYTES: usize = 16 << 20;

/// What a body read does past its byte cap or its time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Past {
    /// Keep what came (an error body: its start says enough).
    Cut,
    /// Fail (an answer we parse: a part of it is no answer).
    Fail,
}

/// A response body, at most `cap` bytes and `limit` in all (a server that trickles a byte a
/// second still ends); Stop works while it waits. Past either bound: what came (`Past::Cut`)
/// or an error.
pub(crate) async fn read_capped(
    response: reqwest::Response,
    cap: usize,
    limit: Duration,
    past: Past,
    cancel: &CancelToken,
) -> Result<Vec<u8>, RemoteError> {
    let url = shown_url(response.url().as_str());
    let started = Instant::now();
    let too_late = || RemoteError::SlowBody {
        url: url.clone(),
        secs: started.elapsed().as_secs(),
    };
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    loop {
        let next = ticking(stream.next(), cancel, |_| {
            if started.elapsed() >= limit {
                return Err(too_late());
            }
            Ok(())
        })
        .await;
        let next = match next {
            Ok(n) => n,
            Err(RemoteError::SlowBody { .. }) if past == Past::Cut => return Ok(out),
            Err(e) => return Err(e),
        };
        let Some(chunk) = next else {
            return Ok(out);
        };
        let chunk = chunk.map_err(|e| RemoteError::Dropped {
            received: 0,
            reason: e.without_url().to_string(),
        })?;
        if out.len() + chunk.len() > cap {
            if past == Past::Cut {
                out.extend_from_slice(&chunk[..cap - out.len()]);
                return Ok(out);
            }
            return Err(RemoteError::Protocol(format!(
                "the answer is longer than {cap} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
        // Chunks that keep coming keep `ticking` from looking up: the limit is checked here too.
        if started.elapsed() >= limit {
            return match past {
                Past::Cut => Ok(out),
                Past::Fail => Err(too_late()),
            };
        }
    }
}

pub(crate) fn is_retryable(status: u16) -> bool {
    matches!(status, 429 | 503 | 504)
}

/// Exponential backoff with jitter: ~0.5 s, 1 s, 2 s, ... times a factor in [0.5, 1.5).
pub(crate) fn backoff(attempt: u32) -> Duration {
    let nanos = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let jitter = 0.5 + (nanos.wrapping_mul(6364136223846793005) >> 40) as f64 / (1u64 << 24) as f64;
    Duration::from_secs_f64(0.5 * 2f64.powi(attempt as i32) * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter() {
        for attempt in 0..4 {
            let d = backoff(attempt).as_secs_f64();
            let base = 0.5 * 2f64.powi(attempt as i32);
            assert!(d >= base * 0.5 && d < base * 1.5, "{d}");
        }
    }
}
