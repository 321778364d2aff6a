//! `strata man DIR`: writes manual pages generated from the command line's own definition
//! (clap_mangen): `strata.1`, and one page per subcommand at every level (`strata-kv.1`,
//! `strata-tlog-serve.1`, ...).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory};

use crate::args::Cli;

/// Write strata's manual pages (section 1) into a directory
///
/// Writes strata.1 and one page per subcommand, named after its path (strata-kv.1,
/// strata-tlog-serve.1, ...), replacing pages already there, and prints each file it wrote.
/// For example:
///
///   strata man /usr/local/share/man/man1 && mandb
///   man strata-serve
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct ManArgs {
    /// The directory to write the pages into (created when missing).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

pub(crate) fn run(args: ManArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("create directory {}", args.dir.display()))?;
    let mut command = Cli::command().disable_help_subcommand(true);
    // Building gives every subcommand its display name (`strata-tlog-serve`): the page name.
    command.build();
    let mut written = Vec::new();
    write_pages(command, &args.dir, &mut written)?;
    let mut stdout = std::io::stdout().lock();
    for path in written {
        writeln!(stdout, "{}", path.display())?;
    }
    Ok(())
}

/// Writes the page of `command`, then those of its visible subcommands.
fn write_pages(
    command: clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let subcommands: Vec<clap::Command> =
        command.get_subcommands().filter(|sub| !sub.is_hide_set()).cloned().collect();
    let page = clap_mangen::Man::new(command);
    let path = dir.join(page.get_filename());
    let mut roff = Vec::new();
    page.render(&mut roff).with_context(|| format!("render {}", path.display()))?;
    std::fs::write(&path, roff).with_context(|| format!("write {}", path.display()))?;
    written.push(path);
    for sub in subcommands {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
