//! The server's log on stderr, one line per event: text for a person (`samemath serve: ...`), or
//! one JSON object a line, which Cloud Run turns into a structured Cloud Logging entry (its
//! special fields: `severity`, `message`, `httpRequest`, and `logging.googleapis.com/trace`,
//! `.../spanId`, `.../trace_sampled` from the request's `X-Cloud-Trace-Context`): JSON on Cloud
//! Run (`$K_SERVICE` set) or with `--log-format json`. Every line is bounded whatever a client
//! sends: strings are cut (`MAX_MESSAGE`, `MAX_FIELD`), control characters escaped (by JSON's
//! escaping, or by hand in text), and a line that would pass `MAX_LINE` loses its fields.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::HeaderMap;
use clap::ValueEnum;
use serde_json::Value;

/// How the log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `samemath serve: MESSAGE`, for a person at a terminal.
    Text,
    /// One JSON object a line: `severity`, `message` and fields, as Cloud Logging reads them.
    Json,
}

impl LogFormat {
    /// The format asked for, else JSON on Cloud Run (`$K_SERVICE` is set there), text elsewhere.
    pub fn or_default(asked: Option<LogFormat>) -> LogFormat {
        asked.unwrap_or(if on_cloud_run() {
            LogFormat::Json
        } else {
            LogFormat::Text
        })
    }
}

/// Cloud Logging's severities that the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Startup, readiness, requests answered.
    Info,
    /// Refusals, fallbacks, answers the server cut.
    Warning,
    /// Internal failures: a failed load, a caught panic, an engine error.
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        }
    }
}

/// The longest message, in bytes (cut at a character, with `…`).
pub const MAX_MESSAGE: usize = 2048;
/// The longest string in a field, in bytes.
pub const MAX_FIELD: usize = 256;
/// Entries of a list or an object field kept.
const MAX_ITEMS: usize = 16;
/// The longest line: a line with its fields that would pass it goes without them. (A message
/// of control characters is six times `MAX_MESSAGE` as JSON; a request's fields, a few KiB.)
pub const MAX_LINE: usize = 32 << 10;
/// What text lines begin with.
const TEXT_PREFIX: &str = "samemath serve: ";

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Set the format for this process (the first call wins; unset: `LogFormat::or_default(None)`).
pub fn init(format: LogFormat) {
    let _ = FORMAT.set(format);
}

fn format() -> LogFormat {
    *FORMAT.get_or_init(|| LogFormat::or_default(None))
}

fn on_cloud_run() -> bool {
    std::env::var_os("K_SERVICE").is_some_and(|s| !s.is_empty())
}

/// One log line: a severity, a message and a few fields.
#[derive(Debug, Clone)]
pub struct Entry {
    severity: Severity,
    message: String,
    fields: Vec<(&'static str, Value)>,
}

impl Entry {
    pub fn new(severity: Severity, message: impl Into<String>) -> Self {
        Self {
            severity,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub fn info(message: impl Into<String>) -> Self {
        Self::new(Severity::Info, message)
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, message)
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Severity::Error, message)
    }

    /// A field of the JSON line (text lines show the message only); its strings are cut.
    pub fn field(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.fields.push((key, bounded(value.into())));
        self
    }

    /// The request's trace, as Cloud Logging links a line to its request: only when the
    /// project is known ($GOOGLE_CLOUD_PROJECT, or the metadata server on Cloud Run).
    pub fn trace(self, trace: Option<&TraceContext>) -> Self {
        self.trace_in(trace, project())
    }

    pub(crate) fn trace_in(mut self, trace: Option<&TraceContext>, project: Option<&str>) -> Self {
        let (Some(t), Some(project)) = (trace, project) else {
            return self;
        };
        self = self.field(
            "logging.googleapis.com/trace",
            format!("projects/{project}/traces/{}", t.trace_id),
        );
        if let Some(span) = &t.span_id {
            self = self.field("logging.googleapis.com/spanId", span.as_str());
        }
        if let Some(sampled) = t.sampled {
            self = self.field("logging.googleapis.com/trace_sampled", sampled);
        }
        self
    }

