//! `strata kv`: get, put, delete and list keys of a KV store, on either engine.

use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use strata_kv::{EngineKind, KvConfig, Read};

use crate::config::Config;
use crate::exit::Failure;

/// Operators' access to a KV store. Keys are given as UTF-8 text; values are stored as given.
///
/// The engine is the one in --config (redb in the data directory by default) unless
/// --engine says otherwise.
#[derive(Debug, Args)]
pub(crate) struct KvArgs {
    /// The engine: redb (the file kv.redb in the data directory) or etcd.
    #[arg(long, value_enum)]
    engine: Option<Engine>,
    /// etcd client URLs, comma separated (implies --engine etcd unless given).
    #[arg(long, value_delimiter = ',', value_name = "URL[,URL…]")]
    etcd_endpoints: Vec<String>,
    /// The key prefix strata's keys live under in etcd (default "strata/").
    #[arg(long, value_name = "P")]
    etcd_prefix: Option<String>,
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Engine {
    Redb,
    Etcd,
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Print the value of KEY (exit code 3 when it is absent).
    Get {
        key: String,
        /// Print {"key": …, "value": …} (value_base64 for values that are not UTF-8).
        #[arg(long)]
        json: bool,
    },
    /// Set KEY to VALUE; a VALUE of `-` reads the value from standard input.
    Put { key: String, value: String },
    /// Delete KEY (or every key starting with it, with --prefix); prints how many went.
    Del {
        key: String,
        /// Delete every key that starts with KEY.
        #[arg(long)]
        prefix: bool,
        /// Print {"deleted": N}.
        #[arg(long)]
        json: bool,
    },
    /// List keys in order, all or those starting with PREFIX.
    Ls {
        prefix: Option<String>,
        /// Print values too, after a tab.
        #[arg(long)]
        values: bool,
        /// Stop after N keys.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Print a JSON array of {"key": …, "value": …}.
        #[arg(long)]
        json: bool,
    },
    /// Copy every key, as of one moment, into a new redb file FILE: a consistent backup,
    /// taken beside a running `strata serve` too. To restore, stop strata and put FILE in
    /// place of DATA-DIR/kv.redb (or point `[kv.redb] path` at it).
    Backup {
        file: PathBuf,
        /// Print {"file", "keys", "revision"}.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(args: KvArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let kv = kv_config(&args, &config.kv);
    let store = crate::open::kv(&kv, data_dir)?;
    let mut out = std::io::stdout().lock();
    match args.command {
        KvCommand::Get { key, json } => {
            let value = store.read()?.get(key.as_bytes())?;
            let value = value.ok_or_else(|| Failure::not_found(format_args!("key {key:?}")))?;
            if json {
                writeln!(out, "{}", entry_json(key.as_bytes(), &value))?;
            } else {
                out.write_all(&value)?;
                writeln!(out)?;
            }
        }
        KvCommand::Put { key, value } => {
            let value = if value == "-" {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).context("read the value from stdin")?;
                buf
            } else {
                value.into_bytes()
            };
            store.with_txn(|txn| {
                txn.put(key.as_bytes(), &value);
                Ok::<_, strata_kv::Error>(())
            })?;
        }
        KvCommand::Del { key, prefix, json } => {
            let deleted = store.with_txn(|txn| {
                let keys: Vec<Vec<u8>> = if prefix {
                    txn.prefix(key.as_bytes())?.into_iter().map(|(k, _)| k).collect()
                } else {
                    txn.get(key.as_bytes())?.map(|_| key.as_bytes().to_vec()).into_iter().collect()
                };
                for key in &keys {
                    txn.delete(key);
                }
                Ok::<_, strata_kv::Error>(keys.len())
            })?;
            if json {
                writeln!(out, "{}", json!({ "deleted": deleted }))?;
            } else {
                writeln!(out, "{deleted}")?;
            }
        }
        KvCommand::Backup { file, json } => {
            let backup = store.backup(&file).map_err(crate::exit::categorized)?;
            crate::show::backup(&mut out, &file, &backup, json)?;
        }
        KvCommand::Ls { prefix, values, limit, json } => {
            let mut entries = store.read()?.prefix(prefix.unwrap_or_default().as_bytes())?;
            entries.truncate(limit.unwrap_or(usize::MAX));
            if json {
                let list: Vec<_> = entries.iter().map(|(k, v)| entry_json(k, v)).collect();
                writeln!(out, "{}", serde_json::Value::Array(list))?;
            } else {
                for (key, value) in entries {
                    if values {
                        writeln!(out, "{}\t{}", key.escape_ascii(), value.escape_ascii())?;
                    } else {
                        writeln!(out, "{}", key.escape_ascii())?;
                    }
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// The configuration with the command line's engine flags applied.
fn kv_config(args: &KvArgs, base: &KvConfig) -> KvConfig {
    let mut kv = base.clone();
    if !args.etcd_endpoints.is_empty() {
        kv.etcd.endpoints = args.etcd_endpoints.clone();
        kv.engine = EngineKind::Etcd;
    }
    if let Some(prefix) = &args.etcd_prefix {
        kv.etcd.prefix = prefix.clone();
    }
    match args.engine {
        Some(Engine::Redb) => kv.engine = EngineKind::Redb,
        Some(Engine::Etcd) => kv.engine = EngineKind::Etcd,
        None => {}
    }
    kv
}

fn entry_json(key: &[u8], value: &[u8]) -> serde_json::Value {
    let key = String::from_utf8_lossy(key);
    match std::str::from_utf8(value) {
        Ok(text) => json!({ "key": key, "value": text }),
        Err(_) => json!({ "key": key, "value_base64": base64_encode(value) }),
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
