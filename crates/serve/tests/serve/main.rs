//! `samemath-serve` (the server alone, as the container runs it) on loopback: /health, the
//! official Python clients (PyPI `ollama`, `openai`), our own client getting the local `Trace`
//! back, the GPU backend, load, the key, CORS and SIGTERM. Needs the model and those Python
//! packages (.ci/run installs them).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use llm::{CancelToken, GenerationRequest, RecordOptions, SamplingParams, Session};
use remote::{ApiKind, RemoteClient, RemoteConfig, RemoteEvent};
use testkit::model::{local_answer, model, workspace_dir};
use testkit::{ChildGuard, http, spawn_listening, wait_ok};

mod abuse;
mod logs;
mod slots;
mod slow;

/// The server, killed when the test ends however it ends, and its port.
struct Server {
    guard: ChildGuard,
    port: u16,
}

fn serve_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_samemath-serve"))
}

/// `cmd` started on the port it binds (`--port 0`, the port read from its log): no other
/// socket can take the port between choosing and binding it.
fn listening(cmd: &mut Command) -> Server {
    let l = spawn_listening(cmd.stdout(Stdio::null()), Duration::from_secs(60))
        .expect("samemath-serve listening");
    Server {
        guard: l.guard,
        port: l.port,
    }
}

fn start_serve(extra: &[&str]) -> Server {
    start_serve_with(extra, &[])
}

/// The same with environment variables (as a container's service sets them).
fn start_serve_with(extra: &[&str], env: &[(&str, &str)]) -> Server {
    let server = listening(serve_command().args(extra).envs(env.iter().copied()));
    wait_ok(server.port, "/health", Duration::from_secs(180)).unwrap();
    server
}

/// Ask for a two-token answer every `every` until one is answered (200: a slot is free again);
/// the statuses seen, the last one 200. Past `limit` the test fails, saying `why`.
fn until_answered(port: u16, limit: Duration, every: Duration, why: &str) -> Vec<u16> {
    let short = r#"{"prompt":"Hi.","stream":false,"options":{"num_predict":2}}"#;
    let started = Instant::now();
    let mut statuses = Vec::new();
    loop {
        let (status, _) = http(port, "POST", "/api/generate", short).expect("an answer");
        statuses.push(status);
        if status == 200 {
            return statuses;
        }
        assert!(started.elapsed() < limit, "{why}: {statuses:?}");
        std::thread::sleep(every);
    }
}

