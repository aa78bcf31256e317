//! Two gateways talking: A (corp.example) and B (partner.example), each with
//! its own key store and partner store in temporary directories, certificates
//! from one test CA made at test time. What the gateways write is also read
//! back with `openssl cms`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway_common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use gateway_common::{Issued, Spec, TestCa};
use mailtls_smime::gateway::{
    Address, Envelope, FileStorage, Gateway, HarvestMode, HarvestOutcome, IncomingRules, KeyStore,
    NotEncrypted, NotSigned, OutgoingOutcome, OutgoingRules, PartnerStore, SenderAuth,
    SignatureStatus,
};
use mailtls_smime::{Certificate, ContentEncryption};
use tempfile::TempDir;

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn private_dir() -> TempDir {
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap()
}

/// A gateway whose data lives in `dir`, holding `user`'s key.
fn gateway(dir: &Path, ca: &TestCa, user: &Issued, mode: HarvestMode) -> Gateway {
    let mut keys = KeyStore::open(&dir.join("keys")).unwrap();
    keys.add_user_key(user.pem.as_bytes(), user.key_pem.as_bytes(), "user")
        .unwrap();
    let partners = PartnerStore::open(
        Box::new(FileStorage::in_dir(&dir.join("partners"), "partners.json").unwrap()),
        mode,
    )
    .unwrap();
    Gateway {
        keys,
        partners,
        outgoing: OutgoingRules {
            encrypt_to_sender: true,
            ..OutgoingRules::default()
        },
        incoming: IncomingRules {
            harvest: true,
            ..IncomingRules::default()
        },
        trust_anchors: Certificate::from_pem(ca.pem.as_bytes()).unwrap(),
    }
}

fn auth(user: &str) -> SenderAuth {
    SenderAuth::Authenticated {
        login: user.into(),
        may_send_as: vec![addr(user)],
    }
}

fn envelope(from: &str, to: &str) -> Envelope {
    Envelope {
        sender: Some(addr(from)),
        recipients: vec![addr(to)],
    }
}

fn deliver(outcome: OutgoingOutcome) -> (Vec<u8>, mailtls_smime::gateway::OutgoingSummary) {
    match outcome {
        OutgoingOutcome::Deliver { message, summary } => (message, summary),
        OutgoingOutcome::Reject(r) => panic!("rejected: {r:?}"),
    }
}

/// The Subject header of a message (first line only; the gateway writes it
/// unfolded).
fn subject(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let header = text.split("\r\n\r\n").next().unwrap();
    header
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_owned()
}

fn header_block(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    text.split("\r\n\r\n").next().unwrap().to_owned()
}

