//! Streaming verification of multipart/signed and of opaque signed-data.

use std::io::{Read, Write};

use aws_lc_rs::digest;
use cms::signed_data::SignedData;
use const_oid::ObjectIdentifier;
use der::Decode;
use der::asn1::SetOfVec;
use mail_parser::{MessageParser, MimeHeaders};
use spki::AlgorithmIdentifierOwned;

use crate::algorithms::{DigestAlgorithm, ID_SIGNED_DATA};
use crate::ber::{self, write_len};
use crate::error::{Error, Result};
use crate::mime::canon::{field_name, header_fields};
use crate::mime::parse::{addresses, file_name_ends, is_octet_stream, is_type, part_body};
use crate::stream::sign::SignerDigests;
use crate::stream::source::Source;
use crate::stream::transform::CrlfCanon;
use crate::stream::{CHUNK, read_header};
use crate::verify::{Content, Verifier, VerifyReport, signed_data};

/// Largest signature part accepted (certificates included).
const MAX_SIGNATURE_PART: usize = 4 * 1024 * 1024;

/// SHA-1 too: Outlook's signatures use it (verified, reported as weak).
const DIGESTS: [DigestAlgorithm; 4] = [
    DigestAlgorithm::Sha1,
    DigestAlgorithm::Sha256,
    DigestAlgorithm::Sha384,
    DigestAlgorithm::Sha512,
];

