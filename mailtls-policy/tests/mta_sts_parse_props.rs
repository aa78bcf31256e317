//! Properties of the MTA-STS parsers: no input makes them panic, both
//! profiles agree on what they accept from clean input, and a policy
//! rendered by `MtaStsPolicy::to_text` parses back to itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use mailtls_core::NamePattern;
use mailtls_policy::dns::TxtRecord;
use mailtls_policy::mta_sts::{
    MAX_MAX_AGE, MtaStsPolicy, PolicyMode, Profile, Severity, parse_policy, parse_record,
    select_record,
};
use proptest::prelude::*;

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("version: STSv1".to_owned()),
        prop_oneof![
            Just("enforce"),
            Just("testing"),
            Just("none"),
            Just("Enforce")
        ]
        .prop_map(|m| format!("mode: {m}")),
        "[a-z*.0-9:-]{0,20}".prop_map(|v| format!("mx: {v}")),
        "[0-9]{0,12}".prop_map(|v| format!("max_age: {v}")),
        "[ -~]{0,30}",
        "\\PC{0,10}",
        // Keys and values one repair away from the real ones.
        prop_oneof![
            Just("Mode: none"),
            Just("MODE: testing"),
            Just("mode : none"),
            Just("mode: None"),
            Just("Mx: evil.example"),
            Just("MX: *.evil.example"),
            Just("Max_Age: 1"),
            Just("Version: STSv1"),
            Just(""),
            Just(" "),
        ]
        .prop_map(str::to_owned),
    ]
}

/// A policy the strict profile accepts, as (mode, mx patterns, max_age).
fn valid_policy() -> impl Strategy<Value = (PolicyMode, Vec<String>, u32)> {
    (
        prop_oneof![
            Just(PolicyMode::Enforce),
            Just(PolicyMode::Testing),
            Just(PolicyMode::None)
        ],
        proptest::collection::btree_set("(\\*\\.)?[a-z][a-z0-9]{0,6}\\.example", 1..4),
        0u32..=MAX_MAX_AGE,
    )
        .prop_map(|(mode, mx, age)| (mode, mx.into_iter().collect(), age))
}

/// Noise the lenient profile accepts beyond the grammar, or lines that
/// try to weaken the policy without using an exact key.
#[derive(Debug, Clone)]
enum Noise {
    BlankLine(usize),
    Injected(usize, &'static str),
    TrailingDotOnMx(usize),
    ExtraSpace(usize),
}

fn noise() -> impl Strategy<Value = Noise> {
    prop_oneof![
        (0usize..8).prop_map(Noise::BlankLine),
        (
            0usize..8,
            prop_oneof![
                Just("Mode: none"),
                Just("MODE: testing"),
                Just("mode : none"),
                Just("mode: None"),
                Just("mode:None"),
                Just("Mx: evil.example"),
                Just("MX: *.evil.example"),
                Just("mx : evil.example"),
                Just("mx evil.example"),
                Just("Max_Age: 1"),
                Just("max_age : 1"),
                Just("x-ext:"),
                // Control characters outside an exact key (the fuzz target
                // found the second one switching the policy off).
                Just("x-ext: a\u{1}b"),
                Just("version\t:x\u{0}ver:"),
            ]
        )
            .prop_map(|(at, line)| Noise::Injected(at, line)),
        (0usize..8).prop_map(Noise::TrailingDotOnMx),
        (0usize..8).prop_map(Noise::ExtraSpace),
    ]
}

proptest! {
    #[test]
    fn policy_parser_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_policy(&body, Profile::Strict);
        let _ = parse_policy(&body, Profile::Lenient);
    }

    #[test]
    fn policy_parser_never_panics_on_policy_like_text(
        lines in proptest::collection::vec(line(), 0..12),
        crlf in any::<bool>(),
    ) {
        let body = lines.join(if crlf { "\r\n" } else { "\n" });
        let strict = parse_policy(body.as_bytes(), Profile::Strict);
        let lenient = parse_policy(body.as_bytes(), Profile::Lenient);
        // Whatever the strict profile accepts, the lenient one accepts the
        // same way.
        if let Ok(s) = &strict {
            let l = lenient.as_ref().unwrap();
            prop_assert_eq!(&s.policy, &l.policy);
        }
        for p in strict.iter().chain(lenient.iter()) {
            prop_assert!(p.policy.max_age() <= MAX_MAX_AGE);
            prop_assert!(p.diagnostics.iter().all(|d| d.severity < Severity::Error));
            prop_assert_eq!(p.policy.raw(), body.as_str());
        }
    }

