//! The plan verifier against real, independently written SMTP servers doing
//! STARTTLS on loopback with matching, mismatched, expired and self-signed
//! certificates: Postfix (Debian package `postfix`, run as its own instance
//! from a temporary configuration directory; needs root) and aiosmtpd
//! (Python, `pip install aiosmtpd`). Both use OpenSSL for TLS. The tests fail
//! with install advice when a peer is missing rather than pass without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader as StdBufReader, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use mailtls_core::{CaSpec, CertificateAuthority, DnsName, ServerCertSpec, self_signed};
use mailtls_policy::dane::{DaneUsage, MatchingType, Selector, UsableTlsa};
use mailtls_policy::plan::{FailureAction, HostAction, PlanEntry, Verification};
use mailtls_policy::requiretls::{
    PeerAuthentication, RequireTlsFailure, SessionFacts, check_session,
};
use mailtls_policy::result_type::{PolicyType, ResultType};
use mailtls_policy::verifier::{PlanVerifier, VerificationFailure};
use mailtls_testpeers::process::KillOnDrop;
use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const MX: &str = "mx.example.com";

const SERVER: &str = r#"
import socket, ssl, sys
from aiosmtpd.controller import Controller
class Handler:
    async def handle_DATA(self, server, session, envelope):
        return '250 OK'
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()
c = Controller(Handler(), hostname='127.0.0.1', port=port, tls_context=ctx)
c.start()
print(port, flush=True)
sys.stdin.read()
c.stop()
"#;

/// A running peer (aiosmtpd or Postfix's master); killed and reaped on
/// drop, even when a test fails.
struct Peer {
    port: u16,
    _server: Server,
}

/// What keeps a peer running: aiosmtpd's process (fields drop in order:
/// the process dies before its directory goes) or a whole Postfix.
enum Server {
    Aiosmtpd {
        _child: KillOnDrop,
        _dir: tempfile::TempDir,
    },
    Postfix {
        _postfix: mailtls_testpeers::Postfix,
    },
}

fn require_aiosmtpd() {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "python3 with aiosmtpd is needed: pip install aiosmtpd");
}

/// Writes the certificate chain and the key (mode 0600) into a new
/// temporary directory.
fn credentials_dir(chain_pem: &str, key_pem: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("chain.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, chain_pem).unwrap();
    let mut f = std::fs::File::create(&key).unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .unwrap();
    f.write_all(key_pem.as_bytes()).unwrap();
    (dir, cert, key)
}

/// Which SMTP server to run.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Aiosmtpd,
    Postfix,
}

const KINDS: [Kind; 2] = [Kind::Postfix, Kind::Aiosmtpd];

fn start_peer(kind: Kind, chain_pem: &str, key_pem: &str) -> Peer {
    match kind {
        Kind::Aiosmtpd => {
            require_aiosmtpd();
            start_aiosmtpd(chain_pem, key_pem)
        }
        Kind::Postfix => start_postfix(chain_pem, key_pem),
    }
}

/// A Postfix instance of its own (mailtls-testpeers): smtpd on a free
/// loopback port offering STARTTLS (`smtpd_tls_security_level = may`).
fn start_postfix(chain_pem: &str, key_pem: &str) -> Peer {
    let port = mailtls_testpeers::free_port();
    let postfix = mailtls_testpeers::Postfix::builder(MX)
        .listen(([127, 0, 0, 1], port).into())
        .tls(chain_pem, key_pem)
        .start();
    Peer {
        port,
        _server: Server::Postfix { _postfix: postfix },
    }
}

fn start_aiosmtpd(chain_pem: &str, key_pem: &str) -> Peer {
    let (dir, cert, key) = credentials_dir(chain_pem, key_pem);
    let mut child = Command::new("python3")
        .args(["-c", SERVER])
        .arg(&cert)
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    StdBufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("aiosmtpd printed its port");
    Peer {
        port,
        _server: Server::Aiosmtpd {
            _child: KillOnDrop(child),
            _dir: dir,
        },
    }
}

/// Reads one (possibly multi-line) SMTP reply.
async fn reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).await.unwrap() > 0,
            "connection closed"
        );
        let line = line.trim_end().to_owned();
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return lines;
        }
    }
}

