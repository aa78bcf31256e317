//! CMS SignedData verification: opaque (encapsulated content) and detached
//! signature bytes, DER or BER, any bytes. The first byte picks the form;
//! for detached, the rest is split into signature and content.
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
    } else {
        let split = usize::from(mode >> 1) * rest.len() / 128;
        let (sig, content) = rest.split_at(split.min(rest.len()));
        let _ = f.verifier.verify_cms(sig, Some(content), &senders);
    }
});
