//! MIME around CMS: canonicalisation of the content to sign or encrypt,
//! assembly of multipart/signed and application/pkcs7-mime, and reading
//! them back (through mail-parser).

pub(crate) mod build;
pub(crate) mod canon;
pub(crate) mod parse;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::error::{Error, Result};

/// The base64 of received bodies: the standard alphabet, strictly, with
/// the `=` padding optional (some writers leave it off).
pub(crate) const BASE64_BODY: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes a base64 body (line breaks and other whitespace ignored). A
/// character outside the alphabet is reported with its line and column
/// in `text`; anything else wrong (truncated, misplaced padding) with the
/// decoder's reason.
pub(crate) fn decode_base64_body(text: &[u8], part: &'static str) -> Result<Vec<u8>> {
    let mut compact = Vec::with_capacity(text.len());
    let (mut line, mut column) = (1usize, 0usize);
    for &b in text {
        column += 1;
        if b == b'\n' {
            line += 1;
            column = 0;
            continue;
        }
        if b.is_ascii_whitespace() {
            continue;
        }
        if !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')) {
            return Err(Error::Base64 {
                part,
                detail: format!("{} at line {line}, column {column}", describe_byte(b)),
            });
        }
        compact.push(b);
    }
    BASE64_BODY.decode(&compact).map_err(|e| Error::Base64 {
        part,
        detail: e.to_string(),
    })
}

/// A byte as an error message shows it: the character, or its value.
pub(crate) fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("character {:?}", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}
