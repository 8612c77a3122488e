//! Bounds on what a server can make the client do: a stall after the headers (Stop works, the
//! idle bound ends it), a stream that never ends (cut at max_tokens), keep-alive lines without
//! tokens, an endless error body, a stalled or trickled probe answer, a silent probe stopped,
//! a step with too much text, an Ollama line past its cap, model names that cannot be one, and
//! secrets in the URL kept out of errors.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use llm::CancelToken;
use remote::{RemoteClient, RemoteError, RemoteEvent};
use testkit::http::{ollama_lines, response, scripted, streamed};

use super::{fake_ollama, run_fake, runtime};

/// One connection: the request head read, `head` written, then `body()` called with the stream
/// (which may write forever; write errors end it), then the socket held open for `hold`.
fn holding(
    head: Vec<u8>,
    body: impl FnOnce(&mut std::net::TcpStream) + Send + 'static,
    hold: Duration,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let _ = s.write_all(&head);
        let _ = s.flush();
        body(&mut s);
        std::thread::sleep(hold);
    });
    port
}

fn generate(
    port: u16,
    first_byte_timeout: Duration,
    cancel: &CancelToken,
) -> (Result<remote::RemoteSummary, RemoteError>, Vec<String>) {
    let (mut config, request) = fake_ollama(port);
    config.first_byte_timeout = first_byte_timeout;
    let mut statuses = Vec::new();
    let result = runtime().block_on(async {
        let mut client = RemoteClient::new(config)?;
        client
            .generate(&request, cancel, &mut |e| {
                if let RemoteEvent::Status(s) = e {
                    statuses.push(s);
                }
            })
            .await
    });
    (result, statuses)
}

