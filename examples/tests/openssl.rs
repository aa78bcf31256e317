//! `openssl s_client` (a real peer) against the in-process server: STARTTLS
//! for SMTP, IMAP and POP3, implicit TLS, SNI choices (exact, any case,
//! wildcard, unknown, none) and the ECDSA/RSA choice by client abilities.
// Helpers outside #[test] functions may unwrap too: a failed unwrap is a
// failed test, as clippy.toml already allows inside the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use common::*;
use mailtls_core::{CertInfo, KeyAlgorithm};
use mailtls_examples::MailListener;

/// Which certificate each SNI choice must get: (s_client arguments, the
/// certificate's first DNS name).
const SNI_CASES: &[(&[&str], &str)] = &[
    (&["-servername", "mail.example.test"], "mail.example.test"),
    (&["-servername", "IMAP.EXAMPLE.TEST"], "imap.example.test"),
    (&["-servername", "pop.example.test"], "pop.example.test"),
    // Covered only by the wildcard certificate (which also names its base).
    (&["-servername", "webmail.example.test"], "example.test"),
    // Unknown names and no SNI at all get the default: the host name's.
    (&["-servername", "unknown.other.test"], "mail.example.test"),
    (&["-noservername"], "mail.example.test"),
];

async fn check_sni_cases(addr: SocketAddr, ca: &str, starttls: Option<&str>) {
    for (args, expected) in SNI_CASES {
        let mut all: Vec<&str> = vec!["-CAfile", ca, "-showcerts"];
        if let Some(proto) = starttls {
            all.extend(["-starttls", proto]);
        }
        all.extend(args.iter().copied());
        let out = s_client(addr, &all).await;
        let leaf = out.leaf();
        assert_eq!(
            leaf.dns_names.first().map(String::as_str),
            Some(*expected),
            "{args:?} via {starttls:?}: got {:?}",
            leaf.dns_names
        );
        assert!(
            out.stdout.contains(&format!("CN = {expected}")),
            "subject line names {expected}:\n{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("Verify return code: 0 (ok)"),
            "chain verifies against the test CA:\n{}",
            out.stdout
        );
        assert_eq!(leaf.key, KeyAlgorithm::EcdsaP256, "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_smtp_with_every_sni_choice() {
    let ts = start(|_, _| {}).await;
    let ca = ts.ca_file().display().to_string();
    check_sni_cases(ts.addr(MailListener::Smtp), &ca, Some("smtp")).await;
    check_sni_cases(ts.addr(MailListener::Submission), &ca, Some("smtp")).await;
    let stats = ts.server.resolver().stats();
    assert!(
        stats.exact_hits >= 6 && stats.wildcard_hits >= 2,
        "{stats:?}"
    );
    assert!(
        stats.default_no_sni >= 2 && stats.default_no_match >= 2,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_imap_and_pop3_with_every_sni_choice() {
    let ts = start(|_, _| {}).await;
    let ca = ts.ca_file().display().to_string();
    check_sni_cases(ts.addr(MailListener::Imap), &ca, Some("imap")).await;
    check_sni_cases(ts.addr(MailListener::Pop3), &ca, Some("pop3")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_ports_verify_with_the_host_name() {
    let ts = start(|_, _| {}).await;
    let ca = ts.ca_file().display().to_string();
    for (which, name) in [
        (MailListener::Submissions, "mail.example.test"),
        (MailListener::Imaps, "imap.example.test"),
        (MailListener::Pop3s, "pop.example.test"),
    ] {
        let out = s_client(
            ts.addr(which),
            &[
                "-CAfile",
                &ca,
                "-servername",
                name,
                "-verify_hostname",
                name,
            ],
        )
        .await;
        assert!(
            out.stdout.contains("Verify return code: 0 (ok)"),
            "{which:?}:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        assert_eq!(out.leaf().dns_names[0], name);
    }
    // The other SNI choices on one implicit port, too.
    check_sni_cases(ts.addr(MailListener::Imaps), &ca, None).await;
}

fn is_rsa(leaf: &CertInfo) -> bool {
    matches!(leaf.key, KeyAlgorithm::Rsa { bits: 2048 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecdsa_and_rsa_clients_each_get_their_certificate() {
    let ts = start(|_, _| {}).await;
    let ca = ts.ca_file().display().to_string();
    let sni = ["-servername", "mail.example.test", "-CAfile", ca.as_str()];
    let smtp = ts.addr(MailListener::Smtp);
    let imaps = ts.addr(MailListener::Imaps);
    let cases: &[(&[&str], bool)] = &[
        (&["-tls1_3", "-sigalgs", "ECDSA+SHA256"], false),
        (
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
            false,
        ),
        (&["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"], true),
        (&["-tls1_3", "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"], true),
        (&["-tls1_2", "-sigalgs", "RSA+SHA256"], true),
    ];
    for (args, want_rsa) in cases {
        for (addr, starttls) in [(smtp, Some("smtp")), (imaps, None)] {
            let mut all: Vec<&str> = sni.to_vec();
            all.extend(args.iter().copied());
            if let Some(p) = starttls {
                all.extend(["-starttls", p]);
            }
            let out = s_client(addr, &all).await;
            let leaf = out.leaf();
            assert_eq!(
                is_rsa(&leaf),
                *want_rsa,
                "{args:?} got {:?}:\n{}",
                leaf.key,
                out.stdout
            );
            assert!(
                out.stdout.contains("Verify return code: 0 (ok)"),
                "{args:?}:\n{}",
                out.stdout
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_smtp_dialogue_through_openssl() {
    let ts = start(|_, _| {}).await;
    let ca = ts.ca_file().display().to_string();
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-crlf",
            "-starttls",
            "smtp",
            "-CAfile",
            &ca,
        ])
        .args(["-servername", "mail.example.test", "-connect"])
        .arg(ts.addr(MailListener::Smtp).to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let script = "EHLO openssl.example\nMAIL FROM:<o@openssl.example>\nRCPT TO:<user@example.test>\nDATA\nSubject: via openssl\n\nbody\n.\nQUIT\n";
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(script.as_bytes()).await.unwrap();
        // stdin stays open until the server closes after QUIT.
        let out = tokio::time::timeout(IO_TIMEOUT, child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        drop(stdin);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("250 2.0.0 Ok: queued as"), "{text}");
        assert!(text.contains("221 2.0.0"), "{text}");
    }
    let stored = std::fs::read_to_string(&ts.spool_files()[0]).unwrap();
    assert!(
        stored.contains("Subject: via openssl\r\n\r\nbody\r\n"),
        "{stored}"
    );
}

/// Issue 15: one bad file (a malformed certificate, and a certificate whose
/// key belongs to another) must not stop the server or the good names;
/// openssl sees every SNI choice served as usual and the files are named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_beside_good_ones_do_not_stop_any_name() {
    let ts = start(|_, dir| {
        let certs = certs_dir_with_broken_pem(dir);
        let ca = mailtls_core::CertificateAuthority::new_test_ca(&Default::default()).unwrap();
        let spec = |host: &str| {
            mailtls_core::ServerCertSpec::new(mailtls_core::DnsName::parse(host).unwrap())
        };
        let one = ca.issue(&spec("stray.example.test")).unwrap();
        let other = ca.issue(&spec("other.example.test")).unwrap();
        std::fs::write(certs.join("stray.crt"), one.chain_pem()).unwrap();
        mailtls_core::secret_file::write_atomic(
            &certs.join("stray.key"),
            other.key_pem().as_bytes(),
            0o600,
        )
        .unwrap();
    })
    .await;
    let ca = ts.ca_file().display().to_string();
    check_sni_cases(ts.addr(MailListener::Smtp), &ca, Some("smtp")).await;
    let stats = ts.server.resolver().stats();
    assert_eq!(stats.bad_file_count, 2, "{stats:?}");
    let named: Vec<&str> = stats.bad_files.iter().map(|b| b.file.as_str()).collect();
    assert!(named.iter().any(|f| f.ends_with("broken.pem")), "{named:?}");
    assert!(named.iter().any(|f| f.contains("stray")), "{named:?}");
}