/// Runs `openssl cms` with `args` in `dir`; returns stdout, panics with
/// stderr on failure.
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .arg("cms")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is installed");
    assert!(
        out.status.success(),
        "openssl cms {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn sign_harvest_encrypt_reply_decrypt_between_two_gateways() {
    let ca = TestCa::new();
    let alice = ca.issue(&Spec::rsa(&["alice@corp.example"]));
    let bob = ca.issue(&Spec::email(&["bob@partner.example"]));
    let (dir_a, dir_b, files) = (private_dir(), private_dir(), private_dir());
    let mut ga = gateway(dir_a.path(), &ca, &alice, HarvestMode::Automatic);
    let mut gb = gateway(dir_b.path(), &ca, &bob, HarvestMode::ManualApproval);
    let now = SystemTime::now();

    // A signs for the authenticated Alice; it holds no certificate for Bob.
    let first = b"From: Alice <alice@corp.example>\r\nTo: bob@partner.example\r\n\
        Subject: Quarterly numbers\r\n\r\nThe numbers are attached.\r\n";
    let (signed, summary) = deliver(
        ga.process_outgoing(
            first,
            &envelope("alice@corp.example", "bob@partner.example"),
            auth("alice@corp.example"),
            now,
        )
        .unwrap(),
    );
    assert!(summary.signed.is_ok(), "{summary:?}");
    assert_eq!(
        summary.encrypted,
        Err(NotEncrypted::MissingCertificates(vec![addr(
            "bob@partner.example"
        )]))
    );
    // OpenSSL verifies A's signature.
    write(files.path(), "ca.pem", ca.pem.as_bytes());
    write(files.path(), "signed.eml", &signed);
    let content = openssl(
        files.path(),
        &["-verify", "-in", "signed.eml", "-CAfile", "ca.pem"],
    );
    assert!(String::from_utf8_lossy(&content).contains("The numbers are attached."));

    // B verifies, marks, and queues Alice's certificate for approval.
    let incoming = gb
        .process_incoming(
            &signed,
            &envelope("alice@corp.example", "bob@partner.example"),
            now,
        )
        .unwrap();
    assert_eq!(
        incoming.summary.result.signature,
        Some(SignatureStatus::Valid {
            signer: addr("alice@corp.example")
        })
    );
    assert!(!incoming.summary.result.decrypted);
    assert_eq!(incoming.summary.harvest, Some(HarvestOutcome::Queued));
    assert_eq!(subject(&incoming.message), "[signed] Quarterly numbers");
    assert!(
        header_block(&incoming.message)
            .contains("X-Mailtls-Signed: valid; signer=alice@corp.example"),
        "{}",
        header_block(&incoming.message)
    );
    // The signature is kept for Bob's own client.
    assert!(String::from_utf8_lossy(&incoming.message).contains("multipart/signed"));

    // Until the operator approves, B cannot encrypt to Alice.
    let reply = b"From: bob@partner.example\r\nTo: alice@corp.example\r\n\
        Subject: Re: [signed] Quarterly numbers\r\n\r\nThanks, received.\r\n";
    let (_, summary) = deliver(
        gb.process_outgoing(
            reply,
            &envelope("bob@partner.example", "alice@corp.example"),
            auth("bob@partner.example"),
            now,
        )
        .unwrap(),
    );
    assert!(matches!(
        summary.encrypted,
        Err(NotEncrypted::MissingCertificates(_))
    ));
    let pending = gb
        .partners
        .pending()
        .next()
        .unwrap()
        .certificate
        .fingerprint();
    gb.partners.approve(&pending, now).unwrap();

    // Now B signs and encrypts the reply to Alice (and Bob's sent copy);
    // A's signature advertised GCM, so GCM it is.
    let (encrypted, summary) = deliver(
        gb.process_outgoing(
            reply,
            &envelope("bob@partner.example", "alice@corp.example"),
            auth("bob@partner.example"),
            now + Duration::from_secs(1),
        )
        .unwrap(),
    );
    assert!(summary.signed.is_ok(), "{summary:?}");
    let (cipher, to) = summary.encrypted.clone().unwrap();
    assert_eq!(cipher, ContentEncryption::Aes256Gcm);
    assert_eq!(to.len(), 2, "Alice and Bob's sent copy");
    let text = String::from_utf8_lossy(&encrypted);
    assert!(text.contains("authEnveloped-data"), "{text}");
    assert!(!text.contains("Thanks, received."));
    // The outgoing Subject lost the quoted mark.
    assert_eq!(subject(&encrypted), "Re: Quarterly numbers");

    // A decrypts and verifies.
    let opened = ga
        .process_incoming(
            &encrypted,
            &envelope("bob@partner.example", "alice@corp.example"),
            now + Duration::from_secs(2),
        )
        .unwrap();
    assert!(opened.summary.result.decrypted, "{:?}", opened.summary);
    assert_eq!(
        opened.summary.result.signature,
        Some(SignatureStatus::Valid {
            signer: addr("bob@partner.example")
        })
    );
    assert_eq!(
        subject(&opened.message),
        "[encrypted] [signed] Re: Quarterly numbers"
    );
    assert!(String::from_utf8_lossy(&opened.message).contains("Thanks, received."));
    assert!(header_block(&opened.message).contains("X-Mailtls-Encrypted: decrypted"));

    // OpenSSL reads B's encrypted reply with Alice's key, and verifies the
    // signed layer inside.
    write(files.path(), "alice.pem", alice.pem.as_bytes());
    write(files.path(), "alice.key", alice.key_pem.as_bytes());
    write(files.path(), "reply.eml", &encrypted);
    let inner = openssl(
        files.path(),
        &[
            "-decrypt",
            "-in",
            "reply.eml",
            "-recip",
            "alice.pem",
            "-inkey",
            "alice.key",
        ],
    );
    write(files.path(), "inner.eml", &inner);
    let content = openssl(
        files.path(),
        &["-verify", "-in", "inner.eml", "-CAfile", "ca.pem"],
    );
    assert!(String::from_utf8_lossy(&content).contains("Thanks, received."));
}

