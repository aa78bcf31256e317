//! Validity across match kinds: valid exact, valid wildcard, invalid exact,
//! invalid wildcard, default; and the count of invalid certificates served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use mailtls_sni::{ResolverOptions, SniResolver};
use time::Duration;

const DAY: Duration = Duration::DAY;

/// Valid now.
fn valid() -> (Duration, Duration) {
    (-DAY, 30 * DAY)
}
/// Expired yesterday.
fn expired() -> (Duration, Duration) {
    (-60 * DAY, -DAY)
}
/// Starts tomorrow.
fn not_yet() -> (Duration, Duration) {
    (DAY, 60 * DAY)
}

/// A resolver with a default for `other.example.net`, an exact certificate
/// for `mail.example.com` and a wildcard `*.example.com`, with the given
/// validities; returns the label of what serves `mail.example.com` and
/// whether the served-invalid counter moved.
fn pick(exact: Option<(Duration, Duration)>, wild: Option<(Duration, Duration)>) -> (String, u64) {
    let resolver = SniResolver::new(ResolverOptions::default());
    let (f, t) = valid();
    let mut certs = vec![prepared(&resolver, "default", &["other.example.net"], f, t)];
    let mut labels = vec![("default", served_fp(&certs[0]))];
    if let Some((f, t)) = exact {
        certs.push(prepared(&resolver, "exact", &["mail.example.com"], f, t));
        labels.push(("exact", served_fp(certs.last().unwrap())));
    }
    if let Some((f, t)) = wild {
        certs.push(prepared(&resolver, "wild", &["*.example.com"], f, t));
        labels.push(("wild", served_fp(certs.last().unwrap())));
    }
    resolver.reload(certs).unwrap();
    let (_, fp) = served(&resolver, Some("mail.example.com")).unwrap();
    let label = labels.iter().find(|(_, p)| *p == fp).unwrap().0;
    (label.to_owned(), resolver.stats().served_invalid)
}

fn served_fp(p: &mailtls_sni::PreparedCertificate) -> [u8; 32] {
    p.info.sha256_fingerprint
}

#[test]
fn a_valid_wildcard_beats_an_expired_or_not_yet_valid_exact() {
    assert_eq!(pick(Some(expired()), Some(valid())), ("wild".into(), 0));
    assert_eq!(pick(Some(not_yet()), Some(valid())), ("wild".into(), 0));
}

#[test]
fn a_valid_exact_beats_any_wildcard() {
    assert_eq!(pick(Some(valid()), Some(valid())), ("exact".into(), 0));
    assert_eq!(pick(Some(valid()), Some(expired())), ("exact".into(), 0));
}

#[test]
fn among_invalid_ones_exact_beats_wildcard_and_both_beat_the_default() {
    assert_eq!(pick(Some(expired()), Some(expired())), ("exact".into(), 1));
    assert_eq!(pick(Some(not_yet()), Some(expired())), ("exact".into(), 1));
    assert_eq!(pick(None, Some(expired())), ("wild".into(), 1));
    assert_eq!(pick(Some(expired()), None), ("exact".into(), 1));
    assert_eq!(pick(None, None), ("default".into(), 0));
}

#[test]
fn a_valid_exact_among_several_for_one_name_still_wins() {
    // Two exact certificates for the name, one expired: the valid one, no
    // wildcard and no invalid count; the case-insensitive path agrees.
    let resolver = SniResolver::new(ResolverOptions::default());
    let (f, t) = expired();
    let old = prepared(&resolver, "old", &["mail.example.com"], f, t);
    let (f, t) = valid();
    let new = prepared(&resolver, "new", &["mail.example.com"], f, t);
    let wild = prepared(&resolver, "wild", &["*.example.com"], f, t);
    let want = new.info.sha256_fingerprint;
    resolver.reload(vec![old, wild, new]).unwrap();
    assert_eq!(served(&resolver, Some("mail.example.com")).unwrap().1, want);
    assert_eq!(
        served(&resolver, Some("MAIL.Example.com.")).unwrap().1,
        want
    );
    let stats = resolver.stats();
    assert_eq!((stats.exact_hits, stats.wildcard_hits), (2, 0));
    assert_eq!(stats.served_invalid, 0);
}

