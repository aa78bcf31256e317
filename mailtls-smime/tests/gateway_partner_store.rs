//! The partner certificate store: upload, lookup by address then domain,
//! disable/enable/delete, harvest with capabilities and approval, and
//! persistence in a data directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway_common;

use std::time::{Duration, SystemTime};

use gateway_common::{Spec, TestCa};
use mailtls_core::{CertificateDer, DnsName};
use mailtls_smime::gateway::{
    Address, Binding, CertSource, FileStorage, Harvest, HarvestMode, HarvestOutcome, MatchedBy,
    MemoryStorage, PartnerStore, SmimeCertificate, SnapshotStorage, StorageError, StorageFuture,
    StoreError, Unusable,
};

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

async fn memory_store(mode: HarvestMode) -> PartnerStore {
    PartnerStore::open(Box::new(MemoryStorage::default()), mode)
        .await
        .unwrap()
}

fn smime(ca: &TestCa, spec: &Spec) -> SmimeCertificate {
    SmimeCertificate::from_der(CertificateDer::from(ca.issue(spec).der), "test").unwrap()
}

fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap()
}

#[tokio::test]
async fn upload_pem_and_der_then_lookup_address_before_domain() {
    let ca = TestCa::new();
    let now = SystemTime::now();
    let mut store = memory_store(HarvestMode::Automatic).await;
    let alice = ca.issue(&Spec::email(&["alice@partner.example"]));
    let gateway = ca.issue(&Spec::rsa(&["gateway@partner.example"]));
    // PEM with the CA pasted along: the CA is skipped.
    let pem = format!("{}{}", alice.pem, ca.pem);
    let added = store
        .upload(pem.as_bytes(), "alice.pem", Binding::Addresses, now)
        .await
        .unwrap();
    assert_eq!(added.len(), 1);
    let domain = DnsName::parse("Partner.Example").unwrap();
    store
        .upload(&gateway.der, "gw.der", Binding::Domain(domain.clone()), now)
        .await
        .unwrap();
    assert_eq!(store.list().count(), 2);

    let found = store.lookup(&addr("ALICE@partner.example"), now).unwrap();
    assert_eq!(found.matched_by, MatchedBy::Address);
    assert_eq!(found.entry.certificate().fingerprint(), added[0]);
    assert_eq!(found.entry.source(), CertSource::Uploaded);

    // Anyone else at the domain gets the domain certificate.
    let found = store.lookup(&addr("bob@partner.example"), now).unwrap();
    assert_eq!(found.matched_by, MatchedBy::Domain);
    assert_eq!(found.entry.binding(), &Binding::Domain(domain.clone()));
    // The domain certificate is keyed by the domain only, not by its own address
    // as an address entry, and no other domain matches.
    assert!(
        store
            .for_address(&addr("gateway@partner.example"))
            .is_empty()
    );
    assert_eq!(store.for_domain(&domain).len(), 1);
    let gw_cert = store.for_domain(&domain)[0].certificate().clone();
    assert!(store.is_domain_certificate_for(&gw_cert, &domain));
    assert!(!store.is_domain_certificate_for(&gw_cert, &DnsName::parse("other.example").unwrap()));
    let alice_cert = store.get(&added[0]).unwrap().certificate().clone();
    assert!(!store.is_domain_certificate_for(&alice_cert, &domain));
    let none = store
        .lookup(&addr("bob@sub.partner.example"), now)
        .unwrap_err();
    assert!(none.passed_over.is_empty());

    // Disabling alice's falls back to the domain certificate, and the reason shows.
    store.disable(&added[0]).await.unwrap();
    let found = store.lookup(&addr("alice@partner.example"), now).unwrap();
    assert_eq!(found.matched_by, MatchedBy::Domain);
    store.enable(&added[0]).await.unwrap();
    assert_eq!(
        store
            .lookup(&addr("alice@partner.example"), now)
            .unwrap()
            .matched_by,
        MatchedBy::Address
    );

    // Delete the domain certificate and disable alice: nothing left, both reasons given.
    let gw_fp = store.for_domain(&domain)[0].certificate().fingerprint();
    store.delete(&gw_fp).await.unwrap();
    store.disable(&added[0]).await.unwrap();
    let none = store
        .lookup(&addr("alice@partner.example"), now)
        .unwrap_err();
    assert_eq!(none.passed_over, vec![(added[0], Unusable::Disabled)]);
    assert!(matches!(
        store.delete(&gw_fp).await,
        Err(StoreError::Unknown { .. })
    ));
}