/// EHLO, STARTTLS, handshake with `verifier`, EHLO again. Returns the EHLO
/// keywords after TLS, or the handshake error.
async fn starttls(port: u16, verifier: Arc<PlanVerifier>) -> Result<Vec<String>, std::io::Error> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut r = BufReader::new(tcp);
    assert!(reply(&mut r).await[0].starts_with("220"));
    r.get_mut()
        .write_all(b"EHLO client.example\r\n")
        .await
        .unwrap();
    let ehlo = reply(&mut r).await;
    assert!(
        ehlo.iter().any(|l| l[4..].eq_ignore_ascii_case("STARTTLS")),
        "{ehlo:?}"
    );
    r.get_mut().write_all(b"STARTTLS\r\n").await.unwrap();
    assert!(reply(&mut r).await[0].starts_with("220"));
    assert!(r.buffer().is_empty());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(verifier)
    .with_no_client_auth();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(MX).unwrap(), r.into_inner())
        .await?;
    let mut r = BufReader::new(tls);
    r.get_mut()
        .write_all(b"EHLO client.example\r\n")
        .await
        .unwrap();
    let ehlo = reply(&mut r).await;
    r.get_mut().write_all(b"QUIT\r\n").await.unwrap();
    let _ = reply(&mut r).await;
    Ok(ehlo.iter().map(|l| l[4..].to_ascii_uppercase()).collect())
}

fn entry(action: HostAction) -> PlanEntry {
    PlanEntry {
        host: DnsName::parse(MX).unwrap(),
        preference: 10,
        addresses: Vec::new(),
        action,
        policy: PolicyType::Sts,
        peer_must_advertise_requiretls: true,
        on_failure: FailureAction::TryNextMx,
    }
}

fn webpki_verifier(ca: &CertificateAuthority) -> Arc<PlanVerifier> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.certificate().cert_der.clone()).unwrap();
    let action = HostAction::RequireTls {
        verify: Verification::WebPki {
            allowed_names: vec![DnsName::parse(MX).unwrap()],
        },
    };
    Arc::new(
        PlanVerifier::for_entry(
            &entry(action),
            Arc::new(roots),
            mailtls_policy::default_crypto_provider(),
        )
        .unwrap(),
    )
}

fn refused_as(result: Result<Vec<String>, std::io::Error>) -> ResultType {
    let e = result.expect_err("the handshake should have been refused");
    VerificationFailure::from_io_error(&e).unwrap().result_type
}

#[tokio::test]
async fn webpki_matching_mismatched_and_self_signed() {
    for kind in KINDS {
        webpki_cases(kind).await;
    }
}

async fn webpki_cases(kind: Kind) {
    let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();

    let good = ca
        .issue(&ServerCertSpec::new(DnsName::parse(MX).unwrap()))
        .unwrap();
    let peer = start_peer(kind, &good.chain_pem(), good.key_pem());
    let ehlo = starttls(peer.port, webpki_verifier(&ca)).await.unwrap();
    // Neither Postfix 3.7 nor aiosmtpd implements REQUIRETLS: a REQUIRETLS
    // message must bounce with 5.7.30 although TLS verified (RFC 8689 §4.2.1).
    let facts = SessionFacts {
        tls: true,
        peer: PeerAuthentication::WebPki,
        peer_advertises_requiretls: ehlo.iter().any(|k| k == "REQUIRETLS"),
    };
    let failure = check_session(facts).unwrap_err();
    assert_eq!(failure, RequireTlsFailure::PeerLacksRequireTls);
    assert_eq!(failure.status().to_string(), "5.7.30");
    drop(peer);

    let other = ca
        .issue(&ServerCertSpec::new(
            DnsName::parse("other.example.net").unwrap(),
        ))
        .unwrap();
    let peer = start_peer(kind, &other.chain_pem(), other.key_pem());
    assert_eq!(
        refused_as(starttls(peer.port, webpki_verifier(&ca)).await),
        ResultType::CertificateHostMismatch
    );
    drop(peer);

    let selfsigned = self_signed(&ServerCertSpec::new(DnsName::parse(MX).unwrap())).unwrap();
    let peer = start_peer(kind, &selfsigned.cert_pem, selfsigned.key_pem());
    assert_eq!(
        refused_as(starttls(peer.port, webpki_verifier(&ca)).await),
        ResultType::CertificateNotTrusted
    );
}

#[tokio::test]
async fn webpki_refuses_an_expired_certificate() {
    for kind in KINDS {
        expired_case(kind).await;
    }
}

async fn expired_case(kind: Kind) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "expired-leaf test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![MX.to_owned()]).unwrap();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(800);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    let leaf = params.signed_by(&key, &issuer).unwrap();

    let peer = start_peer(
        kind,
        &format!("{}{}", leaf.pem(), ca_cert.pem()),
        &key.serialize_pem(),
    );
    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let action = HostAction::RequireTls {
        verify: Verification::WebPki {
            allowed_names: vec![DnsName::parse(MX).unwrap()],
        },
    };
    let v = Arc::new(
        PlanVerifier::for_entry(
            &entry(action),
            Arc::new(roots),
            mailtls_policy::default_crypto_provider(),
        )
        .unwrap(),
    );
    assert_eq!(
        refused_as(starttls(peer.port, v).await),
        ResultType::CertificateExpired
    );
}

