//! The log on stderr: with `--log-format json` every line is a JSON object with `severity` and
//! `message`, and each finished generation request has one line with its route, status,
//! outcome, tokens, times and trace (the project from $GOOGLE_CLOUD_PROJECT); on Cloud Run
//! ($K_SERVICE set) JSON is the default and the project comes from the metadata server; text
//! stays the default elsewhere.

use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::http::{response, scripted};
use testkit::{ChildGuard, spawn_listening, wait_ok};

use super::{http_with, serve_command};

/// A server whose stderr is read line by line.
struct Logged {
    _guard: ChildGuard,
    port: u16,
    lines: mpsc::Receiver<String>,
    /// The lines read so far.
    seen: Vec<Value>,
}

/// The server with `args` and `env` (none of Cloud Run's variables unless given), its stderr
/// piped; once /health is 200 when `ready`.
fn start_logged(args: &[&str], env: &[(&str, &str)], ready: bool) -> Logged {
    let started = spawn_listening(
        serve_command()
            .args(args)
            .env_remove("K_SERVICE")
            .env_remove("GOOGLE_CLOUD_PROJECT")
            .env_remove("GCE_METADATA_HOST")
            .envs(env.iter().copied())
            .stdout(Stdio::null()),
        Duration::from_secs(60),
    )
    .expect("samemath-serve listening");
    let server = Logged {
        _guard: started.guard,
        port: started.port,
        lines: started.lines,
        seen: Vec::new(),
    };
    if ready {
        wait_ok(server.port, "/health", Duration::from_secs(180)).unwrap();
    }
    server
}

impl Logged {
    /// The next raw line, within 30 s.
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a log line within 30 s")
    }

    /// Read JSON lines until one has `route`; every line read must be a JSON object with a
    /// severity and a message.
    fn line_for(&mut self, route: &str) -> Value {
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no line for {route} in {:#?}",
                self.seen
            );
            let line = self.next_line();
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
            assert!(
                ["INFO", "WARNING", "ERROR"].contains(&v["severity"].as_str().unwrap_or("")),
                "{line}"
            );
            assert!(v["message"].is_string(), "{line}");
            assert!(line.len() <= 32 << 10, "{} bytes", line.len());
            self.seen.push(v.clone());
            if v["route"] == route {
                return v;
            }
        }
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[test]
fn json_logs_give_each_request_one_line_with_its_numbers_and_trace() {
    let mut server = start_logged(
        &["--log-format", "json"],
        &[("GOOGLE_CLOUD_PROJECT", "test-project")],
        true,
    );
    let port = server.port;
    // A client's own text (a long user agent) makes no long line.
    let agent = format!("agent \u{fc}{}", "x".repeat(4000));
    let headers = format!("X-Cloud-Trace-Context: {TRACE_ID}/123;o=1\r\nUser-Agent: {agent}\r\n");
    let body = r#"{"prompt":"Why is the sky blue?","stream":false,"options":{"num_predict":3}}"#;
    let (status, _, answer) = http_with(port, "POST", "/api/generate", &headers, body);
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let v = server.line_for("/api/generate");
    println!("{v}");
    assert_eq!(v["severity"], "INFO", "{v}");
    assert_eq!(v["status"], 200);
    assert!(
        ["token_limit", "completed"].contains(&v["outcome"].as_str().unwrap()),
        "{v}"
    );
    assert_eq!(v["prompt_tokens"], answer["prompt_eval_count"], "{v}");
    assert_eq!(v["generated_tokens"], answer["eval_count"], "{v}");
    assert!(v["slot_secs"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["queue_secs"].as_f64().unwrap() >= 0.0, "{v}");
    assert_eq!(
        v["logging.googleapis.com/trace"],
        format!("projects/test-project/traces/{TRACE_ID}")
    );
    assert_eq!(v["logging.googleapis.com/spanId"], "000000000000007b");
    assert_eq!(v["logging.googleapis.com/trace_sampled"], true);
    assert_eq!(v["httpRequest"]["status"], 200);
    assert_eq!(v["httpRequest"]["requestUrl"], "/api/generate");
    let ua = v["httpRequest"]["userAgent"].as_str().unwrap();
    assert!(
        ua.starts_with("agent \u{fc}xxx") && ua.len() <= 256 && ua.ends_with('\u{2026}'),
        "{ua:.80}"
    );
    let message = v["message"].as_str().unwrap();
    assert!(message.starts_with("POST /api/generate 200 "), "{message}");

    // Streamed, without a trace header: one line, not one a token, and no trace field.
    let body = r#"{"messages":[{"role":"user","content":"Hi"}],"stream":true,"max_tokens":4}"#;
    let (status, _, answer) = http_with(port, "POST", "/v1/chat/completions", "", body);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("[DONE]"), "{answer}");
    let v = server.line_for("/v1/chat/completions");
    assert_eq!(
        (v["severity"].as_str(), v["status"].as_u64()),
        (Some("INFO"), Some(200))
    );
    let generated = v["generated_tokens"].as_u64().unwrap();
    assert!((1..=4).contains(&generated), "{v}");
    assert!(v["prompt_tokens"].as_u64().unwrap() > 0, "{v}");
    assert!(v.get("logging.googleapis.com/trace").is_none(), "{v}");

    // A refusal: WARNING, with its status.
    let (status, _, _) = http_with(port, "POST", "/api/chat", "", "{not json");
    assert_eq!(status, 400);
    let v = server.line_for("/api/chat");
    assert_eq!(v["severity"], "WARNING", "{v}");
    assert_eq!(
        (v["status"].as_u64(), v["outcome"].as_str()),
        (Some(400), Some("refused"))
    );

    // What came before: the startup lines, as INFO; exactly one line per request.
    let messages: Vec<&str> = server
        .seen
        .iter()
        .filter_map(|v| v["message"].as_str())
        .collect();
    let at = |start: &str| messages.iter().position(|m| m.starts_with(start));
    assert!(at("listening on http://").is_some(), "{messages:#?}");
    assert!(at("model loaded in").is_some(), "{messages:#?}");
    let per_request = server
        .seen
        .iter()
        .filter(|v| v["route"].is_string())
        .count();
    assert_eq!(per_request, 3, "{messages:#?}");
    // Nothing else came meanwhile (a line per token would have).
    std::thread::sleep(Duration::from_millis(300));
    let late: Vec<String> = server.lines.try_iter().collect();
    assert!(late.is_empty(), "{late:#?}");
}