#[tokio::test]
async fn lookup_skips_expired_and_prefers_newest() {
    let ca = TestCa::new();
    let now = SystemTime::now();
    let mut store = memory_store(HarvestMode::Automatic).await;
    let older = ca.issue(&Spec {
        not_before_days: -100,
        ..Spec::email(&["carol@partner.example"])
    });
    let newer = ca.issue(&Spec {
        not_before_days: -2,
        ..Spec::email(&["carol@partner.example"])
    });
    let old_fp = store
        .upload(&older.der, "old", Binding::Addresses, now)
        .await
        .unwrap()[0];
    let new_fp = store
        .upload(&newer.der, "new", Binding::Addresses, now)
        .await
        .unwrap()[0];
    let carol = addr("carol@partner.example");
    assert_eq!(
        store
            .lookup(&carol, now)
            .unwrap()
            .entry
            .certificate()
            .fingerprint(),
        new_fp
    );
    // Both run 365 days from now: a day before the end the newer still wins.
    let later = now + Duration::from_secs(364 * 86_400);
    assert_eq!(
        store
            .lookup(&carol, later)
            .unwrap()
            .entry
            .certificate()
            .fingerprint(),
        new_fp
    );
    store.disable(&new_fp).await.unwrap();
    let much_later = now + Duration::from_secs(366 * 86_400);
    let none = store.lookup(&carol, much_later).unwrap_err();
    assert!(none.passed_over.contains(&(old_fp, Unusable::Expired)));
    assert!(none.passed_over.contains(&(new_fp, Unusable::Disabled)));
}

#[tokio::test]
async fn upload_refuses_unusable_duplicate_and_addressless_all_or_nothing() {
    let ca = TestCa::new();
    let now = SystemTime::now();
    let mut store = memory_store(HarvestMode::Automatic).await;
    let good = ca.issue(&Spec::email(&["d@partner.example"]));
    let server = ca.issue(&Spec {
        eku: Some(vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth]),
        ..Spec::email(&["e@partner.example"])
    });
    let both = format!("{}{}", good.pem, server.pem);
    let err = store
        .upload(both.as_bytes(), "both", Binding::Addresses, now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Unusable {
                reason: Unusable::NoEmailProtection,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.list().count(), 0, "all or nothing");

    store
        .upload(&good.der, "good", Binding::Addresses, now)
        .await
        .unwrap();
    assert!(matches!(
        store
            .upload(good.pem.as_bytes(), "again", Binding::Addresses, now)
            .await,
        Err(StoreError::Duplicate { .. })
    ));
    let nameless = ca.issue(&Spec::email(&[]));
    assert!(matches!(
        store
            .upload(&nameless.der, "nameless", Binding::Addresses, now)
            .await,
        Err(StoreError::NoAddress { .. })
    ));
    // ...but it can serve a whole domain.
    store
        .upload(
            &nameless.der,
            "nameless",
            Binding::Domain(DnsName::parse("partner.example").unwrap()),
            now,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .upload(ca.pem.as_bytes(), "ca", Binding::Addresses, now)
            .await,
        Err(StoreError::NoEndEntity { .. })
    ));
    let err = store
        .upload(
            b"-----BEGIN CERTIFICATE-----\nnot base64\n",
            "bad.pem",
            Binding::Addresses,
            now,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad.pem"), "{err}");
}

