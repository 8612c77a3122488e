//! The command-line tools around the app: `generate`, `trace` and `fetch-model`. Engine-free;
//! errors become messages here, at the edge.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::llm::fetch;
use crate::llm::gpu::{GpuContext, GpuModel, Profile};
use crate::llm::model::Q4Kernel;
use crate::llm::{
    Backend, GenerationRequest, LlmTokenizer, Model, RecordOptions, SamplingParams, Session,
};

/// Where the command line runs the forward pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    #[default]
    Cpu,
    /// WGSL compute kernels on a wgpu device (WGPU_BACKEND picks the graphics API).
    Gpu,
}

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A llama-architecture GGUF file (default: SmolLM2-135M-Instruct in the cache, fetched on
    /// first use; or $SAMEMATH_MODEL).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// CPU threads for the matrix products (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where the forward pass runs: cpu, or gpu (falls back to the CPU, saying why, when no
    /// usable GPU is found).
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    pub backend: BackendArg,
}

#[derive(Debug, Clone, Args)]
pub struct PromptArgs {
    /// The prompt (or use --file).
    pub prompt: Option<String>,
    /// Read the prompt from a UTF-8 text file.
    #[arg(long, value_name = "PATH", conflicts_with = "prompt")]
    pub file: Option<PathBuf>,
    /// Feed the text as it is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Stop after this many new tokens.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// 0 = greedy (the default, reproducible).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Print the prompt's tokens (id and piece) to stderr first.
    #[arg(long)]
    pub show_tokens: bool,
}

impl PromptArgs {
    fn text(&self) -> Result<String> {
        match (&self.prompt, &self.file) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(path)) => {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                String::from_utf8(bytes).map_err(|e| {
                    anyhow::anyhow!(
                        "{} is not valid UTF-8 (first bad byte at offset {})",
                        path.display(),
                        e.utf8_error().valid_up_to()
                    )
                })
            }
            (None, None) => bail!("give a prompt, or --file PATH"),
        }
    }

    fn request(&self, default_max: usize, record: RecordOptions) -> Result<GenerationRequest> {
        Ok(GenerationRequest {
            prompt: self.text()?,
            chat: !self.raw,
            max_tokens: self.max_tokens.unwrap_or(default_max),
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed,
                repeat_penalty: self.repeat_penalty,
                ..SamplingParams::default()
            },
            record,
        })
    }
}

fn progress(message: &str) {
    eprintln!("samemath: {message}");
}

fn load(args: &ModelArgs) -> Result<(Arc<dyn Backend>, Arc<LlmTokenizer>)> {
    let path = fetch::ensure_model(args.model.as_deref(), &mut progress)?;
    if args.backend == BackendArg::Gpu {
        match load_gpu(&path) {
            Ok((gpu, tokenizer)) => {
                progress(&gpu.describe());
                return Ok((Arc::new(gpu), Arc::new(tokenizer)));
            }
            Err(e) => progress(&format!("{e:#}; running on the CPU instead")),
        }
    }
    let (model, tokenizer) =
        Model::load(&path).with_context(|| format!("loading {}", path.display()))?;
    Ok((Arc::new(model), Arc::new(tokenizer)))
}

/// The GPU backend on a device of its own, and the file's tokenizer.
fn load_gpu(path: &Path) -> Result<(GpuModel, LlmTokenizer)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut file)
        .map_err(|e| anyhow::anyhow!("{}: not a GGUF file ({e})", path.display()))?;
    let tokenizer = LlmTokenizer::from_gguf(&content)?;
    let gpu = GpuModel::from_content(
        &content,
        &mut file,
        GpuContext::new()?,
        crate::llm::gpu::DEFAULT_CONTEXT,
    )?;
    Ok((gpu, tokenizer))
}

/// Run `f` on a pool of `threads` threads (candle's CPU kernels use the current rayon pool).
fn with_threads<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T> {
    match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => Ok(rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()?
            .install(f)),
        None => Ok(f()),
    }
}

fn show_tokens(session: &Session) {
    let tok = session.tokenizer();
    let chips: Vec<String> = session
        .prompt_tokens()
        .iter()
        .map(|id| format!("{id}:{:?}", tok.piece(*id)))
        .collect();
    eprintln!("samemath: prompt tokens: {}", chips.join(" "));
}

pub fn fetch_model() -> Result<()> {
    let path = fetch::fetch_model(&mut progress)?;
    println!("{}", path.display());
    Ok(())
}

