//! Command-line words for the example tools: `--flag value`, `--flag=value`
//! and positional words, with typed errors that name the flag.
//!
//! Every `mailtls-*` binary used to carry its own copy of the same loop;
//! this is that loop once. It is deliberately small: each tool still matches
//! flags by name itself (so its usage text, its checks between flags and its
//! wording stay its own), and asks [`ArgParser`] only for the word after a
//! flag, parsed or not.
//!
//! ```
//! use mailtls_examples::cli_args::{Arg, ArgError, ArgParser};
//!
//! let mut p = ArgParser::new(["--days=30", "host.example", "--out", "dir"]);
//! let mut days: u32 = 0;
//! let mut out = None;
//! let mut hosts = Vec::new();
//! while let Some(arg) = p.next() {
//!     match arg.as_str() {
//!         "--days" => days = p.parse_value("a number")?,
//!         "--out" => out = Some(p.value()?),
//!         _ if arg.is_flag() => return Err(ArgError::UnknownFlag { flag: arg.into_string() }),
//!         _ => hosts.push(arg.into_string()),
//!     }
//! }
//! assert_eq!((days, out.as_deref(), hosts.len()), (30, Some("dir"), 1));
//!
//! let mut p = ArgParser::new(["--days", "soon"]);
//! p.next();
//! let err = p.parse_value::<u32>("a number").unwrap_err();
//! assert_eq!(err.to_string(), r#"--days: "soon" is not a number"#);
//! # Ok::<(), ArgError>(())
//! ```

use std::ffi::OsString;
use std::process::ExitCode;
use std::str::FromStr;

/// What was wrong with the command line, naming the flag concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgError {
    /// The flag takes a value and none followed it.
    #[error("{flag} needs a value")]
    MissingValue {
        /// The flag, as matched (`--out`).
        flag: String,
    },
    /// A word that looks like a flag but is none the tool knows.
    #[error("unknown option {flag}")]
    UnknownFlag {
        /// The word as given, without any `=value`.
        flag: String,
    },
    /// A flag that may appear once was given again.
    #[error("{flag} is given more than once")]
    Repeated {
        /// The flag, as matched.
        flag: String,
    },
    /// The value did not parse as the flag wants (a number, an address...).
    #[error("{flag}: {value:?} is not {expected}")]
    BadValue {
        /// The flag, as matched.
        flag: String,
        /// The value as given.
        value: String,
        /// What it should have been, e.g. "a number" or "sha256 or sha512".
        expected: String,
    },
    /// The value is not valid UTF-8 where the tool needs text.
    #[error("{flag}: the value is not valid UTF-8")]
    NotUnicode {
        /// The flag, as matched.
        flag: String,
    },
}

/// A command-line mistake in one of the example tools: printed with the
/// usage text, exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl From<ArgError> for UsageError {
    fn from(e: ArgError) -> Self {
        UsageError(e.to_string())
    }
}

