//! The hub's HTTP server: an axum router over bearer-token users, JSON bodies with size
//! limits, streamed blob uploads and downloads; connections (limits, idle timeouts,
//! graceful shutdown) are `strata_net`'s, with optional TLS (rustls). Every rule of the
//! model lives in [`HubService`] and [`crate::Hub`]; this file maps requests to them and
//! errors to statuses (401 missing, unknown or revoked token, 404 unknown ids and routes,
//! 405 wrong method, 400 malformed JSON and invalid names, 422 JSON of the wrong shape,
//! 409 state conflicts, 413 bodies over the limit), each with a JSON body
//! `{"error": ..., "category": ...}`.

use std::future::Future;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, RawQuery, State as Shared};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

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
/// The server's router serves exactly these; tests check each appears in
/// `docs/hub-openapi.yaml` and reaches a handler.
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
    /// The server's certificate chain (PEM): with `tls_key`, the hub speaks https only.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for HubServerConfig {
    fn default() -> HubServerConfig {
        HubServerConfig {
            listen: DEFAULT_LISTEN.into(),
            max_connections: 256,
            idle_timeout: Duration::from_secs(60),
            max_body_bytes: 64 << 20,
            max_blob_bytes: 64 << 30,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl HubServerConfig {
    /// The TLS acceptor of `tls_cert` and `tls_key`: none when neither is given, an error
    /// naming the missing one when only one is.
    fn acceptor(&self) -> Result<Option<TlsAcceptor>> {
        let given = |path: &Option<PathBuf>| path.clone().filter(|p| !p.as_os_str().is_empty());
        match (given(&self.tls_cert), given(&self.tls_key)) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => {
                let mut config = strata_net::tls::server_config(&cert, &key, None)
                    .map_err(|e| Error::InvalidArgument(format!("hub TLS: {e}")))?;
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Ok(Some(TlsAcceptor::from(Arc::new(config))))
            }
            (cert, _) => Err(Error::InvalidArgument(format!(
                "hub TLS needs both a certificate and its key; missing: {}",
                if cert.is_none() { "tls_cert (--tls-cert)" } else { "tls_key (--tls-key)" }
            ))),
        }
    }
}

/// What every request's handler shares.
#[derive(Debug)]
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
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
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
        let tls = config.acceptor()?;
        let listener = TcpListener::bind(config.listen.as_str())
            .await
            .map_err(|e| Error::io(format!("listen on {}", config.listen), e))?;
        let local_addr = listener.local_addr().map_err(|e| Error::io("local address", e))?;
        let state = Arc::new(State { service, tokens, config });
        Ok(Server { listener, local_addr, state, tls })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL clients reach the server at: `http://ADDR`, or `https://ADDR` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Serves until `shutdown` completes, then lets connections finish their requests for
    /// up to [`SHUTDOWN_GRACE`].
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tracing::info!(addr = %self.local_addr, tls = self.tls.is_some(), "hub serving");
        let shell = strata_net::Shell {
            grace: SHUTDOWN_GRACE,
            ..strata_net::Shell::new("hub", self.state.config.max_connections)
        };
        let idle = self.state.config.idle_timeout;
        let (app, tls) = (router(self.state), self.tls);
        strata_net::serve(&shell, self.listener, shutdown, |stream, peer, stopping| {
            serve_connection(app.clone(), tls.clone(), idle, stream, peer, stopping)
        })
        .await;
        tracing::info!("hub stopped");
        Ok(())
    }
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

async fn serve_connection(
    app: Router,
    tls: Option<TlsAcceptor>,
    idle: Duration,
    stream: TcpStream,
    peer: String,
    stopping: strata_net::Stopping,
) {
    let Some(acceptor) = tls else {
        return serve_http(app, TokioIo::new(stream), idle, peer, stopping).await;
    };
    // A client speaking plain HTTP to a TLS hub is told so, in plain HTTP.
    let mut first = [0u8; 1];
    match tokio::time::timeout(idle, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] != TLS_HANDSHAKE => {
            let refuse = service_fn(|_request: Request<Incoming>| async {
                let mut response = Failure {
                    status: StatusCode::BAD_REQUEST,
                    message: "this hub serves https only; use an https:// URL".into(),
                    category: Error::InvalidArgument(String::new()).category().to_string(),
                }
                .into_response();
                response
                    .headers_mut()
                    .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
                Ok::<_, std::convert::Infallible>(response)
            });
            let io = TokioIo::new(stream);
            if let Err(err) = strata_net::http1(io, refuse, idle, stopping).await {
                tracing::debug!(%peer, "hub: plain http on the TLS port: {err}");
            }
            return;
        }
        Ok(Ok(_)) => {}
        Ok(Err(err)) => return tracing::debug!(%peer, "hub connection: {err}"),
        Err(_) => return,
    }
    match tokio::time::timeout(idle, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => serve_http(app, TokioIo::new(stream), idle, peer, stopping).await,
        Ok(Err(err)) => tracing::debug!(%peer, "hub tls handshake: {err}"),
        Err(_) => tracing::debug!(%peer, "hub tls handshake timed out"),
    }
}

