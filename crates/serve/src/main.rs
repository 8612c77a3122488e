//! `samemath-serve`: the server alone, without the app (no Bevy, winit or egui linked): what the
//! Cloud Run image runs. The same options as `samemath serve`.

use std::process::ExitCode;

use clap::Parser;
use serve::log::{self, Entry, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "samemath-serve",
    version,
    about = "SmolLM2 over HTTP (Ollama- and OpenAI-compatible, plus /api/trace), for Cloud Run."
)]
struct Cli {
    #[command(flatten)]
    serve: serve::ServeArgs,
    /// Fetch the default model into the cache (sha256-checked), print its path and exit: what
    /// the image's build stage runs to bake the model in.
    #[arg(long)]
    fetch_model: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    log::init(LogFormat::or_default(cli.serve.log_format));
    let result = if cli.fetch_model {
        llm::fetch::fetch_model(&mut |m| Entry::info(m).emit())
            .map(|path| println!("{}", path.display()))
            .map_err(anyhow::Error::from)
    } else {
        cli.serve.options().and_then(serve::run)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            Entry::error(format!("error: {e:#}")).emit();
            ExitCode::FAILURE
        }
    }
}
