//! BER to DER normalisation for incoming CMS.
//!
//! `der` reads DER only, but OpenSSL's `-stream` output (and many mail
//! clients') is BER: indefinite lengths and constructed OCTET STRINGs cut in
//! chunks. Everything received is first rewritten here into DER with the same
//! meaning, then decoded with the `cms` types. Signed attributes are DER by
//! RFC 5652 section 5.4, so their bytes are unchanged by this pass.

use std::borrow::Cow;

use crate::error::{Error, Result};

/// Nesting deeper than this is refused (CMS needs about 12; a certificate
/// inside SignedData about 16).
const MAX_DEPTH: usize = 32;

struct Tlv<'a> {
    tag: u8,
    /// Content octets (for an indefinite length: the children, without
    /// the end-of-contents octets).
    content: &'a [u8],
}

/// Converts a BER encoding to DER. Input that already is DER comes back
/// unchanged, and borrowed: rewriting a 10 MB message level by level costs
/// several copies of it, which a read-only check avoids.
pub(crate) fn to_der(input: &[u8]) -> Result<Cow<'_, [u8]>> {
    let mut pos = 0;
    if is_der(input, &mut pos, 0)? && pos == input.len() {
        return Ok(Cow::Borrowed(input));
    }
    let mut pos = 0;
    let mut out = Vec::with_capacity(input.len());
    convert_one(input, &mut pos, &mut out, 0)?;
    Ok(Cow::Owned(out))
}

/// Whether the TLV at `pos` is already what [`convert_tlv`] would write:
/// definite, minimal lengths, no constructed OCTET STRING, and no
/// EncryptedContentInfo-shaped SEQUENCE whose `[0]` is constructed. `false`
/// sends the input through the full conversion, which also reports errors.
fn is_der(input: &[u8], pos: &mut usize, depth: usize) -> Result<bool> {
    if depth > MAX_DEPTH {
        return Ok(false);
    }
    let start = *pos;
    let Ok((tag, Some(len))) = read_header(input, pos) else {
        return Ok(false);
    };
    let Some(end) = pos.checked_add(len).filter(|&e| e <= input.len()) else {
        return Ok(false);
    };
    let mut minimal = Vec::with_capacity(6);
    write_len(&mut minimal, len);
    if *pos - start != 1 + minimal.len() {
        return Ok(false);
    }
    if tag & 0x20 == 0 {
        *pos = end;
        return Ok(true);
    }
    if tag == 0x24 {
        return Ok(false);
    }
    let mut kid_tags = Vec::new();
    while *pos < end {
        kid_tags.push(input.get(*pos).copied().unwrap_or(0));
        if !is_der(&input[..end], pos, depth + 1)? {
            return Ok(false);
        }
    }
    if tag == 0x30 && kid_tags == [0x06, 0x30, 0xa0] {
        return Ok(false);
    }
    Ok(true)
}

fn err(detail: &str, pos: usize) -> Error {
    Error::Cms {
        structure: "BER",
        detail: format!("{detail} at offset {pos}"),
    }
}

fn read_header(input: &[u8], pos: &mut usize) -> Result<(u8, Option<usize>)> {
    let tag = *input.get(*pos).ok_or_else(|| err("truncated tag", *pos))?;
    if tag & 0x1f == 0x1f {
        return Err(err("multi-byte tags are not used by CMS", *pos));
    }
    *pos += 1;
    let first = *input
        .get(*pos)
        .ok_or_else(|| err("truncated length", *pos))?;
    *pos += 1;
    if first < 0x80 {
        return Ok((tag, Some(first as usize)));
    }
    if first == 0x80 {
        if tag & 0x20 == 0 {
            return Err(err("indefinite length on a primitive value", *pos));
        }
        return Ok((tag, None));
    }
    let n = (first & 0x7f) as usize;
    if n > 4 {
        return Err(err("length too large", *pos));
    }
    let mut len = 0usize;
    for _ in 0..n {
        let b = *input
            .get(*pos)
            .ok_or_else(|| err("truncated length", *pos))?;
        len = (len << 8) | b as usize;
        *pos += 1;
    }
    Ok((tag, Some(len)))
}