pub fn generate(model: &ModelArgs, prompt: &PromptArgs) -> Result<()> {
    let request = prompt.request(256, RecordOptions::OFF)?;
    let (model_w, tokenizer) = load(model)?;
    with_threads(model.threads, || -> Result<()> {
        let mut session = Session::new(model_w, tokenizer, &request)?;
        if prompt.show_tokens {
            show_tokens(&session);
        }
        let started = std::time::Instant::now();
        let mut stdout = std::io::stdout().lock();
        let mut count = 0;
        let mut stop = None;
        while let Some(step) = session.step()? {
            write!(stdout, "{}", step.text)?;
            stdout.flush()?;
            count += 1;
            stop = step.stop;
        }
        writeln!(stdout)?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "samemath: {count} tokens in {secs:.2} s ({:.1} tokens/s), prompt {} tokens, stop: {}",
            count as f64 / secs.max(1e-9),
            session.prompt_tokens().len(),
            stop.map_or("none".into(), |s| format!("{s:?}"))
        );
        Ok(())
    })?
}

/// The browser build has no command line tools that open sockets.
#[cfg(target_arch = "wasm32")]
pub fn generate_remote(_: &crate::cli::RemoteArgs, _: &PromptArgs) -> Result<()> {
    bail!("--remote is not available in the browser build")
}

#[cfg(target_arch = "wasm32")]
pub fn serve(_: &crate::cli::ServeArgs) -> Result<()> {
    bail!("serve is not available in the browser build")
}

/// `samemath generate --remote URL`: the same streaming, from a server.
#[cfg(not(target_arch = "wasm32"))]
pub fn generate_remote(remote: &crate::cli::RemoteArgs, prompt: &PromptArgs) -> Result<()> {
    use crate::remote::{RemoteClient, RemoteConfig, RemoteEvent};
    let request = prompt.request(256, RecordOptions::OFF)?;
    let config = RemoteConfig {
        api: remote.api,
        model: remote.remote_model.clone(),
        token: remote.token.clone(),
        first_byte_timeout: std::time::Duration::from_secs(remote.first_byte_timeout.max(1)),
        ..RemoteConfig::new(remote.remote.clone().unwrap_or_default())
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut client = RemoteClient::new(config)?;
        let info = client.probe().await?;
        eprintln!("samemath: {}", info.describe(client.model()));
        let cancel = crate::llm::CancelToken::default();
        let mut stdout = std::io::stdout().lock();
        let mut on_event = |e: RemoteEvent| match e {
            RemoteEvent::Status(s) => eprintln!("samemath: {s}"),
            RemoteEvent::Step(step) => {
                let _ = write!(stdout, "{}", step.text);
                let _ = stdout.flush();
            }
        };
        let summary = client.generate(&request, &cancel, &mut on_event).await?;
        println!();
        eprintln!(
            "samemath: {} tokens, first byte after {:.2} s{}{}, stop: {}",
            summary.tokens,
            summary.first_byte_secs,
            summary
                .server_tokens_per_sec
                .map(|t| format!(", server speed {t:.1} tokens/s"))
                .unwrap_or_default(),
            summary
                .load_secs
                .map(|t| format!(", model load {t:.2} s"))
                .unwrap_or_default(),
            summary.stop.map_or("none".into(), |s| format!("{s:?}")),
        );
        Ok::<(), anyhow::Error>(())
    })
}

/// `samemath serve`.
#[cfg(not(target_arch = "wasm32"))]
pub fn serve(args: &crate::cli::ServeArgs) -> Result<()> {
    let port = match args.port {
        Some(p) => p,
        None => match std::env::var("PORT") {
            Ok(p) => p
                .parse()
                .with_context(|| format!("$PORT is {p:?}, not a port number"))?,
            Err(_) => 8080,
        },
    };
    crate::serve::run(crate::serve::ServeOptions {
        port,
        model: args.model.clone(),
        concurrency: args.concurrency.max(1),
        queue: args.queue,
        cors: args.cors.clone(),
        api_key: args
            .api_key
            .clone()
            .or_else(|| std::env::var("SAMEMATH_API_KEY").ok())
            .filter(|k| !k.is_empty()),
        max_body_bytes: 1 << 20,
        threads: args.threads,
        gpu: args.backend == BackendArg::Gpu,
    })
}

