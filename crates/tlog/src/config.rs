//! `[tlog]` in `strata.toml`: the tlog server's settings and where the log is kept, and
//! their validation. Flags of the commands win over these; this module merges them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::aggregate::Key;
use crate::keyfile::{read_key_file, write_key_file};
use crate::storage::Storage;
use crate::storage::redis::{RedisConfig, RedisStore};
use crate::storage::segment::SegmentStore;
use crate::{Error, Result};

/// The key file `strata serve` makes on first start, in the data directory.
pub const DEFAULT_KEY_FILE: &str = "tlog.key";

/// Where a data directory keeps the segment files.
pub fn segment_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tlog")
}

/// A log opened for reading, and where it is (for messages).
pub struct Reader {
    /// The store.
    pub storage: Box<dyn Storage>,
    /// The directory or the Redis servers, as people name them.
    pub place: String,
}

impl Reader {
    /// The error for a vdisk without aggregates here, naming the vdisks there are.
    pub fn no_aggregates(&self, vdisk: &str) -> Error {
        let known = self.storage.vdisks().unwrap_or_default();
        let hint = if known.is_empty() {
            "it holds no vdisks".to_string()
        } else {
            format!("it holds {}", known.join(", "))
        };
        Error::NotFound(format!("vdisk {vdisk}: no aggregates in {} ({hint})", self.place))
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("place", &self.place).finish_non_exhaustive()
    }
}

/// `[tlog]`: every field optional; [`TlogConfig::validate`] checks the whole.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlogConfig {
    /// `strata tlog serve`'s address (`--listen` wins; `strata serve` has `--tlog-listen`).
    pub listen: Option<SocketAddr>,
    /// Flush when this many blocks of a vdisk wait.
    pub flush_size: Option<usize>,
    /// The same, for a vdisk whose clients are all in the server's process.
    pub local_flush_size: Option<usize>,
    /// Flush what waits this many seconds after the last flush.
    pub flush_time: Option<f64>,
    /// The AES-256 key file (`strata serve` uses DATA-DIR/tlog.key when unset).
    pub key_file: Option<PathBuf>,
    /// Keep aggregates erasure-coded on Redis-protocol servers instead of DATA-DIR/tlog.
    pub redis: Option<RedisSection>,
}

/// `[tlog.redis]`: the Redis k+m engine.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `host:port` or `host:port/db`; fewer than K+M are filled up on consecutive ports.
    pub servers: Vec<String>,
    /// The data shards K.
    #[serde(default = "default_data_shards")]
    pub data_shards: usize,
    /// The parity shards M.
    #[serde(default = "default_parity_shards")]
    pub parity_shards: usize,
    /// Seconds one attempt (connect, read or write) may take.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Attempts after the first, each on a fresh connection.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_data_shards() -> usize {
    RedisConfig::default().data_shards
}

fn default_parity_shards() -> usize {
    RedisConfig::default().parity_shards
}

fn default_timeout() -> f64 {
    RedisConfig::default().timeout.as_secs_f64()
}

fn default_retries() -> u32 {
    RedisConfig::default().retries
}

/// Redis servers named on a command line, which win over `[tlog.redis]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisFlags {
    /// The servers, in shard order; empty when none were given.
    pub servers: Vec<String>,
    /// The data shards K, when given.
    pub data_shards: Option<usize>,
    /// The parity shards M, when given.
    pub parity_shards: Option<usize>,
}

impl TlogConfig {
    /// Checks every field: positive flush settings, and a Redis section that makes a valid
    /// k+m configuration.
    pub fn validate(&self) -> Result<()> {
        self.flush_time()?;
        if self.flush_size == Some(0) {
            return Err(Error::InvalidArgument("tlog.flush_size must be at least 1".into()));
        }
        if self.local_flush_size == Some(0) {
            return Err(Error::InvalidArgument("tlog.local_flush_size must be at least 1".into()));
        }
        self.redis_config(&RedisFlags::default()).map(drop)
    }

    /// `flush_time` as a duration, when set.
    pub fn flush_time(&self) -> Result<Option<Duration>> {
        match self.flush_time {
            Some(secs) if secs.is_finite() && secs > 0.0 => Ok(Some(Duration::from_secs_f64(secs))),
            Some(_) => Err(Error::InvalidArgument(
                "tlog.flush_time must be a positive number of seconds".into(),
            )),
            None => Ok(None),
        }
    }

