//! The `samemath` binary: parses the command line and hands over to the app or a tool.

use clap::Parser;
use samemath::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => samemath::app::run(cli.app, None),
        Some(Command::Bench(bench)) => samemath::app::run(cli.app, Some(bench)),
    }
}
