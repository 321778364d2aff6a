//! Authorization by the object store: a GET of the storage URL with the caller's token
//! (and, with `authorization = "container"`, a HEAD of its container too).
//!
//! A storage URL that is not on a configured object store (`storage_hosts`) is refused
//! before any request leaves the service, so a caller cannot make the service fetch an
//! address of its choosing with its token and hand back the body.
//!
//! Any 2xx authorizes, and its body is what a GET falls back to when no value is committed.
//! 401, 403 and 404 are answers about the request and are passed on at once. Anything that
//! may pass (no connection, a timeout, 5xx, 429) is retried with exponential backoff; when
//! the retries run out the store is unavailable. A semaphore bounds the requests in flight
//! to the store to `swift_connection_pool_size`. This module knows nothing of staging or of
//! what the request will do once authorized.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tokio::sync::Semaphore;

use crate::config::Authorization;
use crate::http_client::{self, ClientSettings, HttpClient};
use crate::names::StoragePrefix;
use crate::{CkptConfig, Error, Result, StorageUrl};

/// The longest a TCP connect to the store may take, within `swift_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Authorizes requests against the object store. Shared by every request of a server.
#[derive(Debug)]
pub(crate) struct Authorizer {
    client: HttpClient,
    /// One permit per request in flight to the store, `swift_connection_pool_size` in all;
    /// held for one attempt, not across the pause before a retry.
    in_flight: Semaphore,
    /// The whole of one attempt, connect to last body byte.
    timeout: Duration,
    retry: RetryPolicy,
    /// The largest object body kept; bigger ones cannot be returned by a GET.
    max_body: usize,
    /// The object stores requests may go to (`storage_hosts`).
    stores: Vec<StoragePrefix>,
    /// Whether the container is probed too.
    authorization: Authorization,
}

/// When to retry a failed request to the store, and how long to wait before each retry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// The pause before the first retry.
    pub(crate) delay: Duration,
    /// How much longer each further pause is.
    pub(crate) backoff: f64,
    /// How many retries follow the first attempt.
    pub(crate) limit: u32,
}

/// A 2xx answer of the store: the object's content, when it fit the limit.
#[derive(Debug, Clone)]
pub(crate) struct Authorized {
    /// The body of the store's GET, `None` when it was larger than `max_body_bytes`.
    pub(crate) object: Option<Bytes>,
}

/// One attempt's outcome that deserves another try, with what to report if none is left.
struct Transient(String);

/// How one attempt failed: worth another try, or not.
enum Failed {
    /// The store may answer on a retry.
    Transient(Transient),
    /// Retrying cannot help.
    Final(Error),
}

impl RetryPolicy {
    /// The pause before retry `n` (1-based): `delay * backoff^(n-1)`, with ±20 % jitter so
    /// clients that failed together do not retry together.
    pub(crate) fn pause(&self, n: u32) -> Duration {
        let exponent = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.delay.as_secs_f64() * self.backoff.powi(exponent);
        Duration::try_from_secs_f64(base * (0.8 + 0.4 * fastrand::f64()))
            .unwrap_or(Duration::from_secs(3600))
    }
}

impl Authorizer {
    /// An authorizer with the store settings of `config`.
    pub(crate) fn new(config: &CkptConfig) -> Result<Authorizer> {
        let tls = crate::tls::client_config(config.extra_ca())?;
        let settings = ClientSettings {
            max_idle_per_host: config.swift_connection_pool_size,
            idle_timeout: Duration::from_secs(60),
            connect_timeout: CONNECT_TIMEOUT.min(config.swift_timeout()),
        };
        Ok(Authorizer {
            client: http_client::build(tls, &settings),
            in_flight: Semaphore::new(config.swift_connection_pool_size),
            timeout: config.swift_timeout(),
            retry: RetryPolicy {
                delay: config.swift_retry_delay(),
                backoff: config.swift_retry_exp_backoff,
                limit: config.swift_retry_limit,
            },
            max_body: config.max_body_bytes,
            stores: config.storage_prefixes()?,
            authorization: config.authorization,
        })
    }

