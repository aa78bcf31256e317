//! An incoming message, any bytes, through the MIME entry points: open()
//! (decrypt, verify, recurse), one-shot verification, and the streaming
//! verifier and decryptor.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "smime_common.rs"]
mod smime_common;

fuzz_target!(|data: &[u8]| {
    let f = smime_common::fixture();
    let _ = mailtls_smime::open(data, &f.verifier, std::slice::from_ref(&f.decryptor));
    let _ = f.verifier.verify_message(data);
    let _ = f.verifier.verify_stream(data);
    let _ = f.decryptor.decrypt_stream(data, std::io::sink());
});
