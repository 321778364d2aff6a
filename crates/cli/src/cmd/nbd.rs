//! `strata nbd serve`: the NBD server for vdisks, and the `[nbd]` configuration it and
//! `strata serve` share.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_nbd::{Listen, NbdServer};

use crate::config::Config;

/// The NBD server: serves every vdisk (`strata vdisk create`) as an NBD export of the same
/// name, to qemu, nbd-client and any other NBD client, and journals every write, trim and
/// write-zeroes through the tlog servers it is given.
///
/// A FLUSH (and a write with FUA) is answered only once the tlog has every earlier write
/// durable and the image is synced. If the tlog cannot be reached, writes are held in a
/// bounded buffer ([nbd] max_unflushed_bytes), then fail with EIO after [nbd]
/// tlog_timeout_ms; nothing is ever left unjournaled silently.
#[derive(Debug, Args)]
pub(crate) struct NbdArgs {
    #[command(subcommand)]
    command: NbdCommand,
}

#[derive(Debug, Subcommand)]
enum NbdCommand {
    /// Serve NBD clients until SIGINT or SIGTERM, then flush every disk and stop.
    Serve(NbdServeArgs),
}

/// Serve the vdisks over NBD.
#[derive(Debug, Args)]
pub(crate) struct NbdServeArgs {
    /// The TCP address to listen on [default: nbd.listen of the config, 127.0.0.1:10809].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Also listen on this unix socket (clients use nbd+unix:///NAME?socket=PATH).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The tlog servers every write is journaled to, tried in order
    /// [default: nbd.tlog_servers of the config, 127.0.0.1:11211].
    #[arg(long, value_name = "ADDR[,ADDR…]", value_delimiter = ',')]
    tlog_servers: Vec<String>,
    /// The most client connections served at once [default: nbd.max_connections, 128].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Offer TLS (NBD_OPT_STARTTLS) with this certificate chain (PEM), with --tls-key
    /// [default: nbd.tls_cert of the config]. Clients must then use TLS unless
    /// --tls-optional (or nbd.tls_required = false) is given; they connect with nbds://.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert [default: nbd.tls_key of the config].
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With TLS: also serve clients that do not start TLS.
    #[arg(long)]
    tls_optional: bool,
    /// Serve without journaling, for `scripts/bench-nbd` to measure what journaling costs:
    /// images then no longer match their logs. Never use it for data you keep.
    #[arg(long, hide = true)]
    no_journal_benchmark_only: bool,
    #[command(flatten)]
    metrics: crate::metrics::MetricsArgs,
}

pub(crate) fn run(args: NbdArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    match args.command {
        NbdCommand::Serve(args) => serve(args, config, data_dir),
    }
}

fn serve(args: NbdServeArgs, config: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let nbd = &config.nbd;
    let tlog_servers =
        if args.tlog_servers.is_empty() { nbd.tlog_servers.clone() } else { args.tlog_servers };
    let mut server_config = nbd.server(tlog_servers);
    if let Some(n) = args.max_connections {
        server_config.max_connections = n;
    }
    let mut tls = nbd.clone();
    if args.tls_cert.is_some() {
        (tls.tls_cert, tls.tls_key) = (args.tls_cert, args.tls_key);
    }
    if args.tls_optional {
        tls.tls_required = false;
    }
    server_config.tls = tls.tls()?;
    if args.no_journal_benchmark_only {
        tracing::warn!(
            "serving WITHOUT journaling: for benchmarks only; images will not match their logs"
        );
        server_config.journal = false;
    }
    let listen = match args.listen {
        Some(listen) => listen,
        None => nbd.listen_addr()?,
    };
    let socket = args.socket.or_else(|| nbd.socket.clone());
    let records = crate::open::vdisk_records(config, data_dir, None)?;
    let server = NbdServer::new(records, server_config.clone())?;
    let runtime = crate::runtime::runtime()?;
    runtime.block_on(async {
        let shutdown = crate::runtime::shutdown_signal();
        let metrics = crate::metrics::Exporter::start(args.metrics.metrics_listen).await?;
        let listeners = bind(listen, "--listen", socket.as_deref()).await?;
        tracing::info!(
            listen = %listen,
            socket = ?socket,
            tlog = %server_config.tlog_servers.join(","),
            tls = ?server_config.tls.as_ref().map(|t| if t.required { "required" } else { "optional" }),
            "nbd serving"
        );
        server.serve(listeners, metrics.ready_until(shutdown)).await?;
        metrics.stop().await;
        Ok(())
    })
}

/// Binds the TCP address and, when given, the unix socket (replacing a stale one); `flag`
/// is the option that chooses the address, for the message when it is taken.
pub(crate) async fn bind(
    listen: SocketAddr,
    flag: &str,
    socket: Option<&Path>,
) -> anyhow::Result<Vec<Listen>> {
    let tcp = tokio::net::TcpListener::bind(listen).await.with_context(|| {
        format!("nbd: listen on {listen} (choose another with {flag} or nbd.listen)")
    })?;
    let mut listeners = vec![Listen::Tcp(tcp)];
    if let Some(path) = socket {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("nbd: {} is in use by another server", path.display());
        }
        let _ = std::fs::remove_file(path);
        let unix = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("nbd: listen on {}", path.display()))?;
        listeners.push(Listen::Unix(unix, path.to_path_buf()));
    }
    Ok(listeners)
}

/// The local address of the TCP listener among `listeners`.
pub(crate) fn tcp_addr(listeners: &[Listen]) -> Option<SocketAddr> {
    listeners.iter().find_map(|l| match l {
        Listen::Tcp(t) => t.local_addr().ok(),
        Listen::Unix(..) => None,
    })
}
