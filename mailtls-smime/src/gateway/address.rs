//! Mail addresses as the gateway compares them.

use std::fmt;

use mailtls_core::{DnsName, NameError};

/// Why a string is not a usable mail address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// There is no `@` separating a local part from a domain.
    #[error("{input:?} is not a mail address: no '@'")]
    NoAt {
        /// The offending input.
        input: String,
    },
    /// The part before the `@` is empty.
    #[error("{input:?} has an empty local part")]
    EmptyLocalPart {
        /// The offending input.
        input: String,
    },
    /// The local part holds whitespace, a control character, `<`, `>` or a
    /// quote: quoted local parts are not accepted for certificate matching.
    #[error(
        "{input:?} has a local part the gateway does not accept (whitespace, control character, quote or angle bracket)"
    )]
    BadLocalPart {
        /// The offending input.
        input: String,
    },
    /// The domain is not a valid host name.
    #[error("{input:?} has an invalid domain: {source}")]
    BadDomain {
        /// The offending input.
        input: String,
        /// What was wrong with the domain.
        #[source]
        source: NameError,
    },
}

/// A mail address `local@domain` in the form the gateway compares: the domain
/// canonical (lowercase A-labels, via [`DnsName`]) and the local part
/// lowercased.
///
/// RFC 5321 lets a server treat local parts case-sensitively, but the
/// certificate a partner's CA issued for `Alice@Example.com` is meant for the
/// mailbox everybody writes as `alice@example.com`, and so a gateway (like
/// every common one) matches local parts without regard to case.
///
/// ```
/// use mailtls_smime::gateway::Address;
///
/// let a = Address::parse("Alice@Bücher.Example").unwrap();
/// assert_eq!(a.to_string(), "alice@xn--bcher-kva.example");
/// assert_eq!(a.domain().as_str(), "xn--bcher-kva.example");
/// assert!(Address::parse("no-at-sign").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    local: Box<str>,
    domain: DnsName,
}

impl Address {
    /// Parses and normalises `local@domain` (one pair of surrounding angle
    /// brackets is removed, as in an SMTP path).
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let trimmed = input.trim();
        let bare = trimmed
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(trimmed);
        let (local, domain) = bare.rsplit_once('@').ok_or_else(|| AddressError::NoAt {
            input: input.to_owned(),
        })?;
        if local.is_empty() {
            return Err(AddressError::EmptyLocalPart {
                input: input.to_owned(),
            });
        }
        if local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>' | '@'))
        {
            return Err(AddressError::BadLocalPart {
                input: input.to_owned(),
            });
        }
        let domain = DnsName::parse(domain).map_err(|source| AddressError::BadDomain {
            input: input.to_owned(),
            source,
        })?;
        Ok(Address {
            local: local.to_lowercase().into_boxed_str(),
            domain,
        })
    }

    /// The local part, lowercased.
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain.
    pub fn domain(&self) -> &DnsName {
        &self.domain
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain.as_str())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Address::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A domain as the gateway stores it, serialised as its canonical string.
pub(crate) mod domain_serde {
    use mailtls_core::DnsName;

    pub(crate) fn serialize<S: serde::Serializer>(d: &DnsName, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(d.as_str())
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DnsName, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        DnsName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_idna_and_brackets() {
        let a = Address::parse(" <Bob.Smith+tag@MAIL.Example.ORG.> ").unwrap();
        assert_eq!(a.to_string(), "bob.smith+tag@mail.example.org");
        assert_eq!(a.local_part(), "bob.smith+tag");
        assert_eq!(a, Address::parse("bob.smith+tag@mail.example.org").unwrap());
    }

    #[test]
    fn rejects_what_cannot_be_matched() {
        assert!(matches!(
            Address::parse("x"),
            Err(AddressError::NoAt { .. })
        ));
        assert!(matches!(
            Address::parse("@example.com"),
            Err(AddressError::EmptyLocalPart { .. })
        ));
        assert!(matches!(
            Address::parse("a b@example.com"),
            Err(AddressError::BadLocalPart { .. })
        ));
        assert!(matches!(
            Address::parse("\"a\"@example.com"),
            Err(AddressError::BadLocalPart { .. })
        ));
        assert!(matches!(
            Address::parse("a@192.0.2.1"),
            Err(AddressError::BadDomain { .. })
        ));
        assert!(matches!(
            Address::parse("a@"),
            Err(AddressError::BadDomain { .. })
        ));
    }

    #[test]
    fn serde_round_trip_and_refusal() {
        let a = Address::parse("Carol@Example.com").unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"carol@example.com\"");
        let back: Address = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        assert!(serde_json::from_str::<Address>("\"nope\"").is_err());
    }
}
