//! The gateway as an operator runs it: encryption decided per recipient
//! (with the all-or-nothing and bounce options), S/MIME that cannot be read
//! marked as failed, and the partner store's administration calls. What
//! the gateway writes is read back with `openssl cms`; broken input is
//! made from what `openssl cms` writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway_common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use gateway_common::{Issued, Spec, TestCa, openssl_cms as openssl};
use mailtls_core::DnsName;
use mailtls_smime::Certificate;
use mailtls_smime::gateway::{
    Address, Binding, EncryptionPolicy, EncryptionScope, Envelope, FileStorage, Gateway, Harvest,
    HarvestMode, IncomingRules, KeyStore, Listed, MemoryStorage, NotEncrypted, OutgoingRules,
    OutgoingSplitOutcome, PartnerStore, SenderAuth, SmimeCertificate, StatusClass, StoreError,
    SubjectMarks,
};
use tempfile::TempDir;

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn dns(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

fn private_dir() -> TempDir {
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap()
}

fn header_block(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    text.split("\r\n\r\n").next().unwrap().to_owned()
}

fn subject(message: &[u8]) -> String {
    header_block(message)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_owned()
}

/// Corp's gateway: alice@corp.example's key; partners Carol (by address)
/// and partner.example (a domain certificate); files for OpenSSL in
/// `files`.
struct World {
    gateway: Gateway,
    files: TempDir,
    _keys: TempDir,
}

async fn world(rules: OutgoingRules) -> World {
    let ca = TestCa::new();
    let alice = ca.issue(&Spec::rsa(&["alice@corp.example"]));
    let carol = ca.issue(&Spec::rsa(&["carol@remote.example"]));
    let domain = ca.issue(&Spec::email(&["gateway@partner.example"]));
    let files = private_dir();
    let write = |name: &str, who: &Issued| {
        std::fs::write(files.path().join(format!("{name}.pem")), &who.pem).unwrap();
        std::fs::write(files.path().join(format!("{name}.key")), &who.key_pem).unwrap();
    };
    write("carol", &carol);
    write("domain", &domain);
    std::fs::write(files.path().join("ca.pem"), &ca.pem).unwrap();
    let keys_dir = private_dir();
    let mut keys = KeyStore::open(keys_dir.path()).unwrap();
    keys.add_user_key(alice.pem.as_bytes(), alice.key_pem.as_bytes(), "alice")
        .unwrap();
    let mut partners =
        PartnerStore::open(Box::new(MemoryStorage::default()), HarvestMode::Automatic)
            .await
            .unwrap();
    let now = SystemTime::now();
    partners
        .upload(carol.pem.as_bytes(), "carol", Binding::Addresses, now)
        .await
        .unwrap();
    partners
        .upload(
            domain.pem.as_bytes(),
            "partner gateway",
            Binding::Domain(dns("partner.example")),
            now,
        )
        .await
        .unwrap();
    World {
        gateway: Gateway {
            keys,
            partners,
            outgoing: rules,
            incoming: IncomingRules::default(),
            trust_anchors: Certificate::from_pem(ca.pem.as_bytes()).unwrap(),
        },
        files,
        _keys: keys_dir,
    }
}

fn alice() -> SenderAuth {
    SenderAuth::Authenticated {
        login: "alice".into(),
        may_send_as: vec![addr("alice@corp.example")],
    }
}

fn envelope(to: &[&str]) -> Envelope {
    Envelope {
        sender: Some(addr("alice@corp.example")),
        recipients: to.iter().map(|t| addr(t)).collect(),
    }
}

const MESSAGE: &[u8] = b"From: alice@corp.example\r\nTo: carol@remote.example\r\n\
    Subject: quarterly figures\r\n\r\nRevenue is up 4 %.\r\n";

fn split(w: &World, to: &[&str]) -> OutgoingSplitOutcome {
    w.gateway
        .process_outgoing_split(MESSAGE, &envelope(to), alice(), SystemTime::now())
        .unwrap()
}

/// Verifies a signed message with OpenSSL against the test CA; returns the
/// content.
fn openssl_verify(dir: &Path, signed: &[u8]) -> String {
    std::fs::write(dir.join("signed.eml"), signed).unwrap();
    let content = openssl(dir, &["-verify", "-in", "signed.eml", "-CAfile", "ca.pem"]);
    String::from_utf8(content).unwrap()
}

fn openssl_decrypt(dir: &Path, encrypted: &[u8], who: &str) -> Vec<u8> {
    std::fs::write(dir.join("encrypted.eml"), encrypted).unwrap();
    openssl(
        dir,
        &[
            "-decrypt",
            "-in",
            "encrypted.eml",
            "-recip",
            &format!("{who}.pem"),
            "-inkey",
            &format!("{who}.key"),
        ],
    )
}

#[tokio::test]
async fn recipients_with_a_certificate_get_an_encrypted_copy_the_others_a_signed_one() {
    let w = world(OutgoingRules::default()).await;
    let OutgoingSplitOutcome::Deliver { copies, bounced } = split(
        &w,
        &[
            "carol@remote.example",
            "x@nocert.example",
            "dan@partner.example",
        ],
    ) else {
        panic!("refused")
    };
    assert_eq!(bounced, None);
    assert_eq!(copies.len(), 2, "{copies:?}");
    let (enc, plain) = (&copies[0], &copies[1]);
    assert_eq!(
        enc.recipients,
        [addr("carol@remote.example"), addr("dan@partner.example")]
    );
    assert_eq!(plain.recipients, [addr("x@nocert.example")]);
    assert!(enc.summary.encrypted.is_ok(), "{:?}", enc.summary);
    assert_eq!(
        plain.summary.encrypted,
        Err(NotEncrypted::MissingCertificates(vec![addr(
            "x@nocert.example"
        )]))
    );
    assert!(plain.summary.signed.is_ok() && enc.summary.signed.is_ok());

    // The encrypted copy opens for Carol and for the partner gateway's
    // domain key, and holds Alice's signature; the other copy is signed
    // only, and the content is readable to x.
    let text = String::from_utf8_lossy(&enc.message);
    assert!(!text.contains("Revenue"), "{text}");
    for who in ["carol", "domain"] {
        let inner = openssl_decrypt(w.files.path(), &enc.message, who);
        assert!(openssl_verify(w.files.path(), &inner).contains("Revenue is up 4 %."));
    }
    assert!(
        String::from_utf8_lossy(&plain.message).contains("multipart/signed"),
        "{}",
        String::from_utf8_lossy(&plain.message)
    );
    assert!(openssl_verify(w.files.path(), &plain.message).contains("Revenue is up 4 %."));

    // Everyone with a certificate: one copy, encrypted.
    let OutgoingSplitOutcome::Deliver { copies, .. } =
        split(&w, &["carol@remote.example", "dan@partner.example"])
    else {
        panic!("refused")
    };
    assert_eq!(copies.len(), 1);
    assert!(copies[0].summary.encrypted.is_ok());

    // A `never` domain shares the plain copy and keeps the others' copy
    // encrypted.
    let mut w = w;
    w.gateway.outgoing =
        OutgoingRules::default().with_policy(dns("remote.example"), EncryptionPolicy::Never);
    let OutgoingSplitOutcome::Deliver { copies, .. } =
        split(&w, &["carol@remote.example", "dan@partner.example"])
    else {
        panic!("refused")
    };
    assert_eq!(copies.len(), 2);
    assert_eq!(copies[0].recipients, [addr("dan@partner.example")]);
    assert_eq!(copies[1].recipients, [addr("carol@remote.example")]);
    assert_eq!(copies[1].summary.encrypted, Err(NotEncrypted::PolicyNever));
}

#[tokio::test]
async fn all_or_nothing_keeps_one_copy_in_clear_when_one_certificate_is_missing() {
    let w = world(OutgoingRules::default().with_scope(EncryptionScope::AllOrNothing)).await;
    let OutgoingSplitOutcome::Deliver { copies, bounced } =
        split(&w, &["carol@remote.example", "x@nocert.example"])
    else {
        panic!("refused")
    };
    assert_eq!(bounced, None);
    assert_eq!(copies.len(), 1);
    assert_eq!(
        copies[0].recipients,
        [addr("carol@remote.example"), addr("x@nocert.example")]
    );
    assert!(copies[0].summary.encrypted.is_err());
    assert!(String::from_utf8_lossy(&copies[0].message).contains("Revenue"));
}

#[tokio::test]
async fn the_bounce_policy_leaves_out_recipients_without_a_certificate() {
    let rules = OutgoingRules::default()
        .with_policy(dns("nocert.example"), EncryptionPolicy::AlwaysOrBounce);
    let mut w = world(rules.clone()).await;
    let OutgoingSplitOutcome::Deliver { copies, bounced } = split(
        &w,
        &[
            "carol@remote.example",
            "x@nocert.example",
            "y@elsewhere.example",
        ],
    ) else {
        panic!("refused")
    };
    let bounced = bounced.expect("x is bounced");
    assert_eq!(bounced.recipients, [addr("x@nocert.example")]);
    assert_eq!(bounced.status.to_string(), "5.7.5");
    assert!(
        bounced.reason.contains("x@nocert.example"),
        "{}",
        bounced.reason
    );
    let named: Vec<&Address> = copies.iter().flat_map(|c| &c.recipients).collect();
    assert_eq!(
        named,
        [&addr("carol@remote.example"), &addr("y@elsewhere.example")]
    );
    // Nobody left to send to: refused outright, permanently.
    match split(&w, &["x@nocert.example"]) {
        OutgoingSplitOutcome::Reject(r) => {
            assert_eq!(r.status.class, StatusClass::Permanent);
            assert_eq!(r.recipients, [addr("x@nocert.example")]);
        }
        other => panic!("{other:?}"),
    }
    // All or nothing: x is still bounced, Carol alone gets it encrypted.
    w.gateway.outgoing = rules.with_scope(EncryptionScope::AllOrNothing);
    let OutgoingSplitOutcome::Deliver { copies, bounced } =
        split(&w, &["carol@remote.example", "x@nocert.example"])
    else {
        panic!("refused")
    };
    assert_eq!(bounced.unwrap().recipients, [addr("x@nocert.example")]);
    assert_eq!(copies.len(), 1);
    assert!(copies[0].summary.encrypted.is_ok());
}

#[tokio::test]
async fn always_and_reject_policies_still_refuse_the_whole_message() {
    let rules = OutgoingRules::default()
        .with_policy(dns("retry.example"), EncryptionPolicy::Always)
        .with_policy(dns("strict.example"), EncryptionPolicy::AlwaysOrReject);
    let w = world(rules).await;
    match split(&w, &["carol@remote.example", "a@retry.example"]) {
        OutgoingSplitOutcome::Reject(r) => {
            assert_eq!(r.status.to_string(), "4.7.5");
            assert_eq!(r.recipients, [addr("a@retry.example")]);
        }
        other => panic!("{other:?}"),
    }
    match split(&w, &["a@retry.example", "b@strict.example"]) {
        OutgoingSplitOutcome::Reject(r) => assert_eq!(r.status.to_string(), "5.7.5"),
        other => panic!("{other:?}"),
    }
}

/// A message signed by OpenSSL (detached, multipart/signed) as Carol.
fn openssl_signed(dir: &Path) -> String {
    std::fs::write(
        dir.join("content.eml"),
        "Content-Type: text/plain\r\n\r\nMeet at noon.\r\n",
    )
    .unwrap();
    let signed = openssl(
        dir,
        &[
            "-sign",
            "-in",
            "content.eml",
            "-signer",
            "carol.pem",
            "-inkey",
            "carol.key",
            "-from",
            "carol@remote.example",
            "-to",
            "alice@corp.example",
            "-subject",
            "meeting",
        ],
    );
    String::from_utf8(signed).unwrap()
}

/// Replaces the base64 body of the signature part with `garbage`.
fn mangle_signature(signed: &str, garbage: &str) -> String {
    let marker = "filename=\"smime.p7s\"";
    let start = signed.find(marker).expect("a signature part") + marker.len();
    let body_start = start
        + signed[start..]
            .find("\n\n")
            .or_else(|| signed[start..].find("\r\n\r\n"))
            .unwrap();
    let body_end = body_start + 2 + signed[body_start + 2..].find("\n------").unwrap();
    format!(
        "{}\n\n{garbage}{}",
        &signed[..body_start],
        &signed[body_end..]
    )
}

#[tokio::test]
async fn smime_that_cannot_be_read_is_delivered_marked_as_failed() {
    let w = world(OutgoingRules::default()).await;
    let env = Envelope {
        sender: Some(addr("carol@remote.example")),
        recipients: vec![addr("alice@corp.example")],
    };
    let now = SystemTime::now();
    let signed = openssl_signed(w.files.path());
    // Sanity: as OpenSSL wrote it, it verifies and is marked signed.
    let out = w
        .gateway
        .process_incoming(signed.as_bytes(), &env, now)
        .unwrap();
    assert_eq!(subject(&out.message), "[signed] meeting");
    assert_eq!(out.summary.result.failed, None);

    // The signature is not CMS at all; a sender also tries to pass a
    // status header of its own.
    let broken = mangle_signature(&signed, "AAAAAAAAAAAAAAAAAAAA\n").replacen(
        "Subject:",
        "X-Mailtls-Failed: no\r\nSubject:",
        1,
    );
    let out = w
        .gateway
        .process_incoming(broken.as_bytes(), &env, now)
        .unwrap();
    let failed = out.summary.result.failed.as_deref().expect("marked failed");
    assert!(failed.contains("could not be read"), "{failed}");
    assert_eq!(out.summary.result.signature, None);
    assert_eq!(subject(&out.message), "[S/MIME failed] meeting");
    let headers = header_block(&out.message);
    assert_eq!(headers.matches("X-Mailtls-Failed:").count(), 1, "{headers}");
    assert!(
        headers.contains("X-Mailtls-Failed: unreadable; reason=\""),
        "{headers}"
    );
    assert!(!headers.contains("X-Mailtls-Failed: no"), "{headers}");
    // Delivered as it came otherwise: the body is untouched.
    assert!(String::from_utf8_lossy(&out.message).contains("Meet at noon."));

    // Base64 that is not base64.
    let broken = mangle_signature(&signed, "%%%% not base64 %%%%\n");
    let out = w
        .gateway
        .process_incoming(broken.as_bytes(), &env, now)
        .unwrap();
    assert!(out.summary.result.failed.is_some());
    assert_eq!(subject(&out.message), "[S/MIME failed] meeting");

    // An envelope that cannot be parsed, for a recipient whose key is held
    // (the split path): one copy, marked.
    let enveloped = b"From: carol@remote.example\r\nTo: alice@corp.example\r\nSubject: secret\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\r\n\
        Content-Transfer-Encoding: base64\r\n\r\nMIIBAAAAAAAAAAAAAAAA\r\n";
    let copies = w
        .gateway
        .process_incoming_split(enveloped, &env, now)
        .unwrap();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].recipients, [addr("alice@corp.example")]);
    assert_eq!(
        subject(&copies[0].outcome.message),
        "[S/MIME failed] secret"
    );
    assert!(!copies[0].outcome.summary.result.decrypted);

    // Not S/MIME (a PGP/MIME signature): nothing to say, no mark; a
    // forged failure mark in a plain message is removed.
    let pgp = b"From: carol@remote.example\r\nSubject: [S/MIME failed] pgp\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/signed; micalg=pgp-sha256; protocol=\"application/pgp-signature\"; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/pgp-signature\r\n\r\n\
        -----BEGIN PGP SIGNATURE-----\r\nxx\r\n-----END PGP SIGNATURE-----\r\n--b--\r\n";
    let out = w.gateway.process_incoming(pgp, &env, now).unwrap();
    assert_eq!(out.summary.result.failed, None);
    assert_eq!(subject(&out.message), "pgp");
    assert!(!header_block(&out.message).contains("X-Mailtls-"));
}