    /// Checks that `url` is on a configured object store, then GETs it with `token` (and
    /// HEADs its container, if so configured), retrying what may pass, and says whether
    /// that authorizes.
    pub(crate) async fn authorize(&self, url: &StorageUrl, token: &str) -> Result<Authorized> {
        if !self.stores.iter().any(|store| store.admits(url)) {
            return Err(Error::StorageUrlNotAllowed { url: url.to_string() });
        }
        let authorized = self.request(Method::GET, url, token).await?;
        if self.authorization == Authorization::Container {
            let container =
                url.container().ok_or_else(|| Error::NoContainer { url: url.to_string() })?;
            self.request(Method::HEAD, &container, token).await?;
        }
        Ok(authorized)
    }

    /// Sends `method` to `url` with `token`, retrying what may pass: up to `limit` retries,
    /// after the pauses of [`RetryPolicy::pause`].
    async fn request(&self, method: Method, url: &StorageUrl, token: &str) -> Result<Authorized> {
        use backon::Retryable as _;
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let pauses = (1..=self.retry.limit).map(|n| self.retry.pause(n));
        let once = || async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match self.attempt(method.clone(), url, token).await {
                Ok(Ok(authorized)) => Ok(authorized),
                Ok(Err(transient)) => Err(Failed::Transient(transient)),
                Err(err) => Err(Failed::Final(err)),
            }
        };
        let outcome = once
            .retry(pauses)
            .sleep(tokio::time::sleep)
            .when(|failed| matches!(failed, Failed::Transient(_)))
            .notify(|failed, pause| {
                if let Failed::Transient(Transient(cause)) = failed {
                    let attempts = attempts.load(std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(%url, attempts, cause, ?pause, "object store request failed; retrying");
                }
            })
            .await;
        outcome.map_err(|failed| match failed {
            Failed::Final(err) => err,
            Failed::Transient(Transient(cause)) => Error::StoreUnavailable {
                url: url.to_string(),
                attempts: attempts.into_inner(),
                cause,
            },
        })
    }

    /// One GET: `Ok(Ok(_))` authorizes, `Ok(Err(_))` may pass on a retry, `Err(_)` is final.
    async fn attempt(
        &self,
        method: Method,
        url: &StorageUrl,
        token: &str,
    ) -> Result<std::result::Result<Authorized, Transient>> {
        let request = Request::builder()
            .method(method)
            .uri(url.as_str())
            .header("x-auth-token", token)
            .body(Full::new(Bytes::new()))
            .map_err(|err| Error::InvalidRequest(format!("X-Auth-Token: {err}")))?;
        let _permit = self.in_flight.acquire().await.map_err(|_| Error::StoreUnavailable {
            url: url.to_string(),
            attempts: 0,
            cause: "the service is shutting down".into(),
        })?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|err| {
                let cause = std::error::Error::source(&err)
                    .map_or(err.to_string(), |source| format!("{err}: {source}"));
                Transient(cause)
            })?;
            let status = response.status();
            let body = match Limited::new(response.into_body(), self.max_body).collect().await {
                Ok(collected) => Some(collected.to_bytes()),
                Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => None,
                Err(err) => return Err(Transient(format!("reading the object: {err}"))),
            };
            Ok::<_, Transient>((status, body))
        };
        let (status, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => return Ok(Err(Transient(format!("no answer within {:?}", self.timeout)))),
            Ok(Err(transient)) => return Ok(Err(transient)),
            Ok(Ok(answer)) => answer,
        };
        let url = url.to_string();
        match status {
            s if s.is_success() => Ok(Ok(Authorized { object: body })),
            StatusCode::UNAUTHORIZED => {
                Err(Error::Unauthorized { url, reason: "the object store answered 401" })
            }
            StatusCode::FORBIDDEN => Err(Error::Forbidden { url }),
            StatusCode::NOT_FOUND => Err(Error::ObjectNotFound { url }),
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                Ok(Err(Transient(format!("the object store answered {s}"))))
            }
            s => Err(Error::StoreRefused { url, status: s.as_u16() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_by_the_backoff_within_the_jitter() {
        let policy = RetryPolicy { delay: Duration::from_millis(100), backoff: 2.0, limit: 5 };
        for (n, base) in [(1, 100.0), (2, 200.0), (3, 400.0)] {
            let pause = policy.pause(n).as_secs_f64() * 1000.0;
            assert!(pause >= base * 0.8 - 0.01 && pause <= base * 1.2 + 0.01, "{n}: {pause}");
        }
    }
}
