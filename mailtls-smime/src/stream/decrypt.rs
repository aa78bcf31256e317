//! Streaming decryption of EnvelopedData (AES-CBC, 3DES): base64 and BER
//! are read incrementally and the plaintext is written as it is decrypted.

use std::io::{Read, Write};

use aws_lc_rs::cipher::{self, DecryptionContext, StreamingDecryptingKey, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cms::enveloped_data::RecipientInfos;
use const_oid::ObjectIdentifier;
use der::Decode;
use der::asn1::OctetString;
use mail_parser::{MessageParser, MimeHeaders};
use spki::AlgorithmIdentifierOwned;

use crate::algorithms::{ID_AUTH_ENVELOPED_DATA, ID_ENVELOPED_DATA};
use crate::ber;
use crate::decrypt::Decryptor;
use crate::envelope::ContentCipher;
use crate::error::{Error, Result};
use crate::mime::canon::{field_name, header_fields};
use crate::mime::parse::{file_name_ends, is_octet_stream, is_type};
use crate::stream::{CHUNK, read_header};

/// Largest single structure read whole (recipient infos, originator info).
const MAX_ELEMENT: usize = 1024 * 1024;
const MAX_DEPTH: usize = 32;

/// Decoded bytes of a base64 (or binary) body, pulled on demand.
struct Source<R> {
    input: R,
    base64: bool,
    /// Base64 characters not yet decoded (fewer than four, or a read's tail).
    text: Vec<u8>,
    /// Decoded bytes not yet consumed, from `pos`.
    bytes: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl<R: Read> Source<R> {
    fn refill(&mut self) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        self.bytes.drain(..self.pos);
        self.pos = 0;
        let mut chunk = vec![0u8; CHUNK];
        let n = self.input.read(&mut chunk)?;
        if n == 0 {
            self.eof = true;
        }
        if !self.base64 {
            self.bytes.extend_from_slice(&chunk[..n]);
            return Ok(n > 0);
        }
        self.text
            .extend(chunk[..n].iter().filter(|b| !b.is_ascii_whitespace()));
        let usable = if self.eof {
            self.text.len()
        } else {
            self.text.len() / 4 * 4
        };
        if usable > 0 {
            let decoded = STANDARD
                .decode(&self.text[..usable])
                .map_err(|e| Error::Mime(format!("base64 body: {e}")))?;
            self.bytes.extend_from_slice(&decoded);
            self.text.drain(..usable);
        }
        Ok(true)
    }

    fn available(&self) -> &[u8] {
        &self.bytes[self.pos..]
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.available().len() < n {
            if !self.refill()? {
                return Err(Error::cms("EnvelopedData", "truncated"));
            }
        }
        let out = self.bytes[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// Tag and length (None: indefinite), with the raw header bytes.
    fn header(&mut self) -> Result<(u8, Option<usize>, Vec<u8>)> {
        let tag = self.byte()?;
        let first = self.byte()?;
        let mut raw = vec![tag, first];
        if first < 0x80 {
            return Ok((tag, Some(first as usize), raw));
        }
        if first == 0x80 {
            return Ok((tag, None, raw));
        }
        let n = (first & 0x7f) as usize;
        if n > 4 {
            return Err(Error::cms("EnvelopedData", "length too large"));
        }
        let mut len = 0usize;
        for _ in 0..n {
            let b = self.byte()?;
            raw.push(b);
            len = (len << 8) | b as usize;
        }
        Ok((tag, Some(len), raw))
    }

    /// A whole element (BER) given its header.
    fn element_after(
        &mut self,
        mut raw: Vec<u8>,
        len: Option<usize>,
        depth: usize,
    ) -> Result<Vec<u8>> {
        if depth > MAX_DEPTH {
            return Err(Error::cms("EnvelopedData", "nesting too deep"));
        }
        match len {
            Some(len) => {
                if len > MAX_ELEMENT {
                    return Err(Error::cms("EnvelopedData", "structure too large"));
                }
                raw.extend_from_slice(&self.take(len)?);
            }
            None => loop {
                let (tag, len, child) = self.header()?;
                if tag == 0 && len == Some(0) {
                    raw.extend_from_slice(&[0, 0]);
                    break;
                }
                let child = self.element_after(child, len, depth + 1)?;
                raw.extend_from_slice(&child);
                if raw.len() > MAX_ELEMENT {
                    return Err(Error::cms("EnvelopedData", "structure too large"));
                }
            },
        }
        Ok(raw)
    }

    fn element(&mut self) -> Result<(u8, Vec<u8>)> {
        let (tag, len, raw) = self.header()?;
        Ok((tag, self.element_after(raw, len, 0)?))
    }

    fn expect_constructed(&mut self, tag: u8, what: &str) -> Result<()> {
        let (t, _, _) = self.header()?;
        if t != tag {
            return Err(Error::Cms {
                structure: "EnvelopedData",
                detail: format!("expected {what}"),
            });
        }
        Ok(())
    }
}

fn decode<T: for<'a> Decode<'a>>(raw: &[u8], what: &'static str) -> Result<T> {
    T::from_der(&ber::to_der(raw)?).map_err(|e| Error::cms(what, e))
}

impl Decryptor {
    /// Decrypts an application/pkcs7-mime enveloped-data message read from
    /// `input`, writing the decrypted message (outer headers, then the
    /// content) to `output`, with memory bounded by a few 64 KiB chunks.
    /// AES-CBC and 3DES only (AuthEnvelopedData must be checked whole
    /// before anything is released: use [`Decryptor::decrypt_message`]).
    ///
    /// Plaintext is written before the final padding check: on `Err`,
    /// discard everything written.
    pub fn decrypt_stream<R: Read, W: Write>(
        &self,
        mut input: R,
        mut output: W,
    ) -> Result<ContentCipher> {
        let (head, rest) = read_header(&mut input)?;
        let message = MessageParser::default()
            .parse_headers(&head)
            .ok_or_else(|| Error::Mime("unparseable header block".into()))?;
        let root = message.root_part();
        if !(is_type(root, "application", &["pkcs7-mime", "x-pkcs7-mime"])
            || (is_octet_stream(root) && file_name_ends(root, ".p7m")))
        {
            return Err(Error::NotSmime("the message is not encrypted".into()));
        }
        let base64 = root
            .content_transfer_encoding()
            .is_some_and(|e| e.eq_ignore_ascii_case("base64"));
        let mut src = Source {
            input: rest.as_slice().chain(input),
            base64,
            text: Vec::new(),
            bytes: Vec::new(),
            pos: 0,
            eof: false,
        };

        // ContentInfo.
        src.expect_constructed(0x30, "ContentInfo")?;
        let (_, oid) = src.element()?;
        let oid: ObjectIdentifier = decode(&oid, "contentType")?;
        if oid == ID_AUTH_ENVELOPED_DATA {
            return Err(Error::UnsupportedAlgorithm {
                what: "streaming decryption of AuthEnvelopedData",
                oid: oid.to_string(),
            });
        }
        if oid != ID_ENVELOPED_DATA {
            return Err(Error::NotSmime(format!(
                "CMS content type {oid} is not enveloped-data"
            )));
        }
        src.expect_constructed(0xa0, "[0] content")?;
        src.expect_constructed(0x30, "EnvelopedData")?;
        let _version = src.element()?;
        let (mut tag, mut raw) = src.element()?;
        if tag == 0xa0 {
            // originatorInfo: not needed to decrypt.
            (tag, raw) = src.element()?;
        }
        if tag != 0x31 {
            return Err(Error::cms("EnvelopedData", "expected recipientInfos"));
        }
        let infos: RecipientInfos = decode(&raw, "RecipientInfos")?;
        src.expect_constructed(0x30, "EncryptedContentInfo")?;
        let _content_type = src.element()?;
        let (_, alg) = src.element()?;
        let alg: AlgorithmIdentifierOwned = decode(&alg, "contentEncryptionAlgorithm")?;
        let cipher = ContentCipher::from_identifier(&alg)?;
        if matches!(cipher, ContentCipher::Modern(c) if c.is_authenticated()) {
            return Err(Error::cms(
                "EnvelopedData",
                "GCM content needs AuthEnvelopedData",
            ));
        }
        let iv: OctetString = alg
            .parameters
            .as_ref()
            .ok_or_else(|| Error::cms("contentEncryptionAlgorithm", "IV missing"))?
            .decode_as()
            .map_err(|e| Error::cms("IV", e))?;
        let cek = self.content_key(&infos, cipher)?;
        let fail = |_| Error::DecryptionFailed;
        let (alg, context) = match cipher {
            ContentCipher::Modern(c) => {
                let iv: [u8; 16] = iv
                    .as_bytes()
                    .try_into()
                    .map_err(|_| Error::cms("IV", "AES-CBC IV is not 16 bytes"))?;
                let a = if c.key_len() == 16 {
                    &cipher::AES_128
                } else {
                    &cipher::AES_256
                };
                (a, DecryptionContext::Iv128(FixedLength::from(iv)))
            }
            ContentCipher::TripleDes => {
                let iv: [u8; 8] = iv
                    .as_bytes()
                    .try_into()
                    .map_err(|_| Error::cms("IV", "3DES-CBC IV is not 8 bytes"))?;
                #[allow(deprecated)]
                let a = &cipher::DES_EDE3_FOR_LEGACY_USE_ONLY;
                (a, DecryptionContext::Iv64(FixedLength::from(iv)))
            }
        };
        let mut key = StreamingDecryptingKey::cbc_pkcs7(
            UnboundCipherKey::new(alg, &cek).map_err(fail)?,
            context,
        )
        .map_err(fail)?;

        // The outer headers go first, as in `Decrypted::message`.
        let outer: Vec<u8> = header_fields(&head)
            .into_iter()
            .filter(|f| {
                let n = field_name(f);
                !n.starts_with("content-") && n != "mime-version" && !n.is_empty()
            })
            .collect::<Vec<_>>()
            .concat();
        output.write_all(&outer)?;
        output.write_all(b"MIME-Version: 1.0\r\n")?;

        let mut plain = vec![0u8; CHUNK + 32];
        let mut decrypt = |data: &[u8], output: &mut W| -> Result<()> {
            if plain.len() < data.len() + 16 {
                plain.resize(data.len() + 16, 0);
            }
            let out = key.update(data, &mut plain).map_err(fail)?;
            output.write_all(out.written())?;
            Ok(())
        };
        // encryptedContent [0] IMPLICIT OCTET STRING: primitive (0x80) or
        // constructed (0xa0) from OCTET STRING chunks, streamed in pieces.
        let (tag, len, _) = src.header()?;
        let mut stream_octets =
            |src: &mut Source<_>, mut left: usize, output: &mut W| -> Result<()> {
                while left > 0 {
                    if src.available().is_empty() && !src.refill()? {
                        return Err(Error::cms("EnvelopedData", "truncated content"));
                    }
                    let n = src.available().len().min(left);
                    let data = src.take(n)?;
                    decrypt(&data, output)?;
                    left -= n;
                }
                Ok(())
            };
        match (tag, len) {
            (0x80, Some(len)) => stream_octets(&mut src, len, &mut output)?,
            (0xa0, len) => {
                let mut consumed = 0usize;
                loop {
                    if len.is_some_and(|l| consumed >= l) {
                        break;
                    }
                    let (t, l, raw) = src.header()?;
                    consumed += raw.len();
                    match (t, l) {
                        (0, Some(0)) if len.is_none() => break,
                        (0x04, Some(l)) => {
                            stream_octets(&mut src, l, &mut output)?;
                            consumed += l;
                        }
                        _ => {
                            return Err(Error::cms(
                                "EncryptedContentInfo",
                                "unexpected element in encryptedContent",
                            ));
                        }
                    }
                }
            }
            _ => {
                return Err(Error::cms(
                    "EncryptedContentInfo",
                    "encryptedContent missing",
                ));
            }
        }
        let mut last = vec![0u8; 32];
        let out = key.finish(&mut last).map_err(fail)?;
        output.write_all(out.written())?;
        output.flush()?;
        Ok(cipher)
    }
}
