//! Real TLS handshakes through tokio-rustls: which certificate each client gets.
// Helpers outside #[test] fns unwrap too: a failed fixture is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use mailtls_core::{
    ACME_TLS_ALPN_PROTOCOL, DnsName, KeyAlgorithm, KeyType, TlsAlpnChallenge, TlsAlpnChallengeSlot,
};
use mailtls_sni::{ResolverOptions, SniResolver};

async fn world() -> (tempfile::TempDir, Arc<SniResolver>) {
    let ca = ca();
    let dir = private_tempdir();
    // Loaded first: the default.
    write(
        &issue(&ca, "mail.example.com", &[], KeyType::EcdsaP256),
        dir.path(),
        "a-mail-ec",
    );
    write(
        &issue(&ca, "mail.example.com", &[], KeyType::Rsa2048),
        dir.path(),
        "a-mail-rsa",
    );
    write(
        &issue(&ca, "example.org", &["*.example.org"], KeyType::EcdsaP256),
        dir.path(),
        "b-org",
    );
    write(
        &issue(&ca, "imap.example.org", &[], KeyType::EcdsaP384),
        dir.path(),
        "c-imap-org",
    );
    let r = Arc::new(SniResolver::new(ResolverOptions::default()));
    r.reload_from_dir(dir.path()).unwrap();
    (dir, r)
}

#[tokio::test]
async fn names_select_the_expected_certificate() {
    let (_dir, r) = world().await;
    let server = serve(r.clone(), vec![]).await;
    let all = client_config(&all_schemes(), vec![]);
    let first = |info: mailtls_core::CertInfo| info.dns_names[0].clone();
    let cases = [
        (Some("mail.example.com"), "mail.example.com"),
        (Some("MAIL.EXAMPLE.COM"), "mail.example.com"),
        (Some("mail.example.com."), "mail.example.com"),
        (Some("imap.example.org"), "imap.example.org"),
        (Some("smtp.example.org"), "example.org"),
        (Some("Smtp.Example.Org."), "example.org"),
        (Some("example.org"), "example.org"),
        (Some("deep.smtp.example.org"), "mail.example.com"),
        (Some("unknown.example.net"), "mail.example.com"),
        (None, "mail.example.com"),
    ];
    for (sni, want) in cases {
        let got = handshake(server.addr, all.clone(), sni).await.unwrap();
        assert_eq!(first(got), want, "sni {sni:?}");
    }
    let s = r.stats();
    assert_eq!(s.exact_hits, 5);
    assert_eq!(s.wildcard_hits, 2);
    assert_eq!(s.default_no_match, 2);
    assert_eq!(s.default_no_sni, 1);
}

#[tokio::test]
async fn key_type_follows_client_signature_schemes() {
    let (_dir, r) = world().await;
    let server = serve(r, vec![]).await;
    let ec = handshake(
        server.addr,
        client_config(ECDSA_ONLY, vec![]),
        Some("mail.example.com"),
    )
    .await
    .unwrap();
    assert_eq!(ec.key, KeyAlgorithm::EcdsaP256);
    let rsa = handshake(
        server.addr,
        client_config(RSA_ONLY, vec![]),
        Some("mail.example.com"),
    )
    .await
    .unwrap();
    assert_eq!(rsa.key, KeyAlgorithm::Rsa { bits: 2048 });
    // Default certificate too: no SNI, RSA-only client.
    let rsa = handshake(server.addr, client_config(RSA_ONLY, vec![]), None)
        .await
        .unwrap();
    assert_eq!(rsa.key, KeyAlgorithm::Rsa { bits: 2048 });
    // P-384 only for the P-384 name.
    let p384 = handshake(
        server.addr,
        client_config(&[rustls::SignatureScheme::ECDSA_NISTP384_SHA384], vec![]),
        Some("imap.example.org"),
    )
    .await
    .unwrap();
    assert_eq!(p384.key, KeyAlgorithm::EcdsaP384);
}

