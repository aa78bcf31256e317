//! Outgoing rules: who gets signed with which key, and when mail is
//! encrypted, deferred or rejected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway_common;

use std::collections::HashMap;
use std::time::SystemTime;

use gateway_common::{Spec, TestCa};
use mailtls_core::{CertificateDer, DnsName};
use mailtls_smime::ContentEncryption;
use mailtls_smime::gateway::{
    Address, Binding, EncryptDecision, EncryptionPolicy, Harvest, HarvestMode, KeyDirectory,
    KeyOwner, KeyRef, MatchedBy, MemoryStorage, NotEncrypted, NotSigned, OutgoingDecision,
    OutgoingMessage, OutgoingPlan, OutgoingRules, PartnerStore, RecipientMatch, RelayAllowance,
    SenderAuth, SignDecision, SmimeCertificate, StatusClass, TrustedRelay, Unusable,
};

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn dns(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

fn cert(ca: &TestCa, spec: &Spec) -> SmimeCertificate {
    SmimeCertificate::from_der(CertificateDer::from(ca.issue(spec).der), "test").unwrap()
}

/// The gateway's own keys, in memory.
#[derive(Default)]
struct Keys {
    users: HashMap<Address, SmimeCertificate>,
    domains: HashMap<DnsName, SmimeCertificate>,
}

impl KeyDirectory for Keys {
    fn user_key(&self, address: &Address) -> Option<KeyRef> {
        self.users.get(address).map(|c| KeyRef {
            owner: KeyOwner::User(address.clone()),
            certificate: c.clone(),
        })
    }
    fn domain_key(&self, domain: &DnsName) -> Option<KeyRef> {
        self.domains.get(domain).map(|c| KeyRef {
            owner: KeyOwner::Domain(domain.clone()),
            certificate: c.clone(),
        })
    }
}

struct World {
    ca: TestCa,
    partners: PartnerStore,
    keys: Keys,
    now: SystemTime,
}

async fn world() -> World {
    let ca = TestCa::new();
    let now = SystemTime::now();
    let mut partners =
        PartnerStore::open(Box::new(MemoryStorage::default()), HarvestMode::Automatic)
            .await
            .unwrap();
    for a in [
        "p1@partner.example",
        "p2@partner.example",
        "x@strict.example",
    ] {
        partners
            .upload(
                &ca.issue(&Spec::email(&[a])).der,
                a,
                Binding::Addresses,
                now,
            )
            .await
            .unwrap();
    }
    partners
        .upload(
            &ca.issue(&Spec::rsa(&["gw@gateway.example"])).der,
            "gw",
            Binding::Domain(dns("gateway.example")),
            now,
        )
        .await
        .unwrap();
    let mut keys = Keys::default();
    keys.users.insert(
        addr("alice@corp.example"),
        cert(&ca, &Spec::email(&["alice@corp.example"])),
    );
    keys.domains.insert(
        dns("corp.example"),
        cert(&ca, &Spec::email(&["domain@corp.example"])),
    );
    World {
        ca,
        partners,
        keys,
        now,
    }
}

fn msg(sender: &str, rcpts: &[&str], auth: SenderAuth) -> OutgoingMessage {
    OutgoingMessage {
        envelope_sender: Some(addr(sender)),
        header_from: None,
        recipients: rcpts.iter().map(|r| addr(r)).collect(),
        auth,
    }
}

fn alice_auth() -> SenderAuth {
    SenderAuth::Authenticated {
        login: "alice".into(),
        may_send_as: vec![addr("alice@corp.example")],
    }
}

fn plan(d: OutgoingDecision) -> OutgoingPlan {
    match d {
        OutgoingDecision::Deliver(p) => p,
        OutgoingDecision::Reject(r) => panic!("rejected: {r:?}"),
    }
}

fn signer_owners(s: &SignDecision) -> Vec<KeyOwner> {
    match s {
        SignDecision::Sign(keys) => keys.iter().map(|k| k.owner.clone()).collect(),
        SignDecision::DoNotSign(why) => panic!("not signed: {why:?}"),
    }
}

#[tokio::test]
async fn authenticated_sender_signs_with_own_key_and_encrypts_when_possible() {
    let w = world().await;
    let rules = OutgoingRules::default().with_encrypt_to_sender(true);
    let p = plan(rules.decide(
        &msg(
            "Alice@corp.example",
            &["p1@partner.example", "bob@gateway.example"],
            alice_auth(),
        ),
        &w.partners,
        &w.keys,
        w.now,
    ));
    assert_eq!(
        signer_owners(&p.sign),
        [KeyOwner::User(addr("alice@corp.example"))]
    );
    match p.encrypt {
        EncryptDecision::Encrypt {
            recipients,
            sender_copy,
            content_encryption,
        } => {
            assert_eq!(recipients.len(), 2);
            assert_eq!(recipients[0].matched_by, MatchedBy::Address);
            assert_eq!(recipients[1].matched_by, MatchedBy::Domain);
            assert!(sender_copy.unwrap().names(&addr("alice@corp.example")));
            // Nothing advertised: CBC, never GCM.
            assert_eq!(content_encryption, ContentEncryption::Aes256Cbc);
        }
        other => panic!("{other:?}"),
    }
    // One recipient without a certificate: the whole message goes in clear.
    let p = plan(rules.decide(
        &msg(
            "alice@corp.example",
            &["p1@partner.example", "nobody@else.example"],
            alice_auth(),
        ),
        &w.partners,
        &w.keys,
        w.now,
    ));
    assert_eq!(
        p.encrypt,
        EncryptDecision::Plain(NotEncrypted::MissingCertificates(vec![addr(
            "nobody@else.example"
        )]))
    );
    assert!(matches!(p.sign, SignDecision::Sign(_)));
}

#[tokio::test]
async fn gcm_only_when_every_recipient_advertised_it() {
    let mut w = world().await;
    let now = w.now;
    let gcm_partner = cert(&w.ca, &Spec::email(&["g@gcm.example"]));
    w.partners
        .harvest(
            Harvest {
                certificate: gcm_partner,
                capabilities: mailtls_smime::SmimeCapabilities::new(vec![
                    ContentEncryption::Aes128Gcm.oid(),
                    ContentEncryption::Aes128Cbc.oid(),
                ]),
                signing_time: now,
            },
            now,
        )
        .await
        .unwrap();
    let rules = OutgoingRules::default();
    let ce = |rcpts: &[&str]| match plan(rules.decide(
        &msg("alice@corp.example", rcpts, alice_auth()),
        &w.partners,
        &w.keys,
        now,
    ))
    .encrypt
    {
        EncryptDecision::Encrypt {
            content_encryption, ..
        } => content_encryption,
        other => panic!("{other:?}"),
    };
    assert_eq!(ce(&["g@gcm.example"]), ContentEncryption::Aes128Gcm);
    assert_eq!(
        ce(&["g@gcm.example", "p1@partner.example"]),
        ContentEncryption::Aes128Cbc
    );
}

#[tokio::test]
async fn who_may_sign() {
    let w = world().await;
    let rules = OutgoingRules::default()
        .with_trusted_relay(
            TrustedRelay::new("10.1.0.0/16".parse().unwrap())
                .allow(RelayAllowance::SenderDomain(dns("corp.example"))),
        )
        .with_trusted_relay(
            TrustedRelay::new("2001:db8::/32".parse().unwrap())
                .allow(RelayAllowance::Sender(addr("other@corp.example"))),
        );
    let decide = |m: OutgoingMessage| plan(rules.decide(&m, &w.partners, &w.keys, w.now)).sign;
    let to = ["p1@partner.example"];

    assert_eq!(
        decide(msg("alice@corp.example", &to, SenderAuth::Anonymous)),
        SignDecision::DoNotSign(NotSigned::NotAuthenticated)
    );
    // Logged in as someone who does not own the sender address.
    let mallory = SenderAuth::Authenticated {
        login: "mallory".into(),
        may_send_as: vec![addr("mallory@corp.example")],
    };
    assert!(matches!(
        decide(msg("alice@corp.example", &to, mallory)),
        SignDecision::DoNotSign(NotSigned::SenderNotOwned { .. })
    ));
    // Header From differs from the envelope sender.
    let mut m = msg("alice@corp.example", &to, alice_auth());
    m.header_from = Some(addr("ceo@corp.example"));
    assert!(matches!(
        decide(m),
        SignDecision::DoNotSign(NotSigned::FromMismatch { .. })
    ));
    // Null sender.
    let mut m = msg("alice@corp.example", &to, alice_auth());
    m.envelope_sender = None;
    assert_eq!(decide(m), SignDecision::DoNotSign(NotSigned::NullSender));
    // Owned address but no key.
    let bob = SenderAuth::Authenticated {
        login: "bob".into(),
        may_send_as: vec![addr("bob@corp.example")],
    };
    assert_eq!(
        decide(msg("bob@corp.example", &to, bob)),
        SignDecision::DoNotSign(NotSigned::NoKey {
            owner: KeyOwner::User(addr("bob@corp.example"))
        })
    );

    // Relays: inside the trusted network with an allowed sender domain.
    let relay = |ip: &str| SenderAuth::Relay {
        ip: ip.parse().unwrap(),
    };
    assert_eq!(
        signer_owners(&decide(msg("alice@corp.example", &to, relay("10.1.2.3")))),
        [KeyOwner::User(addr("alice@corp.example"))]
    );
    assert_eq!(
        decide(msg("alice@corp.example", &to, relay("10.2.0.1"))),
        SignDecision::DoNotSign(NotSigned::UntrustedRelay {
            ip: "10.2.0.1".parse().unwrap()
        })
    );
    // The IPv6 relay may only have other@ signed.
    assert!(matches!(
        decide(msg("alice@corp.example", &to, relay("2001:db8::25"))),
        SignDecision::DoNotSign(NotSigned::RelayNotAllowed { .. })
    ));
}

#[tokio::test]
async fn relay_allowed_by_key_fingerprint() {
    let w = world().await;
    let alice_fp = w
        .keys
        .user_key(&addr("alice@corp.example"))
        .unwrap()
        .fingerprint();
    let rules = OutgoingRules::default().with_trusted_relay(
        TrustedRelay::new("192.0.2.10/32".parse().unwrap()).allow(RelayAllowance::Key(alice_fp)),
    );
    let relay = SenderAuth::Relay {
        ip: "192.0.2.10".parse().unwrap(),
    };
    let d = plan(rules.decide(
        &msg("alice@corp.example", &["p1@partner.example"], relay.clone()),
        &w.partners,
        &w.keys,
        w.now,
    ));
    assert!(matches!(d.sign, SignDecision::Sign(_)));
    // The domain key is not on the list.
    let rules = rules.with_domain_signing(RecipientMatch::Domain(dns("partner.example")));
    let d = plan(rules.decide(
        &msg("alice@corp.example", &["p1@partner.example"], relay),
        &w.partners,
        &w.keys,
        w.now,
    ));
    assert!(matches!(
        d.sign,
        SignDecision::DoNotSign(NotSigned::RelayNotAllowed { .. })
    ));
}

#[tokio::test]
async fn domain_signing_for_listed_recipients() {
    let w = world().await;
    let rules = OutgoingRules::default()
        .with_domain_signing(RecipientMatch::Domain(dns("gateway.example")))
        .with_domain_signing(RecipientMatch::Address(addr("p2@partner.example")));
    let owners = |rcpts: &[&str]| {
        signer_owners(
            &plan(rules.decide(
                &msg("alice@corp.example", rcpts, alice_auth()),
                &w.partners,
                &w.keys,
                w.now,
            ))
            .sign,
        )
    };
    let domain = KeyOwner::Domain(dns("corp.example"));
    let user = KeyOwner::User(addr("alice@corp.example"));
    assert_eq!(
        owners(&["x@gateway.example", "p2@partner.example"]),
        std::slice::from_ref(&domain)
    );
    assert_eq!(owners(&["p1@partner.example"]), std::slice::from_ref(&user));
    // Mixed: one signature of each.
    assert_eq!(
        owners(&["p1@partner.example", "x@gateway.example"]),
        [user, domain]
    );
}

#[tokio::test]
async fn expired_signing_key_is_reported() {
    let mut w = world().await;
    let expired = cert(
        &w.ca,
        &Spec {
            not_before_days: -400,
            not_after_days: -5,
            ..Spec::email(&["alice@corp.example"])
        },
    );
    w.keys.users.insert(addr("alice@corp.example"), expired);
    let d = plan(OutgoingRules::default().decide(
        &msg("alice@corp.example", &["p1@partner.example"], alice_auth()),
        &w.partners,
        &w.keys,
        w.now,
    ));
    assert_eq!(
        d.sign,
        SignDecision::DoNotSign(NotSigned::KeyUnusable {
            owner: KeyOwner::User(addr("alice@corp.example")),
            reason: Unusable::Expired
        })
    );
}

#[tokio::test]
async fn policies_never_always_and_reject() {
    let w = world().await;
    let mut rules = OutgoingRules::default();
    rules
        .policies
        .insert(dns("strict.example"), EncryptionPolicy::AlwaysOrReject);
    rules
        .policies
        .insert(dns("partner.example"), EncryptionPolicy::Always);
    rules
        .policies
        .insert(dns("plain.example"), EncryptionPolicy::Never);
    let decide = |rcpts: &[&str]| {
        rules.decide(
            &msg("alice@corp.example", rcpts, alice_auth()),
            &w.partners,
            &w.keys,
            w.now,
        )
    };
    // Possible: encrypted.
    assert!(matches!(
        plan(decide(&["x@strict.example", "p1@partner.example"])).encrypt,
        EncryptDecision::Encrypt { .. }
    ));
    // Always, a certificate missing: transient 4.7.5 naming the recipient.
    match decide(&["p1@partner.example", "p3@partner.example"]) {
        OutgoingDecision::Reject(r) => {
            assert_eq!(r.status.class, StatusClass::Transient);
            assert_eq!(r.status.to_string(), "4.7.5");
            assert_eq!(r.recipients, [addr("p3@partner.example")]);
            assert!(r.reason.contains("p3@partner.example"), "{}", r.reason);
        }
        d => panic!("{d:?}"),
    }
    // Subdomains inherit the parent's policy.
    assert!(matches!(
        decide(&["y@mx.strict.example"]),
        OutgoingDecision::Reject(r) if r.status.to_string() == "5.7.5"
    ));
    // Always-or-reject beside always: permanent.
    match decide(&["nobody@strict.example", "p1@partner.example"]) {
        OutgoingDecision::Reject(r) => assert_eq!(r.status.reply_code(), 554),
        d => panic!("{d:?}"),
    }
    // Never: clear, even with certificates.
    assert_eq!(
        plan(decide(&["a@plain.example"])).encrypt,
        EncryptDecision::Plain(NotEncrypted::PolicyNever)
    );
    // Never beside always-or-reject: cannot be one message.
    match decide(&["a@plain.example", "x@strict.example"]) {
        OutgoingDecision::Reject(r) => {
            assert_eq!(r.recipients, [addr("a@plain.example")]);
            assert!(r.reason.contains("forbids"), "{}", r.reason);
        }
        d => panic!("{d:?}"),
    }
    // Never beside when-possible: clear.
    assert_eq!(
        plan(decide(&["a@plain.example", "bob@gateway.example"])).encrypt,
        EncryptDecision::Plain(NotEncrypted::PolicyNever)
    );
    // The default policy applies to unlisted domains.
    let strict_default =
        OutgoingRules::default().with_default_policy(EncryptionPolicy::AlwaysOrReject);
    assert!(matches!(
        strict_default.decide(
            &msg("alice@corp.example", &["q@unknown.example"], alice_auth()),
            &w.partners,
            &w.keys,
            w.now
        ),
        OutgoingDecision::Reject(_)
    ));
    assert_eq!(
        rules.policy_for(&dns("a.b.partner.example")),
        EncryptionPolicy::Always
    );
    assert_eq!(
        rules.policy_for(&dns("example")),
        EncryptionPolicy::WhenPossible
    );
}
