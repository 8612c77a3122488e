//! The middleware in front of every route: CORS (preflight and headers) and the optional API key.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::Shared;
use crate::wire::error;

/// CORS (preflight and headers) and the optional API key.
pub(crate) async fn guard(State(state): State<Shared>, request: Request, next: Next) -> Response {
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

pub(crate) fn add_cors(headers: &mut HeaderMap, origin: Option<&str>) {
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
