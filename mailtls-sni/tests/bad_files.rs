//! A bad file never freezes the directory: every good file is served, every
//! bad one is named (in the report, the stats and the error), and only a
//! directory with nothing usable, or without the configured default name,
//! refuses. All-or-nothing stays available. CA certificates are skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;
use mailtls_core::{DnsName, KeyType};
use mailtls_sni::index::IndexError;
use mailtls_sni::{ReloadError, ReloadPolicy, ResolverOptions, SniResolver};

/// Writes three different kinds of broken file into `dir`: a certificate
/// without a key, text that is not PEM, and a certificate with someone
/// else's key. Returns their file names, sorted.
fn write_bad_files(dir: &Path) -> Vec<&'static str> {
    let ca = ca();
    std::fs::write(
        dir.join("lonely.crt"),
        issue(&ca, "lonely.example.com", &[], KeyType::EcdsaP256).cert_pem,
    )
    .unwrap();
    std::fs::write(
        dir.join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\nthis is not base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mine = issue(&ca, "mismatch.example.com", &[], KeyType::EcdsaP256);
    let other = issue(&ca, "other.example.com", &[], KeyType::EcdsaP256);
    std::fs::write(dir.join("mismatch.crt"), mine.chain_pem()).unwrap();
    std::fs::write(dir.join("mismatch.key"), other.key_pem()).unwrap();
    vec!["garbage.pem", "lonely.crt", "mismatch.crt"]
}

