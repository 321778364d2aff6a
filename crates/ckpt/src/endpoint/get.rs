//! `GET /`: the committed value of the storage URL, or, when none is committed (or the
//! last commit was a DELETE), the body of the object store's GET that authorized the
//! request. Staged changes are never visible here, and a GET does not touch them.

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};

use crate::order::Access;
use crate::request::{self, Target};
use crate::response::{self, HttpResponse, SOURCE_HEADER};
use crate::service::Service;
use crate::{Error, Result};

/// A read of one checkpoint.
#[derive(Debug)]
pub(crate) struct Get {
    target: Target,
}

/// What a GET returns.
#[derive(Debug)]
pub(crate) struct Got {
    value: Bytes,
    /// The revision of the committed record, or 0 when nothing was ever committed.
    revision: u64,
    /// Whether the value is the committed one (else the object's own content).
    committed: bool,
}

impl Get {
    pub(crate) fn parse(parts: &Parts) -> Result<Get> {
        request::empty_path(parts)?;
        Ok(Get { target: Target::parse(&parts.headers)? })
    }

    /// Authorizes, then reads the committed record on this request's turn.
    pub(crate) async fn apply(self, service: &Service) -> Result<Got> {
        let (authorized, _turn) = service.authorize_in_turn(&self.target, Access::Read).await?;
        let record = service.committed().get(&self.target.url).await?;
        let revision = record.as_ref().map_or(0, |record| record.revision);
        if let Some(value) = record.and_then(|record| record.value) {
            return Ok(Got { value, revision, committed: true });
        }
        let value = authorized.object.ok_or_else(|| Error::ObjectTooLarge {
            url: self.target.url.to_string(),
            limit: service.max_body(),
        })?;
        Ok(Got { value, revision, committed: false })
    }
}

impl Got {
    pub(crate) fn encode(self) -> HttpResponse {
        let mut response = response::empty(StatusCode::OK);
        *response.body_mut() = self.value.into();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        let source = if self.committed { "committed" } else { "object-store" };
        headers.insert(SOURCE_HEADER, HeaderValue::from_static(source));
        response::with_revision(response, self.revision)
    }
}
