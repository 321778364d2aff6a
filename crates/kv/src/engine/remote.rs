//! An engine in another process: a store a running server shares over a unix socket
//! (`crate::share`), so commands work on a redb file while the server holds it.
//!
//! Every read view is one connection, on which the server holds the view open; every
//! commit is one connection too. The server's engine validates and applies commits exactly
//! as it does its own, so transactions from both processes are serializable together.
//! This module knows nothing of which server shares the store or where its socket is.

use std::ops::Bound;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::{Commit, Engine, Entry, Found, Snapshot};
use crate::share::wire::{self, Request, Response, WireCommit};
use crate::{Error, Result};

/// How long the client waits for one answer before it gives up on the server.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct RemoteEngine {
    socket: PathBuf,
    file: String,
    name: &'static str,
    max_txn_ops: Option<usize>,
    validates_scans_by_key: bool,
}

impl RemoteEngine {
    /// Connects to the server on `socket` and opens the store it keeps in `file`.
    pub(crate) fn connect(socket: &Path, file: &Path) -> Result<RemoteEngine> {
        let file = file.to_string_lossy().into_owned();
        let (_, opened) = Connection::open(socket, &file)?;
        let Response::Opened { engine, max_txn_ops, validates_scans_by_key } = opened else {
            return Err(unexpected(socket, &opened));
        };
        Ok(RemoteEngine {
            socket: socket.to_path_buf(),
            file,
            name: match engine.as_str() {
                "redb" => "redb",
                "etcd" => "etcd",
                _ => "shared",
            },
            max_txn_ops: max_txn_ops.map(|ops| usize::try_from(ops).unwrap_or(usize::MAX)),
            validates_scans_by_key,
        })
    }
}

impl Engine for RemoteEngine {
    fn snapshot(&self) -> Result<Box<dyn Snapshot>> {
        let (mut connection, _) = Connection::open(&self.socket, &self.file)?;
        match connection.call(&Request::Snapshot)? {
            Response::Snapshot => Ok(Box::new(RemoteSnapshot { connection, revision: None })),
            other => Err(unexpected(&self.socket, &other)),
        }
    }

    fn commit(&self, commit: Commit) -> Result<()> {
        let (mut connection, _) = Connection::open(&self.socket, &self.file)?;
        let request = Request::Commit(WireCommit {
            revision: commit.revision,
            keys: commit.reads.keys.into_iter().collect(),
            ranges: commit.reads.ranges,
            writes: commit.writes.into_iter().collect(),
        });
        match connection.call(&request)? {
            Response::Committed => Ok(()),
            other => Err(unexpected(&self.socket, &other)),
        }
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn max_txn_ops(&self) -> Option<usize> {
        self.max_txn_ops
    }

    fn reads_are_local(&self) -> bool {
        false
    }

    fn validates_scans_by_key(&self) -> bool {
        self.validates_scans_by_key
    }
}

/// A read view the server holds open for this connection.
struct RemoteSnapshot {
    connection: Connection,
    revision: Option<u64>,
}

impl Snapshot for RemoteSnapshot {
    fn get(&mut self, key: &[u8]) -> Result<Option<Found>> {
        match self.connection.call(&Request::Get { key: key.to_vec() })? {
            Response::Found { found, revision } => {
                self.revision = revision;
                Ok(found.map(|(value, mod_revision)| Found { value, mod_revision }))
            }
            other => Err(unexpected(&self.connection.socket, &other)),
        }
    }

    fn range(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let request = Request::Range {
            start: start.map(<[u8]>::to_vec),
            end: end.map(<[u8]>::to_vec),
            limit: u64::try_from(limit).unwrap_or(u64::MAX),
        };
        match self.connection.call(&request)? {
            Response::Entries { entries, revision } => {
                self.revision = revision;
                Ok(entries
                    .into_iter()
                    .map(|(key, value, mod_revision)| Entry { key, value, mod_revision })
                    .collect())
            }
            other => Err(unexpected(&self.connection.socket, &other)),
        }
    }

    fn revision(&self) -> Option<u64> {
        self.revision
    }
}

/// One connection to the sharing server, with its store open.
struct Connection {
    socket: PathBuf,
    stream: UnixStream,
}

impl Connection {
    /// Connects and opens the store in `file`; returns the server's `Opened` answer.
    fn open(socket: &Path, file: &str) -> Result<(Connection, Response)> {
        let stream = UnixStream::connect(socket).map_err(|err| unavailable(socket, &err))?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(|err| unavailable(socket, &err))?;
        let mut connection = Connection { socket: socket.to_path_buf(), stream };
        let opened = connection.call(&Request::Open { file: file.to_string() })?;
        Ok((connection, opened))
    }

    /// Sends `request` and reads the answer; a `Failed` answer is the server's error.
    fn call(&mut self, request: &Request) -> Result<Response> {
        wire::write_message(&mut self.stream, request)
            .map_err(|err| unavailable(&self.socket, &err))?;
        let body =
            wire::read_frame(&mut self.stream).map_err(|err| unavailable(&self.socket, &err))?;
        match wire::decode::<Response>(&body).map_err(|err| unavailable(&self.socket, &err))? {
            Response::Failed(err) => Err(err.into()),
            response => Ok(response),
        }
    }
}

fn unavailable(socket: &Path, err: &std::io::Error) -> Error {
    Error::Unavailable(format!("the server sharing the store on {}: {err}", socket.display()))
}

fn unexpected(socket: &Path, response: &Response) -> Error {
    let answer = format!("{response:?}");
    Error::Unavailable(format!(
        "the server sharing the store on {} answered out of turn: {:.80}",
        socket.display(),
        answer
    ))
}
