//! The hub's HTTP server: routing, bearer-token users, JSON bodies with size limits,
//! streamed blob uploads and downloads, connection limits, idle timeouts and graceful
//! shutdown. Every rule of the model lives in [`HubService`] and [`crate::Hub`]; this file
//! maps requests to them and errors to statuses (401 unknown token, 404 unknown ids, 400
//! malformed JSON and invalid names, 422 JSON of the wrong shape, 409 state conflicts,
//! 413 bodies over the limit), each with a JSON body `{"error": ..., "category": ...}`.

use std::convert::Infallible;
use std::future::Future;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, TcpStream};

use crate::service::{HubService, blob_id, receive_blob};
use crate::store::{Query, SortBy};
use crate::sync::{ImportRequest, SyncRequest};
use crate::tokens::Tokens;
use crate::{Error, OPENAPI, Result};

/// How long connections get to finish their requests once shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The default listen address of `strata hub serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

/// Every route the server answers, as `(method, path pattern)`; `{id}` matches one segment.
/// A test checks each appears in `docs/hub-openapi.yaml`.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/openapi.yaml"),
    ("GET", "/v1/whoami"),
    ("GET", "/v1/volumesets"),
    ("GET", "/v1/volumesets/{id}"),
    ("GET", "/v1/volumesets/{id}/export"),
    ("POST", "/v1/volumesets/{id}/import"),
    ("POST", "/v1/volumesets/{id}/sync"),
    ("GET", "/v1/volumesets/{id}/snapshots"),
    ("GET", "/v1/volumesets/{id}/branches"),
    ("POST", "/v1/volumesets/{id}/grants"),
    ("POST", "/v1/volumesets/{id}/find-base"),
    ("GET", "/v1/snapshots/{id}"),
    ("POST", "/v1/blobs/missing"),
    ("PUT", "/v1/blobs/{id}"),
    ("GET", "/v1/blobs/{id}"),
];

/// How the server listens and what it accepts.
#[derive(Debug, Clone)]
pub struct HubServerConfig {
    /// `HOST:PORT`.
    pub listen: String,
    /// Connections served at once; more wait in the kernel's queue.
    pub max_connections: usize,
    /// A connection with no request beginning for this long is closed.
    pub idle_timeout: Duration,
    /// The largest JSON request body.
    pub max_body_bytes: usize,
    /// The largest blob upload.
    pub max_blob_bytes: u64,
}

impl Default for HubServerConfig {
    fn default() -> HubServerConfig {
        HubServerConfig {
            listen: DEFAULT_LISTEN.into(),
            max_connections: 256,
            idle_timeout: Duration::from_secs(60),
            max_body_bytes: 64 << 20,
            max_blob_bytes: 64 << 30,
        }
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

struct State {
    service: HubService,
    tokens: Tokens,
    config: HubServerConfig,
}

/// A bound hub server, not yet serving.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<State>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `config.listen`; requests are served from `service`, users from `tokens`.
    pub async fn bind(
        config: HubServerConfig,
        service: HubService,
        tokens: Tokens,
    ) -> Result<Server> {
        if config.max_connections == 0 || config.max_body_bytes == 0 {
            return Err(Error::InvalidArgument(
                "hub: max_connections and max_body_bytes must be positive".into(),
            ));
        }
        let listener = TcpListener::bind(config.listen.as_str())
            .await
            .map_err(|e| Error::io(format!("listen on {}", config.listen), e))?;
        let local_addr = listener.local_addr().map_err(|e| Error::io("local address", e))?;
        Ok(Server { listener, local_addr, state: Arc::new(State { service, tokens, config }) })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then lets connections finish their requests for
    /// up to [`SHUTDOWN_GRACE`].
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tracing::info!(addr = %self.local_addr, "hub serving");
        let shell = strata_net::Shell {
            grace: SHUTDOWN_GRACE,
            ..strata_net::Shell::new("hub", self.state.config.max_connections)
        };
        let state = self.state;
        strata_net::serve(&shell, self.listener, shutdown, |stream, peer, stopping| {
            serve_connection(state.clone(), stream, peer, stopping)
        })
        .await;
        tracing::info!("hub stopped");
        Ok(())
    }
}

async fn serve_connection(
    state: Arc<State>,
    stream: TcpStream,
    peer: String,
    stopping: strata_net::Stopping,
) {
    let idle = state.config.idle_timeout;
    let handler = service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(state, request).await) }
    });
    if let Err(err) = strata_net::http1(TokioIo::new(stream), handler, idle, stopping).await {
        tracing::debug!(%peer, "hub connection: {err}");
    }
}

