//! Certificate inspection of arbitrary DER.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtls_core::CertInfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = CertInfo::from_der(data) {
        let _ = info.server_name_patterns();
        let _ = info.fingerprint_hex();
        let _ = info.expires_in();
    }
});
