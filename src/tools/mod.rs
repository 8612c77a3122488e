//! The command-line tools around the app, at the edge (errors become messages here): `generate`
//! and `trace`, `fetch-model`, and the benches of the engine and of remote inference. They use
//! the engine rooms directly; none opens a window.

mod bench_llm;
#[cfg(not(target_arch = "wasm32"))]
mod bench_remote;
mod generate;

pub use bench_llm::bench_llm;
#[cfg(not(target_arch = "wasm32"))]
pub use bench_remote::bench_remote;
pub use generate::{generate, generate_remote, trace};

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use llm::gpu::{GpuContext, GpuModel};
use llm::{
    Backend, GenerationRequest, LlmTokenizer, Model, RecordOptions, SamplingParams, Session, fetch,
};

use crate::cli::{BackendArg, ModelArgs, PromptArgs};

/// The browser build has no tools that open sockets.
#[cfg(target_arch = "wasm32")]
pub fn bench_remote(_: &crate::cli::BenchArgs) -> Result<()> {
    bail!("bench --remote is not available in the browser build")
}

impl PromptArgs {
    pub(crate) fn text(&self) -> Result<String> {
        match (&self.prompt, &self.file) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(path)) => {
                use std::io::Read;
                // Far past any model's context; a bigger file (or /dev/zero) is not read whole.
                const MAX_PROMPT_FILE: u64 = 16 << 20;
                let mut bytes = Vec::new();
                std::fs::File::open(path)
                    .and_then(|f| f.take(MAX_PROMPT_FILE + 1).read_to_end(&mut bytes))
                    .with_context(|| format!("reading {}", path.display()))?;
                if bytes.len() as u64 > MAX_PROMPT_FILE {
                    bail!(
                        "{} is larger than {} MiB, far past any prompt",
                        path.display(),
                        MAX_PROMPT_FILE >> 20
                    );
                }
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

    /// The request these arguments ask for; sampling values out of their range are refused
    /// (the engine would quietly make them safe, and the user would not know).
    pub(crate) fn request(
        &self,
        default_max: usize,
        record: RecordOptions,
    ) -> Result<GenerationRequest> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            bail!("--temperature {t}: a number of at least 0 (0 is greedy)");
        }
        let p = self.top_p;
        if !(p > 0.0 && p <= 1.0) {
            bail!("--top-p {p}: a number above 0 and at most 1");
        }
        let r = self.repeat_penalty;
        let (least, most) = (
            llm::sampling::REPEAT_PENALTY_MIN,
            llm::sampling::REPEAT_PENALTY_MAX,
        );
        if !(least..=most).contains(&r) {
            bail!("--repeat-penalty {r}: a number from {least} to {most} (1 is none)");
        }
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

pub(crate) fn progress(message: &str) {
    eprintln!("samemath: {message}");
}

pub(crate) fn load(args: &ModelArgs) -> Result<(Arc<dyn Backend>, Arc<LlmTokenizer>)> {
    let path = fetch::ensure_model(args.model.as_deref(), &mut progress)?;
    if args.backend == BackendArg::Gpu {
        match load_gpu(&path, llm::gpu::DEFAULT_CONTEXT) {
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

/// The GPU backend on a device of its own, its caches `context` positions long, and the
/// file's tokenizer.
pub(crate) fn load_gpu(path: &Path, context: usize) -> Result<(GpuModel, LlmTokenizer)> {
    Ok(GpuModel::load_with_tokenizer(
        path,
        GpuContext::new()?,
        context,
    )?)
}

/// Run `f` on a pool of `threads` threads (candle's CPU kernels use the current rayon pool).
/// More threads than this is a typo, not a machine.
const MAX_THREADS: usize = 1024;

pub(crate) fn with_threads<T: Send>(
    threads: Option<usize>,
    f: impl FnOnce() -> T + Send,
) -> Result<T> {
    match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) if n > MAX_THREADS => {
            bail!("--threads {n}: at most {MAX_THREADS} (each is an operating-system thread)")
        }
        Some(n) => Ok(rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()?
            .install(f)),
        None => Ok(f()),
    }
}

pub(crate) fn show_tokens(session: &Session) {
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
