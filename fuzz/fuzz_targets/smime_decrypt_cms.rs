//! CMS EnvelopedData / AuthEnvelopedData decryption, DER or BER, any bytes,
//! with a fixed P-256 recipient key (ECDH key agreement path); also the
//! streaming decryptor over the same bytes wrapped as a pkcs7-mime message.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "smime_common.rs"]
mod smime_common;

fuzz_target!(|data: &[u8]| {
    let f = smime_common::fixture();
    let _ = f.decryptor.decrypt_cms(data);
    // The same bytes as an application/pkcs7-mime entity (base64), both
    // one-shot and streamed.
    use base64::Engine as _;
    let mut msg = b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    msg.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(data)
            .as_bytes(),
    );
    msg.extend_from_slice(b"\r\n");
    let _ = f.decryptor.decrypt_message(&msg);
    let _ = f.decryptor.decrypt_stream(&msg[..], std::io::sink());
});
