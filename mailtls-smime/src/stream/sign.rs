//! Streaming signing: detached (multipart/signed) and opaque
//! (application/pkcs7-mime signed-data, BER with indefinite lengths as
//! OpenSSL's `-stream` writes it), with one or several signers.

use std::io::{Read, Write};

use aws_lc_rs::digest;
use der::Encode;

use crate::algorithms::{DigestAlgorithm, ID_DATA, ID_SIGNED_DATA};
use crate::ber::write_len;
use crate::error::{Error, Result};
use crate::mime::{build, canon};
use crate::sign::{SignatureForm, Signer};
use crate::stream::transform::{Base64Lines, CrlfCanon};
use crate::stream::{CHUNK, read_header};

/// How the body of the signed entity is carried.
#[derive(Clone, Copy)]
enum BodyMode {
    /// Already 7-bit: line ends made CRLF, an 8-bit byte is an error.
    SevenBit,
    /// Declared 8bit (text: line ends made CRLF first) or binary: encoded
    /// as base64 on the fly.
    Base64 { text: bool },
}

/// The body of the entity to sign, turned chunk by chunk into the bytes
/// that are signed.
struct BodyEncoder {
    mode: BodyMode,
    crlf: CrlfCanon,
    b64: Base64Lines,
    stage: Vec<u8>,
}

impl BodyEncoder {
    fn new(mode: BodyMode) -> Self {
        Self {
            mode,
            crlf: CrlfCanon::default(),
            b64: Base64Lines::default(),
            stage: Vec::with_capacity(CHUNK * 2),
        }
    }

    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match self.mode {
            BodyMode::SevenBit => {
                if data.iter().any(|&b| b >= 0x80 || b == 0) {
                    return Err(Error::Mime(
                        "8-bit data in a body not declared 8bit or binary".into(),
                    ));
                }
                self.crlf.feed(data, out);
            }
            BodyMode::Base64 { text: true } => {
                self.crlf.feed(data, &mut self.stage);
                self.b64.feed(&self.stage, out);
                self.stage.clear();
            }
            BodyMode::Base64 { text: false } => self.b64.feed(data, out),
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match self.mode {
            BodyMode::SevenBit => self.crlf.finish(out),
            BodyMode::Base64 { text } => {
                if text {
                    self.crlf.finish(&mut self.stage);
                    self.b64.feed(&self.stage, out);
                }
                self.b64.finish(out);
            }
        }
    }
}

/// One running digest per distinct digest algorithm of the signers.
pub(crate) struct SignerDigests(Vec<(DigestAlgorithm, digest::Context)>);

impl SignerDigests {
    pub(crate) fn new(algs: &[DigestAlgorithm]) -> Self {
        Self(
            algs.iter()
                .map(|d| (*d, digest::Context::new(d.ring())))
                .collect(),
        )
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        for (_, c) in &mut self.0 {
            c.update(data);
        }
    }

    pub(crate) fn finish(self) -> Vec<(DigestAlgorithm, Vec<u8>)> {
        self.0
            .into_iter()
            .map(|(d, c)| (d, c.finish().as_ref().to_vec()))
            .collect()
    }
}

/// The outer headers, the signed entity's header block (with its empty
/// line) and how its body is carried, from the message's header block.
fn entity_head(head: &[u8]) -> Result<(Vec<u8>, Vec<u8>, BodyMode)> {
    let split = canon::split_message(head, false)?;
    // `split.entity` is the content headers and the empty line.
    let header_len = split.entity.len().saturating_sub(2);
    let mut fields = canon::header_fields(&split.entity[..header_len]);
    let value = |name: &str, fields: &[Vec<u8>]| {
        fields
            .iter()
            .find(|f| canon::field_name(f) == name)
            .map(|f| {
                let s = String::from_utf8_lossy(f).to_ascii_lowercase();
                s.split_once(':')
                    .map(|(_, v)| v.trim().to_string())
                    .unwrap_or_default()
            })
    };
    let multipart = value("content-type", &fields).is_some_and(|v| v.starts_with("multipart/"));
    let mode = match value("content-transfer-encoding", &fields).as_deref() {
        Some("8bit") if !multipart => BodyMode::Base64 { text: true },
        Some("binary") if !multipart => BodyMode::Base64 { text: false },
        _ => BodyMode::SevenBit,
    };
    if matches!(mode, BodyMode::Base64 { .. }) {
        fields.retain(|f| canon::field_name(f) != "content-transfer-encoding");
        fields.push(b"Content-Transfer-Encoding: base64\r\n".to_vec());
    }
    let mut entity_head = fields.concat();
    entity_head.extend_from_slice(b"\r\n");
    Ok((split.outer, entity_head, mode))
}

/// Feeds the signed bytes of the body (after `pending`, the body bytes
/// read with the header) to `sink`, chunk by chunk.
fn pump_body<R: Read>(
    mut input: R,
    mut pending: Vec<u8>,
    mode: BodyMode,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut encoder = BodyEncoder::new(mode);
    let mut chunk = vec![0u8; CHUNK];
    let mut out = Vec::with_capacity(CHUNK * 3);
    loop {
        let data: &[u8] = if pending.is_empty() {
            let n = input.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            &chunk[..n]
        } else {
            &pending
        };
        encoder.feed(data, &mut out)?;
        pending.clear();
        sink(&out)?;
        out.clear();
    }
    encoder.finish(&mut out);
    sink(&out)
}

