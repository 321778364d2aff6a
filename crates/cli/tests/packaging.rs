//! `packaging/`: the systemd units pass `systemd-analyze verify`, declare what strata's
//! readiness and shutdown need, and every strata command line in them and in the Dockerfile
//! is one this binary accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};
use strata_testkit::ensure_program;

const UNITS: [&str; 2] = ["strata.service", "strata-snapshotter.service"];

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging")
}

/// The `[section]` `key=value` settings of a unit file, in order (comments dropped).
fn settings(unit: &str) -> anyhow::Result<Vec<(String, String, String)>> {
    let path = packaging().join("systemd").join(unit);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else {
            let (key, value) = line.split_once('=').with_context(|| format!("{unit}: {line}"))?;
            out.push((section.clone(), key.to_string(), value.to_string()));
        }
    }
    Ok(out)
}

fn setting(unit: &str, section: &str, key: &str) -> anyhow::Result<String> {
    let found = settings(unit)?.into_iter().find(|(s, k, _)| s == section && k == key);
    Ok(found.with_context(|| format!("{unit}: no {key}= in [{section}]"))?.2)
}

/// systemd's own checker, on copies whose ExecStart names this build's binary instead of
/// /usr/bin/strata (which it requires to exist); every warning fails the test.
#[test]
fn systemd_units_verify() -> anyhow::Result<()> {
    ensure_program("systemd-analyze", "systemd")?;
    let dir = tempfile::tempdir()?;
    for unit in UNITS {
        let text = std::fs::read_to_string(packaging().join("systemd").join(unit))?;
        ensure!(text.contains("ExecStart=/usr/bin/strata "), "{unit}: ExecStart");
        let text = text.replace("/usr/bin/strata", env!("CARGO_BIN_EXE_strata"));
        std::fs::write(dir.path().join(unit), text)?;
    }
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(UNITS.map(|unit| dir.path().join(unit)))
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success() && stderr.trim().is_empty(), "{}: {stderr}", output.status);
    Ok(())
}

#[test]
fn systemd_units_wait_for_readiness_and_the_grace_period() -> anyhow::Result<()> {
    for unit in UNITS {
        ensure!(setting(unit, "Service", "Type")? == "notify", "{unit}: Type");
        ensure!(setting(unit, "Service", "ProtectSystem")? == "strict", "{unit}");
        ensure!(setting(unit, "Service", "ReadWritePaths")? == "/var/lib/strata", "{unit}");
        ensure!(setting(unit, "Service", "StateDirectory")? == "strata", "{unit}");
        ensure!(setting(unit, "Unit", "Before")?.contains("containerd.service"), "{unit}");
    }
    // serve's services get 30 s after SIGTERM; systemd must not kill them sooner.
    let stop: u64 = setting("strata.service", "Service", "TimeoutStopSec")?.parse()?;
    ensure!(stop > 30, "TimeoutStopSec={stop}");
    Ok(())
}

/// The command lines the units and the image run parse: the same arguments with `--help`
/// succeed (and start nothing).
#[test]
fn packaged_command_lines_parse() -> anyhow::Result<()> {
    let mut lines: Vec<Vec<String>> = Vec::new();
    for unit in UNITS {
        let exec = setting(unit, "Service", "ExecStart")?;
        lines.push(exec.split_whitespace().skip(1).map(str::to_string).collect());
    }
    let dockerfile = std::fs::read_to_string(packaging().join("Dockerfile"))?;
    // CMD ["serve", "--data-dir", ...] over continuation lines.
    let cmd = dockerfile.split("\nCMD ").nth(1).context("Dockerfile: no CMD")?;
    let cmd = cmd.split(']').next().unwrap_or_default();
    let args: Vec<String> = serde_json::from_str(&format!("{}]", cmd.replace("\\\n", " ")))?;
    ensure!(args.first().map(String::as_str) == Some("serve"), "{args:?}");
    lines.push(args);
    for args in lines {
        let output =
            Command::new(env!("CARGO_BIN_EXE_strata")).args(&args).arg("--help").output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(output.status.success(), "strata {args:?} --help: {stderr}");
    }
    Ok(())
}
