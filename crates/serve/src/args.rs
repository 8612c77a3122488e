//! The server's command line (`samemath serve ...` and the `samemath-serve` binary share it) and
//! what it becomes: `ServeOptions`, with `$PORT`, `$SAMEMATH_API_KEY`, `$SAMEMATH_CORS` and
//! `$K_SERVICE` (Cloud Run: JSON logs) read here, and the server's limits.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::log::LogFormat;

/// Where the forward pass runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Compute {
    #[default]
    Cpu,
    /// The WGSL kernels through wgpu (e.g. Vulkan on a Cloud Run GPU).
    Gpu,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Port (default: $PORT, as Cloud Run sets it, else 8080).
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to listen on (default: 0.0.0.0 when $PORT is set, as on Cloud Run; else
    /// 127.0.0.1, this machine only). On loopback, requests must name a loopback Host.
    #[arg(long, value_name = "ADDR")]
    pub host: Option<IpAddr>,
    /// Longest prompt, in tokens, a request may send (the context is 8192).
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub max_prompt_tokens: usize,
    /// A llama-architecture GGUF file (default: SmolLM2-135M-Instruct in the cache, fetched on
    /// first use; or $SAMEMATH_MODEL).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Requests generating at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Requests allowed to wait for a slot; beyond that, 503.
    #[arg(long, default_value_t = 8)]
    pub queue: usize,
    /// Allow browsers from this origin (`*` for any): the browser build talks to the server;
    /// default $SAMEMATH_CORS (how a container image, whose command is fixed, is told).
    #[arg(long, value_name = "ORIGIN")]
    pub cors: Option<String>,
    /// Require this key (`Authorization: Bearer KEY` or `x-api-key`); default $SAMEMATH_API_KEY.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// CPU threads per request for the matrix products.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where the forward pass runs: cpu, or gpu (the WGSL kernels through wgpu, e.g. Vulkan on
    /// a Cloud Run GPU; falls back to the CPU, saying why, when no usable GPU is found).
    #[arg(long, value_enum, default_value_t = Compute::Cpu)]
    pub backend: Compute,
    /// With `--backend gpu`: no usable GPU is a failed load (/health 500, the log says why)
    /// instead of the CPU fallback, so a GPU service without its GPU fails (its /health startup
    /// probe, or every request) rather than paying for a GPU it does not use; default
    /// $SAMEMATH_REQUIRE_GPU = 1.
    #[arg(long)]
    pub require_gpu: bool,
    /// Longest time one answer may take, in seconds, counted from when it has a slot (under
    /// the 900 s request timeout of deploy/service.yaml, so the client still gets the error
    /// line there): past it the answer ends with an error and frees its slot, so a client that
    /// reads a line just often enough cannot hold a slot for hours.
    #[arg(long, value_name = "SECONDS", default_value_t = 840)]
    pub max_answer_secs: u64,
    /// How the log on stderr is written: text (for a person), or json (one object a line with
    /// `severity`, `message` and fields, as Cloud Logging reads them: a line per finished
    /// request, with its trace). Default: json on Cloud Run ($K_SERVICE set), text elsewhere.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

impl ServeArgs {
    /// The options these arguments and the environment ask for.
    pub fn options(&self) -> anyhow::Result<ServeOptions> {
        let env_port = std::env::var("PORT").ok().filter(|p| !p.is_empty());
        let port = match (self.port, &env_port) {
            (Some(p), _) => p,
            (None, Some(p)) => p
                .parse()
                .with_context(|| format!("$PORT is {p:?}, not a port number"))?,
            (None, None) => 8080,
        };
        let host = self.host.unwrap_or(if env_port.is_some() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        });
        Ok(ServeOptions {
            port,
            host,
            model: self.model.clone(),
            concurrency: self.concurrency.max(1),
            queue: self.queue,
            cors: self
                .cors
                .clone()
                .or_else(|| std::env::var("SAMEMATH_CORS").ok())
                .filter(|o| !o.is_empty()),
            api_key: self
                .api_key
                .clone()
                .or_else(|| std::env::var("SAMEMATH_API_KEY").ok())
                .filter(|k| !k.is_empty()),
            max_body_bytes: 1 << 20,
            max_prompt_tokens: self.max_prompt_tokens.max(1),
            threads: self.threads,
            gpu: self.backend == Compute::Gpu,
            require_gpu: self.require_gpu
                || std::env::var("SAMEMATH_REQUIRE_GPU").is_ok_and(|v| v == "1"),
            answer_time: std::time::Duration::from_secs(self.max_answer_secs.max(1)),
            log_format: LogFormat::or_default(self.log_format),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub port: u16,
    /// Where to listen: 0.0.0.0 on Cloud Run ($PORT), loopback otherwise unless asked.
    pub host: IpAddr,
    pub model: Option<PathBuf>,
    /// Requests generating at once.
    pub concurrency: usize,
    /// Requests waiting beyond those; more get 503.
    pub queue: usize,
    /// `Access-Control-Allow-Origin` for browsers (`*` or an origin); none by default.
    pub cors: Option<String>,
    /// Required as `Authorization: Bearer KEY` (or `x-api-key`) on every route but /health.
    pub api_key: Option<String>,
    pub max_body_bytes: usize,
    /// Longest time one answer may take (its generation stops there, with an error).
    pub answer_time: std::time::Duration,
    /// Longest prompt in tokens (longer: 400 before any work).
    pub max_prompt_tokens: usize,
    pub threads: Option<usize>,
    /// Generate with the GPU backend (its own wgpu device) when one is usable.
    pub gpu: bool,
    /// No usable GPU is a failed load, not the CPU fallback.
    pub require_gpu: bool,
    /// How the log is written (`--log-format`, or JSON on Cloud Run).
    pub log_format: LogFormat,
}

/// What one request may ask for, beyond the body size and the prompt length in the options.
pub(crate) mod limits {
    use std::time::Duration;

    /// Inputs in one embedding request.
    pub(crate) const EMBED_INPUTS: usize = 256;
    /// Tokens over all inputs of one embedding request.
    pub(crate) const EMBED_TOKENS: usize = 65_536;
    /// Tokens one request may generate (an /api/trace request: 1024).
    pub(crate) const MAX_TOKENS: usize = 4096;
    /// Alternatives a token's log-probabilities may list (OpenAI's `top_logprobs` bound).
    pub(crate) const TOP_LOGPROBS: usize = 20;
    /// How long a client may take to send a request's headers (a connection serves one
    /// request, so none is kept idle).
    pub(crate) const HEADER_READ: Duration = Duration::from_secs(10);
    /// How long a client may take to send a whole body.
    pub(crate) const BODY_READ: Duration = Duration::from_secs(30);
    /// Bytes of request bodies the server holds at once, over all connections (each body is
    /// also bounded on its own); a body that would pass it gets a 503.
    pub(crate) const BODY_BUDGET: usize = 64 << 20;
    /// Connections open at once; more wait in the kernel's backlog.
    pub(crate) const CONNECTIONS: usize = 1024;
    /// How long a line may wait for a client that does not read before the answer is dropped.
    pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long a write to a client may make no progress (a client that stopped reading: its
    /// TCP window is shut) before the connection is closed.
    pub(crate) const WRITE_STALL: Duration = Duration::from_secs(30);
    /// Prompt tokens read per forward pass: long prompts in slices, which bounds the attention
    /// scores held at once and lets a request that was left or cut stop between slices.
    pub(crate) const PREFILL_SLICE: usize = 64;
}