impl Signer {
    /// Signs a message read from `input`, writing the result to `output`,
    /// with memory bounded by a few 64 KiB chunks: multipart/signed, or
    /// application/pkcs7-mime signed-data when the form is
    /// [`SignatureForm::Opaque`] (BER with indefinite lengths, as OpenSSL's
    /// `-stream`). Co-signers each get their SignerInfo; the content is
    /// hashed once per distinct digest algorithm.
    ///
    /// Unlike [`Signer::sign_message`], which looks at the whole body, the
    /// transfer encoding is chosen from the declared one: a single part
    /// declared `8bit` or `binary` is re-encoded as base64; any other body
    /// must be 7-bit (an 8-bit byte ends with [`Error::Mime`]; the output
    /// written so far is then incomplete and must be discarded).
    pub fn sign_stream<R: Read, W: Write>(&self, mut input: R, output: W) -> Result<()> {
        let (head, pending) = read_header(&mut input)?;
        let (outer, entity_head, mode) = entity_head(&head)?;
        match self.form() {
            SignatureForm::Opaque => {
                self.opaque(input, pending, output, &outer, &entity_head, mode)
            }
            _ => self.detached(input, pending, output, &outer, &entity_head, mode),
        }
    }

    fn detached<R: Read, W: Write>(
        &self,
        input: R,
        pending: Vec<u8>,
        mut output: W,
        outer: &[u8],
        entity_head: &[u8],
        mode: BodyMode,
    ) -> Result<()> {
        let boundary = build::new_boundary()?;
        output.write_all(&build::multipart_signed_head(
            outer,
            &self.micalg(),
            &boundary,
        ))?;
        let mut digests = SignerDigests::new(&self.digest_algorithms());
        digests.update(entity_head);
        output.write_all(entity_head)?;
        pump_body(input, pending, mode, |signed| {
            digests.update(signed);
            output.write_all(signed)?;
            Ok(())
        })?;
        let signature = self.sign_digests(&digests.finish(), None)?;
        output.write_all(&build::multipart_signed_tail(&boundary, &signature))?;
        output.flush()?;
        Ok(())
    }

    fn opaque<R: Read, W: Write>(
        &self,
        input: R,
        pending: Vec<u8>,
        mut output: W,
        outer: &[u8],
        entity_head: &[u8],
        mode: BodyMode,
    ) -> Result<()> {
        let cms_err = |e| Error::cms("SignedData", e);
        // ContentInfo { id-signedData, [0] SignedData { version 1,
        // digestAlgorithms, EncapsulatedContentInfo { id-data, [0] OCTET
        // STRING (constructed, in chunks) } ...
        let mut prefix = vec![0x30, 0x80];
        prefix.extend_from_slice(&ID_SIGNED_DATA.to_der().map_err(cms_err)?);
        prefix.extend_from_slice(&[0xa0, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01]);
        prefix.extend_from_slice(&self.digest_algorithm_set()?.to_der().map_err(cms_err)?);
        prefix.extend_from_slice(&[0x30, 0x80]);
        prefix.extend_from_slice(&ID_DATA.to_der().map_err(cms_err)?);
        prefix.extend_from_slice(&[0xa0, 0x80, 0x24, 0x80]);

        output.write_all(&build::pkcs7_mime(outer, "signed-data", &[]))?;
        let mut b64 = Base64Lines::default();
        let mut text = Vec::with_capacity(CHUNK * 2);
        let mut ber = Vec::with_capacity(CHUNK * 3 + 16);
        let mut digests = SignerDigests::new(&self.digest_algorithms());
        let mut emit = |signed: &[u8], ber: &mut Vec<u8>| -> Result<()> {
            digests.update(signed);
            if !signed.is_empty() {
                ber.push(0x04);
                write_len(ber, signed.len());
                ber.extend_from_slice(signed);
            }
            b64.feed(ber, &mut text);
            ber.clear();
            output.write_all(&text)?;
            text.clear();
            Ok(())
        };
        ber.extend_from_slice(&prefix);
        emit(entity_head, &mut ber)?;
        pump_body(input, pending, mode, |signed| emit(signed, &mut ber))?;

        // ... end of the OCTET STRING, [0] and EncapsulatedContentInfo;
        // certificates [0] IMPLICIT, signerInfos; end of SignedData, [0],
        // ContentInfo.
        let mut tail = vec![0u8; 6];
        let mut certs = self.certificate_set()?.to_der().map_err(cms_err)?;
        certs[0] = 0xa0;
        tail.extend_from_slice(&certs);
        tail.extend_from_slice(
            &self
                .signer_infos(&digests.finish())?
                .to_der()
                .map_err(cms_err)?,
        );
        tail.extend_from_slice(&[0; 6]);
        b64.feed(&tail, &mut text);
        b64.finish(&mut text);
        output.write_all(&text)?;
        output.flush()?;
        Ok(())
    }
}