#[test]
fn partner_without_gcm_gets_cbc_readable_by_openssl() {
    let ca = TestCa::new();
    let bob = ca.issue(&Spec::email(&["bob@partner.example"]));
    let carol = ca.issue(&Spec::rsa(&["carol@other.example"]));
    let (dir_b, files) = (private_dir(), private_dir());
    let mut gb = gateway(dir_b.path(), &ca, &bob, HarvestMode::Automatic);
    let now = SystemTime::now();

    // Carol signs with OpenSSL, whose capabilities do not include GCM.
    write(files.path(), "ca.pem", ca.pem.as_bytes());
    write(files.path(), "carol.pem", carol.pem.as_bytes());
    write(files.path(), "carol.key", carol.key_pem.as_bytes());
    write(
        files.path(),
        "msg.eml",
        b"Content-Type: text/plain\r\n\r\nHi Bob\r\n",
    );
    let signed = openssl(
        files.path(),
        &[
            "-sign",
            "-in",
            "msg.eml",
            "-signer",
            "carol.pem",
            "-inkey",
            "carol.key",
            "-from",
            "carol@other.example",
            "-to",
            "bob@partner.example",
            "-subject",
            "hello",
        ],
    );
    let incoming = gb
        .process_incoming(
            &signed,
            &envelope("carol@other.example", "bob@partner.example"),
            now,
        )
        .unwrap();
    assert_eq!(incoming.summary.harvest, Some(HarvestOutcome::Added));
    assert_eq!(subject(&incoming.message), "[signed] hello");

    let (encrypted, summary) = deliver(
        gb.process_outgoing(
            b"From: bob@partner.example\r\nTo: carol@other.example\r\nSubject: Re: hello\r\n\r\nHi Carol\r\n",
            &envelope("bob@partner.example", "carol@other.example"),
            auth("bob@partner.example"),
            now,
        )
        .unwrap(),
    );
    assert_eq!(
        summary.encrypted.as_ref().unwrap().0,
        ContentEncryption::Aes256Cbc
    );
    write(files.path(), "enc.eml", &encrypted);
    let inner = openssl(
        files.path(),
        &[
            "-decrypt",
            "-in",
            "enc.eml",
            "-recip",
            "carol.pem",
            "-inkey",
            "carol.key",
        ],
    );
    write(files.path(), "inner.eml", &inner);
    let content = openssl(
        files.path(),
        &["-verify", "-in", "inner.eml", "-CAfile", "ca.pem"],
    );
    assert!(String::from_utf8_lossy(&content).contains("Hi Carol"));
}

