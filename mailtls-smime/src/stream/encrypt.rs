//! Streaming encryption: EnvelopedData (AES-CBC) and AuthEnvelopedData
//! (AES-GCM) written as BER with indefinite lengths (as OpenSSL's
//! `-stream`), base64 on the fly.

use std::io::{Read, Write};

use aws_lc_rs::cipher::{EncryptionContext, StreamingEncryptingKey, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use der::Encode;
use der::asn1::{Any, OctetString};
use spki::AlgorithmIdentifierOwned;

use cms::content_info::CmsVersion;

use crate::algorithms::{ID_AUTH_ENVELOPED_DATA, ID_DATA, ID_ENVELOPED_DATA};
use crate::ber::write_len;
use crate::encrypt::Encryptor;
use crate::envelope::{self, GcmParameters};
use crate::error::{Error, Result};
use crate::mime::{build, canon};
use crate::stream::gcm::{Direction, GcmStream, TAG_LEN};
use crate::stream::transform::{Base64Lines, CrlfCanon};
use crate::stream::{CHUNK, read_header};

/// Writes one OCTET STRING chunk of the constructed encryptedContent.
fn chunk_tlv(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    out.push(0x04);
    write_len(out, data.len());
    out.extend_from_slice(data);
}

/// The content cipher, fed in pieces.
enum ContentStream {
    Cbc(StreamingEncryptingKey),
    Gcm(GcmStream),
}

fn crypto(_: aws_lc_rs::error::Unspecified) -> Error {
    Error::Crypto("content encryption")
}

impl ContentStream {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match self {
            Self::Cbc(key) => {
                let start = out.len();
                out.resize(start + input.len() + 16, 0);
                let n = key
                    .update(input, &mut out[start..])
                    .map_err(crypto)?
                    .written()
                    .len();
                out.truncate(start + n);
                Ok(())
            }
            Self::Gcm(g) => g.update(input, out),
        }
    }

    /// Appends the last ciphertext to `out`; the GCM tag for GCM.
    fn finish(self, out: &mut Vec<u8>) -> Result<Option<[u8; TAG_LEN]>> {
        match self {
            Self::Cbc(key) => {
                let mut last = [0u8; 32];
                let (_, written) = key.finish(&mut last).map_err(crypto)?;
                out.extend_from_slice(written.written());
                Ok(None)
            }
            Self::Gcm(g) => g.finish(out).map(Some),
        }
    }
}

