//! `samemath generate` (the answer streamed, from the local engine or `--remote`) and `samemath
//! trace` (every internal of each step as JSON).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use llm::{RecordOptions, Session, TraceStep};

use super::{load, show_tokens, with_threads};
use crate::cli::{ModelArgs, PromptArgs, RemoteArgs};

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
pub fn generate_remote(_: &RemoteArgs, _: &PromptArgs) -> Result<()> {
    anyhow::bail!("--remote is not available in the browser build")
}

/// `samemath generate --remote URL`: the same streaming, from a server.
#[cfg(not(target_arch = "wasm32"))]
pub fn generate_remote(remote: &RemoteArgs, prompt: &PromptArgs) -> Result<()> {
    use remote::{RemoteClient, RemoteConfig, RemoteEvent};
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
        let cancel = llm::CancelToken::default();
        let mut stdout = std::io::stdout().lock();
        let mut on_event = |e: RemoteEvent| match e {
            RemoteEvent::Status(s) => eprintln!("samemath: {s}"),
            RemoteEvent::Prompt { tokens, .. } => {
                eprintln!(
                    "samemath: the server reads the prompt as {} tokens",
                    tokens.len()
                )
            }
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

/// Tokens one `trace` may generate: each step's trace grows with its position (attention over
/// every earlier token), as `/api/trace`'s do.
const MAX_TRACE_TOKENS: usize = 1024;

pub fn trace(model: &ModelArgs, prompt: &PromptArgs, json: Option<&Path>) -> Result<()> {
    let request = prompt.request(8, RecordOptions::FULL)?;
    if request.max_tokens > MAX_TRACE_TOKENS {
        bail!(
            "--max-tokens {}: trace records at most {MAX_TRACE_TOKENS} tokens (each step's \
             trace grows with its position)",
            request.max_tokens
        );
    }
    // A file is written beside its path and renamed when whole, so a run that fails leaves
    // the file that was there; opened before the model runs, so a path that cannot be written
    // fails at once.
    let partial = json.map(|p| {
        let mut name = p.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        p.with_file_name(name)
    });
    let mut out: Box<dyn Write + Send> = match &partial {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let written = write_trace(model, &request, &mut out);
    drop(out);
    match (json, &partial) {
        (Some(path), Some(tmp)) => match written {
            Ok(count) => {
                std::fs::rename(tmp, path)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("samemath: {count} steps written to {}", path.display());
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(tmp);
                Err(e)
            }
        },
        _ => written.map(drop),
    }
}

/// The trace's steps as one JSON array on `out`, each written as it comes: memory stays one
/// step's. How many steps.
fn write_trace(
    model: &ModelArgs,
    request: &llm::GenerationRequest,
    out: &mut (dyn Write + Send),
) -> Result<usize> {
    let (model_w, tokenizer) = load(model)?;
    with_threads(model.threads, || -> Result<usize> {
        let mut session = Session::new(model_w, tokenizer, request)?;
        out.write_all(b"[")?;
        let mut count = 0;
        while let Some(step) = session.step()? {
            eprint!("{}", step.text);
            if count > 0 {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut *out, &TraceStep::from(step))?;
            count += 1;
        }
        out.write_all(b"]\n")?;
        out.flush()?;
        eprintln!();
        Ok(count)
    })?
}