    /// The line, without its newline.
    pub fn line(&self, format: LogFormat) -> String {
        let message = cut(&self.message, MAX_MESSAGE);
        match format {
            LogFormat::Text => format!("{TEXT_PREFIX}{}", escaped(&message)),
            LogFormat::Json => {
                let whole = json_line(self.severity, &message, &self.fields);
                if whole.len() <= MAX_LINE {
                    return whole;
                }
                json_line(self.severity, &message, &[("fields_dropped", true.into())])
            }
        }
    }

    /// Write the line to stderr, whole, in the process's format.
    pub fn emit(self) {
        let mut line = self.line(format());
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// `{"severity":...,"message":...,fields...}`: the two Cloud Logging reads first, first.
fn json_line(severity: Severity, message: &str, fields: &[(&'static str, Value)]) -> String {
    let mut line = format!(
        r#"{{"severity":"{}","message":{}"#,
        severity.name(),
        Value::from(message)
    );
    for (key, value) in fields {
        if matches!(*key, "severity" | "message") {
            continue;
        }
        line.push(',');
        line.push_str(&Value::from(*key).to_string());
        line.push(':');
        line.push_str(&value.to_string());
    }
    line.push('}');
    line
}

/// `s` cut to at most `max` bytes, at a character boundary, ending in `…` when cut.
fn cut(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

/// A value with every string (keys too) cut and every list or object shortened.
fn bounded(value: Value) -> Value {
    match value {
        Value::String(s) if s.len() > MAX_FIELD => Value::String(cut(&s, MAX_FIELD).into_owned()),
        Value::Array(a) => Value::Array(a.into_iter().take(MAX_ITEMS).map(bounded).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .take(MAX_ITEMS)
                .map(|(k, v)| (cut(&k, MAX_FIELD).into_owned(), bounded(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Text for one line of a terminal: the message (cut, with `…`) with control characters and
/// bidirectional overrides escaped, so that no client's text can start a line of its own or
/// rearrange what a terminal shows.
fn escaped(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.push_str(&c.escape_unicode().to_string());
            }
            c => out.push(c),
        }
    }
    out
}

/// A request's place in Cloud Trace: from `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1` (Cloud
/// Run's front end sets it on every request), else W3C `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 hex digits (Cloud Logging's form; the header's span is a decimal number).
    pub span_id: Option<String>,
    pub sampled: Option<bool>,
}

impl TraceContext {
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        text("x-cloud-trace-context")
            .and_then(Self::cloud)
            .or_else(|| text("traceparent").and_then(Self::traceparent))
    }

    /// `TRACE_ID[/SPAN_ID][;o=OPTIONS]`; None unless the trace id is 32 hex digits (not all 0).
    fn cloud(value: &str) -> Option<Self> {
        let (ids, options) = value.trim().split_once(';').unwrap_or((value.trim(), ""));
        let (trace, span) = ids.split_once('/').unwrap_or((ids, ""));
        let trace_id = hex_id(trace, 32)?;
        let span_id = span
            .parse::<u64>()
            .ok()
            .filter(|&s| s != 0)
            .map(|s| format!("{s:016x}"));
        let sampled = match options.trim() {
            "o=1" => Some(true),
            "o=0" => Some(false),
            _ => None,
        };
        Some(Self {
            trace_id,
            span_id,
            sampled,
        })
    }

    /// `VERSION-TRACE_ID-SPAN_ID-FLAGS` (W3C Trace Context).
    fn traceparent(value: &str) -> Option<Self> {
        let parts: Vec<&str> = value.trim().split('-').collect();
        let [version, trace, span, flags] = parts[..] else {
            return None;
        };
        if version.len() != 2 || version == "ff" {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16)
            .ok()
            .filter(|_| flags.len() == 2)?;
        Some(Self {
            trace_id: hex_id(trace, 32)?,
            span_id: Some(hex_id(span, 16)?),
            sampled: Some(flags & 1 == 1),
        })
    }
}

/// `s` as an id of `len` hex digits, lowercase; None when it is not one, or all zeros.
fn hex_id(s: &str, len: usize) -> Option<String> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0'))
        .then(|| s.to_ascii_lowercase())
}

static PROJECT: OnceLock<String> = OnceLock::new();

/// The Google Cloud project the trace field names, once known.
pub fn project() -> Option<&'static str> {
    PROJECT.get().map(String::as_str)
}

/// Learn the project for the trace field: `$GOOGLE_CLOUD_PROJECT` when set; else, on Cloud Run,
/// the metadata server's answer (asked once, in the background: lines written before it comes
/// carry no trace). Elsewhere, without the variable, lines carry no trace.
pub fn find_project() {
    if let Some(p) = std::env::var("GOOGLE_CLOUD_PROJECT")
        .ok()
        .filter(|p| is_project_id(p))
    {
        let _ = PROJECT.set(p);
        return;
    }
    if !on_cloud_run() {
        return;
    }
    // Google's client libraries read the same variable (a test points it at its own server).
    let host = std::env::var("GCE_METADATA_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "169.254.169.254".into());
    std::thread::spawn(move || match metadata_project(&host) {
        Ok(p) => {
            let _ = PROJECT.set(p);
        }
        Err(e) => Entry::warning(format!(
            "the project is unknown (the metadata server at {host}: {e}; set \
             $GOOGLE_CLOUD_PROJECT): log lines go without their request's trace"
        ))
        .emit(),
    });
}

/// Ask the metadata server (`host` or `host:port`) for the project id, within a few seconds.
fn metadata_project(host: &str) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind};
    use std::net::ToSocketAddrs;
    let wait = Duration::from_secs(3);
    let target = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = target
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| Error::new(ErrorKind::NotFound, "no address"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, wait)?;
    s.set_read_timeout(Some(wait))?;
    s.set_write_timeout(Some(wait))?;
    s.write_all(
        b"GET /computeMetadata/v1/project/project-id HTTP/1.0\r\n\
          Host: metadata.google.internal\r\nMetadata-Flavor: Google\r\n\r\n",
    )?;
    let mut answer = Vec::new();
    s.take(4096).read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(Error::other(format!(
            "answered {}",
            escaped(&cut(status, 64))
        )));
    }
    let id = body.trim();
    if !is_project_id(id) {
        return Err(Error::other("an answer that is not a project id"));
    }
    Ok(id.to_string())
}

/// A project id as Cloud Logging's trace names it: lowercase letters, digits, `-`, and for
/// domain-scoped projects `.` and `:`; at most 100 characters.
fn is_project_id(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 100
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Every C0 control character, DEL, a C1 one, a bidi override and a quote.
    const NASTY: &str =
        "a\u{0}\u{1}\u{7}\u{8}\t\n\u{b}\u{c}\r\u{1b}[31m\u{1f}\u{7f}\u{85}\u{202e}\"\\z";

    #[test]
    fn a_json_line_is_one_object_with_severity_and_message_first() {
        let e = Entry::warning("busy: 2 generating")
            .field("route", "/api/chat")
            .field("status", 503)
            .field("slot_secs", 0.25)
            .field("httpRequest", serde_json::json!({"status": 503}));
        let line = e.line(LogFormat::Json);
        assert!(
            line.starts_with(r#"{"severity":"WARNING","message":"busy: 2 generating","#),
            "{line}"
        );
        assert!(!line.contains('\n'));
        let v = parsed(&line);
        assert_eq!(v["route"], "/api/chat");
        assert_eq!(v["status"], 503);
        assert_eq!(v["slot_secs"], 0.25);
        assert_eq!(v["httpRequest"]["status"], 503);
        for (sev, name) in [(Entry::info("x"), "INFO"), (Entry::error("x"), "ERROR")] {
            assert_eq!(parsed(&sev.line(LogFormat::Json))["severity"], name);
        }
        // A field cannot replace the two Cloud Logging reads.
        let v = parsed(
            &Entry::info("m")
                .field("severity", "DEBUG")
                .line(LogFormat::Json),
        );
        assert_eq!(
            (v["severity"].as_str(), v["message"].as_str()),
            (Some("INFO"), Some("m"))
        );
        // Text: as the server always wrote it.
        assert_eq!(
            Entry::info("listening on http://127.0.0.1:8080").line(LogFormat::Text),
            "samemath serve: listening on http://127.0.0.1:8080"
        );
    }

    #[test]
    fn control_characters_are_escaped_in_both_formats() {
        let e = Entry::error(format!("panic: {NASTY}")).field("error", NASTY);
        let json = e.line(LogFormat::Json);
        assert!(json.bytes().all(|b| b >= 0x20), "{json:?}");
        let v = parsed(&json);
        // Escaped, not lost: the text reads back the same.
        assert_eq!(v["message"], format!("panic: {NASTY}"));
        assert_eq!(v["error"], NASTY);
        let text = e.line(LogFormat::Text);
        assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
        assert!(!text.contains('\u{202e}'), "{text:?}");
        assert!(
            text.starts_with(r"samemath serve: panic: a\u{0}\u{1}"),
            "{text:?}"
        );
        assert!(text.contains(r"\t\n\u{b}\u{c}\r\u{1b}[31m"), "{text:?}");
        assert!(text.contains(r"\u{202e}"), "{text:?}");
    }

    #[test]
    fn every_line_is_bounded_whatever_it_quotes() {
        // The longest message, all of it characters JSON writes as six bytes.
        let huge = "\u{1}".repeat(1 << 20);
        let wide = "é".repeat(MAX_FIELD);
        let list: Vec<String> = (0..1000).map(|i| format!("{i}{huge:.20}")).collect();
        let e = Entry::error(huge.clone())
            .field("error", huge.as_str())
            .field("wide", wide.as_str())
            .field("list", list);
        let json = e.line(LogFormat::Json);
        assert!(json.len() <= MAX_LINE, "{} bytes", json.len());
        let v = parsed(&json);
        let message = v["message"].as_str().unwrap();
        assert!(message.len() <= MAX_MESSAGE && message.ends_with('…'));
        assert!(v["error"].as_str().unwrap().len() <= MAX_FIELD);
        let wide_cut = v["wide"].as_str().unwrap();
        assert!(wide_cut.len() <= MAX_FIELD && wide_cut.ends_with('…'));
        assert!(wide_cut.trim_end_matches('…').chars().all(|c| c == 'é'));
        assert_eq!(v["list"].as_array().unwrap().len(), MAX_ITEMS);
        let text = e.line(LogFormat::Text);
        assert!(text.len() <= MAX_LINE, "{} bytes", text.len());
        // More fields than fit: the line keeps its severity and message, and says so.
        let mut many = Entry::info("many");
        for key in [
            "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q",
            "r", "s", "t", "u", "v", "w", "x",
        ] {
            many = many.field(key, huge.as_str());
        }
        let line = many.line(LogFormat::Json);
        assert!(line.len() <= MAX_LINE, "{} bytes", line.len());
        let v = parsed(&line);
        assert_eq!(
            (v["message"].as_str(), v["fields_dropped"].as_bool()),
            (Some("many"), Some(true))
        );
        // Short strings are untouched.
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcdef", 4), "a…");
    }

    #[test]
    fn the_trace_field_comes_from_the_header_and_the_project() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-cloud-trace-context",
            "105445AA7843BC8BF206B12000100000/123;o=1".parse().unwrap(),
        );
        let t = TraceContext::from_headers(&headers).expect("a trace");
        assert_eq!(t.trace_id, "105445aa7843bc8bf206b12000100000");
        assert_eq!(t.span_id.as_deref(), Some("000000000000007b"));
        assert_eq!(t.sampled, Some(true));
        let v = parsed(
            &Entry::info("done")
                .trace_in(Some(&t), Some("my-proj"))
                .line(LogFormat::Json),
        );
        assert_eq!(
            v["logging.googleapis.com/trace"],
            "projects/my-proj/traces/105445aa7843bc8bf206b12000100000"
        );
        assert_eq!(v["logging.googleapis.com/spanId"], "000000000000007b");
        assert_eq!(v["logging.googleapis.com/trace_sampled"], true);
        // No project known: no trace field (Cloud Logging would not link a bare id).
        let v = parsed(
            &Entry::info("done")
                .trace_in(Some(&t), None)
                .line(LogFormat::Json),
        );
        assert!(v.get("logging.googleapis.com/trace").is_none(), "{v}");
        // The header alone, or with options only; W3C traceparent when Cloud's is absent.
        for (value, span, sampled) in [
            ("105445aa7843bc8bf206b12000100000", None, None),
            ("105445aa7843bc8bf206b12000100000/0;o=0", None, Some(false)),
            ("105445aa7843bc8bf206b12000100000;o=1", None, Some(true)),
        ] {
            let t = TraceContext::cloud(value).unwrap();
            assert_eq!(
                (t.span_id.as_deref(), t.sampled),
                (span, sampled),
                "{value}"
            );
        }
        let mut w3c = HeaderMap::new();
        w3c.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let t = TraceContext::from_headers(&w3c).unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            (t.span_id.as_deref(), t.sampled),
            (Some("00f067aa0ba902b7"), Some(true))
        );
        // What a client may send instead: no trace, never its text in the line.
        for bad in [
            "",
            "/1;o=1",
            "105445aa7843bc8bf206b1200010000/1",
            "105445aa7843bc8bf206b120001000000/1",
            "00000000000000000000000000000000/1",
            "105445aa7843bc8bf206b1200010000g/1",
            "105445aa7843bc8bf206b12000100000\"},\"severity\":\"EMERGENCY",
        ] {
            assert_eq!(TraceContext::cloud(bad), None, "{bad}");
        }
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert_eq!(TraceContext::traceparent(bad), None, "{bad}");
        }
        assert_eq!(TraceContext::from_headers(&HeaderMap::new()), None);
    }

