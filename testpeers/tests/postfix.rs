//! Two Postfix instances on loopback: one receives mail for two domains
//! (Maildir and mbox) over STARTTLS with a certificate from a test CA, the
//! other relays to it at `verify` against that CA. Needs root and `postfix`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use mailtls_core::{CaSpec, CertificateAuthority, DnsName, ServerCertSpec};
use mailtls_testpeers::{Delivery, Postfix, TlsLevel, free_port, process::open_tempdir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_over_verified_starttls_into_maildir_and_mbox() {
    let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    let leaf = ca
        .issue(&ServerCertSpec::new(
            DnsName::parse("mx.receiver.test").unwrap(),
        ))
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mx = Postfix::builder("mx.receiver.test")
        .listen(addr)
        .tls(&leaf.chain_pem(), leaf.key_pem())
        .domain("maildir.test", Delivery::Maildir)
        .domain("mbox.test", Delivery::Mailbox)
        .start();
    assert_eq!(mx.smtp_addr(), Some(addr));

    let ca_dir = open_tempdir();
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.certificate().cert_pem).unwrap();
    let sender = Postfix::builder("sender.test")
        .relay_to(addr, TlsLevel::Verify)
        .relay_ca_file(&ca_file)
        .verify_name("mx.receiver.test")
        .start();
    assert_eq!(sender.smtp_addr(), None);
    sender.sendmail(
        "a@sender.test",
        &["x@maildir.test", "y@mbox.test"],
        "Subject: testpeers-both\n\nto two domains\n",
    );

    let first = mx.wait_for("testpeers-both").await;
    assert!(first.contains("to two domains"), "{first}");
    // The receiving smtpd records the TLS session in its Received header.
    assert!(first.contains("(using TLSv1."), "{first}");
    let log = sender.wait_for_log("status=sent").await;
    assert!(log.contains("Verified TLS connection established"), "{log}");
    let start = std::time::Instant::now();
    while mx.messages().len() < 2 {
        assert!(start.elapsed().as_secs() < 20, "{}", mx.log());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let all = mx.messages();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all.iter().all(|m| m.contains("Subject: testpeers-both")),
        "{all:?}"
    );
    assert!(mx.config_dir().join("mail/mbox.test.mbox").is_file());
    assert!(mx.config_dir().join("mail/maildir.test/new").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypt_level_refuses_a_peer_without_starttls() {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mx = Postfix::builder("plain.receiver.test")
        .listen(addr)
        .domain("plain.test", Delivery::Maildir)
        .start();
    let sender = Postfix::builder("sender.test")
        .relay_to(addr, TlsLevel::Encrypt)
        .start();
    sender.sendmail("a@sender.test", &["x@plain.test"], "Subject: no-tls\n\nx\n");
    let log = sender.wait_for_log("status=deferred").await;
    assert!(
        log.contains("TLS is required, but was not offered"),
        "{log}"
    );
    assert!(mx.messages().is_empty());
}

/// Speaks plain SMTP to `addr` and checks each reply's code.
fn smtp_inject(addr: SocketAddr, from: &str, rcpt: &str, body: &str) {
    use std::io::{BufRead, BufReader, Write};
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let mut r = BufReader::new(tcp.try_clone().unwrap());
    let mut w = tcp;
    let mut expect = |code: &str| loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with(code), "wanted {code}, got {line:?}");
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    };
    expect("220");
    for (cmd, code) in [
        ("EHLO injector.test".to_owned(), "250"),
        (format!("MAIL FROM:<{from}>"), "250"),
        (format!("RCPT TO:<{rcpt}>"), "250"),
        ("DATA".to_owned(), "354"),
        (format!("{body}\r\n."), "250"),
        ("QUIT".to_owned(), "221"),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        expect(code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_injected_through_the_senders_smtpd_is_relayed() {
    let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    let leaf = ca
        .issue(&ServerCertSpec::new(
            DnsName::parse("mx.receiver.test").unwrap(),
        ))
        .unwrap();
    let mx_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mx = Postfix::builder("mx.receiver.test")
        .listen(mx_addr)
        .tls(&leaf.chain_pem(), leaf.key_pem())
        .domain("mbox.test", Delivery::Mailbox)
        .start();
    let sender_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let sender = Postfix::builder("sender.test")
        .listen(sender_addr)
        .relay_to(mx_addr, TlsLevel::Encrypt)
        .start();
    smtp_inject(
        sender_addr,
        "a@sender.test",
        "z@mbox.test",
        "Subject: via-smtpd\r\n\r\nrelayed",
    );
    let m = mx.wait_for("via-smtpd").await;
    assert!(m.contains("relayed"), "{m}");
    let log = sender.wait_for_log("status=sent").await;
    // encrypt: TLS without checking the certificate.
    assert!(
        log.contains("Untrusted TLS connection established")
            || log.contains("Anonymous TLS connection established"),
        "{log}"
    );
}
