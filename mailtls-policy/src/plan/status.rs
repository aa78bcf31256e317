//! Enhanced mail system status codes (RFC 3463) for the outcomes the plan
//! produces.

use std::fmt;

/// An enhanced status code `class.subject.detail` (RFC 3463 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedStatus {
    class: u8,
    subject: u16,
    detail: u16,
}

impl EnhancedStatus {
    /// 5.7.30: REQUIRETLS support required (RFC 8689 §6.3, registered in
    /// the IANA enhanced status code registry).
    pub const REQUIRETLS_REQUIRED: Self = Self::new_unchecked(5, 7, 30);
    /// 4.7.5: cryptographic failure, temporary (RFC 5248): DANE or MTA-STS
    /// could not be satisfied now, try again later.
    pub const CRYPTO_FAILURE_TEMPORARY: Self = Self::new_unchecked(4, 7, 5);
    /// 5.7.5: cryptographic failure, permanent.
    pub const CRYPTO_FAILURE_PERMANENT: Self = Self::new_unchecked(5, 7, 5);
    /// 4.4.3: directory server failure (DNS trouble; RFC 3463 §3.5).
    pub const DNS_TEMPORARY: Self = Self::new_unchecked(4, 4, 3);
    /// 5.1.10: the recipient domain has a null MX (RFC 7505 §4.2).
    pub const NULL_MX: Self = Self::new_unchecked(5, 1, 10);
    /// 5.1.2: bad destination system address (no such domain).
    pub const NO_SUCH_DOMAIN: Self = Self::new_unchecked(5, 1, 2);
    /// 4.4.4: unable to route (no usable MX left, temporary).
    pub const UNABLE_TO_ROUTE: Self = Self::new_unchecked(4, 4, 4);

    const fn new_unchecked(class: u8, subject: u16, detail: u16) -> Self {
        Self {
            class,
            subject,
            detail,
        }
    }

    /// Builds a code, refusing a class other than 2, 4 or 5 (RFC 3463 §3.1)
    /// and numbers longer than three digits (RFC 3463 §2).
    pub fn new(class: u8, subject: u16, detail: u16) -> Option<Self> {
        (matches!(class, 2 | 4 | 5) && subject <= 999 && detail <= 999)
            .then_some(Self::new_unchecked(class, subject, detail))
    }

    /// Whether the failure is permanent (class 5).
    pub fn is_permanent(self) -> bool {
        self.class == 5
    }

    /// The class digit.
    pub fn class(self) -> u8 {
        self.class
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_print_and_classify() {
        assert_eq!(EnhancedStatus::REQUIRETLS_REQUIRED.to_string(), "5.7.30");
        assert!(EnhancedStatus::REQUIRETLS_REQUIRED.is_permanent());
        assert!(!EnhancedStatus::CRYPTO_FAILURE_TEMPORARY.is_permanent());
        assert_eq!(EnhancedStatus::new(3, 1, 1), None);
        assert_eq!(
            EnhancedStatus::new(4, 7, 5),
            Some(EnhancedStatus::CRYPTO_FAILURE_TEMPORARY)
        );
    }
}