/// A failed request: status and message.
struct Failure {
    status: StatusCode,
    message: String,
    category: String,
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        let status =
            StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Failure { status, message: err.to_string(), category: err.category().to_string() }
    }
}

fn failure(status: StatusCode, message: impl Into<String>) -> Failure {
    Failure {
        status,
        message: message.into(),
        category: status.canonical_reason().unwrap_or("error").to_lowercase(),
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

fn error_response(f: Failure) -> Response<Body> {
    let mut response =
        json_response(f.status, &serde_json::json!({ "error": f.message, "category": f.category }));
    if f.status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    response
}

/// Finds the route for `method` and `path`: its index and the `{id}` segment.
pub fn route(method: &str, path: &str) -> std::result::Result<(usize, Option<String>), StatusCode> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut path_matched = false;
    for (i, (m, pattern)) in ROUTES.iter().enumerate() {
        let parts: Vec<&str> = pattern.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut id = None;
        let ok = parts.iter().zip(&segments).all(|(p, s)| {
            if *p == "{id}" {
                id = Some(s.to_string());
                !s.is_empty()
            } else {
                p == s
            }
        });
        if ok {
            path_matched = true;
            if *m == method {
                return Ok((i, id));
            }
        }
    }
    Err(if path_matched { StatusCode::METHOD_NOT_ALLOWED } else { StatusCode::NOT_FOUND })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn listing_query(params: &[(String, String)]) -> std::result::Result<Query, Failure> {
    let mut query = Query::default();
    for (k, v) in params {
        let bad = |what: &str| {
            failure(StatusCode::BAD_REQUEST, format!("query parameter {k}={v:?}: {what}"))
        };
        match k.as_str() {
            "name" => query.name = Some(v.clone()),
            "branch" => query.branch = Some(v.clone()),
            "sort" => {
                query.sort = match v.as_str() {
                    "created" => SortBy::Created,
                    "name" => SortBy::Name,
                    "size" => SortBy::Size,
                    "depth" => SortBy::Depth,
                    _ => return Err(bad("expected created, name, size or depth")),
                }
            }
            "order" => {
                query.descending = match v.as_str() {
                    "asc" => false,
                    "desc" => true,
                    _ => return Err(bad("expected asc or desc")),
                }
            }
            "offset" => query.offset = v.parse().map_err(|_| bad("expected a number"))?,
            "limit" => query.limit = v.parse().map_err(|_| bad("expected a number"))?,
            _ => {}
        }
    }
    Ok(query)
}

async fn read_json<T: DeserializeOwned>(
    body: Incoming,
    limit: usize,
) -> std::result::Result<T, Failure> {
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            if err.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return Err(failure(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body over {limit} bytes"),
                ));
            }
            return Err(failure(
                StatusCode::BAD_REQUEST,
                format!("reading the request body: {err}"),
            ));
        }
    };
    serde_json::from_slice(&bytes).map_err(|err| match err.classify() {
        serde_json::error::Category::Data => failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("request body does not fit the API: {err}"),
        ),
        _ => failure(StatusCode::BAD_REQUEST, format!("malformed JSON in the request body: {err}")),
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::result::Result<T, Failure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(Failure::from),
        Err(err) => {
            Err(failure(StatusCode::INTERNAL_SERVER_ERROR, format!("handler failed: {err}")))
        }
    }
}

fn user_of(state: &State, request: &Request<Incoming>) -> std::result::Result<String, Failure> {
    let header = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return Err(Error::Unauthorized(
            "send `Authorization: Bearer TOKEN`; `strata hub token create USER` makes one".into(),
        )
        .into());
    };
    match state.tokens.user_for(token.trim()).map_err(Failure::from)? {
        Some(user) => Ok(user),
        None => Err(Error::Unauthorized(
            "unknown token; `strata hub token create USER` makes one".into(),
        )
        .into()),
    }
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let result = dispatch(state, request).await;
    match result {
        Ok(response) => response,
        Err(f) => {
            tracing::debug!(%method, %path, status = %f.status, "hub: {}", f.message);
            error_response(f)
        }
    }
}

