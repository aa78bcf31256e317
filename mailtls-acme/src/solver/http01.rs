//! http-01 (RFC 8555 §8.3): a responder the embedding web listener mounts
//! under `/.well-known/acme-challenge/`, and (feature `http01-server`) a
//! small standalone server for tools and tests.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{ChallengeContext, ChallengeSolver, SolverFuture};
use crate::error::AcmeError;

/// The path prefix validators request.
pub const HTTP01_PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// Holds the current http-01 tokens and answers validator requests. Cheap
/// to clone; all clones share the tokens.
#[derive(Debug, Clone, Default)]
pub struct Http01Responder {
    tokens: Arc<RwLock<HashMap<String, String>>>,
}

impl Http01Responder {
    /// An empty responder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The body to serve for a request path, if it is a known challenge.
    /// The embedding listener answers 200 `text/plain` with it, else 404.
    pub fn respond(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PATH_PREFIX)?;
        self.tokens.read().ok()?.get(token).cloned()
    }

    /// Number of tokens being served.
    pub fn len(&self) -> usize {
        self.tokens.read().map(|t| t.len()).unwrap_or(0)
    }

    /// Whether no token is being served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ChallengeSolver for Http01Responder {
    fn challenge_type(&self) -> &'static str {
        "http-01"
    }

    fn present<'a>(&'a self, ctx: &'a ChallengeContext) -> SolverFuture<'a> {
        Box::pin(async move {
            let mut tokens = self.tokens.write().map_err(|_| AcmeError::Solver {
                kind: "http-01".into(),
                identifier: ctx.identifier.to_string(),
                reason: "token table poisoned".into(),
            })?;
            tokens.insert(ctx.token.clone(), ctx.key_authorization.clone());
            Ok(())
        })
    }

    fn cleanup<'a>(&'a self, ctx: &'a ChallengeContext) -> SolverFuture<'a> {
        Box::pin(async move {
            if let Ok(mut tokens) = self.tokens.write() {
                tokens.remove(&ctx.token);
            }
            Ok(())
        })
    }
}

#[cfg(feature = "http01-server")]
pub use server::Http01Server;

#[cfg(feature = "http01-server")]
mod server {
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::service::service_fn;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use super::Http01Responder;
    use crate::error::AcmeError;

    /// A standalone HTTP/1.1 server serving an [`Http01Responder`]; stops when
    /// dropped. It runs as tasks on the caller's tokio runtime (one accept loop,
    /// one task per connection); no thread is started.
    #[derive(Debug)]
    pub struct Http01Server {
        addr: SocketAddr,
        task: JoinHandle<()>,
    }

    impl Http01Server {
        /// Binds `addr` and serves `responder` until dropped.
        pub async fn bind(addr: SocketAddr, responder: Http01Responder) -> Result<Self, AcmeError> {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| AcmeError::Listen { addr, source })?;
            let addr = listener
                .local_addr()
                .map_err(|source| AcmeError::Listen { addr, source })?;
            let task = tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        // Out of descriptors or similar: back off, don't spin.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    };
                    let responder = responder.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                            let body = responder.respond(req.uri().path());
                            async move {
                                let resp = match body {
                                    Some(b) => Response::builder()
                                        .header("content-type", "text/plain")
                                        .body(Full::new(Bytes::from(b))),
                                    None => Response::builder()
                                        .status(StatusCode::NOT_FOUND)
                                        .body(Full::new(Bytes::new())),
                                };
                                Ok::<_, Infallible>(resp.unwrap_or_default())
                            }
                        });
                        // A broken validator connection only affects itself.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Ok(Http01Server { addr, task })
        }

        /// The bound address.
        pub fn local_addr(&self) -> SocketAddr {
            self.addr
        }
    }

    impl Drop for Http01Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mailtls_core::name::DnsName;

    #[tokio::test]
    async fn serves_only_present_tokens() {
        let r = Http01Responder::new();
        let ctx = ChallengeContext::new(
            DnsName::parse("a.example").unwrap(),
            false,
            "tok".into(),
            "tok.tp".into(),
        );
        r.present(&ctx).await.unwrap();
        assert_eq!(
            r.respond("/.well-known/acme-challenge/tok").as_deref(),
            Some("tok.tp")
        );
        assert_eq!(r.respond("/.well-known/acme-challenge/other"), None);
        assert_eq!(r.respond("/tok"), None);
        r.cleanup(&ctx).await.unwrap();
        assert!(r.is_empty());
    }
}
