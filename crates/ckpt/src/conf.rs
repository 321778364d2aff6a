//! The seed's `.conf` format, `[ICKPT]` section: parsing, `SECTION.KEY=VALUE` overrides
//! from the command line, and mapping onto [`CkptConfig`].
//!
//! The format is ProxyFS's: `[Section]` lines, then `Key: value` or `Key = value` lines;
//! `#` and `;` start a comment that runs to the end of the line; blank lines are ignored.
//! Durations are Go's (`10m`, `1.5s`, `100ms`, `1h30m`). Sections other than `[ICKPT]` are
//! kept but not read, since one file often configures several ProxyFS daemons.
//!
//! Two key sets are accepted in `[ICKPT]`: the seed's sample (IPAddr, Port, CertFilePath,
//! KeyFilePath, CACertFilePath, DataBasePath, SwiftTimeout, SwiftConnectionPoolSize,
//! TransactionTimeout) and that set with the retry keys (SwiftRetryDelay,
//! SwiftRetryExpBackoff, SwiftRetryLimit). Keys left out keep the value of the base
//! configuration (strata.toml's `[ckpt]`, else the defaults). Strata's own limits can be set
//! too: MaxBodyBytes, MaxConnections, IdleTimeout, MaxStagedBytes. Other keys are errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{CkptConfig, Error, Result};

/// The section the service reads.
pub const SECTION: &str = "ICKPT";

/// A parsed `.conf` file: section → key → value, with overrides applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfMap {
    sections: BTreeMap<String, BTreeMap<String, String>>,
}

/// What an `[ICKPT]` section configures: the service, and where the ProxyFS original kept
/// its database.
#[derive(Debug, Clone, PartialEq)]
pub struct IckptConf {
    /// The service configuration, the base with the section's keys applied.
    pub config: CkptConfig,
    /// `DataBasePath`: the directory committed values are kept in when the KV engine is
    /// redb (`kv.redb` inside it; created when missing). `None` when absent or empty.
    pub database_path: Option<PathBuf>,
}

impl ConfMap {
    /// Parses the text of a `.conf` file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<ConfMap> {
        let mut map = ConfMap::default();
        let mut section: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            let at = || format!("{origin}:{}", index + 1);
            if let Some(name) = line.strip_prefix('[') {
                let name = name.strip_suffix(']').map(str::trim).filter(|n| !n.is_empty());
                let name =
                    name.ok_or_else(|| Error::Config(format!("{}: bad section {line:?}", at())))?;
                section = Some(name.to_string());
                continue;
            }
            let Some(current) = &section else {
                return Err(Error::Config(format!("{}: {line:?} is before any [section]", at())));
            };
            let (key, value) = split_option(line)
                .ok_or_else(|| Error::Config(format!("{}: expected `Key: value`", at())))?;
            map.set(current, key, value);
        }
        Ok(map)
    }

    /// Reads and parses `path`, then applies `overrides` in order.
    pub fn load(path: &Path, overrides: &[String]) -> Result<ConfMap> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| Error::Config(format!("{}: {err}", path.display())))?;
        let mut map = ConfMap::parse(&text, &path.display().to_string())?;
        for text in overrides {
            map.apply_override(text)?;
        }
        Ok(map)
    }

    /// Applies one `SECTION.KEY=VALUE` override (`ICKPT.Port=33124`); an empty value
    /// clears the key, as an empty value in the file does.
    pub fn apply_override(&mut self, text: &str) -> Result<()> {
        let bad = || Error::Config(format!("override {text:?}: expected SECTION.KEY=VALUE"));
        let (name, value) = text.split_once('=').ok_or_else(bad)?;
        let (section, key) = name.trim().split_once('.').ok_or_else(bad)?;
        if section.is_empty() || key.is_empty() {
            return Err(bad());
        }
        self.set(section, key.trim(), value.trim());
        Ok(())
    }

    /// The value of `key` in `section`, if present.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections.get(section)?.get(key).map(String::as_str)
    }

    fn set(&mut self, section: &str, key: &str, value: &str) {
        let section = self.sections.entry(section.to_string()).or_default();
        section.insert(key.to_string(), value.to_string());
    }

    /// Maps `[ICKPT]` onto `base`. Fails on unknown keys, bad values, a missing section,
    /// or an invalid result (see [`CkptConfig::validate`]).
    pub fn ickpt(&self, base: &CkptConfig) -> Result<IckptConf> {
        let section = self
            .sections
            .get(SECTION)
            .ok_or_else(|| Error::Config(format!("no [{SECTION}] section")))?;
        let mut config = base.clone();
        let mut database_path = None;
        let (mut ip, mut port) = split_listen(&base.listen);
        for (key, value) in section {
            let bad = |why: &str| Error::Config(format!("{SECTION}.{key} = {value:?}: {why}"));
            let path = || (!value.is_empty()).then(|| PathBuf::from(value));
            match key.as_str() {
                "IPAddr" => ip = value.clone(),
                "Port" => port = value.parse::<u16>().map_err(|_| bad("not a port"))?.to_string(),
                "CertFilePath" => config.cert_file = path(),
                "KeyFilePath" => config.key_file = path(),
                "CACertFilePath" => config.ca_cert_file = path(),
                "DataBasePath" => database_path = path(),
                "SwiftTimeout" => config.swift_timeout_ms = millis(value).map_err(|e| bad(&e))?,
                "SwiftConnectionPoolSize" => {
                    config.swift_connection_pool_size = number(value).map_err(|e| bad(&e))?
                }
                "TransactionTimeout" => {
                    config.transaction_timeout_ms = millis(value).map_err(|e| bad(&e))?
                }
                "SwiftRetryDelay" => {
                    config.swift_retry_delay_ms = millis(value).map_err(|e| bad(&e))?
                }
                "SwiftRetryExpBackoff" => {
                    config.swift_retry_exp_backoff =
                        value.parse().map_err(|_| bad("not a number"))?
                }
                "SwiftRetryLimit" => {
                    config.swift_retry_limit = number(value).map_err(|e| bad(&e))?
                }
                "MaxBodyBytes" => config.max_body_bytes = number(value).map_err(|e| bad(&e))?,
                "MaxConnections" => config.max_connections = number(value).map_err(|e| bad(&e))?,
                "IdleTimeout" => config.idle_timeout_ms = millis(value).map_err(|e| bad(&e))?,
                "MaxStagedBytes" => config.max_staged_bytes = number(value).map_err(|e| bad(&e))?,
                "StorageHosts" => {
                    config.storage_hosts = value
                        .split(',')
                        .map(str::trim)
                        .filter(|entry| !entry.is_empty())
                        .map(String::from)
                        .collect()
                }
                "Authorization" => {
                    config.authorization = value.parse().map_err(|e: String| bad(&e))?
                }
                _ => return Err(bad("unknown key")),
            }
        }
        if ip.is_empty() {
            return Err(Error::Config(format!("{SECTION}.IPAddr: empty")));
        }
        config.listen = join_listen(&ip, &port);
        config.validate()?;
        Ok(IckptConf { config, database_path })
    }
}

