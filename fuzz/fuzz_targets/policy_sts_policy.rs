//! The MTA-STS policy file (RFC 8461 §3.2) from an untrusted HTTPS body, in
//! both profiles; a parsed policy's canonical rendering must parse again
//! (same profile) to the same mode, mx patterns, max_age and extensions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtls_policy::mta_sts::{Profile, parse_policy};

fuzz_target!(|data: &[u8]| {
    for profile in [Profile::Strict, Profile::Lenient] {
        let Ok(parsed) = parse_policy(data, profile) else {
            continue;
        };
        let p = &parsed.policy;
        assert_eq!(p.raw().as_bytes(), data, "raw text must be kept as fetched");
        let _ = p.policy_strings();
        let text = p.to_text();
        match parse_policy(text.as_bytes(), profile) {
            Ok(again) => {
                let q = &again.policy;
                assert_eq!(
                    (q.mode(), q.mx(), q.max_age(), q.extensions()),
                    (p.mode(), p.mx(), p.max_age(), p.extensions()),
                    "{profile:?}: {text:?} re-parsed differently"
                );
            }
            Err(e) => panic!("{profile:?}: rendered policy {text:?} does not parse: {e:?}"),
        }
    }
});
