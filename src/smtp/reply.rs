//! SMTP server replies, parsed from received bytes (RFC 5321 section 4.2).
//!
//! This module owns the reply grammar: reply codes, multi-line replies, RFC 3463
//! enhanced status codes, the tolerated deviations from RFC 5321, the size limits
//! that keep a hostile server from exhausting memory, and the escaping that shows
//! raw bytes in transcripts and error messages. It does no I/O: the connection feeds
//! whatever it reads into a [`ReplyParser`] and takes complete [`Reply`] values out,
//! and the results do not depend on how the bytes were split into reads.

use std::fmt;

/// Maximum bytes per reply line, including the line ending. RFC 5321 section
/// 4.5.3.1.5 sets 512, but servers send longer texts and the RFC asks clients to be
/// liberal (section 4.5.3.1), so allow four times that.
pub const MAX_LINE: usize = 2048;
/// Maximum lines per reply. The longest replies in practice, EHLO's, have a few dozen.
pub const MAX_LINES: usize = 1000;
/// Maximum bytes per reply.
pub const MAX_REPLY: usize = 1 << 20;

/// Bytes of an error's `raw` shown in its message.
const SHOWN: usize = 200;

/// Size limits for replies; a server exceeding one fails the step instead of
/// growing the client's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes per reply line, including the line ending.
    pub max_line: usize,
    /// Lines per reply.
    pub max_lines: usize,
    /// Bytes per reply.
    pub max_reply: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: MAX_LINE,
            max_lines: MAX_LINES,
            max_reply: MAX_REPLY,
        }
    }
}

/// One complete reply (a multi-line reply `250-a`, `250-b`, `250 c` is ONE reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// Text of each line after the code and separator, without the line ending, as raw bytes.
    pub lines: Vec<Vec<u8>>,
    /// The RFC 3463 enhanced status code at the start of the FIRST line's text (`2.1.5` in `250 2.1.5 Ok`),
    /// when present and well-formed: class 2, 4 or 5, subject and detail 1-3 digits each, followed by a space or end of line.
    pub enhanced: Option<[u16; 3]>,
    /// Deviations from RFC 5321 that were tolerated, in order of appearance.
    pub violations: Vec<Violation>,
    /// The exact bytes of the reply as received (for transcripts and error messages).
    pub raw: Vec<u8>,
}

impl Reply {
    /// All lines' text joined by '\n', invalid UTF-8 replaced (lossy). This is what `text:` regexes match.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.join(&b'\n')).into_owned()
    }

    /// One-line summary for messages: "550 5.1.1 User unknown" (first line; multi-line adds " (+N lines)"),
    /// with control characters and non-ASCII bytes shown escaped (see [`escape`]).
    pub fn summary(&self) -> String {
        let mut out = self.code.to_string();
        if let Some(first) = self.lines.first().filter(|text| !text.is_empty()) {
            out.push(' ');
            out.push_str(&escape(first));
        }
        if self.lines.len() > 1 {
            out.push_str(&format!(" (+{} lines)", self.lines.len() - 1));
        }
        out
    }
}

/// A deviation from RFC 5321 that the parser tolerates because real servers commit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A line ended in a bare LF instead of CRLF (line index within the reply).
    BareLf {
        /// Index of the line within the reply.
        line: usize,
    },
    /// The code was not followed by a space, a hyphen or the line end, e.g. `250OK` (text keeps everything after the 3 digits).
    MissingSeparator {
        /// Index of the line within the reply.
        line: usize,
    },
    /// The text contains control characters (other than TAB) or bytes >= 0x80.
    UnusualBytes {
        /// Index of the line within the reply.
        line: usize,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::BareLf { line } => write!(
                f,
                "line {} of the reply ends in a bare LF, not CRLF (RFC 5321 2.3.8)",
                line + 1
            ),
            Violation::MissingSeparator { line } => {
                write!(
                    f,
                    "line {} of the reply has no space or hyphen after its code (RFC 5321 4.2)",
                    line + 1
                )
            }
            Violation::UnusualBytes { line } => {
                write!(
                    f,
                    "line {} of the reply holds control or non-ASCII bytes (shown escaped)",
                    line + 1
                )
            }
        }
    }
}