#[tokio::test]
async fn harvest_adds_then_updates_capabilities_only_when_newer() {
    use mailtls_smime::ContentEncryption::*;
    let ca = TestCa::new();
    let now = SystemTime::now();
    let t0 = now - Duration::from_secs(3600);
    let mut store = memory_store(HarvestMode::Automatic).await;
    let cert = smime(&ca, &Spec::email(&["frank@partner.example"]));
    let fp = cert.fingerprint();
    let harvest = |algs: Vec<mailtls_smime::ContentEncryption>, t: SystemTime| Harvest {
        certificate: cert.clone(),
        capabilities: caps(&algs),
        signing_time: t,
    };
    assert_eq!(
        store
            .harvest(harvest(vec![Aes256Cbc], t0), now)
            .await
            .unwrap(),
        HarvestOutcome::Added
    );
    let entry = store.get(&fp).unwrap();
    assert_eq!(entry.source(), CertSource::Harvested);
    assert_eq!(entry.capabilities().unwrap().algorithms, caps(&[Aes256Cbc]));

    // An older (replayed) signature does not roll capabilities back; the same time neither.
    let older = t0 - Duration::from_secs(60);
    assert_eq!(
        store
            .harvest(harvest(vec![Aes128Cbc], older), now)
            .await
            .unwrap(),
        HarvestOutcome::Unchanged
    );
    assert_eq!(
        store
            .harvest(harvest(vec![Aes128Cbc], t0), now)
            .await
            .unwrap(),
        HarvestOutcome::Unchanged
    );
    assert_eq!(
        store.get(&fp).unwrap().capabilities().unwrap().algorithms,
        caps(&[Aes256Cbc])
    );
    // A newer one does.
    let t1 = t0 + Duration::from_secs(60);
    assert_eq!(
        store
            .harvest(harvest(vec![Aes256Gcm, Aes256Cbc], t1), now)
            .await
            .unwrap(),
        HarvestOutcome::CapabilitiesUpdated
    );
    let got = store.get(&fp).unwrap().capabilities().unwrap().clone();
    assert_eq!(got.algorithms, caps(&[Aes256Gcm, Aes256Cbc]));
    assert_eq!(got.signing_time, t1);

    // A disabled certificate stays disabled when harvested again.
    store.disable(&fp).await.unwrap();
    let t2 = t1 + Duration::from_secs(60);
    store
        .harvest(harvest(vec![Aes128Gcm], t2), now)
        .await
        .unwrap();
    assert!(!store.get(&fp).unwrap().is_enabled());

    // Certificates that cannot be used to encrypt are not harvested.
    let sign_only = smime(
        &ca,
        &Spec {
            key_usage: Some(vec![rcgen::KeyUsagePurpose::DigitalSignature]),
            ..Spec::email(&["grace@partner.example"])
        },
    );
    let out = store
        .harvest(
            Harvest {
                certificate: sign_only,
                capabilities: caps(&[]),
                signing_time: now,
            },
            now,
        )
        .await
        .unwrap();
    assert!(
        matches!(out, HarvestOutcome::NotUsable(Unusable::KeyUsage { .. })),
        "{out:?}"
    );
    let nameless = smime(&ca, &Spec::email(&[]));
    let out = store
        .harvest(
            Harvest {
                certificate: nameless,
                capabilities: caps(&[]),
                signing_time: now,
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(out, HarvestOutcome::NoAddress);
    assert_eq!(store.list().count(), 1);
}

#[tokio::test]
async fn manual_approval_queue() {
    use mailtls_smime::ContentEncryption::*;
    let ca = TestCa::new();
    let now = SystemTime::now();
    let mut store = memory_store(HarvestMode::ManualApproval).await;
    let a = smime(&ca, &Spec::email(&["heidi@partner.example"]));
    let b = smime(&ca, &Spec::email(&["ivan@partner.example"]));
    let t0 = now - Duration::from_secs(600);
    for c in [&a, &b] {
        let out = store
            .harvest(
                Harvest {
                    certificate: c.clone(),
                    capabilities: caps(&[Aes128Cbc]),
                    signing_time: t0,
                },
                now,
            )
            .await
            .unwrap();
        assert_eq!(out, HarvestOutcome::Queued);
    }
    assert_eq!(store.list().count(), 0);
    assert!(store.lookup(&addr("heidi@partner.example"), now).is_err());
    // A newer signature refreshes the queued data; an older one does not.
    let t1 = t0 + Duration::from_secs(1);
    let refresh = Harvest {
        certificate: a.clone(),
        capabilities: caps(&[Aes256Gcm]),
        signing_time: t1,
    };
    assert_eq!(
        store.harvest(refresh, now).await.unwrap(),
        HarvestOutcome::Queued
    );
    let stale = Harvest {
        certificate: a.clone(),
        capabilities: caps(&[Aes128Cbc]),
        signing_time: t0,
    };
    assert_eq!(
        store.harvest(stale, now).await.unwrap(),
        HarvestOutcome::Unchanged
    );
    assert_eq!(store.pending().count(), 2);

    store.approve(&a.fingerprint(), now).await.unwrap();
    store.reject(&b.fingerprint()).await.unwrap();
    assert_eq!(store.pending().count(), 0);
    let found = store.lookup(&addr("heidi@partner.example"), now).unwrap();
    assert_eq!(
        found.entry.capabilities().unwrap().algorithms,
        caps(&[Aes256Gcm])
    );
    assert!(store.lookup(&addr("ivan@partner.example"), now).is_err());
    assert!(matches!(
        store.approve(&b.fingerprint(), now).await,
        Err(StoreError::NotPending { .. })
    ));
    assert!(matches!(
        store.reject(&a.fingerprint()).await,
        Err(StoreError::NotPending { .. })
    ));

    // Capability updates for an approved certificate need no approval.
    let t2 = t1 + Duration::from_secs(1);
    let update = Harvest {
        certificate: a.clone(),
        capabilities: caps(&[Aes128Gcm]),
        signing_time: t2,
    };
    assert_eq!(
        store.harvest(update, now).await.unwrap(),
        HarvestOutcome::CapabilitiesUpdated
    );
}

#[tokio::test]
async fn reopened_store_has_the_same_contents() {
    use mailtls_smime::ContentEncryption::*;
    let ca = TestCa::new();
    let now = SystemTime::now();
    let dir = private_tempdir();
    let data = dir.path().join("partners");
    let open = || async {
        PartnerStore::open(
            Box::new(FileStorage::in_dir(&data, "partners.json").unwrap()),
            HarvestMode::ManualApproval,
        )
        .await
        .unwrap()
    };
    let mut store = open().await;
    let up = ca.issue(&Spec::rsa(&["judy@partner.example"]));
    let up_fp = store
        .upload(&up.der, "judy", Binding::Addresses, now)
        .await
        .unwrap()[0];
    let dom = ca.issue(&Spec::email(&["gw@other.example"]));
    let dom_fp = store
        .upload(
            &dom.der,
            "gw",
            Binding::Domain(DnsName::parse("other.example").unwrap()),
            now,
        )
        .await
        .unwrap()[0];
    store.disable(&dom_fp).await.unwrap();
    let queued = smime(&ca, &Spec::email(&["mallory@partner.example"]));
    store
        .harvest(
            Harvest {
                certificate: queued.clone(),
                capabilities: mailtls_smime::SmimeCapabilities::new(vec![
                    Aes256Gcm.oid(),
                    // An OID this crate has no name for survives the snapshot.
                    const_oid::ObjectIdentifier::new_unwrap("1.2.3.4"),
                ]),
                signing_time: now,
            },
            now,
        )
        .await
        .unwrap();
    store
        .harvest(
            Harvest {
                certificate: SmimeCertificate::from_der(CertificateDer::from(up.der.clone()), "x")
                    .unwrap(),
                capabilities: caps(&[Aes128Cbc]),
                signing_time: now,
            },
            now,
        )
        .await
        .unwrap();

    let reopened = open().await;
    let before: Vec<_> = store.list().cloned().collect();
    let after: Vec<_> = reopened.list().cloned().collect();
    assert_eq!(before, after);
    assert_eq!(after.len(), 2);
    let before_p: Vec<_> = store.pending().cloned().collect();
    let after_p: Vec<_> = reopened.pending().cloned().collect();
    assert_eq!(before_p, after_p);
    assert_eq!(after_p.len(), 1);
    assert!(!reopened.get(&dom_fp).unwrap().is_enabled());
    assert_eq!(
        reopened
            .get(&up_fp)
            .unwrap()
            .capabilities()
            .unwrap()
            .algorithms,
        caps(&[Aes128Cbc])
    );
    assert!(reopened.lookup(&addr("judy@partner.example"), now).is_ok());

    // The file is private and no temporary file is left behind.
    use std::os::unix::fs::PermissionsExt;
    let file = data.join("partners.json");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let names: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["partners.json"]);

    // A corrupt snapshot is a typed error naming the file, not an empty store.
    std::fs::write(
        &file,
        b"{\"version\":1,\"entries\":[{\"certificate\":\"AAAA\"",
    )
    .unwrap();
    let err = PartnerStore::open(
        Box::new(FileStorage::in_dir(&data, "partners.json").unwrap()),
        HarvestMode::Automatic,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("partners.json"), "{err}");
}

/// A backend whose writes fail: the store must keep its old contents.
struct BrokenStorage;

impl SnapshotStorage for BrokenStorage {
    fn load(&self) -> StorageFuture<'_, Option<Vec<u8>>> {
        Box::pin(async { Ok(None) })
    }
    fn save(&self, _: Vec<u8>) -> StorageFuture<'_, ()> {
        Box::pin(async {
            Err(StorageError {
                location: "broken".into(),
                source: std::io::Error::other("disk full"),
            })
        })
    }
    fn describe(&self) -> String {
        "broken".into()
    }
}

#[tokio::test]
async fn failed_save_changes_nothing() {
    let ca = TestCa::new();
    let now = SystemTime::now();
    let mut store = PartnerStore::open(Box::new(BrokenStorage), HarvestMode::Automatic)
        .await
        .unwrap();
    let c = ca.issue(&Spec::email(&["k@partner.example"]));
    let err = store
        .upload(&c.der, "k", Binding::Addresses, now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Storage(_)), "{err}");
    assert_eq!(store.list().count(), 0);
    assert!(store.lookup(&addr("k@partner.example"), now).is_err());
}

/// Capabilities naming these algorithms, in this order.
fn caps(algs: &[mailtls_smime::ContentEncryption]) -> mailtls_smime::SmimeCapabilities {
    mailtls_smime::SmimeCapabilities::new(algs.iter().map(|a| a.oid()).collect())
}