pub fn trace(model: &ModelArgs, prompt: &PromptArgs, json: Option<&Path>) -> Result<()> {
    let request = prompt.request(8, RecordOptions::FULL)?;
    let (model_w, tokenizer) = load(model)?;
    with_threads(model.threads, || -> Result<()> {
        let mut session = Session::new(model_w, tokenizer, &request)?;
        let mut steps = Vec::new();
        while let Some(step) = session.step()? {
            eprint!("{}", step.text);
            steps.push(step);
        }
        eprintln!();
        let objects: Vec<crate::remote::TraceStep> = steps
            .into_iter()
            .map(|s| crate::remote::TraceStep {
                step: s.index,
                sampled: s.token,
                stop: s.stop,
                text: s.text,
                trace: s.trace,
            })
            .collect();
        let text = serde_json::to_string(&objects)?;
        match json {
            Some(path) => {
                std::fs::write(path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!(
                    "samemath: {} steps written to {}",
                    objects.len(),
                    path.display()
                );
            }
            None => println!("{text}"),
        }
        Ok(())
    })?
}

/// Prefill and decode speed of one run, tokens per second.
#[derive(Debug, Clone, Copy)]
struct Speed {
    prefill_tps: f64,
    decode_tps: f64,
}

/// The prompt the LLM bench feeds (the same text goes to llama.cpp).
const BENCH_PROMPT: &str = "<|im_start|>user\nExplain, step by step, how a graphics card \
    transforms the vertices of a mesh with a 4x4 matrix, how it lights each pixel with a dot \
    product, and why the same hardware is good at running a neural network.<|im_end|>\n\
    <|im_start|>assistant\n";

fn measure(
    model: &dyn Backend,
    tokenizer: &crate::llm::LlmTokenizer,
    tokens: usize,
    record: RecordOptions,
) -> Result<Speed> {
    let prompt = tokenizer.encode(BENCH_PROMPT)?;
    let mut best = Speed {
        prefill_tps: 0.0,
        decode_tps: 0.0,
    };
    for _ in 0..3 {
        let mut cache = model.new_cache()?;
        let t0 = std::time::Instant::now();
        let mut out = model.forward(&mut cache, &prompt, record, Some(tokenizer))?;
        let t1 = std::time::Instant::now();
        for _ in 0..tokens {
            let next = crate::llm::model::argmax(&out.logits);
            out = model.forward(&mut cache, &[next], record, Some(tokenizer))?;
        }
        let t2 = std::time::Instant::now();
        best.prefill_tps = best
            .prefill_tps
            .max(prompt.len() as f64 / (t1 - t0).as_secs_f64());
        best.decode_tps = best.decode_tps.max(tokens as f64 / (t2 - t1).as_secs_f64());
    }
    Ok(best)
}

fn llama_cpp_speed(model: &Path, threads: usize, tokens: usize) -> Result<Speed, String> {
    // From the checkout the command runs in, else the one this binary was built from.
    let rel = Path::new("tests/reference/bench_llama_cpp.py");
    let script = if rel.is_file() {
        rel.to_path_buf()
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
    };
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg("--model")
        .arg(model)
        .args(["--threads", &threads.to_string()])
        .args(["--tokens", &tokens.to_string()])
        .args(["--prompt", BENCH_PROMPT])
        .output()
        .map_err(|e| format!("could not run python3: {e}"))?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        format!(
            "no result from {}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    if let Some(e) = json["error"].as_str() {
        return Err(e.to_string());
    }
    match (json["prefill_tps"].as_f64(), json["decode_tps"].as_f64()) {
        (Some(prefill_tps), Some(decode_tps)) => Ok(Speed {
            prefill_tps,
            decode_tps,
        }),
        _ => Err(format!("unexpected output: {json}")),
    }
}

/// `samemath bench --llm`: our engine with recording off and on, then llama.cpp on the same
/// file and thread count, in the same run; best of 3 each.
pub fn bench_llm(args: &crate::cli::BenchArgs) -> Result<()> {
    let threads = args
        .model
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let path = fetch::ensure_model(args.model.model.as_deref(), &mut progress)?;
    if args.model.backend == BackendArg::Gpu {
        return bench_llm_gpu(&path, threads, args.tokens.max(1));
    }
    let (model, tokenizer) = Model::load(&path)?;
    let model = Arc::new(model);
    let (candle_model, _) = Model::load_with(&path, Q4Kernel::Candle)?;
    let candle_model = Arc::new(candle_model);
    let tokens = args.tokens.max(1);
    let no_lens = RecordOptions {
        logit_lens: false,
        ..RecordOptions::FULL
    };
    let (off, on, on_no_lens, candle_off) =
        with_threads(Some(threads), || -> Result<(Speed, Speed, Speed, Speed)> {
            Ok((
                measure(&*model, &tokenizer, tokens, RecordOptions::OFF)?,
                measure(&*model, &tokenizer, tokens, RecordOptions::FULL)?,
                measure(&*model, &tokenizer, tokens, no_lens)?,
                measure(&*candle_model, &tokenizer, tokens, RecordOptions::OFF)?,
            ))
        })??;
    println!(
        "bench llm: {} threads, prompt {} tokens, decode {tokens} tokens, best of 3",
        threads,
        tokenizer.encode(BENCH_PROMPT)?.len()
    );
    let line = |name: &str, s: Speed| {
        println!(
            "  {name:<28} prefill {:>8.1} tok/s   decode {:>7.1} tok/s",
            s.prefill_tps, s.decode_tps
        )
    };
    line("samemath, recording off", off);
    line("samemath, recording on", on);
    line("  the same without logit lens", on_no_lens);
    line("candle's kernels, off", candle_off);
    match llama_cpp_speed(&path, threads, tokens) {
        Ok(reference) => {
            line("llama.cpp (same file)", reference);
            for (name, s) in [
                ("recording off", off),
                ("recording on", on),
                ("on, no lens", on_no_lens),
            ] {
                println!(
                    "  ratio vs llama.cpp, {name:<14} prefill {:.2}x   decode {:.2}x",
                    s.prefill_tps / reference.prefill_tps,
                    s.decode_tps / reference.decode_tps
                );
            }
        }
        Err(e) => println!("  llama.cpp: not measured ({e})"),
    }
    Ok(())
}

/// `samemath bench --llm --backend gpu`: the GPU backend and the CPU engine in the same run
/// (recording off, on, on without the lens), then one profiled step's GPU time per kernel
/// where the device has timestamp queries.
fn bench_llm_gpu(path: &Path, threads: usize, tokens: usize) -> Result<()> {
    let (gpu, tokenizer) = load_gpu(path)?;
    let (cpu, _) = Model::load(path)?;
    let cpu = Arc::new(cpu);
    let no_lens = RecordOptions {
        logit_lens: false,
        ..RecordOptions::FULL
    };
    let mut rows = Vec::new();
    for (name, record) in [
        ("recording off", RecordOptions::OFF),
        ("recording on", RecordOptions::FULL),
        ("on, no lens", no_lens),
    ] {
        let g = measure(&gpu, &tokenizer, tokens, record)?;
        let c = with_threads(Some(threads), || measure(&*cpu, &tokenizer, tokens, record))??;
        rows.push((name, g, c));
    }
    // The same with RMSNorm as dispatches of their own (8 per layer instead of 6).
    gpu.set_fuse_norm(false);
    let unfused = measure(&gpu, &tokenizer, tokens, RecordOptions::OFF)?;
    gpu.set_fuse_norm(true);
    println!(
        "bench llm gpu: {} vs CPU {threads} threads, prompt {} tokens, decode {tokens} tokens, \
         best of 3",
        gpu.describe(),
        tokenizer.encode(BENCH_PROMPT)?.len()
    );
    for (name, g, c) in &rows {
        println!(
            "  {name:<14} GPU prefill {:>8.1} decode {:>7.1} tok/s | CPU prefill {:>7.1} decode \
             {:>6.1} tok/s | GPU/CPU decode {:.2}x",
            g.prefill_tps,
            g.decode_tps,
            c.prefill_tps,
            c.decode_tps,
            g.decode_tps / c.decode_tps
        );
    }
    println!(
        "  off, RMSNorm as dispatches of its own: GPU prefill {:>8.1} decode {:>7.1} tok/s \
         (folded into the products: {:.2}x the decode speed)",
        unfused.prefill_tps,
        unfused.decode_tps,
        rows[0].1.decode_tps / unfused.decode_tps
    );
    let Some(mut cache) = gpu.new_cache().ok().and_then(|c| match c {
        crate::llm::Cache::Gpu(c) => Some(c),
        crate::llm::Cache::Cpu(_) => None,
    }) else {
        bail!("no GPU cache");
    };
    let prompt = tokenizer.encode(BENCH_PROMPT)?;
    gpu.forward_gpu(&mut cache, &prompt, RecordOptions::OFF, None, Profile::Off)?;
    for (name, record) in [
        ("recording off", RecordOptions::OFF),
        ("recording on", RecordOptions::FULL),
    ] {
        let mut step =
            |profile| gpu.forward_gpu(&mut cache, &[prompt[0]], record, Some(&tokenizer), profile);
        let mut whole = f64::INFINITY;
        for _ in 0..5 {
            step(Profile::WholeStep)?;
            if let Some(t) = gpu.last_profile() {
                whole = whole.min(t.iter().map(|(_, ms)| ms).sum());
            }
        }
        let t0 = std::time::Instant::now();
        for _ in 0..5 {
            step(Profile::Off)?;
        }
        let wall = t0.elapsed().as_secs_f64() * 1e3 / 5.0;
        step(Profile::PerKernel)?;
        match gpu.last_profile() {
            Some(times) => {
                let total: f64 = times.iter().map(|(_, ms)| ms).sum();
                let parts: Vec<String> = times
                    .iter()
                    .map(|(k, ms)| format!("{k:?} {:.3}", ms))
                    .collect();
                println!(
                    "  {name}: a step takes {wall:.3} ms, of which the GPU runs {whole:.3} ms \
                     (one pass, best of 5); per kernel (each dispatch in its own pass, ms): {} | \
                     total {total:.3}",
                    parts.join(", ")
                );
            }
            None => println!(
                "  {name}: a step takes {wall:.3} ms; this device has no timestamp queries"
            ),
        }
    }
    // Correctness on this very device, with the parity test's code.
    let (candle, _) = Model::load_with(path, Q4Kernel::Candle)?;
    let tokenizer = Arc::new(tokenizer);
    let report = with_threads(Some(threads), || {
        crate::llm::gpu::parity::compare(
            &cpu,
            &candle,
            &gpu,
            &tokenizer,
            &crate::llm::gpu::parity::PROMPTS,
            16,
        )
    })??;
    println!("  parity with the CPU backend: {report}");
    Ok(())
}

#[cfg(target_arch = "wasm32")]
pub fn bench_remote(_: &crate::cli::BenchArgs) -> Result<()> {
    bail!("bench --remote is not available in the browser build")
}

/// A child process killed when dropped (the servers `bench --remote` starts).
#[cfg(not(target_arch = "wasm32"))]
struct ChildGuard(std::process::Child);

#[cfg(not(target_arch = "wasm32"))]
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// POST `body` to 127.0.0.1:`port``path`; returns (seconds to the first body byte, body).
#[cfg(not(target_arch = "wasm32"))]
fn raw_post(port: u16, path: &str, body: &str) -> Result<(f64, String)> {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Headers, then the first byte of the body.
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    s.read_exact(&mut byte)?;
    let first = started.elapsed().as_secs_f64();
    let mut rest = vec![byte[0]];
    s.read_to_end(&mut rest)?;
    Ok((first, String::from_utf8_lossy(&rest).into_owned()))
}

#[cfg(not(target_arch = "wasm32"))]
fn wait_http(port: u16, path: &str) -> Result<()> {
    use std::io::Read;
    let started = std::time::Instant::now();
    loop {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port))
            .and_then(|mut s| {
                write!(
                    s,
                    "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out.starts_with("HTTP/1.1 200"))
            })
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if started.elapsed().as_secs() > 180 {
            bail!("no server answered on port {port}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Summed tokens/s of `clients` parallel requests (each `tokens` long) to `path`.
#[cfg(not(target_arch = "wasm32"))]
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
            std::thread::spawn(move || raw_post(port, &path, &body).map(|(_, b)| count(&b)))
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
#[cfg(not(target_arch = "wasm32"))]
pub fn bench_remote(args: &crate::cli::BenchArgs) -> Result<()> {
    use crate::remote::{ApiKind, RemoteClient, RemoteConfig};
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
    wait_http(port, "/health")?;
    // Time to first token: the same one-token request, raw and through our client.
    let body = r#"{"model":"smollm2-135m-instruct","prompt":"Hi","raw":true,"stream":true,"options":{"num_predict":1,"temperature":0}}"#;
    let rounds = 15;
    let mut raw = Vec::new();
    for _ in 0..rounds {
        raw.push(raw_post(port, "/api/generate", body)?.0);
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
                .generate(&request, &crate::llm::CancelToken::default(), &mut |e| {
                    if matches!(e, crate::remote::RemoteEvent::Step(_)) {
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
            wait_http(lport, "/v1/models")?;
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
