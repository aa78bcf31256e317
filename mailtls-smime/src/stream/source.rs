//! Incremental reading of BER (definite and indefinite lengths) from a
//! base64 or binary MIME body: headers and small structures are taken
//! whole, large content is handed on in pieces.

use std::io::Read;

use crate::mime::BASE64_BODY;
use base64::Engine as _;

use crate::error::{Error, Result};
use crate::stream::CHUNK;

/// Largest single structure read whole by default (recipient infos,
/// originator info).
pub(crate) const MAX_ELEMENT: usize = 1024 * 1024;
const MAX_DEPTH: usize = 32;

/// The body a streamed base64 error is in (a Source reads only these).
const BASE64_PART: &str = "application/pkcs7-mime";

/// Decoded bytes of a base64 (or binary) body, pulled on demand.
pub(crate) struct Source<R> {
    input: R,
    /// The structure named in errors.
    what: &'static str,
    /// Largest single structure read whole.
    max_element: usize,
    base64: bool,
    /// Base64 characters not yet decoded (fewer than four, or a read's tail).
    text: Vec<u8>,
    /// Decoded bytes not yet consumed, from `pos`.
    bytes: Vec<u8>,
    pos: usize,
    eof: bool,
    /// Body bytes read so far (for the position in base64 errors).
    read: usize,
}

impl<R: Read> Source<R> {
    /// Reads `input`, base64-decoding it when `base64`; errors name `what`.
    pub(crate) fn new(input: R, base64: bool, what: &'static str, max_element: usize) -> Self {
        Self {
            input,
            what,
            max_element,
            base64,
            text: Vec::new(),
            bytes: Vec::new(),
            pos: 0,
            eof: false,
            read: 0,
        }
    }

    /// Hands the next `len` content bytes to `sink` in pieces.
    pub(crate) fn stream(
        &mut self,
        mut len: usize,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        while len > 0 {
            if self.available().is_empty() && !self.refill()? {
                return Err(Error::cms(self.what, "truncated content"));
            }
            let n = self.available().len().min(len);
            sink(&self.bytes[self.pos..self.pos + n])?;
            self.pos += n;
            len -= n;
        }
        Ok(())
    }

    /// The content of an OCTET STRING (or an IMPLICIT tag on one) whose
    /// header was just read: primitive, or constructed from primitive
    /// OCTET STRING chunks with a definite or indefinite length (BER, as
    /// OpenSSL's `-stream` writes), handed to `sink` in pieces.
    pub(crate) fn octets(
        &mut self,
        tag: u8,
        len: Option<usize>,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        if tag & 0x20 == 0 {
            let len =
                len.ok_or_else(|| Error::cms(self.what, "primitive with indefinite length"))?;
            return self.stream(len, sink);
        }
        let mut consumed = 0usize;
        loop {
            if len.is_some_and(|l| consumed >= l) {
                return Ok(());
            }
            let (t, l, raw) = self.header()?;
            consumed += raw.len();
            match (t, l) {
                (0, Some(0)) if len.is_none() => return Ok(()),
                (0x04, Some(l)) => {
                    self.stream(l, sink)?;
                    consumed += l;
                }
                _ => {
                    return Err(Error::cms(
                        self.what,
                        "unexpected element inside a constructed OCTET STRING",
                    ));
                }
            }
        }
    }

    /// Fails unless the input holds nothing more (whitespace in a base64
    /// body aside): data after the outermost structure is refused, as the
    /// one-shot decoder refuses it.
    pub(crate) fn expect_end(&mut self) -> Result<()> {
        while self.available().is_empty() {
            if !self.refill()? {
                return Ok(());
            }
        }
        Err(Error::cms(self.what, "data after the end of ContentInfo"))
    }