#[derive(serde::Deserialize)]
struct GrantBody {
    user: String,
}

#[derive(serde::Deserialize)]
struct FindBaseBody {
    target: String,
    #[serde(default)]
    candidates: Vec<String>,
}

#[derive(serde::Deserialize, Serialize)]
struct BlobIds {
    ids: Vec<String>,
}

async fn dispatch(
    state: Arc<State>,
    request: Request<Incoming>,
) -> std::result::Result<Response<Body>, Failure> {
    let (index, id) = route(request.method().as_str(), request.uri().path()).map_err(|status| {
        failure(
            status,
            format!(
                "no route {} {}; GET /openapi.yaml lists them",
                request.method(),
                request.uri().path()
            ),
        )
    })?;
    let (_, pattern) = ROUTES[index];
    if pattern == "/openapi.yaml" {
        let mut response = Response::new(full(OPENAPI));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/yaml"));
        return Ok(response);
    }
    let user = user_of(&state, &request)?;
    let id = id.unwrap_or_default();
    let params = query_params(request.uri().query());
    let limit = state.config.max_body_bytes;
    let service = state.service.clone();
    match (request.method().clone(), pattern) {
        (_, "/v1/whoami") => ok(&serde_json::json!({ "user": user })),
        (_, "/v1/volumesets") => {
            let query = listing_query(&params)?;
            ok(&blocking(move || service.volsets(&user, &query)).await?)
        }
        (_, "/v1/volumesets/{id}") => ok(&blocking(move || service.volset_for(&user, &id)).await?),
        (_, "/v1/volumesets/{id}/export") => {
            let since = params.iter().find(|(k, _)| k == "since").map(|(_, v)| v.clone());
            let body = blocking(move || service.export_json(&user, &id, since.as_deref())).await?;
            let mut response = Response::new(full(body));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            Ok(response)
        }
        (_, "/v1/volumesets/{id}/import") => {
            let body: ImportRequest = read_json(request.into_body(), limit).await?;
            ok(&blocking(move || service.import(&user, &id, &body)).await?)
        }
        (_, "/v1/volumesets/{id}/sync") => {
            let body: SyncRequest = read_json(request.into_body(), limit).await?;
            ok(&blocking(move || service.sync(&user, &id, &body)).await?)
        }
        (_, "/v1/volumesets/{id}/snapshots") => {
            let query = listing_query(&params)?;
            ok(&blocking(move || {
                service.volset_for(&user, &id)?;
                service.hub.snapshots(&id, &query)
            })
            .await?)
        }
        (_, "/v1/volumesets/{id}/branches") => ok(&blocking(move || {
            service.volset_for(&user, &id)?;
            service.hub.branches(&id)
        })
        .await?),
        (_, "/v1/volumesets/{id}/grants") => {
            let body: GrantBody = read_json(request.into_body(), limit).await?;
            ok(&blocking(move || {
                let volset = service.volset_for(&user, &id)?;
                if volset.owner != user {
                    return Err(Error::FailedPrecondition(format!(
                        "only the owner {} may share the volume set",
                        volset.owner
                    )));
                }
                service.hub.grant(&id, &body.user)?;
                Ok(serde_json::json!({ "volumeset": id, "user": body.user }))
            })
            .await?)
        }
        (_, "/v1/volumesets/{id}/find-base") => {
            let body: FindBaseBody = read_json(request.into_body(), limit).await?;
            ok(&blocking(move || {
                service.volset_for(&user, &id)?;
                let base =
                    service.hub.find_non_missing_snapshot(&id, &body.target, &body.candidates)?;
                Ok(serde_json::json!({
                    "snapshot": base.as_ref().map(|b| b.0.clone()),
                    "blob": base.map(|b| b.1),
                }))
            })
            .await?)
        }
        (_, "/v1/snapshots/{id}") => ok(&blocking(move || {
            let snap = service.hub.snapshot(&id)?;
            service
                .volset_for(&user, &snap.volset_id)
                .map_err(|_| Error::NotFound(format!("no snapshot with id {id}")))?;
            Ok(snap)
        })
        .await?),
        (_, "/v1/blobs/missing") => {
            let body: BlobIds = read_json(request.into_body(), limit).await?;
            ok(&blocking(move || Ok(BlobIds { ids: service.missing_blobs(&user, &body.ids)? }))
                .await?)
        }
        (Method::PUT, "/v1/blobs/{id}") => upload(&state, user, &id, request.into_body()).await,
        (_, "/v1/blobs/{id}") => {
            let vsid = params.iter().find(|(k, _)| k == "volumeset").map(|(_, v)| v.clone()).ok_or_else(|| {
                failure(StatusCode::BAD_REQUEST, "GET /v1/blobs/{id} needs ?volumeset=ID, a volume set that refers to the blob")
            })?;
            download(service, user, vsid, id).await
        }
        _ => Err(failure(StatusCode::NOT_FOUND, "no such route")),
    }
}

