//! Streaming decryption of EnvelopedData (AES-CBC, 3DES) and
//! AuthEnvelopedData (AES-GCM): base64 and BER are read incrementally; CBC
//! plaintext is written as it is decrypted, GCM plaintext only after the
//! tag is verified.

use std::io::{Read, Seek, SeekFrom, Write};

use aws_lc_rs::cipher::{self, DecryptionContext, StreamingDecryptingKey, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use cms::enveloped_data::RecipientInfos;
use const_oid::ObjectIdentifier;
use der::Decode;
use der::asn1::OctetString;
use mail_parser::{MessageParser, MimeHeaders};
use spki::AlgorithmIdentifierOwned;

use crate::algorithms::{ID_AUTH_ENVELOPED_DATA, ID_ENVELOPED_DATA};
use crate::ber;
use crate::decrypt::Decryptor;
use crate::envelope::{ContentCipher, GcmParameters};
use crate::error::{Error, Result};
use crate::mime::canon::{field_name, header_fields};
use crate::mime::parse::{file_name_ends, is_octet_stream, is_type};
use crate::stream::gcm::{Direction, GcmStream, TAG_LEN};
use crate::stream::source::{MAX_ELEMENT, Source};
use crate::stream::{CHUNK, read_header};

fn decode<T: for<'a> Decode<'a>>(raw: &[u8], what: &'static str) -> Result<T> {
    T::from_der(&ber::to_der(raw)?).map_err(|e| Error::cms(what, e))
}

/// The content decryption, fed ciphertext in pieces.
enum Opening {
    Cbc(StreamingDecryptingKey),
    Gcm(GcmStream),
}

impl Decryptor {
    /// Decrypts an application/pkcs7-mime enveloped-data or
    /// authEnveloped-data message read from `input`, writing the decrypted
    /// message (outer headers, then the content) to `output`, with memory
    /// bounded by a few 64 KiB chunks.
    ///
    /// AES-CBC and 3DES (EnvelopedData): plaintext is written as it is
    /// decrypted, before the final padding check; on `Err`, discard
    /// everything written (CBC carries no integrity anyway).
    ///
    /// AES-GCM (AuthEnvelopedData): no byte reaches `output` before the
    /// tag is verified. The plaintext is spooled to an unnamed temporary
    /// file (created in the system temporary directory with mode 0600 and
    /// already unlinked, so nothing is left behind), and copied to `output`
    /// only after the tag matched; a wrong tag is
    /// [`Error::DecryptionFailed`] with `output` untouched. Use
    /// [`Decryptor::decrypt_stream_with_spool`] to choose the spool.
    /// AuthEnvelopedData with authenticated attributes (the additional data
    /// comes after the content, too late for one pass) is refused with
    /// [`Error::UnsupportedAlgorithm`]; [`Decryptor::decrypt_message`]
    /// reads it.
    pub fn decrypt_stream<R: Read, W: Write>(&self, input: R, output: W) -> Result<ContentCipher> {
        self.decrypt_stream_inner(input, output, &mut || Ok(tempfile::tempfile()?))
    }

    /// [`Decryptor::decrypt_stream`] with the GCM plaintext spooled to
    /// `spool` (written from its current position, then read back from
    /// there) instead of a temporary file; CBC content does not use it.
    pub fn decrypt_stream_with_spool<R: Read, W: Write, S: Read + Write + Seek>(
        &self,
        input: R,
        output: W,
        spool: S,
    ) -> Result<ContentCipher> {
        let mut spool = Some(spool);
        self.decrypt_stream_inner(input, output, &mut || {
            spool.take().ok_or(Error::Crypto("spool used twice"))
        })
    }

    fn decrypt_stream_inner<R: Read, W: Write, S: Read + Write + Seek>(
        &self,
        mut input: R,
        mut output: W,
        spool: &mut dyn FnMut() -> Result<S>,
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
        let mut src = Source::new(
            rest.as_slice().chain(input),
            base64,
            "EnvelopedData",
            MAX_ELEMENT,
        );

        // ContentInfo.
        src.expect_constructed(0x30, "ContentInfo")?;
        let (_, oid) = src.element()?;
        let oid: ObjectIdentifier = decode(&oid, "contentType")?;
        let authenticated = if oid == ID_AUTH_ENVELOPED_DATA {
            true
        } else if oid == ID_ENVELOPED_DATA {
            false
        } else {
            return Err(Error::NotSmime(format!(
                "CMS content type {oid} is not (auth-)enveloped-data"
            )));
        };
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
        let eci_len = src.expect_constructed(0x30, "EncryptedContentInfo")?;
        let _content_type = src.element()?;
        let (_, alg) = src.element()?;
        let alg: AlgorithmIdentifierOwned = decode(&alg, "contentEncryptionAlgorithm")?;
        let cipher = ContentCipher::from_identifier(&alg)?;
        let is_gcm = matches!(cipher, ContentCipher::Modern(c) if c.is_authenticated());
        if is_gcm != authenticated {
            return Err(Error::cms(
                "EnvelopedData",
                "GCM content needs AuthEnvelopedData, and AuthEnvelopedData GCM content",
            ));
        }
        let params = alg
            .parameters
            .as_ref()
            .ok_or_else(|| Error::cms("contentEncryptionAlgorithm", "parameters missing"))?;
        let cek = self.content_key(&infos, cipher)?;
        let fail = |_| Error::DecryptionFailed;
        let opening = if is_gcm {
            let p: GcmParameters = params
                .decode_as()
                .map_err(|e| Error::cms("GCMParameters", e))?;
            if p.icv_len.unwrap_or(12) as usize != TAG_LEN {
                return Err(Error::UnsupportedAlgorithm {
                    what: "GCM tag length other than 16 for",
                    oid: alg.oid.to_string(),
                });
            }
            Opening::Gcm(GcmStream::new(&cek, p.nonce.as_bytes(), Direction::Open)?)
        } else {
            let iv: OctetString = params.decode_as().map_err(|e| Error::cms("IV", e))?;
            let (alg, context) = match cipher {
                ContentCipher::Modern(c) => {
                    let iv: [u8; 16] = iv
                        .as_bytes()
                        .try_into()
                        .map_err(|_| Error::cms("IV", "AES-CBC IV is not 16 bytes"))?;
                    let a = crate::envelope::aes_cipher(c.key_len());
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
            Opening::Cbc(
                StreamingDecryptingKey::cbc_pkcs7(
                    UnboundCipherKey::new(alg, &cek).map_err(fail)?,
                    context,
                )
                .map_err(fail)?,
            )
        };

        // The outer headers go first, as in `Decrypted::message`.
        let mut outer: Vec<u8> = header_fields(&head)
            .into_iter()
            .filter(|f| {
                let n = field_name(f);
                !n.starts_with("content-") && n != "mime-version" && !n.is_empty()
            })
            .collect::<Vec<_>>()
            .concat();
        outer.extend_from_slice(b"MIME-Version: 1.0\r\n");

        // encryptedContent [0] IMPLICIT OCTET STRING: primitive (0x80) or
        // constructed (0xa0) from OCTET STRING chunks, streamed in pieces.
        let (tag, len, _) = src.header()?;
        if tag != 0x80 && tag != 0xa0 {
            return Err(Error::cms(
                "EncryptedContentInfo",
                "encryptedContent missing",
            ));
        }
        let mut plain = Vec::with_capacity(CHUNK + 32);
        match opening {
            Opening::Cbc(mut key) => {
                output.write_all(&outer)?;
                src.octets(tag, len, &mut |data| {
                    if plain.len() < data.len() + 16 {
                        plain.resize(data.len() + 16, 0);
                    }
                    let out = key.update(data, &mut plain).map_err(fail)?;
                    output.write_all(out.written())?;
                    Ok(())
                })?;
                let mut last = vec![0u8; 32];
                let out = key.finish(&mut last).map_err(fail)?;
                output.write_all(out.written())?;
            }
            Opening::Gcm(mut gcm) => {
                let mut spool = spool()?;
                let begin = spool.stream_position()?;
                src.octets(tag, len, &mut |data| {
                    gcm.update(data, &mut plain)?;
                    spool.write_all(&plain)?;
                    plain.clear();
                    Ok(())
                })?;
                let expected = gcm.finish(&mut plain)?;
                spool.write_all(&plain)?;
                src.end_of(eci_len)?;
                // authAttrs [1] would be the additional data, which was
                // needed before the content; then the mac.
                let (tag, mac) = src.element()?;
                if tag == 0xa1 {
                    return Err(Error::UnsupportedAlgorithm {
                        what: "streaming AuthEnvelopedData with authenticated attributes for",
                        oid: alg.oid.to_string(),
                    });
                }
                let mac: OctetString = decode(&mac, "mac")?;
                aws_lc_rs::constant_time::verify_slices_are_equal(mac.as_bytes(), &expected)
                    .map_err(|_| Error::DecryptionFailed)?;
                // Authentic: only now is anything released.
                output.write_all(&outer)?;
                spool.flush()?;
                let end = spool.stream_position()?;
                spool.seek(SeekFrom::Start(begin))?;
                std::io::copy(&mut spool.take(end - begin), &mut output)?;
            }
        }
        output.flush()?;
        Ok(cipher)
    }
}
