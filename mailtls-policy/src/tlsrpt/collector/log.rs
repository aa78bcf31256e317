//! The append-only log in the data directory.
//!
//! Two kinds of lines: a tuple definition, `{"id":N,"key":{...}}` (the
//! whole tuple as JSON, written once when the tuple is first counted, ids in
//! sequence from 0), and a count, `N COUNT` (that many more sessions of
//! tuple `N`). Replaying adds the counts up. A line without its newline is
//! the one being written when the process died and is dropped. The format is
//! the same as before tuples were interned, so old logs replay unchanged.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::Date;

use super::table::Table;
use super::{FailureKey, PolicyKey, TupleKey, full};
use crate::tlsrpt::TlsRptError;

pub(super) const LOG_NAME: &str = "tlsrpt-counts.log";

/// A definition line, borrowed from the table (serialises exactly like a
/// [`TupleKey`] under `key`).
#[derive(Serialize)]
pub(super) struct Definition<'a> {
    pub(super) id: usize,
    pub(super) key: TupleRef<'a>,
}

#[derive(Serialize)]
pub(super) struct TupleRef<'a> {
    pub(super) day: Date,
    pub(super) policy: &'a PolicyKey,
    pub(super) failure: Option<&'a FailureKey>,
}

#[derive(Deserialize)]
struct OwnedDefinition {
    id: usize,
    key: TupleKey,
}

/// Appends the definition line of tuple `id` of `table`.
pub(super) fn put_definition(
    out: &mut Vec<u8>,
    table: &Table,
    id: usize,
) -> Result<(), TlsRptError> {
    if let Some(t) = table.tuples().get(id)
        && let Some((policy, failure)) = table.keys(t)
    {
        let key = TupleRef {
            day: t.day,
            policy,
            failure,
        };
        serde_json::to_writer(&mut *out, &Definition { id, key })?;
        out.push(b'\n');
    }
    Ok(())
}

/// Reads the log at `path` (absent: empty) into a table.
pub(super) fn replay(path: &Path) -> Result<Table, TlsRptError> {
    let mut table = Table::new();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(table),
        Err(e) => return Err(TlsRptError::io(path, e)),
    };
    // Log id -> table tuple. The same; unless a log defines one tuple
    // twice, in which case both ids count into the one tuple.
    let mut ids: Vec<usize> = Vec::new();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut n = 0usize;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| TlsRptError::io(path, e))?;
        if read == 0 {
            break;
        }
        n += 1;
        // A line without its newline is the one being written when the
        // process died: it was never acknowledged, so it is dropped.
        let Some(text) = line.strip_suffix('\n') else {
            break;
        };
        let corrupt = |reason: String| TlsRptError::Corrupt {
            path: path.to_path_buf(),
            line: n,
            reason,
        };
        if text.starts_with('{') {
            let def: OwnedDefinition = serde_json::from_str(text)
                .map_err(|e| corrupt(format!("bad tuple definition: {e}")))?;
            if def.id != ids.len() {
                return Err(corrupt(format!("tuple id {} out of sequence", def.id)));
            }
            ids.push(table.tuple_of_key(&def.key).map_err(|_| full(path))?);
        } else {
            let (id, count) = text
                .split_once(' ')
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<u64>().ok()?)))
                .ok_or_else(|| corrupt(format!("bad count line {text:?}")))?;
            let tuple = ids
                .get(id)
                .and_then(|&t| table.tuple_mut(t))
                .ok_or_else(|| corrupt(format!("count for undefined tuple {id}")))?;
            tuple.count = tuple.count.saturating_add(count);
        }
    }
    Ok(table)
}

/// Writes the table's counts to a temporary file, fsyncs it and renames it
/// over the log, so a crash leaves either the old or the new log, never half
/// of one. Returns the log opened for appending and its length.
pub(super) fn write_compacted(dir: &Path, table: &Table) -> Result<(File, u64), TlsRptError> {
    let tmp = dir.join(format!("{LOG_NAME}.tmp"));
    let path = dir.join(LOG_NAME);
    let mut buf = Vec::new();
    for (id, t) in table.tuples().iter().enumerate() {
        put_definition(&mut buf, table, id)?;
        put_count_line(&mut buf, id as u64, t.count);
    }
    let mut f = File::create(&tmp).map_err(|e| TlsRptError::io(&tmp, e))?;
    f.write_all(&buf).map_err(|e| TlsRptError::io(&tmp, e))?;
    f.sync_all().map_err(|e| TlsRptError::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| TlsRptError::io(&path, e))?;
    if let Ok(d) = File::open(dir) {
        // Make the rename itself durable; not all platforms allow this.
        let _ = d.sync_all();
    }
    let log = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| TlsRptError::io(&path, e))?;
    Ok((log, buf.len() as u64))
}

/// Appends `"{id} {count}\n"` without the `fmt` machinery: with many
/// tuples the buffer holds one such line per tuple touched since the last
/// write, and `write!` was a visible share of the aggregation time.
pub(super) fn put_count_line(out: &mut Vec<u8>, id: u64, count: u64) {
    put_decimal(out, id);
    out.push(b' ');
    put_decimal(out, count);
    out.push(b'\n');
}

fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while i > 0 {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// The number of decimal digits of `n`.
pub(super) fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_lines_and_digit_counts() {
        let mut line = Vec::new();
        put_count_line(&mut line, 0, u64::MAX);
        put_count_line(&mut line, 1207, 1);
        assert_eq!(line, b"0 18446744073709551615\n1207 1\n");
        for n in [0usize, 9, 10, 99, 100, 123_456] {
            assert_eq!(decimal_len(n), n.to_string().len(), "{n}");
        }
    }
}
