//! `samemath bench --llm`: prefill and decode speed of our engine (recording off, on, on without
//! the lens), candle's kernels and llama.cpp on the same file and threads, in the same run; with
//! `--backend gpu`, the GPU backend beside the CPU, per-kernel GPU time and the parity report.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use llm::gpu::{GpuModel, KernelKind, Profile, StepChoice, step_name};
use llm::model::Q4Kernel;
use llm::{Backend, Model, RecordOptions, fetch};

use super::{load_gpu, progress, with_threads};
use crate::cli::{BackendArg, BenchArgs};

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
    tokenizer: &llm::LlmTokenizer,
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
            let next = llm::model::argmax(&out.logits);
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
    let json = run_reference(
        model,
        threads,
        &["--tokens", &tokens.to_string(), "--prompt", BENCH_PROMPT],
    )?;
    match (json["prefill_tps"].as_f64(), json["decode_tps"].as_f64()) {
        (Some(prefill_tps), Some(decode_tps)) => Ok(Speed {
            prefill_tps,
            decode_tps,
        }),
        _ => Err(format!("unexpected output: {json}")),
    }
}

/// The longest the reference script may run (llama.cpp's three runs of the longest decode the
/// bench allows, or its prefill of the longest prompt, on a slow CPU take minutes, not this).
const REFERENCE_LIMIT: Duration = Duration::from_secs(20 * 60);
/// Bytes kept of the script's stdout and of its stderr (its answer is one line of JSON).
const OUTPUT_CAP: u64 = 1 << 20;

/// Run `command` with piped output: its stdout and stderr (at most `OUTPUT_CAP` bytes each, the
/// rest read and dropped so it never blocks on a full pipe), or an error if it cannot start or
/// runs past `limit` (then it is killed).
pub(crate) fn run_bounded(
    mut command: std::process::Command,
    limit: Duration,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    use std::process::Stdio;
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run {program}: {e}"))?;
    // Each pipe read on a thread of its own, its bytes sent back when it closes.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.by_ref().take(OUTPUT_CAP).read_to_end(&mut kept);
                let _ = std::io::copy(&mut pipe, &mut std::io::sink());
            }
            let _ = tx.send(kept);
        });
        rx
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "{program} ran past {} s and was stopped",
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                // Not left running behind the bench.
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("could not wait for {program}: {e}"));
            }
        }
    };
    status?;
    // The pipes close when the child is gone, unless a process it started still holds them:
    // then what was read is not waited for past a few seconds.
    let collect = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default()
    };
    Ok((collect(out), collect(err)))
}

/// Run tests/reference/bench_llama_cpp.py on `model` with `threads` and `more` arguments; its
/// JSON answer.
fn run_reference(model: &Path, threads: usize, more: &[&str]) -> Result<serde_json::Value, String> {
    // From the checkout the command runs in, else the one this binary was built from (native
    // builds only: the browser build has no python3, and without the checkout's path in it the
    // wasm is the same from any clone, so wasm/build.sh's wasm-opt cache serves them all).
    let rel = Path::new("tests/reference/bench_llama_cpp.py");
    #[cfg(not(target_arch = "wasm32"))]
    let script = if rel.is_file() {
        rel.to_path_buf()
    } else {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
    };
    #[cfg(target_arch = "wasm32")]
    let script = rel.to_path_buf();
    let mut command = std::process::Command::new("python3");
    command
        .arg(&script)
        .arg("--model")
        .arg(model)
        .args(["--threads", &threads.to_string()])
        .args(more);
    let (stdout, stderr) = run_bounded(command, REFERENCE_LIMIT)?;
    let json: serde_json::Value = serde_json::from_slice(&stdout).map_err(|_| {
        format!(
            "no result from {}: {}",
            script.display(),
            String::from_utf8_lossy(&stderr).trim()
        )
    })?;
    if let Some(e) = json["error"].as_str() {
        return Err(e.to_string());
    }
    Ok(json)
}

