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
