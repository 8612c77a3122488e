//! The slot and its queue: clients that leave while queued give their place back, and Ollama's
//! loads, unloads and zero-token requests are answered at once without taking a slot, all while
//! the only slot is held by an answer that does not end by itself.

use std::time::{Duration, Instant};

use testkit::http;

use super::{Server, http_with, posted, start_serve, status_within, until_answered};

/// A connection whose answer a thread reads and throws away as it comes, so the server never
/// waits on this client (nor drops the answer for a client that stopped reading); dropping it
/// closes the connection.
struct Drained(std::net::TcpStream);

impl Drained {
    fn new(s: std::net::TcpStream) -> Self {
        let mut reader = s.try_clone().expect("a second handle on the connection");
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        Self(s)
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// serve with one slot and a queue of `queue`, the slot held by a streamed count (raw, no
/// template: greedy decoding goes on counting, with no end token) of 4,000 tokens, read as it
/// comes: over 10 s even at 400 tokens/s. Its head has come back, and the server writes it only
/// once the slot is taken: the slot is held when this returns, until the holder is dropped or
/// the count ends.
fn one_slot_held(queue: usize) -> (Server, Drained) {
    let server = start_serve(&["--concurrency", "1", "--queue", &queue.to_string()]);
    let count = r#"{"prompt":"1, 2, 3, 4, 5, 6, 7, 8,","raw":true,"stream":true,"options":{"num_predict":4000}}"#;
    let mut holder = posted(server.port, "/api/generate", count);
    let status = status_within(&mut holder, Duration::from_secs(60));
    assert_eq!(status, Some(200), "the answer meant to hold the slot");
    (server, Drained::new(holder))
}

/// A short answer, asked while the slot is held.
const SHORT: &str = r#"{"prompt":"Hi.","stream":false,"options":{"num_predict":2}}"#;

#[test]
fn clients_that_leave_while_queued_give_their_place_back() {
    let (server, holder) = one_slot_held(1);
    let port = server.port;
    // Clients that queue for the slot, then hang up: each must free its place in the queue, or
    // the next would be refused as busy (and after queue-many, everyone, until a restart).
    // The server learns that a client left only when it reads the closed connection, which
    // may come after the next client asks: a 503 is asked again, for 2 s (well inside the
    // count holding the slot). An answer (the slot is held) or a refusal that lasts means a
    // place was kept.
    for i in 0..4 {
        let started = Instant::now();
        let leaver = loop {
            let mut s = posted(port, "/api/generate", SHORT);
            match status_within(&mut s, Duration::from_millis(400)) {
                // Still waiting: queued.
                None => break s,
                Some(503) if started.elapsed() < Duration::from_secs(2) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Some(503) => panic!(
                    "client {i} was still refused as busy 2 s after the one before it left: \
                     that one kept its place"
                ),
                Some(status) => panic!("client {i} was answered {status} while the slot was held"),
            }
        };
        drop(leaver);
    }
    drop(holder);
    until_answered(
        port,
        Duration::from_secs(30),
        Duration::from_millis(100),
        "the slot stayed taken after the answer holding it was left",
    );
    for _ in 0..2 {
        let (status, body) = http(port, "POST", "/api/generate", SHORT).expect("an answer");
        assert_eq!(status, 200, "after the leavers: {body}");
    }
}

/// The JSON objects of a body, streamed (NDJSON between chunk-size lines) or not.
fn objects(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(serde_json::Value::is_object)
        .collect()
}

/// Ollama's load and unload (no prompt, no messages) and `num_predict: 0` are answered at once
/// with no tokens, and take no slot: the only slot is busy meanwhile, with no queue, so any of
/// them that generated would get a 503 (or, had the slot come free, tokens). OpenAI's
/// `max_tokens: 0` is a 400.
#[test]
fn loads_and_zero_tokens_are_answered_at_once_without_a_slot() {
    let (server, holder) = one_slot_held(0);
    let port = server.port;
    let model = r#""model":"smollm2-135m-instruct""#;
    for (path, body, reason) in [
        ("/api/generate", format!("{{{model}}}"), "load"),
        (
            "/api/generate",
            format!(r#"{{{model},"prompt":"","raw":true}}"#),
            "load",
        ),
        (
            "/api/generate",
            format!(r#"{{{model},"prompt":null}}"#),
            "load",
        ),
        ("/api/chat", format!(r#"{{{model},"messages":[]}}"#), "load"),
        ("/api/chat", format!("{{{model}}}"), "load"),
        (
            "/api/generate",
            format!(r#"{{{model},"keep_alive":0}}"#),
            "unload",
        ),
        (
            "/api/chat",
            format!(r#"{{{model},"messages":[],"keep_alive":"0s"}}"#),
            "unload",
        ),
        (
            "/api/generate",
            r#"{"prompt":"Hi.","options":{"num_predict":0}}"#.to_string(),
            "length",
        ),
        (
            "/api/chat",
            r#"{"messages":[{"role":"user","content":"Hi."}],"options":{"num_predict":0}}"#
                .to_string(),
            "length",
        ),
    ] {
        for stream in [true, false] {
            let body = body.replacen('{', &format!("{{\"stream\":{stream},"), 1);
            let (s, head, b) = http_with(port, "POST", path, "", &body);
            assert_eq!(s, 200, "{path} {body}: {b}");
            let lines = objects(&b);
            assert_eq!(lines.len(), 1, "{path} {body}: one object: {b}");
            let v = &lines[0];
            assert_eq!(v["done"], true, "{path} {body}: {v}");
            assert_eq!(v["done_reason"], reason, "{path} {body}: {v}");
            let text = if path == "/api/chat" {
                assert_eq!(v["message"]["role"], "assistant", "{v}");
                &v["message"]["content"]
            } else {
                &v["response"]
            };
            assert_eq!(text, "", "{path} {body}: {v}");
            if reason == "length" {
                assert_eq!(v["eval_count"], 0, "{v}");
                assert!(v["prompt_eval_count"].as_u64() > Some(0), "{v}");
            }
            if stream {
                assert!(head.contains("application/x-ndjson"), "{head}");
            }
        }
    }
    // A prompt too long is refused as ever, tokens or none.
    let long_prompt = format!(
        r#"{{"prompt":"{}","stream":false,"options":{{"num_predict":0}}}}"#,
        "word ".repeat(6_000)
    );
    let (s, _, b) = http_with(port, "POST", "/api/generate", "", &long_prompt);
    assert_eq!(s, 400, "{b}");
    // OpenAI-compatible: zero tokens is a 400 that says why.
    for key in ["max_tokens", "max_completion_tokens"] {
        let body = format!(r#"{{"messages":[{{"role":"user","content":"Hi."}}],"{key}":0}}"#);
        let (s, _, b) = http_with(port, "POST", "/v1/chat/completions", "", &body);
        assert_eq!(s, 400, "{b}");
        assert!(b.contains(key) && b.contains("at least 1"), "{b}");
    }
    // The slot was held all along, so none of the above was answered for want of a rival: one
    // that generates is still refused.
    let (s, b) = http(port, "POST", "/api/generate", SHORT).expect("an answer");
    assert_eq!(s, 503, "a generating request while the slot was held: {b}");
    drop(holder);
}
