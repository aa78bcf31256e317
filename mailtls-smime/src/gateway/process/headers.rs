//! The header block of a message as raw fields, so the gateway can drop its
//! own (possibly forged) status headers, replace the Subject and add new
//! fields while leaving every other byte as it came.

/// One header field: its name and its raw bytes (continuation lines and the
/// line ending included).
pub(super) struct Field<'a> {
    pub(super) name: &'a str,
    pub(super) raw: &'a [u8],
}

impl Field<'_> {
    /// The unfolded value after the colon, as text (invalid UTF-8 replaced).
    pub(super) fn value(&self) -> String {
        let raw = String::from_utf8_lossy(self.raw);
        let value = raw.split_once(':').map(|(_, v)| v).unwrap_or_default();
        value
            .split(['\r', '\n'])
            .filter(|l| !l.is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A message split into its header fields and the rest (the empty line and
/// the body; empty when the message has no body).
pub(super) struct Split<'a> {
    pub(super) fields: Vec<Field<'a>>,
    pub(super) rest: &'a [u8],
}

/// Splits `message` at the end of its header block. A line without a colon
/// that is not a continuation ends the header (so a body without the empty
/// line is still not taken for headers).
pub(super) fn split(message: &[u8]) -> Split<'_> {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        let first = line.first().copied();
        if matches!(first, Some(b' ' | b'\t'))
            && let Some(last) = fields.last_mut()
        {
            // The field grows over its continuation line; both slices
            // are adjacent in `message`.
            let start = pos - last.raw.len();
            last.raw = &message[start..end];
            pos = end;
            continue;
        }
        let name = line
            .iter()
            .position(|&b| b == b':')
            .and_then(|i| std::str::from_utf8(&line[..i]).ok())
            .filter(|n| !n.trim().is_empty() && !n.contains(' '));
        match name {
            Some(name) if first != Some(b'\r') && first != Some(b'\n') => {
                fields.push(Field {
                    name: name.trim(),
                    raw: line,
                });
                pos = end;
            }
            _ => break,
        }
    }
    Split {
        fields,
        rest: &message[pos..],
    }
}

/// The value of the first field called `name`, if any.
pub(super) fn get(split: &Split<'_>, name: &str) -> Option<String> {
    split
        .fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
        .map(Field::value)
}

/// Rebuilds the message: fields for which `drop` holds are left out, the
/// Subject is replaced by `subject` (one field, added when there was none),
/// `add` comes after the kept fields, then the rest as it was.
pub(super) fn rebuild(
    split: &Split<'_>,
    drop: impl Fn(&str) -> bool,
    subject: Option<&str>,
    add: &[(String, String)],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut subject_written = false;
    for f in &split.fields {
        if drop(f.name) {
            continue;
        }
        if f.name.eq_ignore_ascii_case("Subject")
            && let Some(s) = subject
        {
            if !subject_written {
                out.extend_from_slice(format!("Subject: {s}\r\n").as_bytes());
                subject_written = true;
            }
            continue;
        }
        out.extend_from_slice(f.raw);
        if !f.raw.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    if let (Some(s), false) = (subject, subject_written)
        && !s.is_empty()
    {
        out.extend_from_slice(format!("Subject: {s}\r\n").as_bytes());
    }
    for (name, value) in add {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if split.rest.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(split.rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_fields_dropped_replaced_and_added() {
        let m = b"From: a@b.example\r\nX-Mailtls-Signed: valid;\r\n forged\r\nSubject: [signed]\r\n  hi\r\n\r\nbody\r\n";
        let s = split(m);
        assert_eq!(s.fields.len(), 3);
        assert_eq!(get(&s, "subject").unwrap(), "[signed] hi");
        let out = rebuild(
            &s,
            |n| n.starts_with("X-Mailtls-"),
            Some("hi"),
            &[("X-Mailtls-Encrypted".into(), "decrypted".into())],
        );
        assert_eq!(
            out,
            b"From: a@b.example\r\nSubject: hi\r\nX-Mailtls-Encrypted: decrypted\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn lf_only_and_no_body() {
        let s = split(b"Subject: x\nTo: y@z.example\n");
        assert_eq!(s.fields.len(), 2);
        assert!(s.rest.is_empty());
        let out = rebuild(&s, |_| false, None, &[]);
        assert_eq!(out, b"Subject: x\nTo: y@z.example\n\r\n");
    }
}
