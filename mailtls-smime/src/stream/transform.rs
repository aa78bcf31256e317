//! Incremental forms of the canonicalisation and transfer encoding in
//! `mime::canon`, producing the same bytes chunk by chunk.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// LF and bare CR to CRLF, across chunk boundaries (as `canon::to_crlf`).
#[derive(Default)]
pub(crate) struct CrlfCanon {
    pending_cr: bool,
}

impl CrlfCanon {
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if input.is_empty() {
            // Nothing yet tells whether a pending CR is followed by LF.
            return;
        }
        let mut rest = input;
        if self.pending_cr {
            self.pending_cr = false;
            out.extend_from_slice(b"\r\n");
            if rest.first() == Some(&b'\n') {
                rest = &rest[1..];
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            out.extend_from_slice(&rest[..pos]);
            if rest[pos] == b'\n' {
                out.extend_from_slice(b"\r\n");
                rest = &rest[pos + 1..];
            } else if pos + 1 == rest.len() {
                self.pending_cr = true;
                return;
            } else {
                out.extend_from_slice(b"\r\n");
                let skip = if rest[pos + 1] == b'\n' { 2 } else { 1 };
                rest = &rest[pos + skip..];
            }
        }
        out.extend_from_slice(rest);
    }

    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.pending_cr = false;
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Base64 in 76-character CRLF lines (as `canon::base64_lines`): 57 input
/// bytes make one line.
#[derive(Default)]
pub(crate) struct Base64Lines {
    carry: Vec<u8>,
}

impl Base64Lines {
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.carry.extend_from_slice(input);
        let full = self.carry.len() / 57 * 57;
        for line in self.carry[..full].chunks(57) {
            out.extend_from_slice(STANDARD.encode(line).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.carry.drain(..full);
    }

    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.carry.is_empty() {
            out.extend_from_slice(STANDARD.encode(&self.carry).as_bytes());
            out.extend_from_slice(b"\r\n");
            self.carry.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::canon::{base64_lines, to_crlf};
    use proptest::prelude::*;

    proptest! {
        /// Any split of any input gives the same bytes as the one-shot form.
        #[test]
        fn chunked_equals_one_shot(
            data in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), any::<u8>()], 0..600),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            points.sort_unstable();
            let mut canon = CrlfCanon::default();
            let mut b64 = Base64Lines::default();
            let (mut c_out, mut b_out) = (Vec::new(), Vec::new());
            let mut start = 0;
            for p in points.into_iter().chain([data.len()]) {
                canon.feed(&data[start..p], &mut c_out);
                b64.feed(&data[start..p], &mut b_out);
                start = p;
            }
            canon.finish(&mut c_out);
            b64.finish(&mut b_out);
            prop_assert_eq!(c_out, to_crlf(&data));
            prop_assert_eq!(b_out, base64_lines(&data));
        }
    }
}
