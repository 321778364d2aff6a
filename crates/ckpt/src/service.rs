//! The service: what every request shares, and dispatch by method to the endpoints.
//!
//! A request is parsed first (its form only), its body read within the limits, then it
//! takes its ticket in the arrival order of its storage URL, is authorized by the object
//! store, and applies its effect on its turn. This is not where connections are handled:
//! see `server`.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use strata_kv::Store;

use crate::authorize::{Authorized, Authorizer};
use crate::endpoint::{delete::Delete, get::Get, head::Head, post::Post, put::Put};
use crate::order::Access;
use crate::request::{self, Target};
use crate::response::{self, HttpResponse};
use crate::staging::{Staging, Turn};
use crate::store::Committed;
use crate::{CkptConfig, Error, Result};

/// What every request of one server shares.
#[derive(Debug)]
pub(crate) struct Service {
    authorizer: Authorizer,
    staging: Staging,
    committed: Committed,
    /// The largest request body, and the largest object a GET returns.
    max_body: usize,
    /// How long a request body may take to arrive.
    body_timeout: Duration,
}

impl Service {
    /// A service on `store` configured by `config` (validated by the caller).
    pub(crate) fn new(config: &CkptConfig, store: Store) -> Result<Service> {
        Ok(Service {
            authorizer: Authorizer::new(config)?,
            staging: Staging::new(config.transaction_timeout(), config.max_staged_bytes),
            committed: Committed::new(store),
            max_body: config.max_body_bytes,
            body_timeout: config.idle_timeout(),
        })
    }

    /// Answers one request; errors become their status here.
    pub(crate) async fn handle<B>(&self, request: Request<B>) -> HttpResponse
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = std::time::Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let response = match self.dispatch(request).await {
            Ok(response) => response,
            Err(err) => response::error(&err),
        };
        tracing::debug!(%method, path, status = response.status().as_u16(), "ckpt request");
        observe(&method, response.status(), started);
        response
    }

    async fn dispatch<B>(&self, request: Request<B>) -> Result<HttpResponse>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        match parts.method {
            Method::HEAD => Ok(Head::parse(&parts)?.encode()),
            Method::GET => Ok(Get::parse(&parts)?.apply(self).await?.encode()),
            Method::PUT => {
                let put = Put::parse(&parts)?;
                let value =
                    request::body(body, &parts.headers, self.max_body, self.body_timeout).await?;
                Ok(put.apply(self, value).await?.encode())
            }
            Method::DELETE => Ok(Delete::parse(&parts)?.apply(self).await?.encode()),
            Method::POST => Ok(Post::parse(&parts)?.apply(self).await?.encode()),
            other => Err(Error::MethodNotAllowed(other.to_string())),
        }
    }

    /// Takes the request's ticket, has the object store authorize it, and waits for its
    /// turn. Authorizations of requests for one URL overlap; the effects of conflicting
    /// requests do not.
    pub(crate) async fn authorize_in_turn(
        &self,
        target: &Target,
        access: Access,
    ) -> Result<(Authorized, Turn)> {
        let ticket = self.staging.arrive(&target.url, access);
        let authorized = self.authorizer.authorize(&target.url, &target.token).await?;
        Ok((authorized, ticket.turn().await))
    }

    pub(crate) fn committed(&self) -> &Committed {
        &self.committed
    }

    pub(crate) fn staging(&self) -> &Staging {
        &self.staging
    }

    pub(crate) fn max_body(&self) -> usize {
        self.max_body
    }
}

/// Records an answered request in the process's metrics (`strata_ckpt_*`, documented in
/// docs/operations.md). Only the methods the protocol has get their own label.
fn observe(method: &Method, status: http::StatusCode, started: std::time::Instant) {
    let method = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        _ => "other",
    };
    metrics::histogram!("strata_ckpt_request_duration_seconds", "method" => method)
        .record(started.elapsed());
    let code = status.as_str().to_string();
    metrics::counter!("strata_ckpt_requests_total", "method" => method, "code" => code)
        .increment(1);
}