/// Why bytes could not be parsed as a reply: the step fails with a protocol error that shows `raw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A line does not start with three digits 2-5 / 0-9 / 0-9 (the first digit must be 2..=5).
    NotAReply {
        /// The line, with its line ending.
        raw: Vec<u8>,
    },
    /// A continuation or final line carries a different code than the first line.
    MixedCodes {
        /// The code of the reply's first line.
        first: u16,
        /// The code of the offending line.
        found: u16,
        /// The offending line, with its line ending.
        raw: Vec<u8>,
    },
    /// A line longer than `max_line` without a line ending (raw: its first max_line bytes).
    LineTooLong {
        /// The limit exceeded.
        limit: usize,
        /// The line's first `limit` bytes.
        raw: Vec<u8>,
    },
    /// More than `max_lines` lines in one reply.
    TooManyLines {
        /// The limit exceeded.
        limit: usize,
        /// The reply's first bytes, at most `max_line`.
        raw: Vec<u8>,
    },
    /// More than `max_reply` bytes in one reply.
    ReplyTooLarge {
        /// The limit exceeded.
        limit: usize,
        /// The reply's first bytes, at most `max_line`.
        raw: Vec<u8>,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = match self {
            Self::NotAReply { raw } => {
                f.write_str("not an SMTP reply")?;
                raw
            }
            Self::MixedCodes { first, found, raw } => {
                write!(
                    f,
                    "reply code changed from {first} to {found} within one reply"
                )?;
                raw
            }
            Self::LineTooLong { limit, raw } => {
                write!(f, "reply line longer than {limit} bytes")?;
                raw
            }
            Self::TooManyLines { limit, raw } => {
                write!(f, "reply with more than {limit} lines")?;
                raw
            }
            Self::ReplyTooLarge { limit, raw } => {
                write!(f, "reply larger than {limit} bytes")?;
                raw
            }
        };
        write!(f, ": \"{}\"", escape(&raw[..raw.len().min(SHOWN)]))?;
        if raw.len() > SHOWN {
            write!(f, "... ({} bytes)", raw.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for ProtocolError {}

/// Push parser: feed bytes as they arrive, take replies out.
///
/// Memory stays bounded by about `max_reply + max_line` bytes plus one fed chunk:
/// `next_reply` refuses a reply or line over its limit as soon as enough bytes have
/// arrived to know, and refuses any buffered data larger than one maximal reply plus
/// one line, which only a flooding server produces.
#[derive(Debug, Default)]
pub struct ReplyParser {
    limits: Limits,
    /// Received bytes; `buf[start..]` has not been consumed by a returned reply.
    buf: Vec<u8>,
    /// Where the reply being assembled begins.
    start: usize,
    /// Where the first line not yet parsed begins.
    line_start: usize,
    /// Where the search for that line's LF resumes: `buf[line_start..scan]` holds
    /// none, so bytes arriving one at a time are each looked at once.
    scan: usize,
    /// The parsed lines of the reply being assembled.
    pending: Pending,
    /// The error that stopped parsing. After a malformed reply nothing is known to
    /// start at a reply boundary, so the parser does not try to resynchronise.
    failed: Option<ProtocolError>,
}

/// The lines of a reply parsed so far.
#[derive(Debug, Default)]
struct Pending {
    /// The first line's code; meaningful once `lines` is not empty.
    code: u16,
    lines: Vec<Vec<u8>>,
    violations: Vec<Violation>,
}

impl ReplyParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Appends received bytes. Must not grow memory without bound: the caller calls `next_reply` after each
    /// feed, which reports buffered data beyond what one reply may hold as an error. Ignored after an error.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        // Drop consumed bytes only once they are at least half the buffer, so the
        // copying costs at most one move per received byte.
        if self.start > 0 && self.start >= self.buf.len() - self.start {
            self.buf.drain(..self.start);
            self.line_start -= self.start;
            self.scan -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete reply, if the buffer holds one. Bytes after it stay buffered for the next call
    /// (a server that pipelines or injects data must not lose or mix bytes). Ok(None) = need more bytes.
    /// After an Err the parser drops its buffer and returns the same error again.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ProtocolError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.parse();
        if let Err(err) = &result {
            *self = Self {
                failed: Some(err.clone()),
                ..Self::new(self.limits)
            };
        }
        result
    }

    /// Number of bytes received but not yet consumed by a returned reply (STARTTLS response-injection check uses this).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Signals end of stream: returns the bytes received but not consumed by a returned reply (a partial reply,
    /// so the caller can show what the server sent before closing), or None if nothing is buffered.
    /// The parser is then empty again.
    pub fn take_partial(&mut self) -> Option<Vec<u8>> {
        let rest = self.buf.split_off(self.start);
        *self = Self::new(self.limits);
        (!rest.is_empty()).then_some(rest)
    }

    fn parse(&mut self) -> Result<Option<Reply>, ProtocolError> {
        let Limits {
            max_line,
            max_reply,
            ..
        } = self.limits;
        if self.buffered() > max_reply.saturating_add(max_line) {
            return Err(self.too_large());
        }
        while let Some(offset) = self.buf[self.scan..].iter().position(|&b| b == b'\n') {
            let end = self.scan + offset + 1;
            self.check_size(end)?;
            if let Some(reply) = self.take_line(end)? {
                return Ok(Some(reply));
            }
        }
        self.scan = self.buf.len();
        self.check_size(self.buf.len())?;
        Ok(None)
    }

    /// Checks the line being read and the reply being assembled against the limits
    /// with `buf[..end]` received. When both are exceeded, the one exceeded at the
    /// earlier byte is reported (the line on a tie), so the error does not depend on
    /// how much had arrived when it was noticed.
    fn check_size(&self, end: usize) -> Result<(), ProtocolError> {
        let Limits {
            max_line,
            max_reply,
            ..
        } = self.limits;
        let line_over = end - self.line_start > max_line;
        let reply_over = end - self.start > max_reply;
        let reply_first = match (line_over, reply_over) {
            (false, false) => return Ok(()),
            (true, false) => false,
            (false, true) => true,
            (true, true) => self.start + max_reply < self.line_start + max_line,
        };
        if reply_first {
            return Err(self.too_large());
        }
        Err(ProtocolError::LineTooLong {
            limit: max_line,
            raw: self.buf[self.line_start..self.line_start + max_line].to_vec(),
        })
    }

    /// The error for more than `max_reply` bytes; only called with more than that
    /// many bytes buffered from `start`.
    fn too_large(&self) -> ProtocolError {
        let shown = self.limits.max_line.min(self.limits.max_reply);
        ProtocolError::ReplyTooLarge {
            limit: self.limits.max_reply,
            raw: self.buf[self.start..self.start + shown].to_vec(),
        }
    }

    /// Parses the complete line `buf[line_start..end]` (ending in LF) into the
    /// pending reply, returning the reply if the line was its last.
    fn take_line(&mut self, end: usize) -> Result<Option<Reply>, ProtocolError> {
        let raw_line = &self.buf[self.line_start..end];
        let index = self.pending.lines.len();
        let without_lf = &raw_line[..raw_line.len() - 1];
        // RFC 5321 section 2.3.8 requires CRLF, but some servers end replies with a
        // bare LF; the text is still unambiguous, so accept it and record it.
        let (content, bare_lf) = match without_lf.strip_suffix(b"\r") {
            Some(content) => (content, false),
            None => (without_lf, true),
        };
        let line = parse_line(content).ok_or_else(|| ProtocolError::NotAReply {
            raw: raw_line.to_vec(),
        })?;
        // RFC 5321 section 4.2.1: every line of a multi-line reply has the same code.
        if index > 0 && line.code != self.pending.code {
            return Err(ProtocolError::MixedCodes {
                first: self.pending.code,
                found: line.code,
                raw: raw_line.to_vec(),
            });
        }
        if index >= self.limits.max_lines {
            let shown = end.min(self.start.saturating_add(self.limits.max_line));
            return Err(ProtocolError::TooManyLines {
                limit: self.limits.max_lines,
                raw: self.buf[self.start..shown].to_vec(),
            });
        }
        let violations = &mut self.pending.violations;
        if line.missing_separator {
            violations.push(Violation::MissingSeparator { line: index });
        }
        if line.text.iter().any(|&b| is_unusual(b)) {
            violations.push(Violation::UnusualBytes { line: index });
        }
        if bare_lf {
            violations.push(Violation::BareLf { line: index });
        }
        self.pending.code = line.code;
        self.pending.lines.push(line.text.to_vec());
        self.line_start = end;
        self.scan = end;
        if !line.last {
            return Ok(None);
        }
        let Pending {
            code,
            lines,
            violations,
        } = std::mem::take(&mut self.pending);
        let raw = self.buf[self.start..end].to_vec();
        self.start = end;
        Ok(Some(Reply {
            code,
            enhanced: parse_enhanced(&lines[0]),
            lines,
            violations,
            raw,
        }))
    }
}

/// One reply line split per RFC 5321 section 4.2: `Reply-code [ SP / "-" textstring ]`.
struct Line<'a> {
    code: u16,
    /// `false` for a continuation line (a hyphen after the code, section 4.2.1).
    last: bool,
    missing_separator: bool,
    text: &'a [u8],
}

/// Splits a line without its line ending, or `None` if it does not start with a
/// reply code. The first digit must be 2 to 5: section 4.2.1 notes that no SMTP
/// command has a 1yz reply.
fn parse_line(content: &[u8]) -> Option<Line<'_>> {
    let (digits, rest) = content.split_first_chunk::<3>()?;
    if !(b'2'..=b'5').contains(&digits[0]) {
        return None;
    }
    let code = number(digits)?;
    let (last, missing_separator, text) = match rest.split_first() {
        // A bare code is a final line with empty text; servers such as Postfix send it.
        None => (true, false, rest),
        Some((b' ', text)) => (true, false, text),
        Some((b'-', text)) => (false, false, text),
        // `250OK`: the code is unambiguous, so keep going and treat it as final.
        Some(_) => (true, true, rest),
    };
    Some(Line {
        code,
        last,
        missing_separator,
        text,
    })
}