#[test]
fn the_upper_case_path_follows_the_same_order() {
    let resolver = SniResolver::new(ResolverOptions::default());
    let (f, t) = expired();
    let exact = prepared(&resolver, "exact", &["mail.example.com"], f, t);
    let (f, t) = valid();
    let wild = prepared(&resolver, "wild", &["*.example.com"], f, t);
    let want = wild.info.sha256_fingerprint;
    resolver.reload(vec![exact, wild]).unwrap();
    for name in ["mail.example.com", "Mail.Example.COM", "mail.example.com."] {
        assert_eq!(served(&resolver, Some(name)).unwrap().1, want, "{name}");
    }
    let stats = resolver.stats();
    assert_eq!(stats.wildcard_hits, 3);
    assert_eq!(stats.served_invalid, 0);
}

/// Waits (with a deadline) until the wall clock is past `t`.
fn wait_past(t: std::time::SystemTime) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::SystemTime::now() <= t {
        assert!(
            std::time::Instant::now() < deadline,
            "clock did not pass {t:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn an_exact_certificate_that_expires_yields_to_the_wildcard_on_revalidate() {
    let resolver = SniResolver::new(ResolverOptions::default());
    let exact = prepared(
        &resolver,
        "exact",
        &["mail.example.com"],
        -DAY,
        Duration::seconds(2),
    );
    let (f, t) = valid();
    let wild = prepared(&resolver, "wild", &["*.example.com"], f, t);
    let (exact_fp, wild_fp) = (exact.info.sha256_fingerprint, wild.info.sha256_fingerprint);
    let expires = exact.info.not_after;
    resolver.reload(vec![exact, wild]).unwrap();
    assert_eq!(
        served(&resolver, Some("mail.example.com")).unwrap().1,
        exact_fp
    );
    assert_eq!(resolver.validity_changes_at(), Some(expires));
    // Nothing to do before the boundary.
    assert_eq!(resolver.revalidate().unwrap(), None);
    let generation = resolver.generation();

    wait_past(expires + std::time::Duration::from_secs(1));
    assert_eq!(resolver.revalidate().unwrap(), Some(generation + 1));
    assert_eq!(
        served(&resolver, Some("mail.example.com")).unwrap().1,
        wild_fp
    );
    assert_eq!(resolver.stats().served_invalid, 0);
    assert_eq!(resolver.certificates().len(), 2);
}

#[cfg(feature = "watch")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_re_ranks_when_a_certificate_expires() {
    let tmp = private_tempdir();
    let dir = tmp.path().to_path_buf();
    let (cert, key) = with_validity(&["mail.example.com"], -DAY, Duration::seconds(2));
    std::fs::write(dir.join("exact.crt"), &cert).unwrap();
    std::fs::write(dir.join("exact.key"), &key).unwrap();
    let (f, t) = valid();
    let (cert, key) = with_validity(&["*.example.com"], f, t);
    std::fs::write(dir.join("wild.crt"), &cert).unwrap();
    std::fs::write(dir.join("wild.key"), &key).unwrap();
    let resolver = std::sync::Arc::new(SniResolver::new(ResolverOptions::default()));
    resolver.reload_from_dir(&dir).unwrap();
    assert_eq!(
        served(&resolver, Some("mail.example.com")).unwrap().0,
        "mail.example.com"
    );
    // No file changes and no polling: only the validity boundary can act.
    let _w = mailtls_sni::watch_dir(
        resolver.clone(),
        dir,
        mailtls_sni::WatchOptions::default().with_poll_interval(None),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while served(&resolver, Some("mail.example.com")).unwrap().0 != "*.example.com" {
        assert!(
            std::time::Instant::now() < deadline,
            "not re-ranked: {:?}",
            resolver.stats()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(resolver.stats().served_invalid, 0);
}