#[test]
fn forged_marks_are_stripped_and_anonymous_mail_is_not_signed() {
    let ca = TestCa::new();
    let alice = ca.issue(&Spec::rsa(&["alice@corp.example"]));
    let bob = ca.issue(&Spec::email(&["bob@partner.example"]));
    let (dir_a, dir_b) = (private_dir(), private_dir());
    let ga = gateway(dir_a.path(), &ca, &alice, HarvestMode::Automatic);
    let mut gb = gateway(dir_b.path(), &ca, &bob, HarvestMode::Automatic);
    let now = SystemTime::now();

    let forged = b"From: alice@corp.example\r\nTo: bob@partner.example\r\n\
        Subject: =?utf-8?q?=5BSIGNED=5D?= Pay now\r\n\
        X-Mailtls-Signed: valid; signer=alice@corp.example\r\n\
        x-mailtls-encrypted:\r\n decrypted\r\n\r\nPay invoice 42.\r\n";
    let out = gb
        .process_incoming(
            forged,
            &envelope("alice@corp.example", "bob@partner.example"),
            now,
        )
        .unwrap();
    assert_eq!(out.summary.result.signature, None);
    assert!(!out.summary.result.decrypted);
    assert_eq!(out.summary.harvest, None);
    assert_eq!(subject(&out.message), "Pay now");
    let headers = header_block(&out.message).to_ascii_lowercase();
    assert!(!headers.contains("x-mailtls-"), "{headers}");
    assert!(String::from_utf8_lossy(&out.message).ends_with("Pay invoice 42.\r\n"));

    // A does not sign for a sender who did not log in, nor for a login
    // sending as someone else.
    let message = b"From: alice@corp.example\r\nSubject: x\r\n\r\nbody\r\n";
    let env = envelope("alice@corp.example", "bob@partner.example");
    let (plain, summary) = deliver(
        ga.process_outgoing(message, &env, SenderAuth::Anonymous, now)
            .unwrap(),
    );
    assert_eq!(summary.signed, Err(NotSigned::NotAuthenticated));
    assert_eq!(plain, message);
    let (_, summary) = deliver(
        ga.process_outgoing(message, &env, auth("mallory@corp.example"), now)
            .unwrap(),
    );
    assert!(
        matches!(summary.signed, Err(NotSigned::SenderNotOwned { .. })),
        "{summary:?}"
    );

    // A tampered signed message is marked invalid and nothing is harvested.
    let (signed, _) = deliver(
        ga.process_outgoing(
            b"From: alice@corp.example\r\nTo: bob@partner.example\r\nSubject: s\r\n\r\nPay 10 EUR\r\n",
            &env,
            auth("alice@corp.example"),
            now,
        )
        .unwrap(),
    );
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("Pay 10 EUR", "Pay 99 EUR");
    let out = gb.process_incoming(tampered.as_bytes(), &env, now).unwrap();
    assert!(
        matches!(
            out.summary.result.signature,
            Some(SignatureStatus::Invalid { .. })
        ),
        "{:?}",
        out.summary
    );
    assert_eq!(out.summary.harvest, None);
    assert_eq!(subject(&out.message), "[signature invalid] s");
    assert_eq!(gb.partners.list().count(), 0);
}

#[test]
fn domain_signature_between_gateways() {
    use mailtls_core::DnsName;
    use mailtls_smime::gateway::{Binding, RecipientMatch};
    let ca = TestCa::new();
    let alice = ca.issue(&Spec::rsa(&["alice@corp.example"]));
    let domain = ca.issue(&Spec::email(&["gateway@corp.example"]));
    let bob = ca.issue(&Spec::email(&["bob@partner.example"]));
    let (dir_a, dir_b) = (private_dir(), private_dir());
    let corp = DnsName::parse("corp.example").unwrap();
    let mut ga = gateway(dir_a.path(), &ca, &alice, HarvestMode::Automatic);
    ga.keys
        .add_domain_key(
            &corp,
            domain.pem.as_bytes(),
            domain.key_pem.as_bytes(),
            "corp",
        )
        .unwrap();
    ga.outgoing.domain_signing = vec![RecipientMatch::Domain(
        DnsName::parse("partner.example").unwrap(),
    )];
    let mut gb = gateway(dir_b.path(), &ca, &bob, HarvestMode::Automatic);
    let now = SystemTime::now();
    gb.partners
        .upload(
            domain.pem.as_bytes(),
            "corp",
            Binding::Domain(corp.clone()),
            now,
        )
        .unwrap();

    let (signed, summary) = deliver(
        ga.process_outgoing(
            b"From: alice@corp.example\r\nTo: bob@partner.example\r\nSubject: d\r\n\r\nx\r\n",
            &envelope("alice@corp.example", "bob@partner.example"),
            auth("alice@corp.example"),
            now,
        )
        .unwrap(),
    );
    let domain_fp = ga.keys.keys_for_domain(&corp)[0].certificate.fingerprint();
    assert_eq!(summary.signed, Ok(domain_fp));
    let out = gb
        .process_incoming(
            &signed,
            &envelope("alice@corp.example", "bob@partner.example"),
            now,
        )
        .unwrap();
    assert_eq!(
        out.summary.result.signature,
        Some(SignatureStatus::ValidForDomain { domain: corp })
    );
    // A domain certificate is not harvested as Alice's own.
    assert_eq!(out.summary.harvest, None);
    assert_eq!(subject(&out.message), "[signed by <*@corp.example>] d");
}
