//! SMTP and submission through a rustls client: STARTTLS, AUTH, relay
//! rules, client certificates, and what lands in the spool.
// Helpers outside #[test] functions may unwrap too: a failed unwrap is a
// failed test, as clippy.toml already allows inside the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use mailtls_core::{CaSpec, CertificateAuthority, DnsName, ServerCertSpec};
use mailtls_examples::MailListener;

fn plain(authz: &str, user: &str, pass: &str) -> String {
    STANDARD.encode(format!("{authz}\0{user}\0{pass}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_session_with_starttls_stores_the_message() {
    let ts = start(|_, _| {}).await;
    let mut c = connect(ts.addr(MailListener::Smtp)).await;
    let (code, greeting) = c.reply().await;
    assert_eq!(code, 220);
    assert!(greeting[0].starts_with("mail.example.test"), "{greeting:?}");
    let (code, ehlo) = c.cmd("EHLO client.example").await;
    assert_eq!(code, 250);
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert_eq!(c.cmd("NOOP").await.0, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);

    let mut c = upgrade(c, client_config(&ts.ca_file()), "mail.example.test").await;
    let (code, ehlo) = c.cmd("EHLO client.example").await;
    assert_eq!(code, 250);
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "no AUTH on the MX port: {ehlo}");
    assert_eq!(c.cmd("STARTTLS").await.0, 503);
    assert_eq!(c.cmd("MAIL FROM:<a@client.example>").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<someone@elsewhere.example>").await;
    assert_eq!((code, text.as_str()), (554, "5.7.1 Relay access denied"));
    assert_eq!(c.cmd("RCPT TO:<user@example.test>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<Postmaster@Mail.Example.Test>").await.0, 250);
    assert_eq!(c.cmd("DATA").await.0, 354);
    c.send("Subject: hello over TLS").await;
    c.send("").await;
    c.send("first line").await;
    c.send("..a line that starts with a dot").await;
    let (code, text) = c.cmd(".").await;
    assert_eq!(code, 250, "{text}");
    assert!(text.contains("queued as"), "{text}");
    assert_eq!(c.cmd("RSET").await.0, 250);
    assert_eq!(c.cmd("QUIT").await.0, 221);

    let files = ts.spool_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let stored = std::fs::read_to_string(&files[0]).unwrap();
    assert!(stored.starts_with("Return-Path: <a@client.example>\r\nReceived: from client.example (127.0.0.1 [127.0.0.1])\r\n\tby mail.example.test (mailtls) with ESMTPS id "), "{stored}");
    assert!(
        stored.contains(
            "Subject: hello over TLS\r\n\r\nfirst line\r\n.a line that starts with a dot\r\n"
        ),
        "{stored}"
    );
    // Written atomically: no temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(ts.data_dir().join("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_needs_tls_before_auth_and_auth_before_mail() {
    let ts = start(|_, _| {}).await;
    let mut c = connect(ts.addr(MailListener::Submission)).await;
    assert_eq!(c.reply().await.0, 220);
    let (_, ehlo) = c.cmd("EHLO client.example").await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(
        !ehlo.contains("AUTH"),
        "AUTH must not be offered in clear: {ehlo}"
    );
    let (code, text) = c
        .cmd(&format!("AUTH PLAIN {}", plain("", "test", "test")))
        .await;
    assert_eq!(
        (code, text.as_str()),
        (530, "5.7.0 Must issue a STARTTLS command first")
    );
    assert_eq!(c.cmd("MAIL FROM:<test@example.test>").await.0, 530);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);

    let mut c = upgrade(c, client_config(&ts.ca_file()), "mail.example.test").await;
    let (_, ehlo) = c.cmd("EHLO client.example").await;
    assert!(ehlo.contains("AUTH PLAIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    let (code, text) = c.cmd("MAIL FROM:<test@example.test>").await;
    assert_eq!(
        (code, text.as_str()),
        (530, "5.7.0 Authentication required")
    );
    let (code, _) = c
        .cmd(&format!("AUTH PLAIN {}", plain("", "test", "wrong")))
        .await;
    assert_eq!(code, 535);
    let (code, _) = c
        .cmd(&format!("AUTH PLAIN {}", plain("root", "test", "test")))
        .await;
    assert_eq!(code, 535, "acting as another user is refused");
    assert_eq!(c.cmd("AUTH LOGIN").await.0, 504);
    // The two-step form: an empty challenge, then the response.
    assert_eq!(c.cmd("AUTH PLAIN").await.0, 334);
    let (code, text) = c.cmd(&plain("", "test", "test")).await;
    assert_eq!(
        (code, text.as_str()),
        (235, "2.7.0 Authentication successful")
    );
    assert_eq!(c.cmd("AUTH PLAIN").await.0, 503);
    assert_eq!(c.cmd("MAIL FROM:<test@example.test>").await.0, 250);
    // Authenticated: relaying to any domain is allowed.
    assert_eq!(c.cmd("RCPT TO:<friend@elsewhere.example>").await.0, 250);
    assert_eq!(c.cmd("DATA").await.0, 354);
    c.send("Subject: submitted").await;
    c.send("").await;
    assert_eq!(c.cmd(".").await.0, 250);
    assert_eq!(c.cmd("QUIT").await.0, 221);
    let stored = std::fs::read_to_string(&ts.spool_files()[0]).unwrap();
    assert!(stored.contains("with ESMTPSA id"), "{stored}");
    assert!(
        stored.contains("for <friend@elsewhere.example>"),
        "{stored}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_is_tls_from_the_first_byte() {
    let ts = start(|_, _| {}).await;
    let tcp = tokio::net::TcpStream::connect(ts.addr(MailListener::Submissions))
        .await
        .unwrap();
    let tls = tls_connect(client_config(&ts.ca_file()), "mail.example.test", tcp)
        .await
        .unwrap();
    assert_eq!(
        served_leaf(&tls).dns_names,
        ["mail.example.test"],
        "ECDSA certificate for the main name"
    );
    let mut c = LineClient::new(tls);
    assert_eq!(c.reply().await.0, 220);
    let (_, ehlo) = c.cmd("EHLO client.example").await;
    assert!(
        ehlo.contains("AUTH PLAIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain("", "test", "test")))
            .await
            .0,
        235
    );
    assert_eq!(c.cmd("QUIT").await.0, 221);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_client_certificate_authorises_relaying() {
    // A client CA and a relay's certificate, made at test time.
    let client_ca = CertificateAuthority::new_test_ca(&CaSpec {
        common_name: "Relay Clients CA".into(),
        ..CaSpec::default()
    })
    .unwrap();
    let mut spec = ServerCertSpec::new(DnsName::parse("relay.client.example").unwrap());
    spec.client_auth = true;
    let relay = client_ca.issue(&spec).unwrap();
    let stranger = CertificateAuthority::new_test_ca(&CaSpec::default())
        .unwrap()
        .issue(&spec)
        .unwrap();
    let ts = start(|config, dir| {
        let path = dir.join("client-ca.crt");
        std::fs::write(&path, &client_ca.certificate().cert_pem).unwrap();
        config.tls.client_ca_file = Some(path);
    })
    .await;

    let session = |config| {
        let addr = ts.addr(MailListener::Smtp);
        async move {
            let mut c = connect(addr).await;
            assert_eq!(c.reply().await.0, 220);
            assert_eq!(c.cmd("EHLO relay.client.example").await.0, 250);
            assert_eq!(c.cmd("STARTTLS").await.0, 220);
            let tls = tls_connect(config, "mail.example.test", c.into_inner()).await?;
            let mut c = LineClient::new(tls);
            assert_eq!(c.cmd("EHLO relay.client.example").await.0, 250);
            assert_eq!(c.cmd("MAIL FROM:<app@client.example>").await.0, 250);
            let (code, _) = c.cmd("RCPT TO:<someone@elsewhere.example>").await;
            Ok::<_, std::io::Error>((code, c))
        }
    };

    // With the certificate: the relay is allowed.
    let with_cert = client_config_with_cert(
        &ts.ca_file(),
        relay.to_certificate_with_key().unwrap().chain,
        relay.key_der(),
    );
    let (code, mut c) = session(with_cert).await.unwrap();
    assert_eq!(code, 250);
    assert_eq!(c.cmd("DATA").await.0, 354);
    c.send("Subject: relayed").await;
    c.send("").await;
    assert_eq!(c.cmd(".").await.0, 250);
    let stored = std::fs::read_to_string(&ts.spool_files()[0]).unwrap();
    assert!(stored.contains("with ESMTPSA id"), "{stored}");

    // Without one: TLS works (the certificate is optional), relaying does not.
    let (code, _) = session(client_config(&ts.ca_file())).await.unwrap();
    assert_eq!(code, 554);

    // A certificate from another CA is refused in the handshake itself.
    let wrong = client_config_with_cert(
        &ts.ca_file(),
        stranger.to_certificate_with_key().unwrap().chain,
        stranger.key_der(),
    );
    let mut c = connect(ts.addr(MailListener::Smtp)).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO stranger.example").await.0, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    // TLS 1.3 clients finish their side first and learn of the refusal on
    // their first read.
    if let Ok(tls) = tls_connect(wrong, "mail.example.test", c.into_inner()).await {
        let mut tls = tls;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tls.write_all(b"EHLO stranger.example\r\n").await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(IO_TIMEOUT, tls.read(&mut buf))
            .await
            .unwrap();
        assert!(
            matches!(read, Err(_) | Ok(0)),
            "untrusted client certificate was accepted: {read:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_pipelined_after_starttls_are_not_executed() {
    // RFC 3207 §5 / CVE-2011-0411: bytes sent in clear after STARTTLS must
    // never be read as commands of the TLS session.
    let ts = start(|_, _| {}).await;
    let mut c = connect(ts.addr(MailListener::Smtp)).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    c.send("STARTTLS\r\nMAIL FROM:<injected@evil.example>")
        .await;
    assert_eq!(c.reply().await.0, 220);
    let mut c = upgrade(c, client_config(&ts.ca_file()), "mail.example.test").await;
    // Had the injected MAIL run, this would be "503 nested MAIL" or the
    // first reply would belong to it.
    let (code, text) = c.cmd("EHLO client.example").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("MAIL FROM:<real@client.example>").await.0, 250);
    assert_eq!(c.cmd("QUIT").await.0, 221);
}