/// The `main` of a tool with subcommands (`TOOL COMMAND [OPTIONS]`): no
/// command prints `usage` and exits 2; `-h`, `--help` or `help` prints it and
/// exits 0; otherwise `run(command, rest)` decides, and its error is printed
/// as `TOOL: MESSAGE` with the usage and exit 2 when it is a [`UsageError`],
/// as `TOOL: error: MESSAGE` with exit 1 otherwise.
pub fn subcommand_main<F>(tool: &str, usage: &str, args: &[String], run: F) -> ExitCode
where
    F: FnOnce(&str, &[String]) -> Result<(), Box<dyn std::error::Error>>,
{
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        println!("{usage}");
        return ExitCode::SUCCESS;
    }
    match run(command, rest) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<UsageError>() => {
            eprintln!("{tool}: {e}\n\n{usage}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{tool}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One command-line word, told apart as a flag or a positional word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A word starting with `-` (and longer than `-` alone); for
    /// `--flag=value`, only the part before `=`, the value waiting for
    /// [`ArgParser::value`].
    Flag(String),
    /// Anything else: a command, a host name, a file, a lone `-`.
    Word(String),
}

impl Arg {
    /// The flag or word as text, for matching.
    pub fn as_str(&self) -> &str {
        match self {
            Arg::Flag(s) | Arg::Word(s) => s,
        }
    }

    /// Whether this is a flag (so an unmatched one is an unknown option).
    pub fn is_flag(&self) -> bool {
        matches!(self, Arg::Flag(_))
    }

    /// The flag or word, owned.
    pub fn into_string(self) -> String {
        match self {
            Arg::Flag(s) | Arg::Word(s) => s,
        }
    }
}

/// Walks the command line word by word; see the [module docs](self).
///
/// Only words starting with `--` are split at `=` (`-c=x` stays one unknown
/// word), and the word after a flag is its value even when it starts with
/// `-`, as the tools always did. A value given with `=` to a flag that takes
/// none is ignored, as before.
#[derive(Debug)]
pub struct ArgParser {
    words: std::vec::IntoIter<OsString>,
    /// The flag (or word) last returned, for error messages.
    current: String,
    /// The `value` of a `--flag=value` word, until taken.
    inline: Option<String>,
    /// Short spellings and the flag name they stand for.
    aliases: &'static [(&'static str, &'static str)],
}

impl ArgParser {
    /// A parser over the words after the program name (and after the
    /// subcommand, if the tool has one).
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        ArgParser {
            words: args
                .into_iter()
                .map(Into::into)
                .collect::<Vec<_>>()
                .into_iter(),
            current: String::new(),
            inline: None,
            aliases: &[],
        }
    }

    /// Short spellings (`("-c", "--config")`): they come back from
    /// [`next`](Iterator::next) as the long flag, and errors name the long
    /// flag.
    pub fn with_aliases(mut self, aliases: &'static [(&'static str, &'static str)]) -> Self {
        self.aliases = aliases;
        self
    }

    /// The flag (or word) last returned by [`next`](Iterator::next).
    pub fn flag(&self) -> &str {
        &self.current
    }

    /// The current flag's value as given: the `=value` part, else the next
    /// word (kept as an `OsString`, so a path need not be UTF-8).
    pub fn value_os(&mut self) -> Result<OsString, ArgError> {
        if let Some(v) = self.inline.take() {
            return Ok(OsString::from(v));
        }
        self.words.next().ok_or_else(|| ArgError::MissingValue {
            flag: self.current.clone(),
        })
    }

    /// The current flag's value as text.
    pub fn value(&mut self) -> Result<String, ArgError> {
        self.value_os()?
            .into_string()
            .map_err(|_| ArgError::NotUnicode {
                flag: self.current.clone(),
            })
    }

    /// The current flag's value parsed with [`FromStr`]; on failure,
    /// [`ArgError::BadValue`] says the value is not `expected`.
    pub fn parse_value<T: FromStr>(&mut self, expected: &'static str) -> Result<T, ArgError> {
        let value = self.value()?;
        value.parse().map_err(|_| ArgError::BadValue {
            flag: self.current.clone(),
            value,
            expected: expected.to_owned(),
        })
    }

    /// The current flag's value as one of a fixed set of words; otherwise
    /// [`ArgError::BadValue`] lists them ("is not a, b or c").
    pub fn choice<T: Copy>(&mut self, choices: &[(&str, T)]) -> Result<T, ArgError> {
        let value = self.value()?;
        if let Some((_, t)) = choices.iter().find(|(word, _)| *word == value) {
            return Ok(*t);
        }
        let words: Vec<&str> = choices.iter().map(|(word, _)| *word).collect();
        let expected = match words.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => words.concat(),
        };
        Err(ArgError::BadValue {
            flag: self.current.clone(),
            value,
            expected,
        })
    }

    /// Stores the current flag's parsed value in `slot`, refusing a second
    /// one ([`ArgError::Repeated`]) for flags that must appear at most once.
    pub fn set_once<T>(&self, slot: &mut Option<T>, value: T) -> Result<(), ArgError> {
        if slot.is_some() {
            return Err(ArgError::Repeated {
                flag: self.current.clone(),
            });
        }
        *slot = Some(value);
        Ok(())
    }
}

impl Iterator for ArgParser {
    type Item = Arg;

