//! `PUT /TXID`: stages the body as the checkpoint's next value, to be made visible by
//! `POST /TXID`. Answers 202 Accepted; nothing is visible until the POST.

use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;

use crate::order::Access;
use crate::request::{self, Target};
use crate::response::{self, HttpResponse};
use crate::service::Service;
use crate::staging::Change;
use crate::{Result, TxId};

/// Staging a new value.
#[derive(Debug)]
pub(crate) struct Put {
    target: Target,
    txid: TxId,
}

/// A value staged.
#[derive(Debug)]
pub(crate) struct Staged;

impl Put {
    /// Parses the headers and the path; the body is read after, so a malformed request is
    /// refused before its body is.
    pub(crate) fn parse(parts: &Parts) -> Result<Put> {
        let txid = request::txid(parts)?;
        Ok(Put { target: Target::parse(&parts.headers)?, txid })
    }

    /// Authorizes, then stages `value` on this request's turn.
    pub(crate) async fn apply(self, service: &Service, value: Bytes) -> Result<Staged> {
        let (_authorized, turn) =
            service.authorize_in_turn(&self.target, Access::Stage(self.txid.clone())).await?;
        turn.stage(self.txid, Change::Put(value))?;
        Ok(Staged)
    }
}

impl Staged {
    pub(crate) fn encode(self) -> HttpResponse {
        response::empty(StatusCode::ACCEPTED)
    }
}
