//! The `_smtp._tls` TXT record (RFC 8460 §3) from untrusted DNS data, alone
//! and as a TXT RRset (records split at `\n`, strings at `\0`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtls_policy::tlsrpt::TlsRptRecord;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = TlsRptRecord::parse(s) {
        assert!(!r.rua().is_empty(), "a parsed record has a usable rua");
        for uri in r.rua() {
            let _ = uri.to_string();
        }
    }
    let rrset: Vec<Vec<&str>> = s.split('\n').map(|r| r.split('\0').collect()).collect();
    let _ = TlsRptRecord::from_txt_records(rrset);
});
