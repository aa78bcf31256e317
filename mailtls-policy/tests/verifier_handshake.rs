//! The plan verifier in real TLS handshakes on loopback (tokio-rustls on both
//! ends): each verification kind accepts what it should and refuses what it
//! should, and each refusal carries the RFC 8460 result type.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use mailtls_core::{CaSpec, CertificateAuthority, DnsName, ServerCertSpec, self_signed};
use mailtls_policy::dane::{DaneUsage, MatchingType, Selector, UsableTlsa};
use mailtls_policy::plan::{FailureAction, HostAction, PlanEntry, Verification};
use mailtls_policy::requiretls::PeerAuthentication;
use mailtls_policy::result_type::{PolicyType, ResultType};
use mailtls_policy::verifier::{PlanVerifier, VerificationFailure, VerificationOutcome};
use rcgen::{CertificateParams, KeyPair};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const MX: &str = "mx.example.com";

fn name(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate chain and key for the test server.
struct ServerCreds {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn ca() -> CertificateAuthority {
    CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap()
}

fn issued(ca: &CertificateAuthority, host: &str) -> ServerCreds {
    let made = ca.issue(&ServerCertSpec::new(name(host))).unwrap();
    ServerCreds {
        chain: vec![made.cert_der.clone(), ca.certificate().cert_der.clone()],
        key: made.key_der(),
    }
}

fn self_signed_creds(host: &str) -> ServerCreds {
    let made = self_signed(&ServerCertSpec::new(name(host))).unwrap();
    ServerCreds {
        chain: vec![made.cert_der.clone()],
        key: made.key_der(),
    }
}

/// Expired a year ago, issued by `ca_key`/`ca_params` through rcgen.
fn expired_issued(host: &str) -> (ServerCreds, CertificateDer<'static>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "expired test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![host.to_owned()]).unwrap();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(800);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    let leaf = params.signed_by(&key, &issuer).unwrap();
    let creds = ServerCreds {
        chain: vec![leaf.der().clone(), ca_cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    };
    (creds, ca_cert.der().clone())
}

fn roots(certs: &[CertificateDer<'static>]) -> Arc<RootCertStore> {
    let mut store = RootCertStore::empty();
    for c in certs {
        store.add(c.clone()).unwrap();
    }
    Arc::new(store)
}

fn entry(action: HostAction) -> PlanEntry {
    PlanEntry {
        host: name(MX),
        preference: 10,
        addresses: Vec::new(),
        action,
        policy: PolicyType::Sts,
        peer_must_advertise_requiretls: false,
        on_failure: FailureAction::TryNextMx,
    }
}

fn webpki() -> Verification {
    Verification::WebPki {
        allowed_names: vec![name(MX)],
    }
}

/// Runs one handshake: a tokio-rustls server on a free loopback port with
/// `creds`, a tokio-rustls client with `verifier`. Returns the client's result.
async fn handshake(creds: ServerCreds, verifier: Arc<PlanVerifier>) -> Result<(), std::io::Error> {
    let server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(creds.chain, creds.key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // The handshake fails on this side when the client refuses: fine.
        if let Ok(mut tls) = acceptor.accept(tcp).await {
            let _ = tls.write_all(b"220 ok\r\n").await;
            let _ = tls.shutdown().await;
        }
    });
    let client_config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client_config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let result = match connector
        .connect(ServerName::try_from(MX).unwrap(), tcp)
        .await
    {
        Ok(mut tls) => {
            let mut buf = Vec::new();
            tls.read_to_end(&mut buf)
                .await
                .map(|_| assert_eq!(buf, b"220 ok\r\n"))
        }
        Err(e) => Err(e),
    };
    server.await.unwrap();
    result
}

fn refused_as(result: Result<(), std::io::Error>) -> ResultType {
    let err = result.expect_err("the handshake should have been refused");
    VerificationFailure::from_io_error(&err)
        .expect("a rustls error")
        .result_type
}

#[tokio::test]
async fn webpki_accepts_a_chain_to_the_roots_for_the_mx_name() {
    let ca = ca();
    let v = Arc::new(
        PlanVerifier::for_entry(
            &entry(HostAction::RequireTls { verify: webpki() }),
            roots(&[ca.certificate().cert_der.clone()]),
            mailtls_policy::default_crypto_provider(),
        )
        .unwrap(),
    );
    handshake(issued(&ca, MX), v.clone()).await.unwrap();
    assert_eq!(
        v.last_outcome(),
        Some(VerificationOutcome::Verified(PeerAuthentication::WebPki))
    );
}

#[tokio::test]
async fn webpki_refusals_are_classified() {
    let ca = ca();
    let make = |r: Arc<RootCertStore>| {
        Arc::new(
            PlanVerifier::for_entry(
                &entry(HostAction::RequireTls { verify: webpki() }),
                r,
                mailtls_policy::default_crypto_provider(),
            )
            .unwrap(),
        )
    };
    let trusted = roots(&[ca.certificate().cert_der.clone()]);

    let mismatch = handshake(issued(&ca, "other.example.net"), make(trusted.clone())).await;
    assert_eq!(refused_as(mismatch), ResultType::CertificateHostMismatch);

    let untrusted = handshake(self_signed_creds(MX), make(trusted)).await;
    assert_eq!(refused_as(untrusted), ResultType::CertificateNotTrusted);

    let (creds, expired_ca) = expired_issued(MX);
    let v = make(roots(&[expired_ca]));
    let expired = handshake(creds, v.clone()).await;
    assert_eq!(refused_as(expired), ResultType::CertificateExpired);
    assert!(
        matches!(v.last_outcome(), Some(VerificationOutcome::Failed(f)) if f.result_type == ResultType::CertificateExpired)
    );
}

#[tokio::test]
async fn dane_ee_accepts_a_matching_self_signed_certificate_and_refuses_another() {
    let creds = self_signed_creds("not-the-mx.example");
    let rec = UsableTlsa::for_certificate(
        DaneUsage::DaneEe,
        Selector::Spki,
        MatchingType::Sha256,
        &creds.chain[0],
    )
    .unwrap();
    let dane = HostAction::RequireTls {
        verify: Verification::Dane {
            records: vec![rec],
            reference_names: vec![name(MX)],
        },
    };
    let v = Arc::new(
        PlanVerifier::for_entry(
            &entry(dane.clone()),
            roots(&[]),
            mailtls_policy::default_crypto_provider(),
        )
        .unwrap(),
    );
    handshake(creds, v.clone()).await.unwrap();
    assert_eq!(
        v.last_outcome(),
        Some(VerificationOutcome::Verified(PeerAuthentication::Dane))
    );

    let v = Arc::new(
        PlanVerifier::for_entry(
            &entry(dane),
            roots(&[]),
            mailtls_policy::default_crypto_provider(),
        )
        .unwrap(),
    );
    assert_eq!(
        refused_as(handshake(self_signed_creds(MX), v).await),
        ResultType::TlsaInvalid
    );
}

#[tokio::test]
async fn dane_ta_accepts_the_chain_and_refuses_a_wrong_name() {
    let ca = ca();
    let rec = UsableTlsa::for_certificate(
        DaneUsage::DaneTa,
        Selector::Cert,
        MatchingType::Sha256,
        &ca.certificate().cert_der,
    )
    .unwrap();
    let dane = HostAction::RequireTls {
        verify: Verification::Dane {
            records: vec![rec],
            reference_names: vec![name(MX)],
        },
    };
    let v = Arc::new(
        PlanVerifier::for_entry(
            &entry(dane.clone()),
            roots(&[]),
            mailtls_policy::default_crypto_provider(),
        )
        .unwrap(),
    );
    handshake(issued(&ca, MX), v).await.unwrap();

    let v = Arc::new(
        PlanVerifier::for_entry(
            &entry(dane),
            roots(&[]),
            mailtls_policy::default_crypto_provider(),
        )
        .unwrap(),
    );
    let wrong = handshake(issued(&ca, "other.example.net"), v).await;
    assert_eq!(refused_as(wrong), ResultType::CertificateHostMismatch);
}

#[tokio::test]
async fn opportunistic_and_unauthenticated_accept_anything() {
    for action in [
        HostAction::OpportunisticTls { audit: None },
        HostAction::RequireTlsUnauthenticated,
    ] {
        let v = Arc::new(
            PlanVerifier::for_entry(
                &entry(action.clone()),
                roots(&[]),
                mailtls_policy::default_crypto_provider(),
            )
            .unwrap(),
        );
        handshake(self_signed_creds("anything.example"), v.clone())
            .await
            .unwrap();
        match (&action, v.last_outcome()) {
            (HostAction::OpportunisticTls { .. }, Some(VerificationOutcome::NotChecked)) => {}
            // Every TLSA record unusable: delivered over unauthenticated TLS
            // (RFC 7672 §2.2) but reported as tlsa-invalid (RFC 8460 §4.3.2).
            (HostAction::RequireTlsUnauthenticated, Some(VerificationOutcome::Failed(f))) => {
                assert_eq!(f.result_type, ResultType::TlsaInvalid)
            }
            (a, o) => panic!("{a:?}: unexpected outcome {o:?}"),
        }
        assert_eq!(
            v.last_outcome().unwrap().peer_authentication(),
            PeerAuthentication::Unverified
        );
    }
    handshake(
        self_signed_creds(MX),
        Arc::new(PlanVerifier::opportunistic(
            mailtls_policy::default_crypto_provider(),
        )),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn audit_mode_records_the_failure_but_lets_the_handshake_finish() {
    let ca = ca();
    let v = Arc::new(
        PlanVerifier::for_entry(
            &entry(HostAction::OpportunisticTls {
                audit: Some(webpki()),
            }),
            roots(&[ca.certificate().cert_der.clone()]),
            mailtls_policy::default_crypto_provider(),
        )
        .unwrap(),
    );
    handshake(issued(&ca, "other.example.net"), v.clone())
        .await
        .unwrap();
    assert!(matches!(
        v.last_outcome(),
        Some(VerificationOutcome::Failed(f)) if f.result_type == ResultType::CertificateHostMismatch
    ));
}

#[test]
fn skip_entries_have_no_verifier() {
    let e = entry(HostAction::Skip {
        reason: mailtls_policy::plan::SkipReason::NotInStsPolicy,
    });
    assert!(
        PlanVerifier::for_entry(&e, roots(&[]), mailtls_policy::default_crypto_provider()).is_err()
    );
}
