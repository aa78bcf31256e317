//! Subject marks: the prefixes that tell a reader what the gateway found
//! (`[signed]`, `[encrypted]`...), and the removal of anything that looks
//! like one from mail the gateway did not mark itself.
//!
//! The Subject is not covered by an S/MIME signature, so a sender can write
//! `[signed]` into it. Before marking, every look-alike of every configured
//! mark is removed: after RFC 2047 decoding, ignoring case, whitespace and
//! invisible characters, with fullwidth forms, bracket variants and the
//! common Cyrillic/Greek homoglyphs of Latin letters folded, wherever in the
//! Subject it occurs and however often.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_parser::{HeaderName, MessageParser};

/// Placeholder for the signer's domain in the domain-signature mark (the
/// second argument of [`SubjectMarks::new`]).
pub const DOMAIN_PLACEHOLDER: &str = "{domain}";

/// The default mark of S/MIME mail that could not be read.
const DEFAULT_FAILED: &str = "[S/MIME failed]";
/// The default mark of a signature that verified over a weak algorithm.
const DEFAULT_WEAK_MARK: &str = "[weak signature]";

/// Longest text the domain placeholder stands for when stripping.
const MAX_DOMAIN_CHARS: usize = 255;

/// Why a mark cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MarkError {
    /// The mark has no visible character: it could not be told apart.
    #[error("subject mark {which} is empty")]
    Empty {
        /// Which mark.
        which: &'static str,
    },
    /// A mark other than `signed_by_domain` contains the placeholder, or
    /// `signed_by_domain` contains it more than once.
    #[error("subject mark {which} uses {DOMAIN_PLACEHOLDER} where it cannot")]
    Placeholder {
        /// Which mark.
        which: &'static str,
    },
    /// The mark holds a control character (it would break the header).
    #[error("subject mark {which} contains a control character")]
    Control {
        /// Which mark.
        which: &'static str,
    },
}

/// The configured marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectMarks {
    signed: String,
    signed_by_domain: String,
    encrypted: String,
    invalid: String,
    failed: String,
    weak: String,
    patterns: Vec<Pattern>,
}

/// The security result a Subject is marked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark<'a> {
    /// Signed by the sender, verified.
    Signed,
    /// Signed with a domain certificate, verified.
    SignedByDomain(&'a str),
    /// Was encrypted (and decrypted by the gateway).
    Encrypted,
    /// Signed, but the signature did not verify.
    SignatureInvalid,
    /// S/MIME whose signature or envelope could not be read at all.
    Failed,
    /// Signed and verified, but over a weak algorithm (SHA-1).
    SignedWeak,
}

impl Default for SubjectMarks {
    fn default() -> Self {
        // These defaults are valid marks; building them cannot fail.
        let mut m = SubjectMarks {
            signed: "[signed]".into(),
            signed_by_domain: "[signed by <*@{domain}>]".into(),
            encrypted: "[encrypted]".into(),
            invalid: "[signature invalid]".into(),
            failed: DEFAULT_FAILED.into(),
            weak: DEFAULT_WEAK_MARK.into(),
            patterns: Vec::new(),
        };
        m.patterns = m.build_patterns();
        m
    }
}

impl SubjectMarks {
    /// Builds the marks; `signed_by_domain` may contain `{domain}` once.
    /// The weak-signature mark keeps its default (`[weak signature]`):
    /// see [`SubjectMarks::with_weak_signature`].
    pub fn new(
        signed: &str,
        signed_by_domain: &str,
        encrypted: &str,
        invalid: &str,
    ) -> Result<Self, MarkError> {
        for (which, text, placeholders) in [
            ("signed", signed, 0),
            ("signed_by_domain", signed_by_domain, 1),
            ("encrypted", encrypted, 0),
            ("signature_invalid", invalid, 0),
        ] {
            check_mark(which, text, placeholders)?;
        }
        let mut m = SubjectMarks {
            signed: signed.to_owned(),
            signed_by_domain: signed_by_domain.to_owned(),
            encrypted: encrypted.to_owned(),
            invalid: invalid.to_owned(),
            failed: DEFAULT_FAILED.to_owned(),
            weak: DEFAULT_WEAK_MARK.to_owned(),
            patterns: Vec::new(),
        };
        m.patterns = m.build_patterns();
        Ok(m)
    }

