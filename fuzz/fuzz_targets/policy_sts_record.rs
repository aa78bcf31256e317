//! The `_mta-sts` TXT record (RFC 8461 §3.1) from untrusted DNS data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtls_policy::mta_sts::parse_record;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = parse_record(data) else {
        return;
    };
    // What we publish must read back as the same record.
    let text = record.to_text();
    match parse_record(text.as_bytes()) {
        Ok(again) => assert_eq!(again, record, "{text:?} re-parsed differently"),
        Err(e) => panic!("rendered record {text:?} does not parse: {e}"),
    }
});
