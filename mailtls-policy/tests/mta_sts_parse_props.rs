//! Properties of the MTA-STS parsers: no input makes them panic, both
//! profiles agree on what they accept from clean input, and a policy
//! rendered by `MtaStsPolicy::to_text` parses back to itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
}
