//! Host names and patterns from untrusted text (SNI, SANs, config, MTA-STS mx).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtls_core::name::canonical_lookup_key;
use mailtls_core::{DnsName, NamePattern};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let name = DnsName::parse(s);
    // The allocation-free fast path must agree with the full parser.
    match (&name, canonical_lookup_key(s)) {
        (Ok(n), Some(k)) => assert_eq!(n.as_str(), k),
        (Err(_), None) => {}
        (a, b) => panic!("parse and lookup key disagree on {s:?}: {a:?} vs {b:?}"),
    }
    if let Ok(n) = &name {
        // Canonical form is a fixed point.
        assert_eq!(DnsName::parse(n.as_str()).as_ref(), Ok(n));
    }
    if let Ok(p) = NamePattern::parse(s) {
        assert_eq!(NamePattern::parse(&p.to_string()).as_ref(), Ok(&p));
        if let Ok(n) = &name {
            let _ = p.matches(n);
        }
    }
});