#[tokio::test]
async fn the_failed_mark_is_configurable_and_refused_when_empty() {
    let marks = SubjectMarks::default().with_failed("(BROKEN)").unwrap();
    let mut w = world(OutgoingRules::default()).await;
    w.gateway.incoming = IncomingRules::default().with_marks(marks);
    let signed = openssl_signed(w.files.path());
    let broken = mangle_signature(&signed, "AAAA\n");
    let env = Envelope {
        sender: Some(addr("carol@remote.example")),
        recipients: vec![addr("alice@corp.example")],
    };
    let out = w
        .gateway
        .process_incoming(broken.as_bytes(), &env, SystemTime::now())
        .unwrap();
    assert_eq!(subject(&out.message), "(BROKEN) meeting");
    assert!(SubjectMarks::default().with_failed("  ").is_err());
}

#[tokio::test]
async fn partner_store_administration_persists_and_resolves_fingerprint_prefixes() {
    let ca = TestCa::new();
    let carol = ca.issue(&Spec::rsa(&["carol@remote.example"]));
    let erin = ca.issue(&Spec::email(&["erin@remote.example"]));
    let dir = private_dir();
    let open = || async {
        PartnerStore::open(
            Box::new(FileStorage::in_dir(dir.path(), "partners.json").unwrap()),
            HarvestMode::ManualApproval,
        )
        .await
        .unwrap()
    };
    let now = SystemTime::now();
    let mut store = open().await;
    let added = store
        .upload(carol.pem.as_bytes(), "carol.pem", Binding::Addresses, now)
        .await
        .unwrap();
    let fp = added[0];
    let hex = fp.to_string();
    assert_eq!(store.find(&hex[..8], Listed::Stored).unwrap(), fp);
    assert_eq!(store.find(&hex.to_uppercase(), Listed::Stored).unwrap(), fp);
    assert!(matches!(
        store.find(&hex[..7], Listed::Stored),
        Err(StoreError::BadFingerprint { .. })
    ));
    assert!(matches!(
        store.find(&hex[..8], Listed::Pending),
        Err(StoreError::NoMatch { .. })
    ));

    // Disable, seen by a second handle on the same file after reload.
    let mut other = open().await;
    store.disable(&fp).await.unwrap();
    assert!(other.get(&fp).unwrap().is_enabled());
    other.reload().await.unwrap();
    assert!(!other.get(&fp).unwrap().is_enabled());
    assert!(other.lookup(&addr("carol@remote.example"), now).is_err());
    store.enable(&fp).await.unwrap();

    // A harvest waits for approval; approve and reject act on the queue.
    let erin_cert = SmimeCertificate::from_der(erin.der.clone().into(), "erin signature").unwrap();
    let offer = Harvest {
        certificate: erin_cert.clone(),
        capabilities: mailtls_smime::SmimeCapabilities::new(Vec::new()),
        signing_time: now,
    };
    store.harvest(offer.clone(), now).await.unwrap();
    let erin_fp = erin_cert.fingerprint();
    let pending = store
        .find(&erin_fp.to_string()[..10], Listed::Pending)
        .unwrap();
    assert_eq!(pending, erin_fp);
    store.reject(&erin_fp).await.unwrap();
    assert_eq!(store.pending().count(), 0);
    store.harvest(offer, now).await.unwrap();
    store.approve(&erin_fp, now).await.unwrap();
    assert!(store.lookup(&addr("erin@remote.example"), now).is_ok());
    store.delete(&fp).await.unwrap();

    let reopened = open().await;
    let fps: Vec<String> = reopened
        .list()
        .map(|e| e.certificate().fingerprint().to_string())
        .collect();
    assert_eq!(fps, [erin_fp.to_string()]);
    assert_eq!(reopened.pending().count(), 0);
}

