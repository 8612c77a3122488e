//! Remote inference against real servers on loopback: `samemath serve` driven by the official
//! Python clients (PyPI `ollama`, `openai`) and by our own client; llama.cpp's server (PyPI
//! `llama-cpp-python[server]`) driven by our OpenAI-compatible client; faults from a scripted
//! server; serve under load. Needs the model and those Python packages (.ci/run installs them).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use samemath::llm::{
    CancelToken, GenerationRequest, RecordOptions, SamplingParams, Session, fetch,
};
use samemath::remote::{ApiKind, RemoteClient, RemoteConfig, RemoteError, RemoteEvent};

use crate::llm::model;

/// Kills the server when the test ends, however it ends.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 request; (status, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

fn wait_ready(port: u16, path: &str, what: &str) {
    let start = Instant::now();
    loop {
        if let Some((200, _)) = http(port, "GET", path, "") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "{what} did not come up on port {port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_serve(extra: &[&str]) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_samemath"))
        .args(["serve", "--port", &port.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start samemath serve");
    let server = Server { child, port };
    wait_ready(port, "/health", "samemath serve");
    server
}

/// The local engine's greedy answer (chat template, one user message).
fn local_answer(prompt: &str, max_tokens: usize) -> String {
    let (m, t) = model();
    let request = GenerationRequest {
        max_tokens,
        sampling: SamplingParams::greedy(),
        ..GenerationRequest::new(prompt)
    };
    let mut session = Session::new(m.clone(), t.clone(), &request).unwrap();
    let mut text = String::new();
    while let Some(step) = session.step().unwrap() {
        text.push_str(&step.text);
    }
    text
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const PROMPT: &str = "What is the capital of France?";

#[test]
fn health_is_503_until_loaded_then_200() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_samemath"))
        .args(["serve", "--port", &port.to_string()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server { child, port };
    let start = Instant::now();
    let mut statuses = Vec::new();
    while start.elapsed() < Duration::from_secs(120) {
        if let Some((s, _)) = http(port, "GET", "/health", "") {
            if statuses.last() != Some(&s) {
                statuses.push(s);
            }
            if s == 200 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("/health answered {statuses:?}");
    assert_eq!(statuses.last(), Some(&200));
    assert!(statuses.iter().all(|s| *s == 503 || *s == 200));
}

#[test]
fn the_official_ollama_and_openai_clients_work_against_serve() {
    let server = start_serve(&[]);
    let max = 8;
    let want = local_answer(PROMPT, max);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/clients_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--port", &server.port.to_string(), "--prompt", PROMPT])
        .args(["--max-tokens", &max.to_string()])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "clients_check.py failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(v.get("error").is_none(), "{v}");
    println!("local greedy answer: {want:?}\nclients: {v:#}");
    for key in [
        "ollama_chat",
        "ollama_chat_stream",
        "ollama_generate",
        "ollama_generate_stream",
        "openai_chat",
        "openai_chat_stream",
    ] {
        assert_eq!(v[key].as_str(), Some(want.as_str()), "{key}");
    }
    assert_eq!(v["ollama_embed_shape"], serde_json::json!([2, 576]));
    assert_eq!(v["openai_finish"], "length");
    let lps = v["openai_logprobs"].as_array().unwrap();
    assert_eq!(lps.len(), max);
    for lp in lps {
        let l = lp["logprob"].as_f64().unwrap();
        assert!(l <= 0.0 && l.is_finite());
        // Greedy: the sampled token is the best alternative.
        assert_eq!(lp["top"][0], lp["token"]);
    }
}

#[test]
fn our_client_gets_the_local_trace_from_serve() {
    let server = start_serve(&[]);
    let (m, t) = model();
    let request = GenerationRequest {
        max_tokens: 3,
        chat: false,
        sampling: SamplingParams::greedy(),
        record: RecordOptions::FULL,
        ..GenerationRequest::new("The capital of France is")
    };
    let mut session = Session::new(m.clone(), t.clone(), &request).unwrap();
    let mut local = Vec::new();
    while let Some(step) = session.step().unwrap() {
        local.push(step);
    }
    let mut config = RemoteConfig::new(format!("http://127.0.0.1:{}", server.port));
    config.api = None;
    let mut remote = Vec::new();
    let summary = runtime().block_on(async {
        let mut client = RemoteClient::new(config).unwrap();
        let info = client.probe().await.unwrap();
        assert_eq!(info.api, ApiKind::Samemath, "detected");
        assert!(info.capabilities.traces);
        client
            .generate(&request, &CancelToken::default(), &mut |e| {
                if let RemoteEvent::Step(s) = e {
                    remote.push(*s);
                }
            })
            .await
            .unwrap()
    });
    assert_eq!(remote.len(), local.len());
    for (r, l) in remote.iter().zip(&local) {
        assert_eq!(r.token.as_ref(), Some(&l.token));
        assert_eq!(r.text, l.text);
        let (rt, lt) = (r.trace.as_ref().unwrap(), l.trace.as_ref().unwrap());
        assert_eq!(rt, lt, "the remote trace equals the local one");
    }
    println!(
        "remote trace: {} steps, text {:?}",
        remote.len(),
        summary.text
    );
}

/// `serve --backend gpu` (lavapipe here; Vulkan on a Cloud Run GPU): it says what generates,
/// and its greedy answer is the local CPU engine's.
#[test]
fn serve_on_the_gpu_backend_answers_like_the_local_engine() {
    let server = start_serve(&["--backend", "gpu"]);
    let (_, info) = http(server.port, "GET", "/api/info", "").unwrap();
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    let compute = info["compute"].as_str().unwrap_or_default().to_string();
    assert!(compute.starts_with("GPU: "), "{info}");
    let (m, t) = model();
    let request = GenerationRequest {
        max_tokens: 4,
        chat: false,
        sampling: SamplingParams::greedy(),
        ..GenerationRequest::new("The capital of France is")
    };
    let mut session = Session::new(m.clone(), t.clone(), &request).unwrap();
    while session.step().unwrap().is_some() {}
    let mut config = RemoteConfig::new(format!("http://127.0.0.1:{}", server.port));
    config.api = Some(ApiKind::Samemath);
    let mut ids = Vec::new();
    runtime().block_on(async {
        let mut client = RemoteClient::new(config).unwrap();
        client.probe().await.unwrap();
        client
            .generate(&request, &CancelToken::default(), &mut |e| {
                if let RemoteEvent::Step(s) = e {
                    ids.extend(s.token.map(|t| t.id));
                }
            })
            .await
            .unwrap()
    });
    println!("serve on {compute}: {ids:?}");
    assert_eq!(ids, session.generated_tokens());
}

#[test]
fn llama_cpp_server_streams_the_local_engines_greedy_answer_with_logprobs() {
    let port = free_port();
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
    let mut server = Server { child, port };
    let start = Instant::now();
    while http(port, "GET", "/v1/models", "").is_none_or(|(s, _)| s != 200) {
        if let Ok(Some(status)) = server.child.try_wait() {
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
    assert_eq!(summary.text, want);
    assert!(steps.iter().all(|s| s.logprob.is_some_and(|l| l <= 0.0)));
    assert!(steps.iter().all(|s| !s.top_logprobs.is_empty()));
}

/// A scripted HTTP server: each connection gets the next response (raw bytes, with an optional
/// delay before them and a cut after `cut` bytes).
fn scripted(responses: Vec<(Duration, Vec<u8>)>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (delay, bytes) in responses {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            // Read the request head (and ignore the body).
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            std::thread::sleep(delay);
            let _ = s.write_all(&bytes);
            let _ = s.flush();
        }
    });
    port
}

fn response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A streamed body with no length: the connection's end ends it.
fn streamed(body: &[u8]) -> Vec<u8> {
    let mut r =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n"
            .to_vec();
    r.extend_from_slice(body);
    r
}

fn ollama_lines(words: &[&str], done: bool) -> Vec<u8> {
    let mut s = String::new();
    for w in words {
        s.push_str(&format!("{{\"response\":\"{w}\",\"done\":false}}\n"));
    }
    if done {
        s.push_str("{\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"eval_count\":2,\"eval_duration\":1000000}\n");
    }
    s.into_bytes()
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
    // A malformed line, and a 10 MB line.
    let port = scripted(vec![(quick, streamed(b"{\"response\": nope}\n"))]);
    let (r, _, _) = run_fake(port, |_| {});
    assert!(matches!(r, Err(RemoteError::Protocol(_))), "{r:?}");
    let mut huge = b"{\"response\":\"".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 10 << 20));
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
    let (r, _, _) = run_fake(free_port(), |_| {});
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

#[test]
fn serve_under_load_completes_or_refuses_and_stays_up() {
    let server = start_serve(&["--concurrency", "2", "--queue", "2"]);
    let port = server.port;
    let rss_mb = |pid: u32| -> f64 {
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
        let pages: f64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0.0);
        pages * 4096.0 / 1e6
    };
    let pid = server.child.id();
    let before = rss_mb(pid);
    let body = r#"{"model":"smollm2-135m-instruct","prompt":"Count to five.","stream":false,"options":{"num_predict":4}}"#;
    let handles: Vec<_> = (0..16)
        .map(|_| std::thread::spawn(move || http(port, "POST", "/api/generate", body)))
        .collect();
    let mut done = 0;
    let mut refused = 0;
    for h in handles {
        match h.join().unwrap() {
            Some((200, b)) => {
                let v: serde_json::Value = serde_json::from_str(&b).unwrap();
                assert_eq!(v["done"], true);
                done += 1;
            }
            Some((503, b)) => {
                assert!(b.contains("busy"), "{b}");
                refused += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let after = rss_mb(pid);
    println!(
        "16 parallel requests to a 2-slot, 2-queue server: {done} answered, {refused} refused; \
         resident {before:.1} -> {after:.1} MB"
    );
    assert!(
        after - before < 64.0,
        "serve grew {before:.1} -> {after:.1} MB"
    );
    assert_eq!(done + refused, 16);
    assert!(done >= 2 && refused >= 1);
    assert_eq!(http(port, "GET", "/health", "").map(|r| r.0), Some(200));
    // Bad requests: clear 4xx, the server stays up.
    let (s, b) = http(port, "POST", "/api/chat", "{not json").unwrap();
    assert_eq!(s, 400, "{b}");
    let (s, b) = http(
        port,
        "POST",
        "/api/chat",
        r#"{"model":"llama9","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .unwrap();
    assert_eq!(s, 404, "{b}");
    assert!(b.contains("llama9"));
    let big = format!(r#"{{"prompt":"{}"}}"#, "a".repeat(2 << 20));
    let (s, _) = http(port, "POST", "/api/generate", &big).unwrap_or((413, String::new()));
    assert_eq!(s, 413);
    assert_eq!(http(port, "GET", "/health", "").map(|r| r.0), Some(200));
}

#[test]
fn the_app_switches_to_a_remote_server_and_says_what_it_lacks() {
    use bevy::prelude::*;
    use bevy::state::app::StatesPlugin;
    use samemath::llm::worker::{Command as EngineCommand, Worker};
    use samemath::llm_scene::{Backend, EngineStatus, LlmAction, LlmControls, LlmEngine, LlmView};
    let server = start_serve(&[]);
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, StatesPlugin))
        .insert_resource(samemath::app::AppOptions::default())
        .init_resource::<ButtonInput<KeyCode>>()
        .add_plugins(samemath::app::logic_plugin);
    let mut worker = Worker::spawn(None, 1);
    worker.send(EngineCommand::Load);
    app.insert_resource(LlmEngine(std::sync::Mutex::new(worker)));
    let wait = |app: &mut App, what: &str, done: &dyn Fn(&LlmView) -> bool| {
        let start = Instant::now();
        while !done(app.world().resource::<LlmView>()) {
            let status = app.world().resource::<LlmView>().status.clone();
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{what}: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
            app.update();
        }
    };
    let act = |app: &mut App, a: LlmAction| {
        app.world_mut().write_message(a);
        app.update();
    };
    for (api, traces) in [
        (Some(ApiKind::Samemath), true),
        (Some(ApiKind::Ollama), false),
    ] {
        {
            let mut c = app.world_mut().resource_mut::<LlmControls>();
            c.remote.url = format!("http://127.0.0.1:{}", server.port);
            c.remote.api = api;
            c.prompt = PROMPT.into();
            c.max_tokens = 4;
            c.sampling = SamplingParams::greedy();
        }
        act(&mut app, LlmAction::Connect);
        wait(
            &mut app,
            "connected",
            &|v| matches!(&v.backend, Backend::Remote { info, .. } if Some(info.api) == api),
        );
        assert_eq!(
            app.world().resource::<LlmView>().backend.has_traces(),
            traces
        );
        act(&mut app, LlmAction::Generate);
        wait(&mut app, "the answer", &|v| {
            v.last_stop.is_some() && v.status == EngineStatus::Ready
        });
        let view = app.world().resource::<LlmView>();
        assert_eq!(view.reply, local_answer(PROMPT, 4), "{api:?}");
        assert_eq!(view.trace.is_some(), traces, "{api:?}");
        assert!(view.remote_steps.iter().all(|s| !s.top_logprobs.is_empty()));
        println!(
            "{api:?}: {:?}, {} steps, trace {}",
            view.reply,
            view.remote_steps.len(),
            view.trace.is_some()
        );
    }
    // Step is the local engine's; a remote backend says so and keeps the prompt.
    act(&mut app, LlmAction::Step);
    wait(&mut app, "the refusal", &|v| {
        matches!(v.status, EngineStatus::Error(_))
    });
    act(&mut app, LlmAction::UseLocal);
    wait(&mut app, "local again", &|v| v.backend == Backend::Local);
    // A server that is not there: a clear error, the app goes on.
    app.world_mut().resource_mut::<LlmControls>().remote.url =
        format!("http://127.0.0.1:{}", free_port());
    act(&mut app, LlmAction::Connect);
    wait(&mut app, "the error", &|v| {
        matches!(v.status, EngineStatus::Error(_))
    });
    let view = app.world().resource::<LlmView>();
    let EngineStatus::Error(e) = &view.status else {
        unreachable!()
    };
    assert!(e.contains("cannot reach"), "{e}");
    assert_eq!(view.backend, Backend::Local);
}

/// Like `http`, with extra header lines; (status, head, body).
fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn serve_checks_its_key_answers_cors_and_drains_on_sigterm() {
    let mut server = start_serve(&["--api-key", "k123", "--cors", "https://example.org"]);
    let port = server.port;
    // The key: required everywhere but /health; its value never echoed.
    let (s, _, b) = http_with(port, "GET", "/api/tags", "", "");
    assert_eq!(s, 401);
    assert!(!b.contains("k123"));
    let (s, head, _) = http_with(
        port,
        "GET",
        "/api/tags",
        "Authorization: Bearer k123\r\n",
        "",
    );
    assert_eq!(s, 200);
    assert!(
        head.contains("access-control-allow-origin: https://example.org"),
        "{head}"
    );
    let (s, _, _) = http_with(port, "GET", "/api/tags", "x-api-key: k123\r\n", "");
    assert_eq!(s, 200);
    assert_eq!(http_with(port, "GET", "/health", "", "").0, 200);
    // A browser's preflight.
    let (s, head, _) = http_with(
        port,
        "OPTIONS",
        "/api/chat",
        "Origin: https://example.org\r\n",
        "",
    );
    assert_eq!(s, 204);
    assert!(head.contains("access-control-allow-headers"), "{head}");
    // Our client: a model the server lacks is a clear error.
    let mut config = RemoteConfig::new(format!("http://127.0.0.1:{port}"));
    config.token = Some("k123".into());
    config.api = Some(ApiKind::Ollama);
    config.model = Some("llama9".into());
    let err = runtime()
        .block_on(async { RemoteClient::new(config)?.probe().await })
        .unwrap_err();
    assert!(err.to_string().contains("no model \"llama9\""), "{err}");
    // SIGTERM mid-stream: the answer in flight finishes, then the process exits.
    let body = r#"{"prompt":"Write a long story.","options":{"num_predict":48}}"#;
    let reader = std::thread::spawn(move || {
        http_with(
            port,
            "POST",
            "/api/generate",
            "Authorization: Bearer k123\r\n",
            body,
        )
    });
    std::thread::sleep(Duration::from_millis(400));
    let term = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let started = Instant::now();
    let (status, _, streamed) = reader.join().unwrap();
    assert_eq!(status, 200);
    let last = streamed.lines().rfind(|l| l.contains('{')).unwrap_or("");
    assert!(last.contains("\"done\":true"), "the stream was cut: {last}");
    let exit = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "SIGTERM: the stream finished, serve exited ({exit}) {:.1} s later",
        started.elapsed().as_secs_f64()
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting"
    );
}

#[test]
fn a_401_gets_one_retry_with_a_fresh_token_from_the_token_command() {
    // The scripted server records each request's Authorization header.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let answers = vec![
        response("200 OK", "application/json", br#"{"version":"0.12.11"}"#),
        response(
            "200 OK",
            "application/json",
            br#"{"models":[{"name":"m"}]}"#,
        ),
        response("401 Unauthorized", "text/plain", b"expired"),
        streamed(&ollama_lines(&["fresh"], true)),
    ];
    std::thread::spawn(move || {
        for answer in answers {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            let mut auth = String::new();
            let mut length = 0;
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                let lower = line.to_ascii_lowercase();
                if lower.starts_with("authorization:") {
                    auth = line[14..].trim().to_string();
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log.lock().unwrap().push(auth);
            let _ = s.write_all(&answer);
        }
    });
    // A token command that hands out tok0, tok1, ... (one per run).
    let counter = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("token_counter");
    let _ = std::fs::remove_file(&counter);
    let command = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}; echo tok$n",
        c = counter.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_samemath"))
        .args([
            "generate",
            "--raw",
            "--remote",
            &format!("http://127.0.0.1:{port}"),
        ])
        .args(["--api", "ollama", "--remote-model", "m", "hi"])
        .env("SAMEMATH_TOKEN_COMMAND", &command)
        .env_remove("SAMEMATH_REMOTE_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "fresh");
    let seen = seen.lock().unwrap().clone();
    println!("Authorization headers seen: {seen:?}");
    assert_eq!(
        seen,
        ["Bearer tok0", "Bearer tok0", "Bearer tok0", "Bearer tok1"]
    );
    // Tokens never reach the output.
    assert!(
        !stderr.contains("tok0") && !stderr.contains("tok1"),
        "{stderr}"
    );
}
