//! The command line's types (clap): `samemath` opens the app; subcommands for the tools around
//! it. Only `main`, `app` (which turns these into each room's start resource) and `tools` read them.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "samemath",
    version,
    about = "Game graphics and LLMs run the same GPU math: a live demo.",
    long_about = "samemath opens a window with two scenes: a mesh moved by 4x4 matrices and lit \
                  with dot products, and a small LLM (SmolLM2) whose tokens, embeddings, neurons, attention and \
                  next-token probabilities are drawn as it runs."
)]
pub struct Cli {
    #[command(flatten)]
    pub app: AppArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Args, Default)]
pub struct AppArgs {
    /// Scene to open first.
    #[arg(long, value_enum, default_value_t = SceneArg::Graphics, global = true)]
    pub scene: SceneArg,
    /// Window size in logical pixels, e.g. 1280x720.
    #[arg(long, value_parser = parse_window_size, global = true)]
    pub window: Option<(u32, u32)>,
    /// Render, save a PNG screenshot to PATH (plus PATH.json with the matrices used), then exit.
    #[arg(long, value_name = "PATH")]
    pub screenshot: Option<PathBuf>,
    /// Start from a saved scene-1 state (JSON: model, lighting, camera, mesh, selection).
    #[arg(long, value_name = "FILE", global = true)]
    pub state: Option<PathBuf>,
    /// Also offer this Wavefront OBJ file as a mesh.
    #[arg(long, value_name = "OBJ", global = true)]
    pub mesh: Option<PathBuf>,
    /// Start with the large (projector) UI.
    #[arg(long, global = true)]
    pub large_ui: bool,
    /// Start fullscreen.
    #[arg(long)]
    pub fullscreen: bool,
    /// Start with the side panels hidden (Tab shows them).
    #[arg(long, global = true)]
    pub hide_panels: bool,
    /// Scene 2's model: a llama-architecture GGUF file (default: SmolLM2-135M-Instruct in the
    /// cache, fetched on first use; or $SAMEMATH_MODEL).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Scene 2's prompt at start.
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// Scene 2 generates on this server (Ollama, OpenAI-compatible or samemath serve; e.g. a
    /// Cloud Run URL) instead of the local model. With --steps N: one answer of N tokens.
    #[arg(long = "remote", value_name = "URL")]
    pub remote_url: Option<String>,
    /// The remote server's API: ollama, openai or samemath (default: detect).
    #[arg(long = "api", value_name = "KIND", requires = "remote_url")]
    pub remote_api: Option<remote::ApiKind>,
    /// Feed scene 2's prompt without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Scene 2 without the logit lens (each layer's guess costs a pass through the 49,152-row
    /// head: several times a token's own work, felt on slow GPUs and in the browser).
    #[arg(long)]
    pub no_lens: bool,
    /// Where scene 2's local model computes: cpu, or gpu (WGSL kernels on the renderer's own
    /// wgpu device). The scene's Backend panel switches at any time.
    #[arg(long = "backend", value_enum, default_value_t = BackendArg::Cpu)]
    pub llm_backend: BackendArg,
    /// Run this many forward passes of scene 2's prompt as soon as the model is loaded
    /// (with --screenshot: capture after the last one).
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// What scene 2's middle shows first: the 3D world from overview, embedding, head or
    /// layer:N (0-based), or panels (the 2D views; V switches).
    #[arg(long, value_name = "VIEW", global = true, value_parser = crate::llm_scene::view::parse_view)]
    pub view: Option<crate::llm_scene::view::StartView>,
    /// Talk mode: the talk's steps (captions and the app's state), one click at a time; the
    /// shipped talk, or this RON step file. PageDown/PageUp, Right/Left, Space move; B blanks.
    #[arg(long, value_name = "FILE", num_args = 0..=1, global = true)]
    pub talk: Option<Option<PathBuf>>,
    /// With --talk: start at step N (1-based).
    #[arg(long, value_name = "N", requires = "talk", global = true, value_parser = parse_step)]
    pub talk_step: Option<usize>,
    /// Unattended booth loop: cycle the scenes and a list of prompts until closed.
    #[arg(long)]
    pub demo: bool,
    /// With --demo: seconds on each scene (the answer itself takes as long as it takes).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 12.0,
        requires = "demo",
        value_parser = parse_pace
    )]
    pub demo_pace: f32,
    /// With --demo: exit after this many rounds (prints resident memory after each); with
    /// --demo --talk, a round is the talk played through.
    #[arg(long, value_name = "N", requires = "demo")]
    pub demo_cycles: Option<usize>,
    /// With --demo: the longest answer, in tokens (default 64; an answer is also cut after 60 s).
    #[arg(long, value_name = "N", requires = "demo")]
    pub demo_tokens: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum SceneArg {
    #[default]
    Graphics,
    Llm,
    Bridge,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure frame times of a scene and print mean and p95.
    Bench(BenchArgs),
    /// Stream the model's answer to a prompt (CPU, or a remote server with --remote).
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        prompt: PromptArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Serve the model over HTTP (Ollama- and OpenAI-compatible, plus /api/trace), for Cloud Run.
    #[cfg(not(target_arch = "wasm32"))]
    Serve(serve::ServeArgs),
    /// Generate and write every internal of each step as JSON (schema in README).
    Trace {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        prompt: PromptArgs,
        /// Write the steps here instead of stdout.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
    },
    /// Download SmolLM2-135M-Instruct (Q4_1 GGUF) into the cache and verify its sha256.
    FetchModel,
}

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

