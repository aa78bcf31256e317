//! How a spooled message remembers that it was received with REQUIRETLS
//! (RFC 8689), so that later delivery can honour it.
//!
//! The spool stores plain `.eml` files, so the flag travels as a header
//! field the server itself writes, [`REQUIRETLS_HEADER`], at the top of the
//! message. RFC 8689 defines no header for the flag (only `TLS-Required:
//! No`), so this is a local envelope marker: any copy of it in the
//! incoming message is removed first, or a sender could forge the flag.

/// The header field name that marks a spooled message as REQUIRETLS.
pub const REQUIRETLS_HEADER: &str = "X-Mailtls-Requiretls";

/// Removes every `REQUIRETLS_HEADER` field (with its folded continuation
/// lines) from the header section of `message` (CRLF line ends); the body
/// is untouched.
pub fn remove_marker(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut rest = message;
    let mut skipping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        let content = line
            .strip_suffix(b"\n")
            .map_or(line, |l| l.strip_suffix(b"\r").unwrap_or(l));
        if content.is_empty() {
            // End of the header section: copy the body as it is.
            out.extend_from_slice(rest);
            return out;
        }
        let continuation = content.starts_with(b" ") || content.starts_with(b"\t");
        if !continuation {
            skipping = is_marker_line(content);
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        rest = tail;
    }
    out
}

fn is_marker_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = line[..colon].trim_ascii_end();
    name.eq_ignore_ascii_case(REQUIRETLS_HEADER.as_bytes())
}

/// The message as it goes into the spool: any forged marker removed, and
/// the marker added on top when `requiretls` is set.
pub fn mark(message: &[u8], requiretls: bool) -> Vec<u8> {
    let cleaned = remove_marker(message);
    if !requiretls {
        return cleaned;
    }
    let mut out = format!("{REQUIRETLS_HEADER}: yes\r\n").into_bytes();
    out.extend_from_slice(&cleaned);
    out
}

/// Whether a spooled message carries the REQUIRETLS marker in its header
/// section (the `Return-Path:`/`Received:` lines the spool adds included).
pub fn is_marked(message: &[u8]) -> bool {
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return false;
        }
        if is_marker_line(line) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_markers_are_removed_from_the_header_only() {
        let msg = b"Subject: x\r\nx-mailtls-requiretls : yes\r\n\tfolded\r\nFrom: a@b\r\n\r\nX-Mailtls-Requiretls: yes\r\n";
        let cleaned = remove_marker(msg);
        assert_eq!(
            cleaned,
            b"Subject: x\r\nFrom: a@b\r\n\r\nX-Mailtls-Requiretls: yes\r\n"
        );
        assert!(!is_marked(&cleaned), "a marker in the body does not count");
        assert!(is_marked(msg));
    }

    #[test]
    fn marking_adds_exactly_one_marker() {
        let msg = b"X-Mailtls-Requiretls: yes\r\nSubject: x\r\n\r\nbody\r\n";
        let marked = mark(msg, true);
        assert_eq!(
            marked,
            b"X-Mailtls-Requiretls: yes\r\nSubject: x\r\n\r\nbody\r\n"
        );
        let unmarked = mark(msg, false);
        assert_eq!(unmarked, b"Subject: x\r\n\r\nbody\r\n");
        assert!(!is_marked(&unmarked));
        // A message without a body or a blank line.
        assert_eq!(mark(b"", true), b"X-Mailtls-Requiretls: yes\r\n");
        assert!(is_marked(&mark(b"Subject: y", true)));
    }
}