/// The supported digests of one byte stream, computed side by side because
/// the signature naming the digest comes after the content.
struct Digests([digest::Context; 4]);

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
    /// Verifies a signed message read from `input`, with memory bounded by
    /// a few 64 KiB chunks plus the signature (at most 4 MiB):
    /// multipart/signed, whose signed part is hashed as it streams by, both
    /// canonicalised (CRLF) and exactly as received; or opaque
    /// application/pkcs7-mime signed-data (DER or BER, as OpenSSL's
    /// `-stream` writes), whose encapsulated content is hashed as it is
    /// decoded (with the digests its digestAlgorithms field announces). The content is read and dropped: use
    /// [`Verifier::verify_stream_to`] to keep it.
    pub fn verify_stream<R: Read>(&self, input: R) -> Result<VerifyReport> {
        self.verify_stream_inner(input, None)
    }

    /// [`Verifier::verify_stream`], writing the message without its
    /// signature layer to `output` (outer headers, then the signed entity,
    /// as [`crate::Verified::message`] gives it; the detached form's entity
    /// in its canonical CRLF form).
    ///
    /// The content is written as it streams, before the signature (which
    /// comes after it) can be checked: treat what was written as
    /// unverified until the returned report says valid, and discard it on
    /// `Err` or an invalid report.
    pub fn verify_stream_to<R: Read, W: Write>(
        &self,
        input: R,
        mut output: W,
    ) -> Result<VerifyReport> {
        let report = self.verify_stream_inner(input, Some(&mut output))?;
        output.flush()?;
        Ok(report)
    }

    fn verify_stream_inner<R: Read>(
        &self,
        mut input: R,
        mut output: Option<&mut dyn Write>,
    ) -> Result<VerifyReport> {
        let (head, mut window) = read_header(&mut input)?;
        let message = MessageParser::default()
            .parse_headers(&head)
            .ok_or_else(|| Error::Mime("unparseable header block".into()))?;
        let senders = addresses(&message);
        let root = message.root_part();
        let opaque = is_type(root, "application", &["pkcs7-mime", "x-pkcs7-mime"])
            || (is_octet_stream(root) && file_name_ends(root, ".p7m"));
        if opaque {
            let base64 = root
                .content_transfer_encoding()
                .is_some_and(|e| e.eq_ignore_ascii_case("base64"));
            return self.verify_opaque(&head, window, input, base64, &senders, output);
        }
        if !is_type(root, "multipart", &["signed"]) {
            return Err(Error::NotSmime("the message is not signed".into()));
        }
        if let Some(out) = output.as_mut() {
            out.write_all(&outer_headers(&head))?;
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
        let mut feed = |data: &[u8], canon_buf: &mut Vec<u8>, crlf: &mut CrlfCanon| -> Result<()> {
            exact.update(data);
            crlf.feed(data, canon_buf);
            canonical.update(canon_buf);
            if let Some(out) = output.as_mut() {
                out.write_all(canon_buf)?;
            }
            canon_buf.clear();
            Ok(())
        };
        loop {
            if let Some(pos) = find(&window, &delimiter) {
                // The line end before the delimiter belongs to it.
                let end = if pos > 0 && window[pos - 1] == b'\r' {
                    pos - 1
                } else {
                    pos
                };
                feed(&window[..end], &mut canon_buf, &mut crlf)?;
                window.drain(..pos + delimiter.len());
                break;
            }
            // Keep what could still be the start of a delimiter.
            let keep = delimiter.len() + 1;
            if window.len() > keep {
                let upto = window.len() - keep;
                feed(&window[..upto], &mut canon_buf, &mut crlf)?;
                window.drain(..upto);
            }
            if eof {
                return Err(Error::Mime("multipart/signed: no signature part".into()));
            }
            fill(&mut window, &mut eof)?;
        }
        crlf.finish(&mut canon_buf);
        canonical.update(&canon_buf);
        if let Some(out) = output.as_mut() {
            out.write_all(&canon_buf)?;
        }

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
        let signature = part_body(part, sig_part, "signature part")?;
        let der = ber::to_der(&signature)?;
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

/// The message's header fields other than Content-* and MIME-Version, then
/// `MIME-Version: 1.0`, as [`crate::Verified::message`] starts.
fn outer_headers(head: &[u8]) -> Vec<u8> {
    let mut outer: Vec<u8> = header_fields(head)
        .into_iter()
        .filter(|f| {
            let n = field_name(f);
            !n.starts_with("content-") && n != "mime-version" && !n.is_empty()
        })
        .collect::<Vec<_>>()
        .concat();
    outer.extend_from_slice(b"MIME-Version: 1.0\r\n");
    outer
}

fn decode<T: for<'a> Decode<'a>>(raw: &[u8], what: &'static str) -> Result<T> {
    T::from_der(&ber::to_der(raw)?).map_err(|e| Error::cms(what, e))
}

impl Verifier {
    /// Opaque signed-data: the encapsulated content is hashed with the
    /// digests SignedData's digestAlgorithms announces (RFC 5652 section
    /// 5.1: it is there for one-pass processing; a signer whose digest is
    /// not announced fails with a digest mismatch) and handed to `output`
    /// as it is decoded; the certificates and signer infos after it are read whole
    /// (bounded) and the SignedData is rebuilt without its content to
    /// check them.
    fn verify_opaque<R: Read>(
        &self,
        head: &[u8],
        rest: Vec<u8>,
        input: R,
        base64: bool,
        senders: &[String],
        mut output: Option<&mut dyn Write>,
    ) -> Result<VerifyReport> {
        let mut src = Source::new(
            rest.as_slice().chain(input),
            base64,
            "SignedData",
            MAX_SIGNATURE_PART,
        );
        let ci_len = src.expect_constructed(0x30, "ContentInfo")?;
        let (_, oid) = src.element()?;
        let oid: ObjectIdentifier = decode(&oid, "contentType")?;
        if oid != ID_SIGNED_DATA {
            return Err(Error::NotSmime(format!(
                "CMS content type {oid} is not signed-data"
            )));
        }
        let content_len = src.expect_constructed(0xa0, "[0] content")?;
        let sd_len = src.expect_constructed(0x30, "SignedData")?;
        let (_, version) = src.element()?;
        let (tag, digest_algs) = src.element()?;
        if tag != 0x31 {
            return Err(Error::cms("SignedData", "expected digestAlgorithms"));
        }
        let algs: SetOfVec<AlgorithmIdentifierOwned> = decode(&digest_algs, "digestAlgorithms")?;
        let known: Vec<DigestAlgorithm> = algs
            .iter()
            .filter_map(|a| DigestAlgorithm::from_oid(&a.oid).ok())
            .collect();
        let eci_len = src.expect_constructed(0x30, "EncapsulatedContentInfo")?;
        let (_, content_type) = src.element()?;
        let (tag, len, _) = src.header()?;
        if tag != 0xa0 {
            return Err(Error::NotSmime(
                "signed-data without encapsulated content".into(),
            ));
        }
        let (os_tag, os_len, _) = src.header()?;
        if os_tag != 0x04 && os_tag != 0x24 {
            return Err(Error::cms("eContent", "not an OCTET STRING"));
        }
        if let Some(out) = output.as_mut() {
            out.write_all(&outer_headers(head))?;
        }
        let mut digests = SignerDigests::new(&known);
        src.octets(os_tag, os_len, &mut |data| {
            digests.update(data);
            if let Some(out) = output.as_mut() {
                out.write_all(data)?;
            }
            Ok(())
        })?;
        src.end_of(len)?;
        src.end_of(eci_len)?;

        // certificates [0], crls [1], signerInfos: up to and including
        // signerInfos, the last field.
        let mut fields = Vec::new();
        loop {
            let (tag, len, raw) = src.header()?;
            if tag == 0 && len == Some(0) {
                return Err(Error::cms("SignedData", "signerInfos missing"));
            }
            let element = src.element_after(raw, len, 0)?;
            fields.push(ber::to_der(&element)?.into_owned());
            if fields.iter().map(Vec::len).sum::<usize>() > MAX_SIGNATURE_PART {
                return Err(Error::cms("SignedData", "signature part too large"));
            }
            if tag == 0x31 {
                break;
            }
        }
        // signerInfos is the last field: then the ends of SignedData, [0]
        // and ContentInfo, and nothing after (as the one-shot path reads).
        src.end_of(sd_len)?;
        src.end_of(content_len)?;
        src.end_of(ci_len)?;
        src.expect_end()?;
        let mut eci = Vec::new();
        let ct = ber::to_der(&content_type)?;
        eci.push(0x30);
        write_len(&mut eci, ct.len());
        eci.extend_from_slice(&ct);
        let mut body = ber::to_der(&version)?.into_owned();
        body.extend_from_slice(&ber::to_der(&digest_algs)?);
        body.extend_from_slice(&eci);
        for f in &fields {
            body.extend_from_slice(f);
        }
        let mut der = vec![0x30];
        write_len(&mut der, body.len());
        der.extend_from_slice(&body);
        let sd = SignedData::from_der(&der).map_err(|e| Error::cms("SignedData", e))?;

        let table = digests.finish();
        let lookup = |alg: DigestAlgorithm| {
            table
                .iter()
                .find(|(d, _)| *d == alg)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        self.verify_signed_data(&sd, &Content::Digests(&lookup), senders)
    }
}
