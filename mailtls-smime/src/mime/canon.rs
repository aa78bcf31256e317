//! Canonical form of a MIME entity before it is signed or encrypted
//! (RFC 8551 section 3.1): CRLF line ends, and for signing a 7-bit transfer
//! encoding so that relays cannot alter the signed bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};

/// Converts bare LF (and bare CR) line ends to CRLF.
pub(crate) fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// A message split into the headers that stay outside the S/MIME layer
/// and the MIME entity (Content-* headers and body) that goes inside.
pub(crate) struct SplitMessage {
    /// Header fields other than Content-* and MIME-Version, CRLF-terminated.
    pub(crate) outer: Vec<u8>,
    /// The MIME entity, CRLF line ends.
    pub(crate) entity: Vec<u8>,
}

/// Splits a header block and body at the first empty line.
pub(crate) fn split_header_body(data: &[u8]) -> (&[u8], &[u8]) {
    if data.starts_with(b"\r\n") {
        return (&[], &data[2..]);
    }
    if data.starts_with(b"\n") {
        return (&[], &data[1..]);
    }
    let mut i = 0;
    while let Some(off) = data[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let rest = &data[nl + 1..];
        if rest.starts_with(b"\r\n") {
            return (&data[..nl + 1], &rest[2..]);
        }
        if rest.starts_with(b"\n") {
            return (&data[..nl + 1], &rest[1..]);
        }
        i = nl + 1;
    }
    (data, &[])
}

/// Header fields of a block, each with its continuation lines, CRLF-ended.
pub(crate) fn header_fields(block: &[u8]) -> Vec<Vec<u8>> {
    let block = to_crlf(block);
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in block.split_inclusive(|&b| b == b'\n') {
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        match fields.last_mut() {
            Some(last) if continuation => last.extend_from_slice(line),
            _ => fields.push(line.to_vec()),
        }
    }
    fields
}

pub(crate) fn field_name(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end])
        .trim()
        .to_ascii_lowercase()
}

fn is_mime_field(name: &str) -> bool {
    name.starts_with("content-")
}

fn needs_7bit(body: &[u8]) -> bool {
    body.iter().any(|&b| b >= 0x80 || b == 0) || body.split(|&b| b == b'\n').any(|l| l.len() > 998)
}

/// Splits `message` into outer headers and the entity to protect. With
/// `seven_bit`, an 8-bit or long-lined single-part body is re-encoded as
/// base64 (a multipart body with 8-bit data is refused: its parts would have
/// to be re-encoded one by one).
pub(crate) fn split_message(message: &[u8], seven_bit: bool) -> Result<SplitMessage> {
    let (head, body) = split_header_body(message);
    let mut outer = Vec::new();
    let mut content = Vec::new();
    let mut multipart = false;
    let mut has_type = false;
    for field in header_fields(head) {
        let name = field_name(&field);
        if name == "mime-version" {
            continue;
        }
        if is_mime_field(&name) {
            if name == "content-type" {
                has_type = true;
                multipart = String::from_utf8_lossy(&field)
                    .to_ascii_lowercase()
                    .contains("multipart/");
            }
            content.push(field);
        } else {
            outer.extend_from_slice(&field);
        }
    }
    if !has_type {
        content.insert(
            0,
            b"Content-Type: text/plain; charset=us-ascii\r\n".to_vec(),
        );
    }
    // A binary body has no lines: it is carried as is (and as base64 when
    // 7-bit is needed).
    let binary = content.iter().any(|f| {
        field_name(f) == "content-transfer-encoding"
            && String::from_utf8_lossy(f)
                .to_ascii_lowercase()
                .contains("binary")
    });
    let mut body = if binary { body.to_vec() } else { to_crlf(body) };
    if seven_bit && (binary || needs_7bit(&body)) {
        if multipart {
            return Err(Error::Mime(
                "multipart body with 8-bit or over-long lines: encode its parts as 7-bit before signing"
                    .into(),
            ));
        }
        content.retain(|f| field_name(f) != "content-transfer-encoding");
        content.push(b"Content-Transfer-Encoding: base64\r\n".to_vec());
        body = base64_lines(&body);
    }
    let mut entity = content.concat();
    entity.extend_from_slice(b"\r\n");
    entity.extend_from_slice(&body);
    Ok(SplitMessage { outer, entity })
}

/// Base64 with 76-character CRLF-terminated lines (RFC 2045 section 6.8).
pub(crate) fn base64_lines(data: &[u8]) -> Vec<u8> {
    let text = STANDARD.encode(data);
    let mut out = Vec::with_capacity(text.len() + text.len() / 38 + 2);
    for chunk in text.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lf_becomes_crlf() {
        assert_eq!(to_crlf(b"a\nb\r\nc\r"), b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn split_moves_content_headers_inside() {
        let m = b"From: a@example.org\nSubject: hi\n  there\nContent-Type: text/plain\nMIME-Version: 1.0\n\nbody\n";
        let s = split_message(m, true).unwrap();
        assert_eq!(
            s.outer,
            b"From: a@example.org\r\nSubject: hi\r\n  there\r\n"
        );
        assert_eq!(s.entity, b"Content-Type: text/plain\r\n\r\nbody\r\n");
    }

    #[test]
    fn eight_bit_single_part_is_base64_encoded() {
        let m =
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße\n";
        let s = split_message(m.as_bytes(), true).unwrap();
        let text = String::from_utf8(s.entity).unwrap();
        assert!(text.contains("Content-Transfer-Encoding: base64\r\n"));
        assert!(!text.contains("8bit"));
        assert!(text.ends_with("R3LDvMOfZQ0K\r\n"), "{text}");
    }

    #[test]
    fn missing_content_type_gets_the_default() {
        let s = split_message(b"From: a@b.c\n\nx", true).unwrap();
        assert!(
            s.entity
                .starts_with(b"Content-Type: text/plain; charset=us-ascii\r\n\r\nx")
        );
    }
}
