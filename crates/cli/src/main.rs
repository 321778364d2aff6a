//! The `strata` command: parses arguments, sets up logging, runs one subcommand, and maps
//! errors to messages and exit codes. Everything else lives in the library crates.

mod args;
mod cmd;
mod config;
mod exit;
mod logging;
mod metrics;
mod notify;
mod open;
mod runtime;
mod show;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    logging::init(&cli.global, cli.command.default_log_level());
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if exit::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("strata: error: {}", exit::message(&err));
            exit::code_for(&err)
        }
    }
}
