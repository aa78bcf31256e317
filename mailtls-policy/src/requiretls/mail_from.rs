//! The `REQUIRETLS` MAIL FROM parameter, as a receiving MTA sees it.

/// Why the MAIL FROM parameters cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailFromError {
    /// REQUIRETLS on a session without TLS: the extension is advertised only
    /// after STARTTLS (RFC 8689 §4.1), so the client must not use it here.
    #[error("REQUIRETLS given on a session without TLS (reply 530 5.7.0)")]
    NotOverTls,
    /// `REQUIRETLS=...`: the parameter takes no value (RFC 8689 §4.1).
    #[error("the REQUIRETLS parameter takes no value, got {value:?} (reply 501 5.5.4)")]
    UnexpectedValue {
        /// The value given.
        value: String,
    },
    /// REQUIRETLS given twice.
    #[error("REQUIRETLS given more than once (reply 501 5.5.4)")]
    Repeated,
}

impl MailFromError {
    /// The SMTP reply code and enhanced status the server should answer with.
    pub fn reply(&self) -> (u16, &'static str) {
        match self {
            Self::NotOverTls => (530, "5.7.0"),
            Self::UnexpectedValue { .. } | Self::Repeated => (501, "5.5.4"),
        }
    }
}

/// Looks for `REQUIRETLS` among the ESMTP parameters that follow
/// `MAIL FROM:<path>` (space-separated `keyword[=value]`, keywords
/// case-insensitive per RFC 5321 §4.1.2). `tls_active` says whether the
/// session is protected by TLS.
///
/// Returns whether the flag is set; other parameters are left to the caller.
pub fn requiretls_parameter(params: &str, tls_active: bool) -> Result<bool, MailFromError> {
    let mut found = false;
    for param in params.split_ascii_whitespace() {
        let (keyword, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        if !keyword.eq_ignore_ascii_case("REQUIRETLS") {
            continue;
        }
        if let Some(v) = value {
            return Err(MailFromError::UnexpectedValue {
                value: v.to_owned(),
            });
        }
        if found {
            return Err(MailFromError::Repeated);
        }
        found = true;
    }
    if found && !tls_active {
        return Err(MailFromError::NotOverTls);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_is_found_case_insensitively_among_others() {
        assert_eq!(
            requiretls_parameter("SIZE=1000 requiretls BODY=8BITMIME", true),
            Ok(true)
        );
        assert_eq!(
            requiretls_parameter("SIZE=1000 BODY=8BITMIME", true),
            Ok(false)
        );
        assert_eq!(requiretls_parameter("", false), Ok(false));
        // A parameter that merely starts with the word is a different keyword.
        assert_eq!(requiretls_parameter("REQUIRETLSX", true), Ok(false));
    }

    #[test]
    fn misuse_is_refused_with_the_right_reply() {
        let e = requiretls_parameter("REQUIRETLS", false).unwrap_err();
        assert_eq!(e, MailFromError::NotOverTls);
        assert_eq!(e.reply(), (530, "5.7.0"));
        let e = requiretls_parameter("REQUIRETLS=yes", true).unwrap_err();
        assert_eq!(e.reply(), (501, "5.5.4"));
        assert_eq!(
            requiretls_parameter("REQUIRETLS REQUIRETLS", true),
            Err(MailFromError::Repeated)
        );
    }
}