    /// Reads an end-of-contents (`00 00`) when `len` says the enclosing
    /// element had an indefinite length.
    pub(crate) fn end_of(&mut self, len: Option<usize>) -> Result<()> {
        if len.is_some() {
            return Ok(());
        }
        match self.header()? {
            (0, Some(0), _) => Ok(()),
            _ => Err(Error::cms(self.what, "expected end-of-contents")),
        }
    }
    pub(crate) fn refill(&mut self) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        self.bytes.drain(..self.pos);
        self.pos = 0;
        let mut chunk = vec![0u8; CHUNK];
        let n = self.input.read(&mut chunk)?;
        if n == 0 {
            self.eof = true;
        }
        if !self.base64 {
            self.bytes.extend_from_slice(&chunk[..n]);
            return Ok(n > 0);
        }
        for (i, &b) in chunk[..n].iter().enumerate() {
            if b.is_ascii_whitespace() {
                continue;
            }
            if !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')) {
                return Err(Error::Base64 {
                    part: BASE64_PART,
                    detail: format!(
                        "{} at byte {} of the body",
                        crate::mime::describe_byte(b),
                        self.read + i
                    ),
                });
            }
            self.text.push(b);
        }
        self.read += n;
        let usable = if self.eof {
            self.text.len()
        } else {
            self.text.len() / 4 * 4
        };
        if usable > 0 {
            let decoded = BASE64_BODY
                .decode(&self.text[..usable])
                .map_err(|e| Error::Base64 {
                    part: BASE64_PART,
                    detail: e.to_string(),
                })?;
            self.bytes.extend_from_slice(&decoded);
            self.text.drain(..usable);
        }
        Ok(true)
    }

    pub(crate) fn available(&self) -> &[u8] {
        &self.bytes[self.pos..]
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.available().len() < n {
            if !self.refill()? {
                return Err(Error::cms(self.what, "truncated"));
            }
        }
        let out = self.bytes[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// Tag and length (None: indefinite), with the raw header bytes.
    pub(crate) fn header(&mut self) -> Result<(u8, Option<usize>, Vec<u8>)> {
        let tag = self.byte()?;
        let first = self.byte()?;
        let mut raw = vec![tag, first];
        if first < 0x80 {
            return Ok((tag, Some(first as usize), raw));
        }
        if first == 0x80 {
            return Ok((tag, None, raw));
        }
        let n = (first & 0x7f) as usize;
        if n > 4 {
            return Err(Error::cms(self.what, "length too large"));
        }
        let mut len = 0usize;
        for _ in 0..n {
            let b = self.byte()?;
            raw.push(b);
            len = (len << 8) | b as usize;
        }
        Ok((tag, Some(len), raw))
    }

    /// A whole element (BER) given its header.
    pub(crate) fn element_after(
        &mut self,
        mut raw: Vec<u8>,
        len: Option<usize>,
        depth: usize,
    ) -> Result<Vec<u8>> {
        if depth > MAX_DEPTH {
            return Err(Error::cms(self.what, "nesting too deep"));
        }
        match len {
            Some(len) => {
                if len > self.max_element {
                    return Err(Error::cms(self.what, "structure too large"));
                }
                raw.extend_from_slice(&self.take(len)?);
            }
            None => loop {
                let (tag, len, child) = self.header()?;
                if tag == 0 && len == Some(0) {
                    raw.extend_from_slice(&[0, 0]);
                    break;
                }
                let child = self.element_after(child, len, depth + 1)?;
                raw.extend_from_slice(&child);
                if raw.len() > self.max_element {
                    return Err(Error::cms(self.what, "structure too large"));
                }
            },
        }
        Ok(raw)
    }

    pub(crate) fn element(&mut self) -> Result<(u8, Vec<u8>)> {
        let (tag, len, raw) = self.header()?;
        Ok((tag, self.element_after(raw, len, 0)?))
    }

    /// Reads the header of a constructed element with `tag`; its length.
    pub(crate) fn expect_constructed(&mut self, tag: u8, what: &str) -> Result<Option<usize>> {
        let (t, len, _) = self.header()?;
        if t != tag {
            return Err(Error::Cms {
                structure: self.what,
                detail: format!("expected {what}"),
            });
        }
        Ok(len)
    }
}
