//! Running the `strata` binary in a temporary data directory.

use std::process::{Command, Output};

/// A data directory and a way to run `strata` on it.
pub struct Strata {
    pub dir: tempfile::TempDir,
}

impl Strata {
    pub fn new() -> anyhow::Result<Strata> {
        Ok(Strata { dir: tempfile::tempdir()? })
    }

    /// A `strata` command with `--data-dir` set and the environment cleared of strata's
    /// variables (and of a service manager's `NOTIFY_SOCKET`).
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command.arg("--data-dir").arg(self.dir.path());
        for variable in ["STRATA_CONFIG", "STRATA_LOG", "STRATA_LOG_FORMAT", "NOTIFY_SOCKET"] {
            command.env_remove(variable);
        }
        command
    }

    /// Runs `strata ARGS` and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(self.command().args(args).output()?)
    }

    /// Runs `strata ARGS`, requires success, and returns standard output.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.run(args)?;
        anyhow::ensure!(
            output.status.success(),
            "strata {args:?} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    }
}