    /// Uses `failed` (default `[S/MIME failed]`) for S/MIME mail whose
    /// signature or envelope could not be read.
    pub fn with_failed(mut self, failed: &str) -> Result<Self, MarkError> {
        check_mark("failed", failed, 0)?;
        self.failed = failed.to_owned();
        self.patterns = self.build_patterns();
        Ok(self)
    }

    /// Uses `text` as the mark of a signature that verified over a weak
    /// algorithm (SHA-1), instead of `[weak signature]`. Like every mark,
    /// its look-alikes are removed from incoming Subjects.
    pub fn with_weak_signature(mut self, text: &str) -> Result<Self, MarkError> {
        check_mark("signature_weak", text, 0)?;
        self.weak = text.to_owned();
        self.patterns = self.build_patterns();
        Ok(self)
    }

    fn build_patterns(&self) -> Vec<Pattern> {
        let mut out = Vec::new();
        for text in [
            &self.signed,
            &self.encrypted,
            &self.invalid,
            &self.failed,
            &self.weak,
        ] {
            out.push(Pattern::new(text, None));
        }
        match self.signed_by_domain.split_once(DOMAIN_PLACEHOLDER) {
            Some((before, after)) => out.push(Pattern::new(before, Some(after))),
            None => out.push(Pattern::new(&self.signed_by_domain, None)),
        }
        // Longer marks first, so "[signed by ...]" is not cut to "[signed]".
        out.sort_by_key(|p| std::cmp::Reverse(p.len()));
        out
    }

    /// The text of one mark.
    pub fn text(&self, mark: Mark<'_>) -> String {
        match mark {
            Mark::Signed => self.signed.clone(),
            Mark::SignedByDomain(domain) => {
                // A domain is LDH/A-label text; anything else is not put in.
                let clean: String = domain
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
                    .collect();
                self.signed_by_domain.replace(DOMAIN_PLACEHOLDER, &clean)
            }
            Mark::Encrypted => self.encrypted.clone(),
            Mark::SignatureInvalid => self.invalid.clone(),
            Mark::Failed => self.failed.clone(),
            Mark::SignedWeak => self.weak.clone(),
        }
    }

    /// Removes every look-alike of every mark from a decoded Subject and
    /// tidies the whitespace left behind; a Subject without any comes back
    /// unchanged. Nothing that matches a mark is left, even where removing
    /// one mark joins the pieces of another (`[sig[signed]ned]`).
    pub fn strip(&self, decoded: &str) -> String {
        match self.strip_all(decoded) {
            Some(stripped) => tidy(&stripped),
            None => decoded.to_owned(),
        }
    }

    /// One left-to-right pass with a stack: after each character, a mark
    /// ending there is popped. The stack never holds a mark before a push,
    /// so any new match ends at the pushed character, and what is left at
    /// the end holds none; the work is linear in the Subject's length (times
    /// the marks' lengths), whatever the nesting. `None` when nothing matched.
    fn strip_all(&self, text: &str) -> Option<String> {
        let mut stack: Vec<Folded> = Vec::new();
        let mut removed = false;
        for f in fold(text) {
            stack.push(f);
            if f.ch == ' ' {
                continue;
            }
            // The longest match (earliest start) goes.
            if let Some(start) = self
                .patterns
                .iter()
                .filter_map(|p| p.match_suffix(&stack))
                .min()
            {
                stack.truncate(start);
                removed = true;
            }
        }
        if !removed {
            return None;
        }
        // Invisible characters were folded into the entry before them, so
        // they stay or go with it.
        Some(stack.iter().map(|f| &text[f.start..f.end]).collect())
    }

