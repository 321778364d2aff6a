//! One module per subcommand; `run` dispatches.

pub(crate) mod ckpt;
pub(crate) mod completions;
pub(crate) mod hub;
pub(crate) mod kv;
pub(crate) mod man;
pub(crate) mod nbd;
pub(crate) mod project;
pub(crate) mod serve;
pub(crate) mod snapshot;
pub(crate) mod snapshotter;
pub(crate) mod tlog;
pub(crate) mod vdisk;
pub(crate) mod volume;

use crate::args::{Cli, Command};
use crate::config::Config;

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    // Generators describe the command line itself: no configuration, no data directory.
    match cli.command {
        Command::Completions(args) => return completions::run(args),
        Command::Man(args) => return man::run(args),
        _ => {}
    }
    let config = Config::load(&cli.global)?;
    let data_dir = config.data_dir(&cli.global)?;
    match cli.command {
        Command::Serve(args) => serve::run(args, &config, &data_dir),
        Command::Kv(args) => kv::run(args, &config, &data_dir),
        Command::Snapshot(args) => snapshot::run(args, &config, &data_dir),
        Command::Project(args) => project::run(args),
        Command::Snapshotter(args) => snapshotter::run(args, &config, &data_dir),
        Command::Tlog(args) => tlog::run(args, &config, &data_dir),
        Command::Ckpt(args) => ckpt::run(args, &config, &data_dir),
        Command::Hub(args) => hub::run(args, &config, &data_dir),
        Command::Volumeset(args) => volume::run_volumeset(args, &config, &data_dir),
        Command::Volume(args) => volume::run_volume(args, &config, &data_dir),
        Command::Log(args) => volume::run_log(args, &config, &data_dir),
        Command::Push(args) => volume::run_push(args, &config, &data_dir),
        Command::Pull(args) => volume::run_pull(args, &config, &data_dir),
        Command::Sync(args) => volume::run_sync(args, &config, &data_dir),
        Command::Vdisk(args) => vdisk::run(args, &config, &data_dir),
        Command::Nbd(args) => nbd::run(args, &config, &data_dir),
        // Run above, before the configuration is read.
        Command::Completions(_) | Command::Man(_) => Ok(()),
    }
}
