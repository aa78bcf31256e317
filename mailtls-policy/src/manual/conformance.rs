//! Conformance: how this crate reads MTA-STS and TLS-RPT records and
//! policies, rule by rule, and where three other implementations read them
//! differently.
//!
//! The parsers have two profiles for the policy file
//! ([`Profile`](crate::mta_sts::Profile)): **strict** is the ABNF of
//! RFC 8461 §3.2; **lenient** (the default, used for delivery) repairs
//! syntax a sender meets in the wild. One rule binds them: *lenient relaxes
//! syntax, never security*. On any file the strict profile accepts, the
//! lenient one yields exactly the same mode, MX set and `max_age`, and a
//! repair never outranks a line that is exactly right. A property test
//! (`tests/mta_sts_parse_props.rs`) and a fuzz target
//! (`fuzz/fuzz_targets/policy_sts_never_weaker.rs`) check that rule.
//!
//! The TXT records (`_mta-sts`, `_smtp._tls`) have one reading only: the
//! grammar, because a record read more loosely than its publisher meant
//! can switch a protection off or send reports to the wrong place.
//!
//! The comparison columns describe the code read for this page:
//! **mox** (`mtasts/parse.go`, `tlsrpt/parse.go`, `tlsrpt/lookup.go`),
//! **postfix-mta-sts-resolver** (`resolver.py`, `utils.py`, version 1.x as
//! installed by the test suite) and **Stalwart** (the SMTP server's
//! `outbound/mta_sts/parse.rs` and the `mail-auth` crate's record parsers).
//! "—" means the implementation has no such step. Where this crate and
//! postfix-mta-sts-resolver differ, `tests/mta_sts_postfix_resolver.rs`
//! asserts the difference against the real resolver.
//!
//! # RFC 8461 §3.1: the `_mta-sts` TXT record
//!
//! | Rule | This crate | mox | postfix-mta-sts-resolver | Stalwart |
//! |---|---|---|---|---|
//! | A record counts only when it begins with `v=STSv1` and the field delimiter; others are discarded and never make "more than one record" | [`is_sts_record`](crate::mta_sts::is_sts_record): `v=STSv1`, optional WSP, `;` | same (`v=STSv1` then `*WSP ";"`) | any text starting with `v=STSv1` counts, so `v=STSv10` beside the real record turns MTA-STS off | tag parser: the `v` tag must hold `STSv1` |
//! | More than one record: no policy | yes | yes | yes | not visible in the parser |
//! | `id` is 1–32 letters or digits, required | yes; a repeated `id` is an error | a repeated `id` is refused | any text | any text |
//! | Extension fields `name=value` | grammar checked, kept | grammar checked, kept | not checked | ignored |
//!
//! Tests: `mta_sts::record::tests::rfc_8461_section_3_1_*`,
//! `tests/mta_sts_store.rs::service_and_cache_reload_use_the_rfc_selector_and_parser`,
//! `examples/tests/policy_check_cli.rs::sts_record_selection_follows_rfc_8461_section_3_1`.
//!
//! # RFC 8461 §3.2: the policy file
//!
//! | Rule | Strict | Lenient | mox | postfix-mta-sts-resolver | Stalwart |
//! |---|---|---|---|---|---|
//! | Keys are case-sensitive; unknown keys are ignored | `Mode:` is an unknown key (warning) | `Mode:` read as `mode` only when no line has the exact key; never beside it, never an extra `mx` | `Mode:` is an extension | `Mode:` is an unknown key | `Mode:` ignored |
//! | Of a repeated `version`, `mode`, `max_age` the first counts ("all entries except for the first SHALL be ignored") | first counts; the ignored value must still parse | first counts; a bad ignored value is a warning | first counts; the ignored value must parse | **last** counts, so a later `mode: none` downgrades | **last** counts |
//! | `mode` is `enforce`, `testing` or `none`, case-sensitive | error otherwise | `Enforce` repaired, never over an exact line | error otherwise | invalid otherwise | invalid otherwise |
//! | `max_age` 1–10 digits, at most 31557600 | larger values clamped; over 10 digits an error | clamped | 10 digits, must fit 31 bits; not clamped by the parser | larger values make the policy invalid | no upper bound; an unparsable value is ignored (default 86400) |
//! | `mx`: `["*."] Domain`, required unless mode `none` | error on an IP, a U-label, a root dot | IP skipped, U-label converted, root dot dropped (warnings) | U-labels refused; a root dot refused | not checked (IPs and root dots kept) | not checked; required even for mode `none` |
//! | `mx` of one label (`localhost`, `*.com`) | kept, warning | kept, warning | no label-count check in the parser | kept | kept |
//! | Line ends: CRLF or LF (erratum 6253) | both | both | both | both | LF; a CR is trimmed with the value |
//! | Blank lines are not in the grammar | error | note | error | skipped | skipped |
//! | Whitespace between key and colon | error | repaired, never over an exact line | error | key not recognised | accepted |
//! | Extension value of at least one character | error when empty | line ignored | error when empty | not checked | ignored |
//! | Control characters in a value | error | error for a known key; an unknown key's line is ignored | refused by the grammar | not checked | not checked |
//! | A line without a colon | error | that line ignored, never glued to the next | error | ignored | merged with the next line's key, so that field is lost |
//! | Byte order mark | error | stripped | error | refused | part of the first key |
//!
//! Tests: `mta_sts::parser::tests::rfc_8461_section_3_2_*` (one per row
//! group), `tests/mta_sts_parse_props.rs::lenient_never_weaker_than_the_policy_under_noise`,
//! `tests/mta_sts_postfix_resolver.rs`.
//!
//! # RFC 8461 §4.1: MX matching
//!
//! An `mx` pattern matches the MX host name exactly or, as `*.` plus a
//! name, with exactly one more label in front; case does not matter. All
//! four implementations agree here, and so did the outside review's
//! cases. A single-label wildcard `*.com` matches `mail.com`: the grammar
//! allows it, and refusing it would drop the whole policy, a downgrade.
//! Tests: `mta_sts::policy::tests::mx_matching_follows_rfc_8461_section_4_1`,
//! `mta_sts::parser::tests::rfc_8461_section_3_2_single_label_mx_patterns_are_kept`.
//!
//! # RFC 8460 §3: the `_smtp._tls` TXT record
//!
//! | Rule | This crate | mox | Stalwart |
//! |---|---|---|---|
//! | A record counts only when it begins with `v=TLSRPTv1` and the field delimiter | [`is_tlsrpt_record`](crate::tlsrpt::is_tlsrpt_record) | same | `v` tag must be first and hold `TLSRPTv1` |
//! | More than one record, or an invalid one: no reports (MUST NOT send) | yes; every [`RecordError`](crate::tlsrpt::RecordError) message says "no reports are sent" | yes | an invalid record is not used |
//! | Several `rua` fields | all their URIs are used | all used | all used |
//! | `!` and `,` inside a URI must be percent-encoded | an unencoded `!` makes the record invalid; a bare `,` separates URIs | an unencoded `!` makes the record invalid | not checked |
//! | Empty URI, `;;`, spaces around `=`, stray `%` | record invalid | record invalid | skipped or ignored |
//! | Extensions: name and value grammar | record invalid when broken, ignored when valid | same | ignored |
//! | Unknown URI scheme, `mailto:` without an address | skipped with a diagnostic; nothing left means no reports | kept as written | an unknown scheme ends that `rua` list |
//!
//! postfix-mta-sts-resolver does not read TLS-RPT records.
//! Tests: `tlsrpt::record::tests::rfc_8460_section_3_*`,
//! `tests/mta_sts_own_domain.rs::check_setup_uses_the_rfc_selectors_and_parsers`.
//!
//! # DANE (RFC 7672, RFC 7671)
//!
//! - **SNI (RFC 7672 §8.1).** [`PlanEntry::sni`](crate::plan::PlanEntry::sni)
//!   is the TLSA base domain for a DANE entry: the expanded name when the
//!   MX host is an alias with a signed CNAME chain. Other entries send the
//!   MX name as listed. Tests: `tests/plan_decide.rs::sni_is_the_tlsa_base_domain_for_dane_hosts_rfc7672_8_1`,
//!   and end to end against a Postfix that picks its certificate by SNI,
//!   `examples/tests/outbound_mx.rs::dane_sends_the_tlsa_base_domain_as_sni_and_reports_unusable_tlsa`.
//! - **Digest algorithm agility (RFC 7671 §9).** Among records of one usage
//!   and selector only the strongest digest present (SHA2-512, then
//!   SHA2-256) is tried; Full(0) records are not digests and always are.
//!   Test: `tests/dane_verify.rs::strongest_digest_governs_rfc7671_9`.
//! - **Every TLSA record unusable.** RFC 7672 §2.2 requires delivery over
//!   TLS without authentication. This crate chose to also report the
//!   session as `tlsa-invalid` (RFC 8460 §4.3.2): records that no sender can
//!   use are a mistake the domain owner can fix, and a success count would
//!   hide it. The handshake is still accepted, so delivery is unchanged.
//!   Tests: `tests/verifier_handshake.rs::opportunistic_and_unauthenticated_accept_anything`
//!   and the end-to-end test above (the reference server counts it).
//!
//! # Errata of RFC 8461
//!
//! The RFC Editor lists four reported (none verified) errata; three could
//! be read for this page:
//!
//! - **6253** (§3.2 says "CRLF-separated" while the grammar allows LF):
//!   both profiles accept LF and CRLF, and a file mixing them gets a note.
//! - **6285** (`sts-field-delim` allows whitespace before `;`, while the
//!   selection text says records must begin with `v=STSv1;`): this crate
//!   follows the grammar, so `v=STSv1 ;` is an MTA-STS record, as mox does.
//!   Reading the text literally would discard a record the grammar allows,
//!   which switches MTA-STS off for that domain.
//! - **7282** (`max_age` could be `1*8DIGIT`, as the maximum has 8 digits):
//!   the strict profile keeps the published `1*10DIGIT`; both profiles
//!   clamp values above 31557600 instead of refusing the policy, since a
//!   refused policy protects nothing.
//!
//! The fourth reported erratum was not available to the review of this
//! page; none of the three above changes what a sender enforces.
