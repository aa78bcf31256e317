//! Server objects (RFC 8555 §7.1), parsed leniently: unknown fields are
//! ignored, optional fields default, unknown statuses become `Unknown`.

use serde::{Deserialize, Serialize};

/// The directory (RFC 8555 §7.1.1), plus `renewalInfo` (RFC 9773).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Directory {
    /// newNonce URL.
    pub new_nonce: String,
    /// newAccount URL.
    pub new_account: String,
    /// newOrder URL.
    pub new_order: String,
    /// revokeCert URL.
    #[serde(default)]
    pub revoke_cert: Option<String>,
    /// keyChange URL.
    #[serde(default)]
    pub key_change: Option<String>,
    /// newAuthz URL, for pre-authorisation (RFC 8555 §7.4.1), when offered.
    #[serde(default)]
    pub new_authz: Option<String>,
    /// ACME Renewal Information base URL (RFC 9773), when offered.
    #[serde(default)]
    pub renewal_info: Option<String>,
    /// Metadata.
    #[serde(default)]
    pub meta: DirectoryMeta,
}

/// Directory metadata.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct DirectoryMeta {
    /// The terms of service the account must agree to.
    pub terms_of_service: Option<String>,
    /// The CA's web site.
    pub website: Option<String>,
    /// Whether accounts need External Account Binding.
    pub external_account_required: bool,
    /// Certificate profiles the CA offers, name to description (kept as
    /// JSON: only the names matter here, and odd descriptions must not
    /// break parsing)
    /// (draft-ietf-acme-profiles).
    pub profiles: std::collections::BTreeMap<String, serde_json::Value>,
}

/// An identifier (RFC 8555 §9.7.7); this client orders `dns` only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Identifier {
    /// `dns` (or `ip`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The name.
    pub value: String,
}

impl Identifier {
    /// A `dns` identifier.
    pub fn dns(name: &str) -> Self {
        Identifier {
            kind: "dns".into(),
            value: name.to_owned(),
        }
    }
}

/// Order status (RFC 8555 §7.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OrderStatus {
    /// Authorisations outstanding.
    Pending,
    /// All authorised; finalise now.
    Ready,
    /// Finalised; the CA is issuing.
    Processing,
    /// Issued.
    Valid,
    /// Failed.
    Invalid,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

/// Authorisation and challenge status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AuthzStatus {
    /// Not yet validated.
    Pending,
    /// Validation under way (challenges only).
    Processing,
    /// Validated.
    Valid,
    /// Failed.
    Invalid,
    /// Deactivated by the client.
    Deactivated,
    /// Expired.
    Expired,
    /// Revoked.
    Revoked,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

/// An order (RFC 8555 §7.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Order {
    /// Status.
    pub status: OrderStatus,
    /// When the order expires (RFC 3339).
    #[serde(default)]
    pub expires: Option<String>,
    /// The identifiers ordered.
    #[serde(default)]
    pub identifiers: Vec<Identifier>,
    /// Authorisation URLs.
    #[serde(default)]
    pub authorizations: Vec<String>,
    /// The finalize URL.
    pub finalize: String,
    /// The certificate URL once valid.
    #[serde(default)]
    pub certificate: Option<String>,
    /// Why the order failed.
    #[serde(default)]
    pub error: Option<crate::error::Problem>,
}

/// An authorisation (RFC 8555 §7.1.4).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Authorization {
    /// The identifier.
    pub identifier: Identifier,
    /// Status.
    pub status: AuthzStatus,
    /// Challenges on offer.
    #[serde(default)]
    pub challenges: Vec<Challenge>,
    /// Whether this authorises a wildcard.
    #[serde(default)]
    pub wildcard: bool,
}

/// A challenge (RFC 8555 §7.1.5, §8).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Challenge {
    /// `http-01`, `dns-01`, `tls-alpn-01`, or another.
    #[serde(rename = "type")]
    pub kind: String,
    /// The challenge URL.
    pub url: String,
    /// Status.
    pub status: AuthzStatus,
    /// The token.
    #[serde(default)]
    pub token: Option<String>,
    /// Why validation failed.
    #[serde(default)]
    pub error: Option<crate::error::Problem>,
}

/// An account object (RFC 8555 §7.1.2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct AccountObject {
    /// `valid`, `deactivated` or `revoked`.
    pub status: String,
    /// Contact URIs.
    #[serde(default)]
    pub contact: Vec<String>,
}

/// RFC 9773 renewal information.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RenewalInfo {
    /// The suggested window.
    pub suggested_window: SuggestedWindow,
    /// A page explaining why, if any.
    #[serde(default, rename = "explanationURL")]
    pub explanation_url: Option<String>,
}

/// The suggested renewal window (RFC 9773 §4.2), as RFC 3339 strings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct SuggestedWindow {
    /// Window start.
    pub start: String,
    /// Window end.
    pub end: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lenient_parsing_of_odd_server_objects() {
        let d: Directory = serde_json::from_str(
            r#"{"newNonce":"n","newAccount":"a","newOrder":"o","xyz":{"q":1},
               "meta":{"termsOfService":"t","externalAccountRequired":true,"profiles":{"x":"y"}}}"#,
        )
        .unwrap();
        assert_eq!(d.revoke_cert, None);
        assert!(d.meta.external_account_required);
        let o: Order = serde_json::from_str(
            r#"{"status":"frozen","finalize":"f","identifiers":[{"type":"dns","value":"a"}],"notAfter":"x"}"#,
        )
        .unwrap();
        assert_eq!(o.status, OrderStatus::Unknown);
        let a: Authorization = serde_json::from_str(
            r#"{"identifier":{"type":"dns","value":"a"},"status":"pending",
               "challenges":[{"type":"new-99","url":"u","status":"pending","token":"t","x":null}]}"#,
        )
        .unwrap();
        assert_eq!(a.challenges[0].kind, "new-99");
        assert!(!a.wildcard);
    }
}
