//! The S/MIME gateway on the reference server's message path, against real
//! peers: messages made by `openssl cms` sent in over SMTP are decrypted,
//! verified and marked in the spool, and the signer's certificate is
//! harvested; mail submitted with AUTH by `swaks` leaves signed and
//! encrypted so that `openssl cms -decrypt` / `-verify` read it; forged
//! marks are stripped; the `reject` policy refuses with a 5xx.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../mailtls-smime/tests/gateway_common/mod.rs"]
mod gateway_common;
mod outbound_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::SystemTime;

use common::{IO_TIMEOUT, TestServer};
use gateway_common::{Issued, Spec, TestCa, openssl_cms as openssl};
use mailtls_examples::{Config, MailListener};
use mailtls_smime::gateway::{Binding, FileStorage, HarvestMode, KeyStore, PartnerStore};

/// The people in these tests.
struct World {
    ca: TestCa,
    /// Remote partner who signs with OpenSSL (P-256).
    alice: Issued,
    /// Local user whose key the gateway holds (RSA).
    bob: Issued,
    /// Local user who submits with AUTH; the gateway signs with his key.
    sender: Issued,
    /// Remote recipient whose certificate the partner store holds (RSA).
    carol: Issued,
    /// Local user whose key the gateway does NOT hold.
    dave: Issued,
}

impl World {
    fn new() -> Self {
        let ca = TestCa::new();
        World {
            alice: ca.issue(&Spec::email(&["alice@partner.example"])),
            bob: ca.issue(&Spec::rsa(&["bob@example.test"])),
            sender: ca.issue(&Spec::email(&["sender@example.test"])),
            carol: ca.issue(&Spec::rsa(&["carol@remote.example"])),
            dave: ca.issue(&Spec::rsa(&["dave@example.test"])),
            ca,
        }
    }

    /// Files for `openssl cms`: the CA, and each person's certificate and
    /// key as NAME.pem / NAME.key.
    fn write_files(&self, dir: &Path) {
        std::fs::write(dir.join("ca.pem"), &self.ca.pem).unwrap();
        for (name, who) in [
            ("alice", &self.alice),
            ("bob", &self.bob),
            ("carol", &self.carol),
            ("dave", &self.dave),
        ] {
            std::fs::write(dir.join(format!("{name}.pem")), &who.pem).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), &who.key_pem).unwrap();
        }
    }
}

/// A server with `[smime]` on, outbound delivery to a relay that refuses
/// connections (so queued copies stay in `<data_dir>/queue`), the gateway's
/// key store holding Bob's and the sender's keys, the partner store
/// holding Carol's certificate, and the test CA as trust anchor.
async fn start(world: &World, extra_toml: &str) -> TestServer {
    // A port nobody listens on: delivery attempts fail and are deferred.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    start_relaying_to(world, extra_toml, closed_port).await
}

/// [`start`] with the relay host on `relay_port` (plain SMTP).
async fn start_relaying_to(world: &World, extra_toml: &str, relay_port: u16) -> TestServer {
    common::start(|config, dir| {
        let anchors = dir.join("smime-anchors.pem");
        std::fs::write(&anchors, &world.ca.pem).unwrap();
        let text = format!(
            r#"[smime]
enabled = true
trust_anchors_file = "{anchors}"
send_as = {{ test = ["sender@example.test"], mallory = ["mallory@example.test"] }}
{extra_toml}
[outbound]
enabled = true
relay_host = "127.0.0.1:{relay_port}"
relay_tls = "none"
retry_seconds = [3600]

[[users]]
name = "test"
password = "test"

[[users]]
name = "mallory"
password = "mallory"
"#,
            anchors = anchors.display()
        );
        *config = Config::from_toml_str(&text).unwrap();
        config.server.data_dir = dir.to_owned();
        config.use_ephemeral_ports();
        let smime = dir.join("smime");
        let mut keys = KeyStore::open(&smime.join("keys")).unwrap();
        for who in [&world.bob, &world.sender] {
            keys.add_user_key(who.pem.as_bytes(), who.key_pem.as_bytes(), "test")
                .unwrap();
        }
        let storage = FileStorage::in_dir(&smime, "partners.json").unwrap();
        // The partner store is async; this set-up closure is not.
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let mut partners = PartnerStore::open(Box::new(storage), HarvestMode::Automatic)
                    .await
                    .unwrap();
                partners
                    .upload(
                        world.carol.pem.as_bytes(),
                        "carol.pem",
                        Binding::Addresses,
                        SystemTime::now(),
                    )
                    .await
                    .unwrap();
            })
        });
    })
    .await
}

