//! `strata ckpt`: the checkpoint service (`serve`) and its command-line client (`get`,
//! `put`, `delete`). The protocol itself lives in `strata-ckpt`; this is wiring.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use strata_ckpt::{Bytes, CkptConfig, Client, ClientConfig, ConfMap, Target};
use strata_kv::EngineKind;

use crate::config::Config;
use crate::exit::categorized;

/// Strongly consistent checkpoints over an eventually consistent object store.
///
/// The service keeps one checkpoint per object-store URL. Clients stage a change (PUT or
/// DELETE with a transaction id) and make it visible with a POST of the same id; a GET
/// returns the committed value, or the object's own content when none is committed. Every
/// request is authorized by the object store: the service GETs the object with the
/// caller's token. Committed values live in the KV store ([kv] in --config).
#[derive(Debug, Args)]
pub(crate) struct CkptArgs {
    #[command(subcommand)]
    command: CkptCommand,
}

#[derive(Debug, Subcommand)]
enum CkptCommand {
    /// Serve checkpoints over HTTP (or HTTPS) until SIGINT or SIGTERM.
    ///
    /// Settings come from [ckpt] in --config, then from the [ICKPT] section of --conf (the
    /// ProxyFS ickpt .conf format: IPAddr, Port, CertFilePath, KeyFilePath, CACertFilePath,
    /// DataBasePath, SwiftTimeout, SwiftConnectionPoolSize, TransactionTimeout,
    /// SwiftRetryDelay, SwiftRetryExpBackoff, SwiftRetryLimit), then from SECTION.KEY=VALUE
    /// overrides, then from --listen.
    Serve(ServeArgs),
    /// Print the checkpoint: the committed value, else the object's own content.
    Get {
        #[command(flatten)]
        target: TargetArgs,
        /// Print {"value": …, "revision": N, "committed": bool} (value_base64 for values
        /// that are not UTF-8) instead of the raw value.
        #[arg(long)]
        json: bool,
    },
    /// Set the checkpoint to VALUE (`-` reads it from standard input): stages it under a
    /// fresh transaction id and commits it.
    Put {
        #[command(flatten)]
        target: TargetArgs,
        /// The new value; `-` reads standard input.
        value: String,
        /// Print {"revision": N}, the checkpoint's revision after the commit.
        #[arg(long)]
        json: bool,
    },
    /// Forget the committed value, so reads return the object's own content again: stages
    /// the deletion under a fresh transaction id and commits it.
    Delete {
        #[command(flatten)]
        target: TargetArgs,
        /// Print {"revision": N}, the checkpoint's revision after the commit.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// A .conf file in the seed's format; its [ICKPT] section configures the service.
    #[arg(long, value_name = "FILE")]
    conf: Option<PathBuf>,
    /// Overrides of --conf, such as ICKPT.Port=33124 or ICKPT.TransactionTimeout=30s.
    #[arg(value_name = "SECTION.KEY=VALUE", requires = "conf")]
    overrides: Vec<String>,
    /// The address to listen on, HOST:PORT; wins over --conf and --config.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    #[command(flatten)]
    metrics: crate::metrics::MetricsArgs,
}

/// Which server, which checkpoint, and the token that authorizes the request.
#[derive(Debug, Args)]
struct TargetArgs {
    /// The checkpoint server, http://HOST:PORT or https://HOST:PORT.
    #[arg(long, value_name = "URL", env = "STRATA_CKPT_SERVER")]
    server: String,
    /// The full URL of the object that holds the checkpoint (sent as X-Storage-Url).
    #[arg(long, value_name = "URL")]
    storage_url: String,
    /// The object store's token (sent as X-Auth-Token).
    #[arg(long, value_name = "TOKEN", env = "STRATA_CKPT_TOKEN", hide_env_values = true)]
    token: String,
    /// A CA certificate (PEM) to trust besides the system's, for an https server.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Seconds one request may take.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
}

impl CkptArgs {
    /// True for `strata ckpt serve`, a long-running service that logs at info level.
    pub(crate) fn is_serve(&self) -> bool {
        matches!(self.command, CkptCommand::Serve(_))
    }
}

/// Runs `strata ckpt …`.
pub(crate) fn run(args: CkptArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    match args.command {
        CkptCommand::Serve(serve_args) => serve(serve_args, config, data_dir),
        CkptCommand::Get { target, json } => {
            let checkpoint =
                request(&target, |client, target| async move { client.get(&target).await })?;
            let mut out = std::io::stdout().lock();
            if json {
                let mut object = json!({
                    "revision": checkpoint.revision,
                    "committed": checkpoint.committed,
                });
                match std::str::from_utf8(&checkpoint.value) {
                    Ok(text) => object["value"] = json!(text),
                    Err(_) => object["value_base64"] = json!(base64(&checkpoint.value)),
                }
                writeln!(out, "{object}")?;
            } else {
                out.write_all(&checkpoint.value)?;
            }
            out.flush()?;
            Ok(())
        }
        CkptCommand::Put { target, value, json } => {
            let value = read_value(value)?;
            let revision =
                request(&target, |client, target| async move { client.put(&target, value).await })?;
            print_revision(json, revision)
        }
        CkptCommand::Delete { target, json } => {
            let revision =
                request(&target, |client, target| async move { client.delete(&target).await })?;
            print_revision(json, revision)
        }
    }
}

/// `strata ckpt serve`: the configuration layered as the help says, the KV store (in
/// DataBasePath when the .conf names one and the engine is redb), until a signal.
fn serve(args: ServeArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let (mut ckpt, database_path) = match &args.conf {
        Some(path) => {
            let conf = ConfMap::load(path, &args.overrides).map_err(categorized)?;
            let ickpt = conf.ickpt(&config.ckpt).map_err(categorized)?;
            (ickpt.config, ickpt.database_path)
        }
        None => (config.ckpt.clone(), None),
    };
    if let Some(listen) = args.listen {
        ckpt.listen = listen;
    }
    ckpt.validate().map_err(categorized)?;
    let kv_dir = match (database_path, config.kv.engine) {
        (Some(dir), EngineKind::Redb) => dir,
        (Some(dir), EngineKind::Etcd) => {
            tracing::warn!(path = %dir.display(), "DataBasePath ignored: the kv engine is etcd");
            data_dir.to_path_buf()
        }
        (None, _) => data_dir.to_path_buf(),
    };
    // Opened before the runtime starts: the etcd engine runs its own runtime.
    let store = crate::open::served_kv(&config.kv, &kv_dir)?;
    let runtime = crate::runtime::runtime()?;
    runtime.block_on(serve_until_signal(&ckpt, store, args.metrics))
}

async fn serve_until_signal(
    ckpt: &CkptConfig,
    store: strata_kv::Store,
    metrics: crate::metrics::MetricsArgs,
) -> anyhow::Result<()> {
    let shutdown = crate::runtime::shutdown_signal();
    let metrics = crate::metrics::Exporter::start(metrics.metrics_listen).await?;
    // The checkpoint service's error names the address already.
    let server = strata_ckpt::Server::bind(ckpt, store)
        .await
        .map_err(categorized)
        .context("ckpt (choose another address with --listen or ckpt.listen)")?;
    server
        .run(metrics.ready_until(shutdown))
        .await
        .map_err(categorized)
        .with_context(|| format!("ckpt serve on {}", ckpt.listen))?;
    metrics.stop().await;
    Ok(())
}

/// Runs one client call on a small runtime.
fn request<T, F>(args: &TargetArgs, call: impl FnOnce(Client, Target) -> F) -> anyhow::Result<T>
where
    F: std::future::Future<Output = strata_ckpt::Result<T>>,
{
    let client_config = ClientConfig {
        server: args.server.clone(),
        ca_cert_file: args.ca_cert.clone(),
        timeout: Duration::from_secs(args.timeout),
        max_idle_connections: 1,
    };
    let target = Target { storage_url: args.storage_url.clone(), token: args.token.clone() };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime
        .block_on(async {
            let client = Client::new(&client_config).map_err(categorized)?;
            call(client, target).await.map_err(categorized)
        })
        .with_context(|| format!("checkpoint {}", args.storage_url))
}

fn read_value(value: String) -> anyhow::Result<Bytes> {
    if value != "-" {
        return Ok(Bytes::from(value));
    }
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).context("read the value from stdin")?;
    Ok(Bytes::from(buf))
}

fn print_revision(json: bool, revision: u64) -> anyhow::Result<()> {
    if json {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", json!({ "revision": revision }))?;
        out.flush()?;
    }
    Ok(())
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
