//! The sharing server: answers clients of [`RemoteEngine`](crate::engine) on a unix socket.
//!
//! Only the server process's own user (or root) may connect; each connection opens one
//! store and holds at most one read view. Connections are bounded, idle ones are closed,
//! and messages are bounded by the framing. What a request does is the engine's: this
//! module only decodes, calls, and answers.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixStream;

use crate::engine::{Commit, Engine, ReadSet, Snapshot};
use crate::share::wire::{self, Request, Response, WireCommit, WireError};
use crate::{Error, Store};

/// The most clients served at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a connection may stay silent before it is closed (and its view released).
const IDLE: Duration = Duration::from_secs(60);

/// The stores a server shares, by the canonical path of their redb files.
#[derive(Debug, Default, Clone)]
pub struct Shared {
    stores: BTreeMap<String, Store>,
}

impl Shared {
    /// Shares `store`, which this process opened from the redb file `file`.
    pub fn add(&mut self, file: &Path, store: Store) -> std::io::Result<()> {
        let file = std::fs::canonicalize(file)?;
        self.stores.insert(file.to_string_lossy().into_owned(), store);
        Ok(())
    }
}

/// Serves `shared` on `listener` until `shutdown` completes, then closes every connection
/// between two requests (or after the shell's grace).
pub async fn serve(
    listener: tokio::net::UnixListener,
    shared: Shared,
    shutdown: impl Future<Output = ()>,
) {
    let shell = strata_net::Shell::new("kv share", MAX_CONNECTIONS);
    let shared = Arc::new(shared);
    strata_net::serve(&shell, listener, shutdown, |stream, _, stopping| {
        let shared = shared.clone();
        async move {
            if let Err(err) = handle(stream, &shared, stopping).await {
                tracing::debug!("kv share connection: {err}");
            }
        }
    })
    .await;
}

async fn handle(
    mut stream: UnixStream,
    shared: &Shared,
    mut stopping: strata_net::Stopping,
) -> std::io::Result<()> {
    let peer = stream.peer_cred()?.uid();
    let own = rustix::process::geteuid().as_raw();
    if peer != own && peer != 0 {
        let refused = WireError::Unavailable(format!(
            "user {peer} may not use this server's stores (only user {own} and root may)"
        ));
        return wire::write_message_async(&mut stream, &Response::Failed(refused)).await;
    }
    let mut session = Session { shared, engine: None, view: None };
    loop {
        let body = tokio::select! {
            () = stopping.wait() => return Ok(()),
            read = tokio::time::timeout(IDLE, wire::read_frame_async(&mut stream)) => match read {
                Err(_) | Ok(Ok(None)) => return Ok(()),
                Ok(Ok(Some(body))) => body,
                Ok(Err(err)) => return Err(err),
            },
        };
        let response = match wire::decode::<Request>(&body) {
            Ok(request) => session.answer(request).await,
            Err(err) => {
                let failed = Response::Failed(WireError::InvalidArgument(err.to_string()));
                return wire::write_message_async(&mut stream, &failed).await;
            }
        };
        match wire::encode(&response) {
            Ok(frame) => tokio::io::AsyncWriteExt::write_all(&mut stream, &frame).await?,
            // An answer too large to send: say so instead.
            Err(err) => {
                let failed = Response::Failed(WireError::InvalidArgument(err.to_string()));
                wire::write_message_async(&mut stream, &failed).await?;
            }
        }
    }
}

/// One connection's state: its store, and its read view once opened.
struct Session<'a> {
    shared: &'a Shared,
    engine: Option<Arc<dyn Engine>>,
    view: Option<Box<dyn Snapshot>>,
}

impl Session<'_> {
    async fn answer(&mut self, request: Request) -> Response {
        match self.dispatch(request).await {
            Ok(response) => response,
            Err(err) => Response::Failed(WireError::from(&err)),
        }
    }

    async fn dispatch(&mut self, request: Request) -> crate::Result<Response> {
        match request {
            Request::Open { file } => self.open(&file),
            Request::Snapshot => {
                let engine = self.engine()?;
                self.view = Some(blocking(move || engine.snapshot()).await?);
                Ok(Response::Snapshot)
            }
            Request::Get { key } => {
                let found = self.in_view(move |view| view.get(&key)).await?;
                let revision = self.view.as_ref().and_then(|view| view.revision());
                let found = found.map(|found| (found.value, found.mod_revision));
                Ok(Response::Found { found, revision })
            }
            Request::Range { start, end, limit } => {
                let limit = usize::try_from(limit).unwrap_or(usize::MAX);
                let entries = self
                    .in_view(move |view| {
                        view.range(
                            start.as_ref().map(Vec::as_slice),
                            end.as_ref().map(Vec::as_slice),
                            limit,
                        )
                    })
                    .await?;
                let revision = self.view.as_ref().and_then(|view| view.revision());
                let entries = entries
                    .into_iter()
                    .map(|entry| (entry.key, entry.value, entry.mod_revision))
                    .collect();
                Ok(Response::Entries { entries, revision })
            }
            Request::Commit(commit) => {
                let engine = self.engine()?;
                blocking(move || engine.commit(into_commit(commit))).await?;
                Ok(Response::Committed)
            }
        }
    }

    fn engine(&self) -> crate::Result<Arc<dyn Engine>> {
        self.engine
            .clone()
            .ok_or_else(|| Error::InvalidArgument("open a store before anything else".into()))
    }

    fn open(&mut self, file: &str) -> crate::Result<Response> {
        if self.engine.is_some() {
            return Err(Error::InvalidArgument("this connection has a store open".into()));
        }
        let Some(store) = self.shared.stores.get(file) else {
            let shared: Vec<&str> = self.shared.stores.keys().map(String::as_str).collect();
            return Err(Error::InvalidArgument(format!(
                "{file}: not shared by this server (it shares {})",
                shared.join(", ")
            )));
        };
        let engine = store.engine.clone();
        let response = Response::Opened {
            engine: engine.name().to_string(),
            max_txn_ops: engine.max_txn_ops().map(|ops| ops as u64),
            validates_scans_by_key: engine.validates_scans_by_key(),
        };
        self.engine = Some(engine);
        Ok(response)
    }

    /// Runs `read` on the connection's view on the blocking pool.
    async fn in_view<T: Send + 'static>(
        &mut self,
        read: impl FnOnce(&mut dyn Snapshot) -> crate::Result<T> + Send + 'static,
    ) -> crate::Result<T> {
        let Some(mut view) = self.view.take() else {
            return Err(Error::InvalidArgument("open a read view before reading".into()));
        };
        let (view, result) = blocking(move || {
            let result = read(view.as_mut());
            Ok((view, result))
        })
        .await?;
        self.view = Some(view);
        result
    }
}

fn into_commit(commit: WireCommit) -> Commit {
    Commit {
        revision: commit.revision,
        reads: ReadSet { keys: commit.keys.into_iter().collect(), ranges: commit.ranges },
        writes: commit.writes.into_iter().collect(),
    }
}

/// Runs engine work, which may wait for a disk, off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> crate::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| Error::Unavailable(format!("the store's worker failed: {err}")))?
}