/// Control characters (other than TAB) and bytes outside ASCII; RFC 5321 section
/// 4.2 allows only printable ASCII, SP and HT in reply text.
fn is_unusual(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b >= 0x7f
}

/// The RFC 3463 enhanced status code at the start of `text`: `class.subject.detail`,
/// class 2, 4 or 5, subject and detail 1 to 3 digits (RFC 3463 section 2), followed by
/// a space or the end of the text (RFC 2034 section 4 puts it first in the text).
fn parse_enhanced(text: &[u8]) -> Option<[u16; 3]> {
    let token = text.split(|&b| b == b' ').next()?;
    let mut parts = token.split(|&b| b == b'.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !matches!(class, [b'2' | b'4' | b'5']) {
        return None;
    }
    Some([number(class)?, number(subject)?, number(detail)?])
}

/// The value of 1 to 3 ASCII digits.
fn number(digits: &[u8]) -> Option<u16> {
    if !(1..=3).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |value, &d| value * 10 + u16::from(d - b'0')),
    )
}

/// Escapes bytes for display in one line: printable ASCII as is, `\r` `\n` `\t` as those escapes, `\\` for backslash,
/// other bytes as `\xNN`. Used for transcripts and error messages, so the output never contains control characters.
pub fn escape(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            b' '..=b'~' => out.push(char::from(b)),
            _ => {
                out.push_str("\\x");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Limits small enough that every limit case stays short.
    const SMALL: Limits = Limits {
        max_line: 16,
        max_lines: 4,
        max_reply: 40,
    };

    const EHLO: &[u8] = b"250-mx.example.com Hello client.example.org\r\n\
250-PIPELINING\r\n\
250-SIZE 10240000\r\n\
250-ETRN\r\n\
250-STARTTLS\r\n\
250-ENHANCEDSTATUSCODES\r\n\
250-8BITMIME\r\n\
250-DSN\r\n\
250 SMTPUTF8\r\n";

    /// Everything a parser produced from one input.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        results: Vec<Result<Reply, ProtocolError>>,
        buffered: usize,
        partial: Option<Vec<u8>>,
    }

    /// Feeds `pieces` one by one, taking every complete reply after each feed, and
    /// stops at the first error.
    fn run<'a>(limits: Limits, pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
        let mut parser = ReplyParser::new(limits);
        let mut results = Vec::new();
        'feed: for piece in pieces {
            parser.feed(piece);
            loop {
                match parser.next_reply() {
                    Ok(Some(reply)) => results.push(Ok(reply)),
                    Ok(None) => break,
                    Err(err) => {
                        results.push(Err(err));
                        break 'feed;
                    }
                }
            }
        }
        Outcome {
            results,
            buffered: parser.buffered(),
            partial: parser.take_partial(),
        }
    }

    /// Splits `input` into pieces of the given sizes, repeated as needed (all >= 1).
    fn split<'a>(input: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        let mut rest = input;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at(size.min(rest.len()));
            pieces.push(piece);
            rest = tail;
        }
        pieces
    }

    /// A reply without enhanced code or violations.
    fn ok(code: u16, lines: &[&[u8]], raw: &[u8]) -> Reply {
        Reply {
            code,
            lines: lines.iter().map(|line| line.to_vec()).collect(),
            enhanced: None,
            violations: Vec::new(),
            raw: raw.to_vec(),
        }
    }

    fn enhanced(code: [u16; 3], reply: Reply) -> Reply {
        Reply {
            enhanced: Some(code),
            ..reply
        }
    }

    fn violating(violations: Vec<Violation>, reply: Reply) -> Reply {
        Reply {
            violations,
            ..reply
        }
    }

    fn not_a_reply(raw: &[u8]) -> ProtocolError {
        ProtocolError::NotAReply { raw: raw.to_vec() }
    }

    struct Case {
        name: &'static str,
        limits: Limits,
        input: &'static [u8],
        results: Vec<Result<Reply, ProtocolError>>,
        partial: Option<&'static [u8]>,
    }

    fn case(
        name: &'static str,
        input: &'static [u8],
        results: Vec<Result<Reply, ProtocolError>>,
    ) -> Case {
        Case {
            name,
            limits: Limits::default(),
            input,
            results,
            partial: None,
        }
    }

    fn cases() -> Vec<Case> {
        use Violation::*;
        let ehlo_lines: [&[u8]; 9] = [
            b"mx.example.com Hello client.example.org",
            b"PIPELINING",
            b"SIZE 10240000",
            b"ETRN",
            b"STARTTLS",
            b"ENHANCEDSTATUSCODES",
            b"8BITMIME",
            b"DSN",
            b"SMTPUTF8",
        ];
        vec![
            case(
                "single line",
                b"250 OK\r\n",
                vec![Ok(ok(250, &[b"OK"], b"250 OK\r\n"))],
            ),
            case("ehlo", EHLO, vec![Ok(ok(250, &ehlo_lines, EHLO))]),
            case(
                "code only",
                b"250\r\n",
                vec![Ok(ok(250, &[b""], b"250\r\n"))],
            ),
            case(
                "code and space",
                b"250 \r\n",
                vec![Ok(ok(250, &[b""], b"250 \r\n"))],
            ),
            case(
                "empty continuation",
                b"250-\r\n250\r\n",
                vec![Ok(ok(250, &[b"", b""], b"250-\r\n250\r\n"))],
            ),
            case(
                "enhanced",
                b"250 2.1.5 Ok\r\n",
                vec![Ok(enhanced(
                    [2, 1, 5],
                    ok(250, &[b"2.1.5 Ok"], b"250 2.1.5 Ok\r\n"),
                ))],
            ),
            case(
                "enhanced before other text",
                b"550 5.1.1 <x>: User unknown\r\n",
                vec![Ok(enhanced(
                    [5, 1, 1],
                    ok(
                        550,
                        &[b"5.1.1 <x>: User unknown"],
                        b"550 5.1.1 <x>: User unknown\r\n",
                    ),
                ))],
            ),
            case(
                "enhanced two-digit detail",
                b"550 5.7.54 text\r\n",
                vec![Ok(enhanced(
                    [5, 7, 54],
                    ok(550, &[b"5.7.54 text"], b"550 5.7.54 text\r\n"),
                ))],
            ),
            case(
                "enhanced alone",
                b"250 2.1.5\r\n",
                vec![Ok(enhanced(
                    [2, 1, 5],
                    ok(250, &[b"2.1.5"], b"250 2.1.5\r\n"),
                ))],
            ),
            case(
                "no enhanced: word",
                b"250 OK\r\n",
                vec![Ok(ok(250, &[b"OK"], b"250 OK\r\n"))],
            ),
            case(
                "no enhanced: two parts",
                b"250 2.1\r\n",
                vec![Ok(ok(250, &[b"2.1"], b"250 2.1\r\n"))],
            ),
            case(
                "no enhanced: hostname",
                b"220 mx ESMTP\r\n",
                vec![Ok(ok(220, &[b"mx ESMTP"], b"220 mx ESMTP\r\n"))],
            ),
            case(
                "no enhanced: class 3",
                b"250 3.1.5 x\r\n",
                vec![Ok(ok(250, &[b"3.1.5 x"], b"250 3.1.5 x\r\n"))],
            ),
            case(
                "no enhanced: four digits",
                b"250 2.1234.5 x\r\n",
                vec![Ok(ok(250, &[b"2.1234.5 x"], b"250 2.1234.5 x\r\n"))],
            ),
            case(
                "no enhanced: four parts",
                b"250 2.1.5.6 x\r\n",
                vec![Ok(ok(250, &[b"2.1.5.6 x"], b"250 2.1.5.6 x\r\n"))],
            ),
            case(
                "no enhanced: not followed by space",
                b"250 2.1.5x\r\n",
                vec![Ok(ok(250, &[b"2.1.5x"], b"250 2.1.5x\r\n"))],
            ),
            case(
                "no enhanced: only on a later line",
                b"250-first\r\n250 2.0.0 second\r\n",
                vec![Ok(ok(
                    250,
                    &[b"first", b"2.0.0 second"],
                    b"250-first\r\n250 2.0.0 second\r\n",
                ))],
            ),
            case(
                "bare LF",
                b"250-a\n250 b\r\n",
                vec![Ok(violating(
                    vec![BareLf { line: 0 }],
                    ok(250, &[b"a", b"b"], b"250-a\n250 b\r\n"),
                ))],
            ),
            case(
                "bare LF on every line",
                b"250-a\n250 b\n",
                vec![Ok(violating(
                    vec![BareLf { line: 0 }, BareLf { line: 1 }],
                    ok(250, &[b"a", b"b"], b"250-a\n250 b\n"),
                ))],
            ),
            case(
                "missing separator",
                b"250OK\r\n",
                vec![Ok(violating(
                    vec![MissingSeparator { line: 0 }],
                    ok(250, &[b"OK"], b"250OK\r\n"),
                ))],
            ),
            case(
                "missing separator ends a multi-line reply",
                b"250-a\r\n250OK\r\n250 next\r\n",
                vec![
                    Ok(violating(
                        vec![MissingSeparator { line: 1 }],
                        ok(250, &[b"a", b"OK"], b"250-a\r\n250OK\r\n"),
                    )),
                    Ok(ok(250, &[b"next"], b"250 next\r\n")),
                ],
            ),
            case(
                "non-ASCII",
                b"250 caf\xc3\xa9\r\n",
                vec![Ok(violating(
                    vec![UnusualBytes { line: 0 }],
                    ok(250, &[b"caf\xc3\xa9"], b"250 caf\xc3\xa9\r\n"),
                ))],
            ),
            case(
                "control character",
                b"250 a\x1bb\r\n",
                vec![Ok(violating(
                    vec![UnusualBytes { line: 0 }],
                    ok(250, &[b"a\x1bb"], b"250 a\x1bb\r\n"),
                ))],
            ),
            case(
                "lone CR",
                b"250 a\rb\r\n",
                vec![Ok(violating(
                    vec![UnusualBytes { line: 0 }],
                    ok(250, &[b"a\rb"], b"250 a\rb\r\n"),
                ))],
            ),
            case(
                "CR before CRLF",
                b"250 a\r\r\n",
                vec![Ok(violating(
                    vec![UnusualBytes { line: 0 }],
                    ok(250, &[b"a\r"], b"250 a\r\r\n"),
                ))],
            ),
            case(
                "tab is fine",
                b"250 a\tb\r\n",
                vec![Ok(ok(250, &[b"a\tb"], b"250 a\tb\r\n"))],
            ),
            case(
                "violations in order of appearance",
                b"250-ok\r\n250x\x01\n",
                vec![Ok(violating(
                    vec![
                        MissingSeparator { line: 1 },
                        UnusualBytes { line: 1 },
                        BareLf { line: 1 },
                    ],
                    ok(250, &[b"ok", b"x\x01"], b"250-ok\r\n250x\x01\n"),
                ))],
            ),
            case(
                "mixed codes",
                b"250-a\r\n251 b\r\n",
                vec![Err(ProtocolError::MixedCodes {
                    first: 250,
                    found: 251,
                    raw: b"251 b\r\n".to_vec(),
                })],
            ),
            case(
                "HTTP",
                b"HTTP/1.1 400 Bad Request\r\n",
                vec![Err(not_a_reply(b"HTTP/1.1 400 Bad Request\r\n"))],
            ),
            case("letters", b"abc\r\n", vec![Err(not_a_reply(b"abc\r\n"))]),
            case(
                "first digit 0",
                b"099 x\r\n",
                vec![Err(not_a_reply(b"099 x\r\n"))],
            ),
            case(
                "first digit 6",
                b"600 x\r\n",
                vec![Err(not_a_reply(b"600 x\r\n"))],
            ),
            case(
                "first digit 1",
                b"150 x\r\n",
                vec![Err(not_a_reply(b"150 x\r\n"))],
            ),
            case(
                "letter in code",
                b"2a0 x\r\n",
                vec![Err(not_a_reply(b"2a0 x\r\n"))],
            ),
            case(
                "leading space",
                b" 250 x\r\n",
                vec![Err(not_a_reply(b" 250 x\r\n"))],
            ),
            case("two digits", b"25\r\n", vec![Err(not_a_reply(b"25\r\n"))]),
            case("empty line", b"\r\n", vec![Err(not_a_reply(b"\r\n"))]),
            case(
                "garbage inside a reply",
                b"250-a\r\nfoo\r\n",
                vec![Err(not_a_reply(b"foo\r\n"))],
            ),
            case(
                "garbage after a reply",
                b"250 a\r\nHTTP\r\n",
                vec![
                    Ok(ok(250, &[b"a"], b"250 a\r\n")),
                    Err(not_a_reply(b"HTTP\r\n")),
                ],
            ),
            Case {
                limits: SMALL,
                ..case(
                    "line at the limit",
                    b"250 aaaaaaaaaa\r\n",
                    vec![Ok(ok(250, &[b"aaaaaaaaaa"], b"250 aaaaaaaaaa\r\n"))],
                )
            },
            Case {
                limits: SMALL,
                ..case(
                    "line one byte too long",
                    b"250 aaaaaaaaaaa\r\n",
                    vec![Err(ProtocolError::LineTooLong {
                        limit: 16,
                        raw: b"250 aaaaaaaaaaa\r".to_vec(),
                    })],
                )
            },
            Case {
                limits: SMALL,
                ..case(
                    "line too long without ending",
                    b"250 aaaaaaaaaaaaaaaaaaaa",
                    vec![Err(ProtocolError::LineTooLong {
                        limit: 16,
                        raw: b"250 aaaaaaaaaaaa".to_vec(),
                    })],
                )
            },
            Case {
                limits: SMALL,
                ..case(
                    "long garbage is too long before it is garbage",
                    b"GET / HTTP/1.1 long\r\n",
                    vec![Err(ProtocolError::LineTooLong {
                        limit: 16,
                        raw: b"GET / HTTP/1.1 l".to_vec(),
                    })],
                )
            },
            Case {
                limits: SMALL,
                ..case(
                    "lines at the limit",
                    b"250-a\r\n250-b\r\n250-c\r\n250 d\r\n",
                    vec![Ok(ok(
                        250,
                        &[b"a", b"b", b"c", b"d"],
                        b"250-a\r\n250-b\r\n250-c\r\n250 d\r\n",
                    ))],
                )
            },
            Case {
                limits: SMALL,
                ..case(
                    "too many lines",
                    b"250-a\r\n250-b\r\n250-c\r\n250-d\r\n250 e\r\n",
                    vec![Err(ProtocolError::TooManyLines {
                        limit: 4,
                        raw: b"250-a\r\n250-b\r\n25".to_vec(),
                    })],
                )
            },
            Case {
                limits: SMALL,
                ..case(
                    "reply at the limit",
                    b"250-aaaaaaaa\r\n250-aaaaaaaa\r\n250 aaaaaa\r\n",
                    vec![Ok(ok(
                        250,
                        &[b"aaaaaaaa", b"aaaaaaaa", b"aaaaaa"],
                        b"250-aaaaaaaa\r\n250-aaaaaaaa\r\n250 aaaaaa\r\n",
                    ))],
                )
            },
            Case {
                limits: SMALL,
                ..case(
                    "reply too large",
                    b"250-aaaaaaaaa\r\n250-aaaaaaaaa\r\n250-aaaaaaaaa\r\n",
                    vec![Err(ProtocolError::ReplyTooLarge {
                        limit: 40,
                        raw: b"250-aaaaaaaaa\r\n2".to_vec(),
                    })],
                )
            },
            Case {
                limits: Limits {
                    max_reply: 20,
                    ..SMALL
                },
                ..case(
                    "reply too large before its line is too long",
                    b"250-aaaaaaaaa\r\n250 bbbbbbbbbbbbbb",
                    vec![Err(ProtocolError::ReplyTooLarge {
                        limit: 20,
                        raw: b"250-aaaaaaaaa\r\n2".to_vec(),
                    })],
                )
            },
            Case {
                limits: Limits {
                    max_line: 8,
                    max_reply: 20,
                    ..SMALL
                },
                ..case(
                    "line too long before the reply is too large",
                    b"250 aaaaaaaaaaaaaaaaaaaa",
                    vec![Err(ProtocolError::LineTooLong {
                        limit: 8,
                        raw: b"250 aaaa".to_vec(),
                    })],
                )
            },
            case(
                "two replies",
                b"250 a\r\n251 b\r\n",
                vec![
                    Ok(ok(250, &[b"a"], b"250 a\r\n")),
                    Ok(ok(251, &[b"b"], b"251 b\r\n")),
                ],
            ),
            Case {
                partial: Some(b"25"),
                ..case(
                    "two replies and a partial one",
                    b"250 a\r\n354 go\r\n25",
                    vec![
                        Ok(ok(250, &[b"a"], b"250 a\r\n")),
                        Ok(ok(354, &[b"go"], b"354 go\r\n")),
                    ],
                )
            },
            Case {
                partial: Some(b"250-a\r\n250 b"),
                ..case("partial reply", b"250-a\r\n250 b", vec![])
            },
            case("nothing", b"", vec![]),
        ]
    }

    #[test]
    fn table() {
        for case in cases() {
            let expected = Outcome {
                results: case.results,
                buffered: case.partial.map_or(0, <[u8]>::len),
                partial: case.partial.map(<[u8]>::to_vec),
            };
            assert_eq!(run(case.limits, [case.input]), expected, "{}", case.name);
        }
    }

    #[test]
    fn table_in_every_chunk_size() {
        for case in cases() {
            let at_once = run(case.limits, [case.input]);
            for size in 1..=case.input.len() {
                let chunked = run(case.limits, case.input.chunks(size));
                assert_eq!(chunked, at_once, "{} in chunks of {size}", case.name);
            }
        }
    }

    #[test]
    fn second_reply_stays_buffered() {
        let mut parser = ReplyParser::default();
        parser.feed(b"250 a\r\n251 b\r\n2");
        assert_eq!(parser.buffered(), 15);
        assert_eq!(parser.next_reply().unwrap().unwrap().code, 250);
        assert_eq!(parser.buffered(), 8);
        parser.feed(b"52 c\r\n");
        assert_eq!(parser.buffered(), 14);
        assert_eq!(parser.next_reply().unwrap().unwrap().code, 251);
        assert_eq!(parser.buffered(), 7);
        assert_eq!(parser.next_reply().unwrap().unwrap().code, 252);
        assert_eq!(parser.buffered(), 0);
        assert_eq!(parser.next_reply(), Ok(None));
    }

    #[test]
    fn take_partial_empties_the_parser() {
        let mut parser = ReplyParser::default();
        parser.feed(b"250-a\r\n250 b");
        assert_eq!(parser.next_reply(), Ok(None));
        assert_eq!(parser.take_partial(), Some(b"250-a\r\n250 b".to_vec()));
        assert_eq!(parser.buffered(), 0);
        assert_eq!(parser.take_partial(), None);
        parser.feed(b"221 bye\r\n");
        assert_eq!(
            parser.next_reply().unwrap().unwrap().lines,
            vec![b"bye".to_vec()]
        );
    }

    #[test]
    fn endless_line_is_rejected_early() {
        let mut parser = ReplyParser::default();
        let chunk = [b'a'; 1024];
        let mut fed = 0;
        let err = loop {
            assert!(fed < 10 << 20, "never rejected");
            parser.feed(&chunk);
            fed += chunk.len();
            if let Err(err) = parser.next_reply() {
                break err;
            }
        };
        assert!(fed <= MAX_LINE + chunk.len());
        assert_eq!(
            err,
            ProtocolError::LineTooLong {
                limit: MAX_LINE,
                raw: vec![b'a'; MAX_LINE],
            }
        );
    }

    #[test]
    fn endless_reply_is_rejected() {
        let mut parser = ReplyParser::default();
        let err = loop {
            parser.feed(b"250-x\r\n");
            if let Err(err) = parser.next_reply() {
                break err;
            }
        };
        assert!(matches!(
            err,
            ProtocolError::TooManyLines {
                limit: MAX_LINES,
                ..
            }
        ));
    }

    #[test]
    fn flood_of_replies_is_refused() {
        let mut parser = ReplyParser::new(SMALL);
        parser.feed(&b"250 a\r\n".repeat(20));
        assert!(matches!(
            parser.next_reply(),
            Err(ProtocolError::ReplyTooLarge { limit: 40, .. })
        ));
    }

    #[test]
    fn errors_are_sticky_and_free_the_buffer() {
        let mut parser = ReplyParser::default();
        parser.feed(b"abc\r\n250 ok\r\n");
        let err = parser.next_reply().unwrap_err();
        assert_eq!(err, not_a_reply(b"abc\r\n"));
        assert_eq!(parser.buffered(), 0);
        parser.feed(b"250 ok\r\n");
        assert_eq!(parser.buffered(), 0);
        assert_eq!(parser.next_reply(), Err(err));
        assert_eq!(parser.take_partial(), None);
    }

    #[test]
    fn large_reply_fed_byte_by_byte() {
        // 100 kB: a parser that rescanned its buffer on every byte would take
        // billions of steps here.
        let line = [b"250-".as_slice(), &[b'x'; 994], b"\r\n"].concat();
        let mut wire = line.repeat(99);
        wire.extend_from_slice(b"250 end\r\n");
        let mut parser = ReplyParser::default();
        let mut replies = Vec::new();
        for &byte in &wire {
            parser.feed(&[byte]);
            replies.extend(parser.next_reply().unwrap());
        }
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].lines.len(), 100);
        assert_eq!(replies[0].raw, wire);
    }

    #[test]
    fn text_joins_lines_lossily() {
        let reply = run(Limits::default(), [EHLO]).results.remove(0).unwrap();
        assert_eq!(
            reply.text(),
            "mx.example.com Hello client.example.org\nPIPELINING\nSIZE 10240000\nETRN\n\
STARTTLS\nENHANCEDSTATUSCODES\n8BITMIME\nDSN\nSMTPUTF8"
        );
        let reply = ok(250, &[b"caf\xe9", b"x"], b"");
        assert_eq!(reply.text(), "caf\u{fffd}\nx");
    }

    #[test]
    fn summary() {
        let reply = ok(550, &[b"5.1.1 User unknown"], b"");
        assert_eq!(reply.summary(), "550 5.1.1 User unknown");
        assert_eq!(
            ok(250, &[b"a", b"b", b"c"], b"").summary(),
            "250 a (+2 lines)"
        );
        assert_eq!(ok(250, &[b""], b"").summary(), "250");
        assert_eq!(
            ok(250, &[b"caf\xc3\xa9\x1b"], b"").summary(),
            "250 caf\\xc3\\xa9\\x1b"
        );
    }

    #[test]
    fn escape_shows_every_byte_on_one_line() {
        assert_eq!(escape(b"a b~"), "a b~");
        assert_eq!(escape(b"\r\n\t\\"), "\\r\\n\\t\\\\");
        assert_eq!(escape(b"\x00\x1b\x7f\xff"), "\\x00\\x1b\\x7f\\xff");
        let all: Vec<u8> = (0..=255).collect();
        assert!(escape(&all).bytes().all(|b| (b' '..=b'~').contains(&b)));
    }

    #[test]
    fn display() {
        assert_eq!(
            not_a_reply(b"HTTP/1.1 400 Bad Request\r\n").to_string(),
            "not an SMTP reply: \"HTTP/1.1 400 Bad Request\\r\\n\""
        );
        let err = ProtocolError::MixedCodes {
            first: 250,
            found: 251,
            raw: b"251 b\r\n".to_vec(),
        };
        assert_eq!(
            err.to_string(),
            "reply code changed from 250 to 251 within one reply: \"251 b\\r\\n\""
        );
        let err = ProtocolError::LineTooLong {
            limit: MAX_LINE,
            raw: vec![b'a'; MAX_LINE],
        };
        assert_eq!(
            err.to_string(),
            format!(
                "reply line longer than 2048 bytes: \"{}\"... (2048 bytes)",
                "a".repeat(200)
            )
        );
    }

    #[test]
    fn default_limits_are_the_constants() {
        assert_eq!(
            Limits::default(),
            Limits {
                max_line: MAX_LINE,
                max_lines: MAX_LINES,
                max_reply: MAX_REPLY,
            }
        );
    }

    fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1usize..=64, 1..16)
    }

    fn limits() -> impl Strategy<Value = Limits> {
        (0usize..48, 0usize..6, 0usize..160).prop_map(|(max_line, max_lines, max_reply)| Limits {
            max_line,
            max_lines,
            max_reply,
        })
    }

    /// Bytes mixing noise with pieces of replies, so that inputs reach every state.
    fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
        let fragment = prop_oneof![
            prop::collection::vec(any::<u8>(), 1..8),
            Just(b"250".to_vec()),
            Just(b"251".to_vec()),
            Just(b"550".to_vec()),
            Just(b"-".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"2.1.5".to_vec()),
            Just(b"text".to_vec()),
        ];
        prop::collection::vec(fragment, 0..64).prop_map(|fragments| fragments.concat())
    }

    proptest! {
        #[test]
        fn well_formed_replies_round_trip(
            code in 200u16..=599,
            lines in prop::collection::vec("[ -~]{0,80}", 1..=20),
            chunks in chunk_sizes(),
        ) {
            let mut wire = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                let separator = if i + 1 == lines.len() { ' ' } else { '-' };
                wire.extend_from_slice(format!("{code}{separator}{line}\r\n").as_bytes());
            }
            let outcome = run(Limits::default(), split(&wire, &chunks));
            let reply = match &outcome.results[..] {
                [Ok(reply)] => reply,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(reply.code, code);
            let expected: Vec<Vec<u8>> = lines.iter().map(|line| line.as_bytes().to_vec()).collect();
            prop_assert_eq!(&reply.lines, &expected);
            prop_assert_eq!(reply.text(), lines.join("\n"));
            prop_assert!(reply.violations.is_empty());
            prop_assert_eq!(&reply.raw, &wire);
            prop_assert_eq!(outcome.partial, None);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            limits in limits(),
            input in wire_bytes(),
            chunks in chunk_sizes(),
        ) {
            let mut parser = ReplyParser::new(limits);
            for piece in split(&input, &chunks) {
                parser.feed(piece);
                let _ = parser.next_reply();
                prop_assert!(parser.buffered() <= limits.max_reply + limits.max_line);
            }
            let _ = parser.next_reply();
            let _ = parser.take_partial();
            prop_assert_eq!(parser.buffered(), 0);
        }

        #[test]
        fn chunking_does_not_change_results(
            limits in limits(),
            input in wire_bytes(),
            chunks in chunk_sizes(),
        ) {
            // Past this size the input is refused as a flood when fed at once,
            // but may be read reply by reply when fed in chunks.
            let input = &input[..input.len().min(limits.max_reply + limits.max_line)];
            prop_assert_eq!(run(limits, split(input, &chunks)), run(limits, [input]));
        }
    }
}