fn ok<T: Serialize>(value: &T) -> std::result::Result<Response<Body>, Failure> {
    Ok(json_response(StatusCode::OK, value))
}

/// Streams an upload into the blob store; the bytes must hash to `id`. Once they did, `user`
/// may refer to the blob. A blob the hub holds already is received and checked all the
/// same unless `user` may use it already: having the bytes is what proves the right.
async fn upload(
    state: &State,
    user: String,
    id: &str,
    mut body: Incoming,
) -> std::result::Result<Response<Body>, Failure> {
    let blob = blob_id(id).map_err(Failure::from)?;
    let blobs = state.service.blobs.clone();
    let service = state.service.clone();
    let (who, name, have) = (user.clone(), id.to_string(), blob.clone());
    if blocking(move || Ok(service.blobs.has(&have) && service.may_use_blob(&who, &name)?)).await? {
        return Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "id": id, "stored": false }),
        ));
    }
    let (sender, writer) = receive_blob(blobs, blob.clone());
    let max = state.config.max_blob_bytes;
    let mut received = 0u64;
    let mut failed = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    received += data.len() as u64;
                    if received > max {
                        failed = Some(failure(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("blob over the limit of {max} bytes"),
                        ));
                        break;
                    }
                    if sender.send(data).await.is_err() {
                        break;
                    }
                }
            }
            Err(err) => {
                failed =
                    Some(failure(StatusCode::BAD_REQUEST, format!("upload interrupted: {err}")));
                break;
            }
        }
    }
    drop(sender);
    if let Some(f) = failed {
        // Dropping the writer without finishing removes its temporary file.
        let _ = writer.await;
        return Err(f);
    }
    match writer.await {
        Ok(Ok(len)) => {
            let service = state.service.clone();
            blocking(move || service.uploaded(&user, &blob)).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &serde_json::json!({ "id": id, "stored": true, "size": len }),
            ))
        }
        Ok(Err(err)) => Err(match err {
            Error::Corrupted(m) => {
                failure(StatusCode::UNPROCESSABLE_ENTITY, format!("uploaded blob rejected: {m}"))
            }
            other => other.into(),
        }),
        Err(err) => {
            Err(failure(StatusCode::INTERNAL_SERVER_ERROR, format!("blob writer failed: {err}")))
        }
    }
}

/// Streams a blob out of the store.
async fn download(
    service: HubService,
    user: String,
    vsid: String,
    id: String,
) -> std::result::Result<Response<Body>, Failure> {
    let (blob, file, size) = blocking(move || {
        let blob = service.check_blob_access(&user, &vsid, &id)?;
        let file = service.blobs.open_blob(&blob).map_err(Error::blob)?;
        let size = service.blobs.size(&blob).map_err(Error::blob)?;
        Ok((blob, file, size))
    })
    .await?;
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<std::result::Result<Frame<Bytes>, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        loop {
            let mut buf = vec![0u8; 256 << 10];
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if sender.blocking_send(Ok(Frame::data(Bytes::from(buf)))).is_err() {
                        return;
                    }
                    crate::service::count_transfer("out", n);
                }
                Err(err) => {
                    tracing::warn!(%blob, "hub: reading a blob: {err}");
                    let _ = sender.blocking_send(Err(err));
                    return;
                }
            }
        }
    });
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
    let mut response = Response::new(BodyExt::boxed(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
    response.headers_mut().insert(header::CONTENT_LENGTH, header::HeaderValue::from(size));
    Ok(response)
}
