//! `samemath bench --remote`: our client's time-to-first-token overhead against a raw HTTP
//! request to `samemath serve`, and the server's summed tokens/s under 8 parallel clients against
//! llama.cpp's server on the same file.

use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use llm::{GenerationRequest, SamplingParams, fetch};

use testkit::{ChildGuard, free_port, post_timed, request, wait_ok_while};

use super::progress;
use crate::cli::{BackendArg, BenchArgs};

/// The most tokens a client may ask for: llama.cpp's server here runs a context of 4,096
/// positions, the prompt's included (serve allows 4,096 an answer).
const REMOTE_TOKENS: usize = 4_000;

/// Longest the parallel clients' answers may take in all before the bench calls the server
/// stuck (each read of a reply waits at most this too).
const ANSWER_LIMIT: Duration = Duration::from_secs(300);

/// Wait until GET `path` on `port` answers 200, for at most `limit`; a `child` (the server) that
/// exits meanwhile ends the wait at once, with its exit status.
fn wait_ready(child: &mut Child, port: u16, path: &str, limit: Duration) -> Result<(), String> {
    wait_ok_while(port, path, limit, || match child.try_wait() {
        Ok(Some(status)) => Err(format!("it exited before answering ({status})")),
        Ok(None) => Ok(()),
        Err(e) => Err(format!("could not watch it: {e}")),
    })
}

/// The tokens one reply says it generated: the number at `pointer` (a JSON pointer) in a 200
/// reply's body. Any other status, or no such count, is an error: counted as 0 it would make
/// the server look slow, or a ratio infinite.
fn reply_tokens(status: u16, body: &str, pointer: &str) -> Result<usize, String> {
    let short = |b: &str| b.chars().take(200).collect::<String>();
    if status != 200 {
        return Err(format!("HTTP {status}: {}", short(body)));
    }
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer(pointer).and_then(serde_json::Value::as_u64))
        .map(|n| n as usize)
        .ok_or_else(|| format!("no token count at {pointer} in the reply: {}", short(body)))
}

/// `ours / theirs` as a ratio line's figure, or why there is none (a rate that is not positive
/// and finite gives no ratio).
fn ratio(ours: f64, theirs: f64) -> Result<f64, String> {
    let usable = |v: f64| v.is_finite() && v > 0.0;
    if usable(ours) && usable(theirs) {
        Ok(ours / theirs)
    } else {
        Err(format!("no ratio of {ours} to {theirs} tokens/s"))
    }
}

/// Summed tokens/s of `clients` parallel requests to `path`, each reply's count at `pointer`.
fn throughput(port: u16, path: &str, body: &str, clients: usize, pointer: &str) -> Result<f64> {
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..clients {
        let (body, path, pointer) = (body.to_string(), path.to_string(), pointer.to_string());
        let tx = tx.clone();
        std::thread::spawn(move || {
            let counted = request(port, "POST", &path, "", body.as_bytes(), ANSWER_LIMIT)
                .map_err(|e| format!("POST {path}: {e}"))
                .and_then(|reply| reply_tokens(reply.status, &reply.body, &pointer));
            let _ = tx.send(counted);
        });
    }
    drop(tx);
    // All the answers within the limit in all: a reply that trickles a byte now and then
    // does not hold the bench (its thread is left behind; the process ends soon after).
    let mut tokens = 0;
    for _ in 0..clients {
        let left = ANSWER_LIMIT.saturating_sub(started.elapsed());
        tokens += match rx.recv_timeout(left) {
            Ok(counted) => counted.map_err(anyhow::Error::msg)?,
            Err(_) => bail!(
                "{clients} answers did not all come within {} s",
                ANSWER_LIMIT.as_secs()
            ),
        };
    }
    if tokens == 0 {
        bail!("the replies counted no tokens at all");
    }
    Ok(tokens as f64 / started.elapsed().as_secs_f64())
}

/// The threads both servers get, ours and llama.cpp's: `--threads`, else all cores.
fn bench_threads(args: &BenchArgs) -> usize {
    args.model
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// serve's own account of what it computes on (`/api/info`'s `compute`), if it gives one.
fn served_compute(port: u16) -> Option<String> {
    let reply = request(port, "GET", "/api/info", "", b"", Duration::from_secs(10)).ok()?;
    let info: serde_json::Value = serde_json::from_str(&reply.body).ok()?;
    let compute = info["compute"].as_str()?;
    // A line of the bench's output, not a page.
    Some(compute.chars().take(120).collect())
}

fn backend_name(backend: BackendArg) -> &'static str {
    match backend {
        BackendArg::Cpu => "cpu",
        BackendArg::Gpu => "gpu",
    }
}

