//! One Redis-protocol server of a [`crate::storage::redis::RedisStore`]: a lazily opened,
//! reconnecting connection with timeouts and retries.
//!
//! Not a pool: the store talks to each server from one thread at a time.

use std::sync::Mutex;
use std::time::Duration;

use redis::{Connection, Pipeline, Value};

/// A server and its connection, opened on first use and again after any failure.
pub(crate) struct Node {
    /// The address as configured, for messages.
    pub(crate) address: String,
    client: redis::Client,
    connection: Mutex<Option<Connection>>,
    timeout: Duration,
    retries: u32,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Node {
    /// Parses `address` (`host:port` or `host:port/db`); connects nothing yet.
    pub(crate) fn new(address: &str, timeout: Duration, retries: u32) -> Result<Node, String> {
        let url = if address.contains("://") {
            address.to_string()
        } else {
            format!("redis://{address}")
        };
        let client = redis::Client::open(url.as_str())
            .map_err(|e| format!("redis server {address}: bad address: {e}"))?;
        Ok(Node {
            address: address.to_string(),
            client,
            connection: Mutex::new(None),
            timeout,
            retries,
        })
    }

    /// Runs `pipe`, retrying on a fresh connection; the replies, one per command.
    /// Retry `n` (1-based) waits 20 ms << n, at most 320 ms.
    pub(crate) fn query(&self, pipe: &Pipeline) -> Result<Vec<Value>, String> {
        use backon::BlockingRetryable as _;
        let pauses = (1..=self.retries).map(|n| Duration::from_millis(20 << n.min(4)));
        (|| self.try_query(pipe))
            .retry(pauses)
            .sleep(std::thread::sleep)
            .call()
            .map_err(|last| format!("redis server {}: {last}", self.address))
    }

    fn try_query(&self, pipe: &Pipeline) -> Result<Vec<Value>, String> {
        let mut guard = self.connection.lock().map_err(|_| "connection lock poisoned")?;
        if guard.is_none() {
            *guard = Some(self.open().map_err(|e| e.to_string())?);
        }
        let connection = guard.as_mut().ok_or("no connection")?;
        let result = pipe.query::<Vec<Value>>(connection);
        match result {
            Ok(values) => Ok(values),
            Err(err) => {
                // The connection may be out of step with the server now; start afresh.
                *guard = None;
                Err(err.to_string())
            }
        }
    }

    fn open(&self) -> redis::RedisResult<Connection> {
        let connection = self.client.get_connection_with_timeout(self.timeout)?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    /// Every key matching `pattern`, by `SCAN`.
    pub(crate) fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>, String> {
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let mut pipe = redis::pipe();
            pipe.cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
            let reply = self.query(&pipe)?;
            let (next, batch) = match reply.as_slice() {
                [Value::Array(parts)] => match parts.as_slice() {
                    [next, Value::Array(batch)] => (next, batch),
                    _ => return Err(self.garbage("SCAN")),
                },
                _ => return Err(self.garbage("SCAN")),
            };
            for key in batch {
                keys.push(bytes(key).ok_or_else(|| self.garbage("SCAN"))?);
            }
            cursor = bytes(next)
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| self.garbage("SCAN"))?;
            if cursor == 0 {
                return Ok(keys);
            }
        }
    }

    /// The message for a reply of the wrong shape.
    pub(crate) fn garbage(&self, command: &str) -> String {
        format!("redis server {}: unexpected reply to {command}", self.address)
    }
}

/// The bytes of a bulk or simple string reply.
pub(crate) fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}
