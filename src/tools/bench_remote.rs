//! `samemath bench --remote`: our client's time-to-first-token overhead against a raw HTTP
//! request to `samemath serve`, and the server's summed tokens/s under 8 parallel clients against
//! llama.cpp's server on the same file.

use anyhow::Result;
use llm::{GenerationRequest, SamplingParams, fetch};

use testkit::{ChildGuard, free_port, post_timed, wait_ok};

use super::progress;
use crate::cli::BenchArgs;

/// Summed tokens/s of `clients` parallel requests (each `tokens` long) to `path`.
fn throughput(
    port: u16,
    path: &str,
    body: &str,
    clients: usize,
    count: fn(&str) -> usize,
) -> Result<f64> {
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let body = body.to_string();
            let path = path.to_string();
            std::thread::spawn(move || post_timed(port, &path, &body).map(|(_, b)| count(&b)))
        })
        .collect();
    let mut tokens = 0;
    for h in handles {
        tokens += h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread failed"))??;
    }
    Ok(tokens as f64 / started.elapsed().as_secs_f64())
}

/// `samemath bench --remote`.
pub fn bench_remote(args: &BenchArgs) -> Result<()> {
    use remote::{ApiKind, RemoteClient, RemoteConfig};
    let path = fetch::ensure_model(args.model.model.as_deref(), &mut progress)?;
    let exe = std::env::current_exe()?;
    let port = free_port()?;
    let _serve = ChildGuard(
        std::process::Command::new(&exe)
            .args([
                "serve",
                "--port",
                &port.to_string(),
                "--concurrency",
                "8",
                "--queue",
                "8",
            ])
            .arg("--model")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    wait_ok(port, "/health", std::time::Duration::from_secs(180)).map_err(anyhow::Error::msg)?;
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
    // Throughput: 8 clients at once, 32 tokens each.
    let clients = 8;
    let ollama = r#"{"model":"smollm2-135m-instruct","prompt":"Write about the sea.","stream":false,"options":{"num_predict":32,"temperature":0}}"#;
    let count_ollama = |b: &str| -> usize {
        serde_json::from_str::<serde_json::Value>(b)
            .ok()
            .and_then(|v| v["eval_count"].as_u64())
            .unwrap_or(0) as usize
    };
    let ours_tps = throughput(port, "/api/generate", ollama, clients, count_ollama)?;
    println!("  serve, {clients} clients x 32 tokens: {ours_tps:.1} tokens/s summed");
    let lport = free_port()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
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
            let _guard = ChildGuard(child);
            wait_ok(lport, "/v1/models", std::time::Duration::from_secs(180))
                .map_err(anyhow::Error::msg)?;
            let body = r#"{"prompt":"Write about the sea.","max_tokens":32,"temperature":0}"#;
            let count_openai = |b: &str| -> usize {
                serde_json::from_str::<serde_json::Value>(b)
                    .ok()
                    .and_then(|v| v["usage"]["completion_tokens"].as_u64())
                    .unwrap_or(0) as usize
            };
            let theirs = throughput(lport, "/v1/completions", body, clients, count_openai)?;
            println!(
                "  llama.cpp's server, {clients} clients x 32 tokens: {theirs:.1} tokens/s summed"
            );
            println!(
                "  ratio serve / llama.cpp server: {:.2}x",
                ours_tps / theirs
            );
        }
        Err(e) => println!(
            "  llama.cpp's server: not measured ({e}; pip install 'llama-cpp-python[server]')"
        ),
    }
    Ok(())
}
