//! A minimal NBD client for one thing: a flush barrier. It connects, negotiates (fixed
//! newstyle; STARTTLS first when asked), opens one export with `NBD_OPT_GO`, sends
//! `NBD_CMD_FLUSH`, waits for the reply and disconnects. Against a server that advertises
//! `CAN_MULTI_CONN` (strata's does), the reply means every write any connection had
//! completed before is durable: `strata vdisk snapshot` uses it to make a served disk's log
//! hold everything written before the snapshot.
//!
//! It reads nothing but option replies and one simple reply; it never asks for structured
//! replies, block sizes or metadata contexts, and bounds every reply it reads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::proto::{
    CLIENT_FIXED_NEWSTYLE, CLIENT_NO_ZEROES, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT,
    NBD_MAGIC, REPLY_MAGIC, REQUEST_MAGIC, SIMPLE_REPLY_MAGIC, cmd, opt, rep,
};
use crate::{Error, Result};

/// The longest option reply read; longer ones are refused, not buffered.
const MAX_REPLY: u32 = 64 * 1024;

/// Where an NBD server listens.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket.
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// TLS for the client: the rustls client configuration (`strata_net::tls::client_config`)
/// and the name the server's certificate is checked against.
#[derive(Clone)]
pub struct ClientTls {
    /// The rustls client configuration.
    pub config: Arc<tokio_rustls::rustls::ClientConfig>,
    /// The server's name, as in its certificate.
    pub server_name: String,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

/// Connects to the NBD server at `endpoint`, opens `export`, sends `NBD_CMD_FLUSH` and
/// waits for its reply, then disconnects. When it returns `Ok`, every write the server had
/// completed before the flush arrived is durable. Everything (connecting, negotiating, the
/// flush) must finish within `timeout`.
pub async fn flush_export(
    endpoint: &Endpoint,
    export: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<()> {
    let work = async {
        match endpoint {
            Endpoint::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| unreachable_server(endpoint, &e))?;
                let _ = stream.set_nodelay(true);
                flush_over(stream, export, tls).await
            }
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| unreachable_server(endpoint, &e))?;
                flush_over(stream, export, tls).await
            }
        }
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| {
        Error::Unavailable(format!(
            "NBD server {endpoint}: no flush of {export:?} within {timeout:?}"
        ))
    })?
}

/// Whether `err` says nothing listens at the server's address (a connection refused, or a
/// unix socket that is not there): the server is not running.
pub fn is_not_listening(err: &Error) -> bool {
    matches!(err, Error::Io { cause, .. } if matches!(
        cause.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
    ))
}

fn unreachable_server(endpoint: &Endpoint, cause: &std::io::Error) -> Error {
    Error::Io {
        what: format!("connect to the NBD server {endpoint}"),
        cause: std::io::Error::new(cause.kind(), cause.to_string()),
    }
}

async fn flush_over<S>(mut stream: S, export: &str, tls: Option<&ClientTls>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    greeting(&mut stream).await?;
    match tls {
        None => go_and_flush(stream, export).await,
        Some(tls) => {
            send_option(&mut stream, opt::STARTTLS, &[]).await?;
            match read_reply(&mut stream, opt::STARTTLS).await? {
                Reply::Ack => {}
                Reply::Error(kind, message) => return Err(option_error(kind, message, export)),
                Reply::Info => {
                    return Err(protocol("an INFO reply to STARTTLS".into()));
                }
            }
            let name =
                tokio_rustls::rustls::pki_types::ServerName::try_from(tls.server_name.clone())
                    .map_err(|e| {
                        Error::InvalidArgument(format!(
                            "TLS server name {:?}: {e}",
                            tls.server_name
                        ))
                    })?;
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let stream = connector.connect(name, stream).await.map_err(|e| {
                Error::Unavailable(format!(
                    "TLS with the NBD server failed: {e} (is the CA right? give --ca-file)"
                ))
            })?;
            go_and_flush(stream, export).await
        }
    }
}

/// Reads the server's greeting and answers with the client flags (`NO_ZEROES` when the
/// server offers it; `NBD_OPT_GO` never gets the zeros anyway).
async fn greeting<S>(stream: &mut S) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = [0u8; 18];
    stream.read_exact(&mut hello).await.map_err(io("read the NBD greeting"))?;
    let magic = u64::from_be_bytes(hello[0..8].try_into().unwrap_or_default());
    let newstyle = u64::from_be_bytes(hello[8..16].try_into().unwrap_or_default());
    if magic != NBD_MAGIC || newstyle != IHAVEOPT {
        return Err(protocol("not an NBD newstyle server".into()));
    }
    let flags = u16::from_be_bytes([hello[16], hello[17]]);
    if flags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(protocol("the server does not speak fixed newstyle".into()));
    }
    let no_zeroes = flags & FLAG_NO_ZEROES != 0;
    let mut client = CLIENT_FIXED_NEWSTYLE;
    if no_zeroes {
        client |= CLIENT_NO_ZEROES;
    }
    stream.write_all(&client.to_be_bytes()).await.map_err(io("send the client flags"))
}

