//! SMTP replies for messages the gateway refuses.

use std::fmt;

/// Whether a refusal is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 4.x.x: try again later (the sending server keeps the message queued).
    Transient,
    /// 5.x.x: do not retry (the message is bounced).
    Permanent,
}

/// An enhanced mail system status code (RFC 3463), such as `5.7.5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedStatus {
    /// 4 or 5.
    pub class: StatusClass,
    /// The subject (7: security or policy status).
    pub subject: u16,
    /// The detail.
    pub detail: u16,
}

impl EnhancedStatus {
    /// X.7.5 "Cryptographic failure": a key needed to encrypt (here, a
    /// recipient's certificate) is not available (RFC 3463 §3.8).
    pub const fn cryptographic_failure(class: StatusClass) -> Self {
        EnhancedStatus {
            class,
            subject: 7,
            detail: 5,
        }
    }

    /// The basic SMTP reply code that goes with it: 451 (local error, try
    /// again) or 554 (transaction failed).
    pub fn reply_code(self) -> u16 {
        match self.class {
            StatusClass::Transient => 451,
            StatusClass::Permanent => 554,
        }
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = match self.class {
            StatusClass::Transient => 4,
            StatusClass::Permanent => 5,
        };
        write!(f, "{class}.{}.{}", self.subject, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_reply_code() {
        let t = EnhancedStatus::cryptographic_failure(StatusClass::Transient);
        assert_eq!(t.to_string(), "4.7.5");
        assert_eq!(t.reply_code(), 451);
        let p = EnhancedStatus::cryptographic_failure(StatusClass::Permanent);
        assert_eq!(p.to_string(), "5.7.5");
        assert_eq!(p.reply_code(), 554);
    }
}
