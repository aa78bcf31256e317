//! Streaming signing and verification of multipart/signed messages: memory
//! stays bounded by a few chunks, not by the message ([`crate::Signer::sign_stream`],
//! [`crate::Verifier::verify_stream`]).

mod decrypt;
mod encrypt;
mod gcm;
mod sign;
mod source;
mod transform;
mod verify;

use std::io::Read;

use crate::error::{Error, Result};

/// Bytes read from the input at a time.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Largest header block accepted.
const MAX_HEADER: usize = 1024 * 1024;

/// Offset just past the empty line that ends a header block, if present.
fn header_end(buf: &[u8]) -> Option<usize> {
    if buf.starts_with(b"\r\n") {
        return Some(2);
    }
    if buf.starts_with(b"\n") {
        return Some(1);
    }
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let rest = &buf[nl + 1..];
        if rest.starts_with(b"\n") {
            return Some(nl + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

/// Reads the header block (with its terminating empty line) and returns it
/// with the body bytes that were read past it.
pub(crate) fn read_header<R: Read>(input: &mut R) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        // The whole block is searched again after each read (the empty line
        // may straddle reads); MAX_HEADER bounds the cost.
        if let Some(end) = header_end(&buf) {
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEADER {
            return Err(Error::Mime(format!(
                "header block longer than {MAX_HEADER} bytes"
            )));
        }
        let n = input.read(&mut chunk)?;
        if n == 0 {
            return Ok((buf, Vec::new()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_split_from_body() {
        let mut r: &[u8] = b"A: b\r\nC: d\r\n\r\nbody";
        let (h, rest) = read_header(&mut r).unwrap();
        assert_eq!(h, b"A: b\r\nC: d\r\n\r\n");
        assert_eq!(rest, b"body");
        let mut r: &[u8] = b"A: b\n\nbody";
        let (h, rest) = read_header(&mut r).unwrap();
        assert_eq!(
            (h.as_slice(), rest.as_slice()),
            (&b"A: b\n\n"[..], &b"body"[..])
        );
    }
}
