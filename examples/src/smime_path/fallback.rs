//! Incoming mail the engine could not read (broken CMS, a truncated
//! signature) is delivered as it came, but forged status must still go:
//! the gateway's status headers and look-alike Subject marks are removed
//! here the way the gateway would have removed them.

use mailtls_smime::gateway::{IncomingRules, decode_subject, encode_subject};

/// `message` with every status header of `rules` (and its folded lines)
/// removed and the Subject's look-alike marks stripped; the body is
/// untouched.
pub(super) fn strip_forged(message: &[u8], rules: &IncomingRules) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut rest = message;
    // The current field: its name and lines, flushed when the next starts.
    let mut field: Vec<u8> = Vec::new();
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        let content = line
            .strip_suffix(b"\n")
            .map_or(line, |l| l.strip_suffix(b"\r").unwrap_or(l));
        if content.starts_with(b" ") || content.starts_with(b"\t") {
            field.extend_from_slice(line);
            rest = tail;
            continue;
        }
        flush(&mut out, &field, rules);
        field.clear();
        if content.is_empty() {
            // End of the header section.
            out.extend_from_slice(rest);
            return out;
        }
        field.extend_from_slice(line);
        rest = tail;
    }
    flush(&mut out, &field, rules);
    out
}

fn flush(out: &mut Vec<u8>, field: &[u8], rules: &IncomingRules) {
    if field.is_empty() {
        return;
    }
    let Some(colon) = field.iter().position(|&b| b == b':') else {
        out.extend_from_slice(field);
        return;
    };
    let name = String::from_utf8_lossy(&field[..colon]);
    if rules.headers.is_status_header(&name) {
        return;
    }
    if name.trim().eq_ignore_ascii_case("subject") {
        // Unfold, decode RFC 2047 words, strip, encode again.
        let raw = String::from_utf8_lossy(&field[colon + 1..]);
        let unfolded: String = raw
            .split(['\r', '\n'])
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("");
        let stripped = rules.marks.strip(&decode_subject(unfolded.trim()));
        out.extend_from_slice(format!("Subject: {}\r\n", encode_subject(&stripped)).as_bytes());
        return;
    }
    out.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn status_headers_and_marks_go_the_body_stays() {
        let rules = IncomingRules::default();
        let msg = b"From: a@x.example\r\nX-Mailtls-Signed: valid;\r\n forged\r\nSubject: [signed] Hello\r\nTo: b@y.example\r\n\r\nX-Mailtls-Signed: body text\r\n";
        let out = String::from_utf8(strip_forged(msg, &rules)).unwrap();
        assert_eq!(
            out,
            "From: a@x.example\r\nSubject: Hello\r\nTo: b@y.example\r\n\r\nX-Mailtls-Signed: body text\r\n"
        );
    }

    #[test]
    fn encoded_look_alikes_are_stripped() {
        let rules = IncomingRules::default();
        // "[signed] Hi" as an RFC 2047 encoded word.
        let msg = b"Subject: =?utf-8?q?=5Bsigned=5D_Hi?=\r\n\r\nbody";
        let out = String::from_utf8(strip_forged(msg, &rules)).unwrap();
        assert_eq!(out, "Subject: Hi\r\n\r\nbody");
    }

    #[test]
    fn a_message_without_marks_is_unchanged() {
        let rules = IncomingRules::default();
        let msg = b"From: a@x.example\r\nSubject: plain\r\n\r\nbody\r\n";
        assert_eq!(strip_forged(msg, &rules), msg.to_vec());
    }
}