    #[test]
    fn record_parser_never_panics(text in proptest::collection::vec(any::<u8>(), 0..128), tail in "[ -~]{0,40}") {
        let _ = parse_record(&text);
        let with_prefix = format!("v=STSv1;{tail}");
        let _ = parse_record(with_prefix.as_bytes());
        let _ = select_record(&[TxtRecord { strings: vec![text.clone(), with_prefix.into_bytes()] }]);
    }

    #[test]
    fn rendered_policies_parse_back(
        mode in prop_oneof![Just(PolicyMode::Enforce), Just(PolicyMode::Testing), Just(PolicyMode::None)],
        hosts in proptest::collection::btree_set("[a-z]{1,8}", 1..4),
        wildcard in any::<bool>(),
        max_age in any::<u32>(),
    ) {
        let mx: Vec<NamePattern> = hosts
            .iter()
            .map(|h| {
                let text = if wildcard { format!("*.{h}.example") } else { format!("{h}.example") };
                NamePattern::parse(&text).unwrap()
            })
            .collect();
        let policy = MtaStsPolicy::new(mode, mx, max_age);
        let back = parse_policy(policy.raw().as_bytes(), Profile::Strict).unwrap();
        prop_assert_eq!(back.policy, policy);
    }

    /// Issue 14 rule 3 (RFC 8461 §3.2, lenient relaxes syntax, never
    /// security): a valid policy with injected noise reads, under the
    /// lenient profile, as exactly the same mode, MX set and max_age; the
    /// strict profile either refuses it or reads the same.
    #[test]
    fn lenient_never_weaker_than_the_policy_under_noise(
        (mode, mx, max_age) in valid_policy(),
        order in Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
        noise in proptest::collection::vec(noise(), 0..6),
        crlf in proptest::collection::vec(any::<bool>(), 12),
        bom in any::<bool>(),
        final_end in any::<bool>(),
    ) {
        let mut groups: Vec<Vec<String>> = vec![
            vec!["version: STSv1".to_owned()],
            vec![format!("mode: {mode}")],
            mx.iter().map(|m| format!("mx: {m}")).collect(),
            vec![format!("max_age: {max_age}")],
        ];
        if mode == PolicyMode::None && order[0] % 2 == 0 {
            // mode none needs no mx line; leave them out half the time.
            groups[2].clear();
        }
        let mut lines: Vec<String> = order.iter().flat_map(|&g| groups[g].clone()).collect();
        for n in &noise {
            match n {
                Noise::BlankLine(at) => lines.insert(at % (lines.len() + 1), String::new()),
                Noise::Injected(at, text) => lines.insert(at % (lines.len() + 1), (*text).to_owned()),
                Noise::TrailingDotOnMx(at) => {
                    let mx_lines: Vec<usize> = (0..lines.len())
                        .filter(|&i| lines[i].starts_with("mx: ") && !lines[i].ends_with('.'))
                        .collect();
                    if !mx_lines.is_empty() {
                        lines[mx_lines[at % mx_lines.len()]].push('.');
                    }
                }
                Noise::ExtraSpace(at) => {
                    let i = at % lines.len();
                    if let Some((k, v)) = lines[i].clone().split_once(": ") {
                        lines[i] = format!("{k}:\t {v} \t");
                    }
                }
            }
        }
        let mut body = String::new();
        if bom {
            body.push('\u{feff}');
        }
        for (i, line) in lines.iter().enumerate() {
            body.push_str(line);
            if i + 1 < lines.len() || final_end {
                body.push_str(if crlf[i % crlf.len()] { "\r\n" } else { "\n" });
            }
        }

        let want_mx: BTreeSet<String> = if mode == PolicyMode::None && groups[2].is_empty() {
            BTreeSet::new()
        } else {
            mx.iter().cloned().collect()
        };
        let view = |p: &MtaStsPolicy| {
            (p.mode(), p.mx().iter().map(ToString::to_string).collect::<BTreeSet<_>>(), p.max_age())
        };
        let lenient = parse_policy(body.as_bytes(), Profile::Lenient);
        prop_assert!(lenient.is_ok(), "lenient refused {:?}: {:?}", body, lenient);
        let lenient = lenient.unwrap();
        prop_assert_eq!(view(&lenient.policy), (mode, want_mx.clone(), max_age), "{:?}", body);
        if let Ok(strict) = parse_policy(body.as_bytes(), Profile::Strict) {
            prop_assert_eq!(view(&strict.policy), (mode, want_mx, max_age), "{:?}", body);
        }
    }
}
