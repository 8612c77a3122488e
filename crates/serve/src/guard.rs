//! The middleware in front of every route: CORS (preflight and headers), the Host a loopback
//! server accepts (no DNS rebinding), JSON bodies only (no cross-site form posts), and the
//! optional API key, compared in constant time; a POST body is read here, bounded in size, in
//! time, and with every other body being held, in bytes.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use std::sync::{Arc, OnceLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::args::limits;
use crate::state::Shared;
use crate::wire::{error, unavailable};

/// CORS (preflight and headers), Host, Content-Type and the optional API key.
pub(crate) async fn guard(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let cors = state.options.cors.clone();
    let refuse = |status, message: String| {
        let mut r = error(status, message);
        add_cors(r.headers_mut(), cors.as_deref());
        r
    };
    let headers = request.headers();
    if state.options.host.is_loopback() {
        // One Host line (a second could hide another name behind a loopback one), else the
        // URI's own authority.
        let mut hosts = headers.get_all(header::HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            (Some(h), None) => h.to_str().unwrap_or(""),
            (None, _) => request.uri().authority().map_or("", |a| a.as_str()),
            (Some(_), Some(_)) => "",
        };
        if !is_loopback_host(host) {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this server listens on loopback and answers only to a loopback Host \
                     (localhost, 127.0.0.1, [::1]), not {:?}; use --host to listen elsewhere",
                    shown(host)
                ),
            );
        }
    }
    if request.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        add_cors(r.headers_mut(), cors.as_deref());
        if cors.is_some() {
            preflight(r.headers_mut(), headers);
        }
        return r;
    }
    if request.method() == Method::POST {
        let content_type = header_str(headers, header::CONTENT_TYPE.as_str());
        if !is_json(content_type) {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "send the body as JSON with Content-Type: application/json (got {:?})",
                    shown(content_type)
                ),
            );
        }
    }
    if let Some(key) = &state.options.api_key
        && request.uri().path() != "/health"
    {
        let bearer = bearer(header_str(headers, header::AUTHORIZATION.as_str()));
        let x_key = Some(header_str(headers, "x-api-key")).filter(|k| !k.is_empty());
        let matches = |given: Option<&str>| given.is_some_and(|g| same_secret(g, key));
        if !matches(bearer) & !matches(x_key) {
            return refuse(StatusCode::UNAUTHORIZED, "missing or wrong API key".into());
        }
    }
    // The body's share of the budget is held until the answer is handed over (a stream's
    // handler has parsed its body by then).
    let (request, _held) = if request.method() == Method::POST {
        match read_body(request, state.options.max_body_bytes).await {
            Ok(r) => r,
            Err(BodyError::Busy(message)) => {
                let mut r = unavailable(message);
                add_cors(r.headers_mut(), cors.as_deref());
                return r;
            }
            Err(BodyError::Refused(status, message)) => return refuse(status, message),
        }
    } else {
        (request, None)
    };
    let mut r = next.run(request).await;
    add_cors(r.headers_mut(), cors.as_deref());
    r
}

/// Why a body was not read: the request's fault, or too many bodies at once (503).
enum BodyError {
    Refused(StatusCode, String),
    Busy(String),
}

/// Bytes of bodies held now, over all connections (`limits::BODY_BUDGET`).
fn body_budget() -> &'static Arc<Semaphore> {
    static BUDGET: OnceLock<Arc<Semaphore>> = OnceLock::new();
    BUDGET.get_or_init(|| Arc::new(Semaphore::new(limits::BODY_BUDGET)))
}

/// The whole body, read within `limits::BODY_READ` and at most `max` bytes (a client that sends
/// a byte a minute, or without end, no longer holds the connection and a worker), with its
/// bytes' share of the budget: many clients sending large bodies at once cannot make the
/// server hold more than `limits::BODY_BUDGET` of them.
async fn read_body(
    request: Request,
    max: usize,
) -> Result<(Request, Option<OwnedSemaphorePermit>), BodyError> {
    let too_large = || {
        BodyError::Refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {max} bytes"),
        )
    };
    let declared = header_str(request.headers(), header::CONTENT_LENGTH.as_str());
    if declared.parse::<u64>().is_ok_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let (parts, body) = request.into_parts();
    let mut frames = body.into_data_stream();
    let read = async {
        let mut bytes = Vec::new();
        let mut held: Option<OwnedSemaphorePermit> = None;
        while let Some(frame) = frames.next().await {
            let frame = frame.map_err(|e| {
                BodyError::Refused(StatusCode::BAD_REQUEST, format!("the body broke off: {e}"))
            })?;
            if bytes.len() + frame.len() > max {
                return Err(too_large());
            }
            // `max` is far below u32::MAX, so a frame that fits it fits a permit count.
            let more = u32::try_from(frame.len()).map_err(|_| too_large())?;
            match body_budget().clone().try_acquire_many_owned(more) {
                Ok(p) => match held.as_mut() {
                    Some(h) => h.merge(p),
                    None => held = Some(p),
                },
                Err(_) => {
                    return Err(BodyError::Busy(
                        "the server is receiving too many large bodies at once; try again".into(),
                    ));
                }
            }
            bytes.extend_from_slice(&frame);
        }
        Ok((bytes, held))
    };
    match tokio::time::timeout(limits::BODY_READ, read).await {
        Ok(Ok((bytes, held))) => Ok((Request::from_parts(parts, Body::from(bytes)), held)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BodyError::Refused(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} s",
                limits::BODY_READ.as_secs()
            ),
        )),
    }
}

