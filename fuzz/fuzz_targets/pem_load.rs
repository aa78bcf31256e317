//! Certificate and key files from disk: PEM or DER, any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtls_core::CertificateWithKey;
use mailtls_core::load::{certificates_from_bytes, private_key_from_bytes};

fuzz_target!(|data: &[u8]| {
    let _ = certificates_from_bytes(data, "fuzz");
    let _ = private_key_from_bytes(data, "fuzz");
    let _ = CertificateWithKey::from_combined_pem(data, "fuzz");
});
