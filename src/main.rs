//! The `samemath` binary: parses the command line and hands over to the app or a tool.

use std::process::ExitCode;

#[cfg(target_arch = "wasm32")]
use clap::Parser;
use samemath::cli::{Cli, Command};
use samemath::tools;

fn main() -> ExitCode {
    #[cfg(not(target_arch = "wasm32"))]
    let cli = Cli::parse_settled();
    // In the browser the page's address holds the arguments (`?scene=llm&steps=8`).
    #[cfg(target_arch = "wasm32")]
    let cli = Cli::try_parse_settled(samemath::web::args()).unwrap_or_else(|e| {
        samemath::web::signal("error", &format!("the page's arguments: {e}"));
        Cli::parse_from(["samemath"])
    });
    let result = match cli.command {
        None => return samemath::app::run(cli.app, None),
        Some(Command::Bench(bench)) if bench.llm => tools::bench_llm(&bench),
        Some(Command::Bench(bench)) if bench.remote => tools::bench_remote(&bench),
        Some(Command::Bench(bench)) => return samemath::app::run(cli.app, Some(bench)),
        Some(Command::Generate {
            model,
            prompt,
            remote,
        }) => match remote.remote {
            Some(_) => tools::generate_remote(&remote, &prompt),
            None => tools::generate(&model, &prompt),
        },
        #[cfg(not(target_arch = "wasm32"))]
        Some(Command::Serve(args)) => args.options().and_then(serve::run),
        Some(Command::Trace {
            model,
            prompt,
            json,
        }) => tools::trace(&model, &prompt, json.as_deref()),
        Some(Command::FetchModel) => tools::fetch_model(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("samemath: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