/// A header's text ("" when absent or not visible ASCII).
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The start of a value a client sent, for an error message.
fn shown(value: &str) -> String {
    value.chars().take(80).collect()
}

/// `application/json` (any parameters, any case) or a `+json` type.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A Host header naming this machine: localhost, 127.x.y.z or [::1], with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                n
            } else {
                host
            }
        }),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The token of an `Authorization: Bearer TOKEN` header: the scheme in any case (RFC 9110
/// 11.1: `bearer` and `BEARER` are `Bearer`), then one or more spaces (RFC 6750's `1*SP`).
fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Equal, in time that depends on the lengths only (not on where the first difference is).
fn same_secret(given: &str, key: &str) -> bool {
    let (a, b) = (given.as_bytes(), key.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for (i, k) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(!k) ^ k;
    }
    diff == 0
}

/// The request headers every answer allows a page to send.
const ALLOWED_HEADERS: &str = "authorization, content-type, x-api-key";

pub(crate) fn add_cors(headers: &mut HeaderMap, origin: Option<&str>) {
    let Some(origin) = origin.and_then(|o| HeaderValue::from_str(o).ok()) else {
        return;
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
}

/// The longest `Access-Control-Request-Headers` a preflight gets back as allowed.
const MAX_REQUESTED_HEADERS: usize = 1024;

/// A preflight's answer beyond the origin: the headers the page asked to send (an SDK's own, such
/// as the OpenAI JavaScript client's `x-stainless-*`), when they are a plain list of header names
/// of bounded length, and how long the browser may keep the answer (sparing an OPTIONS round trip,
/// and a concurrency slot on Cloud Run, before each POST).
fn preflight(out: &mut HeaderMap, request: &HeaderMap) {
    let asked = header_str(request, header::ACCESS_CONTROL_REQUEST_HEADERS.as_str());
    if let Some(list) = requested_headers(asked)
        && let Ok(value) = HeaderValue::from_str(&format!("{ALLOWED_HEADERS}, {list}"))
    {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
    }
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
}

/// `asked` as a list of header names (lowercase, comma-separated), or None when it is empty,
/// too long, or holds anything but header-name characters.
fn requested_headers(asked: &str) -> Option<String> {
    if asked.len() > MAX_REQUESTED_HEADERS {
        return None;
    }
    let names: Vec<String> = asked
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    let token = |n: &String| {
        n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    (!names.is_empty() && names.iter().all(token)).then(|| names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_json_and_keys() {
        for ok in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]:9",
            "127.1.2.3",
            "a.localhost",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "",
            "[::2]:1",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/x-ndjson+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "text/json",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
        assert_eq!(
            requested_headers("X-Stainless-OS, content-type,x-stainless-lang").as_deref(),
            Some("x-stainless-os, content-type, x-stainless-lang")
        );
        let long = "x-a,".repeat(MAX_REQUESTED_HEADERS / 4 + 1);
        for bad in [
            "",
            " , ",
            "x-a\r\nx-b",
            "x a",
            "x-a;b",
            "x-é",
            long.as_str(),
        ] {
            assert_eq!(requested_headers(bad), None, "{bad:?}");
        }
        for (header, token) in [
            ("Bearer k123", Some("k123")),
            ("bearer k123", Some("k123")),
            ("BEARER k123", Some("k123")),
            ("bEaReR  k123", Some("k123")),
            ("Bearer ", Some("")),
            ("Bearerk123", None),
            ("Basic k123", None),
            ("k123", None),
            ("", None),
        ] {
            assert_eq!(bearer(header), token, "{header:?}");
        }
        assert!(same_secret("k123", "k123"));
        for bad in ["", "k12", "k1234", "K123", "k124"] {
            assert!(!same_secret(bad, "k123"), "{bad}");
        }
    }
}
