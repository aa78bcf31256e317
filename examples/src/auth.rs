//! Accounts and the SASL PLAIN mechanism shared by SMTP AUTH, IMAP LOGIN and
//! POP3 USER/PASS.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::config::User;

/// Why a SASL PLAIN response was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Not base64.
    #[error("the response is not base64")]
    NotBase64,
    /// Not `authzid NUL authcid NUL password` in UTF-8.
    #[error("the response is not a PLAIN message (authzid NUL authcid NUL password)")]
    Malformed,
}

/// The decoded PLAIN credentials (RFC 4616).
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// Who to act as; empty means the same as `authcid`.
    pub authzid: String,
    /// Who is logging in.
    pub authcid: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .finish_non_exhaustive()
    }
}

/// Decodes a base64 SASL PLAIN response.
pub fn decode_plain(base64_response: &str) -> Result<PlainCredentials, AuthError> {
    let bytes = STANDARD
        .decode(base64_response.trim())
        .map_err(|_| AuthError::NotBase64)?;
    let text = String::from_utf8(bytes).map_err(|_| AuthError::Malformed)?;
    let mut parts = text.split('\0');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(authzid), Some(authcid), Some(password), None) if !authcid.is_empty() => {
            Ok(PlainCredentials {
                authzid: authzid.to_owned(),
                authcid: authcid.to_owned(),
                password: password.to_owned(),
            })
        }
        _ => Err(AuthError::Malformed),
    }
}

/// The accounts from `[[users]]`.
#[derive(Clone, Default)]
pub struct Users {
    by_name: HashMap<String, String>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("count", &self.by_name.len())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// The accounts of a configuration.
    pub fn new(users: &[User]) -> Self {
        Users {
            by_name: users
                .iter()
                .map(|u| (u.name.clone(), u.password.clone()))
                .collect(),
        }
    }

    /// Whether `name` exists and `password` is its password. The comparison
    /// takes the same time whether or not the name exists or how much of the
    /// password matches, so timing says nothing about either.
    pub fn verify(&self, name: &str, password: &str) -> bool {
        match self.by_name.get(name) {
            Some(expected) => constant_time_eq(expected.as_bytes(), password.as_bytes()),
            None => {
                let _ = constant_time_eq(password.as_bytes(), password.as_bytes());
                false
            }
        }
    }

    /// Checks PLAIN credentials: the password must match, and the client may
    /// not ask to act as somebody else.
    pub fn verify_plain(&self, c: &PlainCredentials) -> bool {
        let ok = self.verify(&c.authcid, &c.password);
        ok && (c.authzid.is_empty() || c.authzid == c.authcid)
    }

    /// Whether no account is configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_round_trip() {
        let users = Users::new(&[User {
            name: "test".into(),
            password: "test".into(),
        }]);
        let c = decode_plain(&STANDARD.encode("\0test\0test")).unwrap();
        assert!(users.verify_plain(&c));
        let c = decode_plain(&STANDARD.encode("other\0test\0test")).unwrap();
        assert!(!users.verify_plain(&c));
        let c = decode_plain(&STANDARD.encode("\0test\0tesT")).unwrap();
        assert!(!users.verify_plain(&c));
        assert_eq!(decode_plain("!!"), Err(AuthError::NotBase64));
        assert_eq!(
            decode_plain(&STANDARD.encode("test")),
            Err(AuthError::Malformed)
        );
        assert!(!users.verify("nobody", "test"));
        assert!(!users.verify("test", "tes"));
        assert!(!users.verify("test", "testt"));
    }
}
