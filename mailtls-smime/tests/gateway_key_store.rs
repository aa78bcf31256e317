//! The gateway's own keys: PEM pairs in a directory, written 0600, loaded
//! back through mailtls-core, looked up by address and domain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway_common;

use std::os::unix::fs::PermissionsExt;

use gateway_common::{Spec, TestCa};
use mailtls_core::DnsName;
use mailtls_smime::gateway::{Address, KeyDirectory, KeyOwner, KeyStore, KeyStoreError};

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn private_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap()
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn add_write_reopen_lookup_remove() {
    let ca = TestCa::new();
    let tmp = private_tempdir();
    let dir = tmp.path().join("keys");
    let mut store = KeyStore::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);

    let alice = ca.issue(&Spec::email(&[
        "alice@corp.example",
        "a.smith@corp.example",
    ]));
    let alice_fp = store
        .add_user_key(
            alice.pem.as_bytes(),
            alice.key_pem.as_bytes(),
            "alice upload",
        )
        .unwrap();
    let bob = ca.issue(&Spec::rsa(&["bob@corp.example"]));
    store
        .add_user_key(bob.pem.as_bytes(), bob.key_pem.as_bytes(), "bob upload")
        .unwrap();
    let corp = DnsName::parse("corp.example").unwrap();
    let domain = ca.issue(&Spec::email(&["postmaster@corp.example"]));
    let domain_fp = store
        .add_domain_key(
            &corp,
            domain.pem.as_bytes(),
            domain.key_pem.as_bytes(),
            "domain",
        )
        .unwrap();

    // Files: keys 0600, certificates 0644.
    for k in store.list() {
        assert_eq!(mode(&k.path), 0o644, "{}", k.path.display());
        assert_eq!(mode(&k.path.with_extension("key")), 0o600);
    }

    let reopened = KeyStore::open(&dir).unwrap();
    let fps = |s: &KeyStore| {
        s.list()
            .map(|k| k.certificate.fingerprint())
            .collect::<Vec<_>>()
    };
    assert_eq!(fps(&store), fps(&reopened));
    assert_eq!(fps(&reopened).len(), 3);

    // Both of alice's addresses find her key; the domain key its domain.
    for a in ["alice@corp.example", "A.Smith@Corp.Example"] {
        let k = reopened.user_key(&addr(a)).unwrap();
        assert_eq!(k.fingerprint(), alice_fp);
        assert_eq!(k.owner, KeyOwner::User(addr(a)));
    }
    let d = reopened.domain_key(&corp).unwrap();
    assert_eq!(d.fingerprint(), domain_fp);
    assert!(reopened.user_key(&addr("carol@corp.example")).is_none());
    assert!(
        reopened
            .domain_key(&DnsName::parse("other.example").unwrap())
            .is_none()
    );
    // The private key loaded is the one written.
    let own = reopened.get(&alice_fp).unwrap();
    assert_eq!(own.credentials.info.sha256_fingerprint, alice_fp.0);

    assert!(matches!(
        store.add_user_key(alice.pem.as_bytes(), alice.key_pem.as_bytes(), "again"),
        Err(KeyStoreError::Duplicate { .. })
    ));
    let removed = store.remove(&alice_fp).unwrap();
    assert!(!removed.path.exists());
    assert!(!removed.path.with_extension("key").exists());
    assert!(store.user_key(&addr("alice@corp.example")).is_none());
    assert_eq!(KeyStore::open(&dir).unwrap().list().count(), 2);
}

