//! Fuzzes `smtp_plan::smtp::reply::ReplyParser`.
//!
//! Input layout (missing header bytes count as 0):
//!
//! | byte | meaning |
//! | ---- | ------- |
//! | 0    | bit 0: small limits from bytes 4..7 instead of the defaults (MAX_LINE, MAX_LINES, MAX_REPLY) |
//! | 1..4 | chunk sizes, used in turn: `n + 1` bytes, or 255 = everything that is left |
//! | 4..7 | small limits: max_line = b4 % 64, max_lines = b5 % 8, max_reply = b6 |
//! | 7..  | the bytes the "server" sends |
//!
//! The wire bytes are fed chunk by chunk, taking every reply after each feed (and
//! calling `next_reply` once more after an error), then `take_partial` ends the
//! stream. Invariants checked: the buffer bound, reply codes, line counts and sizes,
//! that escaped/summarised text holds no control characters, that errors are sticky,
//! that no byte is lost or duplicated (replies' raw bytes + partial = input), and
//! that the results do not depend on how the input was split into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_plan::smtp::reply::{
    escape, Limits, ProtocolError, Reply, ReplyParser, MAX_LINE, MAX_LINES, MAX_REPLY,
};

const HEADER: usize = 7;

/// Everything one run produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    results: Vec<Result<Reply, ProtocolError>>,
    partial: Option<Vec<u8>>,
}

fn no_control(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

fn check_reply(reply: &Reply, limits: Limits) {
    assert!(
        (200..=599).contains(&reply.code),
        "reply code {} out of range: {reply:?}",
        reply.code
    );
    assert!(!reply.lines.is_empty(), "reply without lines: {reply:?}");
    assert!(
        reply.lines.len() <= limits.max_lines,
        "too many lines: {reply:?}"
    );
    assert!(reply.lines.len() <= MAX_LINES);
    assert!(
        reply.raw.len() <= limits.max_reply,
        "reply too large: {reply:?}"
    );
    assert!(
        reply.raw.ends_with(b"\n"),
        "raw does not end a line: {reply:?}"
    );
    let escaped = escape(&reply.raw);
    assert!(
        escaped.bytes().all(|b| (b' '..=b'~').contains(&b)),
        "escape() left a control or non-ASCII character: {escaped:?}"
    );
    let summary = reply.summary();
    assert!(
        no_control(&summary),
        "summary() holds a control character: {summary:?}"
    );
    assert!(summary.starts_with(&reply.code.to_string()));
    let text = reply.text();
    assert_eq!(text.split('\n').count(), reply.lines.len().max(1));
    for violation in &reply.violations {
        let _ = violation.to_string();
    }
    if let Some([class, subject, detail]) = reply.enhanced {
        assert!(
            matches!(class, 2 | 4 | 5),
            "enhanced class {class}: {reply:?}"
        );
        assert!(subject <= 999 && detail <= 999);
    }
}

fn check_error(err: &ProtocolError) {
    let message = err.to_string();
    assert!(
        no_control(&message),
        "error message holds a control character: {message:?}"
    );
}

/// Feeds `pieces` in turn, taking replies after each feed, and checks the
/// invariants that hold at every step.
fn run<'a>(limits: Limits, pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let bound = limits.max_reply.saturating_add(limits.max_line);
    let mut parser = ReplyParser::new(limits);
    let mut results = Vec::new();
    'feed: for piece in pieces {
        parser.feed(piece);
        loop {
            let result = parser.next_reply();
            assert!(
                parser.buffered() <= bound,
                "buffered {} > {bound} after next_reply",
                parser.buffered()
            );
            match result {
                Ok(Some(reply)) => {
                    check_reply(&reply, limits);
                    results.push(Ok(reply));
                }
                Ok(None) => break,
                Err(err) => {
                    check_error(&err);
                    assert_eq!(parser.buffered(), 0, "buffer kept after an error");
                    // Errors are sticky, and later bytes are ignored.
                    assert_eq!(parser.next_reply(), Err(err.clone()));
                    parser.feed(b"250 ok\r\n");
                    assert_eq!(parser.buffered(), 0);
                    assert_eq!(parser.next_reply(), Err(err.clone()));
                    results.push(Err(err));
                    break 'feed;
                }
            }
        }
    }
    let partial = parser.take_partial();
    assert_eq!(parser.buffered(), 0, "take_partial left bytes buffered");
    assert_eq!(parser.take_partial(), None);
    Outcome { results, partial }
}

/// Splits `wire` by the sizes in `sizes`, used in turn.
fn split<'a>(mut wire: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut i = 0;
    while !wire.is_empty() {
        let size = match sizes[i % sizes.len()] {
            255 => wire.len(),
            n => (usize::from(n) + 1).min(wire.len()),
        };
        let (piece, rest) = wire.split_at(size);
        pieces.push(piece);
        wire = rest;
        i += 1;
    }
    pieces
}

fuzz_target!(|data: &[u8]| {
    let mut header = [0u8; HEADER];
    let n = data.len().min(HEADER);
    header[..n].copy_from_slice(&data[..n]);
    let wire = &data[n..];

    let limits = if header[0] & 1 == 1 {
        Limits {
            max_line: usize::from(header[4] % 64),
            max_lines: usize::from(header[5] % 8),
            max_reply: usize::from(header[6]),
        }
    } else {
        Limits::default()
    };
    assert!(limits.max_line <= MAX_LINE && limits.max_reply <= MAX_REPLY);

    let chunked = run(limits, split(wire, &header[1..4]));

    // No byte lost or duplicated: without an error, the replies' raw bytes and
    // the partial reply are the input.
    if !chunked.results.iter().any(Result::is_err) {
        let mut joined: Vec<u8> = Vec::with_capacity(wire.len());
        for reply in chunked.results.iter().flatten() {
            joined.extend_from_slice(&reply.raw);
        }
        joined.extend_from_slice(chunked.partial.as_deref().unwrap_or_default());
        assert_eq!(joined, wire, "replies + partial differ from the input");
    }

    // Results do not depend on how the input was split. Fed at once, more than
    // max_reply + max_line bytes are refused as a flood, so compare within that.
    let bounded = &wire[..wire.len().min(limits.max_reply + limits.max_line)];
    let at_once = run(limits, [bounded]);
    let one_by_one = run(limits, bounded.chunks(1));
    assert_eq!(one_by_one, at_once, "byte-by-byte differs from all at once");
    let chunked_bounded = run(limits, split(bounded, &header[1..4]));
    assert_eq!(chunked_bounded, at_once, "chunked differs from all at once");
});
