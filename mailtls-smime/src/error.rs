//! Errors of the S/MIME engine.
//!
//! Verification does not report a bad signature through [`Error`]: a message
//! that parses but does not verify yields a [`crate::VerifyReport`] saying what
//! held and what failed. [`Error`] is for input that cannot be processed at all
//! and for operations (signing, encryption, decryption) that could not be done.

/// Everything that can go wrong in this crate's engine.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The MIME structure could not be read or built.
    #[error("MIME: {0}")]
    Mime(String),
    /// The message is well-formed MIME but carries no S/MIME object of the
    /// kind the operation needs.
    #[error("not an S/MIME message of the expected kind: {0}")]
    NotSmime(String),
    /// A body declared `Content-Transfer-Encoding: base64` is not valid
    /// base64, so the CMS inside was never looked at.
    #[error("invalid base64 in the {part} body: {detail}")]
    Base64 {
        /// Which body: `signature part`, `application/pkcs7-mime`, ...
        part: &'static str,
        /// What is wrong and where (line and column of the body, or the
        /// decoder's reason).
        detail: String,
    },
    /// A CMS structure could not be decoded or encoded.
    #[error("CMS {structure}: {detail}")]
    Cms {
        /// Which structure failed, e.g. `SignedData` or `SignerInfo`.
        structure: &'static str,
        /// What the decoder or encoder said.
        detail: String,
    },
    /// An algorithm the engine does not implement (or refuses to write).
    #[error("unsupported {what} algorithm {oid}")]
    UnsupportedAlgorithm {
        /// Role of the algorithm: digest, signature, content encryption, ...
        what: &'static str,
        /// Its object identifier, dotted.
        oid: String,
    },
    /// A private key could not be loaded or does not fit its use.
    #[error("private key: {0}")]
    Key(String),
    /// A certificate could not be parsed or does not fit its use.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A cryptographic primitive reported failure.
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
    /// None of the message's recipients is the holder of the given key.
    #[error("no recipient of the message matches the decryption certificate")]
    NoMatchingRecipient,
    /// The content could not be decrypted (wrong key, corrupted or forged
    /// ciphertext). Deliberately says no more, so that it is no oracle.
    #[error("decryption failed")]
    DecryptionFailed,
    /// Reading or writing a stream failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An encryptor was given no recipient.
    #[error("no recipients given")]
    NoRecipients,
}

impl Error {
    pub(crate) fn cms(structure: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Cms {
            structure,
            detail: err.to_string(),
        }
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
