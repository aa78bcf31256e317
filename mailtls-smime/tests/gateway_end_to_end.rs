//! Two gateways talking: A (corp.example) and B (partner.example), each with
//! its own key store and partner store in temporary directories, certificates
//! from one test CA made at test time. What the gateways write is also read
//! back with `openssl cms`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway_common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use gateway_common::{Issued, Spec, TestCa, openssl_cms as openssl};
use mailtls_smime::gateway::{
    Address, Envelope, FileStorage, Gateway, HarvestMode, HarvestOutcome, IncomingOutcome,
    IncomingRules, KeyStore, NotEncrypted, NotSigned, OutgoingOutcome, OutgoingRules, PartnerStore,
    SenderAuth, SignatureStatus, SubjectMarks, WeakSignatures,
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
async fn gateway(dir: &Path, ca: &TestCa, user: &Issued, mode: HarvestMode) -> Gateway {
    let mut keys = KeyStore::open(&dir.join("keys")).unwrap();
    keys.add_user_key(user.pem.as_bytes(), user.key_pem.as_bytes(), "user")
        .unwrap();
    let partners = PartnerStore::open(
        Box::new(FileStorage::in_dir(&dir.join("partners"), "partners.json").unwrap()),
        mode,
    )
    .await
    .unwrap();
    Gateway {
        keys,
        partners,
        outgoing: OutgoingRules::default().with_encrypt_to_sender(true),
        incoming: IncomingRules::default().with_harvest(true),
        trust_anchors: Certificate::from_pem(ca.pem.as_bytes()).unwrap(),
    }
}

/// Hands an incoming message's harvest offer to the partner store, as a
/// server does after processing: what the store did with it.
async fn harvest(
    gw: &mut Gateway,
    out: &IncomingOutcome,
    now: SystemTime,
) -> Option<HarvestOutcome> {
    match out.harvest.clone() {
        Some(offer) => Some(gw.harvest(offer, now).await.unwrap()),
        None => None,
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

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[tokio::test]
async fn sign_harvest_encrypt_reply_decrypt_between_two_gateways() {
    let ca = TestCa::new();
    let alice = ca.issue(&Spec::rsa(&["alice@corp.example"]));
    let bob = ca.issue(&Spec::email(&["bob@partner.example"]));
    let (dir_a, dir_b, files) = (private_dir(), private_dir(), private_dir());
    let ga = gateway(dir_a.path(), &ca, &alice, HarvestMode::Automatic).await;
    let mut gb = gateway(dir_b.path(), &ca, &bob, HarvestMode::ManualApproval).await;
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
    assert_eq!(
        harvest(&mut gb, &incoming, now).await,
        Some(HarvestOutcome::Queued)
    );
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
    gb.partners.approve(&pending, now).await.unwrap();

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

#[tokio::test]
async fn partner_without_gcm_gets_cbc_readable_by_openssl() {
    partner_gets_cbc_readable_by_openssl(Spec::rsa(&["carol@other.example"])).await;
}

/// Partners on P-384 and P-521 get ECDH with the KDF matching their curve,
/// which OpenSSL decrypts.
#[tokio::test]
async fn p384_and_p521_partners_get_mail_openssl_decrypts() {
    for alg in [
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ECDSA_P521_SHA512,
    ] {
        partner_gets_cbc_readable_by_openssl(Spec {
            alg,
            ..Spec::email(&["carol@other.example"])
        })
        .await;
    }
}

/// Carol (certificate from `carol`) signs with OpenSSL, B harvests her
/// certificate, and B's reply, encrypted to her with AES-256-CBC (her
/// OpenSSL capabilities list no GCM), opens and verifies in OpenSSL.
async fn partner_gets_cbc_readable_by_openssl(carol: Spec) {
    let ca = TestCa::new();
    let bob = ca.issue(&Spec::email(&["bob@partner.example"]));
    let carol = ca.issue(&carol);
    let (dir_b, files) = (private_dir(), private_dir());
    let mut gb = gateway(dir_b.path(), &ca, &bob, HarvestMode::Automatic).await;
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
    assert_eq!(
        harvest(&mut gb, &incoming, now).await,
        Some(HarvestOutcome::Added)
    );
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

#[tokio::test]
async fn forged_marks_are_stripped_and_anonymous_mail_is_not_signed() {
    let ca = TestCa::new();
    let alice = ca.issue(&Spec::rsa(&["alice@corp.example"]));
    let bob = ca.issue(&Spec::email(&["bob@partner.example"]));
    let (dir_a, dir_b) = (private_dir(), private_dir());
    let ga = gateway(dir_a.path(), &ca, &alice, HarvestMode::Automatic).await;
    let mut gb = gateway(dir_b.path(), &ca, &bob, HarvestMode::Automatic).await;
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
    assert_eq!(harvest(&mut gb, &out, now).await, None);
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
    assert_eq!(harvest(&mut gb, &out, now).await, None);
    assert_eq!(subject(&out.message), "[signature invalid] s");
    assert_eq!(gb.partners.list().count(), 0);
}

#[tokio::test]
async fn domain_signature_between_gateways() {
    use mailtls_core::DnsName;
    use mailtls_smime::gateway::{Binding, RecipientMatch};
    let ca = TestCa::new();
    let alice = ca.issue(&Spec::rsa(&["alice@corp.example"]));
    let domain = ca.issue(&Spec::email(&["gateway@corp.example"]));
    let bob = ca.issue(&Spec::email(&["bob@partner.example"]));
    let (dir_a, dir_b) = (private_dir(), private_dir());
    let corp = DnsName::parse("corp.example").unwrap();
    let mut ga = gateway(dir_a.path(), &ca, &alice, HarvestMode::Automatic).await;
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
    let mut gb = gateway(dir_b.path(), &ca, &bob, HarvestMode::Automatic).await;
    let now = SystemTime::now();
    gb.partners
        .upload(
            domain.pem.as_bytes(),
            "corp",
            Binding::Domain(corp.clone()),
            now,
        )
        .await
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
    assert_eq!(harvest(&mut gb, &out, now).await, None);
    assert_eq!(subject(&out.message), "[signed by <*@corp.example>] d");
}

/// Gateway A with Alice's key and the corp.example domain key, signing
/// with the domain key for partner.example; gateway B holding Bob's key.
async fn two_key_world() -> (TestCa, Issued, Issued, TempDir, TempDir, Gateway, Gateway) {
    use mailtls_core::DnsName;
    use mailtls_smime::gateway::RecipientMatch;
    let ca = TestCa::new();
    let alice = ca.issue(&Spec::rsa(&["alice@corp.example"]));
    let domain = ca.issue(&Spec::email(&["gateway@corp.example"]));
    let bob = ca.issue(&Spec::email(&["bob@partner.example"]));
    let (dir_a, dir_b) = (private_dir(), private_dir());
    let corp = DnsName::parse("corp.example").unwrap();
    let mut ga = gateway(dir_a.path(), &ca, &alice, HarvestMode::Automatic).await;
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
    let gb = gateway(dir_b.path(), &ca, &bob, HarvestMode::Automatic).await;
    (ca, alice, domain, dir_a, dir_b, ga, gb)
}

#[tokio::test]
async fn sender_and_domain_key_both_sign_one_message() {
    let (ca, alice, domain, _da, _db, ga, gb) = two_key_world().await;
    let now = SystemTime::now();
    // One recipient listed for domain signing, one not: both keys sign.
    let env = Envelope {
        sender: Some(addr("alice@corp.example")),
        recipients: vec![addr("bob@partner.example"), addr("carol@other.example")],
    };
    let (signed, summary) = deliver(
        ga.process_outgoing(
            b"From: alice@corp.example\r\nTo: bob@partner.example, carol@other.example\r\n\
              Subject: both\r\n\r\nsigned by two keys\r\n",
            &env,
            auth("alice@corp.example"),
            now,
        )
        .unwrap(),
    );
    let alice_fp = ga.keys.keys_for_address(&addr("alice@corp.example"))[0]
        .certificate
        .fingerprint();
    let corp = mailtls_core::DnsName::parse("corp.example").unwrap();
    let domain_fp = ga.keys.keys_for_domain(&corp)[0].certificate.fingerprint();
    assert_eq!(summary.signed, Ok(alice_fp));
    assert_eq!(summary.co_signed, vec![domain_fp]);

    // OpenSSL verifies and names both signers.
    let files = private_dir();
    write(files.path(), "ca.pem", ca.pem.as_bytes());
    write(files.path(), "signed.eml", &signed);
    let content = openssl(
        files.path(),
        &[
            "-verify",
            "-in",
            "signed.eml",
            "-CAfile",
            "ca.pem",
            "-signer",
            "signers.pem",
        ],
    );
    assert!(String::from_utf8_lossy(&content).contains("signed by two keys"));
    let signers =
        Certificate::from_pem(&std::fs::read(files.path().join("signers.pem")).unwrap()).unwrap();
    let mut got: Vec<Vec<u8>> = signers.iter().map(|c| c.der().to_vec()).collect();
    got.sort();
    let mut want = vec![
        Certificate::from_pem(alice.pem.as_bytes()).unwrap()[0]
            .der()
            .to_vec(),
        Certificate::from_pem(domain.pem.as_bytes()).unwrap()[0]
            .der()
            .to_vec(),
    ];
    want.sort();
    assert_eq!(got, want);

    // B: two signers, both signatures good; Alice's names the From address,
    // so the message is marked signed by her.
    let out = gb
        .process_incoming(
            &signed,
            &envelope("alice@corp.example", "bob@partner.example"),
            now,
        )
        .unwrap();
    let report = out.report.unwrap();
    assert_eq!(report.signers.len(), 2);
    assert!(report.signers.iter().all(|s| s.signature.passed()));
    assert!(report.signers.iter().all(|s| s.chain.passed()));
    assert_eq!(
        out.summary.result.signature,
        Some(SignatureStatus::Valid {
            signer: addr("alice@corp.example")
        })
    );
}

#[tokio::test]
async fn split_delivery_decrypts_only_for_recipients_whose_key_opens_it() {
    use mailtls_smime::gateway::{Binding, DecryptDecision};
    let (ca, _alice, _domain, _da, _db, ga, mut gb) = two_key_world().await;
    let now = SystemTime::now();
    // B also holds a key for Carol, but A encrypts to Bob only.
    let carol = ca.issue(&Spec::email(&["carol@partner.example"]));
    gb.keys
        .add_user_key(carol.pem.as_bytes(), carol.key_pem.as_bytes(), "carol")
        .unwrap();
    let mut ga = ga;
    let bob_pem = gb.keys.keys_for_address(&addr("bob@partner.example"))[0]
        .certificate
        .der()
        .to_vec();
    ga.partners
        .upload(&bob_pem, "bob", Binding::Addresses, now)
        .await
        .unwrap();
    let (encrypted, summary) = deliver(
        ga.process_outgoing(
            b"From: alice@corp.example\r\nTo: bob@partner.example\r\n\
              Subject: secret\r\n\r\nfor Bob only\r\n",
            &envelope("alice@corp.example", "bob@partner.example"),
            auth("alice@corp.example"),
            now,
        )
        .unwrap(),
    );
    assert!(summary.encrypted.is_ok(), "{summary:?}");

    // The envelope at B: Bob (key, a recipient), Carol (key, not a
    // recipient of the CMS), Dave (no key).
    let env = Envelope {
        sender: Some(addr("alice@corp.example")),
        recipients: vec![
            addr("dave@partner.example"),
            addr("bob@partner.example"),
            addr("carol@partner.example"),
        ],
    };
    let copies = gb.process_incoming_split(&encrypted, &env, now).unwrap();
    assert_eq!(copies.len(), 2, "{copies:?}");
    let open = &copies[0];
    assert_eq!(open.recipients, vec![addr("bob@partner.example")]);
    assert!(open.outcome.summary.result.decrypted);
    assert!(matches!(
        &open.outcome.summary.decrypt,
        DecryptDecision::Decrypt(k) if k.len() == 1 && k[0].0 == addr("bob@partner.example")
    ));
    let text = String::from_utf8_lossy(&open.outcome.message);
    assert!(text.contains("for Bob only"), "{text}");
    assert!(
        subject(&open.outcome.message).starts_with("[encrypted] "),
        "{}",
        subject(&open.outcome.message)
    );

    let rest = &copies[1];
    assert_eq!(
        rest.recipients,
        vec![addr("dave@partner.example"), addr("carol@partner.example")]
    );
    assert!(!rest.outcome.summary.result.decrypted);
    assert!(rest.outcome.summary.not_for_our_keys);
    let text = String::from_utf8_lossy(&rest.outcome.message);
    assert!(!text.contains("for Bob only"));
    assert!(text.contains("application/pkcs7-mime"), "{text}");
    assert_eq!(subject(&rest.outcome.message), "secret");

    // The one-copy form leaves a split alone.
    let single = gb.process_incoming(&encrypted, &env, now).unwrap();
    assert!(matches!(
        single.summary.decrypt,
        DecryptDecision::Split { .. }
    ));
    assert!(!single.summary.result.decrypted);

    // Everyone with a key that opens it: one decrypted copy for all.
    let copies = gb
        .process_incoming_split(
            &encrypted,
            &envelope("alice@corp.example", "bob@partner.example"),
            now,
        )
        .unwrap();
    assert_eq!(copies.len(), 1);
    assert!(copies[0].outcome.summary.result.decrypted);
    // Nobody with a key: one untouched copy.
    let copies = gb
        .process_incoming_split(
            &encrypted,
            &envelope("alice@corp.example", "dave@partner.example"),
            now,
        )
        .unwrap();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].recipients, vec![addr("dave@partner.example")]);
    assert!(!copies[0].outcome.summary.result.decrypted);
}

#[tokio::test]
async fn split_delivery_of_a_plain_message_is_one_copy() {
    let (_ca, _alice, _domain, _da, _db, _ga, gb) = two_key_world().await;
    let env = Envelope {
        sender: Some(addr("x@else.example")),
        recipients: vec![addr("bob@partner.example"), addr("dave@partner.example")],
    };
    let copies = gb
        .process_incoming_split(
            b"From: x@else.example\r\nSubject: [signed] hi\r\n\r\nplain\r\n",
            &env,
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].recipients, env.recipients);
    // The forged mark is gone.
    assert_eq!(subject(&copies[0].outcome.message), "hi");
}

/// `openssl cms -sign -md DIGEST` by `signer` over a text body: the whole
/// message from alice@corp.example with `subject`.
fn openssl_signed(signer: &Issued, digest: &str, subject: &str) -> Vec<u8> {
    let dir = private_dir();
    write(dir.path(), "c.pem", signer.pem.as_bytes());
    write(dir.path(), "k.pem", signer.key_pem.as_bytes());
    write(
        dir.path(),
        "body",
        b"Content-Type: text/plain\r\n\r\nPay invoice 42.\r\n",
    );
    let signed = openssl(
        dir.path(),
        &[
            "-sign", "-md", digest, "-signer", "c.pem", "-inkey", "k.pem", "-in", "body",
        ],
    );
    let mut message =
        format!("From: alice@corp.example\r\nTo: bob@partner.example\r\nSubject: {subject}\r\n")
            .into_bytes();
    message.extend_from_slice(&signed);
    message
}

fn weak_envelope() -> Envelope {
    envelope("alice@corp.example", "bob@partner.example")
}

#[tokio::test]
async fn sha1_signature_gets_the_weak_mark_not_the_signed_one() {
    let ca = TestCa::new();
    let alice = ca.issue(&Spec::rsa(&["alice@corp.example"]));
    let bob = ca.issue(&Spec::email(&["bob@partner.example"]));
    let dir = private_dir();
    let gb = gateway(dir.path(), &ca, &bob, HarvestMode::Automatic).await;
    let now = SystemTime::now();

    // A sender who writes the weak mark (or the signed one) in the Subject
    // gets it removed before the gateway's own.
    let message = openssl_signed(&alice, "sha1", "[Weak Signature] [signed] Invoice");
    let out = gb
        .process_incoming(&message, &weak_envelope(), now)
        .unwrap();
    assert_eq!(
        out.summary.result.signature,
        Some(SignatureStatus::ValidWeak {
            signer: Address::parse("alice@corp.example").unwrap(),
            algorithm: "SHA-1".into(),
        })
    );
    assert_eq!(subject(&out.message), "[weak signature] Invoice");
    let headers = header_block(&out.message);
    assert!(
        headers.contains("X-Mailtls-Signed: weak; signer=alice@corp.example; algorithm=\"SHA-1\""),
        "{headers}"
    );
    assert!(out.harvest.is_none(), "a weak signature is not harvested");

    // The same signer over SHA-256 is plainly valid (and harvested); a
    // tampered SHA-1 message is invalid, not weak.
    for (digest, tamper, valid, mark) in [
        ("sha256", false, true, "[signed] Invoice"),
        ("sha1", true, false, "[signature invalid] Invoice"),
    ] {
        let mut message = openssl_signed(&alice, digest, "Invoice");
        if tamper {
            message = String::from_utf8(message)
                .unwrap()
                .replace("invoice 42", "invoice 99")
                .into_bytes();
        }
        let out = gb
            .process_incoming(&message, &weak_envelope(), now)
            .unwrap();
        let status = out.summary.result.signature.clone();
        if valid {
            assert!(
                matches!(status, Some(SignatureStatus::Valid { .. })),
                "{status:?}"
            );
        } else {
            assert!(
                matches!(status, Some(SignatureStatus::Invalid { .. })),
                "{status:?}"
            );
        }
        assert_eq!(subject(&out.message), mark);
        assert_eq!(out.harvest.is_some(), valid);
    }
}

#[tokio::test]
async fn weak_signatures_can_be_treated_as_unsigned_or_get_a_configured_mark() {
    let ca = TestCa::new();
    let alice = ca.issue(&Spec::rsa(&["alice@corp.example"]));
    let bob = ca.issue(&Spec::email(&["bob@partner.example"]));
    let now = SystemTime::now();
    let message = openssl_signed(&alice, "sha1", "[weak signature] Invoice");

    let dir = private_dir();
    let mut unsigned = gateway(dir.path(), &ca, &bob, HarvestMode::Automatic).await;
    unsigned.incoming = IncomingRules::default()
        .with_harvest(true)
        .with_weak_signatures(WeakSignatures::Unsigned);
    let out = unsigned
        .process_incoming(&message, &weak_envelope(), now)
        .unwrap();
    assert_eq!(out.summary.result.signature, None);
    assert_eq!(subject(&out.message), "Invoice");
    assert!(
        !header_block(&out.message).contains("X-Mailtls-Signed"),
        "{}",
        header_block(&out.message)
    );
    assert!(out.harvest.is_none());

    let dir = private_dir();
    let marks = SubjectMarks::default()
        .with_weak_signature("(SHA-1!)")
        .unwrap();
    let mut custom = gateway(dir.path(), &ca, &bob, HarvestMode::Automatic).await;
    custom.incoming = IncomingRules::default().with_marks(marks);
    let message = openssl_signed(&alice, "sha1", "(sha-1!) Invoice");
    let out = custom
        .process_incoming(&message, &weak_envelope(), now)
        .unwrap();
    assert_eq!(subject(&out.message), "(SHA-1!) Invoice");
    assert!(SubjectMarks::default().with_weak_signature(" ").is_err());
}

/// With `rsa_pss`, the gateway signs with RSASSA-PSS for an RSA key (and
/// as always for an EC key); OpenSSL verifies both.
#[tokio::test]
async fn rsa_pss_signing_from_the_gateway_verifies_in_openssl() {
    let ca = TestCa::new();
    let files = private_dir();
    write(files.path(), "ca.pem", ca.pem.as_bytes());
    let now = SystemTime::now();
    for (spec, pss_expected) in [
        (Spec::rsa(&["alice@corp.example"]), true),
        (Spec::email(&["alice@corp.example"]), false),
    ] {
        let alice = ca.issue(&spec);
        let dir = private_dir();
        let mut ga = gateway(dir.path(), &ca, &alice, HarvestMode::Automatic).await;
        ga.outgoing = OutgoingRules::default().with_rsa_pss(true);
        let (signed, summary) = deliver(
            ga.process_outgoing(
                b"From: alice@corp.example\r\nTo: bob@partner.example\r\nSubject: pss\r\n\r\nSigned with PSS\r\n",
                &envelope("alice@corp.example", "bob@partner.example"),
                auth("alice@corp.example"),
                now,
            )
            .unwrap(),
        );
        assert!(summary.signed.is_ok(), "{summary:?}");
        write(files.path(), "signed.eml", &signed);
        let content = openssl(
            files.path(),
            &["-verify", "-in", "signed.eml", "-CAfile", "ca.pem"],
        );
        assert!(String::from_utf8_lossy(&content).contains("Signed with PSS"));
        let printed = openssl(files.path(), &["-cmsout", "-print", "-in", "signed.eml"]);
        assert_eq!(
            String::from_utf8_lossy(&printed).contains("rsassaPss"),
            pss_expected
        );
    }
}