/// The lines of a message, without line ends (for the SMTP client).
fn lines(message: &[u8]) -> Vec<String> {
    String::from_utf8(message.to_vec())
        .unwrap()
        .split('\n')
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .skip_while(String::is_empty)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

fn header_block(message: &str) -> &str {
    message.split("\r\n\r\n").next().unwrap()
}

fn subject(message: &str) -> String {
    message
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_else(|| panic!("no Subject in {message}"))
        .to_owned()
}

fn only_spooled(ts: &TestServer) -> String {
    let files = ts.spool_files();
    assert_eq!(files.len(), 1, "{files:?}");
    String::from_utf8(std::fs::read(&files[0]).unwrap()).unwrap()
}

fn queue_bodies(ts: &TestServer) -> Vec<PathBuf> {
    let dir = ts.data_dir().join("queue");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A message from alice@partner.example to bob@example.test, signed by
/// OpenSSL with Alice's key (multipart/signed).
fn alice_signs(dir: &Path, subject: &str, text: &str) -> Vec<u8> {
    signs(dir, "alice", "alice@partner.example", subject, text)
}

/// A message from `from` to bob@example.test, signed by OpenSSL with the
/// key of `who` (`who.pem` / `who.key` in `dir`).
fn signs(dir: &Path, who: &str, from: &str, subject: &str, text: &str) -> Vec<u8> {
    std::fs::write(
        dir.join("content.eml"),
        format!("Content-Type: text/plain\r\n\r\n{text}\r\n"),
    )
    .unwrap();
    let (cert, key) = (format!("{who}.pem"), format!("{who}.key"));
    openssl(
        dir,
        &[
            "-sign",
            "-in",
            "content.eml",
            "-signer",
            &cert,
            "-inkey",
            &key,
            "-from",
            from,
            "-to",
            "bob@example.test",
            "-subject",
            subject,
        ],
    )
}

/// Decrypts `message` with Carol's key and verifies the signature inside
/// against the test CA, both with OpenSSL; returns the content.
fn carol_opens(dir: &Path, message: &[u8]) -> String {
    std::fs::write(dir.join("for-carol.eml"), message).unwrap();
    let inner = openssl(
        dir,
        &[
            "-decrypt",
            "-in",
            "for-carol.eml",
            "-recip",
            "carol.pem",
            "-inkey",
            "carol.key",
        ],
    );
    std::fs::write(dir.join("carol-inner.eml"), &inner).unwrap();
    let content = openssl(
        dir,
        &["-verify", "-in", "carol-inner.eml", "-CAfile", "ca.pem"],
    );
    String::from_utf8(content).unwrap()
}

/// Sends `message` with `swaks` on the submission port: STARTTLS, AUTH
/// PLAIN as test/test. Returns swaks' exit success and its transcript.
async fn swaks(ts: &TestServer, from: &str, to: &str, message: &[u8]) -> (bool, String) {
    swaks_as(ts, "test", from, to, message).await
}

/// [`swaks`] logging in as `user` (password = user name).
async fn swaks_as(
    ts: &TestServer,
    user: &str,
    from: &str,
    to: &str,
    message: &[u8],
) -> (bool, String) {
    let dir = common::private_tempdir();
    let file = dir.path().join("message.eml");
    std::fs::write(&file, message).unwrap();
    let addr = ts.addr(MailListener::Submission);
    let mut swaks = tokio::process::Command::new("swaks");
    swaks
        .args(["--server", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .args(["--ehlo", "client.example.test", "--tls"])
        .args([
            "--auth",
            "PLAIN",
            "--auth-user",
            user,
            "--auth-password",
            user,
        ])
        .args(["--from", from, "--to", to])
        .arg("--data")
        .arg(format!("@{}", file.display()));
    run(&mut swaks).await
}

/// Runs a command to its end (within [`IO_TIMEOUT`]); returns its success
/// and stdout + stderr.
async fn run(command: &mut tokio::process::Command) -> (bool, String) {
    let out = command.stdin(Stdio::null()).kill_on_drop(true).output();
    let out = tokio::time::timeout(IO_TIMEOUT, out)
        .await
        .expect("the command timed out")
        .expect("the command is installed");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_signed_and_encrypted_mail_is_decrypted_verified_marked_and_harvested() {
    let world = World::new();
    let files = common::private_tempdir();
    world.write_files(files.path());
    let ts = start(&world, "").await;

    // Alice signs with OpenSSL, then encrypts to Bob's certificate; the
    // outer header carries a forged status header.
    let signed = alice_signs(
        files.path(),
        "quarterly numbers",
        "The quarterly numbers are attached.",
    );
    std::fs::write(files.path().join("signed.eml"), &signed).unwrap();
    let encrypted = openssl(
        files.path(),
        &[
            "-encrypt",
            "-aes256",
            "-in",
            "signed.eml",
            "-from",
            "alice@partner.example",
            "-to",
            "bob@example.test",
            "-subject",
            "quarterly numbers",
            "bob.pem",
        ],
    );
    let mut message = b"X-Mailtls-Signed: valid; signer=ceo@example.test\r\n".to_vec();
    message.extend_from_slice(&encrypted);
    assert!(!String::from_utf8_lossy(&message).contains("quarterly numbers are attached"));

    let body = lines(&message);
    let body: Vec<&str> = body.iter().map(String::as_str).collect();
    common::send_mail(&ts, "bob@example.test", &body).await;

    let spooled = only_spooled(&ts);
    let headers = header_block(&spooled);
    assert!(
        spooled.contains("The quarterly numbers are attached."),
        "not decrypted:\n{spooled}"
    );
    assert!(
        headers.contains("X-Mailtls-Encrypted: decrypted"),
        "{headers}"
    );
    assert!(
        headers.contains("X-Mailtls-Signed: valid; signer=alice@partner.example"),
        "{headers}"
    );
    assert!(!spooled.contains("ceo@example.test"), "forged header kept");
    assert_eq!(subject(&spooled), "[encrypted] [signed] quarterly numbers");

    // Alice's certificate was harvested: the listing shows it, and it is
    // on disk for the next start.
    let status = mailtls_examples::smime_path::list(ts.server.config()).unwrap();
    let harvested: Vec<_> = status
        .partners
        .iter()
        .filter(|p| p.source == "harvested")
        .collect();
    assert_eq!(harvested.len(), 1, "{status:?}");
    assert_eq!(harvested[0].addresses, ["alice@partner.example"]);
    assert!(harvested[0].enabled && !harvested[0].expired);
    assert_eq!(status.own_keys.len(), 2);
    assert!(status.pending.is_empty());
    let text = status.to_text();
    assert!(text.contains("alice@partner.example"), "{text}");
    assert!(text.contains("carol@remote.example"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_mail_leaves_signed_and_encrypted_for_openssl() {
    let world = World::new();
    let files = common::private_tempdir();
    world.write_files(files.path());
    let ts = start(&world, "").await;

    let message = b"From: Sender <sender@example.test>\r\nTo: carol@remote.example\r\n\
        Subject: Re: [signed] contract\r\n\r\nThe signed contract is attached.\r\n";
    let (ok, transcript) = swaks(&ts, "sender@example.test", "carol@remote.example", message).await;
    assert!(ok, "{transcript}");
    assert!(ts.spool_files().is_empty(), "nothing is local");

    let queued = queue_bodies(&ts);
    assert_eq!(queued.len(), 1, "{queued:?}\n{transcript}");
    let bytes = std::fs::read(&queued[0]).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("signed contract is attached"), "{text}");
    assert!(text.contains("application/pkcs7-mime"), "{text}");
    // The quoted mark left with the reply.
    assert_eq!(subject(&text), "Re: contract");

    std::fs::write(files.path().join("queued.eml"), &bytes).unwrap();
    let inner = openssl(
        files.path(),
        &[
            "-decrypt",
            "-in",
            "queued.eml",
            "-recip",
            "carol.pem",
            "-inkey",
            "carol.key",
        ],
    );
    std::fs::write(files.path().join("inner.eml"), &inner).unwrap();
    let content = openssl(
        files.path(),
        &[
            "-verify",
            "-in",
            "inner.eml",
            "-CAfile",
            "ca.pem",
            "-signer",
            "signer.pem",
        ],
    );
    assert!(
        String::from_utf8_lossy(&content).contains("The signed contract is attached."),
        "{}",
        String::from_utf8_lossy(&content)
    );
    // Signed with the sender's own certificate.
    let signer = std::fs::read_to_string(files.path().join("signer.pem")).unwrap();
    assert_eq!(signer.trim(), world.sender.pem.trim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_marks_and_status_headers_are_stripped_on_incoming() {
    let world = World::new();
    let ts = start(&world, "").await;
    common::send_mail(
        &ts,
        "bob@example.test",
        &[
            "From: alice@partner.example",
            "To: bob@example.test",
            "Subject: =?utf-8?q?=5BSIGNED=5D?= Pay [encrypted]now",
            "X-Mailtls-Signed: valid; signer=alice@partner.example",
            "x-mailtls-encrypted:",
            " decrypted",
            "",
            "Pay invoice 42.",
        ],
    )
    .await;
    let spooled = only_spooled(&ts);
    let headers = header_block(&spooled).to_ascii_lowercase();
    assert!(!headers.contains("x-mailtls-signed"), "{headers}");
    assert!(!headers.contains("x-mailtls-encrypted"), "{headers}");
    let subject = subject(&spooled);
    assert!(
        !subject.to_ascii_lowercase().contains("signed")
            && !subject.to_ascii_lowercase().contains("encrypted"),
        "{subject}"
    );
    assert!(
        subject.contains("Pay") && subject.contains("now"),
        "{subject}"
    );
    assert!(spooled.contains("Pay invoice 42."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_policy_without_a_certificate_is_a_5xx() {
    let world = World::new();
    let ts = start(
        &world,
        "[smime.policies]\n\"remote.example\" = \"reject\"\n\"retry.example\" = \"always\"\n",
    )
    .await;
    let message = b"From: sender@example.test\r\nTo: dave@remote.example\r\n\
        Subject: secret\r\n\r\nNo certificate for Dave.\r\n";
    let (ok, transcript) = swaks(&ts, "sender@example.test", "dave@remote.example", message).await;
    assert!(!ok, "{transcript}");
    assert!(
        transcript
            .lines()
            .any(|l| l.starts_with("<~*") && l.contains(" 554 5.7.5 ")),
        "{transcript}"
    );
    assert!(queue_bodies(&ts).is_empty());
    assert!(ts.spool_files().is_empty());

    // "always": a transient refusal, so the client keeps the message.
    let message = b"From: sender@example.test\r\nTo: erin@retry.example\r\n\
        Subject: secret\r\n\r\nNo certificate for Erin yet.\r\n";
    let (ok, transcript) = swaks(&ts, "sender@example.test", "erin@retry.example", message).await;
    assert!(!ok, "{transcript}");
    assert!(
        transcript
            .lines()
            .any(|l| l.starts_with("<~*") && l.contains(" 451 4.7.5 ")),
        "{transcript}"
    );
    assert!(queue_bodies(&ts).is_empty());

    // Carol has a certificate: the same policy lets her mail through,
    // encrypted.
    let message = b"From: sender@example.test\r\nTo: carol@remote.example\r\n\
        Subject: secret\r\n\r\nFor Carol only.\r\n";
    let (ok, transcript) = swaks(&ts, "sender@example.test", "carol@remote.example", message).await;
    assert!(ok, "{transcript}");
    let queued = queue_bodies(&ts);
    assert_eq!(queued.len(), 1);
    let text = String::from_utf8(std::fs::read(&queued[0]).unwrap()).unwrap();
    assert!(!text.contains("For Carol only."), "{text}");
}

/// Sends a message without AUTH through the MX listener (STARTTLS), as an
/// internal server would; returns the reply to the end of data.
async fn relay_mail(ts: &TestServer, from: &str, rcpt: &str, body: &[&str]) -> (u16, String) {
    let mut c = common::connect(ts.addr(MailListener::Smtp)).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO relay.example.test").await.0, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    let mut c = common::upgrade(c, common::client_config(&ts.ca_file()), "mail.example.test").await;
    assert_eq!(c.cmd("EHLO relay.example.test").await.0, 250);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).await.0, 250);
    let (code, text) = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
    if code != 250 {
        return (code, text);
    }
    assert_eq!(c.cmd("DATA").await.0, 354);
    for l in body {
        c.send(l).await;
    }
    let reply = c.cmd(".").await;
    assert_eq!(c.cmd("QUIT").await.0, 221);
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_relay_relays_without_login_and_gets_its_senders_signed() {
    let world = World::new();
    let files = common::private_tempdir();
    world.write_files(files.path());

    // Without the relay listed, a remote recipient is refused.
    let ts = start(&world, "").await;
    let (code, _) = relay_mail(&ts, "sender@example.test", "carol@remote.example", &[]).await;
    assert_eq!(code, 554);
    drop(ts);

    let ts = start(
        &world,
        "[[smime.trusted_relays]]\nnetwork = \"127.0.0.0/8\"\nsender_domains = [\"example.test\"]\n",
    )
    .await;
    let (code, text) = relay_mail(
        &ts,
        "sender@example.test",
        "carol@remote.example",
        &[
            "From: sender@example.test",
            "To: carol@remote.example",
            "Subject: from the internal server",
            "",
            "Relayed and signed.",
        ],
    )
    .await;
    assert_eq!(code, 250, "{text}");
    let queued = queue_bodies(&ts);
    assert_eq!(queued.len(), 1);
    let queued_bytes = std::fs::read(&queued[0]).unwrap();
    assert!(carol_opens(files.path(), &queued_bytes).contains("Relayed and signed."));

    // A sender outside the relay's allowance is relayed (encrypted, since
    // Carol has a certificate) but not signed.
    let (code, text) = relay_mail(
        &ts,
        "other@elsewhere.example",
        "carol@remote.example",
        &[
            "From: other@elsewhere.example",
            "To: carol@remote.example",
            "Subject: not ours to sign",
            "",
            "Relayed, not signed.",
        ],
    )
    .await;
    assert_eq!(code, 250, "{text}");
    let queued = queue_bodies(&ts);
    assert_eq!(queued.len(), 2);
    let mut opened = Vec::new();
    for (i, q) in queued.iter().enumerate() {
        let name = format!("q{i}.eml");
        std::fs::copy(q, files.path().join(&name)).unwrap();
        opened.push(
            String::from_utf8(openssl(
                files.path(),
                &[
                    "-decrypt",
                    "-in",
                    &name,
                    "-recip",
                    "carol.pem",
                    "-inkey",
                    "carol.key",
                ],
            ))
            .unwrap(),
        );
    }
    let unsigned = opened
        .iter()
        .find(|m| m.contains("Relayed, not signed."))
        .expect("the second message is in the queue");
    assert!(!unsigned.contains("pkcs7-signature"), "{unsigned}");
}

/// Sends `body` through the MX listener (STARTTLS, no AUTH) to several
/// recipients at once; returns the reply to the end of data.
async fn mail_to_many(ts: &TestServer, from: &str, rcpts: &[&str], body: &[&str]) -> (u16, String) {
    let mut c = common::connect(ts.addr(MailListener::Smtp)).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO mx.partner.example").await.0, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    let mut c = common::upgrade(c, common::client_config(&ts.ca_file()), "mail.example.test").await;
    assert_eq!(c.cmd("EHLO mx.partner.example").await.0, 250);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).await.0, 250);
    for r in rcpts {
        let (code, text) = c.cmd(&format!("RCPT TO:<{r}>")).await;
        assert_eq!(code, 250, "{r}: {text}");
    }
    assert_eq!(c.cmd("DATA").await.0, 354);
    for l in body {
        c.send(l).await;
    }
    let reply = c.cmd(".").await;
    assert_eq!(c.cmd("QUIT").await.0, 221);
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_get_mail_signed_as_another_user() {
    let world = World::new();
    let ts = start(&world, "").await;
    let message = b"From: sender@example.test\r\nTo: x@nocert.example\r\n\
        Subject: payment order\r\n\r\nPlease pay the bearer.\r\n";

    // Mallory logs in and claims to be sender@: the server may relay it
    // (she is a user), but the gateway does not sign it with sender's key.
    let (ok, transcript) = swaks_as(
        &ts,
        "mallory",
        "sender@example.test",
        "x@nocert.example",
        message,
    )
    .await;
    assert!(ok, "{transcript}");
    let queued = queue_bodies(&ts);
    assert_eq!(queued.len(), 1, "{queued:?}");
    let text = String::from_utf8(std::fs::read(&queued[0]).unwrap()).unwrap();
    assert!(text.contains("Please pay the bearer."), "{text}");
    assert!(
        !text.contains("multipart/signed"),
        "signed for mallory:\n{text}"
    );
    assert!(!text.contains("pkcs7-signature"), "{text}");

    // The owner of sender@ (login "test", smime.send_as) does get it signed.
    let (ok, transcript) = swaks_as(
        &ts,
        "test",
        "sender@example.test",
        "x@nocert.example",
        message,
    )
    .await;
    assert!(ok, "{transcript}");
    let queued = queue_bodies(&ts);
    assert_eq!(queued.len(), 2, "{queued:?}");
    let signed: Vec<String> = queued
        .iter()
        .map(|p| String::from_utf8(std::fs::read(p).unwrap()).unwrap())
        .filter(|t| t.contains("multipart/signed"))
        .collect();
    assert_eq!(signed.len(), 1, "exactly test's copy is signed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_message_is_decrypted_only_for_the_recipient_with_a_key() {
    let world = World::new();
    let files = common::private_tempdir();
    world.write_files(files.path());
    let ts = start(&world, "").await;

    // OpenSSL encrypts to Bob (key in the gateway) and Dave (no key).
    std::fs::write(
        files.path().join("content.eml"),
        "Content-Type: text/plain\r\n\r\nThe merger closes on Friday.\r\n",
    )
    .unwrap();
    let encrypted = openssl(
        files.path(),
        &[
            "-encrypt",
            "-aes256",
            "-in",
            "content.eml",
            "-from",
            "alice@partner.example",
            "-to",
            "bob@example.test, dave@example.test",
            "-subject",
            "merger",
            "bob.pem",
            "dave.pem",
        ],
    );
    let body = lines(&encrypted);
    let body: Vec<&str> = body.iter().map(String::as_str).collect();
    let (code, text) = mail_to_many(
        &ts,
        "alice@partner.example",
        &["bob@example.test", "dave@example.test"],
        &body,
    )
    .await;
    assert_eq!(code, 250, "{text}");

    let files_spooled = ts.spool_files();
    assert_eq!(
        files_spooled.len(),
        2,
        "one copy per group: {files_spooled:?}"
    );
    let copies: Vec<String> = files_spooled
        .iter()
        .map(|p| String::from_utf8(std::fs::read(p).unwrap()).unwrap())
        .collect();
    let bob = copies
        .iter()
        .find(|c| c.contains("for <bob@example.test>"))
        .expect("a copy for bob");
    let dave = copies
        .iter()
        .find(|c| c.contains("for <dave@example.test>"))
        .expect("a copy for dave");
    assert!(bob.contains("The merger closes on Friday."), "{bob}");
    assert!(
        header_block(bob).contains("X-Mailtls-Encrypted: decrypted"),
        "{bob}"
    );
    assert!(!dave.contains("The merger closes on Friday."), "{dave}");
    assert!(dave.contains("application/"), "{dave}");

    // Dave's copy is still the message OpenSSL made: his own key opens it.
    let start = dave
        .find("MIME-Version")
        .expect("dave's copy keeps the CMS headers");
    std::fs::write(files.path().join("dave-copy.eml"), &dave[start..]).unwrap();
    let plain = openssl(
        files.path(),
        &[
            "-decrypt",
            "-in",
            "dave-copy.eml",
            "-recip",
            "dave.pem",
            "-inkey",
            "dave.key",
        ],
    );
    assert!(String::from_utf8_lossy(&plain).contains("The merger closes on Friday."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_is_never_refused_by_the_reject_policy() {
    let world = World::new();
    // Postfix as the relay host: it takes mail for strict.example and
    // refuses (554 5.7.1 relay access denied) everything else.
    let port = outbound_support::free_port(&[std::net::Ipv4Addr::LOCALHOST]);
    let relay = outbound_support::PostfixMx::start_without_tls(
        std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)),
        "relay.test",
        &["strict.example"],
    );
    // Nobody at strict.example has a certificate, and its policy is reject.
    let ts = start_relaying_to(
        &world,
        "[smime.policies]\n\"strict.example\" = \"reject\"\n",
        port,
    )
    .await;

    // Mail from boss@strict.example (mallory may relay) to a domain the
    // relay refuses: the server writes a DSN back to boss@strict.example.
    let message = b"From: boss@strict.example\r\nTo: someone@elsewhere.example\r\n\
        Message-ID: <bounce-me@strict.example>\r\nSubject: to nowhere\r\n\r\ntext\r\n";
    let (ok, transcript) = swaks_as(
        &ts,
        "mallory",
        "boss@strict.example",
        "someone@elsewhere.example",
        message,
    )
    .await;
    assert!(ok, "{transcript}");
    // Mail from a client to strict.example itself is still refused.
    let (ok, transcript) = swaks_as(
        &ts,
        "mallory",
        "mallory@example.test",
        "boss@strict.example",
        message,
    )
    .await;
    assert!(!ok && transcript.contains("554 5.7.5"), "{transcript}");

    // The DSN is not refused by the policy: it reaches the relay unchanged.
    let dsn = relay.wait_for("multipart/report").await;
    assert!(
        dsn.contains("Final-Recipient: rfc822; someone@elsewhere.example"),
        "{dsn}"
    );
    assert!(dsn.contains("<bounce-me@strict.example>"), "{dsn}");
    assert!(!dsn.contains("application/pkcs7-mime"), "{dsn}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_smime_rules_and_rereads_the_partner_store() {
    let world = World::new();
    let ts = start(&world, "").await;
    let message = b"From: sender@example.test\r\nTo: erin@nocert.example\r\n\
        Subject: plans\r\n\r\nThe plans are ready.\r\n";

    // Policy reject for nocert.example, by reload: erin has no
    // certificate yet, so the mail is refused.
    let mut config = (*ts.server.current_config()).clone();
    let nocert = mailtls_core::DnsName::parse("nocert.example").unwrap();
    config.smime.policies.insert(
        nocert,
        mailtls_smime::gateway::EncryptionPolicy::AlwaysOrReject,
    );
    let report = ts.server.reload(config.clone()).await.unwrap();
    assert!(report.applied.contains(&"smime".to_owned()), "{report:?}");
    assert!(report.restart_required.is_empty(), "{report:?}");
    let (ok, transcript) = swaks(&ts, "sender@example.test", "erin@nocert.example", message).await;
    assert!(!ok && transcript.contains("554 5.7.5"), "{transcript}");

    // Erin's certificate is uploaded into the gateway directory while the
    // server runs (as the `mailtls-smime` tool would); a reload reads it.
    let erin = world.ca.issue(&Spec::rsa(&["erin@nocert.example"]));
    let storage = FileStorage::in_dir(&ts.data_dir().join("smime"), "partners.json").unwrap();
    let mut partners = PartnerStore::open(Box::new(storage), HarvestMode::Automatic)
        .await
        .unwrap();
    partners
        .upload(
            erin.pem.as_bytes(),
            "erin.pem",
            Binding::Addresses,
            SystemTime::now(),
        )
        .await
        .unwrap();
    let report = ts.server.reload(config.clone()).await.unwrap();
    assert!(report.restart_required.is_empty(), "{report:?}");
    let (ok, transcript) = swaks(&ts, "sender@example.test", "erin@nocert.example", message).await;
    assert!(ok, "{transcript}");
    let queued = queue_bodies(&ts);
    assert_eq!(queued.len(), 1, "{queued:?}");
    let text = String::from_utf8_lossy(&std::fs::read(&queued[0]).unwrap()).into_owned();
    assert!(text.contains("application/pkcs7-mime"), "{text}");
    assert!(!text.contains("The plans are ready."), "{text}");

    // Turning the gateway off (or moving it) waits for a restart, by key;
    // the gateway keeps working meanwhile.
    config.smime.enabled = false;
    config.smime.data_dir = Some(ts.data_dir().join("elsewhere"));
    let report = ts.server.reload(config).await.unwrap();
    assert_eq!(
        report.restart_required,
        ["smime.enabled", "smime.data_dir"],
        "{report:?}"
    );
    assert!(ts.server.current_config().smime.enabled);
    let (ok, transcript) = swaks(&ts, "sender@example.test", "erin@nocert.example", message).await;
    assert!(ok, "{transcript}");
    assert_eq!(queue_bodies(&ts).len(), 2);
}

/// The queued copies: each one's recipients (from its state file) and its
/// text, in queue order.
fn queued_copies(ts: &TestServer) -> Vec<(Vec<String>, String)> {
    queue_bodies(ts)
        .iter()
        .map(|body| {
            let state: serde_json::Value =
                serde_json::from_slice(&std::fs::read(body.with_extension("json")).unwrap())
                    .unwrap();
            let rcpts = state["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["address"].as_str().unwrap().to_owned())
                .collect();
            (
                rcpts,
                String::from_utf8(std::fs::read(body).unwrap()).unwrap(),
            )
        })
        .collect()
}

/// Submits `message` with swaks (AUTH as test) to several recipients.
async fn swaks_to_many(ts: &TestServer, to: &[&str], message: &[u8]) -> (bool, String) {
    swaks(ts, "sender@example.test", &to.join(","), message).await
}

/// Submits the agenda to Carol (who has a certificate) and x (who has
/// none) in one transaction; returns the queued copies.
async fn agenda_to_carol_and_x(ts: &TestServer) -> Vec<(Vec<String>, String)> {
    let message = b"From: sender@example.test\r\nTo: carol@remote.example, x@nocert.example\r\n\
        Subject: agenda\r\n\r\nThe agenda for Monday.\r\n";
    let (ok, transcript) =
        swaks_to_many(ts, &["carol@remote.example", "x@nocert.example"], message).await;
    assert!(ok, "{transcript}");
    queued_copies(ts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_with_a_certificate_get_an_encrypted_copy_the_others_a_signed_one() {
    let world = World::new();
    let files = common::private_tempdir();
    world.write_files(files.path());
    let ts = start(&world, "").await;
    let copies = agenda_to_carol_and_x(&ts).await;
    assert_eq!(copies.len(), 2, "{copies:?}");
    let carol = copies
        .iter()
        .find(|(r, _)| r == &["carol@remote.example"])
        .expect("a copy for Carol alone");
    let x = copies
        .iter()
        .find(|(r, _)| r == &["x@nocert.example"])
        .expect("a copy for x alone");
    // Carol's copy: encrypted, her key opens it, the sender's signature
    // inside verifies.
    assert!(!carol.1.contains("The agenda"), "{}", carol.1);
    assert!(carol_opens(files.path(), carol.1.as_bytes()).contains("The agenda for Monday."));
    // x's copy: signed only, readable, and the signature verifies.
    assert!(x.1.contains("multipart/signed"), "{}", x.1);
    assert!(x.1.contains("The agenda for Monday."), "{}", x.1);
    std::fs::write(files.path().join("x-copy.eml"), &x.1).unwrap();
    openssl(
        files.path(),
        &["-verify", "-in", "x-copy.eml", "-CAfile", "ca.pem"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_or_nothing_sends_one_copy_in_clear() {
    let world = World::new();
    let ts = start(&world, "encryption_scope = \"all-or-nothing\"\n").await;
    let copies = agenda_to_carol_and_x(&ts).await;
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].0, ["carol@remote.example", "x@nocert.example"]);
    assert!(copies[0].1.contains("The agenda for Monday."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bounce_policy_sends_a_dsn_for_recipients_without_a_certificate() {
    let world = World::new();
    let ts = start(
        &world,
        "[smime.policies]\n\"nocert.example\" = \"bounce\"\n",
    )
    .await;
    let message = b"From: sender@example.test\r\nTo: carol@remote.example, x@nocert.example\r\n\
        Message-ID: <bounce-x@example.test>\r\nSubject: offer\r\n\r\nOur offer.\r\n";
    let (ok, transcript) =
        swaks_to_many(&ts, &["carol@remote.example", "x@nocert.example"], message).await;
    assert!(ok, "accepted for Carol: {transcript}");
    let copies = queued_copies(&ts);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].0, ["carol@remote.example"]);
    assert!(!copies[0].1.contains("Our offer."), "{}", copies[0].1);
    // The sender is local: the DSN lands in the spool.
    let dsn = only_spooled(&ts);
    assert!(dsn.contains("multipart/report"), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822; x@nocert.example"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 5.7.5"), "{dsn}");
    assert!(dsn.contains("no usable certificate"), "{dsn}");
    assert!(!dsn.contains("carol@remote.example>:"), "{dsn}");
    assert!(dsn.contains("<bounce-x@example.test>"), "{dsn}");

    // Only x: refused at once, nothing queued, no DSN of ours.
    let (ok, transcript) = swaks_to_many(&ts, &["x@nocert.example"], message).await;
    assert!(!ok && transcript.contains("554 5.7.5"), "{transcript}");
    assert_eq!(queued_copies(&ts).len(), 1);
    assert_eq!(ts.spool_files().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smime_that_cannot_be_read_is_delivered_marked_as_failed() {
    let world = World::new();
    let files = common::private_tempdir();
    world.write_files(files.path());
    let ts = start(&world, "").await;
    let signed = alice_signs(files.path(), "lunch", "See you at noon.");
    // The signature's base64 is replaced by bytes that are no CMS, and a
    // status header is forged.
    let signed = String::from_utf8(signed).unwrap();
    let marker = "filename=\"smime.p7s\"";
    let at = signed.find(marker).unwrap();
    let body_start = at + signed[at..].find("\n\n").unwrap() + 2;
    let body_end = body_start + signed[body_start..].find("\n------").unwrap();
    let broken = format!(
        "X-Mailtls-Failed: no\n{}AAAAAAAAAAAAAAAA{}",
        &signed[..body_start],
        &signed[body_end..]
    );
    let body = lines(broken.as_bytes());
    let body: Vec<&str> = body.iter().map(String::as_str).collect();
    common::send_mail(&ts, "bob@example.test", &body).await;
    let spooled = only_spooled(&ts);
    let headers = header_block(&spooled);
    assert_eq!(subject(&spooled), "[S/MIME failed] lunch");
    assert_eq!(headers.matches("X-Mailtls-Failed:").count(), 1, "{headers}");
    assert!(
        headers.contains("X-Mailtls-Failed: unreadable; reason="),
        "{headers}"
    );
    assert!(!headers.contains("X-Mailtls-Signed"), "{headers}");
    assert!(spooled.contains("See you at noon."), "{spooled}");
}

/// Runs `mailtls-server --data-dir DIR smime ARGS`; returns success and
/// stdout + stderr.
async fn smime_cli(data_dir: &Path, args: &[&str]) -> (bool, String) {
    run(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mailtls-server"))
            .arg("--data-dir")
            .arg(data_dir)
            .arg("smime")
            .args(args),
    )
    .await
}

/// Sends the signed message `signed` to bob@example.test and returns the
/// fingerprint `smime approvals list` shows for `signer`, the only
/// certificate waiting.
async fn pending_after(ts: &TestServer, signed: &[u8], signer: &str) -> String {
    let body = lines(signed);
    let body: Vec<&str> = body.iter().map(String::as_str).collect();
    common::send_mail(ts, "bob@example.test", &body).await;
    let (ok, out) = smime_cli(ts.data_dir(), &["approvals", "list"]).await;
    assert!(ok && out.contains("awaiting approval: 1"), "{out}");
    out.lines()
        .find(|l| l.contains(signer))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{signer} is not waiting: {out}"))
        .to_owned()
}

/// Whether the last queued copy for `rcpt` is encrypted.
fn last_copy_encrypted(ts: &TestServer, rcpt: &str) -> bool {
    let copies = queued_copies(ts);
    let (_, text) = copies
        .iter()
        .rev()
        .find(|(r, _)| r.iter().any(|a| a == rcpt))
        .unwrap_or_else(|| panic!("no copy for {rcpt}: {copies:?}"));
    text.contains("application/pkcs7-mime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_and_approvals_are_administered_on_the_running_server() {
    let world = World::new();
    let files = common::private_tempdir();
    world.write_files(files.path());
    let ts = start(&world, "approval_queue = true\n").await;
    let data = ts.data_dir().to_owned();
    let erin = world.ca.issue(&Spec::rsa(&["erin@nocert.example"]));
    std::fs::write(files.path().join("erin.pem"), &erin.pem).unwrap();
    let message = b"From: sender@example.test\r\nTo: erin@nocert.example\r\n\
        Subject: plans\r\n\r\nThe plans.\r\n";

    // Upload: the next message to Erin is encrypted, without a reload.
    let (ok, out) = smime_cli(
        &data,
        &[
            "partners",
            "add",
            files.path().join("erin.pem").to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "{out}");
    let fp = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    assert_eq!(fp.len(), 64, "{out}");
    let (ok, t) = swaks(&ts, "sender@example.test", "erin@nocert.example", message).await;
    assert!(ok, "{t}");
    assert!(last_copy_encrypted(&ts, "erin@nocert.example"));

    // Disable by a fingerprint prefix: the next one is not encrypted.
    let (ok, out) = smime_cli(&data, &["partners", "disable", &fp[..12]]).await;
    assert!(ok && out.contains(&fp), "{out}");
    let (ok, out) = smime_cli(&data, &["partners", "list"]).await;
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.contains(&fp)).expect("listed");
    assert!(
        line.contains("disabled") && line.contains("uploaded"),
        "{line}"
    );
    let (ok, t) = swaks(&ts, "sender@example.test", "erin@nocert.example", message).await;
    assert!(ok, "{t}");
    assert!(!last_copy_encrypted(&ts, "erin@nocert.example"));
    let (ok, out) = smime_cli(&data, &["partners", "enable", &fp]).await;
    assert!(ok, "{out}");
    let (ok, t) = swaks(&ts, "sender@example.test", "erin@nocert.example", message).await;
    assert!(ok, "{t}");
    assert!(last_copy_encrypted(&ts, "erin@nocert.example"));
    let (ok, out) = smime_cli(&data, &["partners", "delete", &fp]).await;
    assert!(ok, "{out}");
    let (ok, out) = smime_cli(&data, &["partners", "list"]).await;
    assert!(ok && !out.contains(&fp), "{out}");
    // A wrong fingerprint is an error naming what was given.
    let (ok, out) = smime_cli(&data, &["partners", "disable", &fp[..12]]).await;
    assert!(!ok && out.contains(&fp[..12]), "{out}");

    // Alice signs with OpenSSL; her certificate waits for approval.
    let signed = alice_signs(files.path(), "hello", "Hello Bob.");
    let alice_fp = pending_after(&ts, &signed, "alice@partner.example").await;
    let reply = b"From: sender@example.test\r\nTo: alice@partner.example\r\n\
        Subject: Re: hello\r\n\r\nHello Alice.\r\n";
    let (ok, t) = swaks(&ts, "sender@example.test", "alice@partner.example", reply).await;
    assert!(ok, "{t}");
    assert!(!last_copy_encrypted(&ts, "alice@partner.example"));
    let (ok, out) = smime_cli(&data, &["approvals", "approve", &alice_fp[..16]]).await;
    assert!(ok && out.contains("approved"), "{out}");
    let (ok, t) = swaks(&ts, "sender@example.test", "alice@partner.example", reply).await;
    assert!(ok, "{t}");
    assert!(last_copy_encrypted(&ts, "alice@partner.example"));
    let (ok, out) = smime_cli(&data, &["approvals", "list"]).await;
    assert!(ok && out.contains("awaiting approval: 0"), "{out}");

    // Dave's signature waits too; rejecting drops it, and he is not used.
    let signed = signs(files.path(), "dave", "dave@example.test", "hi", "Hi Bob.");
    let dave_fp = pending_after(&ts, &signed, "dave@example.test").await;
    let (ok, out) = smime_cli(&data, &["approvals", "reject", &dave_fp]).await;
    assert!(ok && out.contains("rejected"), "{out}");
    let (ok, out) = smime_cli(&data, &["approvals", "list"]).await;
    assert!(ok && out.contains("awaiting approval: 0"), "{out}");
    let (ok, out) = smime_cli(&data, &["partners", "list"]).await;
    assert!(ok && !out.contains(&dave_fp), "{out}");
    // The approved certificate is on disk for the next start.
    let status = mailtls_examples::smime_path::list(ts.server.config()).unwrap();
    assert!(status.partners.iter().any(|p| p.fingerprint == alice_fp));
}

#[tokio::test]
async fn the_partner_commands_change_the_files_when_no_server_runs() {
    let world = World::new();
    let data = common::private_tempdir();
    let files = common::private_tempdir();
    world.write_files(files.path());
    // No gateway directory yet: refused, nothing created.
    let carol = files.path().join("carol.pem");
    let (ok, out) = smime_cli(data.path(), &["partners", "add", carol.to_str().unwrap()]).await;
    assert!(!ok && out.contains("no S/MIME gateway directory"), "{out}");
    assert!(!data.path().join("smime").exists());
    FileStorage::in_dir(&data.path().join("smime"), "partners.json").unwrap();
    let (ok, out) = smime_cli(
        data.path(),
        &[
            "partners",
            "add",
            carol.to_str().unwrap(),
            "--domain",
            "remote.example",
        ],
    )
    .await;
    assert!(
        ok && out.contains("for every address of remote.example"),
        "{out}"
    );
    let (ok, out) = smime_cli(data.path(), &["partners", "list"]).await;
    assert!(ok && out.contains("domain remote.example"), "{out}");
    // Read back by the library, as the server will at start.
    let storage = FileStorage::in_dir(&data.path().join("smime"), "partners.json").unwrap();
    let store = PartnerStore::open(Box::new(storage), HarvestMode::Automatic)
        .await
        .unwrap();
    assert_eq!(store.list().count(), 1);
    let (ok, out) = smime_cli(data.path(), &["approvals", "reject", "0123456789"]).await;
    assert!(!ok && out.contains("no pending certificate"), "{out}");
}