/// `samemath serve` (but the model) for the bench on `port`: 8 slots, the bench's own
/// `--backend`, and its threads as the one pool all answers share (`RAYON_NUM_THREADS`), as
/// llama.cpp's server's `--n_threads` serves all its slots. serve's own `--threads` gives each
/// answer a pool of its own: 8 answers of 2 threads each on 2 cores ran at a third of the
/// speed.
fn serve_command(exe: &std::path::Path, args: &BenchArgs, port: u16) -> std::process::Command {
    let mut command = std::process::Command::new(exe);
    command
        .args(["serve", "--port", &port.to_string()])
        .args(["--concurrency", "8", "--queue", "8"])
        .args(["--backend", backend_name(args.model.backend)])
        .env("RAYON_NUM_THREADS", bench_threads(args).to_string());
    command
}

/// `samemath bench --remote`.
pub fn bench_remote(args: &BenchArgs) -> Result<()> {
    use remote::{ApiKind, RemoteClient, RemoteConfig};
    let tokens = args.tokens_or(32);
    if !(1..=REMOTE_TOKENS).contains(&tokens) {
        bail!(
            "--tokens {tokens}: from 1 to {REMOTE_TOKENS} for bench --remote (llama.cpp's server \
             runs a context of 4,096 positions, prompt included)"
        );
    }
    let path = fetch::ensure_model(args.model.model.as_deref(), &mut progress)?;
    let threads = bench_threads(args);
    let backend = backend_name(args.model.backend);
    let exe = std::env::current_exe()?;
    let port = free_port()?;
    let mut serve = ChildGuard(
        serve_command(&exe, args, port)
            .arg("--model")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    wait_ready(&mut serve.0, port, "/health", Duration::from_secs(180)).map_err(|e| {
        anyhow::anyhow!("`samemath serve` did not start: {e} (run it alone to see why)")
    })?;
    // What serve computes on, as it says: `--backend gpu` without a usable GPU runs on the
    // CPU, and the figures must not be called the GPU's.
    let compute = served_compute(port)
        .unwrap_or_else(|| format!("{backend} as asked, {threads} threads; it did not say"));
    // Time to first token: the same one-token request, raw and through our client.
    let body = r#"{"model":"smollm2-135m-instruct","prompt":"Hi","raw":true,"stream":true,"options":{"num_predict":1,"temperature":0}}"#;
    let rounds = 15;
    let mut raw = Vec::new();
    for _ in 0..rounds {
        raw.push(post_timed(port, "/api/generate", body)?.0);
    }
    let mut config = RemoteConfig::new(format!("http://127.0.0.1:{port}"));
    config.api = Some(ApiKind::Ollama);
    let request = GenerationRequest {
        chat: false,
        max_tokens: 1,
        sampling: SamplingParams::greedy(),
        ..GenerationRequest::new("Hi")
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut ours = Vec::new();
    runtime.block_on(async {
        let mut client = RemoteClient::new(config)?;
        client.probe().await?;
        for _ in 0..rounds {
            let started = std::time::Instant::now();
            let mut first = None;
            client
                .generate(&request, &llm::CancelToken::default(), &mut |e| {
                    if matches!(e, remote::RemoteEvent::Step(_)) {
                        first.get_or_insert(started.elapsed().as_secs_f64());
                    }
                })
                .await?;
            ours.push(first.unwrap_or(f64::NAN));
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (raw_ms, ours_ms) = (median(&mut raw) * 1e3, median(&mut ours) * 1e3);
    println!("bench remote: samemath serve on 127.0.0.1:{port}, {rounds} one-token requests each");
    println!(
        "  time to first token: raw HTTP {raw_ms:.2} ms, our client {ours_ms:.2} ms, overhead {:.2} ms",
        ours_ms - raw_ms
    );
    // Throughput: 8 clients at once, `tokens` each.
    let clients = 8;
    let ollama = format!(
        r#"{{"model":"smollm2-135m-instruct","prompt":"Write about the sea.","stream":false,"options":{{"num_predict":{tokens},"temperature":0}}}}"#
    );
    let ours_tps = throughput(port, "/api/generate", &ollama, clients, "/eval_count")?;
    println!(
        "  serve ({compute}), {clients} clients x {tokens} tokens: \
         {ours_tps:.1} tokens/s summed"
    );
    let lport = free_port()?;
    let llama = std::process::Command::new("python3")
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(&path)
        .args([
            "--port",
            &lport.to_string(),
            "--host",
            "127.0.0.1",
            "--n_ctx",
            "4096",
        ])
        .args(["--n_threads", &threads.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match llama {
        Ok(child) => {
            let mut guard = ChildGuard(child);
            let body = format!(
                r#"{{"prompt":"Write about the sea.","max_tokens":{tokens},"temperature":0}}"#
            );
            let theirs = wait_ready(&mut guard.0, lport, "/v1/models", Duration::from_secs(180))
                .and_then(|()| {
                    throughput(
                        lport,
                        "/v1/completions",
                        &body,
                        clients,
                        "/usage/completion_tokens",
                    )
                    .map_err(|e| format!("{e:#}"))
                });
            match theirs {
                Ok(theirs) => {
                    println!(
                        "  llama.cpp's server ({threads} threads), {clients} clients x {tokens} \
                         tokens: {theirs:.1} tokens/s summed"
                    );
                    match ratio(ours_tps, theirs) {
                        Ok(r) => println!("  ratio serve / llama.cpp server: {r:.2}x"),
                        Err(e) => println!("  ratio serve / llama.cpp server: not measured ({e})"),
                    }
                }
                Err(e) => println!(
                    "  llama.cpp's server: not measured ({e}; pip install \
                     'llama-cpp-python[server]')"
                ),
            }
        }
        Err(e) => println!(
            "  llama.cpp's server: not measured ({e}; pip install 'llama-cpp-python[server]')"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_exits_ends_the_wait_at_once() {
        let port = free_port().unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        // Far longer than the test may take: only the child's exit can end the wait in time.
        let started = Instant::now();
        let e = wait_ready(&mut child, port, "/health", Duration::from_secs(600)).unwrap_err();
        assert!(e.contains("exited"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(300), "{e}");
    }

    #[test]
    fn error_replies_and_missing_counts_are_errors_not_zero_tokens() {
        assert_eq!(
            reply_tokens(200, r#"{"eval_count":32}"#, "/eval_count"),
            Ok(32)
        );
        let usage = r#"{"usage":{"completion_tokens":7}}"#;
        assert_eq!(reply_tokens(200, usage, "/usage/completion_tokens"), Ok(7));
        let e = reply_tokens(503, r#"{"error":"busy"}"#, "/eval_count").unwrap_err();
        assert!(e.contains("HTTP 503") && e.contains("busy"), "{e}");
        let e = reply_tokens(200, r#"{"error":"no model"}"#, "/eval_count").unwrap_err();
        assert!(e.contains("no token count"), "{e}");
        assert!(reply_tokens(200, "not json", "/eval_count").is_err());
    }

    #[test]
    fn serve_gets_the_benchs_backend_and_threads() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "samemath",
            "bench",
            "--remote",
            "--backend",
            "gpu",
            "--threads",
            "3",
        ])
        .unwrap();
        let Some(crate::cli::Command::Bench(args)) = cli.command else {
            panic!("not a bench");
        };
        let command = serve_command(std::path::Path::new("samemath"), &args, 8123);
        let line: Vec<_> = command.get_args().map(|a| a.to_string_lossy()).collect();
        let line = line.join(" ");
        assert!(line.starts_with("serve --port 8123"), "{line}");
        assert!(line.ends_with("--backend gpu"), "{line}");
        // One pool of 3 for all the answers, not 3 threads each.
        assert!(!line.contains("--threads"), "{line}");
        let env: Vec<_> = command.get_envs().collect();
        assert_eq!(
            env,
            [(
                std::ffi::OsStr::new("RAYON_NUM_THREADS"),
                Some(std::ffi::OsStr::new("3"))
            )]
        );
    }

    #[test]
    fn no_ratio_against_a_rate_of_zero() {
        assert_eq!(ratio(84.0, 42.0), Ok(2.0));
        for (ours, theirs) in [
            (84.0, 0.0),
            (0.0, 42.0),
            (84.0, f64::NAN),
            (f64::INFINITY, 1.0),
        ] {
            assert!(ratio(ours, theirs).is_err(), "{ours} / {theirs}");
        }
    }
}
