//! Streaming verification of multipart/signed.

use std::io::Read;

use aws_lc_rs::digest;
use mail_parser::{MessageParser, MimeHeaders};

use crate::algorithms::DigestAlgorithm;
use crate::ber;
use crate::error::{Error, Result};
use crate::mime::parse::{addresses, file_name_ends, is_octet_stream, is_type};
use crate::stream::transform::CrlfCanon;
use crate::stream::{CHUNK, read_header};
use crate::verify::{Content, Verifier, VerifyReport, signed_data};

/// Largest signature part accepted (certificates included).
const MAX_SIGNATURE_PART: usize = 4 * 1024 * 1024;

const DIGESTS: [DigestAlgorithm; 3] = [
    DigestAlgorithm::Sha256,
    DigestAlgorithm::Sha384,
    DigestAlgorithm::Sha512,
];

/// The supported digests of one byte stream, computed side by side because
/// the signature naming the digest comes after the content.
struct Digests([digest::Context; 3]);

impl Digests {
    fn new() -> Self {
        Self(DIGESTS.map(|d| digest::Context::new(d.ring())))
    }

    fn update(&mut self, data: &[u8]) {
        for c in &mut self.0 {
            c.update(data);
        }
    }

    fn finish(self) -> Vec<(DigestAlgorithm, Vec<u8>)> {
        DIGESTS
            .into_iter()
            .zip(self.0)
            .map(|(d, c)| (d, c.finish().as_ref().to_vec()))
            .collect()
    }
}

/// Position of `needle` (which starts with a line feed) in `haystack`:
/// only line feeds are candidates, so the scan stays linear.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(off) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + off;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

impl Verifier {
    /// Verifies a multipart/signed message read from `input`, with memory
    /// bounded by a few 64 KiB chunks plus the signature part (at most
    /// 4 MiB). The signed part is hashed as it streams by, both
    /// canonicalised (CRLF) and exactly as received. Opaque signed-data is
    /// not streamed: use [`Verifier::verify_message`].
    pub fn verify_stream<R: Read>(&self, mut input: R) -> Result<VerifyReport> {
        let (head, mut window) = read_header(&mut input)?;
        let message = MessageParser::default()
            .parse_headers(&head)
            .ok_or_else(|| Error::Mime("unparseable header block".into()))?;
        let senders = addresses(&message);
        let root = message.root_part();
        if !is_type(root, "multipart", &["signed"]) {
            return Err(Error::NotSmime(
                "streaming verification reads multipart/signed only".into(),
            ));
        }
        let boundary = root
            .content_type()
            .and_then(|ct| ct.attribute("boundary"))
            .ok_or_else(|| Error::Mime("multipart/signed without boundary".into()))?
            .to_string();
        let mut delimiter = b"\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());

        // A virtual line end before the body lets a delimiter on the very
        // first line match.
        window.insert(0, b'\n');
        let mut chunk = vec![0u8; CHUNK];
        let mut eof = false;
        let mut fill = |window: &mut Vec<u8>, eof: &mut bool| -> Result<()> {
            let n = input.read(&mut chunk)?;
            if n == 0 {
                *eof = true;
            }
            window.extend_from_slice(&chunk[..n]);
            Ok(())
        };

        // Preamble: up to the end of the first delimiter line.
        loop {
            if let Some(pos) = find(&window, &delimiter) {
                let after = pos + delimiter.len();
                if let Some(nl) = window[after..].iter().position(|&b| b == b'\n') {
                    window.drain(..after + nl + 1);
                    break;
                }
            } else if window.len() > delimiter.len() + 1 {
                window.drain(..window.len() - delimiter.len() - 1);
            }
            if eof {
                return Err(Error::Mime("multipart/signed: no first part".into()));
            }
            fill(&mut window, &mut eof)?;
        }

        // The signed part, hashed as it goes.
        let mut exact = Digests::new();
        let mut canonical = Digests::new();
        let mut crlf = CrlfCanon::default();
        let mut canon_buf = Vec::with_capacity(CHUNK * 2);
        let mut feed = |data: &[u8], canon_buf: &mut Vec<u8>, crlf: &mut CrlfCanon| {
            exact.update(data);
            crlf.feed(data, canon_buf);
            canonical.update(canon_buf);
            canon_buf.clear();
        };
        loop {
            if let Some(pos) = find(&window, &delimiter) {
                // The line end before the delimiter belongs to it.
                let end = if pos > 0 && window[pos - 1] == b'\r' {
                    pos - 1
                } else {
                    pos
                };
                feed(&window[..end], &mut canon_buf, &mut crlf);
                window.drain(..pos + delimiter.len());
                break;
            }
            // Keep what could still be the start of a delimiter.
            let keep = delimiter.len() + 1;
            if window.len() > keep {
                let upto = window.len() - keep;
                feed(&window[..upto], &mut canon_buf, &mut crlf);
                window.drain(..upto);
            }
            if eof {
                return Err(Error::Mime("multipart/signed: no signature part".into()));
            }
            fill(&mut window, &mut eof)?;
        }
        crlf.finish(&mut canon_buf);
        canonical.update(&canon_buf);

        // The signature part: bounded, read whole.
        while !eof {
            if window.len() > MAX_SIGNATURE_PART {
                return Err(Error::Mime(format!(
                    "signature part larger than {MAX_SIGNATURE_PART} bytes"
                )));
            }
            fill(&mut window, &mut eof)?;
        }
        let start = window
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| p + 1)
            .ok_or_else(|| Error::Mime("multipart/signed: no signature part".into()))?;
        let part = &window[start..];
        let part = match find(part, &delimiter) {
            Some(end) => &part[..end],
            None => part,
        };
        let sig_message = MessageParser::default()
            .parse(part)
            .ok_or_else(|| Error::Mime("unparseable signature part".into()))?;
        let sig_part = sig_message.root_part();
        if !(is_type(
            sig_part,
            "application",
            &["pkcs7-signature", "x-pkcs7-signature"],
        ) || (is_octet_stream(sig_part) && file_name_ends(sig_part, ".p7s")))
        {
            return Err(Error::NotSmime(
                "second part of multipart/signed is not a PKCS #7 signature".into(),
            ));
        }
        let der = ber::to_der(sig_part.contents())?;
        let sd = signed_data(&der)?;

        let canonical = canonical.finish();
        let exact = exact.finish();
        let lookup = |table: &[(DigestAlgorithm, Vec<u8>)], alg: DigestAlgorithm| {
            table
                .iter()
                .find(|(d, _)| *d == alg)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let by_canonical = |alg| lookup(&canonical, alg);
        let report = self.verify_signed_data(&sd, &Content::Digests(&by_canonical), &senders)?;
        if report.signers.iter().any(|s| s.signature.passed()) || canonical == exact {
            return Ok(report);
        }
        let by_exact = |alg| lookup(&exact, alg);
        let exact_report = self.verify_signed_data(&sd, &Content::Digests(&by_exact), &senders)?;
        if exact_report.signers.iter().any(|s| s.signature.passed()) {
            Ok(exact_report)
        } else {
            Ok(report)
        }
    }
}