    fn next(&mut self) -> Option<Arg> {
        // A value the tool did not ask for (`--flag=x` on a switch) is dropped.
        self.inline = None;
        let word = self.words.next()?.to_string_lossy().into_owned();
        let arg = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                self.inline = Some(value.to_owned());
                Arg::Flag(flag.to_owned())
            }
            _ if word.starts_with('-') && word.len() > 1 => Arg::Flag(word),
            _ => Arg::Word(word),
        };
        let arg = match arg {
            Arg::Flag(f) => match self.aliases.iter().find(|(short, _)| *short == f) {
                Some((_, long)) => Arg::Flag((*long).to_owned()),
                None => Arg::Flag(f),
            },
            word => word,
        };
        arg.as_str().clone_into(&mut self.current);
        Some(arg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(words: &[&str]) -> Vec<Arg> {
        ArgParser::new(words.iter().copied()).collect()
    }

    #[test]
    fn flags_and_words_are_told_apart() {
        assert_eq!(
            all(&["ca", "--out", "-", "-x", "--a=b=c", "-c=x", "x=y"]),
            vec![
                Arg::Word("ca".into()),
                Arg::Flag("--out".into()),
                Arg::Word("-".into()),
                Arg::Flag("-x".into()),
                Arg::Flag("--a".into()),
                Arg::Flag("-c=x".into()),
                Arg::Word("x=y".into()),
            ]
        );
    }

    #[test]
    fn value_comes_inline_or_from_the_next_word() {
        let mut p = ArgParser::new(["--a=1=2", "--b", "-dash", "--c="]);
        assert_eq!(p.next().map(Arg::into_string).as_deref(), Some("--a"));
        assert_eq!(p.value().as_deref(), Ok("1=2"));
        assert_eq!(p.next().map(Arg::into_string).as_deref(), Some("--b"));
        assert_eq!(p.value().as_deref(), Ok("-dash"));
        assert_eq!(p.next().map(Arg::into_string).as_deref(), Some("--c"));
        assert_eq!(p.value().as_deref(), Ok(""));
        assert_eq!(p.next(), None);
    }

    #[test]
    fn an_unclaimed_inline_value_does_not_leak_into_the_next_flag() {
        let mut p = ArgParser::new(["--switch=on", "--out"]);
        p.next();
        p.next();
        assert_eq!(
            p.value(),
            Err(ArgError::MissingValue {
                flag: "--out".into()
            })
        );
    }

    #[test]
    fn missing_value_names_the_flag() {
        let mut p = ArgParser::new(["--out"]);
        p.next();
        let err = p.value().unwrap_err();
        assert_eq!(err.to_string(), "--out needs a value");
    }

    #[test]
    fn bad_value_names_flag_value_and_expectation() {
        let mut p = ArgParser::new(["--days", "soon", "--port=99999"]);
        p.next();
        let err = p.parse_value::<u32>("a number").unwrap_err();
        assert_eq!(err.to_string(), r#"--days: "soon" is not a number"#);
        p.next();
        let err = p.parse_value::<u16>("a valid number").unwrap_err();
        assert_eq!(
            err,
            ArgError::BadValue {
                flag: "--port".into(),
                value: "99999".into(),
                expected: "a valid number".into()
            }
        );
    }

    #[test]
    fn choice_maps_words_and_lists_them_when_none_fits() {
        let choices = [("sha256", 256), ("sha512", 512)];
        let mut p = ArgParser::new(["--digest=sha512", "--digest", "md5"]);
        p.next();
        assert_eq!(p.choice(&choices), Ok(512));
        p.next();
        let err = p.choice(&choices).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"--digest: "md5" is not sha256 or sha512"#
        );
        let mut p = ArgParser::new(["--c", "x"]);
        p.next();
        let err = p.choice(&[("a", 1), ("b", 2), ("c", 3)]).unwrap_err();
        assert_eq!(err.to_string(), r#"--c: "x" is not a, b or c"#);
    }

    #[test]
    fn aliases_come_back_long_and_errors_name_the_long_flag() {
        let mut p = ArgParser::new(["-c"]).with_aliases(&[("-c", "--config")]);
        assert_eq!(p.next(), Some(Arg::Flag("--config".into())));
        assert_eq!(p.value().unwrap_err().to_string(), "--config needs a value");
    }

    #[test]
    fn set_once_refuses_a_repeat() {
        let mut p = ArgParser::new(["--out", "a", "--out", "b"]);
        let mut out = None;
        p.next();
        let v = p.value().unwrap();
        p.set_once(&mut out, v).unwrap();
        p.next();
        let v = p.value().unwrap();
        let err = p.set_once(&mut out, v).unwrap_err();
        assert_eq!(err.to_string(), "--out is given more than once");
        assert_eq!(out.as_deref(), Some("a"));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_pass_as_os_strings_and_fail_as_text() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(vec![b'f', 0xff]);
        let mut p = ArgParser::new([OsString::from("--config"), odd.clone(), "--x".into(), odd]);
        p.next();
        assert_eq!(p.value_os().unwrap().into_vec(), vec![b'f', 0xff]);
        p.next();
        assert_eq!(p.value(), Err(ArgError::NotUnicode { flag: "--x".into() }));
    }

    #[test]
    fn usage_error_carries_the_arg_error_text() {
        let e = UsageError::from(ArgError::UnknownFlag {
            flag: "--bogus".into(),
        });
        assert_eq!(e.to_string(), "unknown option --bogus");
    }
}
