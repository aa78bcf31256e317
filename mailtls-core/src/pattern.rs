//! Host name patterns: an exact name or a one-label wildcard.
//!
//! The same rules serve certificate dNSName SANs (RFC 6125 §6.4.3, as browsers
//! and the CA/Browser Forum apply them) and MTA-STS `mx:` patterns (RFC 8461
//! §4.1): `*.` followed by a name matches exactly one extra leftmost label; the
//! wildcard is never partial (`w*.example.com`), never matches the apex, and is
//! never allowed directly above a single-label name (`*.com`).

use std::fmt;
use std::str::FromStr;

use crate::name::{DnsName, NameError};

/// Why a string is not a usable name pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The part after `*.` (or the whole exact name) is not a host name.
    #[error("invalid name in pattern {pattern:?}: {source}")]
    Name {
        /// The offending pattern.
        pattern: String,
        /// What was wrong with the name part.
        #[source]
        source: NameError,
    },
    /// A `*` somewhere other than as the whole leftmost label.
    #[error("wildcard in {pattern:?} must be the whole leftmost label (\"*.\" then a name)")]
    MisplacedWildcard {
        /// The offending pattern.
        pattern: String,
    },
    /// `*.` above a single-label name, which would match a whole top-level domain.
    #[error("wildcard {pattern:?} is too broad: it needs at least two labels after \"*.\"")]
    TooBroad {
        /// The offending pattern.
        pattern: String,
    },
}

/// An exact host name or a `*.`-wildcard covering exactly one leftmost label.
///
/// ```
/// use mailtls_core::{DnsName, NamePattern};
///
/// let p: NamePattern = "*.Example.com".parse().unwrap();
/// assert!(p.matches(&DnsName::parse("mx1.example.com").unwrap()));
/// assert!(!p.matches(&DnsName::parse("example.com").unwrap()));
/// assert!(!p.matches(&DnsName::parse("a.mx1.example.com").unwrap()));
/// assert!("w*.example.com".parse::<NamePattern>().is_err());
/// assert!("*.com".parse::<NamePattern>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamePattern {
    /// Matches this name only.
    Exact(DnsName),
    /// Matches any name with one more label in front of this one.
    Wildcard(DnsName),
}

impl NamePattern {
    /// Parses a pattern; the name part is normalised like [`DnsName::parse`].
    pub fn parse(input: &str) -> Result<Self, PatternError> {
        let name_err = |source| PatternError::Name {
            pattern: input.to_owned(),
            source,
        };
        match input.strip_prefix("*.") {
            Some(rest) => {
                if rest.contains('*') {
                    return Err(PatternError::MisplacedWildcard {
                        pattern: input.to_owned(),
                    });
                }
                let base = DnsName::parse(rest).map_err(name_err)?;
                if base.label_count() < 2 {
                    return Err(PatternError::TooBroad {
                        pattern: input.to_owned(),
                    });
                }
                Ok(NamePattern::Wildcard(base))
            }
            None if input.contains('*') => Err(PatternError::MisplacedWildcard {
                pattern: input.to_owned(),
            }),
            None => DnsName::parse(input)
                .map(NamePattern::Exact)
                .map_err(name_err),
        }
    }

    /// Whether `name` is covered by this pattern.
    pub fn matches(&self, name: &DnsName) -> bool {
        self.matches_canonical(name.as_str())
    }

    /// Like [`matches`](Self::matches) for a name already in canonical form
    /// (see [`crate::name::canonical_lookup_key`]).
    pub fn matches_canonical(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(exact) => exact.as_str() == name,
            NamePattern::Wildcard(base) => name
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == base.as_str()),
        }
    }

    /// Whether this is a wildcard pattern.
    pub fn is_wildcard(&self) -> bool {
        matches!(self, NamePattern::Wildcard(_))
    }

    /// The exact name, or the base name a wildcard stands above.
    pub fn base(&self) -> &DnsName {
        match self {
            NamePattern::Exact(n) | NamePattern::Wildcard(n) => n,
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Exact(n) => f.write_str(n.as_str()),
            NamePattern::Wildcard(n) => write!(f, "*.{n}"),
        }
    }
}