/// The real signed messages of `../shared/smime-samples` (Thunderbird,
/// Outlook, NSS): each one the gateway receives gets a mark (signed,
/// signature invalid, or failed when the engine cannot read it), never
/// none, and none that OpenSSL refuses to verify is marked signed.
#[tokio::test]
async fn real_signed_messages_never_pass_unmarked() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/smime-samples");
    let mut anchors = Vec::new();
    let mut messages = Vec::new();
    for folder in ["hmailserver-thunderbird-outlook", "nss-comm-central"] {
        let dir = samples.join(folder);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (the shared S/MIME samples)", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".crt") || name == "TestCA.pem" {
                anchors.extend(Certificate::from_pem(&std::fs::read(&path).unwrap()).unwrap());
            }
            // Signed only: what is encrypted needs the recipients' keys.
            let signed = name.contains("sig") || name.contains("signed");
            let encrypted = name.contains("env") || name.contains("encrypted");
            if name.ends_with(".eml") && signed && !encrypted {
                messages.push(path);
            }
        }
    }
    assert!(messages.len() >= 6, "{messages:?}");
    let mut w = world(OutgoingRules::default()).await;
    w.gateway.trust_anchors = anchors;
    // One file for OpenSSL, which takes only the last -CAfile given.
    let cas = w.files.path().join("sample-cas.pem");
    let mut pem = std::fs::read(samples.join("nss-comm-central/TestCA.pem")).unwrap();
    pem.extend(
        std::fs::read(samples.join("hmailserver-thunderbird-outlook/ca_smime.crt")).unwrap(),
    );
    std::fs::write(&cas, pem).unwrap();
    let marks = [
        "[signed]",
        "[signature invalid]",
        "[S/MIME failed]",
        "[signed by",
        // Outlook's SHA-1 signature: valid, over a weak algorithm.
        "[weak signature]",
    ];
    let mut verdicts = Vec::new();
    for path in &messages {
        let bytes = std::fs::read(path).unwrap();
        let env = Envelope {
            sender: None,
            recipients: vec![addr("postmaster@corp.example")],
        };
        let out = w
            .gateway
            .process_incoming(&bytes, &env, SystemTime::now())
            .unwrap();
        let subject = subject(&out.message);
        let openssl_ok = Command::new("openssl")
            .args(["cms", "-verify", "-out", "/dev/null", "-in"])
            .arg(path)
            .arg("-CAfile")
            .arg(&cas)
            .output()
            .unwrap()
            .status
            .success();
        verdicts.push(format!(
            "{}: {subject:?} (openssl verifies: {openssl_ok})",
            path.display()
        ));
        assert!(
            marks.iter().any(|m| subject.starts_with(m)),
            "{}: unmarked: {subject:?}",
            path.display()
        );
        if !openssl_ok {
            assert!(!subject.starts_with("[signed]"), "{}", verdicts.join("\n"));
        }
    }
    println!("{}", verdicts.join("\n"));
}
