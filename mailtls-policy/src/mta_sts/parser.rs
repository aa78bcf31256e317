//! The MTA-STS policy file parser (RFC 8461 §3.2), with a strict and a
//! lenient profile.
//!
//! Both profiles read the file the same way and report the same
//! [`Diagnostic`]s; they differ only in which findings make the policy
//! invalid and in what the lenient one repairs. The rules (each has a test
//! citing its section; the full table with other implementations is in
//! [`crate::manual::conformance`]):
//!
//! - of a repeated `version`, `mode` or `max_age` the first counts (RFC 8461
//!   §3.2: "all entries except for the first SHALL be ignored"), so a later
//!   `mode: none` cannot downgrade `enforce`; the strict profile still wants
//!   the ignored value to fit the grammar, as mox does;
//! - keys are case-sensitive: `Mode:` is an unknown key. The lenient
//!   profile reads it as `mode` only when no line has the exact key, never
//!   beside one, and never adds an `mx` from it beside exact `mx` lines;
//! - lenient relaxes syntax (BOM, blank lines, whitespace before a colon,
//!   a root dot after an `mx`, U-labels), never security: on any file the
//!   strict profile accepts, it gives the same mode, MX set and `max_age`;
//! - a line without a colon is an error for that line and is never glued
//!   to the next key;
//! - CRLF and LF are both line ends; `max_age` is clamped to one year;
//! - single-label `mx` patterns (`localhost`, `*.com`) are in the grammar
//!   and kept with a warning: dropping them could drop the whole policy;
//! - unknown keys are kept as extensions; the raw text is kept.

use std::fmt;

use mailtls_core::{DnsName, NamePattern, PatternError};

use super::policy::{MAX_MAX_AGE, MtaStsPolicy, PolicyMode};

/// How forgiving the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Exactly the ABNF of RFC 8461 §3.2: a BOM, a blank line, a line
    /// without a colon, whitespace before a colon, a mode word in another
    /// case, an extension with an empty value, an `mx` with a root dot, a
    /// U-label or an IP address, and a repeated key whose (ignored) value
    /// does not parse are errors. A key differing from a known one only by
    /// case is an unknown key (a warning), as the RFC reads it.
    Strict,
    /// What senders meet in the wild: everything the strict profile refuses
    /// for syntax alone is reported and skipped or repaired; missing
    /// required fields and bad values still make it invalid. A repair never
    /// outranks an exact line, so on any file the strict profile accepts
    /// this one gives the same mode, MX set and `max_age`.
    #[default]
    Lenient,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; the policy is fine.
    Info,
    /// The file deviates from RFC 8461 but the profile accepted it.
    Warning,
    /// The policy is invalid under the profile.
    Error,
}

/// What was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiagnosticKind {
    /// The body is not UTF-8.
    NotUtf8,
    /// The body starts with a byte order mark.
    ByteOrderMark,
    /// The file mixes CRLF and LF line ends.
    MixedLineEnds,
    /// A line has no colon; it is ignored and never joined to another.
    NoColon {
        /// The line's text.
        text: String,
    },
    /// A blank line (between fields, or more than one line end after the
    /// last): not in the grammar, an error in the strict profile.
    EmptyLine,
    /// Whitespace between a key and its colon.
    SpaceBeforeColon {
        /// The key.
        key: String,
    },
    /// A key that differs from a known key only by case (`Mode:`). Keys
    /// are case-sensitive, so by RFC 8461 it is an unknown key: the strict
    /// profile keeps it as an extension; the lenient one reads it as the
    /// known key only when no line has the exact key.
    KeyCase {
        /// The key as written.
        key: String,
    },
    /// A key seen before; the first value is the one used.
    RepeatedKey {
        /// The key.
        key: String,
    },
    /// A key RFC 8461 does not define; kept as an extension.
    UnknownKey {
        /// The key.
        key: String,
        /// A known key it looks like a typo of (`nmx` → `mx`).
        suggestion: Option<&'static str>,
    },
    /// An extension key that is not a valid `sts-policy-ext-name`.
    BadKey {
        /// The key.
        key: String,
    },
    /// `version` is not `STSv1`.
    BadVersion {
        /// The value.
        value: String,
    },
    /// `mode` is not `enforce`, `testing` or `none`.
    BadMode {
        /// The value.
        value: String,
    },
    /// `mode` has the right word in another case (`Enforce`).
    ModeCase {
        /// The value.
        value: String,
    },
    /// `max_age` is not 1 to 10 digits.
    BadMaxAge {
        /// The value.
        value: String,
    },
    /// `max_age` exceeded 31557600 and was clamped.
    MaxAgeClamped {
        /// The value given.
        value: String,
    },
    /// An `mx` value is an IP address, which can never match an MX host.
    IpAddressInMx {
        /// The value.
        value: String,
    },
    /// An `mx` value uses Unicode labels; the grammar wants A-labels.
    ULabelInMx {
        /// The value as written.
        value: String,
        /// Its A-label form.
        a_label: String,
    },
    /// An `mx` value is not a host name or one-label wildcard.
    BadMx {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A required field is missing.
    Missing {
        /// The key.
        key: &'static str,
    },
    /// The mode is `enforce` or `testing` but no usable `mx` remains.
    NoMx,
    /// A value holds characters the grammar does not allow (control
    /// characters, a stray CR).
    BadCharacters {
        /// The key.
        key: String,
    },
    /// An extension key with nothing after the colon; the grammar wants at
    /// least one character. The line is ignored.
    EmptyValue {
        /// The key.
        key: String,
    },
    /// An `mx` value ends with a root dot, which `Domain` (RFC 5321) does
    /// not have; the lenient profile drops the dot.
    MxTrailingDot {
        /// The value as written.
        value: String,
    },
    /// An `mx` pattern of a single label (`localhost`, `*.com`): allowed by
    /// the grammar and kept, but rarely what the domain meant.
    SingleLabelMx {
        /// The value.
        value: String,
    },
}