async fn go_and_flush<S>(mut stream: S, export: &str) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = export.as_bytes();
    let name_len = u32::try_from(name.len())
        .map_err(|_| Error::InvalidArgument(format!("export name {export:?} is too long")))?;
    let mut data = Vec::with_capacity(6 + name.len());
    data.extend_from_slice(&name_len.to_be_bytes());
    data.extend_from_slice(name);
    data.extend_from_slice(&0u16.to_be_bytes());
    send_option(&mut stream, opt::GO, &data).await?;
    loop {
        match read_reply(&mut stream, opt::GO).await? {
            Reply::Info => continue,
            Reply::Ack => break,
            Reply::Error(kind, message) => return Err(option_error(kind, message, export)),
        }
    }
    let cookie = 0x5354_5241_5441_u64;
    let mut request = Vec::with_capacity(28);
    request.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
    request.extend_from_slice(&0u16.to_be_bytes());
    request.extend_from_slice(&cmd::FLUSH.to_be_bytes());
    request.extend_from_slice(&cookie.to_be_bytes());
    request.extend_from_slice(&0u64.to_be_bytes());
    request.extend_from_slice(&0u32.to_be_bytes());
    stream.write_all(&request).await.map_err(io("send NBD_CMD_FLUSH"))?;
    stream.flush().await.map_err(io("send NBD_CMD_FLUSH"))?;
    let mut reply = [0u8; 16];
    stream.read_exact(&mut reply).await.map_err(io("read the flush's reply"))?;
    let magic = u32::from_be_bytes(reply[0..4].try_into().unwrap_or_default());
    let errno = u32::from_be_bytes(reply[4..8].try_into().unwrap_or_default());
    let answered = u64::from_be_bytes(reply[8..16].try_into().unwrap_or_default());
    if magic != SIMPLE_REPLY_MAGIC || answered != cookie {
        return Err(protocol(format!("a reply of magic {magic:#x} to the flush")));
    }
    // The disconnect is a courtesy: the flush is what mattered.
    let mut disc = request;
    disc[6..8].copy_from_slice(&cmd::DISC.to_be_bytes());
    let _ = stream.write_all(&disc).await;
    let _ = stream.shutdown().await;
    if errno != 0 {
        return Err(Error::Unavailable(format!(
            "the NBD server answered the flush of {export:?} with {} (errno {errno})",
            std::io::Error::from_raw_os_error(i32::try_from(errno).unwrap_or(i32::MAX))
        )));
    }
    Ok(())
}

/// An option reply, as far as this client cares.
enum Reply {
    Ack,
    Info,
    Error(u32, String),
}

async fn send_option<S>(stream: &mut S, option: u32, data: &[u8]) -> Result<()>
where
    S: AsyncWrite + Unpin,
{
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut message = Vec::with_capacity(16 + data.len());
    message.extend_from_slice(&IHAVEOPT.to_be_bytes());
    message.extend_from_slice(&option.to_be_bytes());
    message.extend_from_slice(&len.to_be_bytes());
    message.extend_from_slice(data);
    stream.write_all(&message).await.map_err(io("send an NBD option"))?;
    stream.flush().await.map_err(io("send an NBD option"))
}

async fn read_reply<S>(stream: &mut S, option: u32) -> Result<Reply>
where
    S: AsyncRead + Unpin,
{
    let mut header = [0u8; 20];
    stream.read_exact(&mut header).await.map_err(io("read an NBD option reply"))?;
    let magic = u64::from_be_bytes(header[0..8].try_into().unwrap_or_default());
    let answered = u32::from_be_bytes(header[8..12].try_into().unwrap_or_default());
    let kind = u32::from_be_bytes(header[12..16].try_into().unwrap_or_default());
    let len = u32::from_be_bytes(header[16..20].try_into().unwrap_or_default());
    if magic != REPLY_MAGIC || answered != option {
        return Err(protocol(format!("an option reply of magic {magic:#x} for option {answered}")));
    }
    if len > MAX_REPLY {
        return Err(protocol(format!("an option reply of {len} bytes")));
    }
    let mut data = vec![0u8; len as usize];
    stream.read_exact(&mut data).await.map_err(io("read an NBD option reply"))?;
    Ok(match kind {
        rep::ACK => Reply::Ack,
        rep::INFO => Reply::Info,
        k if k & (1 << 31) != 0 => Reply::Error(k, String::from_utf8_lossy(&data).into_owned()),
        other => return Err(protocol(format!("an option reply of type {other}"))),
    })
}

fn option_error(kind: u32, message: String, export: &str) -> Error {
    let said = if message.is_empty() { String::new() } else { format!(": {message}") };
    match kind {
        rep::ERR_UNKNOWN => Error::NotFound(export.to_string()),
        rep::ERR_TLS_REQD => Error::FailedPrecondition(format!(
            "the NBD server requires TLS{said}; give the CA certificate to trust (--ca-file)"
        )),
        rep::ERR_SHUTDOWN => Error::Unavailable(format!("the NBD server is shutting down{said}")),
        _ => Error::FailedPrecondition(format!(
            "the NBD server refused to open {export:?} (reply {:#x}){said}",
            kind
        )),
    }
}

fn protocol(what: String) -> Error {
    Error::Unavailable(format!("NBD protocol error: the server sent {what}"))
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |cause| Error::Io { what: what.to_string(), cause }
}