impl Encryptor {
    /// Encrypts a message read from `input` to `output` as
    /// application/pkcs7-mime, with memory bounded by a few 64 KiB chunks:
    /// EnvelopedData for AES-CBC, AuthEnvelopedData (RFC 5083/5084) for
    /// AES-GCM, both written as BER with indefinite lengths (as OpenSSL's
    /// `-stream`). GCM is streamed as AES-CTR plus GHASH, checked against
    /// the one-shot AES-GCM.
    pub fn encrypt_stream<R: Read, W: Write>(&self, mut input: R, mut output: W) -> Result<()> {
        let alg = self.cipher();
        let (head, mut pending) = read_header(&mut input)?;
        let split = canon::split_message(&head, false)?;
        let binary = canon::header_fields(&split.entity).iter().any(|f| {
            canon::field_name(f) == "content-transfer-encoding"
                && String::from_utf8_lossy(f)
                    .to_ascii_lowercase()
                    .contains("binary")
        });

        let cek = envelope::random(alg.key_len())?;
        let (recip_infos, version) = self.recipient_infos(&cek)?;
        let cms_err = |e| Error::cms("EnvelopedData", e);
        let (content_type, version, params, mut cipher) = if alg.is_authenticated() {
            let nonce = envelope::random(12)?;
            let gcm = GcmStream::new(&cek, &nonce, Direction::Seal)?;
            let params = GcmParameters {
                nonce: OctetString::new(nonce).map_err(|e| Error::cms("GCMParameters", e))?,
                icv_len: Some(TAG_LEN as u8),
            };
            let params = Any::encode_from(&params).map_err(|e| Error::cms("GCMParameters", e))?;
            // RFC 5083 section 2.1: AuthEnvelopedData is always version 0.
            (
                ID_AUTH_ENVELOPED_DATA,
                CmsVersion::V0,
                params,
                ContentStream::Gcm(gcm),
            )
        } else {
            let iv = envelope::random(16)?;
            let params = Any::encode_from(&OctetString::new(iv.clone()).map_err(cms_err)?)
                .map_err(cms_err)?;
            let aes = envelope::aes_cipher(alg.key_len());
            let iv: [u8; 16] = iv
                .as_slice()
                .try_into()
                .map_err(|_| Error::Crypto("IV length"))?;
            let key = StreamingEncryptingKey::less_safe_cbc_pkcs7(
                UnboundCipherKey::new(aes, &cek).map_err(crypto)?,
                EncryptionContext::Iv128(FixedLength::from(iv)),
            )
            .map_err(crypto)?;
            (ID_ENVELOPED_DATA, version, params, ContentStream::Cbc(key))
        };
        let alg_id = AlgorithmIdentifierOwned {
            oid: alg.oid(),
            parameters: Some(params),
        };
        // ContentInfo { content type, [0] (Auth)EnvelopedData { version,
        // recipientInfos, EncryptedContentInfo { id-data, alg, [0] chunks } } }
        let mut prefix = vec![0x30, 0x80];
        prefix.extend_from_slice(&content_type.to_der().map_err(cms_err)?);
        prefix.extend_from_slice(&[0xa0, 0x80, 0x30, 0x80]);
        prefix.extend_from_slice(&version.to_der().map_err(cms_err)?);
        prefix.extend_from_slice(&recip_infos.to_der().map_err(cms_err)?);
        prefix.extend_from_slice(&[0x30, 0x80]);
        prefix.extend_from_slice(&ID_DATA.to_der().map_err(cms_err)?);
        prefix.extend_from_slice(&alg_id.to_der().map_err(cms_err)?);
        prefix.extend_from_slice(&[0xa0, 0x80]);

        let smime_type = if alg.is_authenticated() {
            "authEnveloped-data"
        } else {
            "enveloped-data"
        };
        output.write_all(&build::pkcs7_mime(&split.outer, smime_type, &[]))?;
        let mut b64 = Base64Lines::default();
        let mut text = Vec::with_capacity(CHUNK * 2);
        b64.feed(&prefix, &mut text);

        let mut crlf = CrlfCanon::default();
        let mut plain = split.entity.clone();
        let mut ct = Vec::with_capacity(CHUNK * 2 + 32);
        let mut ber = Vec::with_capacity(CHUNK * 2 + 16);
        let mut chunk = vec![0u8; CHUNK];
        let mut done = false;
        while !done {
            if !pending.is_empty() || plain.is_empty() {
                let data: &[u8] = if pending.is_empty() {
                    let n = input.read(&mut chunk)?;
                    done = n == 0;
                    &chunk[..n]
                } else {
                    &pending
                };
                if binary {
                    plain.extend_from_slice(data);
                } else {
                    crlf.feed(data, &mut plain);
                    if done {
                        crlf.finish(&mut plain);
                    }
                }
                pending.clear();
            }
            cipher.update(&plain, &mut ct)?;
            chunk_tlv(&ct, &mut ber);
            ct.clear();
            plain.clear();
            b64.feed(&ber, &mut text);
            ber.clear();
            output.write_all(&text)?;
            text.clear();
        }
        let tag = cipher.finish(&mut ct)?;
        chunk_tlv(&ct, &mut ber);
        // End-of-contents of [0] and EncryptedContentInfo.
        ber.extend_from_slice(&[0; 4]);
        if let Some(tag) = tag {
            // mac OCTET STRING (no authenticated attributes).
            ber.extend_from_slice(&[0x04, TAG_LEN as u8]);
            ber.extend_from_slice(&tag);
        }
        // End-of-contents: (Auth)EnvelopedData, [0], ContentInfo.
        ber.extend_from_slice(&[0; 6]);
        b64.feed(&ber, &mut text);
        b64.finish(&mut text);
        output.write_all(&text)?;
        output.flush()?;
        Ok(())
    }
}
