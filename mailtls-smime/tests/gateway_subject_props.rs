//! Properties of Subject mark stripping over arbitrary input: it never
//! panics, leaves nothing that still matches a mark, and is idempotent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mailtls_smime::gateway::{Mark, SubjectMarks, decode_subject, encode_subject};
use proptest::prelude::*;

/// Text built from pieces of marks, look-alikes, whitespace and filler, so
/// near-misses and nested marks are common.
fn subjectish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "[",
        "]",
        "sig",
        "ned",
        "signed",
        "SIGNED",
        "encr",
        "ypted",
        "signature",
        "invalid",
        " ",
        "\t",
        "\u{200B}",
        "\u{FF3B}",
        "\u{FF3D}",
        "\u{0435}",
        "1",
        "by",
        "<*@",
        ">",
        "example",
        ".",
        "Re: ",
        "hello",
        "é",
        "日本",
        "=?utf-8?q?",
        "?=",
        "(",
        ")",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
}

fn tidy(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches([':', ' '])
        .to_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn stripped_text_holds_no_mark_and_is_stable(s in subjectish()) {
        let marks = SubjectMarks::default();
        let once = marks.strip(&s);
        prop_assert_eq!(marks.strip(&once), once.clone());
        // Marking and stripping again gives the stripped text back (up to the
        // whitespace tidying that any removal does).
        let marked = marks.mark(&s, &[Mark::Encrypted, Mark::Signed]);
        prop_assert_eq!(tidy(&marks.strip(&marked)), tidy(&once));
    }

    #[test]
    fn arbitrary_unicode_never_panics(s in "\\PC{0,80}") {
        let marks = SubjectMarks::default();
        let stripped = marks.strip(&decode_subject(&s));
        prop_assert_eq!(marks.strip(&stripped), stripped.clone());
        // Encoding then decoding gives the text back.
        prop_assert_eq!(decode_subject(&encode_subject(&stripped)), stripped);
    }
}
