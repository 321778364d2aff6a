//! `strata completions SHELL`: prints a completion script for a shell, generated from the
//! command line's own definition (clap_complete), so it never lags behind a new flag.

use std::io::Write;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::args::Cli;

/// Print a shell completion script to standard output
///
/// Install it where the shell looks for completions, for example:
///
///   strata completions bash > /usr/share/bash-completion/completions/strata
///   strata completions zsh  > /usr/local/share/zsh/site-functions/_strata
///   strata completions fish > ~/.config/fish/completions/strata.fish
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

pub(crate) fn run(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "strata", &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&script)?;
    stdout.flush()?;
    Ok(())
}