#[tokio::test]
async fn strict_mode_refuses_with_access_denied() {
    let ca = ca();
    let dir = private_tempdir();
    write(
        &issue(&ca, "mail.example.com", &[], KeyType::EcdsaP256),
        dir.path(),
        "mail",
    );
    let misses = Arc::new(AtomicUsize::new(0));
    let m2 = misses.clone();
    let r = Arc::new(SniResolver::new(
        ResolverOptions::default()
            .with_strict(true)
            .with_on_miss(Arc::new(move |_| {
                m2.fetch_add(1, Ordering::Relaxed);
            })),
    ));
    r.reload_from_dir(dir.path()).unwrap();
    let server = serve(r.clone(), vec![]).await;
    let cfg = client_config(&all_schemes(), vec![]);
    assert!(
        handshake(server.addr, cfg.clone(), Some("mail.example.com"))
            .await
            .is_ok()
    );
    for sni in [Some("other.example.com"), None] {
        let err = handshake(server.addr, cfg.clone(), sni).await.unwrap_err();
        assert!(err.contains("AccessDenied"), "{err}");
    }
    assert_eq!(r.stats().refused, 2);
    assert_eq!(misses.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn tls_alpn_01_gets_the_challenge_and_never_the_default() {
    let (_dir, r) = world().await;
    let alpn = vec![ACME_TLS_ALPN_PROTOCOL.to_vec()];
    let server = serve(r.clone(), alpn.clone()).await;
    let acme = client_config(&all_schemes(), alpn);
    // No challenge installed: refused although a real certificate matches.
    assert!(
        handshake(server.addr, acme.clone(), Some("mail.example.com"))
            .await
            .is_err()
    );

    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["mail.example.com".to_owned()]).unwrap();
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(&[7u8; 32]));
    let cert = params.self_signed(&key).unwrap();
    r.install_challenge(TlsAlpnChallenge {
        name: DnsName::parse("mail.example.com").unwrap(),
        chain: vec![cert.der().clone()],
        key: rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    })
    .unwrap();
    let got = handshake(server.addr, acme.clone(), Some("mail.example.com"))
        .await
        .unwrap();
    assert_eq!(
        got.sha256_fingerprint,
        mailtls_core::CertInfo::from_der(cert.der())
            .unwrap()
            .sha256_fingerprint
    );
    // Ordinary clients still get the real certificate.
    let normal = handshake(
        server.addr,
        client_config(&all_schemes(), vec![]),
        Some("mail.example.com"),
    )
    .await
    .unwrap();
    assert!(normal.subject.contains(mailtls_core::maker::TEST_MARKER_OU));
    r.remove_challenge(&DnsName::parse("mail.example.com").unwrap());
    assert!(
        handshake(server.addr, acme, Some("mail.example.com"))
            .await
            .is_err()
    );
    let s = r.stats();
    assert_eq!((s.challenges_served, s.challenges_refused), (1, 2));
}

#[tokio::test]
async fn failed_reload_keeps_the_old_set() {
    let (_dir, r) = world().await;
    let before = r.generation();
    // A directory whose only certificate is broken has nothing to serve.
    let broken = private_tempdir();
    std::fs::write(
        broken.path().join("broken.crt"),
        "-----BEGIN CERTIFICATE-----\nnope\n",
    )
    .unwrap();
    let err = r.reload_from_dir(broken.path()).unwrap_err();
    assert!(err.to_string().contains("broken.crt"), "{err}");
    assert_eq!(r.generation(), before);
    assert_eq!(r.certificates().len(), 4);
    assert!(r.stats().last_reload_error.unwrap().contains("broken.crt"));
    // An empty directory is refused too.
    let empty = private_tempdir();
    assert!(matches!(
        r.reload_from_dir(empty.path()),
        Err(mailtls_sni::ReloadError::NoCertificates)
    ));
    assert_eq!(r.certificates().len(), 4);
}

#[tokio::test]
async fn expiring_list_sorted_soonest_first() {
    let ca = ca();
    let dir = private_tempdir();
    for (stem, days) in [("long", 300), ("short", 5), ("mid", 20)] {
        let mut spec = mailtls_core::ServerCertSpec::new(
            DnsName::parse(&format!("{stem}.example.com")).unwrap(),
        );
        spec.validity_days = days;
        ca.issue(&spec)
            .unwrap()
            .write_files(dir.path(), stem)
            .unwrap();
    }
    let r = SniResolver::new(ResolverOptions::default());
    r.reload_from_dir(dir.path()).unwrap();
    let soon: Vec<String> = r
        .expiring_within(std::time::Duration::from_secs(30 * 86400))
        .into_iter()
        .map(|c| c.names[0].clone())
        .collect();
    assert_eq!(soon, ["short.example.com", "mid.example.com"]);
}