/// A connection that has sent `POST path` with the JSON `body` and read nothing yet: a client
/// a test can leave, or never read from.
fn posted(port: u16, path: &str, body: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

/// The status of the answer on `s`, from its status line, as soon as that comes; `None` when
/// nothing came within `wait`. The server writes an answer's head only once the request holds
/// a slot (or is refused): nothing yet, the request is still waiting. The rest stays unread.
fn status_within(s: &mut std::net::TcpStream, wait: Duration) -> Option<u16> {
    use std::io::{ErrorKind, Read};
    s.set_read_timeout(Some(wait)).unwrap();
    let mut line: Vec<u8> = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match s.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            Err(e)
                if line.is_empty()
                    && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                return None;
            }
            other => panic!(
                "the status line broke off after {:?}: {other:?}",
                String::from_utf8_lossy(&line)
            ),
        }
    }
    let line = String::from_utf8_lossy(&line);
    let status = line.split(' ').nth(1).and_then(|code| code.parse().ok());
    Some(status.unwrap_or_else(|| panic!("not a status line: {line:?}")))
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
    let server = listening(&mut serve_command());
    let port = server.port;
    let start = Instant::now();
    let mut statuses = Vec::new();
    let mut early = None;
    while start.elapsed() < Duration::from_secs(120) {
        if let Some((s, _)) = http(port, "GET", "/health", "") {
            if statuses.last() != Some(&s) {
                statuses.push(s);
            }
            if s == 200 {
                break;
            }
            // A question asked while the model loads (the one that woke a Cloud Run
            // instance): it waits for the model and gets its answer, not a 503.
            if early.is_none() {
                let body = r#"{"prompt":"Hi.","stream":false,"options":{"num_predict":2}}"#;
                early = Some(std::thread::spawn(move || {
                    http(port, "POST", "/api/generate", body)
                }));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("/health answered {statuses:?}");
    assert_eq!(statuses.last(), Some(&200));
    assert!(statuses.iter().all(|s| *s == 503 || *s == 200));
    // (A machine that loads the model before the first /health answer asks nothing early.)
    match early {
        Some(early) => {
            let (s, b) = early.join().unwrap().expect("an answer");
            assert_eq!(s, 200, "{b}");
            assert!(b.contains("\"done\":true"), "{b}");
        }
        None => println!("the model loaded before /health first answered: nothing asked early"),
    }
}

#[test]
fn the_official_ollama_and_openai_clients_work_against_serve() {
    let server = start_serve(&[]);
    let max = 8;
    let want = local_answer(PROMPT, max);
    // A stop string from the middle of the answer (two characters, which may straddle tokens).
    let chars: Vec<char> = want.chars().collect();
    let stop: String = chars[chars.len() / 2..][..2].iter().collect();
    let cut = &want[..want.find(&stop).unwrap()];
    let script = workspace_dir().join("tests/reference/clients_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--port", &server.port.to_string(), "--prompt", PROMPT])
        .args(["--max-tokens", &max.to_string(), "--stop", &stop])
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
        "openai_chat_parts",
        "openai_chat_stream",
    ] {
        assert_eq!(v[key].as_str(), Some(want.as_str()), "{key}");
    }
    // Each completion has an id of its own (clients key messages by it).
    assert_ne!(
        v["openai_ids"][0], v["openai_ids"][1],
        "{}",
        v["openai_ids"]
    );
    assert_eq!(v["ollama_embed_shape"], serde_json::json!([2, 576]));
    // Cut before the stop string, by both clients, streamed and not.
    for key in [
        "ollama_generate_stop_stream",
        "ollama_chat_stop",
        "openai_chat_stop",
        "openai_chat_stop_stream",
    ] {
        assert_eq!(v[key].as_str(), Some(cut), "{key}, stop {stop:?}");
    }
    assert_eq!(v["ollama_stop_reason"], "stop");
    assert_eq!(v["openai_stop_finish"], "stop");
    // Streamed with log-probabilities: every token's entry goes out, that of a token whose
    // whole text was held back included (the start of a stop string that never comes: the
    // answer's second token followed by text it never produces).
    let (m, t) = model();
    let request = GenerationRequest {
        max_tokens: max,
        sampling: SamplingParams::greedy(),
        ..GenerationRequest::new(PROMPT)
    };
    let mut session = Session::new(m.clone(), t.clone(), &request).unwrap();
    let mut pieces = Vec::new();
    while let Some(step) = session.step().unwrap() {
        pieces.push(step.text);
    }
    let never = format!("{}§§", pieces[1]);
    let body = serde_json::json!({"prompt": PROMPT, "logprobs": true,
        "options": {"temperature": 0, "num_predict": max, "stop": [never]}});
    let (s, streamed) = http(server.port, "POST", "/api/generate", &body.to_string()).unwrap();
    assert_eq!(s, 200, "{streamed}");
    // (The body is read raw: chunk-size lines between the NDJSON objects.)
    let lines: Vec<serde_json::Value> = streamed
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(serde_json::Value::is_object)
        .collect();
    let entries: usize = lines
        .iter()
        .filter_map(|l| l["logprobs"].as_array().map(Vec::len))
        .sum();
    let text: String = lines
        .iter()
        .filter_map(|l| l["response"].as_str())
        .collect();
    let done = lines.last().expect("lines");
    assert_eq!(text, want);
    assert_eq!(
        Some(entries as u64),
        done["eval_count"].as_u64(),
        "{streamed}"
    );
    // The answer fills the token limit ("length"), or the model ended it sooner ("stop").
    let lps = v["openai_logprobs"].as_array().unwrap();
    assert!(
        !lps.is_empty() && lps.len() <= max,
        "{} logprobs",
        lps.len()
    );
    let finish = if lps.len() == max { "length" } else { "stop" };
    assert_eq!(v["openai_finish"], finish);
    for lp in lps {
        let l = lp["logprob"].as_f64().unwrap();
        assert!(l <= 0.0 && l.is_finite());
        // Greedy: the sampled token is the best alternative; as many alternatives as asked
        // (OpenAI's bound, 20).
        assert_eq!(lp["top"][0], lp["token"]);
        assert_eq!(lp["top"].as_array().map(Vec::len), Some(20), "{lp}");
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
    let mut prompt = None;
    let summary = runtime().block_on(async {
        let mut client = RemoteClient::new(config.clone()).unwrap();
        let info = client.probe().await.unwrap();
        assert_eq!(info.api, ApiKind::Samemath, "detected");
        assert!(info.capabilities.traces);
        client
            .generate(&request, &CancelToken::default(), &mut |e| match e {
                RemoteEvent::Step(s) => remote.push(*s),
                RemoteEvent::Prompt { tokens, embeddings } => {
                    assert!(remote.is_empty(), "the prompt comes first");
                    prompt = Some((tokens, embeddings));
                }
                RemoteEvent::Status(_) => {}
            })
            .await
            .unwrap()
    });
    // The prompt as the model reads it: the local session's ids, pieces and embedding rows.
    let (tokens, embeddings) = prompt.expect("a prompt line");
    let ids = session.prompt_tokens().to_vec();
    assert_eq!(tokens.iter().map(|t| t.id).collect::<Vec<_>>(), ids);
    assert!(tokens.iter().all(|x| x.piece == t.piece(x.id)));
    for (row, &id) in embeddings.iter().zip(&ids) {
        assert_eq!(row, &m.embedding_row(id).unwrap());
    }
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
    // A request that records nothing (`samemath generate --remote`, the talk's race): the
    // same tokens, and no trace computed or sent; one without the lens gets no lens.
    for (record, what) in [
        (RecordOptions::OFF, "nothing"),
        (
            RecordOptions {
                logit_lens: false,
                ..RecordOptions::FULL
            },
            "no lens",
        ),
    ] {
        let asked = GenerationRequest {
            record,
            ..request.clone()
        };
        let mut steps = Vec::new();
        let answered = runtime().block_on(async {
            let mut client = RemoteClient::new(config.clone()).unwrap();
            client
                .generate(&asked, &CancelToken::default(), &mut |e| {
                    if let RemoteEvent::Step(s) = e {
                        steps.push(*s);
                    }
                })
                .await
                .unwrap()
        });
        assert_eq!(answered.text, summary.text, "{what}");
        let ids: Vec<u32> = steps
            .iter()
            .filter_map(|s| Some(s.token.as_ref()?.id))
            .collect();
        assert_eq!(ids, session.generated_tokens(), "{what}");
        for s in &steps {
            match (&s.trace, record.enabled) {
                (None, false) => {}
                (Some(t), true) => assert!(
                    t.layers.iter().all(|l| l.logit_lens.is_none()),
                    "{what}: a lens"
                ),
                (t, _) => panic!("{what}: trace {}", t.is_some()),
            }
        }
    }
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

    // The GPU's cache holds 2,048 positions, as many as the default --max-prompt-tokens: a
    // prompt of exactly 2,048 tokens leaves no room for an answer, so it is a 400 before a slot
    // (it used to be a 200 whose stream ended in an error line).
    let prompt = format!("word{}", " word".repeat(2_047));
    assert_eq!(
        t.encode(&prompt).unwrap().len(),
        2_048,
        "the prompt's length"
    );
    let mut request = GenerationRequest::new(prompt);
    request.chat = false;
    request.max_tokens = 1;
    let body = serde_json::to_string(&request).unwrap();
    let (s, b) = http(server.port, "POST", "/api/trace", &body).unwrap();
    assert_eq!(s, 400, "{b}");
    let body = serde_json::json!({"prompt": request.prompt, "raw": true, "stream": false});
    let (s, b) = http(server.port, "POST", "/api/generate", &body.to_string()).unwrap();
    assert_eq!(s, 400, "{b}");
    assert!(
        b.contains("at most 2047 tokens") && b.contains("context of 2048 positions"),
        "{b}"
    );
}

/// `--require-gpu` (the GPU image's `$SAMEMATH_REQUIRE_GPU=1`) where no adapter can be had
/// (`WGPU_BACKEND=metal` on Linux): the load fails, /health says 500, rather than a GPU
/// service quietly generating on its CPU; without it the CPU carries on.
#[test]
fn a_required_gpu_that_is_missing_fails_the_load() {
    let settle = |port: u16| {
        let start = Instant::now();
        loop {
            let (s, b) = http(port, "GET", "/health", "").unwrap_or((0, String::new()));
            if s != 503 && s != 0 {
                return (s, b);
            }
            assert!(start.elapsed() < Duration::from_secs(120), "still loading");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let server = listening(
        serve_command()
            .args(["--backend", "gpu"])
            .env("WGPU_BACKEND", "metal")
            .env("SAMEMATH_REQUIRE_GPU", "1"),
    );
    let (s, b) = settle(server.port);
    assert_eq!(s, 500, "{b}");
    assert!(b.contains("could not be loaded"), "{b}");
    let fallback = start_serve_with(&["--backend", "gpu"], &[("WGPU_BACKEND", "metal")]);
    let (s, info) = http(fallback.port, "GET", "/api/info", "").unwrap();
    assert_eq!(s, 200);
    assert!(info.contains("\"compute\":\"CPU"), "{info}");
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
    let pid = server.guard.0.id();
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

/// A request with extra header lines; (status, head lower-cased, body).
fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    let r = testkit::request(
        port,
        method,
        path,
        headers,
        body.as_bytes(),
        Duration::from_secs(120),
    )
    .expect("an answer");
    (r.status, r.head, r.body)
}

#[test]
fn serve_checks_its_key_answers_cors_and_drains_on_sigterm() {
    // The origin from the environment: how deploy.sh tells the image's server.
    let mut server = start_serve_with(
        &["--api-key", "k123"],
        &[("SAMEMATH_CORS", "https://example.org")],
    );
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
    // The scheme in any case (RFC 9110); the key itself exactly.
    for (authorization, want) in [
        ("bearer k123", 200),
        ("BEARER k123", 200),
        ("bearer K123", 401),
        ("Basic k123", 401),
    ] {
        let line = format!("Authorization: {authorization}\r\n");
        let (s, _, _) = http_with(port, "GET", "/api/tags", &line, "");
        assert_eq!(s, want, "{authorization}");
    }
    assert_eq!(http_with(port, "GET", "/health", "", "").0, 200);
    // A browser's preflight, for a page whose SDK sends headers of its own (the OpenAI
    // JavaScript client's): they are allowed, and the browser may keep the answer.
    let (s, head, _) = http_with(
        port,
        "OPTIONS",
        "/v1/chat/completions",
        "Origin: https://example.org\r\n\
         Access-Control-Request-Headers: content-type, X-Stainless-OS, x-stainless-lang\r\n",
        "",
    );
    assert_eq!(s, 204);
    let allowed = head
        .lines()
        .find_map(|l| l.strip_prefix("access-control-allow-headers: "))
        .unwrap_or_else(|| panic!("no allowed headers: {head}"));
    for name in [
        "authorization",
        "x-api-key",
        "x-stainless-os",
        "x-stainless-lang",
    ] {
        assert!(allowed.contains(name), "{name} not in {allowed}");
    }
    assert!(head.contains("access-control-max-age: 600"), "{head}");
    // Our client: a model the server lacks is a clear error.
    let mut config = RemoteConfig::new(format!("http://127.0.0.1:{port}"));
    config.token = Some("k123".into());
    config.api = Some(ApiKind::Ollama);
    config.model = Some("llama9".into());
    let err = runtime()
        .block_on(async { RemoteClient::new(config)?.probe().await })
        .unwrap_err();
    assert!(err.to_string().contains("no model \"llama9\""), "{err}");
    // SIGTERM mid-stream: the answers in flight go on, a new connection is refused at once,
    // and the process exits once they are out. Two answers are in flight (the two default
    // slots), each begun (its head came back: it holds its slot) before the signal: a short
    // one, done well within the 7 s drain (`CUT_AFTER`) however slow the machine, which
    // finishes; and a count (raw, no template: greedy decoding goes on counting, with no end
    // token) of 4,000 tokens, which no machine here makes in 7 s: it is still streaming
    // whenever the signal takes effect, and at the end of the drain it ends with an error
    // line, not mid-line.
    let stream = |body: &'static str| {
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            write!(
                s,
                "POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Content-Type: application/json\r\nAuthorization: Bearer k123\r\n\
                 Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut raw = vec![0u8; 4096];
            let n = s.read(&mut raw).unwrap();
            raw.truncate(n);
            let _ = first_tx.send(());
            s.read_to_end(&mut raw).unwrap();
            let ended = Instant::now();
            let reply = testkit::http::parse_reply(&raw).unwrap();
            (reply.status, reply.head, reply.body, ended)
        });
        first_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the answer's first bytes");
        reader
    };
    let endless =
        stream(r#"{"prompt":"1, 2, 3, 4, 5, 6, 7, 8,","raw":true,"options":{"num_predict":4000}}"#);
    let short = stream(r#"{"prompt":"Write a long story.","options":{"num_predict":64}}"#);
    let term = Command::new("kill")
        .args(["-TERM", &server.guard.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let started = Instant::now();
    // From the signal on, a new connection is refused at once (the listener is closed), not
    // left in the backlog, never answered, while the answers in flight go on. Tried at once,
    // then every 20 ms: the first tries may come before the signal takes effect.
    let mut refused_while_streaming = false;
    let mut short_in_flight = false;
    while !endless.is_finished() && started.elapsed() < Duration::from_secs(5) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            short_in_flight = !short.is_finished();
            refused_while_streaming = !endless.is_finished();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        refused_while_streaming,
        "new connections were still taken 5 s after SIGTERM (or the endless answer ended)"
    );
    println!(
        "SIGTERM: new connections refused after {:.2} s, the short answer {}",
        started.elapsed().as_secs_f64(),
        if short_in_flight {
            "still streaming"
        } else {
            "already done"
        }
    );
    let (status, _, streamed, _) = short.join().unwrap();
    assert_eq!(status, 200);
    let last = streamed.lines().rfind(|l| l.contains('{')).unwrap_or("");
    assert!(last.contains("\"done\":true"), "the stream was cut: {last}");
    let (status, _, streamed, ended) = endless.join().unwrap();
    assert_eq!(status, 200);
    // Cut at the end of the drain, not at the signal: `started` is after `kill` returned, so
    // this is at most the drain's length (7 s).
    let drained = ended.duration_since(started);
    assert!(
        drained >= Duration::from_secs(5),
        "the answer in flight was cut {drained:?} after SIGTERM, not after the drain"
    );
    let last = streamed.lines().rfind(|l| l.contains('{')).unwrap_or("");
    assert!(
        last.contains("\"error\"") && last.contains("shutting down (SIGTERM)"),
        "the endless answer did not end with the drain's error line: {last}"
    );
    let exit = loop {
        if let Some(s) = server.guard.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "SIGTERM: the answers ended, serve exited ({exit}) {:.1} s later",
        started.elapsed().as_secs_f64()
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting"
    );
}
