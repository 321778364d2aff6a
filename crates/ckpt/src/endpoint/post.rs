//! `POST /TXID`: commits the change staged under the same id for the same storage URL,
//! durably, before answering 204 with the new revision. 409 when there is no such change
//! (never staged, expired, or committed already); a change whose commit fails is put back,
//! so the POST can be retried.

use http::StatusCode;
use http::request::Parts;

use crate::order::Access;
use crate::request::{self, Target};
use crate::response::{self, HttpResponse};
use crate::service::Service;
use crate::{Error, Result, TxId};

/// Committing a staged change.
#[derive(Debug)]
pub(crate) struct Post {
    target: Target,
    txid: TxId,
}

/// A commit made durable.
#[derive(Debug)]
pub(crate) struct Committed {
    revision: u64,
}

impl Post {
    pub(crate) fn parse(parts: &Parts) -> Result<Post> {
        let txid = request::txid(parts)?;
        Ok(Post { target: Target::parse(&parts.headers)?, txid })
    }

    /// Authorizes, then commits on this request's turn; the turn ends only after the
    /// commit is durable, so every later request for the URL sees it. Once the turn has
    /// come, the commit runs in a task of its own: a client that goes away cannot cut it
    /// short and let later requests in before it is durable.
    pub(crate) async fn apply(self, service: &Service) -> Result<Committed> {
        let (_authorized, turn) =
            service.authorize_in_turn(&self.target, Access::Commit(self.txid.clone())).await?;
        let committed = service.committed().clone();
        let commit = tokio::spawn(async move {
            let staged = turn.take(&self.txid)?;
            match committed.commit(&self.target.url, staged.change()).await {
                Ok(revision) => Ok(Committed { revision }),
                Err(err) => {
                    turn.restore(staged);
                    Err(err)
                }
            }
        });
        commit.await.map_err(|err| {
            Error::Kv(strata_kv::Error::Unavailable(format!("commit task failed: {err}")))
        })?
    }
}

impl Committed {
    pub(crate) fn encode(self) -> HttpResponse {
        response::with_revision(response::empty(StatusCode::NO_CONTENT), self.revision)
    }
}