async fn serve_http<I>(
    app: Router,
    io: I,
    idle: Duration,
    peer: String,
    stopping: strata_net::Stopping,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |mut request: Request<Incoming>| {
        trim_trailing_slash(&mut request);
        app.clone().oneshot(request)
    });
    if let Err(err) = strata_net::http1(io, service, idle, stopping).await {
        tracing::debug!(%peer, "hub connection: {err}");
    }
}

/// `/v1/whoami/` is `/v1/whoami`.
fn trim_trailing_slash(request: &mut Request<Incoming>) {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let rebuilt = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = rebuilt.parse::<Uri>() {
            *request.uri_mut() = uri;
        }
    }
}

/// The router: every route of [`ROUTES`], a JSON 404 for other paths and a JSON 405 for
/// other methods.
fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/openapi.yaml", get(openapi))
        .route("/v1/whoami", get(whoami))
        .route("/v1/volumesets", get(volsets))
        .route("/v1/volumesets/{id}", get(volset))
        .route("/v1/volumesets/{id}/export", get(export))
        .route("/v1/volumesets/{id}/import", post(import))
        .route("/v1/volumesets/{id}/sync", post(sync))
        .route("/v1/volumesets/{id}/snapshots", get(snapshots))
        .route("/v1/volumesets/{id}/branches", get(branches))
        .route("/v1/volumesets/{id}/grants", post(grant))
        .route("/v1/volumesets/{id}/find-base", post(find_base))
        .route("/v1/snapshots/{id}", get(snapshot))
        .route("/v1/blobs/missing", post(missing_blobs))
        .route("/v1/blobs/{id}", get(download).put(upload))
        .fallback(|method: Method, uri: Uri| async move {
            no_route(StatusCode::NOT_FOUND, &method, &uri)
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            no_route(StatusCode::METHOD_NOT_ALLOWED, &method, &uri)
        })
        .with_state(state)
}

fn no_route(status: StatusCode, method: &Method, uri: &Uri) -> Failure {
    failure(status, format!("no route {method} {}; GET /openapi.yaml lists them", uri.path()))
}

/// A failed request: status and message.
#[derive(Debug)]
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

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        tracing::debug!(status = %self.status, "hub: {}", self.message);
        let body = serde_json::json!({ "error": self.message, "category": self.category });
        let mut response = json_response(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type Answer = std::result::Result<Response, Failure>;

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    with_type(status, Body::from(body), "application/json")
}

fn with_type(status: StatusCode, body: Body, content_type: &'static str) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    response
}

fn ok<T: Serialize>(value: &T) -> Answer {
    Ok(json_response(StatusCode::OK, value))
}

/// The user of the request's bearer token.
struct User(String);

impl FromRequestParts<Arc<State>> for User {
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<State>,
    ) -> std::result::Result<User, Failure> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return Err(Error::Unauthorized(
                "send `Authorization: Bearer TOKEN`; `strata hub token create USER` makes one"
                    .into(),
            )
            .into());
        };
        match state.tokens.user_for(token.trim())? {
            Some(user) => Ok(User(user)),
            None => Err(Error::Unauthorized(
                "unknown token: it was never made here or has been revoked; \
                 `strata hub token create USER` makes one"
                    .into(),
            )
            .into()),
        }
    }
}

/// The `{id}` segment of the path, percent-decoded.
struct Id(String);

impl FromRequestParts<Arc<State>> for Id {
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<State>,
    ) -> std::result::Result<Id, Failure> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Id(id)),
            Err(err) => Err(failure(StatusCode::BAD_REQUEST, format!("the path's id: {err}"))),
        }
    }
}

/// The query string's parameters, percent-decoded, in order.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
}

impl FromRequestParts<Arc<State>> for Params {
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<State>,
    ) -> std::result::Result<Params, Failure> {
        let Ok(RawQuery(query)) = RawQuery::from_request_parts(parts, state).await;
        let params = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Params(params))
    }
}

