//! What a remote server is and says, in our words: its API kind, where and how to reach it
//! (`RemoteConfig`), what it can give (`ServerInfo`), one streamed step, the summary, the events
//! while a request runs, and the typed errors.

use llm::{StopReason, TokenInfo, Trace};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Which protocol the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    Ollama,
    #[serde(rename = "openai")]
    OpenAi,
    Samemath,
}

impl std::str::FromStr for ApiKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ollama" => Ok(ApiKind::Ollama),
            "openai" | "openai-compatible" => Ok(ApiKind::OpenAi),
            "samemath" => Ok(ApiKind::Samemath),
            other => Err(format!(
                "unknown API kind {other:?}: ollama, openai or samemath"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error(
        "{url} refused the credentials ({status}); give a token (field, $SAMEMATH_REMOTE_TOKEN) or log in with gcloud"
    )]
    Unauthorized { url: String, status: u16 },
    #[error(
        "no answer from {url} within {secs} s (a cold start can take minutes: raise the first-byte timeout)"
    )]
    Timeout { url: String, secs: u64 },
    #[error("{url} sent its headers but not the whole answer within {secs} s")]
    SlowBody { url: String, secs: u64 },
    #[error("the server reported an error: {0}")]
    Server(String),
    #[error("the response broke the protocol: {0}")]
    Protocol(String),
    #[error("the connection dropped mid-answer after {received} tokens: {reason}")]
    Dropped { received: usize, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("cancelled")]
    Cancelled,
}

/// A URL as errors and the UI show it: no `user:password@`, no query (where keys and tokens
/// travel), no fragment; the rest as given.
pub fn shown_url(url: &str) -> String {
    let url = url.trim();
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(i) => format!("***@{}", &authority[i + 1..]),
        None => authority.to_string(),
    };
    let path = tail.split(['?', '#']).next().unwrap_or("");
    let hidden = if tail.len() > path.len() { "?***" } else { "" };
    format!("{scheme}{authority}{path}{hidden}")
}

/// A character a server's text must not bring into a terminal or label as it is: a control
/// character or a bidi override.
pub(crate) fn hidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The message of a server's `"error"` (an object with a message, or a string; anything else
/// as JSON), shortened for the status line.
pub(crate) fn error_message(e: &serde_json::Value) -> String {
    match e["message"].as_str().or(e.as_str()) {
        Some(m) => shown_text(m, 300),
        None => shown_text(&e.to_string(), 300),
    }
}

/// Server-sent text as errors and labels show it: at most `max_chars` characters ("…" where it
/// was cut), control characters and bidi overrides escaped (`\u{1b}`), so a server cannot make a
/// message huge, or move the cursor, clear a terminal or flip the text it is shown in.
pub(crate) fn shown_text(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let n = if hidden(c) {
            c.escape_unicode().count()
        } else {
            1
        };
        // Room for the "…" too, unless this is the last character.
        let room = usize::from(chars.peek().is_some());
        if count + n + room > max_chars {
            if max_chars > 0 {
                out.push('…');
            }
            return out;
        }
        count += n;
        if hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Where and how to reach the server.
#[derive(Clone, PartialEq)]
pub struct RemoteConfig {
    pub url: String,
    /// `None`: detect it (samemath, then Ollama, then OpenAI-compatible).
    pub api: Option<ApiKind>,
    /// The server's model name (`None`: the first it lists).
    pub model: Option<String>,
    /// Bearer token (`None`: `$SAMEMATH_REMOTE_TOKEN`, else `$SAMEMATH_TOKEN_COMMAND`'s output,
    /// else gcloud's identity token when the URL is https).
    pub token: Option<String>,
    pub first_byte_timeout: Duration,
    /// Retries on 429/503/504 before the first token.
    pub max_retries: u32,
}

impl std::fmt::Debug for RemoteConfig {
    /// Tokens never appear in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("api", &self.api)
            .field("model", &self.model)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("first_byte_timeout", &self.first_byte_timeout)
            .finish()
    }
}

impl RemoteConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            api: None,
            model: None,
            token: None,
            first_byte_timeout: Duration::from_secs(120),
            max_retries: 3,
        }
    }

    /// The base URL without a trailing slash, checked.
    pub fn base(&self) -> Result<String, RemoteError> {
        let bad = |reason: &str| RemoteError::BadUrl {
            url: shown_url(&self.url),
            reason: reason.into(),
        };
        let url = reqwest::Url::parse(self.url.trim()).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("only http:// and https:// URLs"));
        }
        if url.host_str().is_none_or(|h| h.is_empty()) {
            return Err(bad("no host"));
        }
        Ok(url.as_str().trim_end_matches('/').to_string())
    }
}

/// What a server can give besides text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    pub logprobs: bool,
    pub embeddings: bool,
    /// Full traces (embeddings, activations, attention, lens): `samemath serve` only.
    pub traces: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub api: ApiKind,
    pub version: Option<String>,
    pub models: Vec<String>,
    pub capabilities: Capabilities,
}

impl ServerInfo {
    /// One line for the app and the command line: what the server is and what it gives.
    pub fn describe(&self, model: Option<&str>) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        format!(
            "{:?}{}, model {}; log-probabilities {}; activations, attention and embeddings {}",
            self.api,
            self.version
                .as_ref()
                .map(|v| format!(" {}", shown_text(v, 64)))
                .unwrap_or_default(),
            shown_text(model.unwrap_or("?"), 64),
            yes_no(self.capabilities.logprobs),
            if self.capabilities.traces {
                "yes (samemath serve)"
            } else {
                "not given by this server (text only)"
            }
        )
    }
}