#[test]
fn stalls_endless_streams_and_bodies_are_bounded() {
    // Headers and one token, then silence: Stop works while it waits.
    let stall = || streamed(&ollama_lines(&["one"], false));
    let port = holding(stall(), |_| {}, Duration::from_secs(40));
    let cancel = CancelToken::default();
    let stopper = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        stopper.cancel();
    });
    let (r, _) = generate(port, Duration::from_secs(120), &cancel);
    assert!(matches!(r, Err(RemoteError::Cancelled)), "{r:?}");

    // The same silence, nobody pressing Stop: dropped after the idle bound (the first-byte
    // timeout), with the token that came kept in the count.
    let port = holding(stall(), |_| {}, Duration::from_secs(40));
    let (r, _) = generate(port, Duration::from_secs(2), &CancelToken::default());
    assert!(
        matches!(&r, Err(RemoteError::Dropped { received: 1, reason }) if reason.contains("no tokens or reasoning for")),
        "{r:?}"
    );

    // A server that streams tokens forever: cut at max_tokens (4 asked).
    let head =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n"
            .to_vec();
    let endless = |s: &mut std::net::TcpStream| {
        for _ in 0..1_000_000 {
            if s.write_all(b"{\"response\":\"x\",\"done\":false}\n")
                .is_err()
            {
                return;
            }
        }
    };
    let port = holding(head, endless, Duration::ZERO);
    let (r, statuses) = generate(port, Duration::from_secs(30), &CancelToken::default());
    let summary = r.expect("the answer, cut");
    assert_eq!(summary.stop, Some(llm::StopReason::MaxTokens));
    assert!(summary.tokens <= 5, "{} tokens", summary.tokens);
    assert!(statuses.iter().any(|s| s.contains("cut")), "{statuses:?}");

    // An endless error body: read up to its cap, then reported.
    let head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
        .to_vec();
    let endless_text = |s: &mut std::net::TcpStream| {
        let chunk = vec![b'e'; 1 << 16];
        for _ in 0..100_000 {
            if s.write_all(&chunk).is_err() {
                return;
            }
        }
    };
    let port = holding(head, endless_text, Duration::ZERO);
    let (r, _) = generate(port, Duration::from_secs(30), &CancelToken::default());
    assert!(
        matches!(&r, Err(RemoteError::Status { status: 500, body, .. }) if body.chars().count() <= 300),
        "{r:?}"
    );

    // An error body promised and never sent: reported once its short wait is over.
    let head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100\r\n\r\n".to_vec();
    let port = holding(head, |_| {}, Duration::from_secs(60));
    let started = Instant::now();
    let (r, _) = generate(port, Duration::from_secs(120), &CancelToken::default());
    assert!(
        matches!(&r, Err(RemoteError::Status { status: 500, .. })),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// An NDJSON stream on a port: `line` `times` times, 200 ms apart, then `then`.
fn repeating(line: &'static [u8], times: usize, then: Vec<u8>) -> u16 {
    let head =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n"
            .to_vec();
    let body = move |s: &mut std::net::TcpStream| {
        for _ in 0..times {
            if s.write_all(line).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = s.write_all(&then);
    };
    holding(head, body, Duration::ZERO)
}

#[test]
fn keep_alive_lines_without_tokens_end_the_answer() {
    // `{"done":false}` five times a second, and never a token: dropped after the idle bound,
    // though bytes keep coming.
    let port = repeating(b"{\"done\":false}\n", 300, Vec::new());
    let started = Instant::now();
    let (r, _) = generate(port, Duration::from_secs(2), &CancelToken::default());
    assert!(
        matches!(&r, Err(RemoteError::Dropped { received: 0, reason }) if reason.contains("no tokens or reasoning for")),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_reasoning_model_thinking_longer_than_the_idle_bound_is_not_dropped() {
    // Four seconds of thinking (Ollama's `thinking` field) against a 2 s idle bound, then the
    // answer: the thinking shows progress, so the answer arrives.
    let thinking = b"{\"message\":{\"role\":\"assistant\",\"thinking\":\"hm\"},\"done\":false}\n";
    let port = repeating(thinking, 20, ollama_lines(&["Paris"], true));
    let (r, _) = generate(port, Duration::from_secs(2), &CancelToken::default());
    let summary = r.expect("the answer after the thinking");
    assert_eq!(summary.text, "Paris");
}

#[test]
fn a_second_prompt_line_is_a_protocol_error() {
    // Each prompt line makes the app fit its token cloud again: a server repeating it could
    // keep the app busy with nothing else.
    let prompt = "{\"prompt\":{\"tokens\":[{\"id\":1,\"piece\":\"a\"}],\"embeddings\":[[0.5]]}}\n";
    let port = scripted(vec![(
        Duration::ZERO,
        streamed(prompt.repeat(2).as_bytes()),
    )]);
    let (r, statuses, _) = run_fake(port, |c| c.api = Some(remote::ApiKind::Samemath));
    assert!(
        matches!(&r, Err(RemoteError::Protocol(m)) if m.contains("second prompt line")),
        "{r:?}"
    );
    assert_eq!(statuses, ["prompt"], "the first one is taken");
}

/// `probe()` against a server on `port`, with a first-byte timeout of 2 s; and how long it took.
fn probe(port: u16) -> (Result<remote::ServerInfo, RemoteError>, Duration) {
    let mut config = remote::RemoteConfig::new(format!("http://127.0.0.1:{port}"));
    config.first_byte_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let r = runtime().block_on(async { RemoteClient::new(config)?.probe().await });
    (r, started.elapsed())
}

#[test]
fn a_stalled_or_trickled_probe_answer_ends_the_probe() {
    // Headers that promise 100 bytes, then nothing: a timeout naming /api/info, the first API
    // kind tried (a silent server is not asked about the others).
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec();
    let port = holding(head.clone(), |_| {}, Duration::from_secs(60));
    let (r, took) = probe(port);
    assert!(
        matches!(&r, Err(RemoteError::SlowBody { url, .. }) if url.ends_with("/api/info")),
        "{r:?}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");

    // The same 100 bytes, one each 300 ms: the whole read is bounded, not just each wait.
    let trickle = |s: &mut std::net::TcpStream| {
        for _ in 0..100 {
            if s.write_all(b" ").and_then(|()| s.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let port = holding(head, trickle, Duration::ZERO);
    let (r, took) = probe(port);
    assert!(
        matches!(&r, Err(RemoteError::SlowBody { url, .. }) if url.ends_with("/api/info")),
        "{r:?}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn a_probe_reports_its_wait_and_stop_ends_it() {
    // A server that takes the request and never answers (a cold start, or a black hole), with
    // a first-byte timeout of a minute: the wait is reported each second (the app's Connect
    // shows it), and Stop, sent once it has been reported twice, ends the probe (the app's Stop
    // button sends the cancel). Stopping on the reports, not after a fixed time, keeps a slow
    // start of the client on a loaded machine from cancelling before the first report.
    let port = holding(Vec::new(), |_| {}, Duration::from_secs(60));
    let mut config = remote::RemoteConfig::new(format!("http://127.0.0.1:{port}"));
    config.first_byte_timeout = Duration::from_secs(60);
    let cancel = CancelToken::default();
    let stopper = cancel.clone();
    let mut statuses: Vec<String> = Vec::new();
    let started = Instant::now();
    let r = runtime().block_on(async {
        RemoteClient::new(config)?
            .probe_watched(&cancel, &mut |e| {
                if let RemoteEvent::Status(s) = e {
                    statuses.push(s);
                    let waits = statuses
                        .iter()
                        .filter(|s| s.starts_with("waking the service"))
                        .count();
                    if waits >= 2 {
                        stopper.cancel();
                    }
                }
            })
            .await
    });
    let took = started.elapsed();
    assert!(matches!(r, Err(RemoteError::Cancelled)), "{r:?}");
    assert!(took < Duration::from_secs(30), "Stop took {took:?}");
    assert!(
        statuses.iter().any(|s| s.starts_with("waking the service")),
        "{statuses:?}"
    );
    println!("stopped after {took:?}; statuses {statuses:?}");
}

#[test]
fn a_step_with_too_much_text_is_a_protocol_error() {
    let word = "a".repeat(100_000);
    let port = scripted(vec![(
        Duration::ZERO,
        streamed(&ollama_lines(&[&word], true)),
    )]);
    let (r, _) = generate(port, Duration::from_secs(30), &CancelToken::default());
    assert!(
        matches!(&r, Err(RemoteError::Protocol(m)) if m.contains("bytes of text")),
        "{:?}",
        r.map(|s| (s.tokens, s.text.len()))
    );
}

#[test]
fn an_ollama_line_over_a_mib_is_refused() {
    // Well within a trace line's cap, past a text API's: every line becomes a JSON value.
    let mut line = b"{\"response\":\"".to_vec();
    line.extend(std::iter::repeat_n(b'a', 2 << 20));
    line.extend_from_slice(b"\",\"done\":true}\n");
    let port = scripted(vec![(Duration::ZERO, streamed(&line))]);
    let (r, _) = generate(port, Duration::from_secs(30), &CancelToken::default());
    assert!(
        matches!(&r, Err(RemoteError::Protocol(m)) if m.contains("longer than 1048576")),
        "{:?}",
        r.map(|s| s.tokens)
    );
}

#[test]
fn model_names_too_long_or_with_hidden_characters_are_left_out() {
    let version = response("200 OK", "application/json", b"{\"version\":\"0.12.11\"}");
    let tags = serde_json::json!({"models": [
        {"name": "x".repeat(1 << 20)},
        {"name": "evil\u{202e}fdp.exe"},
        {"name": "bell\u{7}"},
        {"name": "llama3:8b"},
    ]});
    let tags = response("200 OK", "application/json", tags.to_string().as_bytes());
    let port = scripted(vec![(Duration::ZERO, version), (Duration::ZERO, tags)]);
    let mut config = remote::RemoteConfig::new(format!("http://127.0.0.1:{port}"));
    config.api = Some(remote::ApiKind::Ollama);
    config.first_byte_timeout = Duration::from_secs(10);
    let (info, model) = runtime().block_on(async {
        let mut client = RemoteClient::new(config).unwrap();
        let info = client.probe().await.unwrap();
        (info, client.model().map(String::from))
    });
    assert_eq!(info.models, ["llama3:8b"]);
    assert_eq!(model.as_deref(), Some("llama3:8b"));
}

#[test]
fn secrets_in_the_url_stay_out_of_errors() {
    // Nothing listens on port 9 of loopback: a connection error naming the URL.
    let mut config = remote::RemoteConfig::new("http://user:hunter2@127.0.0.1:9/?key=s3cret");
    config.api = Some(remote::ApiKind::Ollama);
    config.model = Some("m".into());
    let request = llm::GenerationRequest::new("hi");
    let err = runtime()
        .block_on(async {
            RemoteClient::new(config)?
                .generate(&request, &CancelToken::default(), &mut |_| {})
                .await
        })
        .unwrap_err();
    let text = err.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );
    assert!(text.contains("127.0.0.1:9"), "{text}");
}
