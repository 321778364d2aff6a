//! Bounding the connections the server serves at once: each accepted stream holds a
//! semaphore permit until it is closed, and no connection is accepted while none is free
//! (clients wait in the listen backlog). Not the limit on calls per connection: tonic's
//! `concurrency_limit_per_connection` is that.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, UdsConnectInfo};

/// How long to wait after a failed accept before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// An accepted connection and the permit it holds for as long as it lives.
#[derive(Debug)]
pub(crate) struct Limited {
    stream: UnixStream,
    /// Released when tonic drops the connection, letting the next one in.
    _permit: OwnedSemaphorePermit,
}

/// The accepted connections of `listener`, at most `max` alive at once. Each item waits
/// for a free permit first, then for a client.
pub(crate) fn incoming(
    listener: UnixListener,
    max: usize,
) -> impl Stream<Item = io::Result<Limited>> {
    let listener = Arc::new(listener);
    let permits = Arc::new(Semaphore::new(max.max(1)));
    tokio_stream::iter(std::iter::repeat(())).then(move |()| {
        let (listener, permits) = (listener.clone(), permits.clone());
        async move {
            let permit = permits
                .acquire_owned()
                .await
                .map_err(|_| io::Error::other("connection limit closed"))?;
            match listener.accept().await {
                Ok((stream, _)) => Ok(Limited { stream, _permit: permit }),
                Err(err) => {
                    // tonic logs and skips a failed accept; pausing keeps a lasting cause
                    // (out of file descriptors) from turning the loop into a busy one.
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    Err(err)
                }
            }
        }
    })
}

impl Connected for Limited {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> UdsConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
