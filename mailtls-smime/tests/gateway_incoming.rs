//! Incoming rules: decryption keys per envelope recipient, harvesting, and
//! Subject marks and status headers that cannot be forged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway_common;

use std::os::unix::fs::PermissionsExt;

use gateway_common::{Spec, TestCa};
use mailtls_core::DnsName;
use mailtls_smime::gateway::{
    Address, DecryptDecision, IncomingMessage, IncomingRules, KeyOwner, KeyStore, SecurityResult,
    SignatureStatus, StatusHeaders, SubjectMarks, decode_subject,
};

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn store(ca: &TestCa, dir: &std::path::Path) -> KeyStore {
    let mut keys = KeyStore::open(dir).unwrap();
    let alice = ca.issue(&Spec::email(&["alice@corp.example"]));
    keys.add_user_key(alice.pem.as_bytes(), alice.key_pem.as_bytes(), "alice")
        .unwrap();
    let dom = ca.issue(&Spec::rsa(&["gateway@branch.example"]));
    keys.add_domain_key(
        &DnsName::parse("branch.example").unwrap(),
        dom.pem.as_bytes(),
        dom.key_pem.as_bytes(),
        "branch",
    )
    .unwrap();
    keys
}

#[test]
fn decrypt_only_with_a_key_for_the_envelope_recipient() {
    let ca = TestCa::new();
    let tmp = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap();
    let keys = store(&ca, tmp.path());
    let rules = IncomingRules::default();
    let msg = |rcpts: &[&str], encrypted: bool| IncomingMessage {
        envelope_recipients: rcpts.iter().map(|r| addr(r)).collect(),
        encrypted,
    };

    assert_eq!(
        rules.decrypt_decision(&msg(&["alice@corp.example"], false), &keys),
        DecryptDecision::NotEncrypted
    );
    match rules.decrypt_decision(
        &msg(&["Alice@corp.example", "x@branch.example"], true),
        &keys,
    ) {
        DecryptDecision::Decrypt(k) => {
            assert_eq!(k[0].1.owner, KeyOwner::User(addr("alice@corp.example")));
            assert_eq!(
                k[1].1.owner,
                KeyOwner::Domain(DnsName::parse("branch.example").unwrap())
            );
        }
        d => panic!("{d:?}"),
    }
    // corp.example has no domain key: bob's copy stays encrypted.
    match rules.decrypt_decision(
        &msg(&["alice@corp.example", "bob@corp.example"], true),
        &keys,
    ) {
        DecryptDecision::Split {
            with_key,
            without_key,
        } => {
            assert_eq!(with_key.len(), 1);
            assert_eq!(without_key, [addr("bob@corp.example")]);
        }
        d => panic!("{d:?}"),
    }
    assert_eq!(
        rules.decrypt_decision(&msg(&["bob@corp.example"], true), &keys),
        DecryptDecision::NoKey
    );
    // A subdomain is not the domain.
    assert_eq!(
        rules.decrypt_decision(&msg(&["x@sub.branch.example"], true), &keys),
        DecryptDecision::NoKey
    );
}

#[test]
fn harvest_only_from_valid_own_signatures() {
    let on = IncomingRules::default().with_harvest(true);
    let valid = SignatureStatus::Valid {
        signer: addr("p@partner.example"),
    };
    assert!(on.should_harvest(&valid));
    assert!(!on.should_harvest(&SignatureStatus::Invalid {
        reason: "digest mismatch".into()
    }));
    assert!(!on.should_harvest(&SignatureStatus::ValidForDomain {
        domain: DnsName::parse("partner.example").unwrap()
    }));
    assert!(!IncomingRules::default().should_harvest(&valid));
}

#[test]
fn forged_marks_are_replaced_by_the_real_status() {
    let rules = IncomingRules::default();
    let unsigned = SecurityResult::default();
    // A plain message claiming to be signed and encrypted, encoded to hide it.
    let forged = "=?utf-8?q?=5BSigned=5D?= =?utf-8?b?W2VuY3J5cHRlZF0=?= Invoice";
    assert_eq!(rules.subject(Some(forged), &unsigned), "Invoice");
    let signed = SecurityResult {
        decrypted: true,
        failed: None,
        signature: Some(SignatureStatus::Valid {
            signer: addr("p@partner.example"),
        }),
    };
    assert_eq!(
        rules.subject(Some("[signature invalid] Invoice"), &signed),
        "[encrypted] [signed] Invoice"
    );
    let invalid = SecurityResult {
        decrypted: false,
        failed: None,
        signature: Some(SignatureStatus::Invalid {
            reason: "bad".into(),
        }),
    };
    assert_eq!(
        rules.subject(Some("[signed] Invoice"), &invalid),
        "[signature invalid] Invoice"
    );
    let domain = SecurityResult {
        decrypted: false,
        failed: None,
        signature: Some(SignatureStatus::ValidForDomain {
            domain: DnsName::parse("partner.example").unwrap(),
        }),
    };
    assert_eq!(
        rules.subject(Some("[signed by <*@bank.example>] Invoice"), &domain),
        "[signed by <*@partner.example>] Invoice"
    );
    assert_eq!(rules.subject(None, &signed), "[encrypted] [signed]");
    // Non-ASCII subjects come back encoded and decode to the marked text.
    let marked = rules.subject(Some("=?utf-8?q?R=C3=A9sum=C3=A9_=5Bsigned=5D?="), &signed);
    assert!(marked.is_ascii());
    assert_eq!(decode_subject(&marked), "[encrypted] [signed] Résumé");
    // Replies going out lose the marks.
    assert_eq!(
        rules.outgoing_subject("Re: [encrypted] [signed] Invoice"),
        "Re: Invoice"
    );
}

#[test]
fn custom_marks_through_the_rules() {
    let rules = IncomingRules::default()
        .with_marks(SubjectMarks::new("<S>", "<S {domain}>", "<E>", "<S?>").unwrap());
    let signed = SecurityResult {
        decrypted: false,
        failed: None,
        signature: Some(SignatureStatus::Valid {
            signer: addr("p@partner.example"),
        }),
    };
    assert_eq!(rules.subject(Some("(s) [E] hello"), &signed), "<S> hello");
}

#[test]
fn status_headers_are_recognised_and_reported() {
    let h = StatusHeaders::default();
    for name in [
        "X-Mailtls-Signed",
        "x-mailtls-signed",
        " X-MAILTLS-Encrypted ",
        "X-Mailtls-Anything",
    ] {
        assert!(h.is_status_header(name), "{name}");
    }
    for name in ["X-Mailer", "Subject", "X-Mailtl", "Received"] {
        assert!(!h.is_status_header(name), "{name}");
    }
    let result = SecurityResult {
        decrypted: true,
        failed: None,
        signature: Some(SignatureStatus::Invalid {
            reason: "digest\r\nBcc: victim@example.com \"quoted\"".into(),
        }),
    };
    let headers = h.headers(&result);
    assert_eq!(
        headers[0],
        ("X-Mailtls-Encrypted".into(), "decrypted".into())
    );
    assert_eq!(headers[1].0, "X-Mailtls-Signed");
    assert_eq!(
        headers[1].1,
        "invalid; reason=\"digest Bcc: victim@example.com quoted\""
    );
    assert!(!headers[1].1.contains('\n'));
    let custom = StatusHeaders::new("X-GW-").unwrap();
    assert!(custom.is_status_header("x-gw-signed"));
    assert!(StatusHeaders::new("X").is_err());
    assert!(StatusHeaders::new("X-A B-").is_err());
    assert!(StatusHeaders::new("X:Y-").is_err());
}
