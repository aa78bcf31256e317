//! The http-01 route (RFC 8555 §8.3): `GET /.well-known/acme-challenge/TOKEN`
//! answered from the run's token store, over plain HTTP and HTTPS alike.
//! The web listener asks here before anything else, because the CA
//! validates over plain HTTP on port 80 and a redirect to an HTTPS port it
//! does not know would fail the validation.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use mailtls_acme::solver::http01::HTTP01_PATH_PREFIX;

use crate::server::Shared;

/// The answer for a challenge request, or `None` when the request is not
/// one (another path, another method, or ACME not configured) and the web
/// listener handles it as usual. Known tokens get `200 text/plain` with the
/// key authorisation, unknown ones `404`.
pub(crate) fn route<B>(req: &Request<B>, shared: &Shared) -> Option<Response<Full<Bytes>>> {
    let acme = shared.acme.as_ref()?;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let path = req.uri().path();
    if !path.starts_with(HTTP01_PATH_PREFIX) {
        return None;
    }
    let (status, body) = match acme.http01_response(path) {
        Some(key_authorization) => {
            tracing::info!(path, "answered an http-01 validation request");
            (StatusCode::OK, key_authorization)
        }
        None => (
            StatusCode::NOT_FOUND,
            "Unknown challenge token\n".to_owned(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    r.headers_mut().insert(
        CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    Some(r)
}
