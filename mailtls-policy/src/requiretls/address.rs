//! `mailbox+requiretls@domain`: a recipient address tag that asks for
//! REQUIRETLS, for senders whose client cannot set the MAIL FROM parameter.
//!
//! The tag is a local convention (as in mox), not part of RFC 8689: the
//! receiving side of the submission server detects it, sets the flag on the
//! message and removes the tag so the recipient's server never sees it.

/// The tag, compared case-insensitively.
const TAG: &str = "+requiretls";

/// A recipient address with the tag removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedRecipient {
    /// The address to deliver to, without the tag.
    pub address: String,
    /// Whether the tag was present (so REQUIRETLS must be set).
    pub requiretls: bool,
}

/// Detects and strips a `+requiretls` suffix on the local part of `address`
/// (`local@domain`). Addresses without the tag, with a quoted local part, or
/// where the tag is the whole local part come back unchanged with
/// `requiretls: false`.
pub fn strip_requiretls_tag(address: &str) -> TaggedRecipient {
    let untouched = || TaggedRecipient {
        address: address.to_owned(),
        requiretls: false,
    };
    let Some((local, domain)) = address.rsplit_once('@') else {
        return untouched();
    };
    // A quoted local part is opaque (RFC 5321 §4.1.2): do not rewrite it.
    if local.starts_with('"') || local.len() <= TAG.len() {
        return untouched();
    }
    let split = local.len() - TAG.len();
    match (local.get(..split), local.get(split..)) {
        (Some(mailbox), Some(tag)) if tag.eq_ignore_ascii_case(TAG) => TaggedRecipient {
            address: format!("{mailbox}@{domain}"),
            requiretls: true,
        },
        _ => untouched(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_detected_and_stripped() {
        let r = strip_requiretls_tag("alice+RequireTLS@example.com");
        assert_eq!(r.address, "alice@example.com");
        assert!(r.requiretls);
        // Only the final sub-address is the tag.
        let r = strip_requiretls_tag("alice+lists+requiretls@example.com");
        assert_eq!(r.address, "alice+lists@example.com");
        assert!(r.requiretls);
    }

    #[test]
    fn other_addresses_are_left_alone() {
        for a in [
            "alice@example.com",
            "alice+requiretls.x@example.com",
            "+requiretls@example.com",
            "\"al ice+requiretls\"@example.com",
            "no-at-sign+requiretls",
            "bücher+requiretls@example.com",
        ] {
            let r = strip_requiretls_tag(a);
            if a.starts_with("bücher") {
                assert_eq!(r.address, "bücher@example.com");
                continue;
            }
            assert_eq!(r.address, a);
            assert!(!r.requiretls, "{a}");
        }
    }
}