    /// A Subject for mail the gateway processed: look-alikes removed from
    /// `decoded`, then `marks` prefixed in the order given.
    pub fn mark(&self, decoded: &str, marks: &[Mark<'_>]) -> String {
        let stripped = self.strip(decoded);
        let mut out = String::new();
        for m in marks {
            out.push_str(&self.text(*m));
            out.push(' ');
        }
        out.push_str(&stripped);
        out.trim_end().to_owned()
    }
}

/// A mark must be visible, free of control characters and hold the domain
/// placeholder at most `placeholders` times.
fn check_mark(which: &'static str, text: &str, placeholders: usize) -> Result<(), MarkError> {
    if fold(&text.replace(DOMAIN_PLACEHOLDER, ""))
        .iter()
        .all(|c| c.ch == ' ')
    {
        return Err(MarkError::Empty { which });
    }
    if text.chars().any(char::is_control) {
        return Err(MarkError::Control { which });
    }
    if text.matches(DOMAIN_PLACEHOLDER).count() > placeholders {
        return Err(MarkError::Placeholder { which });
    }
    Ok(())
}

/// Decodes a raw Subject header value (as it appears after `Subject:`,
/// folded or not) with its RFC 2047 encoded words, through mail-parser.
pub fn decode_subject(raw: &str) -> String {
    // Line breaks are unfolded first so the value cannot end the header.
    let unfolded: String = raw
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    let header = format!("Subject: {unfolded}\r\n\r\n");
    MessageParser::new()
        .header_text(HeaderName::Subject)
        .parse_headers(header.as_bytes())
        .and_then(|m| m.subject().map(str::to_owned))
        .unwrap_or_else(|| unfolded.trim().to_owned())
}

/// Encodes a Subject for the header: as is when it is printable ASCII, else
/// as RFC 2047 `B` encoded words in UTF-8, each at most 75 characters, one
/// per folded line.
pub fn encode_subject(subject: &str) -> String {
    if subject.chars().all(|c| c == ' ' || c.is_ascii_graphic()) && !subject.contains("=?") {
        return subject.to_owned();
    }
    // 45 bytes of UTF-8 make 60 base64 characters; with "=?utf-8?b?" and
    // "?=" a word stays under 75 (RFC 2047 §2).
    const CHUNK: usize = 45;
    let mut words = Vec::new();
    let mut chunk = String::new();
    for ch in subject.chars() {
        if chunk.len() + ch.len_utf8() > CHUNK {
            words.push(format!("=?utf-8?b?{}?=", BASE64.encode(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(ch);
    }
    if !chunk.is_empty() {
        words.push(format!("=?utf-8?b?{}?=", BASE64.encode(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

/// One character after folding, and where it came from in the input.
#[derive(Debug, Clone, Copy)]
struct Folded {
    ch: char,
    start: usize,
    end: usize,
}

/// Folds text for comparison: lowercase; fullwidth ASCII to ASCII; bracket
/// variants to `[` `]`; common homoglyphs to Latin (and i, l, 1, | to one
/// letter); every whitespace run to
/// one space; invisible characters dropped.
fn fold(s: &str) -> Vec<Folded> {
    let mut out: Vec<Folded> = Vec::with_capacity(s.len());
    for (start, c) in s.char_indices() {
        let end = start + c.len_utf8();
        if is_invisible(c) {
            // Counted as part of the preceding character, so a removed mark
            // takes its invisible padding along.
            if let Some(last) = out.last_mut() {
                last.end = end;
            }
            continue;
        }
        let ch = if c.is_whitespace() { ' ' } else { fold_char(c) };
        if ch == ' '
            && let Some(last) = out.last_mut()
            && last.ch == ' '
        {
            last.end = end;
            continue;
        }
        out.push(Folded { ch, start, end });
    }
    out
}

fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
    )
}

fn fold_char(c: char) -> char {
    // Fullwidth ASCII (U+FF01..U+FF5E) maps onto ASCII by a fixed offset.
    let c = match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    };
    let c = match c {
        '(' | '{' | '<' | '\u{3010}' | '\u{3014}' | '\u{3016}' | '\u{3018}' | '\u{301A}'
        | '\u{27E6}' | '\u{2045}' | '\u{FE5D}' | '\u{FE59}' | '\u{2329}' | '\u{3008}'
        | '\u{27E8}' | '\u{2039}' | '\u{00AB}' => '[',
        ')' | '}' | '>' | '\u{3011}' | '\u{3015}' | '\u{3017}' | '\u{3019}' | '\u{301B}'
        | '\u{27E7}' | '\u{2046}' | '\u{FE5E}' | '\u{FE5A}' | '\u{232A}' | '\u{3009}'
        | '\u{27E9}' | '\u{203A}' | '\u{00BB}' => ']',
        _ => c,
    };
    let mut lower = c.to_lowercase();
    let c = match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    };
    match c {
        // Cyrillic
        'а' => 'a',
        'в' => 'b',
        'с' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' => 'e',
        'һ' => 'h',
        'і' | 'ї' | 'ı' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'м' => 'm',
        'н' => 'h',
        'о' => 'o',
        'р' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'т' => 't',
        'ц' => 'u',
        'ѵ' => 'v',
        'ԝ' => 'w',
        'х' => 'x',
        'у' => 'y',
        // Greek
        'α' => 'a',
        'β' => 'b',
        'ε' => 'e',
        'η' => 'n',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        // Latin look-alikes
        'ɡ' => 'g',
        // i, l, 1 and | are told apart by font only: one class.
        'l' | 'ℓ' | '|' | '1' | 'ǀ' | '!' => 'i',
        '0' => 'o',
        _ => c,
    }
}

/// A mark as folded characters with whitespace removed, and for the domain
/// mark the text after the placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    head: Vec<char>,
    tail: Option<Vec<char>>,
}

fn folded_letters(s: &str) -> Vec<char> {
    fold(s)
        .into_iter()
        .map(|f| f.ch)
        .filter(|c| *c != ' ')
        .collect()
}

impl Pattern {
    fn new(head: &str, tail: Option<&str>) -> Self {
        Pattern {
            head: folded_letters(head),
            tail: tail.map(folded_letters),
        }
    }

    fn len(&self) -> usize {
        self.head.len() + self.tail.as_ref().map_or(0, Vec::len)
    }

    /// Where a match ending at the top of `stack` starts, whitespace
    /// anywhere inside allowed; the placeholder takes the fewest characters
    /// (at most a domain's length) that make a match.
    fn match_suffix(&self, stack: &[Folded]) -> Option<usize> {
        let Some(tail) = &self.tail else {
            return match_rev(&self.head, stack, stack.len());
        };
        let tail_start = match_rev(tail, stack, stack.len())?;
        let lowest = tail_start.saturating_sub(MAX_DOMAIN_CHARS);
        (lowest..=tail_start)
            .rev()
            .find_map(|head_end| match_rev(&self.head, stack, head_end))
    }
}

/// Where `pattern` starts if it ends just before `end` in `text`.
fn match_rev(pattern: &[char], text: &[Folded], end: usize) -> Option<usize> {
    let mut i = end;
    for (k, want) in pattern.iter().rev().enumerate() {
        if k > 0 {
            while i > 0 && text[i - 1].ch == ' ' {
                i -= 1;
            }
        }
        if i == 0 || text[i - 1].ch != *want {
            return None;
        }
        i -= 1;
    }
    Some(i)
}

/// One space between words, none at the ends, and no colon left dangling
/// at the start (`: hello` after `[signed]: hello` lost its mark).
fn tidy(s: &str) -> String {
    let collapsed = s.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .trim_start_matches(|c: char| c == ':' || c.is_whitespace())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(s: &str) -> String {
        SubjectMarks::default().strip(s)
    }

    fn strip_raw(raw: &str) -> String {
        SubjectMarks::default().strip(&decode_subject(raw))
    }

    #[test]
    fn plain_subjects_are_untouched() {
        for s in [
            "Quarterly report",
            "- leading dash stays",
            "Re: design [draft] signed off",
            "The signed contract",
            "[sign] [signe] [signedx",
            "encrypted files attached",
            "",
            "a  b", // double space kept when nothing is removed
        ] {
            assert_eq!(strip(s), s, "{s:?}");
        }
    }

    #[test]
    fn exact_case_and_whitespace_variants() {
        for s in [
            "[signed] Hello",
            "[SIGNED] Hello",
            "[Signed]Hello",
            "[ signed ] Hello",
            "[s i g n e d] Hello",
            "[\tsigned\u{00A0}] Hello",
            "  [signed]   Hello  ",
            "[signed][signed] Hello",
            "[signed] [SIGNED] [ Signed ] Hello",
            "[encrypted] [signed] Hello",
            "[signature invalid] Hello",
            "[SIGNATURE   INVALID] Hello",
            "[signature\u{3000}invalid] Hello",
            "[signed]: Hello",
        ] {
            assert_eq!(strip(s), "Hello", "{s:?}");
        }
    }

    #[test]
    fn marks_anywhere_and_replies() {
        assert_eq!(strip("Re: [signed] Hello"), "Re: Hello");
        assert_eq!(
            strip("Fwd: Re: [encrypted] [signed] x [signed]"),
            "Fwd: Re: x"
        );
        assert_eq!(strip("Hello [signed]"), "Hello");
    }

    #[test]
    fn look_alike_characters() {
        for s in [
            "\u{FF3B}signed\u{FF3D} Hello", // fullwidth brackets
            "\u{FF3B}\u{FF53}\u{FF49}\u{FF47}\u{FF4E}\u{FF45}\u{FF44}\u{FF3D} Hello", // all fullwidth
            "\u{3010}signed\u{3011} Hello", // CJK lenticular brackets
            "(signed) Hello",
            "{signed} Hello",
            "[sign\u{200B}ed] Hello", // zero-width space
            "[si\u{00AD}gned] Hello", // soft hyphen
            "[\u{FEFF}signed\u{2060}] Hello",
            "[\u{0455}\u{0456}gn\u{0435}d] Hello", // Cyrillic s, i, e
            "[SIGNЕD] Hello",                      // Cyrillic capital Ie
            "[s1gned] Hello",
            "[sign\u{03B5}d] Hello", // Greek epsilon
        ] {
            assert_eq!(strip(s), "Hello", "{s:?}");
        }
    }

    #[test]
    fn nested_marks_cannot_reassemble() {
        assert_eq!(strip("[sig[signed]ned] Hello"), "Hello");
        assert_eq!(strip("[sig[sig[signed]ned]ned] Hello"), "Hello");
        assert_eq!(strip("[encr[signed]ypted] Hello"), "Hello");
    }

    #[test]
    fn deep_nesting_is_linear() {
        // Quadratic (round-by-round) stripping would take minutes here.
        let n = 20_000;
        let s = format!("{}[signed]{} Hello", "[sig".repeat(n), "ned]".repeat(n));
        assert_eq!(strip(&s), "Hello");
        let s = format!("{}x", "[signed by <*@".repeat(n));
        assert_eq!(strip(&s), s);
        let s = "[signed by <*@ ".repeat(n);
        assert_eq!(strip(&s), s);
    }

    #[test]
    fn domain_mark_with_any_domain() {
        assert_eq!(strip("[signed by <*@bank.example>] Pay now"), "Pay now");
        assert_eq!(strip("[SIGNED BY <*@evil.example> ] Pay now"), "Pay now");
        assert_eq!(strip("[signed by <*@>] Pay now"), "Pay now");
        // Not a mark without its closing part.
        assert_eq!(
            strip("[signed by <*@bank.example Pay now"),
            "[signed by <*@bank.example Pay now"
        );
    }

    #[test]
    fn rfc2047_encoded_marks() {
        // Q encoding, UTF-8.
        assert_eq!(strip_raw("=?utf-8?q?=5Bsigned=5D_Hello?="), "Hello");
        // B encoding of "[signed] Hello".
        assert_eq!(strip_raw("=?UTF-8?B?W3NpZ25lZF0gSGVsbG8=?="), "Hello");
        // A mark split across two adjacent encoded words (the space between
        // them is not part of the text, RFC 2047 §6.2).
        assert_eq!(
            strip_raw("=?utf-8?q?=5Bsig?= =?utf-8?q?ned=5D?= Hello"),
            "Hello"
        );
        // Latin-1, upper case, folded header.
        assert_eq!(
            strip_raw("=?ISO-8859-1?Q?=5BSIGNED=5D?=\r\n Hello"),
            "Hello"
        );
        // Fullwidth brackets hidden in base64.
        let b64 = BASE64.encode("\u{FF3B}encrypted\u{FF3D} Hi".as_bytes());
        assert_eq!(strip_raw(&format!("=?utf-8?b?{b64}?=")), "Hi");
        // Plain text passes through decoding unchanged.
        assert_eq!(decode_subject("Hello world"), "Hello world");
        assert_eq!(decode_subject("=?utf-8?q?caf=C3=A9?="), "café");
    }

    #[test]
    fn marking_puts_marks_first_after_stripping() {
        let m = SubjectMarks::default();
        assert_eq!(
            m.mark("[signed] Hello", &[Mark::Encrypted, Mark::Signed]),
            "[encrypted] [signed] Hello"
        );
        assert_eq!(
            m.mark("Hello", &[Mark::SignedByDomain("partner.example")]),
            "[signed by <*@partner.example>] Hello"
        );
        assert_eq!(m.mark("[signed] Hi", &[]), "Hi");
        // A marked subject, stripped again (a reply), loses the marks.
        let marked = m.mark(
            "Hi",
            &[Mark::SignatureInvalid, Mark::SignedByDomain("x.example")],
        );
        assert_eq!(m.strip(&format!("Re: {marked}")), "Re: Hi");
        // The domain is reduced to host-name characters.
        assert_eq!(
            m.text(Mark::SignedByDomain("a]b.example")),
            "[signed by <*@ab.example>]"
        );
    }

    #[test]
    fn custom_marks() {
        let m = SubjectMarks::new("(S)", "(S:{domain})", "(E)", "(BAD SIG)").unwrap();
        assert_eq!(m.strip("(s) [S] (E) hello"), "hello");
        assert_eq!(m.strip("(S:foo.example) hello"), "hello");
        assert_eq!(m.mark("hello", &[Mark::Signed]), "(S) hello");
        assert!(matches!(
            SubjectMarks::new(" ", "x", "y", "z"),
            Err(MarkError::Empty { which: "signed" })
        ));
        assert!(matches!(
            SubjectMarks::new("a", " {domain} ", "y", "z"),
            Err(MarkError::Empty {
                which: "signed_by_domain"
            })
        ));
        assert!(matches!(
            SubjectMarks::new("a{domain}", "x", "y", "z"),
            Err(MarkError::Placeholder { which: "signed" })
        ));
        assert!(matches!(
            SubjectMarks::new("a", "x", "y\r\nBcc: z", "z"),
            Err(MarkError::Control { which: "encrypted" })
        ));
    }

    #[test]
    fn encoding_round_trips() {
        for s in [
            "Hello",
            "[signed] café",
            "日本語のメール件名がとても長い場合にも正しく分割されること",
            "=?x?=",
        ] {
            let enc = encode_subject(s);
            assert!(enc.lines().all(|l| l.len() <= 76), "{enc}");
            assert_eq!(decode_subject(&enc), s, "{enc}");
        }
        assert_eq!(encode_subject("Plain ASCII"), "Plain ASCII");
    }
}
