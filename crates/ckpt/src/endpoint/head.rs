//! `HEAD /`: 204 No Content while the service runs. Touches neither the store nor staging.

use http::StatusCode;
use http::request::Parts;

use crate::Result;
use crate::request;
use crate::response::{self, HttpResponse};

/// A health check.
#[derive(Debug)]
pub(crate) struct Head;

impl Head {
    /// Accepts only the empty path.
    pub(crate) fn parse(parts: &Parts) -> Result<Head> {
        request::empty_path(parts)?;
        Ok(Head)
    }

    pub(crate) fn encode(self) -> HttpResponse {
        response::empty(StatusCode::NO_CONTENT)
    }
}
