//! A real HTTPS policy host on loopback for the MTA-STS tests: tokio-rustls
//! with a certificate from a test CA made at test time, and a small HTTP/1.1
//! responder whose answer depends on the Host header, so one server plays
//! many broken and working policy hosts.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailtls_core::{CaSpec, CertificateAuthority, DnsName, NamePattern, ServerCertSpec};
use mailtls_policy::dns::StaticResolverBuilder;
use rustls::RootCertStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// What the host answers for one `mta-sts.DOMAIN`.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub location: Option<String>,
    pub delay: Duration,
}

impl Reply {
    pub fn policy(body: &str) -> Self {
        Reply {
            status: 200,
            content_type: Some("text/plain".into()),
            body: body.as_bytes().to_vec(),
            location: None,
            delay: Duration::ZERO,
        }
    }
}

pub const GOOD_POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx1.good.example\r\nmx: *.mx.good.example\r\nmax_age: 86400\r\n";

pub struct PolicyHost {
    pub addr: SocketAddr,
    pub ca: CertificateAuthority,
    pub replies: Arc<Mutex<HashMap<String, Reply>>>,
    pub hits: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for PolicyHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PolicyHost {
    /// Starts a host whose certificate names `mta-sts.D` for each of
    /// `cert_domains`.
    pub async fn start(cert_domains: &[&str]) -> PolicyHost {
        let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
        let first = DnsName::parse(&format!("mta-sts.{}", cert_domains[0])).unwrap();
        let mut spec = ServerCertSpec::new(first);
        spec.extra_names = cert_domains[1..]
            .iter()
            .map(|d| NamePattern::parse(&format!("mta-sts.{d}")).unwrap())
            .collect();
        let made = ca.issue(&spec).unwrap();
        let chain = vec![made.cert_der.clone(), ca.certificate().cert_der.clone()];
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, made.key_der())
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let replies: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, h) = (replies.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let (r, h) = (r.clone(), h.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 2048];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let host = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("host").then(|| v.trim().to_owned())
                        })
                        .unwrap_or_default();
                    let host = host.split(':').next().unwrap_or_default().to_owned();
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    h.lock().unwrap().push(format!("{host}{path}"));
                    let reply = if path == "/.well-known/mta-sts.txt" {
                        r.lock().unwrap().get(&host).cloned()
                    } else {
                        None
                    };
                    let reply = reply.unwrap_or(Reply {
                        status: 404,
                        content_type: Some("text/plain".into()),
                        body: b"not found".to_vec(),
                        location: None,
                        delay: Duration::ZERO,
                    });
                    tokio::time::sleep(reply.delay).await;
                    let mut out = format!("HTTP/1.1 {} X\r\n", reply.status);
                    if let Some(ct) = &reply.content_type {
                        out.push_str(&format!("Content-Type: {ct}\r\n"));
                    }
                    if let Some(loc) = &reply.location {
                        out.push_str(&format!("Location: {loc}\r\n"));
                    }
                    out.push_str(&format!(
                        "Content-Length: {}\r\nConnection: close\r\n\r\n",
                        reply.body.len()
                    ));
                    let _ = tls.write_all(out.as_bytes()).await;
                    let _ = tls.write_all(&reply.body).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        PolicyHost {
            addr,
            ca,
            replies,
            hits,
            task,
        }
    }

    pub fn set(&self, domain: &str, reply: Reply) {
        self.replies
            .lock()
            .unwrap()
            .insert(format!("mta-sts.{domain}"), reply);
    }

    pub fn hits(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.certificate().cert_der.clone()).unwrap();
        roots
    }
}

/// Adds `mta-sts.D -> 127.0.0.1` for each domain.
pub fn point_at_loopback(mut b: StaticResolverBuilder, domains: &[&str]) -> StaticResolverBuilder {
    for d in domains {
        b = b.a(&format!("mta-sts.{d}"), Ipv4Addr::LOCALHOST);
    }
    b
}
