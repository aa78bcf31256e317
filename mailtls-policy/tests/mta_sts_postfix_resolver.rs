//! Differential check: postfix-mta-sts-resolver (PyPI) fetches and parses
//! the same policies from the same loopback HTTPS host as `MtaSts`; the
//! allowed MX sets must agree, and every known disagreement is asserted
//! here with the reason (RFC section or policy note).
//!
//! The corpus covers every MTA-STS rule of issue 14 (record selection,
//! case-sensitive keys, lenient noise, the strict grammar, single-label
//! patterns). postfix-mta-sts-resolver reads neither TLS-RPT records nor
//! TLSA records, so the TLS-RPT and DANE rules have no counterpart here;
//! their tests are in `tlsrpt::record`, `dane_verify` and `plan_decide`.
//!
//! Needs `pip install postfix-mta-sts-resolver`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod mta_sts_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mailtls_core::DnsName;
use mailtls_policy::dns::StaticResolver;
use mailtls_policy::mta_sts::{FetcherConfig, MtaSts, PolicyCache, PolicyFetcher, PolicyOutcome};
use mta_sts_common::{PolicyHost, Reply, point_at_loopback};

const BASE: &str =
    "version: STSv1\nmode: enforce\nmx: mx1.example.net\nmx: *.mx.example.net\nmax_age: 86400\n";

fn corpus() -> Vec<(&'static str, Reply)> {
    let mut big = BASE.to_owned();
    big.push('#');
    big.push_str(&"x".repeat(64 * 1024 + 1 - big.len()));
    vec![
        // RFC 8461 §3.2 example.
        (
            "rfc.example",
            Reply::policy(
                "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
            ),
        ),
        ("lf.example", Reply::policy(BASE)),
        (
            "mixed.example",
            Reply::policy(
                "version: STSv1\r\nmode: testing\nmx: mx1.example.net\r\nmax_age: 86400\n",
            ),
        ),
        (
            "none.example",
            Reply::policy("version: STSv1\nmode: none\nmax_age: 86400\n"),
        ),
        (
            "nmx.example",
            Reply::policy("version: STSv1\nmode: enforce\nnmx: mx1.example.net\nmax_age: 86400\n"),
        ),
        (
            "nocolon.example",
            Reply::policy(
                "version: STSv1\nmode: enforce\nmx mx.evil.example\nmx: mx1.example.net\nmax_age: 86400\n",
            ),
        ),
        (
            "repeated.example",
            Reply::policy(
                "version: STSv1\nmode: enforce\nmode: none\nmx: mx1.example.net\nmax_age: 86400\n",
            ),
        ),
        (
            "ipmx.example",
            Reply::policy(
                "version: STSv1\nmode: enforce\nmx: 192.0.2.1\nmx: mx1.example.net\nmax_age: 86400\n",
            ),
        ),
        (
            "clamp.example",
            Reply::policy(
                "version: STSv1\nmode: enforce\nmx: mx1.example.net\nmax_age: 31557601\n",
            ),
        ),
        ("bom.example", Reply::policy(&format!("\u{feff}{BASE}"))),
        (
            "case.example",
            Reply::policy("version: STSv1\nmode: Enforce\nmx: mx1.example.net\nmax_age: 86400\n"),
        ),
        (
            "ulabel.example",
            Reply::policy("version: STSv1\nmode: enforce\nmx: mx.bücher.example\nmax_age: 86400\n"),
        ),
        (
            "html.example",
            Reply {
                content_type: Some("text/html".into()),
                ..Reply::policy("<html>hi</html>")
            },
        ),
        (
            "redirect.example",
            Reply {
                status: 301,
                location: Some("https://www.redirect.example/".into()),
                ..Reply::policy("")
            },
        ),
        (
            "missing.example",
            Reply {
                status: 404,
                ..Reply::policy("not found")
            },
        ),
        ("big.example", Reply::policy(&big)),
        // Issue 14 rule 2 (RFC 8461 §3.2): keys are case-sensitive.
        (
            "keycase-before.example",
            Reply::policy(
                "version: STSv1\nMode: none\nmode: enforce\nmx: mx1.example.net\nmax_age: 86400\n",
            ),
        ),
        (
            "keycase-mx.example",
            Reply::policy(
                "version: STSv1\nmode: enforce\nMX: evil.example\nmx: mx1.example.net\nmax_age: 86400\n",
            ),
        ),
        (
            "keycase-only.example",
            Reply::policy("version: STSv1\nMode: enforce\nmx: mx1.example.net\nmax_age: 86400\n"),
        ),
        // Rule 3: noise the lenient profile accepts.
        (
            "blank.example",
            Reply::policy(
                "version: STSv1\n\nmode: testing\n\nmx: mx1.example.net\nmax_age: 86400\n\n",
            ),
        ),
        (
            "dot.example",
            Reply::policy("version: STSv1\nmode: enforce\nmx: mx1.example.net.\nmax_age: 86400\n"),
        ),
        // Rule 4: a repeated key whose second value does not parse; an
        // extension with an empty value.
        (
            "repeat-bad.example",
            Reply::policy(
                "version: STSv1\nmode: enforce\nmode: bogus\nmx: mx1.example.net\nmax_age: 86400\n",
            ),
        ),
        (
            "emptyext.example",
            Reply::policy(
                "version: STSv1\nmode: enforce\nmx: mx1.example.net\nmax_age: 86400\nx-ext:\n",
            ),
        ),
        // Rule 5: single-label patterns are in the grammar.
        (
            "onelabel.example",
            Reply::policy(
                "version: STSv1\nmode: enforce\nmx: localhost\nmx: *.net\nmax_age: 86400\n",
            ),
        ),
        // Rule 1 (RFC 8461 §3.1): served with a `v=STSv10` record beside the
        // real one (see `txt_records`).
        ("selection.example", Reply::policy(BASE)),
    ]
}