#[derive(Debug, Clone, Args, Default)]
pub struct RemoteArgs {
    /// Generate on this server instead (an Ollama, OpenAI-compatible or samemath serve URL,
    /// e.g. a Cloud Run service).
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// The server's API: ollama, openai or samemath (default: detect).
    #[arg(long, value_name = "KIND", requires = "remote")]
    pub api: Option<remote::ApiKind>,
    /// The server's model name (default: the first it lists).
    #[arg(long, value_name = "NAME", requires = "remote")]
    pub remote_model: Option<String>,
    /// Bearer token (default, only for https *.run.app, loopback and $SAMEMATH_TOKEN_HOSTS:
    /// $SAMEMATH_REMOTE_TOKEN, else $SAMEMATH_TOKEN_COMMAND's output, else `gcloud auth
    /// print-identity-token`).
    #[arg(long, value_name = "TOKEN", requires = "remote")]
    pub token: Option<String>,
    /// Seconds to wait for the first byte (a cold start on Cloud Run can take minutes).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 120,
        requires = "remote"
    )]
    pub first_byte_timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Frames to measure (after a warm-up of 30).
    #[arg(long, default_value_t = 300)]
    pub frames: u32,
    /// Benchmark the LLM engine (prefill and decode, recording off and on, against llama.cpp)
    /// instead of a scene.
    #[arg(long)]
    pub llm: bool,
    /// With --llm: tokens to decode per run (default 64); with --remote: per client (default 32).
    #[arg(long, value_name = "N")]
    pub tokens: Option<usize>,
    /// With --llm: time the prefill of a prompt this many tokens long (ours, then llama.cpp's
    /// on the same ids, then with --backend gpu the GPU backend's) instead of the decode runs.
    #[arg(long, value_name = "N", requires = "llm", conflicts_with = "tokens")]
    pub prompt_tokens: Option<usize>,
    /// Benchmark remote inference: our client's time-to-first-token overhead against a raw
    /// HTTP request, and `samemath serve`'s throughput with 8 clients against llama.cpp's server.
    #[arg(long, conflicts_with = "llm")]
    pub remote: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

impl BenchArgs {
    /// Tokens to decode per run (`--tokens`, else `default`), at least one.
    pub fn tokens_or(&self, default: usize) -> usize {
        self.tokens.unwrap_or(default).max(1)
    }
}

impl Cli {
    /// Parse the command line as clap does, then settle what `bench` reads from either side of
    /// the subcommand: `--model` and `--backend` before `bench` (the app's) and after it (the
    /// bench's) become one setting, given to the app for a scene bench and to `--llm` and
    /// `--remote`; a flag the chosen bench does not use is refused, not quietly dropped.
    pub fn try_parse_settled<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = Self::command();
        let matches = command.try_get_matches_from_mut(args)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        cli.settle_bench(&command, &matches)
            .map_err(|message| command.error(ErrorKind::ArgumentConflict, message))?;
        Ok(cli)
    }

    /// `try_parse_settled` on the process's arguments; a bad command line exits as clap's do.
    pub fn parse_settled() -> Self {
        Self::try_parse_settled(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    fn settle_bench(
        &mut self,
        command: &clap::Command,
        matches: &ArgMatches,
    ) -> Result<(), String> {
        let (Some(Command::Bench(bench)), Some(sub)) =
            (&mut self.command, matches.subcommand_matches("bench"))
        else {
            return Ok(());
        };
        let given = |m: &ArgMatches, id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
        // --model: the app's before `bench`, the bench's after it.
        match (given(matches, "model"), given(sub, "model")) {
            (true, true) if self.app.model != bench.model.model => {
                return Err(
                    "--model is given before and after `bench`, differently: give it once".into(),
                );
            }
            (true, _) => bench.model.model.clone_from(&self.app.model),
            (_, true) => self.app.model.clone_from(&bench.model.model),
            _ => {}
        }
        match (given(matches, "llm_backend"), given(sub, "backend")) {
            (true, true) if self.app.llm_backend != bench.model.backend => {
                return Err(
                    "--backend is given before and after `bench`, differently: give it once".into(),
                );
            }
            (true, _) => bench.model.backend = self.app.llm_backend,
            (_, true) => self.app.llm_backend = bench.model.backend,
            _ => {}
        }
        let mode = if bench.llm {
            "bench --llm"
        } else if bench.remote {
            "bench --remote"
        } else {
            // A scene bench runs the app: every app flag applies; the engine benches' do not.
            for id in ["threads", "tokens"] {
                if given(sub, id) {
                    return Err(format!(
                        "--{id} is for `bench --llm` and `bench --remote`; a scene bench does \
                         not use it"
                    ));
                }
            }
            return Ok(());
        };
        if given(sub, "frames") {
            return Err(format!(
                "--frames counts a scene bench's frames; `{mode}` draws none"
            ));
        }
        // The app's own flags (scene, window, prompt, ...): `--llm` and `--remote` open no app.
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "model" | "llm_backend") || !given(matches, id) {
                continue;
            }
            let long = arg.get_long().unwrap_or(id);
            return Err(format!(
                "--{long} is a setting of the app; `{mode}` opens no app and does not use it"
            ));
        }
        Ok(())
    }
}

/// `--talk-step N`: steps count from 1.
pub fn parse_step(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("steps count from 1: the first is 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("expected a step number (1, 2, ...), got {text:?}")),
    }
}

/// `--demo-pace SECONDS`: a finite number from 0 to an hour.
pub fn parse_pace(text: &str) -> Result<f32, String> {
    text.trim()
        .parse::<f32>()
        .ok()
        .filter(|v| (0.0..=3600.0).contains(v))
        .ok_or_else(|| format!("expected seconds from 0 to 3600, got {text:?}"))
}

pub fn parse_window_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, e.g. 1280x720, got {text:?}"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|v| (1..=16384).contains(v))
            .ok_or_else(|| format!("{s:?} is not a size between 1 and 16384"))
    };
    Ok((parse(w)?, parse(h)?))
}
