//! IDN under wildcards: a name whose first label is an A-label (`xn--…`)
//! matches `*.` like any other label, in any letter case; an invalid A-label
//! or a name two levels down does not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use mailtls_core::KeyType;
use mailtls_sni::{ResolverOptions, SniResolver};

fn resolver() -> (std::sync::Arc<SniResolver>, tempfile::TempDir) {
    let ca = ca();
    let tmp = private_tempdir();
    write(
        &issue(&ca, "mail.example.net", &[], KeyType::EcdsaP256),
        tmp.path(),
        "default",
    );
    write(
        &issue(&ca, "example.com", &["*.example.com"], KeyType::EcdsaP256),
        tmp.path(),
        "wild",
    );
    let r = SniResolver::new(ResolverOptions::default());
    r.reload_from_dir(tmp.path()).unwrap();
    (std::sync::Arc::new(r), tmp)
}

#[test]
fn a_labels_match_a_wildcard_in_any_case() {
    let (r, _tmp) = resolver();
    for name in [
        "xn--bcher-kva.example.com",
        "XN--BCHER-KVA.EXAMPLE.COM",
        "Xn--Bcher-Kva.Example.Com.",
        "bücher.example.com",
        "xn--caf-dma.example.com",
    ] {
        assert_eq!(
            served(&r, Some(name)).unwrap().0,
            "example.com",
            "{name} should match *.example.com"
        );
    }
    let stats = r.stats();
    assert_eq!(stats.wildcard_hits, 5, "{stats:?}");
    assert_eq!(stats.default_no_match, 0, "{stats:?}");
}

#[test]
fn invalid_a_labels_and_deeper_names_do_not() {
    let (r, _tmp) = resolver();
    for name in [
        "xn--.example.com",
        "xn--zz.example.com",
        "xn--bcher-kva.sub.example.com",
        "xn---bcher.example.com",
    ] {
        assert_eq!(
            served(&r, Some(name)).unwrap().0,
            "mail.example.net",
            "{name} must get the default"
        );
    }
    assert_eq!(r.stats().wildcard_hits, 0);
}

#[tokio::test]
async fn a_rustls_client_asking_for_an_a_label_gets_the_wildcard() {
    let (r, _tmp) = resolver();
    let server = serve(r.clone(), vec![]).await;
    let cfg = client_config(&all_schemes(), vec![]);
    let leaf = handshake(server.addr, cfg, Some("xn--bcher-kva.example.com"))
        .await
        .unwrap();
    assert_eq!(leaf.dns_names[0], "example.com");
    assert_eq!(r.stats().wildcard_hits, 1);
}