impl fmt::Debug for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NamePattern({self})")
    }
}

impl FromStr for NamePattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<DnsName> for NamePattern {
    fn from(name: DnsName) -> Self {
        NamePattern::Exact(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> DnsName {
        DnsName::parse(s).unwrap()
    }

    #[test]
    fn wildcard_rules() {
        let p = NamePattern::parse("*.example.com").unwrap();
        assert!(p.matches(&n("a.example.com")));
        assert!(p.matches(&n("A.EXAMPLE.COM.")));
        assert!(!p.matches(&n("example.com")));
        assert!(!p.matches(&n("a.b.example.com")));
        assert!(!p.matches(&n("aexample.com")));
        assert!(matches!(
            NamePattern::parse("w*.example.com"),
            Err(PatternError::MisplacedWildcard { .. })
        ));
        assert!(matches!(
            NamePattern::parse("a.*.example.com"),
            Err(PatternError::MisplacedWildcard { .. })
        ));
        assert!(matches!(
            NamePattern::parse("*.*.example.com"),
            Err(PatternError::MisplacedWildcard { .. })
        ));
        assert!(matches!(
            NamePattern::parse("*.com"),
            Err(PatternError::TooBroad { .. })
        ));
        assert!(matches!(
            NamePattern::parse("*"),
            Err(PatternError::MisplacedWildcard { .. })
        ));
        assert!(matches!(
            NamePattern::parse("*."),
            Err(PatternError::Name { .. })
        ));
        assert_eq!(
            NamePattern::parse("*.Bücher.example").unwrap().to_string(),
            "*.xn--bcher-kva.example"
        );
    }

    /// The plain reference: label lists compared one by one.
    fn reference_match(pattern: &str, name: &str) -> bool {
        let p: Vec<String> = pattern.split('.').map(str::to_ascii_lowercase).collect();
        let n: Vec<String> = name.split('.').map(str::to_ascii_lowercase).collect();
        if p.len() != n.len() {
            return false;
        }
        p.iter()
            .zip(&n)
            .enumerate()
            .all(|(i, (pl, nl))| (i == 0 && pl == "*") || pl == nl)
    }

    fn label() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("Mx".to_owned()),
            "[a-z0-9]{1,3}",
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(label(), 1..5).prop_map(|v| v.join("."))
    }

    proptest! {
        #[test]
        fn matcher_agrees_with_reference(base in name(), candidate in name(), wild in any::<bool>()) {
            let pattern = if wild { format!("*.{base}") } else { base.clone() };
            let (Ok(p), Ok(c)) = (NamePattern::parse(&pattern), DnsName::parse(&candidate)) else {
                // Refused inputs (numeric top label, too-broad wildcard) are not compared.
                return Ok(());
            };
            prop_assert_eq!(p.matches(&c), reference_match(&pattern, &candidate));
        }

        #[test]
        fn wildcard_never_matches_its_apex(base in name()) {
            if let (Ok(p), Ok(apex)) = (NamePattern::parse(&format!("*.{base}")), DnsName::parse(&base)) {
                prop_assert!(!p.matches(&apex));
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = NamePattern::parse(&s);
            let _ = DnsName::parse(&s);
        }

        /// The allocation-free SNI fast path agrees with the full parser, and
        /// canonical forms are fixed points.
        #[test]
        fn lookup_key_agrees_with_parse(s in "[a-zA-Z0-9.\\-_*]{0,30}|\\PC{0,20}") {
            let parsed = DnsName::parse(&s);
            let key = crate::name::canonical_lookup_key(&s);
            match (&parsed, &key) {
                (Ok(n), Some(k)) => prop_assert_eq!(n.as_str(), k.as_ref()),
                (Err(_), None) => {}
                _ => prop_assert!(false, "disagree on {:?}: {:?} vs {:?}", s, parsed, key),
            }
            if let Ok(n) = parsed {
                prop_assert_eq!(DnsName::parse(n.as_str()), Ok(n));
            }
        }
    }
}
