//! DKIM signing (RFC 6376) of report mails, relaxed/relaxed, with
//! `rsa-sha256` or `ed25519-sha256` (RFC 8463), through the crate's crypto
//! provider.
//!
//! Only signing is needed here (RFC 8460 §5.3 asks senders to sign report
//! mails), and it is a few dozen lines over the provider's RSA and Ed25519
//! keys; a full DKIM library would bring its own DNS resolver along.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_pki_types::PrivateKeyDer;

use crate::crypto::{SigningKey, sha256};

/// Canonicalizes one header field (`Name: value`, possibly folded) by the
/// relaxed algorithm (RFC 6376 §3.4.2), without the final CRLF.
fn relaxed_header(raw: &[u8]) -> Vec<u8> {
    let colon = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
    let (name, value) = raw.split_at(colon);
    let mut out: Vec<u8> = name
        .iter()
        .filter(|b| !b.is_ascii_whitespace())
        .map(u8::to_ascii_lowercase)
        .collect();
    out.push(b':');
    let value = value.get(1..).unwrap_or_default();
    let mut pending_space = false;
    for &b in value {
        match b {
            // Unfolding removes CR and LF; the WSP after them stays and is
            // compressed with its neighbours.
            b'\r' | b'\n' => {}
            b' ' | b'\t' => pending_space = true,
            _ => {
                // WSP right after the colon is dropped.
                if pending_space && out.last() != Some(&b':') {
                    out.push(b' ');
                }
                pending_space = false;
                out.push(b);
            }
        }
    }
    out
}

/// Canonicalizes a body by the relaxed algorithm (RFC 6376 §3.4.4): WSP
/// runs to one space, none at line ends, no empty lines at the end, and a
/// final CRLF on a non-empty body.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut out = Vec::with_capacity(line.len());
        let mut pending_space = false;
        for &b in line {
            if b == b' ' || b == b'\t' {
                pending_space = true;
            } else {
                if pending_space {
                    out.push(b' ');
                }
                pending_space = false;
                out.push(b);
            }
        }
        lines.push(out);
    }
    // The split leaves one empty piece after a final newline; that and any
    // other empty lines at the end go.
    while lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    let mut out = Vec::with_capacity(body.len());
    for line in lines {
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Splits a message into its header fields (each with its folded
/// continuation lines, without the final line break) and its body.
fn split_message(message: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    let mut field_start: Option<usize> = None;
    while pos < message.len() {
        let end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if content.is_empty() {
            if let Some(start) = field_start.take() {
                fields.push(trim_line_end(&message[start..pos]));
            }
            return (fields, &message[end..]);
        }
        if !matches!(content.first(), Some(b' ' | b'\t')) {
            if let Some(start) = field_start.take() {
                fields.push(trim_line_end(&message[start..pos]));
            }
            field_start = Some(pos);
        }
        pos = end;
    }
    if let Some(start) = field_start {
        fields.push(trim_line_end(&message[start..]));
    }
    (fields, &[])
}

fn trim_line_end(field: &[u8]) -> &[u8] {
    let field = field.strip_suffix(b"\n").unwrap_or(field);
    field.strip_suffix(b"\r").unwrap_or(field)
}

fn field_name(field: &[u8]) -> &[u8] {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    field[..colon].trim_ascii()
}

/// A DKIM key with its domain and selector; signs whole messages.
pub(crate) struct Signer {
    key: SigningKey,
    domain: String,
    selector: String,
    headers: &'static [&'static str],
}

impl Signer {
    pub(crate) fn new(
        domain: &str,
        selector: &str,
        key: &PrivateKeyDer<'_>,
        headers: &'static [&'static str],
    ) -> Result<Self, String> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        };
        if !valid(domain) {
            return Err(format!("DKIM domain {domain:?} is not a domain name"));
        }
        if !valid(selector) {
            return Err(format!("DKIM selector {selector:?} is not a selector"));
        }
        Ok(Self {
            key: SigningKey::from_der(key)?,
            domain: domain.to_owned(),
            selector: selector.to_owned(),
            headers,
        })
    }

    /// The `DKIM-Signature` header field (with its CRLF) for `message`.
    pub(crate) fn signature_header(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let (fields, body) = split_message(message);
        let body_hash = BASE64.encode(sha256(&relaxed_body(body)));
        // Each listed header that is present, bottom-most instance
        // (RFC 6376 §5.4.2); absent ones are left out of `h=`.
        let mut signed_names = Vec::new();
        let mut input = Vec::new();
        for name in self.headers {
            if let Some(field) = fields
                .iter()
                .rev()
                .find(|f| field_name(f).eq_ignore_ascii_case(name.as_bytes()))
            {
                input.extend_from_slice(&relaxed_header(field));
                input.extend_from_slice(b"\r\n");
                signed_names.push(*name);
            }
        }
        let unsigned = format!(
            "DKIM-Signature: v=1; a={}; c=relaxed/relaxed; d={}; s={};\r\n\th={};\r\n\tbh={};\r\n\tb=",
            self.key.dkim_algorithm(),
            self.domain,
            self.selector,
            signed_names.join(":"),
            body_hash,
        );
        // The signature header itself is hashed last, with an empty `b=`
        // and without its CRLF (RFC 6376 §3.7).
        input.extend_from_slice(&relaxed_header(unsigned.as_bytes()));
        let signature = self.key.sign_dkim(&input)?;
        let mut header = unsigned.into_bytes();
        header.extend_from_slice(BASE64.encode(signature).as_bytes());
        header.extend_from_slice(b"\r\n");
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_canonicalize_as_rfc_6376_section_3_4_5_shows() {
        // RFC 6376 §3.4.5: "A: X" / "B : Y\t\r\n\tZ  " -> "a:X" / "b:Y Z".
        assert_eq!(relaxed_header(b"A: X"), b"a:X");
        assert_eq!(relaxed_header(b"B : Y\t\r\n\tZ  "), b"b:Y Z");
    }

    #[test]
    fn bodies_canonicalize_as_rfc_6376_section_3_4_5_shows() {
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
        assert_eq!(relaxed_body(b"no newline"), b"no newline\r\n");
    }

    #[test]
    fn messages_split_into_folded_fields_and_body() {
        let (fields, body) = split_message(b"A: 1\r\nB: 2\r\n  more\r\n\r\nbody\r\n");
        assert_eq!(fields, vec![&b"A: 1"[..], &b"B: 2\r\n  more"[..]]);
        assert_eq!(body, b"body\r\n");
        let (fields, body) = split_message(b"A: 1\r\n");
        assert_eq!(fields, vec![&b"A: 1"[..]]);
        assert!(body.is_empty());
    }
}
