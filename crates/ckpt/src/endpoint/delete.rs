//! `DELETE /TXID`: stages forgetting the committed value, to be made visible by
//! `POST /TXID`; from then on a GET returns the object's own content again. Answers 202
//! Accepted. The object in the store is never touched.

use http::request::Parts;

use crate::endpoint::put::Staged;
use crate::order::Access;
use crate::request::{self, Target};
use crate::service::Service;
use crate::staging::Change;
use crate::{Result, TxId};

/// Staging a deletion.
#[derive(Debug)]
pub(crate) struct Delete {
    target: Target,
    txid: TxId,
}

impl Delete {
    pub(crate) fn parse(parts: &Parts) -> Result<Delete> {
        let txid = request::txid(parts)?;
        Ok(Delete { target: Target::parse(&parts.headers)?, txid })
    }

    /// Authorizes, then stages the deletion on this request's turn.
    pub(crate) async fn apply(self, service: &Service) -> Result<Staged> {
        let (_authorized, turn) =
            service.authorize_in_turn(&self.target, Access::Stage(self.txid.clone())).await?;
        turn.stage(self.txid, Change::Delete)?;
        Ok(Staged)
    }
}
