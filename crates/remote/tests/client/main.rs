//! Our clients against real and scripted servers on loopback: llama.cpp's server (PyPI
//! `llama-cpp-python[server]`) through the OpenAI-compatible client, and faults from a scripted
//! server (503 then success, 401 with a fresh token, a slow first byte, a timeout, a dropped
//! stream, an error line, a malformed line, a 10 MB line). Needs the model and llama.cpp's server
//! for the first (.ci/run installs them).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use llm::{CancelToken, GenerationRequest, SamplingParams, fetch};
use remote::{ApiKind, RemoteClient, RemoteConfig, RemoteError, RemoteEvent};
use testkit::http::{ollama_lines, response, scripted, streamed};
use testkit::model::local_answer;
use testkit::{ChildGuard, free_port, http};

mod bounds;
mod traces;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const PROMPT: &str = "What is the capital of France?";

#[test]
fn llama_cpp_server_streams_the_local_engines_greedy_answer_with_logprobs() {
    let port = free_port().unwrap();
    // Its log goes to a file: a pipe nobody reads fills up and stalls the server.
    let log_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("llama_cpp_server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new("python3")
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(fetch::model_path(None))
        .args(["--port", &port.to_string(), "--host", "127.0.0.1"])
        .args(["--n_ctx", "2048", "--n_threads", "1"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("python3 -m llama_cpp.server (pip install 'llama-cpp-python[server]')");
    let mut server = ChildGuard(child);
    let start = Instant::now();
    while http(port, "GET", "/v1/models", "").is_none_or(|(s, _)| s != 200) {
        if let Ok(Some(status)) = server.0.try_wait() {
            let err = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: String = err
                .chars()
                .rev()
                .take(2000)
                .collect::<String>()
                .chars()
                .rev()
                .collect();
            panic!("llama.cpp's server exited ({status}): {tail}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "llama.cpp's server did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let max = 6;
    let want = local_answer(PROMPT, max);
    let mut config = RemoteConfig::new(format!("http://127.0.0.1:{port}"));
    config.api = Some(ApiKind::OpenAi);
    let request = GenerationRequest {
        max_tokens: max,
        sampling: SamplingParams::greedy(),
        ..GenerationRequest::new(PROMPT)
    };
    let mut steps = Vec::new();
    let summary = runtime().block_on(async {
        let mut client = RemoteClient::new(config).unwrap();
        client
            .generate(&request, &CancelToken::default(), &mut |e| {
                if let RemoteEvent::Step(s) = e {
                    steps.push(*s);
                }
            })
            .await
            .unwrap()
    });
    println!(
        "llama.cpp server: {:?} ({} steps); local engine: {want:?}",
        summary.text,
        steps.len()
    );
    // Both greedy: the same text, or the same up to a near-tie, judged by llama.cpp's own
    // margin there (its top-2 log-probabilities differ by less than a logit), where our pick
    // is its runner-up.
    if summary.text != want {
        let mut said = String::new();
        let split = steps
            .iter()
            .position(|s| {
                said.push_str(&s.text);
                !want.starts_with(&said)
            })
            .expect("the texts differ, so some step leaves ours");
        let before: String = steps[..split].iter().map(|s| s.text.as_str()).collect();
        let top = &steps[split].top_logprobs;
        let margin = match top.as_slice() {
            [first, second, ..] => first.1 - second.1,
            _ => f32::INFINITY,
        };
        println!("split at step {split}: llama.cpp's top {top:?}, margin {margin:.3}");
        assert!(margin < 1.0, "llama.cpp was sure there (margin {margin})");
        let ours = &want[before.len()..];
        assert!(
            top.iter()
                .skip(1)
                .any(|(t, _)| !t.is_empty() && ours.starts_with(t.as_str())),
            "our pick {ours:?} is not among llama.cpp's alternatives {top:?}"
        );
    }
    assert!(steps.iter().all(|s| s.logprob.is_some_and(|l| l <= 0.0)));
    assert!(steps.iter().all(|s| !s.top_logprobs.is_empty()));
}

fn fake_ollama(port: u16) -> (RemoteConfig, GenerationRequest) {
    let mut config = RemoteConfig::new(format!("http://127.0.0.1:{port}"));
    config.api = Some(ApiKind::Ollama);
    config.model = Some("m".into());
    let request = GenerationRequest {
        chat: false,
        max_tokens: 4,
        ..GenerationRequest::new("hi")
    };
    (config, request)
}

fn run_fake(
    port: u16,
    tweak: impl FnOnce(&mut RemoteConfig),
) -> (Result<String, RemoteError>, Vec<String>, String) {
    let (mut config, request) = fake_ollama(port);
    tweak(&mut config);
    let mut statuses = Vec::new();
    let mut text = String::new();
    let result = runtime().block_on(async {
        let mut client = RemoteClient::new(config)?;
        client
            .generate(&request, &CancelToken::default(), &mut |e| match e {
                RemoteEvent::Status(s) => statuses.push(s),
                RemoteEvent::Step(s) => text.push_str(&s.text),
                RemoteEvent::Prompt { .. } => statuses.push("prompt".into()),
            })
            .await
            .map(|s| s.text)
    });
    (result, statuses, text)
}

#[test]
fn faults_are_retried_or_reported_and_partial_text_is_kept() {
    let quick = Duration::ZERO;
    // 503, then the answer: retried.
    let port = scripted(vec![
        (
            quick,
            response("503 Service Unavailable", "text/plain", b"scaling up"),
        ),
        (quick, streamed(&ollama_lines(&["Hel", "lo"], true))),
    ]);
    let (r, statuses, _) = run_fake(port, |_| {});
    assert_eq!(r.unwrap(), "Hello");
    assert!(statuses.iter().any(|s| s.contains("503")), "{statuses:?}");
    // 401 with no way to refresh: a clear message about the token.
    let port = scripted(vec![(
        quick,
        response("401 Unauthorized", "text/plain", b""),
    )]);
    let (r, _, _) = run_fake(port, |_| {});
    let e = r.unwrap_err();
    assert!(
        matches!(e, RemoteError::Unauthorized { .. }) && e.to_string().contains("token"),
        "{e}"
    );
    // 3 s before the first byte: waits, saying so.
    let port = scripted(vec![(
        Duration::from_secs(3),
        streamed(&ollama_lines(&["late"], true)),
    )]);
    let (r, statuses, _) = run_fake(port, |_| {});
    assert_eq!(r.unwrap(), "late");
    assert!(
        statuses.iter().any(|s| s.starts_with("waking the service")),
        "{statuses:?}"
    );
    // The first-byte timeout, when it is shorter than the wait.
    let port = scripted(vec![(Duration::from_secs(4), streamed(b""))]);
    let (r, _, _) = run_fake(port, |c| c.first_byte_timeout = Duration::from_secs(2));
    assert!(matches!(r, Err(RemoteError::Timeout { .. })), "{r:?}");
    // Disconnect mid-stream: an error, the partial text kept.
    let port = scripted(vec![(
        quick,
        streamed(&ollama_lines(&["par", "tial"], false)),
    )]);
    let (r, _, text) = run_fake(port, |_| {});
    assert!(
        matches!(r, Err(RemoteError::Dropped { received: 2, .. })),
        "{r:?}"
    );
    assert_eq!(text, "partial");
    // An error line mid-stream is an error, not text.
    let mut body = ollama_lines(&["ok"], false);
    body.extend_from_slice(b"{\"error\":\"model crashed\"}\n");
    let port = scripted(vec![(quick, streamed(&body))]);
    let (r, _, text) = run_fake(port, |_| {});
    assert!(
        matches!(&r, Err(RemoteError::Server(m)) if m == "model crashed"),
        "{r:?}"
    );
    assert_eq!(text, "ok");
    // A malformed line, and a line past the cap.
    let port = scripted(vec![(quick, streamed(b"{\"response\": nope}\n"))]);
    let (r, _, _) = run_fake(port, |_| {});
    assert!(matches!(r, Err(RemoteError::Protocol(_))), "{r:?}");
    let mut huge = b"{\"response\":\"".to_vec();
    huge.extend(std::iter::repeat_n(
        b'a',
        remote::stream::MAX_LINE_BYTES + 1,
    ));
    huge.extend_from_slice(b"\",\"done\":false}\n");
    let port = scripted(vec![(quick, streamed(&huge))]);
    let (r, _, _) = run_fake(port, |_| {});
    assert!(
        matches!(&r, Err(RemoteError::Protocol(m)) if m.contains("longer than")),
        "{r:?}"
    );
    // Bad URLs and refused connections: clear errors.
    assert!(matches!(
        RemoteClient::new(RemoteConfig::new("localhost:8080")),
        Err(RemoteError::BadUrl { .. })
    ));
    // Port 1 on loopback: nothing listens there.
    let (r, _, _) = run_fake(1, |_| {});
    assert!(matches!(r, Err(RemoteError::Connect { .. })), "{r:?}");
    // A name that does not resolve, and TLS spoken to a plain HTTP port: clear errors.
    let (r, _, _) = run_fake(0, |c| c.url = "http://no-such-host.invalid:8080".into());
    assert!(
        matches!(&r, Err(RemoteError::Connect { url, .. }) if url.contains("invalid")),
        "{r:?}"
    );
    let plain = scripted(vec![(quick, response("200 OK", "text/plain", b"hello"))]);
    let (r, _, _) = run_fake(plain, |c| c.url = format!("https://127.0.0.1:{plain}"));
    println!("TLS to a plain port: {r:?}");
    assert!(matches!(r, Err(RemoteError::Connect { .. })), "{r:?}");
}
