//! Responses, and the one place where an [`Error`] becomes an HTTP status.
//!
//! | error | status |
//! |---|---|
//! | invalid header, path or transaction id | 400 |
//! | no `X-Auth-Token`, or the store answered 401 | 401 |
//! | the store answered 403 | 403 |
//! | the store answered 404 | 404 |
//! | a method other than HEAD, GET, PUT, DELETE, POST | 405 |
//! | a body that broke off or did not arrive in time | 400 |
//! | POST with no (unexpired) staged change of its id | 409 |
//! | a body over `max_body_bytes` | 413 |
//! | the store answered another status, or its object is over `max_body_bytes` | 502 |
//! | the store unreachable after the retries, staging full, KV unavailable | 503 |
//! | anything else (a poisoned or corrupted KV store) | 500 |

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use strata_kv::Category;

use crate::Error;

/// The response header with the revision of the value a GET returns or a POST committed.
pub const REVISION_HEADER: &str = "x-ckpt-revision";
/// The response header saying where a GET's value comes from: `committed` or `object-store`.
pub const SOURCE_HEADER: &str = "x-ckpt-source";

/// The response type of the service.
pub(crate) type HttpResponse = Response<Full<Bytes>>;

/// The status `err` is answered with.
pub(crate) fn status_of(err: &Error) -> StatusCode {
    match err {
        Error::InvalidRequest(_)
        | Error::BodyIncomplete(_)
        | Error::StorageUrlNotAllowed { .. }
        | Error::NoContainer { .. } => StatusCode::BAD_REQUEST,
        Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
        Error::Forbidden { .. } => StatusCode::FORBIDDEN,
        Error::ObjectNotFound { .. } => StatusCode::NOT_FOUND,
        Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        Error::NoStagedChange { .. } => StatusCode::CONFLICT,
        Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::StoreRefused { .. } | Error::ObjectTooLarge { .. } => StatusCode::BAD_GATEWAY,
        Error::StoreUnavailable { .. } | Error::StagingFull { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::Kv(kv) if matches!(kv.category(), Category::Unavailable | Category::Conflict) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The response to `err`: its status, and its message as a line of text.
pub(crate) fn error(err: &Error) -> HttpResponse {
    let status = status_of(err);
    let mut response = text(status, format!("{err}\n"));
    let headers = response.headers_mut();
    match err {
        Error::MethodNotAllowed(_) => {
            headers.insert(header::ALLOW, HeaderValue::from_static("HEAD, GET, PUT, DELETE, POST"));
        }
        Error::StagingFull { .. } | Error::StoreUnavailable { .. } | Error::Kv(_) => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    if status.is_server_error() {
        tracing::warn!(%status, "{err}");
    } else {
        tracing::debug!(%status, "{err}");
    }
    response
}

/// A response with no body.
pub(crate) fn empty(status: StatusCode) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// A response with a plain-text body.
pub(crate) fn text(status: StatusCode, body: String) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let plain = HeaderValue::from_static("text/plain; charset=utf-8");
    response.headers_mut().insert(header::CONTENT_TYPE, plain);
    response
}

/// Adds the revision header.
pub(crate) fn with_revision(mut response: HttpResponse, revision: u64) -> HttpResponse {
    response.headers_mut().insert(REVISION_HEADER, HeaderValue::from(revision));
    response
}
