//! Received TLS reports (RFC 8460 §4): JSON, gzip, zip or a mail holding
//! them, as any sender may send, summarised as the operator sees them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtls_policy::tlsrpt::{ReceivedSummary, parse_received};

fuzz_target!(|data: &[u8]| {
    let Ok(reports) = parse_received(data) else {
        return;
    };
    let _ = ReceivedSummary::of(&reports);
    for r in &reports {
        for p in &r.policies {
            for f in &p.failures {
                let _ = f.known_result_type();
            }
        }
    }
});