/// One finding, with the line it concerns (1-based; 0 for the whole file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The line, or 0.
    pub line: usize,
    /// How much it matters under the profile used.
    pub severity: Severity,
    /// What was found.
    pub kind: DiagnosticKind,
}

impl fmt::Display for DiagnosticKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DiagnosticKind::*;
        match self {
            NotUtf8 => write!(f, "the policy is not UTF-8 text"),
            ByteOrderMark => write!(f, "the policy starts with a byte order mark"),
            MixedLineEnds => write!(f, "CRLF and LF line ends are mixed"),
            NoColon { text } => write!(f, "line {text:?} has no colon (ignored)"),
            EmptyLine => write!(f, "empty line"),
            SpaceBeforeColon { key } => write!(f, "whitespace between key {key:?} and colon"),
            KeyCase { key } => write!(
                f,
                "key {key:?} is not lowercase; keys are case-sensitive, so it is an unknown key"
            ),
            RepeatedKey { key } => write!(f, "key {key:?} repeated; the first value is used"),
            UnknownKey {
                key,
                suggestion: Some(s),
            } => write!(f, "unknown key {key:?} (did you mean {s:?}?)"),
            UnknownKey { key, .. } => write!(f, "unknown key {key:?} (kept as an extension)"),
            BadKey { key } => write!(f, "{key:?} is not a valid key"),
            BadVersion { value } => write!(f, "version {value:?} is not \"STSv1\""),
            BadMode { value } => write!(f, "mode {value:?} is not enforce, testing or none"),
            ModeCase { value } => write!(f, "mode {value:?} is not lowercase"),
            BadMaxAge { value } => write!(f, "max_age {value:?} is not 1 to 10 digits"),
            MaxAgeClamped { value } => {
                write!(f, "max_age {value} is above {MAX_MAX_AGE}; clamped")
            }
            IpAddressInMx { value } => write!(f, "mx {value:?} is an IP address, not a host name"),
            ULabelInMx { value, a_label } => {
                write!(
                    f,
                    "mx {value:?} uses U-labels; its A-label form is {a_label:?}"
                )
            }
            BadMx { value, reason } => write!(f, "mx {value:?} is not a valid pattern: {reason}"),
            Missing { key } => write!(f, "required key {key:?} is missing"),
            NoMx => write!(f, "no usable mx pattern for mode enforce or testing"),
            BadCharacters { key } => write!(f, "the value of {key:?} holds forbidden characters"),
            EmptyValue { key } => write!(f, "key {key:?} has an empty value (ignored)"),
            MxTrailingDot { value } => write!(f, "mx {value:?} ends with a root dot"),
            SingleLabelMx { value } => {
                write!(f, "mx {value:?} is a single-label pattern (kept)")
            }
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        if self.line == 0 {
            write!(f, "{sev}: {}", self.kind)
        } else {
            write!(f, "{sev}: line {}: {}", self.line, self.kind)
        }
    }
}

/// A policy that the chosen profile refuses, with everything found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MTA-STS policy: {}", first_error(.diagnostics))]
pub struct PolicyError {
    /// Every finding, errors and others, in line order.
    pub diagnostics: Vec<Diagnostic>,
}

fn first_error(d: &[Diagnostic]) -> String {
    d.iter()
        .find(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .unwrap_or_else(|| "unknown error".to_owned())
}

impl PolicyError {
    /// The findings with [`Severity::Error`].
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }
}

/// A policy the profile accepted, with what was noticed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPolicy {
    /// The policy.
    pub policy: MtaStsPolicy,
    /// Warnings and notes (never errors).
    pub diagnostics: Vec<Diagnostic>,
}

struct Collector {
    profile: Profile,
    out: Vec<Diagnostic>,
}

impl Collector {
    /// Records a finding that is an error in the strict profile and
    /// `lenient` in the lenient one.
    fn strict_error(&mut self, line: usize, lenient: Severity, kind: DiagnosticKind) {
        let severity = match self.profile {
            Profile::Strict => Severity::Error,
            Profile::Lenient => lenient,
        };
        self.out.push(Diagnostic {
            line,
            severity,
            kind,
        });
    }

    fn push(&mut self, line: usize, severity: Severity, kind: DiagnosticKind) {
        self.out.push(Diagnostic {
            line,
            severity,
            kind,
        });
    }
}

const KNOWN_KEYS: [&str; 4] = ["version", "mode", "max_age", "mx"];

fn suggestion(key: &str) -> Option<&'static str> {
    // One edit away, or the same letters in another case.
    KNOWN_KEYS.into_iter().find(|known| {
        let (a, b) = (key.as_bytes(), known.as_bytes());
        if a.len() == b.len() {
            a.iter().zip(b).filter(|(x, y)| x != y).count() == 1
        } else if a.len() == b.len() + 1 {
            (0..a.len()).any(|skip| {
                a.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, c)| c)
                    .eq(b.iter())
            })
        } else if a.len() + 1 == b.len() {
            (0..b.len()).any(|skip| {
                b.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, c)| c)
                    .eq(a.iter())
            })
        } else {
            false
        }
    })
}

