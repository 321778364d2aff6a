//! What the benchmark binaries do the same way around their measurements: say on stderr
//! what is being measured, print the report on stdout, and turn the outcome into an exit
//! code (a closed pipe counts as success).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

/// Runs `run` and maps its outcome to an exit code, printing an error as
/// `program: error: cause: ...` on stderr. A broken pipe on stdout is a success: the reader
/// has seen what it wanted.
pub fn exit(program: &str, run: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{program}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one measurement, saying on stderr what is being measured; its error names it.
pub fn step<T>(
    program: &str,
    what: &str,
    measure: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    eprintln!("{program}: {what}");
    measure().with_context(|| what.to_string())
}

/// Writes the finished report to stdout.
pub fn print_report(report: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(report.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>()
        .is_some_and(|err| err.kind() == std::io::ErrorKind::BrokenPipe)
}