#[tokio::test]
async fn dane_ee_against_real_servers() {
    for kind in KINDS {
        dane_ee_case(kind).await;
    }
}

async fn dane_ee_case(kind: Kind) {
    let made = self_signed(&ServerCertSpec::new(
        DnsName::parse("whatever.example").unwrap(),
    ))
    .unwrap();
    let peer = start_peer(kind, &made.cert_pem, made.key_pem());
    let dane = |cert| HostAction::RequireTls {
        verify: Verification::Dane {
            records: vec![
                UsableTlsa::for_certificate(
                    DaneUsage::DaneEe,
                    Selector::Spki,
                    MatchingType::Sha256,
                    cert,
                )
                .unwrap(),
            ],
            reference_names: vec![DnsName::parse(MX).unwrap()],
        },
    };
    let v = Arc::new(
        PlanVerifier::for_entry(
            &entry(dane(&made.cert_der)),
            Arc::new(RootCertStore::empty()),
            mailtls_policy::default_crypto_provider(),
        )
        .unwrap(),
    );
    starttls(peer.port, v).await.unwrap();

    let other = self_signed(&ServerCertSpec::new(DnsName::parse(MX).unwrap())).unwrap();
    let v = Arc::new(
        PlanVerifier::for_entry(
            &entry(dane(&other.cert_der)),
            Arc::new(RootCertStore::empty()),
            mailtls_policy::default_crypto_provider(),
        )
        .unwrap(),
    );
    assert_eq!(
        refused_as(starttls(peer.port, v).await),
        ResultType::TlsaInvalid
    );
}

/// The whole path: DNS facts (scripted, DNSSEC-authentic) → plan → verifier
/// → STARTTLS to Postfix; then the REQUIRETLS session check on the outcome.
#[tokio::test]
async fn dane_plan_from_dns_to_a_postfix_handshake() {
    use mailtls_policy::dns::{DnssecStatus, StaticResolver, TlsaRecord};
    use mailtls_policy::plan::{gather, plan};
    use mailtls_policy::requiretls::TlsDemand;
    use mailtls_policy::verifier::VerificationOutcome;

    let served = self_signed(&ServerCertSpec::new(DnsName::parse(MX).unwrap())).unwrap();
    let other = self_signed(&ServerCertSpec::new(DnsName::parse(MX).unwrap())).unwrap();
    let peer = start_peer(Kind::Postfix, &served.cert_pem, served.key_pem());
    for (published, should_pass) in [(&served, true), (&other, false)] {
        let rec = UsableTlsa::for_certificate(
            DaneUsage::DaneEe,
            Selector::Spki,
            MatchingType::Sha256,
            &published.cert_der,
        )
        .unwrap();
        let dns = StaticResolver::builder()
            .default_status(DnssecStatus::Authentic)
            .mx("example.com", 10, MX)
            .a(MX, std::net::Ipv4Addr::LOCALHOST)
            .tlsa(
                "_25._tcp.mx.example.com",
                TlsaRecord {
                    usage: 3.into(),
                    selector: 1.into(),
                    matching: 1.into(),
                    data: rec.data().to_vec(),
                },
            )
            .build()
            .unwrap();
        let facts = gather(&dns, &DnsName::parse("example.com").unwrap(), None).await;
        let delivery = plan(&facts, TlsDemand::RequireTls);
        let entry = &delivery.entries[0];
        assert_eq!(entry.policy, PolicyType::Tlsa);
        assert!(entry.peer_must_advertise_requiretls);
        let v = Arc::new(
            PlanVerifier::for_entry(
                entry,
                Arc::new(RootCertStore::empty()),
                mailtls_policy::default_crypto_provider(),
            )
            .unwrap(),
        );
        let result = starttls(peer.port, v.clone()).await;
        if !should_pass {
            assert_eq!(refused_as(result), ResultType::TlsaInvalid);
            continue;
        }
        let ehlo = result.unwrap();
        let outcome = v.last_outcome().unwrap();
        assert_eq!(
            outcome,
            VerificationOutcome::Verified(PeerAuthentication::Dane)
        );
        let session = SessionFacts {
            tls: true,
            peer: outcome.peer_authentication(),
            peer_advertises_requiretls: ehlo.iter().any(|k| k == "REQUIRETLS"),
        };
        assert_eq!(
            check_session(session),
            Err(RequireTlsFailure::PeerLacksRequireTls)
        );
    }
}