/// The extension-name grammar shared by RFC 8461 §3.1/§3.2 and RFC 8460
/// §3: a letter or digit, then up to 31 letters, digits, `_`, `-`, `.`.
pub(crate) fn valid_ext_name(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// One line with a known key, as read.
struct KnownLine<'a> {
    n: usize,
    key: &'static str,
    value: &'a str,
}

/// The known fields gathered so far.
#[derive(Default)]
struct Fields {
    version: bool,
    mode: Option<PolicyMode>,
    max_age: Option<u32>,
    mx: Vec<NamePattern>,
    seen_mx_line: bool,
}

/// The mode a value names, ignoring case (the caller reports the case).
fn mode_word(value: &str) -> Option<PolicyMode> {
    [PolicyMode::Enforce, PolicyMode::Testing, PolicyMode::None]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(value))
}

fn max_age_digits(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
}

impl Fields {
    /// Reads one known line. A repeated `version`, `mode` or `max_age` is
    /// ignored (RFC 8461 §3.2: "all entries except for the first SHALL be
    /// ignored"), but its value must still fit the grammar in the strict
    /// profile, as mox requires.
    fn apply(&mut self, c: &mut Collector, line: &KnownLine<'_>) {
        let KnownLine { n, key, value } = *line;
        let repeated = match key {
            "version" => self.version,
            "mode" => self.mode.is_some(),
            "max_age" => self.max_age.is_some(),
            _ => false,
        };
        if repeated {
            c.push(
                n,
                Severity::Warning,
                DiagnosticKind::RepeatedKey {
                    key: key.to_owned(),
                },
            );
            let parses = match key {
                "version" => value == "STSv1",
                "mode" => mode_word(value).is_some(),
                _ => max_age_digits(value) && value.len() <= 10,
            };
            if !parses {
                let kind = match key {
                    "version" => DiagnosticKind::BadVersion {
                        value: value.to_owned(),
                    },
                    "mode" => DiagnosticKind::BadMode {
                        value: value.to_owned(),
                    },
                    _ => DiagnosticKind::BadMaxAge {
                        value: value.to_owned(),
                    },
                };
                c.strict_error(n, Severity::Warning, kind);
            }
            return;
        }
        match key {
            "version" => {
                if value != "STSv1" {
                    c.push(
                        n,
                        Severity::Error,
                        DiagnosticKind::BadVersion {
                            value: value.to_owned(),
                        },
                    );
                }
                self.version = true;
            }
            "mode" => match mode_word(value) {
                Some(m) => self.mode = Some(m),
                None => c.push(
                    n,
                    Severity::Error,
                    DiagnosticKind::BadMode {
                        value: value.to_owned(),
                    },
                ),
            },
            "max_age" => {
                if !max_age_digits(value) {
                    c.push(
                        n,
                        Severity::Error,
                        DiagnosticKind::BadMaxAge {
                            value: value.to_owned(),
                        },
                    );
                    return;
                }
                if value.len() > 10 {
                    // Beyond the grammar's 1*10DIGIT; the lenient profile
                    // clamps it like any other too-large value.
                    c.strict_error(
                        n,
                        Severity::Warning,
                        DiagnosticKind::BadMaxAge {
                            value: value.to_owned(),
                        },
                    );
                }
                let parsed = value.parse::<u64>().unwrap_or(u64::MAX);
                if parsed > u64::from(MAX_MAX_AGE) {
                    c.push(
                        n,
                        Severity::Warning,
                        DiagnosticKind::MaxAgeClamped {
                            value: value.to_owned(),
                        },
                    );
                }
                self.max_age =
                    Some(u32::try_from(parsed.min(u64::from(MAX_MAX_AGE))).unwrap_or(MAX_MAX_AGE));
            }
            _ => {
                self.seen_mx_line = true;
                if let Some(p) = parse_mx(c, n, value)
                    && !self.mx.contains(&p)
                {
                    self.mx.push(p);
                }
            }
        }
    }
}

