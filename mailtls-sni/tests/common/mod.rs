//! Shared test fixtures: a test CA, certificates on disk, a TLS server on
//! loopback serving the resolver, and rustls clients with chosen key support.
// Fixture failures are test failures, so unwrapping here is what a test wants.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use mailtls_core::maker::MadeCertificate;
use mailtls_core::{
    CaSpec, CertInfo, CertificateAuthority, DnsName, KeyType, NamePattern, ServerCertSpec,
};
use mailtls_sni::SniResolver;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub fn ca() -> CertificateAuthority {
    CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap()
}

pub fn issue(
    ca: &CertificateAuthority,
    host: &str,
    extra: &[&str],
    key: KeyType,
) -> MadeCertificate {
    let mut spec = ServerCertSpec::new(DnsName::parse(host).unwrap());
    spec.extra_names = extra
        .iter()
        .map(|n| NamePattern::parse(n).unwrap())
        .collect();
    spec.key_type = key;
    ca.issue(&spec).unwrap()
}

/// A TLS server on 127.0.0.1 that completes handshakes with the resolver and
/// writes one byte. Stops when the returned handle is dropped (task aborted).
pub struct TestServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The provider of the feature under test (aws-lc-rs, or ring when only
/// `ring` is on), passed explicitly as an embedder would.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

pub async fn serve(resolver: Arc<SniResolver>, alpn: Vec<Vec<u8>>) -> TestServer {
    let mut config = rustls::ServerConfig::builder_with_provider(resolver.provider().clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"x").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    TestServer { addr, task }
}

/// A verifier that accepts any certificate and offers only the given
/// signature schemes, which is how a client says which keys it can take.
/// The flag skips the handshake signature check, for tls-alpn-01 certificates
/// whose critical acmeIdentifier extension webpki refuses to parse (an ACME
/// validator checks the extension, not a path).
#[derive(Debug)]
pub struct AcceptAnything(pub Vec<SignatureScheme>, pub bool);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.1 {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.1 {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

pub const ECDSA_ONLY: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
];
pub const RSA_ONLY: &[SignatureScheme] = &[
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA256,
];

pub fn all_schemes() -> Vec<SignatureScheme> {
    provider()
        .signature_verification_algorithms
        .supported_schemes()
}

pub fn client_config(schemes: &[SignatureScheme], alpn: Vec<Vec<u8>>) -> Arc<rustls::ClientConfig> {
    let skip_signature = alpn
        .iter()
        .any(|p| p == mailtls_core::ACME_TLS_ALPN_PROTOCOL);
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(
            schemes.to_vec(),
            skip_signature,
        )))
        .with_no_client_auth();
    c.alpn_protocols = alpn;
    // Every handshake must be a full one: a resumed session reports the
    // original certificate and never reaches the resolver.
    c.resumption = rustls::client::Resumption::disabled();
    Arc::new(c)
}

/// Connects, handshakes with `sni` (`None`: an IP literal, so no SNI is
/// sent) and returns the leaf the server presented.
pub async fn handshake(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    sni: Option<&str>,
) -> Result<CertInfo, String> {
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_owned()).map_err(|e| e.to_string())?,
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    tls.read_exact(&mut b).await.map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates().ok_or("no certificate")?[0].clone();
    CertInfo::from_der(&leaf).map_err(|e| e.to_string())
}

pub fn write(made: &MadeCertificate, dir: &Path, stem: &str) {
    made.write_files(dir, stem).unwrap();
}

/// A temporary directory only its owner can read: where private keys may go
/// (the maker refuses directories others can read).
pub fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap()
}

/// A self-signed server certificate for `names` valid from `now + from` to
/// `now + to` (negative offsets are in the past), as PEM (certificate, key).
/// The maker always starts validity now; an expired or not-yet-valid
/// certificate needs its dates set, hence rcgen directly with a maker key.
pub fn with_validity(names: &[&str], from: time::Duration, to: time::Duration) -> (String, String) {
    let key = KeyType::EcdsaP256.generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + from;
    params.not_after = now + to;
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A certificate made by [`with_validity`], ready for `SniResolver::reload`.
pub fn prepared(
    resolver: &SniResolver,
    label: &str,
    names: &[&str],
    from: time::Duration,
    to: time::Duration,
) -> mailtls_sni::PreparedCertificate {
    let (cert, key) = with_validity(names, from, to);
    let loaded =
        mailtls_core::CertificateWithKey::from_pem(cert.as_bytes(), key.as_bytes(), label).unwrap();
    mailtls_sni::PreparedCertificate::new(loaded, label, resolver.provider()).unwrap()
}

/// The first DNS name and the fingerprint of what the resolver serves.
pub fn served(resolver: &SniResolver, name: Option<&str>) -> Option<(String, [u8; 32])> {
    let key = resolver.resolve_name(name, mailtls_sni::KeyAcceptance::ALL)?;
    let info = CertInfo::from_der(&key.cert[0]).unwrap();
    Some((
        info.dns_names.first().cloned().unwrap_or_default(),
        info.sha256_fingerprint,
    ))
}
