//! Recognising the S/MIME layer of a received message (via mail-parser).

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders};

use crate::error::{Error, Result};
use crate::mime::canon::{field_name, header_fields, split_header_body};

/// The S/MIME layer found at the top of a message.
pub(crate) enum Layer {
    /// multipart/signed: the first part's raw bytes and the signature DER.
    Detached {
        content: Vec<u8>,
        signature: Vec<u8>,
    },
    /// application/pkcs7-mime (or a .p7m attachment): the CMS DER/BER.
    Opaque { cms: Vec<u8> },
    /// No S/MIME layer.
    Plain,
}

/// A parsed received message.
pub(crate) struct Received {
    pub(crate) layer: Layer,
    /// Addresses of the From and Sender fields.
    pub(crate) from: Vec<String>,
    /// Header fields other than Content-* and MIME-Version, CRLF-ended.
    pub(crate) outer: Vec<u8>,
}

pub(crate) fn is_type(part: &MessagePart<'_>, ctype: &str, subtypes: &[&str]) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype)
            && ct
                .subtype()
                .is_some_and(|s| subtypes.iter().any(|w| s.eq_ignore_ascii_case(w)))
    })
}

pub(crate) fn file_name_ends(part: &MessagePart<'_>, ext: &str) -> bool {
    let name = part
        .attachment_name()
        .or_else(|| part.content_type().and_then(|ct| ct.attribute("name")));
    name.is_some_and(|n| n.to_ascii_lowercase().ends_with(ext))
}

pub(crate) fn is_octet_stream(part: &MessagePart<'_>) -> bool {
    is_type(part, "application", &["octet-stream"])
}

pub(crate) fn addresses(message: &Message<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for list in [message.from(), message.sender()].into_iter().flatten() {
        for addr in list.iter() {
            if let Some(a) = addr.address() {
                out.push(a.to_string());
            }
        }
    }
    out
}

/// The decoded body of `part` of `raw` (the bytes mail-parser parsed): a
/// base64 body is decoded strictly, so that broken transport encoding is
/// reported as [`Error::Base64`] instead of reaching the BER decoder as
/// garbage (mail-parser skips what it cannot decode).
pub(crate) fn part_body(raw: &[u8], part: &MessagePart<'_>, what: &'static str) -> Result<Vec<u8>> {
    let base64 = part
        .content_transfer_encoding()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("base64"));
    if !base64 {
        return Ok(part.contents().to_vec());
    }
    let body = raw
        .get(part.offset_body as usize..part.offset_end as usize)
        .ok_or_else(|| Error::Mime(format!("{what}: body offsets out of range")))?;
    super::decode_base64_body(body, what)
}

/// Parses a received message and finds its S/MIME layer.
pub(crate) fn parse(raw: &[u8]) -> Result<Received> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| Error::Mime("not a parseable message".into()))?;
    let from = addresses(&message);
    let (head, _) = split_header_body(raw);
    let outer: Vec<u8> = header_fields(head)
        .into_iter()
        .filter(|f| {
            let n = field_name(f);
            !n.starts_with("content-") && n != "mime-version"
        })
        .collect::<Vec<_>>()
        .concat();
    let root = message.root_part();
    let layer = if is_type(root, "multipart", &["signed"]) {
        let ids = root
            .sub_parts()
            .ok_or_else(|| Error::Mime("multipart/signed without parts".into()))?;
        let (Some(&first), Some(&second)) = (ids.first(), ids.get(1)) else {
            return Err(Error::Mime(
                "multipart/signed needs exactly two parts".into(),
            ));
        };
        let first = message
            .part(first)
            .ok_or_else(|| Error::Mime("multipart/signed: first part missing".into()))?;
        let sig = message
            .part(second)
            .ok_or_else(|| Error::Mime("multipart/signed: signature part missing".into()))?;
        if !(is_type(
            sig,
            "application",
            &["pkcs7-signature", "x-pkcs7-signature"],
        ) || (is_octet_stream(sig) && file_name_ends(sig, ".p7s")))
        {
            return Err(Error::NotSmime(
                "second part of multipart/signed is not a PKCS #7 signature".into(),
            ));
        }
        let start = first.offset_header as usize;
        let end = first.offset_end as usize;
        let content = raw
            .get(start..end)
            .ok_or_else(|| Error::Mime("multipart/signed: part offsets out of range".into()))?;
        Layer::Detached {
            // mail-parser's part end already leaves out the line end that
            // belongs to the next delimiter.
            content: content.to_vec(),
            signature: part_body(raw, sig, "signature part")?,
        }
    } else if is_type(root, "application", &["pkcs7-mime", "x-pkcs7-mime"])
        || (is_octet_stream(root) && file_name_ends(root, ".p7m"))
    {
        Layer::Opaque {
            cms: part_body(raw, root, "application/pkcs7-mime")?,
        }
    } else {
        Layer::Plain
    };
    Ok(Received { layer, from, outer })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_content_is_the_exact_first_part() {
        let m = b"From: a@b.c\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\nline\r\n\r\n--XX\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--XX--\r\n";
        let r = parse(m).unwrap();
        let Layer::Detached { content, signature } = r.layer else {
            panic!("not detached")
        };
        assert_eq!(
            String::from_utf8_lossy(&content),
            "Content-Type: text/plain\r\n\r\nline\r\n"
        );
        assert_eq!(signature, [0, 1, 2]);
        assert_eq!(r.from, ["a@b.c"]);
    }
}
