//! The child side of the tests that need a second process: this test binary runs itself with
//! `--exact child::entry` and a role in the environment.
//!
//! This is not a test on its own: without the role variable `entry` returns at once.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, bail};
use strata_atomic::Payload;

use crate::util::{Act, CHILD_ENV, DONE_MARK, POINT_MARK, RecordingFs, open, open_with, payload};

/// Runs the role the parent chose.
#[test]
fn entry() -> anyhow::Result<()> {
    let Ok(role) = std::env::var(CHILD_ENV) else { return Ok(()) };
    let target = PathBuf::from(var::<String>("STRATA_ATOMIC_TARGET")?);
    match role.as_str() {
        // Writes one version, pausing for the parent's SIGKILL before the n-th change.
        "pause" => {
            let version = &crate::crash::versions()[var::<usize>("STRATA_ATOMIC_VERSION")?];
            let at = var::<usize>("STRATA_ATOMIC_PAUSE_AT")?;
            let fs = RecordingFs::acting(at, Act::Pause);
            open_with(&target, fs.clone())?.write(version)?;
            eprintln!("{DONE_MARK} {}", fs.ops().len());
        }
        // Writes the versions in turn until killed.
        "loop" => {
            let versions = crate::crash::versions();
            let mut writer = open(&target)?;
            eprintln!("{POINT_MARK} ready");
            for version in versions.iter().cycle() {
                writer.write(version)?;
            }
        }
        "umask" => {
            open(&target)?.write(&umask_payload())?;
        }
        // Holds the lock until killed.
        "hold" => {
            let _writer = open(&target)?;
            eprintln!("{POINT_MARK} held");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        other => bail!("unknown child role {other:?}"),
    }
    Ok(())
}

/// The payload the `umask` role writes: modes a umask of 077 would strip.
pub fn umask_payload() -> Payload {
    payload(&[
        ("f777", "x", 0o777),
        ("f666", "x", 0o666),
        ("d/e/f", "x", 0o755),
        ("d/g", "x", 0o644),
    ])
}

/// The environment variable `name`, parsed.
fn var<T: FromStr>(name: &str) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    std::env::var(name)
        .with_context(|| format!("{name} not set"))?
        .parse()
        .context(name.to_string())
}
