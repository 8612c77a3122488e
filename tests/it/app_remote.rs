//! The app against `samemath serve` on loopback: scene 2 switches to the remote server, draws what
//! it sends and says what it lacks; a server that is not there is a clear error, and one that
//! never answers shows its wait until Stop.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use llm::SamplingParams;
use remote::ApiKind;
use testkit::http::{ollama_lines, response, streamed};
use testkit::model::local_answer;
use testkit::{ChildGuard, spawn_listening, wait_ok};

const PROMPT: &str = "What is the capital of France?";

/// `samemath serve` (the app's own subcommand) on a port of its own, killed with its guard.
pub(crate) fn start_serve() -> (ChildGuard, u16) {
    // `--port 0`: the port the server binds, read from its log (none can take it first).
    let started = spawn_listening(
        Command::new(env!("CARGO_BIN_EXE_samemath"))
            .arg("serve")
            .stdout(Stdio::null()),
        Duration::from_secs(60),
    )
    .expect("start samemath serve");
    wait_ok(started.port, "/health", Duration::from_secs(180)).unwrap();
    (started.guard, started.port)
}

#[test]
fn the_app_switches_to_a_remote_server_and_says_what_it_lacks() {
    use bevy::prelude::*;
    use bevy::state::app::StatesPlugin;
    use samemath::llm_scene::{Backend, EngineStatus, LlmAction, LlmControls, LlmEngine, LlmView};
    use samemath::worker::{Command as EngineCommand, Worker};
    let (_server, port) = start_serve();
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, StatesPlugin))
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
            c.remote.url = format!("http://127.0.0.1:{port}");
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
        // Our server sends the prompt as the model reads it (tokens and embedding rows), and
        // every generated token: the token strip, the cloud and the world's floor fill in.
        if traces {
            assert!(
                !view.prompt_tokens.is_empty(),
                "no prompt tokens from serve"
            );
            assert_eq!(view.prompt_embeddings.len(), view.prompt_tokens.len());
            assert!(view.pca.is_some());
            assert_eq!(view.generated.len(), 4);
        }
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
    // A server that is not there (port 1 on loopback: nothing listens; a free port could be
    // taken by a test running beside this one): a clear error, the app goes on.
    app.world_mut().resource_mut::<LlmControls>().remote.url = "http://127.0.0.1:1".into();
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
    // A server that takes the request and says nothing (a cold start that never ends): the
    // panel shows the wait, Stop ends the Connect, and the app stays local.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(4).collect();
        std::thread::sleep(Duration::from_secs(120));
        drop(held);
    });
    app.world_mut().resource_mut::<LlmControls>().remote.url =
        format!("http://127.0.0.1:{silent_port}");
    act(&mut app, LlmAction::Connect);
    assert!(app.world().resource::<LlmView>().connecting);
    wait(
        &mut app,
        "the wait shown",
        &|v| matches!(&v.status, EngineStatus::Loading(s) if s.starts_with("waking the service")),
    );
    act(&mut app, LlmAction::Stop);
    wait(
        &mut app,
        "Connect stopped",
        &|v| matches!(&v.status, EngineStatus::Error(e) if e.contains("Connect was stopped")),
    );
    let view = app.world().resource::<LlmView>();
    assert!(!view.connecting);
    assert_eq!(view.backend, Backend::Local);
}

/// `samemath generate --remote`: a 401 gets one retry with a fresh token from the token command.
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

/// A remote answer behaves as a local one: a new Generate ends the answer in flight, and a
/// Stop sent while that Generate still waited its turn (the engine is inside the first answer)
/// stops it before it starts. Against an Ollama server that streams a word every 50 ms.
#[test]
fn a_new_generate_ends_a_remote_answer_and_a_stop_reaches_the_queued_one() {
    use samemath::worker::{Command as EngineCommand, Event, Worker};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answers = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = answers.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let (mut first, mut line, mut length) = (String::new(), String::new(), 0);
                let _ = reader.read_line(&mut first);
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let _ = reader.read_exact(&mut vec![0; length]);
                let json = |body: &str| response("200 OK", "application/json", body.as_bytes());
                let _ = if first.contains("/api/version") {
                    s.write_all(&json(r#"{"version":"0.12.11"}"#))
                } else if first.contains("/api/tags") {
                    s.write_all(&json(r#"{"models":[{"name":"m"}]}"#))
                } else {
                    counted.fetch_add(1, Ordering::SeqCst);
                    // 400 words, one each 50 ms: 20 s unless the client goes away.
                    let _ = s.write_all(&streamed(b""));
                    for _ in 0..400 {
                        if s.write_all(&ollama_lines(&["word"], false)).is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    s.write_all(&ollama_lines(&[], true))
                };
            });
        }
    });
    let mut worker = Worker::spawn(None, 1);
    let mut config = remote::RemoteConfig::new(format!("http://127.0.0.1:{port}"));
    config.api = Some(ApiKind::Ollama);
    worker.send(EngineCommand::Connect(config));
    let mut events = Vec::new();
    let mut wait_for = |worker: &mut Worker, what: &str, done: &dyn Fn(&Event) -> bool| {
        let start = Instant::now();
        loop {
            let new = worker.poll();
            let found = new.iter().any(done);
            events.extend(new);
            if found {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{what}: {events:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(&mut worker, "connected", &|e| {
        matches!(e, Event::Connected { .. })
    });
    let request = llm::GenerationRequest {
        max_tokens: 1000,
        ..llm::GenerationRequest::new(PROMPT)
    };
    worker.send(EngineCommand::Generate(request.clone()));
    wait_for(&mut worker, "the first word", &|e| {
        matches!(e, Event::RemoteStep(_))
    });
    // The engine is inside the first answer: the second Generate waits its turn, and the
    // Stop right after it stops it there.
    worker.send(EngineCommand::Generate(request));
    worker.send(EngineCommand::Stop);
    // Until both ends have come (bounded), then half a second more for anything that
    // should not come after them.
    let paused = |events: &[Event]| events.iter().filter(|e| matches!(e, Event::Paused)).count();
    let start = Instant::now();
    let mut after = Vec::new();
    while paused(&after) < 2 && start.elapsed() < Duration::from_secs(30) {
        after.extend(worker.poll());
        std::thread::sleep(Duration::from_millis(20));
    }
    let settled = Instant::now();
    while settled.elapsed() < Duration::from_millis(500) {
        after.extend(worker.poll());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first answer's last words, its end, then the second's end before it began.
    let ends: Vec<usize> = (0..after.len())
        .filter(|&i| matches!(after[i], Event::Paused))
        .collect();
    assert_eq!(ends.len(), 2, "{after:?}");
    assert!(
        !after[ends[0]..]
            .iter()
            .any(|e| matches!(e, Event::RemoteStep(_) | Event::Prompt { .. })),
        "the stopped Generate ran: {after:?}"
    );
    assert_eq!(answers.load(Ordering::SeqCst), 1, "{after:?}");
}
