//! Assembly of multipart/signed (RFC 1847, RFC 8551 section 3.5.3) and
//! application/pkcs7-mime (RFC 8551 section 3.2) messages.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};
use crate::mime::canon::base64_lines;

fn boundary() -> Result<String> {
    let mut bytes = [0u8; 12];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Crypto("random boundary"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("----=_smime_{hex}"))
}

pub(crate) fn new_boundary() -> Result<String> {
    boundary()
}

/// The start of a multipart/signed message, up to the first part.
pub(crate) fn multipart_signed_head(outer: &[u8], micalg: &str, b: &str) -> Vec<u8> {
    let mut out = outer.to_vec();
    out.extend_from_slice(
        format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg={micalg}; boundary=\"{b}\"\r\n\r\nThis is an S/MIME signed message\r\n\r\n--{b}\r\n"
        )
        .as_bytes(),
    );
    out
}

/// The end of a multipart/signed message, from after the signed part.
pub(crate) fn multipart_signed_tail(b: &str, signature_der: &[u8]) -> Vec<u8> {
    // The CRLF before the delimiter belongs to the delimiter (RFC 2046
    // section 5.1.1), so the signed bytes are exactly the first part.
    let mut out = format!(
        "\r\n--{b}\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(&base64_lines(signature_der));
    out.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    out
}

/// Builds a multipart/signed message: `outer` headers, then the signed
/// `entity` exactly as signed, then the detached signature.
pub(crate) fn multipart_signed(
    outer: &[u8],
    entity: &[u8],
    signature_der: &[u8],
    micalg: &str,
) -> Result<Vec<u8>> {
    let b = boundary()?;
    let mut out = multipart_signed_head(outer, micalg, &b);
    out.extend_from_slice(entity);
    out.extend_from_slice(&multipart_signed_tail(&b, signature_der));
    Ok(out)
}

/// Builds an application/pkcs7-mime message of the given smime-type.
pub(crate) fn pkcs7_mime(outer: &[u8], smime_type: &str, der: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(der.len() * 4 / 3 + 400);
    out.extend_from_slice(outer);
    out.extend_from_slice(
        format!(
            "MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type={smime_type}; name=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(&base64_lines(der));
    out
}
