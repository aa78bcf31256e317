//! Streaming encryption: EnvelopedData with AES-CBC written as BER with
//! indefinite lengths (as OpenSSL's `-stream`), base64 on the fly.

use std::io::{Read, Write};

use aws_lc_rs::cipher::{self, EncryptionContext, StreamingEncryptingKey, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use der::Encode;
use der::asn1::{Any, OctetString};
use spki::AlgorithmIdentifierOwned;

use crate::algorithms::{ID_DATA, ID_ENVELOPED_DATA};
use crate::ber::write_len;
use crate::encrypt::Encryptor;
use crate::envelope;
use crate::error::{Error, Result};
use crate::mime::{build, canon};
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

impl Encryptor {
    /// Encrypts a message read from `input` to `output` as
    /// application/pkcs7-mime enveloped-data, with memory bounded by a few
    /// 64 KiB chunks. AES-CBC only: GCM's AuthEnvelopedData cannot be
    /// produced incrementally with the primitives used here
    /// ([`Error::UnsupportedAlgorithm`]); use [`Encryptor::encrypt_message`].
    pub fn encrypt_stream<R: Read, W: Write>(&self, mut input: R, mut output: W) -> Result<()> {
        let alg = self.cipher();
        if alg.is_authenticated() {
            return Err(Error::UnsupportedAlgorithm {
                what: "streaming content encryption (GCM is not streamed)",
                oid: alg.oid().to_string(),
            });
        }
        let (head, mut pending) = read_header(&mut input)?;
        let split = canon::split_message(&head, false)?;
        let binary = canon::header_fields(&split.entity).iter().any(|f| {
            canon::field_name(f) == "content-transfer-encoding"
                && String::from_utf8_lossy(f)
                    .to_ascii_lowercase()
                    .contains("binary")
        });

        let cek = envelope::random(alg.key_len())?;
        let iv = envelope::random(16)?;
        let (recip_infos, version) = self.recipient_infos(&cek)?;
        let cms_err = |e| Error::cms("EnvelopedData", e);
        let alg_id = AlgorithmIdentifierOwned {
            oid: alg.oid(),
            parameters: Some(
                Any::encode_from(&OctetString::new(iv.clone()).map_err(cms_err)?)
                    .map_err(cms_err)?,
            ),
        };
        // ContentInfo { id-envelopedData, [0] EnvelopedData { version,
        // recipientInfos, EncryptedContentInfo { id-data, alg, [0] chunks } } }
        let mut prefix = vec![0x30, 0x80];
        prefix.extend_from_slice(&ID_ENVELOPED_DATA.to_der().map_err(cms_err)?);
        prefix.extend_from_slice(&[0xa0, 0x80, 0x30, 0x80]);
        prefix.extend_from_slice(&version.to_der().map_err(cms_err)?);
        prefix.extend_from_slice(&recip_infos.to_der().map_err(cms_err)?);
        prefix.extend_from_slice(&[0x30, 0x80]);
        prefix.extend_from_slice(&ID_DATA.to_der().map_err(cms_err)?);
        prefix.extend_from_slice(&alg_id.to_der().map_err(cms_err)?);
        prefix.extend_from_slice(&[0xa0, 0x80]);

        let aes = if alg.key_len() == 16 {
            &cipher::AES_128
        } else {
            &cipher::AES_256
        };
        let iv: [u8; 16] = iv
            .as_slice()
            .try_into()
            .map_err(|_| Error::Crypto("IV length"))?;
        let crypto = |_| Error::Crypto("content encryption");
        let mut key = StreamingEncryptingKey::less_safe_cbc_pkcs7(
            UnboundCipherKey::new(aes, &cek).map_err(crypto)?,
            EncryptionContext::Iv128(FixedLength::from(iv)),
        )
        .map_err(crypto)?;

        output.write_all(&build::pkcs7_mime(&split.outer, "enveloped-data", &[]))?;
        let mut b64 = Base64Lines::default();
        let mut text = Vec::with_capacity(CHUNK * 2);
        b64.feed(&prefix, &mut text);

        let mut crlf = CrlfCanon::default();
        let mut plain = split.entity.clone();
        let mut ct = vec![0u8; CHUNK * 2 + 32];
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
            if ct.len() < plain.len() + 16 {
                ct.resize(plain.len() + 16, 0);
            }
            let written = key.update(&plain, &mut ct).map_err(crypto)?;
            chunk_tlv(written.written(), &mut ber);
            plain.clear();
            b64.feed(&ber, &mut text);
            ber.clear();
            output.write_all(&text)?;
            text.clear();
        }
        let (_, last) = key.finish(&mut ct).map_err(crypto)?;
        chunk_tlv(last.written(), &mut ber);
        // End-of-contents: [0], EncryptedContentInfo, EnvelopedData, [0], ContentInfo.
        ber.extend_from_slice(&[0; 10]);
        b64.feed(&ber, &mut text);
        b64.finish(&mut text);
        output.write_all(&text)?;
        output.flush()?;
        Ok(())
    }
}