    /// The Redis engine's configuration, when `flags` or `[tlog.redis]` name one (flags win,
    /// shard counts falling back to the section's, then to 4+2), filled up to K+M servers
    /// and validated; `None` for the segment files in DATA-DIR/tlog.
    pub fn redis_config(&self, flags: &RedisFlags) -> Result<Option<RedisConfig>> {
        let section = self.redis.as_ref();
        let mut redis = if !flags.servers.is_empty() {
            RedisConfig {
                servers: flags.servers.clone(),
                data_shards: flags.data_shards.or(section.map(|s| s.data_shards)).unwrap_or(4),
                parity_shards: flags
                    .parity_shards
                    .or(section.map(|s| s.parity_shards))
                    .unwrap_or(2),
                ..RedisConfig::default()
            }
        } else if let Some(section) = section {
            if !section.timeout.is_finite() || section.timeout <= 0.0 {
                return Err(Error::InvalidArgument(
                    "tlog.redis.timeout must be a positive number of seconds".into(),
                ));
            }
            RedisConfig {
                servers: section.servers.clone(),
                data_shards: section.data_shards,
                parity_shards: section.parity_shards,
                timeout: Duration::from_secs_f64(section.timeout),
                retries: section.retries,
            }
        } else {
            return Ok(None);
        };
        let named = |e: Error| Error::InvalidArgument(format!("the tlog's redis servers: {e}"));
        redis.auto_fill().map_err(named)?;
        redis.validate().map_err(named)?;
        Ok(Some(redis))
    }

    /// The log for readers (replay, verify, restore, ls): the Redis servers `flags` or
    /// `[tlog.redis]` name, else the segment files in `segments` opened read-only, so a
    /// running server is not disturbed.
    pub fn open_reader(&self, flags: &RedisFlags, segments: &Path) -> Result<Reader> {
        if let Some(redis) = self.redis_config(flags)? {
            let place = format!("redis servers {}", redis.servers.join(","));
            return Ok(Reader { storage: Box::new(RedisStore::connect(redis)?), place });
        }
        let storage = SegmentStore::open_read_only(segments)?;
        Ok(Reader { storage: Box::new(storage), place: segments.display().to_string() })
    }

    /// The log a server writes to: the Redis servers `flags` or `[tlog.redis]` name, else
    /// the segment files in DATA-DIR/tlog (created when missing), locked for this process.
    pub fn open_writer(&self, flags: &RedisFlags, data_dir: &Path) -> Result<Arc<dyn Storage>> {
        if let Some(redis) = self.redis_config(flags)? {
            tracing::info!(servers = ?redis.servers, k = redis.data_shards, m = redis.parity_shards, "tlog on redis");
            return Ok(Arc::new(RedisStore::connect(redis)?));
        }
        let dir = segment_dir(data_dir);
        std::fs::create_dir_all(&dir).map_err(Error::file(&dir))?;
        Ok(Arc::new(SegmentStore::open(&dir)?))
    }

    /// The key readers open a log with: the file `flag` names, else `key_file`, else
    /// DATA-DIR/tlog.key when `strata serve` made one; `None` when there is none (a log
    /// written without encryption needs none).
    pub fn reader_key(&self, flag: Option<&Path>, data_dir: &Path) -> Result<Option<Key>> {
        let default = data_dir.join(DEFAULT_KEY_FILE);
        let file = flag
            .or(self.key_file.as_deref())
            .or_else(|| default.exists().then_some(default.as_path()));
        file.map(read_key_file).transpose()
    }

    /// The key a server encrypts with: `key_file`, else DATA-DIR/tlog.key, made on first
    /// use.
    pub fn server_key(&self, data_dir: &Path) -> Result<Key> {
        if let Some(path) = &self.key_file {
            return read_key_file(path);
        }
        let path = data_dir.join(DEFAULT_KEY_FILE);
        if !path.exists() {
            write_key_file(&path)?;
            tracing::info!(path = %path.display(), "generated the tlog encryption key; back it up");
        }
        read_key_file(&path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_section_and_bad_values_are_named() {
        let config = TlogConfig {
            redis: Some(RedisSection {
                servers: vec!["127.0.0.1:7000".into()],
                data_shards: 2,
                parity_shards: 1,
                timeout: 2.0,
                retries: 1,
            }),
            ..TlogConfig::default()
        };
        config.validate().unwrap();
        let from_section = config.redis_config(&RedisFlags::default()).unwrap().unwrap();
        assert_eq!(from_section.servers.len(), 3);
        let flags = RedisFlags { servers: vec!["127.0.0.1:8000".into()], ..RedisFlags::default() };
        let from_flags = config.redis_config(&flags).unwrap().unwrap();
        assert_eq!(from_flags.servers[0], "127.0.0.1:8000");
        assert_eq!((from_flags.data_shards, from_flags.parity_shards), (2, 1));
        assert_eq!(TlogConfig::default().redis_config(&RedisFlags::default()).unwrap(), None);
        let bad = TlogConfig { flush_time: Some(-1.0), ..TlogConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("tlog.flush_time"));
        let bad = TlogConfig { flush_size: Some(0), ..TlogConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("tlog.flush_size"));
    }
}