fn listing_query(params: &Params) -> std::result::Result<Query, Failure> {
    let mut query = Query::default();
    for (k, v) in &params.0 {
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
    body: Body,
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

async fn openapi() -> Response {
    with_type(StatusCode::OK, Body::from(OPENAPI), "application/yaml")
}

async fn whoami(User(user): User) -> Answer {
    ok(&serde_json::json!({ "user": user }))
}

async fn volsets(Shared(s): Shared<Arc<State>>, User(user): User, params: Params) -> Answer {
    let query = listing_query(&params)?;
    let service = s.service.clone();
    ok(&blocking(move || service.volsets(&user, &query)).await?)
}

async fn volset(Shared(s): Shared<Arc<State>>, User(user): User, Id(id): Id) -> Answer {
    let service = s.service.clone();
    ok(&blocking(move || service.volset_for(&user, &id)).await?)
}

async fn export(
    Shared(s): Shared<Arc<State>>,
    User(user): User,
    Id(id): Id,
    params: Params,
) -> Answer {
    let since = params.get("since");
    let service = s.service.clone();
    let body = blocking(move || service.export_json(&user, &id, since.as_deref())).await?;
    Ok(with_type(StatusCode::OK, Body::from(body), "application/json"))
}

async fn import(Shared(s): Shared<Arc<State>>, User(user): User, Id(id): Id, body: Body) -> Answer {
    let body: ImportRequest = read_json(body, s.config.max_body_bytes).await?;
    let service = s.service.clone();
    ok(&blocking(move || service.import(&user, &id, &body)).await?)
}

async fn sync(Shared(s): Shared<Arc<State>>, User(user): User, Id(id): Id, body: Body) -> Answer {
    let body: SyncRequest = read_json(body, s.config.max_body_bytes).await?;
    let service = s.service.clone();
    ok(&blocking(move || service.sync(&user, &id, &body)).await?)
}

async fn snapshots(
    Shared(s): Shared<Arc<State>>,
    User(user): User,
    Id(id): Id,
    params: Params,
) -> Answer {
    let query = listing_query(&params)?;
    let service = s.service.clone();
    ok(&blocking(move || {
        service.volset_for(&user, &id)?;
        service.hub.snapshots(&id, &query)
    })
    .await?)
}

async fn branches(Shared(s): Shared<Arc<State>>, User(user): User, Id(id): Id) -> Answer {
    let service = s.service.clone();
    ok(&blocking(move || {
        service.volset_for(&user, &id)?;
        service.hub.branches(&id)
    })
    .await?)
}

async fn grant(Shared(s): Shared<Arc<State>>, User(user): User, Id(id): Id, body: Body) -> Answer {
    let body: GrantBody = read_json(body, s.config.max_body_bytes).await?;
    let service = s.service.clone();
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

async fn find_base(
    Shared(s): Shared<Arc<State>>,
    User(user): User,
    Id(id): Id,
    body: Body,
) -> Answer {
    let body: FindBaseBody = read_json(body, s.config.max_body_bytes).await?;
    let service = s.service.clone();
    ok(&blocking(move || {
        service.volset_for(&user, &id)?;
        let base = service.hub.find_non_missing_snapshot(&id, &body.target, &body.candidates)?;
        Ok(serde_json::json!({
            "snapshot": base.as_ref().map(|b| b.0.clone()),
            "blob": base.map(|b| b.1),
        }))
    })
    .await?)
}

async fn snapshot(Shared(s): Shared<Arc<State>>, User(user): User, Id(id): Id) -> Answer {
    let service = s.service.clone();
    ok(&blocking(move || {
        let snap = service.hub.snapshot(&id)?;
        service
            .volset_for(&user, &snap.volset_id)
            .map_err(|_| Error::NotFound(format!("no snapshot with id {id}")))?;
        Ok(snap)
    })
    .await?)
}

async fn missing_blobs(Shared(s): Shared<Arc<State>>, User(user): User, body: Body) -> Answer {
    let body: BlobIds = read_json(body, s.config.max_body_bytes).await?;
    let service = s.service.clone();
    ok(&blocking(move || Ok(BlobIds { ids: service.missing_blobs(&user, &body.ids)? })).await?)
}

/// Streams an upload into the blob store; the bytes must hash to `id`. Once they did, `user`
/// may refer to the blob. A blob the hub holds already is received and checked all the
/// same unless `user` may use it already: having the bytes is what proves the right.
async fn upload(
    Shared(state): Shared<Arc<State>>,
    User(user): User,
    Id(id): Id,
    mut body: Body,
) -> Answer {
    let id = id.as_str();
    let blob = blob_id(id)?;
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
    Shared(state): Shared<Arc<State>>,
    User(user): User,
    Id(id): Id,
    params: Params,
) -> Answer {
    let vsid = params.get("volumeset").ok_or_else(|| {
        failure(
            StatusCode::BAD_REQUEST,
            "GET /v1/blobs/{id} needs ?volumeset=ID, a volume set that refers to the blob",
        )
    })?;
    let service = state.service.clone();
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
    let mut response = with_type(StatusCode::OK, Body::new(body), "application/octet-stream");
    response.headers_mut().insert(header::CONTENT_LENGTH, header::HeaderValue::from(size));
    Ok(response)
}