/// Parses a policy file body.
///
/// ```
/// use mailtls_policy::mta_sts::{parse_policy, PolicyMode, Profile};
/// // RFC 8461 §3.2 example.
/// let body = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n\
///              mx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";
/// let parsed = parse_policy(body, Profile::Strict).unwrap();
/// assert_eq!(parsed.policy.mode(), PolicyMode::Enforce);
/// assert_eq!(parsed.policy.mx().len(), 3);
/// assert!(parsed.diagnostics.is_empty());
/// ```
pub fn parse_policy(body: &[u8], profile: Profile) -> Result<ParsedPolicy, PolicyError> {
    let mut c = Collector {
        profile,
        out: Vec::new(),
    };
    let Ok(text) = std::str::from_utf8(body) else {
        c.push(0, Severity::Error, DiagnosticKind::NotUtf8);
        return Err(PolicyError { diagnostics: c.out });
    };
    let raw = text.to_owned();
    let mut text = text;
    if let Some(rest) = text.strip_prefix('\u{feff}') {
        c.strict_error(0, Severity::Warning, DiagnosticKind::ByteOrderMark);
        text = rest;
    }
    // One pass over the bytes for both counts.
    let (mut crlf, mut lf) = (0usize, 0usize);
    let mut prev = 0u8;
    for &b in text.as_bytes() {
        if b == b'\n' {
            lf += 1;
            crlf += usize::from(prev == b'\r');
        }
        prev = b;
    }
    if crlf > 0 && crlf < lf {
        c.push(0, Severity::Info, DiagnosticKind::MixedLineEnds);
    }

    let mut st = Fields::default();
    let mut extensions: Vec<(String, String)> = Vec::new();
    // Lines whose known key (or mode value) needed repair: `Mode:`,
    // `mode :`, `mode: Enforce`. By the RFC such a key is an unknown key, so
    // the lenient profile reads them only for a key that no exact line gave
    // (RFC 8461 §3.2: keys are case-sensitive, unknown keys are ignored).
    // (Empty unless a line needs repair, so no allocation for clean files.)
    // With each, where it sits in `extensions` when it may also be read as
    // the unknown key it is (dropped from there if the repair is applied),
    // so lenient keeps exactly what strict keeps when no repair is used.
    let mut repaired: Vec<(KnownLine<'_>, Option<usize>)> = Vec::new();
    // Which known keys (in `KNOWN_KEYS` order) an exact line gave; exact
    // lines are read as they come.
    let mut given = [false; KNOWN_KEYS.len()];

    let mut pieces = text.split('\n').enumerate().peekable();
    while let Some((i, full_line)) = pieces.next() {
        let is_last_piece = pieces.peek().is_none();
        let n = i + 1;
        let line = full_line.strip_suffix('\r').unwrap_or(full_line);
        if line.trim_matches([' ', '\t']).is_empty() {
            // The one terminator after the last field leaves an empty
            // piece; anything else is a blank line, which the grammar
            // (RFC 8461 §3.2 sts-policy-record) does not have.
            if !(is_last_piece && full_line.is_empty()) {
                c.strict_error(n, Severity::Info, DiagnosticKind::EmptyLine);
            }
            continue;
        }
        let Some((key_part, value_part)) = line.split_once(':') else {
            c.strict_error(
                n,
                Severity::Warning,
                DiagnosticKind::NoColon {
                    text: line.to_owned(),
                },
            );
            continue;
        };
        let mut key = key_part;
        let mut key_repaired = false;
        if key.ends_with([' ', '\t']) {
            key = key.trim_end_matches([' ', '\t']);
            key_repaired = true;
            c.strict_error(
                n,
                Severity::Warning,
                DiagnosticKind::SpaceBeforeColon {
                    key: key.to_owned(),
                },
            );
        }
        let value = value_part.trim_matches([' ', '\t']);
        let forbidden = if value.is_ascii() {
            value.bytes().any(|b| b.is_ascii_control() && b != b'\t')
        } else {
            value.chars().any(|ch| ch.is_control() && ch != '\t')
        };
        if forbidden {
            // An exact known key's value cannot be read: the policy is
            // invalid. Any other line (an unknown or repaired key) is one
            // the lenient profile ignores: it must not switch the whole
            // policy off.
            let kind = DiagnosticKind::BadCharacters {
                key: key.to_owned(),
            };
            if KNOWN_KEYS.contains(&key) && !key_repaired {
                c.push(n, Severity::Error, kind);
            } else {
                c.strict_error(n, Severity::Warning, kind);
            }
            continue;
        }
        if let Some(at) = KNOWN_KEYS.iter().position(|k| *k == key) {
            let known = KNOWN_KEYS[at];
            // A mode word in another case is a repair of the value: like a
            // repaired key it never outranks an exact line.
            let mode_case =
                known == "mode" && mode_word(value).is_some_and(|m| m.as_str() != value);
            if mode_case {
                c.strict_error(
                    n,
                    Severity::Warning,
                    DiagnosticKind::ModeCase {
                        value: value.to_owned(),
                    },
                );
            }
            let line = KnownLine {
                n,
                key: known,
                value,
            };
            if key_repaired || mode_case {
                repaired.push((line, None));
            } else {
                given[at] = true;
                st.apply(&mut c, &line);
            }
            continue;
        }
        if let Some(known) = KNOWN_KEYS.into_iter().find(|k| k.eq_ignore_ascii_case(key)) {
            // RFC 8461 §3.2: a key differing only by case is an unknown key.
            // Strict reads it as one (a warning); lenient may fall back to it.
            c.push(
                n,
                Severity::Warning,
                DiagnosticKind::KeyCase {
                    key: key.to_owned(),
                },
            );
            if c.profile == Profile::Lenient {
                let mode_case =
                    known == "mode" && mode_word(value).is_some_and(|m| m.as_str() != value);
                if mode_case {
                    c.push(
                        n,
                        Severity::Warning,
                        DiagnosticKind::ModeCase {
                            value: value.to_owned(),
                        },
                    );
                }
                let slot = (valid_ext_name(key) && !value.is_empty()).then(|| {
                    extensions.push((key.to_owned(), value.to_owned()));
                    extensions.len() - 1
                });
                repaired.push((
                    KnownLine {
                        n,
                        key: known,
                        value,
                    },
                    slot,
                ));
                continue;
            }
            // Strict: fall through and keep it as an extension.
        }
        if !valid_ext_name(key) {
            c.strict_error(
                n,
                Severity::Warning,
                DiagnosticKind::BadKey {
                    key: key.to_owned(),
                },
            );
            continue;
        }
        if value.is_empty() {
            // sts-policy-ext-value needs at least one character.
            c.strict_error(
                n,
                Severity::Warning,
                DiagnosticKind::EmptyValue {
                    key: key.to_owned(),
                },
            );
            continue;
        }
        if !KNOWN_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            c.push(
                n,
                Severity::Info,
                DiagnosticKind::UnknownKey {
                    key: key.to_owned(),
                    suggestion: suggestion(&key.to_ascii_lowercase()),
                },
            );
        }
        extensions.push((key.to_owned(), value.to_owned()));
    }

    let was_given = |key: &str| KNOWN_KEYS.iter().zip(given).any(|(k, g)| g && *k == key);
    let exact_mx_line = was_given("mx");
    if c.profile == Profile::Lenient {
        // Repaired lines only for keys no exact line gave; `mx` last, and
        // only when the mode needs one and no exact `mx` line exists, so a
        // repaired line never widens the MX set an exact line gave.
        let mut used = Vec::new();
        for (line, slot) in repaired.iter().filter(|(l, _)| l.key != "mx") {
            if !was_given(line.key) {
                st.apply(&mut c, line);
                used.extend(*slot);
            }
        }
        let needs_mx = matches!(st.mode, Some(PolicyMode::Enforce | PolicyMode::Testing));
        for (line, slot) in repaired.iter().filter(|(l, _)| l.key == "mx") {
            if needs_mx && !exact_mx_line {
                st.apply(&mut c, line);
                used.extend(*slot);
            }
        }
        // Highest index first, so the earlier ones stay where they are.
        used.sort_unstable_by(|a, b| b.cmp(a));
        for i in used {
            extensions.remove(i);
        }
    }
    let Fields {
        version,
        mode,
        max_age,
        mx,
        seen_mx_line,
    } = st;
    let mut mx = mx;

    for (key, present) in [
        ("version", version),
        ("mode", mode.is_some()),
        ("max_age", max_age.is_some()),
    ] {
        if !present {
            c.push(0, Severity::Error, DiagnosticKind::Missing { key });
        }
    }
    if matches!(mode, Some(PolicyMode::Enforce | PolicyMode::Testing)) && mx.is_empty() {
        if seen_mx_line {
            c.push(0, Severity::Error, DiagnosticKind::NoMx);
        } else {
            c.push(0, Severity::Error, DiagnosticKind::Missing { key: "mx" });
        }
    }
    c.out.sort_by_key(|d| d.line);
    mx.shrink_to_fit();
    if c.out.iter().any(|d| d.severity == Severity::Error) {
        return Err(PolicyError { diagnostics: c.out });
    }
    match (mode, max_age) {
        (Some(mode), Some(max_age)) => Ok(ParsedPolicy {
            policy: MtaStsPolicy {
                mode,
                mx,
                max_age,
                extensions,
                raw,
            },
            diagnostics: c.out,
        }),
        // Unreachable in practice: a missing field was recorded as an error.
        _ => Err(PolicyError { diagnostics: c.out }),
    }
}

