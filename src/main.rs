//! The `samemath` binary: parses the command line and hands over to the app or a tool.

use std::process::ExitCode;

use clap::Parser;
use samemath::cli::{Cli, Command};
use samemath::tools;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Some(Command::Serve(args)) => tools::serve(&args),
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
