//! One module per endpoint of the protocol, each with `parse` (form only), `apply` (the
//! effect, on the request's turn) and `encode` (the success response).

pub(crate) mod delete;
pub(crate) mod get;
pub(crate) mod head;
pub(crate) mod post;
pub(crate) mod put;