fn parse_mx(c: &mut Collector, n: usize, value: &str) -> Option<NamePattern> {
    let mut value = value;
    // RFC 8461 §3.2 takes `Domain` from RFC 5321, which has no root dot:
    // an error in the strict profile, dropped by the lenient one.
    if let Some(stripped) = value.strip_suffix('.')
        && !stripped.is_empty()
        && !stripped.ends_with('.')
    {
        c.strict_error(
            n,
            Severity::Warning,
            DiagnosticKind::MxTrailingDot {
                value: value.to_owned(),
            },
        );
        value = stripped;
    } else if value.ends_with('.') {
        bad_mx(c, n, value, "an empty label".to_owned());
        return None;
    }
    let host_part = value.strip_prefix("*.").unwrap_or(value);
    let unbracketed = host_part.trim_start_matches('[').trim_end_matches(']');
    // An address holds only hex digits, dots and colons; a host name with
    // any other letter is not tried as one (the common case, and cheaper).
    let may_be_ip = unbracketed
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':');
    if may_be_ip && unbracketed.parse::<std::net::IpAddr>().is_ok() {
        // An IP can never match an MX host name: skipped in both profiles,
        // fatal in the strict one.
        c.strict_error(
            n,
            Severity::Warning,
            DiagnosticKind::IpAddressInMx {
                value: value.to_owned(),
            },
        );
        return None;
    }
    if !value.is_ascii() {
        return match NamePattern::parse(value) {
            Ok(p) => {
                c.strict_error(
                    n,
                    Severity::Warning,
                    DiagnosticKind::ULabelInMx {
                        value: value.to_owned(),
                        a_label: p.to_string(),
                    },
                );
                Some(p)
            }
            Err(e) => {
                bad_mx(c, n, value, e.to_string());
                None
            }
        };
    }
    let pattern = match NamePattern::parse(value) {
        Ok(p) => p,
        // Core refuses `*.` above one label for its own uses; the MTA-STS
        // grammar (`["*."] Domain`) allows it, and dropping the pattern
        // could leave no mx and drop the whole policy, a downgrade.
        Err(PatternError::TooBroad { .. }) => match DnsName::parse(host_part) {
            Ok(base) => NamePattern::Wildcard(base),
            Err(e) => {
                bad_mx(c, n, value, e.to_string());
                return None;
            }
        },
        Err(e) => {
            bad_mx(c, n, value, e.to_string());
            return None;
        }
    };
    if pattern.base().label_count() < 2 {
        // Legal by the grammar (RFC 8461 §3.2, §4.1) though unusual for a
        // real MX: kept, with a warning, in both profiles.
        c.push(
            n,
            Severity::Warning,
            DiagnosticKind::SingleLabelMx {
                value: value.to_owned(),
            },
        );
    }
    Some(pattern)
}