#[test]
fn on_cloud_run_the_log_is_json_and_the_project_comes_from_the_metadata_server() {
    // Elsewhere, text is the default, as before.
    let text = start_logged(&[], &[], false);
    let first = text.next_line();
    assert!(
        first.starts_with("samemath serve: listening on http://127.0.0.1:"),
        "{first}"
    );
    drop(text);

    let metadata = scripted(vec![(
        Duration::ZERO,
        response("200 OK", "application/text", b"meta-proj-7"),
    )]);
    let host = format!("127.0.0.1:{metadata}");
    let mut server = start_logged(
        &[],
        &[("K_SERVICE", "samemath"), ("GCE_METADATA_HOST", &host)],
        true,
    );
    let headers = format!("X-Cloud-Trace-Context: {TRACE_ID}/1\r\n");
    let body = r#"{"messages":[{"role":"user","content":"Hi"}],"stream":false,"options":{"num_predict":2}}"#;
    let (status, _, answer) = http_with(server.port, "POST", "/api/chat", &headers, body);
    assert_eq!(status, 200, "{answer}");
    let v = server.line_for("/api/chat");
    assert_eq!(
        v["logging.googleapis.com/trace"],
        format!("projects/meta-proj-7/traces/{TRACE_ID}")
    );
    assert_eq!(v["logging.googleapis.com/spanId"], "0000000000000001");
    assert!(
        v.get("logging.googleapis.com/trace_sampled").is_none(),
        "{v}"
    );
    assert_eq!(v["generated_tokens"], 2, "{v}");
    assert_eq!(
        (v["status"].as_u64(), v["severity"].as_str()),
        (Some(200), Some("INFO"))
    );
    assert!(
        ["token_limit", "completed"].contains(&v["outcome"].as_str().unwrap()),
        "{v}"
    );
}
