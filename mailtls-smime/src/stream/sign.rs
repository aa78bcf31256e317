//! Streaming detached signing.

use std::io::{Read, Write};

use aws_lc_rs::digest;

use crate::error::{Error, Result};
use crate::mime::{build, canon};
use crate::sign::Signer;
use crate::stream::transform::{Base64Lines, CrlfCanon};
use crate::stream::{CHUNK, read_header};

/// How the body of the signed entity is carried.
enum BodyMode {
    /// Already 7-bit: line ends made CRLF, an 8-bit byte is an error.
    SevenBit,
    /// Declared 8bit (text: line ends made CRLF first) or binary: encoded
    /// as base64 on the fly.
    Base64 { text: bool },
}

impl Signer {
    /// Signs a message read from `input` as multipart/signed, writing the
    /// result to `output`, with memory bounded by a few 64 KiB chunks.
    ///
    /// Unlike [`Signer::sign_message`], which looks at the whole body, the
    /// transfer encoding is chosen from the declared one: a single part
    /// declared `8bit` or `binary` is re-encoded as base64; any other body
    /// must be 7-bit (an 8-bit byte ends with [`Error::Mime`]; the output
    /// written so far is then incomplete and must be discarded).
    pub fn sign_stream<R: Read, W: Write>(&self, mut input: R, mut output: W) -> Result<()> {
        let (head, mut pending) = read_header(&mut input)?;
        let split = canon::split_message(&head, false)?;
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

        let boundary = build::new_boundary()?;
        output.write_all(&build::multipart_signed_head(
            &split.outer,
            self.digest_algorithm().micalg(),
            &boundary,
        ))?;
        let mut ctx = digest::Context::new(self.digest_algorithm().ring());
        ctx.update(&entity_head);
        output.write_all(&entity_head)?;

        let mut crlf = CrlfCanon::default();
        let mut b64 = Base64Lines::default();
        let mut chunk = vec![0u8; CHUNK];
        let mut stage = Vec::with_capacity(CHUNK * 2);
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
            match mode {
                BodyMode::SevenBit => {
                    if data.iter().any(|&b| b >= 0x80 || b == 0) {
                        return Err(Error::Mime(
                            "8-bit data in a body not declared 8bit or binary".into(),
                        ));
                    }
                    crlf.feed(data, &mut out);
                }
                BodyMode::Base64 { text: true } => {
                    crlf.feed(data, &mut stage);
                    b64.feed(&stage, &mut out);
                    stage.clear();
                }
                BodyMode::Base64 { text: false } => b64.feed(data, &mut out),
            }
            pending.clear();
            ctx.update(&out);
            output.write_all(&out)?;
            out.clear();
        }
        match mode {
            BodyMode::SevenBit => crlf.finish(&mut out),
            BodyMode::Base64 { text } => {
                if text {
                    crlf.finish(&mut stage);
                    b64.feed(&stage, &mut out);
                }
                b64.finish(&mut out);
            }
        }
        ctx.update(&out);
        output.write_all(&out)?;

        let digest = ctx.finish();
        let signature = self.sign_digest(digest.as_ref(), None)?;
        output.write_all(&build::multipart_signed_tail(&boundary, &signature))?;
        output.flush()?;
        Ok(())
    }
}