fn bad_mx(c: &mut Collector, n: usize, value: &str, reason: String) {
    c.strict_error(
        n,
        Severity::Warning,
        DiagnosticKind::BadMx {
            value: value.to_owned(),
            reason,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(d: &[Diagnostic]) -> Vec<&DiagnosticKind> {
        d.iter().map(|d| &d.kind).collect()
    }

    fn both(
        body: &str,
    ) -> (
        Result<ParsedPolicy, PolicyError>,
        Result<ParsedPolicy, PolicyError>,
    ) {
        (
            parse_policy(body.as_bytes(), Profile::Strict),
            parse_policy(body.as_bytes(), Profile::Lenient),
        )
    }

    fn name(s: &str) -> DnsName {
        DnsName::parse(s).unwrap()
    }

    const RFC_EXAMPLE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n\
        mx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";

    #[test]
    fn rfc_8461_section_3_2_example_parses_in_both_profiles() {
        let (strict, lenient) = both(RFC_EXAMPLE);
        let strict = strict.unwrap();
        assert_eq!(strict, lenient.unwrap());
        let p = &strict.policy;
        assert_eq!(p.mode(), PolicyMode::Enforce);
        assert_eq!(p.max_age(), 604_800);
        assert!(p.matches_mx(&name("mail.example.com")));
        assert!(p.matches_mx(&name("mx1.example.net")));
        assert!(p.matches_mx(&name("backupmx.example.com")));
        assert!(!p.matches_mx(&name("example.net")));
        assert_eq!(p.raw(), RFC_EXAMPLE);
        assert!(strict.diagnostics.is_empty());
    }

    #[test]
    fn lf_only_and_no_final_line_end_are_fine() {
        let (s, l) = both("version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400");
        assert_eq!(s.unwrap().policy.mode(), PolicyMode::Testing);
        assert!(l.unwrap().diagnostics.is_empty());
    }

    #[test]
    fn mixed_line_ends_are_noted_not_refused() {
        // Corpus in the policy notes: mixed CRLF/LF.
        let (s, _) =
            both("version: STSv1\r\nmode: enforce\nmx: mx.example.com\r\nmax_age: 86400\n");
        let s = s.unwrap();
        assert_eq!(kinds(&s.diagnostics), vec![&DiagnosticKind::MixedLineEnds]);
        assert_eq!(s.diagnostics[0].severity, Severity::Info);
    }

    #[test]
    fn repeated_mode_keeps_the_first_value() {
        // Policy notes: "a later `mode: none` must not downgrade".
        let body =
            "version: STSv1\nmode: enforce\nmode: none\nmx: mx.example.com\nmax_age: 86400\n";
        let (s, l) = both(body);
        for parsed in [s.unwrap(), l.unwrap()] {
            assert_eq!(parsed.policy.mode(), PolicyMode::Enforce);
            assert_eq!(
                parsed.diagnostics,
                vec![Diagnostic {
                    line: 3,
                    severity: Severity::Warning,
                    kind: DiagnosticKind::RepeatedKey { key: "mode".into() }
                }]
            );
        }
    }

    #[test]
    fn a_line_without_colon_is_never_glued_to_the_next_key() {
        // Policy notes: a line without a colon is an error for that line.
        let body = "version: STSv1\nmode: enforce\nmx mx.evil.example\nmx: mx.example.com\nmax_age: 86400\n";
        let (s, l) = both(body);
        let err = s.unwrap_err();
        assert_eq!(err.errors().next().unwrap().line, 3);
        assert!(err.to_string().contains("line 3"), "{err}");
        let l = l.unwrap();
        assert_eq!(l.policy.mx().len(), 1);
        assert!(!l.policy.matches_mx(&name("mx.evil.example")));
        assert!(matches!(
            l.diagnostics[0].kind,
            DiagnosticKind::NoColon { .. }
        ));
    }

    #[test]
    fn nmx_typo_leaves_no_mx_and_is_invalid() {
        // Seen in the wild (policy notes): `nmx:` instead of `mx:`.
        let body = "version: STSv1\nmode: enforce\nnmx: mx.example.com\nmax_age: 86400\n";
        let (s, l) = both(body);
        for err in [s.unwrap_err(), l.unwrap_err()] {
            assert!(err.diagnostics.iter().any(|d| d.kind
                == DiagnosticKind::UnknownKey {
                    key: "nmx".into(),
                    suggestion: Some("mx")
                }));
            assert!(
                err.errors()
                    .any(|d| d.kind == DiagnosticKind::Missing { key: "mx" })
            );
        }
    }

    #[test]
    fn ip_address_in_mx_is_skipped_or_refused() {
        // Seen in the wild (policy notes): IP addresses in `mx`.
        let body =
            "version: STSv1\nmode: enforce\nmx: 192.0.2.25\nmx: mx.example.com\nmax_age: 86400\n";
        let (s, l) = both(body);
        assert!(matches!(
            s.unwrap_err().errors().next().unwrap().kind,
            DiagnosticKind::IpAddressInMx { .. }
        ));
        let l = l.unwrap();
        assert_eq!(l.policy.mx().len(), 1);
        assert_eq!(l.diagnostics[0].severity, Severity::Warning);
        // Only IPs: nothing usable is left, invalid in both.
        let only_ip = "version: STSv1\nmode: enforce\nmx: [2001:db8::1]\nmax_age: 86400\n";
        let err = parse_policy(only_ip.as_bytes(), Profile::Lenient).unwrap_err();
        assert!(err.errors().any(|d| d.kind == DiagnosticKind::NoMx));
    }

    #[test]
    fn u_label_mx_is_converted_by_the_lenient_profile() {
        let body = "version: STSv1\nmode: enforce\nmx: mx.bücher.example\nmax_age: 86400\n";
        let (s, l) = both(body);
        assert!(s.is_err());
        let l = l.unwrap();
        assert!(l.policy.matches_mx(&name("mx.xn--bcher-kva.example")));
        assert!(matches!(
            l.diagnostics[0].kind,
            DiagnosticKind::ULabelInMx { .. }
        ));
    }

    #[test]
    fn max_age_is_clamped_to_one_year() {
        // RFC 8461 §3.2: max_age is at most 31557600.
        let body = "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 31557601\n";
        let (s, l) = both(body);
        let s = s.unwrap();
        assert_eq!(s.policy.max_age(), MAX_MAX_AGE);
        assert!(matches!(
            s.diagnostics[0].kind,
            DiagnosticKind::MaxAgeClamped { .. }
        ));
        assert_eq!(l.unwrap().policy.max_age(), MAX_MAX_AGE);
        // More than 10 digits is outside the grammar.
        let long = "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 99999999999\n";
        let (s, l) = both(long);
        assert!(s.is_err());
        assert_eq!(l.unwrap().policy.max_age(), MAX_MAX_AGE);
        let bad = "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: -1\n";
        let (s, l) = both(bad);
        assert!(s.is_err() && l.is_err());
    }

    #[test]
    fn byte_order_mark_is_stripped_only_by_the_lenient_profile() {
        // Corpus in the policy notes: BOM.
        let body = format!("\u{feff}{RFC_EXAMPLE}");
        let (s, l) = both(&body);
        assert!(matches!(
            s.unwrap_err().errors().next().unwrap().kind,
            DiagnosticKind::ByteOrderMark
        ));
        let l = l.unwrap();
        assert_eq!(l.policy.mode(), PolicyMode::Enforce);
        assert_eq!(l.policy.raw(), body, "raw text is kept as fetched");
    }

    #[test]
    fn html_body_is_invalid() {
        // Corpus in the policy notes: an HTML page served with status 200.
        let body = "<!DOCTYPE html>\n<html><head><title>Welcome</title></head>\n<body>It works!</body></html>\n";
        let (s, l) = both(body);
        assert!(s.is_err());
        let err = l.unwrap_err();
        assert!(
            err.errors()
                .any(|d| d.kind == DiagnosticKind::Missing { key: "version" })
        );
    }

    #[test]
    fn mode_none_needs_no_mx() {
        // RFC 8461 §3.2 / §8.3: "none" withdraws a policy.
        let (s, _) = both("version: STSv1\nmode: none\nmax_age: 86400\n");
        let p = s.unwrap().policy;
        assert_eq!(p.mode(), PolicyMode::None);
        assert!(p.allows_mx(&name("anything.example")));
    }

    #[test]
    fn unknown_keys_are_kept_as_extensions() {
        let body = "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400\nx-note: hello world\n";
        let p = parse_policy(body.as_bytes(), Profile::Strict).unwrap();
        assert_eq!(
            p.policy.extensions(),
            &[("x-note".to_owned(), "hello world".to_owned())]
        );
        assert_eq!(p.diagnostics[0].severity, Severity::Info);
    }

    #[test]
    fn case_and_spacing_deviations_split_the_profiles() {
        for body in [
            "version: STSv1\nMode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
            "version: STSv1\nmode: Enforce\nmx: mx.example.com\nmax_age: 86400\n",
            "version: STSv1\nmode : enforce\nmx: mx.example.com\nmax_age: 86400\n",
        ] {
            let (s, l) = both(body);
            assert!(s.is_err(), "{body}");
            assert_eq!(l.unwrap().policy.mode(), PolicyMode::Enforce, "{body}");
        }
    }

    #[test]
    fn refuses_bad_values_in_both_profiles() {
        for body in [
            "version: STSv2\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
            "version: STSv1\nmode: strict\nmx: mx.example.com\nmax_age: 86400\n",
            "version: STSv1\nmode: enforce\nmx: mx.example.com\n",
            "mode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
            "version: STSv1\nmode: enforce\nmx: mail*.example.com\nmax_age: 86400\n",
            "version: STSv1\nmode: enforce\nmx: mx.example.com\x01\nmax_age: 86400\n",
            "",
        ] {
            let (s, l) = both(body);
            assert!(s.is_err() && l.is_err(), "{body:?}");
        }
        assert!(matches!(
            parse_policy(b"\xff\xfe", Profile::Lenient)
                .unwrap_err()
                .diagnostics[0]
                .kind,
            DiagnosticKind::NotUtf8
        ));
    }

    fn mx_set(p: &ParsedPolicy) -> Vec<String> {
        p.policy.mx().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn rfc_8461_section_3_2_keys_are_case_sensitive_and_never_override_exact_keys() {
        // `Mode:` before the exact key: the exact key's mode stands.
        let body =
            "version: STSv1\nMode: none\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n";
        let (s, l) = both(body);
        let (s, l) = (s.unwrap(), l.unwrap());
        assert_eq!(s.policy.mode(), PolicyMode::Enforce);
        assert_eq!(l.policy.mode(), PolicyMode::Enforce);
        assert!(
            s.diagnostics
                .iter()
                .any(|d| d.kind == DiagnosticKind::KeyCase { key: "Mode".into() }
                    && d.severity == Severity::Warning)
        );
        // The same with whitespace before the colon or a mode word in
        // another case: a repair never outranks an exact line.
        for first in ["mode : none", "mode: None", "MODE: testing"] {
            let body = format!(
                "version: STSv1\n{first}\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n"
            );
            let l = parse_policy(body.as_bytes(), Profile::Lenient).unwrap();
            assert_eq!(l.policy.mode(), PolicyMode::Enforce, "{first}");
        }
        // `MX:` never adds a host beside exact `mx` lines.
        let body =
            "version: STSv1\nmode: enforce\nMX: evil.example\nmx: mx.example.com\nmax_age: 86400\n";
        let (s, l) = both(body);
        for p in [s.unwrap(), l.unwrap()] {
            assert_eq!(mx_set(&p), vec!["mx.example.com"]);
            assert!(!p.policy.matches_mx(&name("evil.example")));
        }
        // Without the exact key, strict reads `Mode:` as unknown (so the
        // mode is missing); lenient reads it as the mode.
        let body = "version: STSv1\nMode: enforce\nMx: mx.example.com\nmax_age: 86400\n";
        let (s, l) = both(body);
        assert!(
            s.unwrap_err()
                .errors()
                .any(|d| d.kind == DiagnosticKind::Missing { key: "mode" })
        );
        let l = l.unwrap();
        assert_eq!(l.policy.mode(), PolicyMode::Enforce);
        assert_eq!(mx_set(&l), vec!["mx.example.com"]);
        // mode none: strict has no mx and lenient adds none from `MX:`; a
        // key lenient does not use as a repair stays the unknown key strict
        // reads, so both give the same policy (extensions included).
        let body = "version: STSv1\nmode: none\nMX: mx.example.com\nx-a: 1\nmax_age: 86400\n";
        let (s, l) = both(body);
        let (s, l) = (s.unwrap(), l.unwrap());
        assert_eq!(s.policy, l.policy);
        assert_eq!(
            l.policy.extensions(),
            [
                ("MX".to_owned(), "mx.example.com".to_owned()),
                ("x-a".to_owned(), "1".to_owned())
            ]
        );
    }

    #[test]
    fn rfc_8461_section_3_2_first_of_repeated_fields_counts_and_strict_checks_the_rest() {
        let body = "version: STSv1\nmode: enforce\nmode: bogus\nmx: mx.example.com\nmax_age: 86400\nmax_age: x\n";
        let (s, l) = both(body);
        let err = s.unwrap_err();
        assert!(
            err.errors()
                .any(|d| d.line == 3 && matches!(d.kind, DiagnosticKind::BadMode { .. }))
        );
        assert!(
            err.errors()
                .any(|d| d.line == 6 && matches!(d.kind, DiagnosticKind::BadMaxAge { .. }))
        );
        let l = l.unwrap();
        assert_eq!(l.policy.mode(), PolicyMode::Enforce);
        assert_eq!(l.policy.max_age(), 86400);
        // A repeated value that parses is only a warning in both.
        let body = "version: STSv1\nversion: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 5\nmax_age: 9\n";
        let (s, l) = both(body);
        assert_eq!(s.unwrap().policy.max_age(), 5);
        assert_eq!(l.unwrap().policy.max_age(), 5);
    }

    #[test]
    fn rfc_8461_section_3_2_strict_profile_is_the_grammar() {
        // (body, what the lenient profile must still give as mx)
        let cases = [
            // A blank line between fields.
            "version: STSv1\n\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
            // A blank line after the last terminator.
            "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n\n",
            "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 86400\r\n \r\n",
            // An extension with an empty value.
            "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\nx-note:\n",
            // A root dot after an mx.
            "version: STSv1\nmode: enforce\nmx: mx.example.com.\nmax_age: 86400\n",
            // A control character in an extension or in a repaired key's
            // line (lenient ignores the line; found by the fuzz target).
            "version: STSv1\nmode: enforce\nx-note: a\x01b\nmx: mx.example.com\nmax_age: 86400\n",
            "version\t:x\0ver:\nversion: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
        ];
        for body in cases {
            let (s, l) = both(body);
            assert!(s.is_err(), "strict accepted {body:?}");
            let l = l.unwrap();
            assert_eq!(mx_set(&l), vec!["mx.example.com"], "{body:?}");
            assert_eq!(l.policy.mode(), PolicyMode::Enforce);
            assert!(l.policy.extensions().is_empty());
        }
        let (s, _) = both("version: STSv1\nmode: enforce\nmx: mx.example.com..\nmax_age: 86400\n");
        assert!(s.is_err());
    }

    #[test]
    fn rfc_8461_section_3_2_single_label_mx_patterns_are_kept() {
        // `["*."] Domain` allows a single label; dropping it would leave no
        // mx and drop the whole policy (a downgrade).
        for (pattern, host) in [("localhost", "localhost"), ("*.com", "mail.com")] {
            let body = format!("version: STSv1\nmode: enforce\nmx: {pattern}\nmax_age: 86400\n");
            let (s, l) = both(&body);
            for p in [s.unwrap(), l.unwrap()] {
                assert!(p.policy.matches_mx(&name(host)), "{pattern}");
                assert!(matches!(
                    p.diagnostics[0].kind,
                    DiagnosticKind::SingleLabelMx { .. }
                ));
                assert_eq!(p.diagnostics[0].severity, Severity::Warning);
            }
        }
    }
}