/// `samemath bench --llm`: our engine with recording off and on, then llama.cpp on the same
/// file and thread count, in the same run; best of 3 each.
pub fn bench_llm(args: &BenchArgs) -> Result<()> {
    let threads = args
        .model
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let path = fetch::ensure_model(args.model.model.as_deref(), &mut progress)?;
    let gpu = args.model.backend == BackendArg::Gpu;
    if let Some(n) = args.prompt_tokens {
        return bench_long_prompt(&path, threads, n, gpu);
    }
    let tokens = args.tokens_or(64);
    // From the file's header, before any weight is read: the prompt and the decode must fit.
    let (context, prompt) = decode_room(&path, gpu)?;
    if tokens > context.saturating_sub(prompt) {
        anyhow::bail!(
            "--tokens {tokens}: at most {} (a context of {context} positions{}, less the \
             bench's {prompt}-token prompt)",
            context.saturating_sub(prompt),
            if gpu {
                " as the GPU bench sizes it"
            } else {
                ""
            }
        );
    }
    if gpu {
        return bench_llm_gpu(&path, threads, tokens);
    }
    let (model, tokenizer) = Model::load(&path)?;
    let model = Arc::new(model);
    let (candle_model, _) = Model::load_with(&path, Q4Kernel::Candle)?;
    let candle_model = Arc::new(candle_model);
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

/// Room for a decode run, from the GGUF header alone: the model's context (with `gpu`, as
/// `bench_llm_gpu` sizes its cache) and the bench's prompt in tokens.
fn decode_room(path: &Path, gpu: bool) -> Result<(usize, usize)> {
    let mut file = llm::gguf_check::open_model(path)?;
    let content = llm::gguf_check::read_content(&mut file, path)?;
    let config = llm::LlamaConfig::from_gguf(&content)?;
    let prompt = llm::LlmTokenizer::from_gguf(&content)?
        .encode(BENCH_PROMPT)?
        .len();
    let mut context = config.context_length;
    if gpu {
        context = context.min(llm::gpu::DEFAULT_CONTEXT);
    }
    Ok((context, prompt))
}

/// The text a long prompt repeats (without the chat template), cut to the asked length in tokens.
const LONG_TEXT: &str = "A graphics card moves every vertex of a mesh with a 4x4 matrix and \
    lights every pixel with a dot product of the normal and the direction to the light. A \
    language model multiplies each token's embedding by matrices and sums dot products in its \
    neurons. The hardware does not know which of the two it is running. ";

/// `samemath bench --llm --prompt-tokens N`: the prefill of an N-token prompt, ours (one
/// forward pass over all of it, as a session reads a prompt) and llama.cpp's on the same ids
/// (its usual 512-token batches), in the same run.
fn bench_long_prompt(path: &Path, threads: usize, n: usize, gpu: bool) -> Result<()> {
    let (model, tokenizer) = Model::load(path)?;
    let max = model.config.context_length.saturating_sub(16);
    if n == 0 || n > max {
        anyhow::bail!("--prompt-tokens: 1 to {max} (the model's context, less a few)");
    }
    let unit = tokenizer.encode(LONG_TEXT)?;
    let ids: Vec<u32> = unit.iter().cycle().take(n).copied().collect();
    let ours = with_threads(Some(threads), || -> Result<f64> {
        let mut cache = model.new_cache();
        let t0 = std::time::Instant::now();
        model.forward(&mut cache, &ids, RecordOptions::OFF, None)?;
        Ok(t0.elapsed().as_secs_f64())
    })??;
    println!("bench llm: {threads} threads, prefill of a {n}-token prompt, one run each");
    println!(
        "  samemath                     {ours:>8.2} s   {:>8.1} tok/s",
        n as f64 / ours
    );
    let theirs = match llama_cpp_prefill(path, threads, &ids) {
        Ok(theirs) => {
            println!(
                "  llama.cpp (same file, ids)   {theirs:>8.2} s   {:>8.1} tok/s",
                n as f64 / theirs
            );
            println!(
                "  ratio vs llama.cpp, prefill of {n} tokens: {:.2}x",
                theirs / ours
            );
            Some(theirs)
        }
        Err(e) => {
            println!("  llama.cpp: not measured ({e})");
            None
        }
    };
    if gpu {
        match gpu_prefill(path, &ids) {
            Ok((secs, device)) => {
                let ratio =
                    theirs.map_or(String::new(), |t| format!(", {:.2}x llama.cpp's", t / secs));
                println!(
                    "  GPU backend                  {secs:>8.2} s   {:>8.1} tok/s   ({:.2}x our \
                     CPU's speed{ratio}) on {device}",
                    n as f64 / secs,
                    ours / secs
                );
            }
            Err(e) => println!("  GPU backend: not measured ({e:#})"),
        }
    }
    Ok(())
}

/// The GPU backend's seconds to read these prompt ids (a cache sized for them), and its name.
fn gpu_prefill(path: &Path, ids: &[u32]) -> Result<(f64, String)> {
    let (gpu, _) = load_gpu(path, ids.len() + 16)?;
    let mut cache = gpu.new_cache()?;
    let t0 = std::time::Instant::now();
    gpu.forward(&mut cache, ids, RecordOptions::OFF, None)?;
    Ok((t0.elapsed().as_secs_f64(), gpu.describe()))
}

/// Decode steps (recording off) until the model has timed both variants of its step and chosen.
fn settle_step_choice(gpu: &GpuModel, tokenizer: &llm::LlmTokenizer) -> Result<StepChoice> {
    let prompt = tokenizer.encode(BENCH_PROMPT)?;
    let mut cache = gpu.new_cache()?;
    let mut out = gpu.forward(&mut cache, &prompt, RecordOptions::OFF, None)?;
    for _ in 0..64 {
        if !matches!(gpu.step_choice(), StepChoice::Timing { .. }) {
            break;
        }
        let next = llm::model::argmax(&out.logits);
        out = gpu.forward(&mut cache, &[next], RecordOptions::OFF, None)?;
    }
    Ok(gpu.step_choice())
}

/// One line of the GPU bench: `what` takes `wall` ms, the GPU `whole` ms in one pass, and the
/// per-kernel times when the device has timestamp queries.
fn print_kernel_times(what: &str, wall: f64, whole: f64, times: Option<Vec<(KernelKind, f64)>>) {
    match times {
        Some(times) => {
            let total: f64 = times.iter().map(|(_, ms)| ms).sum();
            let parts: Vec<String> = times
                .iter()
                .map(|(k, ms)| format!("{k:?} {:.3}", ms))
                .collect();
            println!(
                "  {what} takes {wall:.3} ms, of which the GPU runs {whole:.3} ms (one pass, \
                 best of 5); per kernel (each dispatch in its own pass, ms): {} | total \
                 {total:.3}",
                parts.join(", ")
            );
        }
        None => println!("  {what} takes {wall:.3} ms; this device has no timestamp queries"),
    }
}

/// llama.cpp's seconds to read these prompt ids (through the same script).
fn llama_cpp_prefill(model: &Path, threads: usize, ids: &[u32]) -> Result<f64, String> {
    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
    let json = run_reference(
        model,
        threads,
        &["--tokens", "0", "--repeats", "1", "--ids", &ids.join(",")],
    )?;
    json["prefill_secs"]
        .as_f64()
        .ok_or_else(|| format!("unexpected output: {json}"))
}

/// `samemath bench --llm --backend gpu`: the GPU backend and the CPU engine in the same run
/// (recording off, on, on without the lens), then one profiled step's GPU time per kernel
/// where the device has timestamp queries.
fn bench_llm_gpu(path: &Path, threads: usize, tokens: usize) -> Result<()> {
    let (gpu, tokenizer) = load_gpu(path, llm::gpu::DEFAULT_CONTEXT)?;
    // The decode step's variant, as the app and the server choose it: its first steps timed
    // both ways on this device.
    let choice = settle_step_choice(&gpu, &tokenizer)?;
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
    // The other variant (RMSNorm and SwiGLU folded into the products they feed, 5 dispatches per
    // layer; or dispatches of their own, 8), then back to the chosen one.
    let folded = gpu.folded();
    gpu.set_folded(!folded);
    let other = measure(&gpu, &tokenizer, tokens, RecordOptions::OFF)?;
    gpu.set_folded(folded);
    println!(
        "bench llm gpu: {} vs CPU {threads} threads, prompt {} tokens, decode {tokens} tokens, \
         best of 3",
        gpu.describe(),
        tokenizer.encode(BENCH_PROMPT)?.len()
    );
    println!("  decode step: {choice}");
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
        "  off, {}: GPU prefill {:>8.1} decode {:>7.1} tok/s ({:.2}x the decode speed of the \
         chosen step above)",
        step_name(!folded),
        other.prefill_tps,
        other.decode_tps,
        other.decode_tps / rows[0].1.decode_tps,
    );
    // Where the device has subgroups: the same model reducing in workgroup-memory trees, the
    // kernels' fallback for devices without them (and what every device ran before them).
    if gpu.context().subgroups {
        let ctx = gpu.context().clone().without_subgroups();
        let trees = GpuModel::load(path, ctx, llm::gpu::DEFAULT_CONTEXT)?;
        // The same decode step as the subgroups' lines above.
        trees.set_folded(folded);
        let off = measure(&trees, &tokenizer, tokens, RecordOptions::OFF)?;
        let on = measure(&trees, &tokenizer, tokens, RecordOptions::FULL)?;
        println!(
            "  reductions in workgroup-memory trees instead of subgroups: GPU decode {:>7.1} tok/s \
             off, {:>7.1} on ({:.2}x and {:.2}x the subgroups' speed above), prefill {:>8.1} tok/s",
            off.decode_tps,
            on.decode_tps,
            off.decode_tps / rows[0].1.decode_tps,
            on.decode_tps / rows[1].1.decode_tps,
            off.prefill_tps
        );
    } else {
        println!(
            "  this device has no subgroup operations: the kernels reduce in workgroup-memory trees"
        );
    }
    let mut cache = gpu.new_gpu_cache()?;
    let count = |kinds: Vec<(KernelKind, usize)>| {
        let total: usize = kinds.iter().map(|(_, n)| n).sum();
        let parts: Vec<String> = kinds.iter().map(|(k, n)| format!("{k:?} {n}")).collect();
        (total, parts.join(", "))
    };
    for fold in [folded, !folded] {
        gpu.set_folded(fold);
        for (name, lens) in [("recording off", false), ("with the logit lens", true)] {
            let (total, parts) = count(gpu.dispatches_per_token(&cache, lens));
            println!(
                "  dispatches per token, {name}, {}: {total} ({parts}), in one compute pass",
                step_name(fold)
            );
        }
    }
    gpu.set_folded(folded);
    let batch = llm::gpu::PROMPT_BATCH;
    for (name, head) in [("", false), (", the last with the head", true)] {
        let (total, parts) = count(gpu.dispatches_per_prompt_batch(&cache, batch, head));
        println!(
            "  dispatches per prompt batch of up to {batch} tokens{name}: {total} ({parts}), in one \
             compute pass"
        );
    }
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
        print_kernel_times(&format!("{name}: a step"), wall, whole, gpu.last_profile());
    }
    // The bench's prompt in one pass (recording off), timed the same ways, a fresh cache each.
    let read_prompt = |profile| -> Result<f64> {
        let mut fresh = gpu.new_gpu_cache()?;
        let t0 = std::time::Instant::now();
        gpu.forward_gpu(&mut fresh, &prompt, RecordOptions::OFF, None, profile)?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    let (mut wall, mut whole) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        read_prompt(Profile::WholeStep)?;
        if let Some(t) = gpu.last_profile() {
            whole = whole.min(t.iter().map(|(_, ms)| ms).sum());
        }
        wall = wall.min(read_prompt(Profile::Off)?);
    }
    read_prompt(Profile::PerKernel)?;
    print_kernel_times(
        &format!(
            "the {}-token prompt in one pass ({:.0} tok/s)",
            prompt.len(),
            prompt.len() as f64 / wall * 1e3
        ),
        wall,
        whole,
        gpu.last_profile(),
    );
    // Correctness on this very device, with the parity test's code.
    let (candle, _) = Model::load_with(path, Q4Kernel::Candle)?;
    let tokenizer = Arc::new(tokenizer);
    let report = with_threads(Some(threads), || {
        llm::gpu::parity::compare(
            &cpu,
            &candle,
            &gpu,
            &tokenizer,
            &llm::gpu::parity::PROMPTS,
            16,
        )
    })??;
    println!("  parity with the CPU backend: {report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> std::process::Command {
        let mut c = std::process::Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn a_reference_run_past_its_limit_is_stopped() {
        let e = run_bounded(sh("exec sleep 600"), Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("ran past"), "{e}");
    }

    #[test]
    fn a_reference_run_keeps_at_most_a_mebibyte_of_output() {
        let (out, err) = run_bounded(
            sh("head -c 3000000 /dev/zero; echo oops >&2"),
            Duration::from_secs(600),
        )
        .unwrap();
        assert_eq!(out.len() as u64, OUTPUT_CAP);
        assert_eq!(err, b"oops\n");
        let e = run_bounded(
            std::process::Command::new("/nonexistent/python3"),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(e.contains("could not run"), "{e}");
    }
}
