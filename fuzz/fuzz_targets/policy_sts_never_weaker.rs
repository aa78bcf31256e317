//! Issue 14 rule 3 (RFC 8461 §3.2): the lenient profile relaxes syntax,
//! never security. Two checks per input:
//!
//! 1. Whatever the bytes, when the strict profile reads a valid policy the
//!    lenient one reads the same mode, MX set and max_age.
//! 2. A valid policy picked by the first bytes, with the rest of the input
//!    woven in as extra lines that use no exact known key (keys in another
//!    case, whitespace before the colon, mode words in another case, lines
//!    without a colon, control characters, blank lines), must read under
//!    the lenient profile as exactly that policy: never a lower mode, a
//!    wider MX set, another max_age or no policy.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use mailtls_policy::mta_sts::{MtaStsPolicy, PolicyMode, Profile, parse_policy};

const KNOWN: [&str; 4] = ["version", "mode", "mx", "max_age"];
const HOSTS: [&str; 4] = [
    "mx1.example.com",
    "*.mx.example.net",
    "backup.example.org",
    "*.example.com",
];

fn view(p: &MtaStsPolicy) -> (PolicyMode, BTreeSet<String>, u32) {
    (
        p.mode(),
        p.mx().iter().map(ToString::to_string).collect(),
        p.max_age(),
    )
}

fuzz_target!(|data: &[u8]| {
    if let Ok(strict) = parse_policy(data, Profile::Strict) {
        let lenient = parse_policy(data, Profile::Lenient)
            .unwrap_or_else(|e| panic!("strict accepts, lenient refuses {data:?}: {e}"));
        assert_eq!(view(&strict.policy), view(&lenient.policy), "{data:?}");
    }

    let [m, a, b, pick, rest @ ..] = data else {
        return;
    };
    let mode = [PolicyMode::Enforce, PolicyMode::Testing, PolicyMode::None][usize::from(*m) % 3];
    let max_age = u32::from(u16::from_le_bytes([*a, *b]));
    let mx: Vec<&str> = HOSTS
        .iter()
        .enumerate()
        .filter(|(i, _)| pick & (1 << i) != 0)
        .map(|(_, h)| *h)
        .collect();
    let mx = if mx.is_empty() { vec![HOSTS[0]] } else { mx };
    let mut lines = vec![
        "version: STSv1".to_owned(),
        format!("mode: {mode}"),
        format!("max_age: {max_age}"),
    ];
    lines.extend(mx.iter().map(|h| format!("mx: {h}")));
    let noise = String::from_utf8_lossy(rest);
    for (i, line) in noise.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        // An exact known key is the file speaking, not noise.
        if line.split_once(':').is_some_and(|(k, _)| KNOWN.contains(&k)) {
            continue;
        }
        let at = (i * 7 + usize::from(*pick)) % (lines.len() + 1);
        lines.insert(at, line.to_owned());
    }
    let eol = if pick & 0x80 != 0 { "\r\n" } else { "\n" };
    let body = lines.join(eol);
    let lenient = parse_policy(body.as_bytes(), Profile::Lenient)
        .unwrap_or_else(|e| panic!("noise switched the policy off: {body:?}: {e}"));
    let want = (
        mode,
        mx.iter().map(|h| (*h).to_owned()).collect::<BTreeSet<_>>(),
        max_age,
    );
    assert_eq!(view(&lenient.policy), want, "noise changed the policy: {body:?}");
    if let Ok(strict) = parse_policy(body.as_bytes(), Profile::Strict) {
        assert_eq!(view(&strict.policy), want, "{body:?}");
    }
});
