//! Co-signing: a further SignerInfo on a message someone already signed
//! (what `openssl cms -resign` does), detached or opaque.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{CertificateSet, SignedData, SignerInfos};
use der::asn1::{Any, OctetString};
use der::{Decode, Encode};

use crate::algorithms::{ATTR_MESSAGE_DIGEST, DigestAlgorithm, ID_SIGNED_DATA};
use crate::ber;
use crate::error::{Error, Result};
use crate::mime::build;
use crate::mime::canon::to_crlf;
use crate::mime::parse::{self, Layer};
use crate::sign::{Signer, set_of};
use crate::verify::{attr_value, econtent, signed_data};

impl Signer {
    /// Adds this signer's SignerInfo (and its co-signers') to a message
    /// that is already signed, in the form it has (multipart/signed or
    /// opaque signed-data), keeping the existing signatures untouched:
    /// their certificates and digest algorithms are merged with this
    /// signer's, and multipart/signed gets the combined `micalg`.
    ///
    /// The existing signatures are not verified (a co-signer vouches for
    /// the content, not for them), but their messageDigest must match the
    /// content: a signature over other bytes is refused, as there would
    /// be no telling which content the new signature covers. The message
    /// is read whole (the streaming API does not co-sign).
    pub fn cosign_message(&self, message: &[u8]) -> Result<Vec<u8>> {
        let received = parse::parse(message)?;
        match received.layer {
            Layer::Detached { content, signature } => {
                let der = ber::to_der(&signature)?;
                let sd = signed_data(&der)?;
                // The signed bytes: canonical CRLF (what RFC 8551 signers
                // hash), or exactly as received when that is what the
                // existing signature covers (an LF-only store).
                let canonical = to_crlf(&content);
                let signed = if covers(&sd, &canonical)? {
                    canonical
                } else if covers(&sd, &content)? {
                    content
                } else {
                    return Err(not_covered());
                };
                let (der, micalg) = self.add_signer_infos(sd, &signed)?;
                build::multipart_signed(&received.outer, &signed, &der, &micalg)
            }
            Layer::Opaque { cms } => {
                let der = ber::to_der(&cms)?;
                let sd = signed_data(&der)?;
                let content = econtent(&sd)?;
                if !covers(&sd, &content)? {
                    return Err(not_covered());
                }
                let (der, _) = self.add_signer_infos(sd, &content)?;
                Ok(build::pkcs7_mime(&received.outer, "signed-data", &der))
            }
            Layer::Plain => Err(Error::NotSmime("the message is not signed".into())),
        }
    }

    /// The SignedData with this signer's SignerInfos added over `content`,
    /// as a DER ContentInfo, and the `micalg` of all its digests.
    fn add_signer_infos(&self, mut sd: SignedData, content: &[u8]) -> Result<(Vec<u8>, String)> {
        let digests: Vec<(DigestAlgorithm, Vec<u8>)> = self
            .digest_algorithms()
            .into_iter()
            .map(|d| (d, d.digest(content)))
            .collect();
        let mut infos = sd.signer_infos.0.into_vec();
        infos.extend(self.signer_infos(&digests)?.0.into_vec());
        sd.signer_infos = SignerInfos(set_of(infos, "signerInfos")?);

        let mut algs = sd.digest_algorithms.into_vec();
        for d in self.digest_algorithms() {
            if !algs.iter().any(|a| a.oid == d.oid()) {
                algs.push(d.identifier());
            }
        }
        let micalg: Vec<&str> = algs
            .iter()
            .filter_map(|a| DigestAlgorithm::from_oid(&a.oid).ok())
            .map(DigestAlgorithm::micalg)
            .collect();
        let micalg = match micalg.as_slice() {
            [one] => (*one).to_owned(),
            many => format!("\"{}\"", many.join(",")),
        };
        sd.digest_algorithms = set_of(algs, "digestAlgorithms")?;

        let mut certs: Vec<CertificateChoices> = sd
            .certificates
            .take()
            .map(|c| c.0.into_vec())
            .unwrap_or_default();
        for c in self.certificate_set()?.0.into_vec() {
            if !certs.contains(&c) {
                certs.push(c);
            }
        }
        sd.certificates = Some(CertificateSet(set_of(certs, "certificates")?));

        let info = ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: Any::encode_from(&sd).map_err(|e| Error::cms("SignedData", e))?,
        };
        let der = info.to_der().map_err(|e| Error::cms("ContentInfo", e))?;
        Ok((der, micalg))
    }
}

/// Whether every existing signer with a messageDigest in a digest this
/// engine reads has it over `content` (and at least one has).
fn covers(sd: &SignedData, content: &[u8]) -> Result<bool> {
    let mut checked = 0;
    for si in sd.signer_infos.0.iter() {
        let Ok(alg) = DigestAlgorithm::from_oid(&si.digest_alg.oid) else {
            continue;
        };
        let Some(md) = attr_value(si, ATTR_MESSAGE_DIGEST) else {
            continue;
        };
        let md = OctetString::from_der(&md.to_der().map_err(|e| Error::cms("messageDigest", e))?)
            .map_err(|e| Error::cms("messageDigest", e))?;
        if md.as_bytes() != alg.digest(content) {
            return Ok(false);
        }
        checked += 1;
    }
    Ok(checked > 0)
}

fn not_covered() -> Error {
    Error::NotSmime(
        "the existing signature is not over this content (or has no messageDigest this \
         engine reads): refusing to co-sign"
            .into(),
    )
}
