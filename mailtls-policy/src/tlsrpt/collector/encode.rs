//! The identity of a policy and of a failure as one byte string (in memory
//! only, never persisted), built the same way from the caller's borrowed
//! outcome and from an owned key read back from the log.
//!
//! Every variable-length part is length-prefixed and every optional part
//! tagged, so the encoding is injective: equal bytes mean equal values, and
//! the interner needs no other comparison.

use std::net::IpAddr;

use super::{FailureKey, FailureOutcome, PolicyKey, PolicyRef};
use crate::result_type::{PolicyType, ResultType};

/// result type, sending IP, receiving IP, MX host, HELO, reason code, info.
type FailureParts<'a> = (
    ResultType,
    Option<IpAddr>,
    Option<IpAddr>,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

/// LEB128: seven bits a byte, high bit set on all but the last. Prefix-free,
/// so the encoding stays injective, and one byte for the short strings
/// policies are made of (every byte is hashed, compared and kept).
fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn put_ip(out: &mut Vec<u8>, ip: Option<IpAddr>) {
    match ip {
        None => out.push(0),
        Some(IpAddr::V4(a)) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

fn policy_parts<'a>(
    out: &mut Vec<u8>,
    policy_type: PolicyType,
    domain: &str,
    strings: impl ExactSizeIterator<Item = &'a str>,
    mx_hosts: impl ExactSizeIterator<Item = &'a str>,
) {
    // Variants are fieldless: the discriminant names one exactly.
    out.push(policy_type as u8);
    put_str(out, domain);
    put_len(out, strings.len());
    for s in strings {
        put_str(out, s);
    }
    put_len(out, mx_hosts.len());
    for s in mx_hosts {
        put_str(out, s);
    }
}

fn failure_parts(out: &mut Vec<u8>, parts: FailureParts<'_>) {
    let (result_type, sending, receiving, mx_host, helo, code, info) = parts;
    out.push(result_type as u8);
    put_ip(out, sending);
    put_ip(out, receiving);
    put_str(out, mx_host);
    put_opt_str(out, helo);
    put_opt_str(out, code);
    put_opt_str(out, info);
}

/// Appends the encoding of the caller's policy.
pub(super) fn policy_ref(out: &mut Vec<u8>, p: &PolicyRef<'_>) {
    policy_parts(
        out,
        p.policy_type,
        p.domain,
        p.strings.iter().copied(),
        p.mx_hosts.iter().copied(),
    );
}

/// Appends the encoding of an owned policy; equal to [`policy_ref`] of the
/// same policy.
pub(super) fn policy_key(out: &mut Vec<u8>, k: &PolicyKey) {
    policy_parts(
        out,
        k.policy_type,
        &k.domain,
        k.strings.iter().map(String::as_str),
        k.mx_hosts.iter().map(String::as_str),
    );
}

/// Appends the encoding of a session's failure; `mx_host` is the MX host
/// the session was with (`receiving-mx-hostname`, part of the failure).
pub(super) fn failure_outcome(out: &mut Vec<u8>, f: &FailureOutcome<'_>, mx_host: &str) {
    failure_parts(
        out,
        (
            f.result_type,
            f.sending_mta_ip,
            f.receiving_ip,
            mx_host,
            f.receiving_mx_helo,
            f.failure_reason_code,
            f.additional_information,
        ),
    );
}

/// Appends the encoding of an owned failure; equal to [`failure_outcome`]
/// of the same failure.
pub(super) fn failure_key(out: &mut Vec<u8>, f: &FailureKey) {
    failure_parts(
        out,
        (
            f.result_type,
            f.sending_mta_ip,
            f.receiving_ip,
            f.receiving_mx_hostname.as_str(),
            f.receiving_mx_helo.as_deref(),
            f.failure_reason_code.as_deref(),
            f.additional_information.as_deref(),
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::collector::SessionOutcome;

    fn enc_policy(strings: &[&str], mx: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        policy_ref(
            &mut out,
            &PolicyRef {
                policy_type: PolicyType::Sts,
                domain: "example.com",
                strings,
                mx_hosts: mx,
            },
        );
        out
    }

    #[test]
    fn borrowed_and_owned_encode_alike() {
        let p = PolicyRef {
            policy_type: PolicyType::Tlsa,
            domain: "example.com",
            strings: &["3 1 1 abcd"],
            mx_hosts: &["mx.example.com"],
        };
        let o = SessionOutcome {
            policy: p,
            mx_host: "mx.example.com",
            failure: Some(FailureOutcome {
                result_type: ResultType::TlsaInvalid,
                sending_mta_ip: Some("2001:db8::1".parse().unwrap()),
                receiving_ip: Some("192.0.2.1".parse().unwrap()),
                receiving_mx_helo: None,
                failure_reason_code: Some("x"),
                additional_information: Some(""),
            }),
        };
        let key = super::super::owned_key(time::macros::date!(2026 - 11 - 24), &o);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        policy_ref(&mut a, &p);
        policy_key(&mut b, &key.policy);
        assert_eq!(a, b);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        failure_outcome(&mut a, o.failure.as_ref().unwrap(), o.mx_host);
        failure_key(&mut b, key.failure.as_ref().unwrap());
        assert_eq!(a, b);
    }

    #[test]
    fn every_result_and_policy_type_encodes_apart() {
        let mut seen = std::collections::HashSet::new();
        for r in ResultType::ALL {
            let mut out = Vec::new();
            failure_parts(&mut out, (r, None, None, "mx", None, None, None));
            assert!(seen.insert(out), "{r}");
        }
        let mut seen = std::collections::HashSet::new();
        for t in [PolicyType::Sts, PolicyType::Tlsa, PolicyType::NoPolicyFound] {
            let mut out = Vec::new();
            policy_parts(&mut out, t, "example.com", [].into_iter(), [].into_iter());
            assert!(seen.insert(out), "{t}");
        }
    }

    #[test]
    fn lengths_are_leb128() {
        for (n, bytes) in [
            (0usize, &[0u8][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (65_536, &[0x80, 0x80, 0x04]),
        ] {
            let mut out = Vec::new();
            put_len(&mut out, n);
            assert_eq!(out, bytes, "{n}");
        }
        let long = "x".repeat(200);
        let mut out = Vec::new();
        put_str(&mut out, &long);
        assert_eq!(out.len(), 202);
    }

    #[test]
    fn moving_text_between_parts_changes_the_encoding() {
        // The length prefixes keep these apart although the text is the same.
        assert_ne!(enc_policy(&["ab", "c"], &[]), enc_policy(&["a", "bc"], &[]));
        assert_ne!(enc_policy(&["a"], &["b"]), enc_policy(&["a", "b"], &[]));
        assert_ne!(enc_policy(&[], &[""]), enc_policy(&[""], &[]));
    }
}