#[test]
fn newest_signing_key_wins_and_old_keys_stay_for_decryption() {
    let ca = TestCa::new();
    let tmp = private_tempdir();
    let mut store = KeyStore::open(tmp.path()).unwrap();
    let old = ca.issue(&Spec {
        not_before_days: -400,
        not_after_days: -10,
        ..Spec::email(&["dave@corp.example"])
    });
    let new = ca.issue(&Spec {
        not_before_days: -5,
        ..Spec::email(&["dave@corp.example"])
    });
    let old_fp = store
        .add_user_key(old.pem.as_bytes(), old.key_pem.as_bytes(), "old")
        .unwrap();
    let new_fp = store
        .add_user_key(new.pem.as_bytes(), new.key_pem.as_bytes(), "new")
        .unwrap();
    let dave = addr("dave@corp.example");
    assert_eq!(store.user_key(&dave).unwrap().fingerprint(), new_fp);
    let all: Vec<_> = store
        .keys_for_address(&dave)
        .iter()
        .map(|k| k.certificate.fingerprint())
        .collect();
    assert_eq!(all, [new_fp, old_fp]);
}

#[test]
fn refuses_broken_directories_naming_the_file() {
    let ca = TestCa::new();
    let tmp = private_tempdir();
    let dir = tmp.path();
    let mut store = KeyStore::open(dir).unwrap();
    let e = ca.issue(&Spec::email(&["erin@corp.example"]));
    let fp = store
        .add_user_key(e.pem.as_bytes(), e.key_pem.as_bytes(), "erin")
        .unwrap();
    let crt = store.get(&fp).unwrap().path.clone();
    let key = crt.with_extension("key");

    // A key file others can read.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = KeyStore::open(dir).unwrap_err();
    assert!(
        matches!(err, KeyStoreError::LooseKeyFile { mode: 0o644, .. }),
        "{err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A certificate without its key.
    let lone = dir.join("users/lone.crt");
    std::fs::write(&lone, &e.pem).unwrap();
    let err = KeyStore::open(dir).unwrap_err();
    assert!(matches!(err, KeyStoreError::Unpaired { .. }), "{err}");
    assert!(err.to_string().contains("lone.key"), "{err}");
    std::fs::remove_file(&lone).unwrap();

    // A key that does not belong to its certificate.
    let other = ca.issue(&Spec::email(&["frank@corp.example"]));
    let wrong = dir.join("users/wrong.key");
    std::fs::write(dir.join("users/wrong.crt"), &other.pem).unwrap();
    std::fs::write(&wrong, &e.key_pem).unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = KeyStore::open(dir).unwrap_err();
    assert!(matches!(err, KeyStoreError::Load(_)), "{err}");
    assert!(err.to_string().contains("wrong.crt"), "{err}");
    std::fs::remove_file(dir.join("users/wrong.crt")).unwrap();
    std::fs::remove_file(&wrong).unwrap();

    // A domain key whose file name is no domain.
    let bad = dir.join("domains/not a domain!.crt");
    std::fs::write(&bad, &e.pem).unwrap();
    let bad_key = bad.with_extension("key");
    std::fs::write(&bad_key, &e.key_pem).unwrap();
    std::fs::set_permissions(&bad_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = KeyStore::open(dir).unwrap_err();
    assert!(
        matches!(err, KeyStoreError::BadDomainFileName { .. }),
        "{err}"
    );
    std::fs::remove_file(&bad).unwrap();
    std::fs::remove_file(&bad_key).unwrap();

    // A user certificate without an address.
    let nameless = ca.issue(&Spec::email(&[]));
    assert!(matches!(
        store.add_user_key(nameless.pem.as_bytes(), nameless.key_pem.as_bytes(), "n"),
        Err(KeyStoreError::NoAddress { .. })
    ));
    // Mismatched upload.
    assert!(matches!(
        store.add_user_key(other.pem.as_bytes(), e.key_pem.as_bytes(), "mismatch"),
        Err(KeyStoreError::Load(_))
    ));
    // Everything cleaned up: it opens again.
    assert_eq!(KeyStore::open(dir).unwrap().list().count(), 1);

    // A directory others can enter is refused.
    let loose = tmp.path().join("loose");
    std::fs::create_dir(&loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(
        KeyStore::open(&loose),
        Err(KeyStoreError::Io { .. })
    ));
}