/// Reads one TLV; for indefinite lengths, finds the end by walking children.
fn read_tlv<'a>(input: &'a [u8], pos: &mut usize, depth: usize) -> Result<Tlv<'a>> {
    if depth > MAX_DEPTH {
        return Err(err("nesting too deep", *pos));
    }
    let (tag, len) = read_header(input, pos)?;
    match len {
        Some(len) => {
            let end = pos
                .checked_add(len)
                .filter(|&e| e <= input.len())
                .ok_or_else(|| err("value runs past the end", *pos))?;
            let content = &input[*pos..end];
            *pos = end;
            Ok(Tlv { tag, content })
        }
        None => {
            let start = *pos;
            loop {
                if input.get(*pos..*pos + 2) == Some(&[0, 0]) {
                    let content = &input[start..*pos];
                    *pos += 2;
                    return Ok(Tlv { tag, content });
                }
                if *pos >= input.len() {
                    return Err(err("missing end-of-contents", *pos));
                }
                read_tlv(input, pos, depth + 1)?;
            }
        }
    }
}

pub(crate) fn write_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

fn children<'a>(content: &'a [u8], depth: usize) -> Result<Vec<(Tlv<'a>, &'a [u8])>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < content.len() {
        let start = pos;
        let tlv = read_tlv(content, &mut pos, depth + 1)?;
        out.push((tlv, &content[start..pos]));
    }
    Ok(out)
}

/// Joins the chunks of a constructed string into its octets.
fn join_chunks(content: &[u8], depth: usize, out: &mut Vec<u8>) -> Result<()> {
    for (child, _) in children(content, depth)? {
        match child.tag {
            0x04 => out.extend_from_slice(child.content),
            0x24 => join_chunks(child.content, depth + 1, out)?,
            _ => return Err(err("non-OCTET STRING chunk in a constructed string", 0)),
        }
    }
    Ok(())
}

fn convert_one(input: &[u8], pos: &mut usize, out: &mut Vec<u8>, depth: usize) -> Result<()> {
    let tlv = read_tlv(input, pos, depth)?;
    convert_tlv(&tlv, out, depth)
}

fn convert_tlv(tlv: &Tlv<'_>, out: &mut Vec<u8>, depth: usize) -> Result<()> {
    if tlv.tag & 0x20 == 0 {
        out.push(tlv.tag);
        write_len(out, tlv.content.len());
        out.extend_from_slice(tlv.content);
        return Ok(());
    }
    if tlv.tag == 0x24 {
        // Constructed OCTET STRING: DER wants the primitive form.
        let mut joined = Vec::new();
        join_chunks(tlv.content, depth, &mut joined)?;
        out.push(0x04);
        write_len(out, joined.len());
        out.extend_from_slice(&joined);
        return Ok(());
    }
    // Each level is rebuilt: cost is the input size times the nesting
    // depth, which MAX_DEPTH bounds.
    let kids = children(tlv.content, depth)?;
    let mut body = Vec::with_capacity(tlv.content.len());
    // EncryptedContentInfo ::= SEQUENCE { OID, AlgorithmIdentifier,
    // [0] IMPLICIT OCTET STRING }: in BER the [0] may be constructed with
    // OCTET STRING chunks. It is the only place CMS tags an OCTET STRING
    // implicitly, so recognise it by this shape.
    let is_eci = tlv.tag == 0x30
        && kids.len() == 3
        && kids[0].0.tag == 0x06
        && kids[1].0.tag == 0x30
        && kids[2].0.tag == 0xa0;
    for (i, (kid, _)) in kids.iter().enumerate() {
        if is_eci && i == 2 {
            let mut joined = Vec::new();
            if join_chunks(kid.content, depth + 1, &mut joined).is_ok() {
                body.push(0x80);
                write_len(&mut body, joined.len());
                body.extend_from_slice(&joined);
                continue;
            }
        }
        convert_tlv(kid, &mut body, depth + 1)?;
    }
    out.push(tlv.tag);
    write_len(out, body.len());
    out.extend_from_slice(&body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definite_der_is_unchanged() {
        let der = [0x30, 0x06, 0x02, 0x01, 0x05, 0x04, 0x01, 0xaa];
        assert_eq!(*to_der(&der).unwrap(), der);
        assert!(matches!(to_der(&der).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn indefinite_and_chunked_octets_become_der() {
        // SEQUENCE (indefinite) { OCTET STRING constructed (indefinite) { "ab", "c" } }
        let ber = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c', 0, 0, 0, 0,
        ];
        assert_eq!(
            *to_der(&ber).unwrap(),
            [0x30, 0x05, 0x04, 0x03, b'a', b'b', b'c']
        );
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(to_der(&[0x30, 0x80, 0x04, 0x05, 1]).is_err());
        assert!(to_der(&[0x30]).is_err());
        assert!(to_der(&[]).is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any input: an error or DER, never a panic; DER is a fixed point.
        #[test]
        fn never_panics_and_der_is_stable(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(der) = to_der(&data) {
                prop_assert_eq!(&*to_der(&der).unwrap(), &*der);
            }
        }
    }
}
