//! CMS SignedData verification: opaque (encapsulated content) and detached
//! signature bytes, DER or BER, any bytes. The first byte picks the form;
//! for detached, the rest is split into signature and content. Opaque
//! bytes are also verified streaming, wrapped as a pkcs7-mime message.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "smime_common.rs"]
mod smime_common;

fuzz_target!(|data: &[u8]| {
    let f = smime_common::fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let senders = ["fuzz@example.org".to_string()];
    if mode & 1 == 0 {
        let _ = f.verifier.verify_cms(rest, None, &senders);
        // The same bytes as an opaque signed-data message, streamed.
        use base64::Engine as _;
        let mut msg = b"From: fuzz@example.org\r\nMIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=signed-data\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
        msg.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(rest)
                .as_bytes(),
        );
        let _ = f.verifier.verify_stream_to(&msg[..], std::io::sink());
    } else {
        let split = usize::from(mode >> 1) * rest.len() / 128;
        let (sig, content) = rest.split_at(split.min(rest.len()));
        let _ = f.verifier.verify_cms(sig, Some(content), &senders);
    }
});
