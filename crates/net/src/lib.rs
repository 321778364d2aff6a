//! The shell every strata network server runs in.
//!
//! [`serve`] is the accept loop the tlog, NBD, checkpoint and hub servers share: it takes a
//! connection slot before it accepts (so at most `max_connections` are served and the rest
//! wait in the kernel's queue), backs off when accepting fails (out of file descriptors,
//! say) instead of spinning, hands each connection to the server's handler with a
//! [`Stopping`] signal, and on shutdown stops accepting, signals every connection, waits up
//! to the grace period for them to finish, and cuts off the rest.
//! With the `http` feature, [`http1`] serves one HTTP/1 connection with an idle timeout
//! that closes gracefully when the server stops. With the `tls` feature, [`tls`] builds
//! rustls configurations from PEM files for servers and clients.
//!
//! This crate knows nothing of what the servers speak.

#![deny(missing_docs)]

use std::future::Future;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
pub use crate::http::http1;
#[cfg(feature = "tls")]
pub mod tls;

/// How long connections may finish after a server was told to stop, by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// The pause after a failed accept, by default.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(100);

/// How a server's accept loop behaves.
#[derive(Debug, Clone)]
pub struct Shell {
    /// The server's name, for logs.
    pub name: &'static str,
    /// The most connections served at once.
    pub max_connections: usize,
    /// How long connections may finish after the server was told to stop.
    pub grace: Duration,
    /// The pause after a failed accept.
    pub backoff: Duration,
}

impl Shell {
    /// A shell named `name` serving at most `max_connections` at once, with the default
    /// grace and backoff.
    pub fn new(name: &'static str, max_connections: usize) -> Shell {
        Shell { name, max_connections, grace: DEFAULT_GRACE, backoff: DEFAULT_BACKOFF }
    }
}

/// Tells a connection that its server is stopping.
#[derive(Debug, Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Completes once the server stops (or is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// A listener the shell accepts connections from.
pub trait Listener: Send + 'static {
    /// One accepted connection.
    type Connection: Send + 'static;
    /// Waits for the next connection; returns it with a name of its peer for logs.
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Connection, String)>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Connection = tokio::net::TcpStream;

    async fn accept(&self) -> std::io::Result<(tokio::net::TcpStream, String)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer.to_string()))
    }
}

impl Listener for tokio::net::UnixListener {
    type Connection = tokio::net::UnixStream;

    async fn accept(&self) -> std::io::Result<(tokio::net::UnixStream, String)> {
        let (stream, _) = tokio::net::UnixListener::accept(self).await?;
        Ok((stream, "unix".to_string()))
    }
}

/// Serves `listener` until `shutdown` completes: each connection goes to `handle` (with its
/// peer's name and a [`Stopping`] signal) on a task of its own. Then stops accepting,
/// signals the connections, waits up to `shell.grace` for them, and cuts off the rest.
/// Returns once no connection task is left.
pub async fn serve<L, H, F>(
    shell: &Shell,
    listener: L,
    shutdown: impl Future<Output = ()>,
    handle: H,
) where
    L: Listener,
    H: Fn(L::Connection, String, Stopping) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let limit = std::sync::Arc::new(Semaphore::new(shell.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(err) = joined
                    && err.is_panic()
                {
                    tracing::error!(server = shell.name, "connection task panicked: {err}");
                }
                continue;
            }
            permit = limit.clone().acquire_owned() => permit,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((connection, peer)) => {
                let task = handle(connection, peer, Stopping(stopping.clone()));
                connections.spawn(async move {
                    task.await;
                    drop(permit);
                });
            }
            Err(err) => {
                tracing::warn!(server = shell.name, error = %err, "accept failed; backing off");
                tokio::time::sleep(shell.backoff).await;
            }
        }
    }
    drop(listener);
    tracing::info!(server = shell.name, connections = connections.len(), "stopping");
    let _ = stop.send(true);
    let drained = tokio::time::timeout(shell.grace, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!(
            server = shell.name,
            left = connections.len(),
            "connections cut off after the grace period"
        );
        connections.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo server on the shell: bounded, and stopped with one connection that ignores
    /// the stop signal, which is cut off after the grace.
    #[tokio::test]
    async fn bounds_connections_and_cuts_off_stragglers_after_the_grace() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shell = Shell { grace: Duration::from_millis(200), ..Shell::new("echo", 1) };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve(
                &shell,
                listener,
                async {
                    let _ = stopped.await;
                },
                |mut stream: tokio::net::TcpStream, _, _| async move {
                    let mut buf = [0u8; 1];
                    while stream.read_exact(&mut buf).await.is_ok() {
                        if stream.write_all(&buf).await.is_err() {
                            break;
                        }
                    }
                },
            )
            .await
        });
        let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
        first.write_all(b"a").await.unwrap();
        let mut buf = [0u8; 1];
        first.read_exact(&mut buf).await.unwrap();
        // The second waits in the queue while the first holds the only slot.
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        second.write_all(b"b").await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(200), second.read_exact(&mut buf));
        assert!(waited.await.is_err(), "a second connection was served beside the first");
        drop(first);
        second.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"b");
        // The echo ignores Stopping: the shell cuts it off after the grace.
        let started = std::time::Instant::now();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(second.read(&mut buf).await.unwrap(), 0, "the straggler was closed");
    }
}