/// One generated token as a remote server reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteStep {
    pub index: usize,
    pub text: String,
    /// The token with its id: `samemath serve` only (the others send text pieces).
    pub token: Option<TokenInfo>,
    pub logprob: Option<f32>,
    /// Alternatives with their log-probabilities, best first (when the server gives them).
    pub top_logprobs: Vec<(String, f32)>,
    pub trace: Option<Trace>,
    pub stop: Option<StopReason>,
}

/// What the server said about the whole answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteSummary {
    pub tokens: usize,
    pub text: String,
    /// Generation speed the server measured (Ollama's eval_count / eval_duration).
    pub server_tokens_per_sec: Option<f64>,
    /// Time the server spent loading the model (Ollama's load_duration).
    pub load_secs: Option<f64>,
    /// Why the server stopped (its "length" is `MaxTokens`, anything else `EndToken`).
    pub stop: Option<StopReason>,
    /// Seconds until the first byte (includes a cold start).
    pub first_byte_secs: f64,
}

/// Progress and tokens while a request runs.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteEvent {
    /// e.g. "waking the service: 12 s", "retrying after 503 (1 of 3)".
    Status(String),
    /// The prompt as the model reads it (samemath serve's /api/trace): its tokens after the
    /// template and each one's embedding row.
    Prompt {
        tokens: Vec<llm::TokenInfo>,
        embeddings: Vec<Vec<f32>>,
    },
    Step(Box<RemoteStep>),
}

/// A server's finish string as our stop reason ("length": the token limit).
pub fn stop_from_finish(finish: &str) -> StopReason {
    if finish == "length" {
        StopReason::MaxTokens
    } else {
        StopReason::EndToken
    }
}

/// The longest token text (a piece) accepted from a server: no vocabulary's tokens come near
/// it, and the app lays pieces out every frame.
pub(crate) const PIECE_BYTES: usize = 1 << 10;

/// `Err` naming `field` when `piece` is longer than `PIECE_BYTES`.
pub(crate) fn check_piece(field: &str, piece: &str) -> Result<(), RemoteError> {
    if piece.len() > PIECE_BYTES {
        return Err(RemoteError::Protocol(format!(
            "{field} is a token of {} bytes, more than the {PIECE_BYTES} one may have",
            piece.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_secrets() {
        for (given, shown) in [
            (
                "https://user:pw@x.run.app/v1?key=s3cret#f",
                "https://***@x.run.app/v1?***",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("https://a.run.app/path", "https://a.run.app/path"),
            ("ftp://tok@host?x", "ftp://***@host?***"),
            ("nonsense user:pw@host", "***@host"),
        ] {
            assert_eq!(shown_url(given), shown, "{given}");
        }
        let bad = RemoteConfig::new("ftp://user:pw@host/?key=s3cret")
            .base()
            .unwrap_err();
        let text = bad.to_string();
        assert!(!text.contains("pw") && !text.contains("s3cret"), "{text}");
    }

    #[test]
    fn server_text_is_shortened_and_escaped() {
        assert_eq!(shown_text("llama3:8b", 64), "llama3:8b");
        assert_eq!(shown_text("abcde", 5), "abcde");
        assert_eq!(shown_text("abcdef", 5), "abcd…");
        assert_eq!(shown_text("abc", 0), "");
        assert_eq!(shown_text("a\nb\u{1b}[2J", 64), "a\\u{a}b\\u{1b}[2J");
        assert_eq!(shown_text("x\u{202e}y", 64), "x\\u{202e}y");
        // An escape is never cut in half: it goes whole or not at all.
        assert_eq!(shown_text("ab\u{7}cd", 7), "ab…");
        let long = shown_text(&"é".repeat(10_000), 300);
        assert_eq!(long.chars().count(), 300);
        assert!(long.ends_with('…'));
        // One use: the version a server names goes into the line the app shows.
        let info = ServerInfo {
            api: ApiKind::Ollama,
            version: Some(format!("0.1\u{1b}]0;pwned\u{7}{}", "9".repeat(1000))),
            models: vec![],
            capabilities: Capabilities::default(),
        };
        let line = info.describe(Some("m\r\n"));
        assert!(!line.chars().any(char::is_control), "{line}");
        assert!(line.len() < 300, "{line}");
    }

    #[test]
    fn urls_are_checked_and_tokens_never_printed() {
        assert!(RemoteConfig::new("not a url").base().is_err());
        assert!(RemoteConfig::new("ftp://x.example").base().is_err());
        assert_eq!(
            RemoteConfig::new("https://svc-abc.a.run.app/")
                .base()
                .unwrap(),
            "https://svc-abc.a.run.app"
        );
        let mut c = RemoteConfig::new("http://127.0.0.1:8080");
        c.token = Some("secret-token-value".into());
        assert!(!format!("{c:?}").contains("secret-token-value"));
        assert_eq!("OpenAI".parse::<ApiKind>(), Ok(ApiKind::OpenAi));
        assert!("grpc".parse::<ApiKind>().is_err());
    }
}
