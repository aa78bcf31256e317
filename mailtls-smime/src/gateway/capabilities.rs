//! What a partner said it can read, as the partner store keeps it: the
//! engine's [`SmimeCapabilities`] (RFC 8551 §2.5.2) plus the signingTime of
//! the signature they came in, so an older signature never replaces what a
//! newer one said. The algorithm vocabulary is the engine's
//! ([`crate::ContentEncryption`], chosen by
//! [`ContentEncryption::choose_common`](crate::ContentEncryption::choose_common));
//! in the snapshot the capabilities are dotted OIDs, unknown ones kept.

use std::time::SystemTime;

use const_oid::ObjectIdentifier;

use crate::SmimeCapabilities;

/// The capabilities a partner advertised in a verified signature, and the
/// signingTime of that signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capabilities {
    /// Advertised algorithms (every OID, known or not), most preferred first.
    #[serde(with = "dotted_oids")]
    pub algorithms: SmimeCapabilities,
    /// signingTime of the signature they came from.
    pub signing_time: SystemTime,
}

/// Serialises [`SmimeCapabilities`] as a list of dotted OID strings.
mod dotted_oids {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(
        caps: &SmimeCapabilities,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(caps.oids().iter().map(|o| o.to_string()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<SmimeCapabilities, D::Error> {
        let strings = Vec::<String>::deserialize(d)?;
        let oids = strings
            .iter()
            .map(|s| {
                ObjectIdentifier::new(s)
                    .map_err(|e| D::Error::custom(format!("capability {s:?} is no OID: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SmimeCapabilities::new(oids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ContentEncryption;

    #[test]
    fn snapshot_form_keeps_unknown_oids() {
        let caps = Capabilities {
            algorithms: SmimeCapabilities::new(vec![
                ContentEncryption::Aes256Gcm.oid(),
                ObjectIdentifier::new_unwrap("1.2.3.4.5"),
            ]),
            signing_time: SystemTime::UNIX_EPOCH,
        };
        let json = serde_json::to_string(&caps).unwrap();
        assert!(json.contains("\"2.16.840.1.101.3.4.1.46\""), "{json}");
        assert!(json.contains("\"1.2.3.4.5\""), "{json}");
        let back: Capabilities = serde_json::from_str(&json).unwrap();
        assert_eq!(back, caps);
        let bad = json.replace("1.2.3.4.5", "not an oid");
        let err = serde_json::from_str::<Capabilities>(&bad).unwrap_err();
        assert!(err.to_string().contains("not an oid"), "{err}");
    }
}
