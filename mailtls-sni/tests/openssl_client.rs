//! `openssl s_client` (an independent TLS implementation) against the resolver:
//! SNI selection, no SNI, and key type by signature algorithms and suites.
// Helpers outside #[test] fns unwrap too: a failed fixture is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mailtls_core::KeyType;
use mailtls_sni::{ResolverOptions, SniResolver};

/// What s_client reported about the server certificate.
struct Seen {
    subject: String,
    key_bits: u32,
}

async fn s_client(addr: SocketAddr, args: &[&str]) -> Seen {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("openssl s_client timed out")
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let subject = text
        .lines()
        .find_map(|l| l.strip_prefix("subject="))
        .unwrap_or_else(|| {
            panic!(
                "no subject in s_client output:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned();
    let key_bits = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("Server public key is ")?
                .strip_suffix(" bit")?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    Seen { subject, key_bits }
}

fn cn(seen: &Seen) -> &str {
    seen.subject.rsplit("CN = ").next().unwrap_or_default()
}

async fn world() -> (tempfile::TempDir, Arc<SniResolver>, TestServer) {
    let ca = ca();
    let dir = private_tempdir();
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
        &issue(
            &ca,
            "wild.example.org",
            &["*.example.org"],
            KeyType::EcdsaP256,
        ),
        dir.path(),
        "b-org",
    );
    write(
        &issue(&ca, "imap.example.org", &[], KeyType::EcdsaP256),
        dir.path(),
        "c-imap",
    );
    let r = Arc::new(SniResolver::new(ResolverOptions::default()));
    r.reload_from_dir(dir.path()).unwrap();
    let server = serve(r.clone(), vec![]).await;
    (dir, r, server)
}

#[tokio::test]
async fn openssl_gets_the_certificate_for_its_name() {
    let (_dir, _r, server) = world().await;
    for (sni, want) in [
        ("mail.example.com", "mail.example.com"),
        ("MAIL.Example.COM", "mail.example.com"),
        ("imap.example.org", "imap.example.org"),
        ("smtp.example.org", "wild.example.org"),
        ("SMTP.EXAMPLE.ORG", "wild.example.org"),
        ("nothing.example.net", "mail.example.com"),
    ] {
        let seen = s_client(server.addr, &["-servername", sni]).await;
        assert_eq!(cn(&seen), want, "servername {sni}: {}", seen.subject);
    }
    let seen = s_client(server.addr, &["-noservername"]).await;
    assert_eq!(cn(&seen), "mail.example.com");
}

#[tokio::test]
async fn openssl_key_type_follows_sigalgs_and_suites() {
    let (_dir, _r, server) = world().await;
    let host = ["-servername", "mail.example.com"];
    let ec = s_client(
        server.addr,
        &[&host[..], &["-sigalgs", "ECDSA+SHA256"]].concat(),
    )
    .await;
    assert_eq!(ec.key_bits, 256, "{}", ec.subject);
    let rsa = s_client(
        server.addr,
        &[&host[..], &["-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"]].concat(),
    )
    .await;
    assert_eq!(rsa.key_bits, 2048);
    // TLS 1.2 with only RSA-authenticated suites: RSA even though ECDSA
    // signature algorithms are offered.
    let rsa12 = s_client(
        server.addr,
        &[
            &host[..],
            &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(rsa12.key_bits, 2048);
    let ec12 = s_client(
        server.addr,
        &[
            &host[..],
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(ec12.key_bits, 256);
    // No SNI, RSA only: the RSA default.
    let rsa_default = s_client(
        server.addr,
        &["-noservername", "-sigalgs", "RSA-PSS+SHA256"],
    )
    .await;
    assert_eq!(rsa_default.key_bits, 2048);
    assert_eq!(cn(&rsa_default), "mail.example.com");
}