fn file_names(bad: &[mailtls_sni::BadFile]) -> Vec<String> {
    let mut names: Vec<String> = bad
        .iter()
        .map(|b| {
            Path::new(&b.file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn mail_options() -> ResolverOptions {
    ResolverOptions::default().with_default_name(DnsName::parse("mail.example.com").unwrap())
}

#[test]
fn good_files_are_served_and_every_bad_one_is_named() {
    let ca = ca();
    let tmp = private_tempdir();
    let dir = tmp.path();
    write(
        &issue(&ca, "mail.example.com", &[], KeyType::EcdsaP256),
        dir,
        "mail",
    );
    write(
        &issue(&ca, "imap.example.com", &[], KeyType::EcdsaP256),
        dir,
        "imap",
    );
    let bad = write_bad_files(dir);

    // Start-up: the good files load although three bad ones lie beside them.
    let resolver = SniResolver::new(mail_options());
    let report = resolver.reload_from_dir(dir).unwrap();
    assert_eq!(report.certificates, 2, "{report:?}");
    assert_eq!(file_names(&report.bad_files), bad, "{report:?}");
    let mismatch = report
        .bad_files
        .iter()
        .find(|b| b.file.ends_with("mismatch.crt"))
        .unwrap();
    assert!(mismatch.reason.contains("does not match"), "{mismatch}");
    assert!(report.bad_files.iter().all(|b| !b.reason.is_empty()));
    let stats = resolver.stats();
    assert_eq!(stats.bad_file_count, 3, "{stats:?}");
    assert_eq!(file_names(&stats.bad_files), bad);
    assert_eq!(stats.last_reload_error, None);
    assert_eq!(stats.failed_reloads, 0);
    assert_eq!(
        served(&resolver, Some("imap.example.com")).unwrap().0,
        "imap.example.com"
    );
    assert_eq!(served(&resolver, None).unwrap().0, "mail.example.com");

    // A renewal and a new name dropped in beside the bad files are served
    // on the next reload.
    let renewed = issue(&ca, "imap.example.com", &[], KeyType::EcdsaP256);
    write(&renewed, dir, "imap");
    write(
        &issue(&ca, "new.example.com", &[], KeyType::EcdsaP256),
        dir,
        "new",
    );
    let report = resolver.reload_from_dir(dir).unwrap();
    assert_eq!(report.generation, 2);
    assert_eq!(report.certificates, 3);
    assert_eq!(file_names(&report.bad_files), bad);
    assert_eq!(
        served(&resolver, Some("new.example.com")).unwrap().0,
        "new.example.com"
    );
    let fp = renewed
        .to_certificate_with_key()
        .unwrap()
        .info
        .sha256_fingerprint;
    assert_eq!(served(&resolver, Some("imap.example.com")).unwrap().1, fp);

    // Once the bad files are gone, the stats say so.
    for f in ["lonely.crt", "garbage.pem", "mismatch.crt", "mismatch.key"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let report = resolver.reload_from_dir(dir).unwrap();
    assert!(report.bad_files.is_empty(), "{report:?}");
    let stats = resolver.stats();
    assert_eq!(stats.bad_file_count, 0);
    assert!(stats.bad_files.is_empty());
}

#[test]
fn all_or_nothing_refuses_and_names_every_bad_file() {
    let ca = ca();
    let tmp = private_tempdir();
    let dir = tmp.path();
    write(
        &issue(&ca, "mail.example.com", &[], KeyType::EcdsaP256),
        dir,
        "mail",
    );
    let resolver = SniResolver::new(mail_options().with_reload_policy(ReloadPolicy::AllOrNothing));
    resolver.reload_from_dir(dir).unwrap();
    write(
        &issue(&ca, "new.example.com", &[], KeyType::EcdsaP256),
        dir,
        "new",
    );
    let bad = write_bad_files(dir);

    let err = resolver.reload_from_dir(dir).unwrap_err();
    let ReloadError::BadFiles(files) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(file_names(files), bad);
    let text = err.to_string();
    for f in &bad {
        assert!(text.contains(f), "{f} not named in: {text}");
    }
    // Nothing changed: the new certificate is not served.
    assert_eq!(resolver.generation(), 1);
    assert_ne!(
        served(&resolver, Some("new.example.com")).unwrap().0,
        "new.example.com"
    );
    let stats = resolver.stats();
    assert_eq!(stats.failed_reloads, 1);
    assert_eq!(stats.bad_file_count, 3);
    let last = stats.last_reload_error.unwrap();
    for f in &bad {
        assert!(last.contains(f), "{f} not named in: {last}");
    }
}

#[test]
fn a_directory_with_nothing_usable_refuses() {
    let tmp = private_tempdir();
    let bad = write_bad_files(tmp.path());
    let resolver = SniResolver::new(ResolverOptions::default());
    let err = resolver.reload_from_dir(tmp.path()).unwrap_err();
    let ReloadError::BadFiles(files) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(file_names(files), bad);
    assert_eq!(resolver.generation(), 0);
    assert!(served(&resolver, None).is_none());
    assert_eq!(resolver.stats().bad_file_count, 3);
}

#[test]
fn the_default_name_must_still_load() {
    let ca = ca();
    let tmp = private_tempdir();
    let dir = tmp.path();
    write(
        &issue(&ca, "imap.example.com", &[], KeyType::EcdsaP256),
        dir,
        "imap",
    );
    // The configured default's certificate is the broken one.
    std::fs::write(
        dir.join("mail.crt"),
        issue(&ca, "mail.example.com", &[], KeyType::EcdsaP256).cert_pem,
    )
    .unwrap();
    let resolver = SniResolver::new(mail_options());
    let err = resolver.reload_from_dir(dir).unwrap_err();
    assert!(
        matches!(err, ReloadError::Index(IndexError::DefaultNotFound(_))),
        "{err:?}"
    );
    let stats = resolver.stats();
    assert_eq!(file_names(&stats.bad_files), ["mail.crt"], "{stats:?}");
    assert_eq!(resolver.generation(), 0);
}

#[test]
fn ca_certificates_are_skipped_with_a_note() {
    let ca = ca();
    let tmp = private_tempdir();
    let dir = tmp.path();
    // A CA with its key, and a CA certificate alone (a chain file).
    ca.write_files(dir, "ca").unwrap();
    let other = mailtls_core::CertificateAuthority::new_test_ca(&Default::default()).unwrap();
    std::fs::write(dir.join("intermediate.pem"), &other.certificate().cert_pem).unwrap();
    let made = issue(&ca, "mail.example.com", &[], KeyType::EcdsaP256);
    write(&made, dir, "mail");

    let resolver = SniResolver::new(ResolverOptions::default());
    let report = resolver.reload_from_dir(dir).unwrap();
    assert_eq!(report.certificates, 1, "{report:?}");
    assert!(report.bad_files.is_empty(), "{report:?}");
    for f in ["ca.crt", "intermediate.pem"] {
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains(f) && w.contains("CA certificate")),
            "no note for {f}: {:?}",
            report.warnings
        );
    }
    // Its key is the CA's, not an orphan.
    assert!(
        !report.warnings.iter().any(|w| w.contains("ca.key")),
        "{:?}",
        report.warnings
    );
    // The CA is never served, not even as the default.
    let fp = made
        .to_certificate_with_key()
        .unwrap()
        .info
        .sha256_fingerprint;
    assert_eq!(served(&resolver, None).unwrap().1, fp);
    assert_eq!(resolver.certificates().len(), 1);

    // A directory holding only a CA has nothing to serve.
    let only_ca = private_tempdir();
    ca.write_files(only_ca.path(), "ca").unwrap();
    let err = SniResolver::new(ResolverOptions::default())
        .reload_from_dir(only_ca.path())
        .unwrap_err();
    assert!(matches!(err, ReloadError::NoCertificates), "{err:?}");
}
