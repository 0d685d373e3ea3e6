//! Bytes for the wire: command lines (never with a CR, LF or NUL from a value),
//! DSN parameters (RFC 3461 xtext), and message data: line endings normalised to
//! CRLF, dot-stuffed (RFC 5321 section 4.5.2), always ending in CRLF.

/// A command line with its CRLF, or an error when `text` holds CR, LF or NUL
/// (the last line of defence against SMTP command injection; plans are checked
/// at validation too, but run-time values such as captures are only known here).
pub fn line(text: &str) -> Result<Vec<u8>, String> {
    if let Some(c) = text.chars().find(|c| matches!(c, '\r' | '\n' | '\0')) {
        let name = match c {
            '\r' => "CR",
            '\n' => "LF",
            _ => "NUL",
        };
        return Err(format!(
            "refusing to send a command containing {name}: {text:?}"
        ));
    }
    let mut out = Vec::with_capacity(text.len() + 2);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// `MAIL FROM:<address> PARAMS...` (RFC 5321 section 4.1.1.2).
pub fn mail_from(address: &str, params: &[String]) -> String {
    with_params(format!("MAIL FROM:<{address}>"), params)
}

/// `RCPT TO:<address> [NOTIFY=...] [ORCPT=...] PARAMS...` (RFC 5321 4.1.1.3, RFC 3461).
/// `orcpt` is `type;address` or a bare address (taken as `rfc822;`); its address part
/// is xtext-encoded.
pub fn rcpt_to(
    address: &str,
    notify: Option<&str>,
    orcpt: Option<&str>,
    params: &[String],
) -> String {
    let mut cmd = format!("RCPT TO:<{address}>");
    if let Some(n) = notify {
        cmd.push_str(&format!(" NOTIFY={n}"));
    }
    if let Some(o) = orcpt {
        let (kind, addr) = o.split_once(';').unwrap_or(("rfc822", o));
        cmd.push_str(&format!(" ORCPT={kind};{}", xtext(addr)));
    }
    with_params(cmd, params)
}

fn with_params(mut cmd: String, params: &[String]) -> String {
    for p in params {
        cmd.push(' ');
        cmd.push_str(p);
    }
    cmd
}

/// RFC 3461 section 4: bytes outside `!`..`~`, and `+` and `=`, as `+XX`.
pub fn xtext(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Message data with every line ending made CRLF and a CRLF at the end.
pub fn normalise(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 32 + 2);
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\r' if text.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The DATA payload: normalised, dot-stuffed, and terminated by `.CRLF`.
pub fn data_payload(message: &[u8]) -> Vec<u8> {
    let text = normalise(message);
    let mut out = Vec::with_capacity(text.len() + 64);
    let mut at_line_start = true;
    for &b in &text {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Pads a normalised message (ending in CRLF) with lines of `x` until it is
/// `size` bytes long (no change when it is already that long). It still ends in
/// CRLF: a single byte left over goes into the last line.
pub fn pad(message: &mut Vec<u8>, size: u64) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    while message.len() < size {
        let room = size - message.len();
        if room == 1 {
            message.insert(message.len() - 2, b'x');
            break;
        }
        // A line of at most 78 characters plus CRLF (RFC 5322 section 2.1.1).
        let n = (room - 2).min(78);
        message.extend(std::iter::repeat_n(b'x', n));
        message.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_refuse_line_breaks() {
        assert_eq!(line("NOOP").unwrap(), b"NOOP\r\n");
        assert!(line("EHLO x\r\nRSET").unwrap_err().contains("CR"));
        assert!(line("a\nb").unwrap_err().contains("LF"));
        assert!(line("a\0b").unwrap_err().contains("NUL"));
    }

    #[test]
    fn envelope_commands() {
        assert_eq!(mail_from("", &[]), "MAIL FROM:<>");
        assert_eq!(
            mail_from("a@b", &["SIZE=10".into()]),
            "MAIL FROM:<a@b> SIZE=10"
        );
        assert_eq!(
            rcpt_to("k@f.com", Some("SUCCESS,FAILURE"), Some("k+1@f.com"), &[]),
            "RCPT TO:<k@f.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;k+2B1@f.com"
        );
        assert_eq!(
            rcpt_to("k@f", None, Some("utf-8;k@f"), &[]),
            "RCPT TO:<k@f> ORCPT=utf-8;k@f"
        );
    }

    #[test]
    fn data_is_normalised_and_dot_stuffed() {
        assert_eq!(data_payload(b"a\nb\r\nc"), b"a\r\nb\r\nc\r\n.\r\n");
        assert_eq!(
            data_payload(b".x\n..y\nz.\n."),
            b"..x\r\n...y\r\nz.\r\n..\r\n.\r\n"
        );
        assert_eq!(data_payload(b"bare\rcr"), b"bare\r\ncr\r\n.\r\n");
        assert_eq!(data_payload(b""), b"\r\n.\r\n");
    }

    #[test]
    fn padding_reaches_the_size_exactly() {
        for size in [0u64, 5, 10, 11, 100, 1000, 4097] {
            let mut m = normalise(b"Subject: x\n\nbody");
            let before = m.len();
            pad(&mut m, size);
            assert_eq!(m.len(), before.max(size as usize), "size {size}");
            let bare_cr = m
                .iter()
                .enumerate()
                .any(|(i, b)| *b == b'\r' && m.get(i + 1) != Some(&b'\n'));
            assert!(
                m.ends_with(b"\r\n") && !bare_cr,
                "size {size}: ends in CRLF, no bare CR"
            );
        }
    }
}

/// The PROXY protocol header (HAProxy's proxy-protocol.txt) that announces the
/// connection `src` -> `dst` to a server behind a proxy: version 1 is a text line,
/// version 2 a binary block.
pub fn proxy_header(v2: bool, src: std::net::SocketAddr, dst: std::net::SocketAddr) -> Vec<u8> {
    use std::net::SocketAddr::{V4, V6};
    if !v2 {
        let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
        return format!(
            "PROXY {family} {} {} {} {}\r\n",
            src.ip(),
            dst.ip(),
            src.port(),
            dst.port()
        )
        .into_bytes();
    }
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    // Version 2, command PROXY.
    out.push(0x21);
    let addresses: Vec<u8> = match (src, dst) {
        (V4(s), V4(d)) => {
            out.push(0x11);
            [s.ip().octets().as_slice(), d.ip().octets().as_slice()].concat()
        }
        (s, d) => {
            out.push(0x21);
            let v6 = |a: std::net::SocketAddr| match a {
                V4(a) => a.ip().to_ipv6_mapped().octets(),
                V6(a) => a.ip().octets(),
            };
            [v6(s).as_slice(), v6(d).as_slice()].concat()
        }
    };
    let len = (addresses.len() + 4) as u16;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&addresses);
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

#[cfg(test)]
mod proxy_tests {
    use super::proxy_header;

    #[test]
    fn version_1_is_a_line() {
        let h = proxy_header(
            false,
            "192.0.2.1:40000".parse().unwrap(),
            "198.51.100.2:25".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 198.51.100.2 40000 25\r\n");
        let h = proxy_header(
            false,
            "[::1]:40000".parse().unwrap(),
            "[::1]:25".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP6 ::1 ::1 40000 25\r\n");
    }

    #[test]
    fn version_2_is_the_binary_block() {
        let h = proxy_header(
            true,
            "192.0.2.1:40000".parse().unwrap(),
            "198.51.100.2:25".parse().unwrap(),
        );
        assert_eq!(
            &h[..12],
            b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"
        );
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..20], &[192, 0, 2, 1]);
        assert_eq!(&h[20..24], &[198, 51, 100, 2]);
        assert_eq!(&h[24..], &[0x9c, 0x40, 0, 25]);
        let h = proxy_header(true, "[::1]:1".parse().unwrap(), "[::1]:2".parse().unwrap());
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(h.len(), 16 + 36);
    }
}
