//! `strata.toml`: loading, defaults and validation. Every key is documented in
//! docs/configuration.md; unknown keys are errors, so a typo never passes silently.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use strata_kv::KvConfig;

use crate::args::Global;

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// Where strata keeps its data; `--data-dir` and `STRATA_DATA_DIR` win.
    pub(crate) data_dir: Option<PathBuf>,
    /// The KV layer (`[kv]`).
    pub(crate) kv: KvConfig,
    /// The checkpoint service (`[ckpt]`).
    pub(crate) ckpt: strata_ckpt::CkptConfig,
    /// The tlog server and where the log is kept (`[tlog]`, `[tlog.redis]`).
    pub(crate) tlog: strata_tlog::config::TlogConfig,
    /// The hub server and the local volume store (`[hub]`).
    pub(crate) hub: strata_hub::HubConfig,
    /// The NBD server and vdisks (`[nbd]`).
    pub(crate) nbd: strata_nbd::NbdConfig,
    /// Where `strata serve` exports metrics (`[metrics]`).
    pub(crate) metrics: strata_metrics::MetricsConfig,
}

/// A configuration file that cannot be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// No data directory can be derived.
    #[error("no data directory: pass --data-dir or set STRATA_DATA_DIR")]
    NoDataDir,
}

impl Config {
    /// Reads the file `--config` names, or the defaults when none is named.
    pub(crate) fn load(global: &Global) -> Result<Config, ConfigError> {
        let Some(path) = &global.config else { return Ok(Config::default()) };
        let text = std::fs::read_to_string(path)
            .map_err(|cause| ConfigError::Read { path: path.clone(), cause })?;
        Config::parse(&text, path)
    }

    pub(crate) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_path_buf(),
            message: err.to_string(),
        })
    }

    /// The data directory: the flag, else the file, else the default for this user.
    pub(crate) fn data_dir(&self, global: &Global) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = global.data_dir.clone().or_else(|| self.data_dir.clone()) {
            return Ok(dir);
        }
        default_data_dir().ok_or(ConfigError::NoDataDir)
    }
}

/// `/var/lib/strata` for root, `$XDG_DATA_HOME/strata` or `~/.local/share/strata` otherwise.
fn default_data_dir() -> Option<PathBuf> {
    if std::env::var("USER").is_ok_and(|u| u == "root") || is_root() {
        return Some(PathBuf::from("/var/lib/strata"));
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("strata"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share/strata"))
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_with_every_key() {
        let text = include_str!("../../../docs/strata.example.toml");
        let config = Config::parse(text, Path::new("strata.example.toml")).expect("example parses");
        assert_eq!(config.kv.engine, strata_kv::EngineKind::Redb);
        assert_eq!(config.kv.etcd.prefix, "strata/");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::parse("[kv]\nengin = \"etcd\"\n", Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("engin"), "{err}");
    }

    #[test]
    fn every_documented_key_is_in_the_example() {
        let docs = include_str!("../../../docs/configuration.md");
        let example = include_str!("../../../docs/strata.example.toml");
        for line in example.lines().filter(|l| l.contains(" = ")) {
            let key = line.trim_start_matches('#').split(" = ").next().unwrap_or("").trim();
            assert!(docs.contains(&format!("`{key}`")), "key {key} is not documented");
        }
    }
}