/// The `_mta-sts` TXT records of `domain` (policy number `i`).
fn txt_records(domain: &str, i: usize) -> Vec<String> {
    let real = format!("v=STSv1; id=p{i}");
    if domain == "selection.example" {
        vec!["v=STSv10; id=other".to_owned(), real]
    } else {
        vec![real]
    }
}

/// (valid, mode, mx patterns) as each side sees it.
type View = (bool, Option<String>, Vec<String>);

fn ours(o: &PolicyOutcome) -> View {
    match o.policy() {
        Some(p) => (
            true,
            Some(p.mode().as_str().to_owned()),
            p.mx().iter().map(ToString::to_string).collect(),
        ),
        None => (false, None, Vec::new()),
    }
}

fn theirs(v: &serde_json::Value) -> View {
    let valid = v[0] == "VALID";
    let mode = v[1].as_str().map(str::to_owned);
    let mx = v[2]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_ascii_lowercase())
        .collect();
    if valid {
        (true, mode, mx)
    } else {
        (false, None, Vec::new())
    }
}

#[tokio::test]
async fn allowed_mx_sets_agree_with_postfix_mta_sts_resolver() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import postfix_mta_sts_resolver"])
        .status()
        .unwrap();
    assert!(probe.success(), "pip install postfix-mta-sts-resolver");

    let corpus = corpus();
    let domains: Vec<&str> = corpus.iter().map(|(d, _)| *d).collect();
    let host = PolicyHost::start(&domains).await;
    let mut txt = BTreeMap::new();
    let mut b = point_at_loopback(StaticResolver::builder(), &domains);
    for (i, (d, reply)) in corpus.iter().enumerate() {
        host.set(d, reply.clone());
        let records = txt_records(d, i);
        for record in &records {
            b = b.txt(&format!("_mta-sts.{d}"), record);
        }
        txt.insert(d.to_string(), records);
    }
    let dns = Arc::new(b.build().unwrap());
    let mut config = FetcherConfig::new(host.roots());
    config.port = host.addr.port();
    config.timeout = Duration::from_secs(5);
    let sts = MtaSts::new(
        dns.clone(),
        PolicyFetcher::new(config, dns, mailtls_policy::default_crypto_provider()).unwrap(),
        PolicyCache::in_memory(),
    );

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &host.ca.certificate().cert_pem).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/mta_sts_common/postfix_resolver.py"
    );
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(host.addr.port().to_string())
        .arg(&ca)
        .arg(serde_json::to_string(&txt).unwrap())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let mut agreed = 0;
    for d in &domains {
        let mine = ours(&sts.policy_for(&DnsName::parse(d).unwrap()).await);
        let other = theirs(&peer[*d]);
        match *d {
            // Policy notes: the first value of a repeated key wins, so a
            // later `mode: none` cannot downgrade; the Python parser keeps
            // the last value.
            "repeated.example" => {
                assert_eq!(mine.1.as_deref(), Some("enforce"));
                assert_eq!(other.1.as_deref(), Some("none"));
            }
            // RFC 8461 §4.1: mx patterns are host names, an IP can never
            // match an MX; we drop it, the Python side keeps it.
            "ipmx.example" => {
                assert_eq!(mine.2, vec!["mx1.example.net"]);
                assert_eq!(other.2, vec!["192.0.2.1", "mx1.example.net"]);
            }
            // Policy notes: clamp max_age to 31557600 (RFC 8461 §3.2 gives
            // it as the maximum); the Python side refuses the policy.
            "clamp.example" => assert!(mine.0 && !other.0),
            // Lenient profile: BOM stripped, `Enforce` read as enforce,
            // U-label converted to an A-label (each reported as a warning);
            // the Python side refuses all three.
            "bom.example" | "case.example" | "ulabel.example" => {
                assert!(mine.0 && !other.0, "{d}: {mine:?} vs {other:?}");
            }
            // Issue 14 rule 2: `Mode:` is not `mode` (RFC 8461 §3.2); without
            // the exact key the lenient profile reads it, the Python side
            // finds no mode.
            "keycase-only.example" => {
                assert_eq!(
                    mine,
                    (true, Some("enforce".into()), vec!["mx1.example.net".into()])
                );
                assert!(!other.0, "{other:?}");
            }
            // Rule 3: the lenient profile drops the root dot (RFC 5321
            // Domain has none); the Python side keeps the name as written.
            "dot.example" => {
                assert_eq!(mine.2, vec!["mx1.example.net"]);
                assert_eq!(other.2, vec!["mx1.example.net."]);
            }
            // Rule 4: the first of a repeated field counts (RFC 8461 §3.2);
            // the Python side takes the last, `bogus`, and refuses it.
            "repeat-bad.example" => {
                assert_eq!(mine.1.as_deref(), Some("enforce"));
                assert!(!other.0, "{other:?}");
            }
            // Rule 1 (RFC 8461 §3.1): `v=STSv10` is not an MTA-STS record;
            // the Python side counts every record starting with `v=STSv1`
            // and sees two, so no policy.
            "selection.example" => {
                assert!(mine.0, "{mine:?}");
                assert!(!other.0, "{other:?}");
            }
            _ => {
                assert_eq!(mine, other, "{d}");
                agreed += 1;
            }
        }
    }
    // Both read the rest the same, including `Mode:`/`MX:` beside exact
    // keys, blank lines, an empty extension value and single-label mx.
    assert_eq!(agreed, 15);
}
