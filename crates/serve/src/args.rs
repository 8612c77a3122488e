//! The server's command line (`samemath serve ...` and the `samemath-serve` binary share it) and
//! what it becomes: `ServeOptions`, with `$PORT` and `$SAMEMATH_API_KEY` read here.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

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
    /// Port (default: $PORT, as Cloud Run sets it, else 8080). Listens on 0.0.0.0.
    #[arg(long)]
    pub port: Option<u16>,
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
    /// Allow browsers from this origin (`*` for any): the browser build talks to the server.
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
}

impl ServeArgs {
    /// The options these arguments and the environment ask for.
    pub fn options(&self) -> anyhow::Result<ServeOptions> {
        let port = match self.port {
            Some(p) => p,
            None => match std::env::var("PORT") {
                Ok(p) => p
                    .parse()
                    .with_context(|| format!("$PORT is {p:?}, not a port number"))?,
                Err(_) => 8080,
            },
        };
        Ok(ServeOptions {
            port,
            model: self.model.clone(),
            concurrency: self.concurrency.max(1),
            queue: self.queue,
            cors: self.cors.clone(),
            api_key: self
                .api_key
                .clone()
                .or_else(|| std::env::var("SAMEMATH_API_KEY").ok())
                .filter(|k| !k.is_empty()),
            max_body_bytes: 1 << 20,
            threads: self.threads,
            gpu: self.backend == Compute::Gpu,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub port: u16,
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
    pub threads: Option<usize>,
    /// Generate with the GPU backend (its own wgpu device) when one is usable.
    pub gpu: bool,
}