/// Parses a Go duration: a sequence of decimal numbers, each with a unit (`ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h`), such as `10m`, `1.5s` or `1h30m`; `0` alone is zero.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: expected a number before each unit"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("{text:?}: unknown unit {unit:?} (ns us ms s m h)")),
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).map_err(|err| format!("{text:?}: {err}"))
}

fn millis(value: &str) -> Result<u64, String> {
    let duration = parse_go_duration(value)?;
    u64::try_from(duration.as_millis()).map_err(|_| "too long".to_string())
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value.parse().map_err(|_| "not a non-negative integer in range".to_string())
}

fn strip_comment(line: &str) -> &str {
    line.find(['#', ';']).map_or(line, |at| &line[..at])
}

/// `Key: value` or `Key = value`, whichever separator comes first.
fn split_option(line: &str) -> Option<(&str, &str)> {
    let at = line.find([':', '='])?;
    let key = line[..at].trim();
    (!key.is_empty()).then(|| (key, line[at + 1..].trim()))
}

fn split_listen(listen: &str) -> (String, String) {
    match listen.rsplit_once(':') {
        Some((host, port)) => {
            (host.trim_start_matches('[').trim_end_matches(']').to_string(), port.to_string())
        }
        None => (listen.to_string(), "33123".to_string()),
    }
}

fn join_listen(ip: &str, port: &str) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_SAMPLE: &str = "\
[ICKPT]
IPAddr:                  ickpt
Port:                    33123        # TCP or TLS as determined by:
CertFilePath:                         #  TCP: if all of {Cert|Key|CACert}FilePath are missing or empty
KeyFilePath:                          #   - or -
CACertFilePath:                       #  TLS: if all of {Cert|Key|CACert}FilePath are present
DataBasePath:            /tmp/ickptDB # Implicitly created if if non-existent
SwiftTimeout:            10m
SwiftConnectionPoolSize: 128
TransactionTimeout:      10s
";

    #[test]
    fn the_seed_sample_parses() {
        let conf = ConfMap::parse(SEED_SAMPLE, "sample").unwrap();
        let ickpt = conf.ickpt(&CkptConfig::default()).unwrap();
        assert_eq!(ickpt.config.listen, "ickpt:33123");
        assert_eq!(ickpt.config.tls_files().unwrap(), None);
        assert_eq!(ickpt.database_path, Some(PathBuf::from("/tmp/ickptDB")));
        assert_eq!(ickpt.config.swift_timeout_ms, 600_000);
        assert_eq!(ickpt.config.transaction_timeout_ms, 10_000);
        assert_eq!(ickpt.config.swift_retry_limit, CkptConfig::default().swift_retry_limit);
    }

    #[test]
    fn the_full_key_set_and_overrides_apply() {
        let text = format!(
            "[Other]\nKey = x\n{SEED_SAMPLE}SwiftRetryDelay = 250ms\n\
             SwiftRetryExpBackoff: 1.5\nSwiftRetryLimit: 7\n"
        );
        let mut conf = ConfMap::parse(&text, "full").unwrap();
        conf.apply_override("ICKPT.Port=4000").unwrap();
        conf.apply_override("ICKPT.IPAddr=::1").unwrap();
        let config = conf.ickpt(&CkptConfig::default()).unwrap().config;
        assert_eq!(config.listen, "[::1]:4000");
        assert_eq!(config.swift_retry_delay_ms, 250);
        assert_eq!(config.swift_retry_exp_backoff, 1.5);
        assert_eq!(config.swift_retry_limit, 7);
        assert_eq!(conf.get("Other", "Key"), Some("x"));
    }

    #[test]
    fn unknown_keys_partial_tls_and_bad_lines_are_errors() {
        let unknown = ConfMap::parse("[ICKPT]\nPrt: 1\n", "x").unwrap();
        assert!(unknown.ickpt(&CkptConfig::default()).unwrap_err().to_string().contains("Prt"));
        let tls = ConfMap::parse("[ICKPT]\nCertFilePath: /c.pem\n", "x").unwrap();
        let err = tls.ickpt(&CkptConfig::default()).unwrap_err().to_string();
        assert!(err.contains("missing: key_file"), "{err}");
        assert!(ConfMap::parse("Port: 1\n", "x").is_err());
        assert!(ConfMap::parse("[ICKPT]\njust words\n", "x").is_err());
        assert!(ConfMap::default().apply_override("Port=1").is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("5d").is_err());
    }
}