    /// A one-answer metadata server on loopback: its address, and the request it read.
    fn metadata_server(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let served = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(got).unwrap()
        });
        (addr, served)
    }

    #[test]
    fn the_project_comes_from_the_metadata_server() {
        let (addr, served) =
            metadata_server("HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\n\r\nmy-proj-12");
        assert_eq!(metadata_project(&addr).unwrap(), "my-proj-12");
        let request = served.join().unwrap();
        assert!(
            request.starts_with("GET /computeMetadata/v1/project/project-id HTTP/1.0\r\n"),
            "{request}"
        );
        assert!(
            request.contains("\r\nMetadata-Flavor: Google\r\n"),
            "{request}"
        );
        let (addr, served) = metadata_server("HTTP/1.1 404 Not Found\r\n\r\nnot here");
        let e = metadata_project(&addr).unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
        served.join().unwrap();
        let (addr, served) = metadata_server("HTTP/1.1 200 OK\r\n\r\n<html>\"x\"</html>");
        assert!(metadata_project(&addr).is_err());
        served.join().unwrap();
        for ok in ["my-proj", "example.com:my-proj", "p1"] {
            assert!(is_project_id(ok), "{ok}");
        }
        for bad in ["", "My-Proj", "a b", "a/traces/b", &"a".repeat(101)] {
            assert!(!is_project_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_flag_picks_the_format() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: crate::ServeArgs,
        }
        let format = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["serve"], args].concat()).unwrap();
            cli.serve.log_format
        };
        assert_eq!(format(&["--log-format", "json"]), Some(LogFormat::Json));
        assert_eq!(format(&["--log-format", "text"]), Some(LogFormat::Text));
        assert_eq!(format(&[]), None);
        assert!(Cli::try_parse_from(["serve", "--log-format", "xml"]).is_err());
        // Asked for: whatever the environment.
        assert_eq!(
            LogFormat::or_default(Some(LogFormat::Text)),
            LogFormat::Text
        );
        assert_eq!(
            LogFormat::or_default(Some(LogFormat::Json)),
            LogFormat::Json
        );
    }
}
