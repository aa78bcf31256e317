//! Opening a received message layer by layer: decrypt, verify, and recurse
//! into what is inside (sign-then-encrypt, triple wrap).

use cms::content_info::ContentInfo;
use der::Decode;

use crate::algorithms::{ID_AUTH_ENVELOPED_DATA, ID_ENVELOPED_DATA, ID_SIGNED_DATA};
use crate::ber;
use crate::decrypt::{ContentCipher, Decryptor};
use crate::error::{Error, Result};
use crate::mime::parse::{self, Layer};
use crate::verify::{Verifier, VerifyReport};

/// More nested S/MIME layers than this are refused (triple wrap is 3).
const MAX_LAYERS: usize = 8;

/// One S/MIME layer removed while opening a message, outermost first.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum OpenedLayer {
    /// A signature layer and what its verification found.
    Signed(VerifyReport),
    /// An encryption layer and its content cipher.
    Encrypted(ContentCipher),
}

/// A message with its S/MIME layers removed.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The innermost message (outer headers and the plain MIME entity).
    pub message: Vec<u8>,
    /// The layers removed, outermost first.
    pub layers: Vec<OpenedLayer>,
}

impl Opened {
    /// Whether some layer was a signature and every signature layer verified.
    pub fn is_signed_and_valid(&self) -> bool {
        let mut signed = false;
        for l in &self.layers {
            if let OpenedLayer::Signed(r) = l {
                if !r.is_valid() {
                    return false;
                }
                signed = true;
            }
        }
        signed
    }

    /// Whether some layer was encrypted.
    pub fn was_encrypted(&self) -> bool {
        self.layers
            .iter()
            .any(|l| matches!(l, OpenedLayer::Encrypted(_)))
    }
}

/// Removes every S/MIME layer of `message`: each encrypted layer with the
/// first of `decryptors` that is a recipient, each signed layer through
/// `verifier`. A message without S/MIME comes back unchanged with no
/// layers. Encrypted for none of `decryptors`: [`Error::NoMatchingRecipient`].
pub fn open(message: &[u8], verifier: &Verifier, decryptors: &[Decryptor]) -> Result<Opened> {
    let mut current = message.to_vec();
    let mut layers = Vec::new();
    for _ in 0..MAX_LAYERS {
        let received = parse::parse(&current)?;
        let encrypted = match &received.layer {
            Layer::Plain => {
                return Ok(Opened {
                    message: current,
                    layers,
                });
            }
            Layer::Detached { .. } => false,
            Layer::Opaque { cms } => {
                let der = ber::to_der(cms)?;
                let ci = ContentInfo::from_der(&der).map_err(|e| Error::cms("ContentInfo", e))?;
                match ci.content_type {
                    t if t == ID_SIGNED_DATA => false,
                    t if t == ID_ENVELOPED_DATA || t == ID_AUTH_ENVELOPED_DATA => true,
                    t => {
                        return Err(Error::NotSmime(format!("unsupported CMS content type {t}")));
                    }
                }
            }
        };
        if encrypted {
            let mut opened = None;
            for d in decryptors {
                match d.decrypt_message(&current) {
                    Err(Error::NoMatchingRecipient) => continue,
                    other => {
                        opened = Some(other?);
                        break;
                    }
                }
            }
            let d = opened.ok_or(Error::NoMatchingRecipient)?;
            layers.push(OpenedLayer::Encrypted(d.cipher));
            current = d.message();
        } else {
            let v = verifier.verify_message(&current)?;
            layers.push(OpenedLayer::Signed(v.report.clone()));
            current = v.message();
        }
    }
    Err(Error::NotSmime(format!(
        "more than {MAX_LAYERS} nested S/MIME layers"
    )))
}
