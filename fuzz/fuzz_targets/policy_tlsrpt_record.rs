//! The `_smtp._tls` TXT record (RFC 8460 §3) from untrusted DNS data, alone
//! and as a TXT RRset (records split at `\n`, strings at `\0`). A parsed
//! record never yields a mangled destination (issue 14 rule 6): every
//! `mailto:` address has a local part, an `@` and a domain and holds no
//! whitespace or control character; every `https:` URL has a host part.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtls_policy::tlsrpt::{ReportUri, TlsRptRecord};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = TlsRptRecord::parse(s) {
        assert!(!r.rua().is_empty(), "a parsed record has a usable rua");
        for uri in r.rua() {
            let _ = uri.to_string();
            match uri {
                ReportUri::Mailto(addr) => {
                    let (local, domain) = addr.rsplit_once('@').expect("an address has an @");
                    assert!(!local.is_empty() && !domain.is_empty(), "{addr:?}");
                    assert!(
                        !addr.chars().any(|c| c.is_whitespace() || c.is_control()),
                        "{addr:?}"
                    );
                }
                ReportUri::Https(url) => {
                    assert!(url.starts_with("https://") && url.len() > 8, "{url:?}")
                }
                _ => {}
            }
        }
    }
    let rrset: Vec<Vec<&str>> = s.split('\n').map(|r| r.split('\0').collect()).collect();
    let _ = TlsRptRecord::from_txt_records(rrset);
});
