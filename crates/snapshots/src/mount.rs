//! Mounts: what the snapshotter returns for a snapshot, and mounting them (for tests and
//! tools; containerd mounts them itself).
//!
//! Deep overlay chains produce option strings longer than the kernel's one-page limit for
//! mount data. [`Mount::mount`] then runs mount(8) from the directory the layers share and
//! names the layers relative to it, as containerd and Docker do.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::{Error, Result};

/// The kernel takes at most one page of mount data; stay clear of it.
const MAX_OPTIONS: usize = 4096 - 512;

/// One mount, in containerd's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// The filesystem type: `bind` or `overlay`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The source: a directory for `bind`, `overlay` for overlays.
    pub source: String,
    /// Mount options (`ro`, `rbind`, `lowerdir=…`, …).
    pub options: Vec<String>,
}

impl Mount {
    /// A bind mount of `dir`, read-only when `readonly`.
    pub(crate) fn bind(dir: &Path, readonly: bool) -> Mount {
        let mode = if readonly { "ro" } else { "rw" };
        Mount {
            kind: "bind".into(),
            source: dir.display().to_string(),
            options: vec![mode.into(), "rbind".into()],
        }
    }

    /// Mounts this on `target` with mount(8). Needs root (CAP_SYS_ADMIN).
    pub fn mount(&self, target: &Path) -> Result<()> {
        let mut options = self.options.join(",");
        let mut command = Command::new("mount");
        if self.kind == "overlay" && options.len() > MAX_OPTIONS {
            let (dir, compact) = compact_lowerdirs(&self.options).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "overlay options of {} bytes exceed the kernel's limit and the layers share \
                     no directory to shorten them from",
                    options.len()
                ))
            })?;
            command.current_dir(dir);
            options = compact;
        }
        let bind = self.kind == "bind";
        if bind {
            command.arg("--bind");
        } else {
            command.args(["-t", &self.kind]);
        }
        command.arg("-o").arg(&options).arg(&self.source).arg(target);
        run(command, target)?;
        if bind && self.options.iter().any(|o| o == "ro") {
            // A bind mount ignores "ro" until it is remounted.
            let mut remount = Command::new("mount");
            remount.args(["-o", "remount,bind,ro"]).arg(target);
            run(remount, target)?;
        }
        Ok(())
    }
}

/// Unmounts `target` (lazily, so a busy mount never wedges a test).
pub fn unmount(target: &Path) -> Result<()> {
    let mut command = Command::new("umount");
    command.arg("-l").arg(target);
    run(command, target)
}

fn run(mut command: Command, target: &Path) -> Result<()> {
    let output = command.output().map_err(Error::io(target))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Io {
        path: target.to_path_buf(),
        cause: std::io::Error::other(format!(
            "{:?} failed: {}",
            command.get_program(),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    })
}

/// Rewrites `lowerdir=`, `upperdir=` and `workdir=` relative to the directory every layer
/// shares, and returns that directory with the shortened options.
fn compact_lowerdirs(options: &[String]) -> Option<(String, String)> {
    let lower = options.iter().find_map(|o| o.strip_prefix("lowerdir="))?;
    let dirs: Vec<&str> = lower.split(':').collect();
    // Layers are `<root>/snapshots/<id>/fs`: strip the shared `<root>/snapshots/`.
    let first = Path::new(dirs.first()?);
    let common = first.parent()?.parent()?;
    let base = format!("{}/", common.display());
    if !dirs.iter().all(|d| d.starts_with(&base)) {
        return None;
    }
    let relative = |o: &str| -> String {
        for key in ["lowerdir=", "upperdir=", "workdir="] {
            if let Some(value) = o.strip_prefix(key) {
                let parts: Vec<&str> =
                    value.split(':').map(|p| p.strip_prefix(&base).unwrap_or(p)).collect();
                return format!("{key}{}", parts.join(":"));
            }
        }
        o.to_string()
    };
    let compact: Vec<String> = options.iter().map(|o| relative(o)).collect();
    Some((common.display().to_string(), compact.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_strips_the_shared_directory() {
        let options = vec![
            "workdir=/r/snapshots/3/work".to_string(),
            "upperdir=/r/snapshots/3/fs".to_string(),
            "lowerdir=/r/snapshots/2/fs:/r/snapshots/1/fs".to_string(),
        ];
        let (dir, compact) = compact_lowerdirs(&options).unwrap();
        assert_eq!(dir, "/r/snapshots");
        assert_eq!(compact, "workdir=3/work,upperdir=3/fs,lowerdir=2/fs:1/fs");
    }
}
