//! The reply pattern language of `expect` (spec section 6.1): reply codes with `x`
//! wildcards, RFC 3463 enhanced status codes with `x`/`*` wildcards, both together,
//! the map form with a text regex, `not`, and lists (any one matching passes).
//! Parsing turns a pattern's text into a checked value; matching is a pure function
//! of a reply's code, enhanced code and text.

use regex::Regex;
use std::fmt;

/// An `expect`: the reply passes when any one pattern matches.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The alternatives.
    pub any: Vec<Pattern>,
}

/// One reply pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Every given part must match.
    Reply {
        /// The reply code.
        code: Option<CodePattern>,
        /// The enhanced status code at the start of the reply text.
        enhanced: Option<EnhancedPattern>,
        /// A regex over the whole reply text, lines joined by `\n`.
        text: Option<Regex>,
    },
    /// Passes when the inner expectation does not.
    Not(Box<Expect>),
    /// `connect` only: the connection attempt must end this way instead of greeting.
    Connect(ConnectOutcome),
}

/// How a `connect` may be expected to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// The port refuses the connection (TCP RST).
    Refused,
    /// Nothing answers within the connect timeout (a dropping firewall).
    Timeout,
    /// The server accepts and closes without a greeting.
    Closed,
}

/// A reply code pattern: three positions, each a digit or any digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodePattern(pub [Option<u8>; 3]);

/// An enhanced status code pattern `class.subject.detail`, each part a number or any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedPattern(pub [Option<u16>; 3]);

fn is_wild(s: &str) -> bool {
    s == "x" || s == "X" || s == "*"
}

impl CodePattern {
    /// Parses `250`, `25x`, `2xx`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("`{s}` is not a reply code pattern: {why}"));
        let chars: Vec<char> = s.chars().collect();
        if chars.len() != 3
            || !chars
                .iter()
                .all(|c| c.is_ascii_digit() || *c == 'x' || *c == 'X')
        {
            return bad("expected three digits, each may be `x`, as in `250` or `2xx`");
        }
        let d = |c: char| c.to_digit(10).map(|d| d as u8);
        let parts = [d(chars[0]), d(chars[1]), d(chars[2])];
        match parts[0] {
            None => bad("the first digit must be given (2, 3, 4 or 5)"),
            Some(2..=5) if parts[1].is_none_or(|x| x <= 5) => Ok(CodePattern(parts)),
            Some(2..=5) => {
                bad("the second digit of a reply code is 0 to 5 (RFC 5321 section 4.2.1)")
            }
            Some(_) => bad("reply codes start with 2, 3, 4 or 5 (RFC 5321 section 4.2.1)"),
        }
    }

    /// Whether `code` matches.
    pub fn matches(&self, code: u16) -> bool {
        let digits = [
            (code / 100) as u8,
            (code / 10 % 10) as u8,
            (code % 10) as u8,
        ];
        self.0
            .iter()
            .zip(digits)
            .all(|(p, d)| p.is_none_or(|p| p == d))
    }
}

impl EnhancedPattern {
    /// Parses `5.1.1`, `5.1.x`, `5.7.*`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            Err(format!(
                "`{s}` is not an enhanced status code pattern: {why}"
            ))
        };
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 3 {
            return bad(
                "expected three parts, class.subject.detail, as in `5.1.1` or `5.7.x` (RFC 3463)",
            );
        }
        let mut out = [None; 3];
        for (i, p) in parts.iter().enumerate() {
            if is_wild(p) {
                continue;
            }
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return bad("each part is a number of one to three digits, or `x`");
            }
            out[i] = p.parse().ok();
        }
        match out[0] {
            None | Some(2) | Some(4) | Some(5) => Ok(EnhancedPattern(out)),
            Some(_) => bad("the class is 2, 4 or 5 (RFC 3463)"),
        }
    }

    /// Whether the enhanced code `code` matches.
    pub fn matches(&self, code: [u16; 3]) -> bool {
        self.0
            .iter()
            .zip(code)
            .all(|(p, c)| p.is_none_or(|p| p == c))
    }
}

impl Pattern {
    /// Parses the text form: `250`, `2xx`, `2.1.5`, `250 2.1.5`, and with
    /// `connect`, `refused`, `timeout`, `closed`.
    pub fn parse_text(s: &str, connect: bool) -> Result<Pattern, String> {
        let outcome = match s {
            "refused" => Some(ConnectOutcome::Refused),
            "timeout" => Some(ConnectOutcome::Timeout),
            "closed" => Some(ConnectOutcome::Closed),
            _ => None,
        };
        if let Some(o) = outcome {
            return if connect {
                Ok(Pattern::Connect(o))
            } else {
                Err(format!(
                    "`{s}` is an outcome of `connect` only; other steps expect reply patterns"
                ))
            };
        }
        let words: Vec<&str> = s.split_whitespace().collect();
        let (code, enhanced) = match words.as_slice() {
            [one] if one.contains('.') => (None, Some(EnhancedPattern::parse(one)?)),
            [one] => (Some(CodePattern::parse(one)?), None),
            [c, e] => (Some(CodePattern::parse(c)?), Some(EnhancedPattern::parse(e)?)),
            _ => {
                return Err(format!(
                    "`{s}` is not a reply pattern: expected a code (`250`, `2xx`), an enhanced code (`2.1.5`) or both (`250 2.1.5`); match reply text with `{{ text: REGEX }}`"
                ))
            }
        };
        if let (Some(c), Some(e)) = (code, enhanced) {
            if let (Some(cc), Some(ec)) = (c.0[0], e.0[0]) {
                if u16::from(cc) != ec {
                    return Err(format!(
                        "`{s}` can never match: the enhanced code's class must equal the reply code's first digit (RFC 3463)"
                    ));
                }
            }
        }
        Ok(Pattern::Reply {
            code,
            enhanced,
            text: None,
        })
    }

    /// Whether a reply with this code, enhanced code and text matches. A
    /// `Connect` pattern never matches a reply.
    pub fn matches(&self, code: u16, enhanced: Option<[u16; 3]>, text: &str) -> bool {
        match self {
            Pattern::Reply {
                code: c,
                enhanced: e,
                text: t,
            } => {
                c.is_none_or(|c| c.matches(code))
                    && e.is_none_or(|e| enhanced.is_some_and(|x| e.matches(x)))
                    && t.as_ref().is_none_or(|t| t.is_match(text))
            }
            Pattern::Not(inner) => !inner.matches(code, enhanced, text),
            Pattern::Connect(_) => false,
        }
    }
}

impl Expect {
    /// Whether any alternative matches.
    pub fn matches(&self, code: u16, enhanced: Option<[u16; 3]>, text: &str) -> bool {
        self.any.iter().any(|p| p.matches(code, enhanced, text))
    }

    /// The expectation of a bare reply code pattern, for a verb's default.
    pub fn code(s: &str) -> Expect {
        Expect {
            any: vec![Pattern::Reply {
                code: Some(CodePattern::parse(s).expect("default patterns are valid")),
                enhanced: None,
                text: None,
            }],
        }
    }
}

fn wild<T: fmt::Display>(p: Option<T>, w: &str) -> String {
    p.map_or_else(|| w.to_string(), |v| v.to_string())
}

impl fmt::Display for CodePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|d| f.write_str(&wild(*d, "x")))
    }
}

impl fmt::Display for EnhancedPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.0;
        write!(f, "{}.{}.{}", wild(a, "x"), wild(b, "x"), wild(c, "x"))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Reply {
                code,
                enhanced,
                text,
            } => {
                let mut parts = Vec::new();
                if let Some(c) = code {
                    parts.push(c.to_string());
                }
                if let Some(e) = enhanced {
                    parts.push(e.to_string());
                }
                if let Some(t) = text {
                    parts.push(format!("/{}/", t.as_str()));
                }
                f.write_str(&parts.join(" "))
            }
            Pattern::Not(inner) => write!(f, "not {inner}"),
            Pattern::Connect(ConnectOutcome::Refused) => f.write_str("refused"),
            Pattern::Connect(ConnectOutcome::Timeout) => f.write_str("timeout"),
            Pattern::Connect(ConnectOutcome::Closed) => f.write_str("closed"),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alts: Vec<String> = self.any.iter().map(ToString::to_string).collect();
        match alts.as_slice() {
            [one] => f.write_str(one),
            _ => write!(f, "one of [{}]", alts.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse_text(s, false).unwrap()
    }

    #[test]
    fn code_patterns() {
        assert!(p("250").matches(250, None, ""));
        assert!(!p("250").matches(251, None, ""));
        assert!(p("2xx").matches(221, None, ""));
        assert!(p("25x").matches(252, None, ""));
        assert!(!p("25x").matches(221, None, ""));
        assert!(p("5XX").matches(550, None, ""));
    }

    #[test]
    fn enhanced_patterns_need_the_enhanced_code() {
        assert!(p("2.1.5").matches(250, Some([2, 1, 5]), ""));
        assert!(!p("2.1.5").matches(250, None, ""));
        assert!(p("5.7.*").matches(530, Some([5, 7, 1]), ""));
        assert!(p("5.1.x").matches(550, Some([5, 1, 10]), ""));
        assert!(p("250 2.1.5").matches(250, Some([2, 1, 5]), ""));
        assert!(!p("250 2.1.5").matches(250, Some([2, 1, 0]), ""));
    }

    #[test]
    fn bad_patterns_explain_themselves() {
        for (bad, why) in [
            ("2x", "expected three digits"),
            ("6xx", "start with 2, 3, 4 or 5"),
            ("1xx", "start with 2, 3, 4 or 5"),
            ("xxx", "first digit must be given"),
            ("290", "second digit"),
            ("5.1", "three parts"),
            ("5.1.1.1", "three parts"),
            ("3.1.1", "class is 2, 4 or 5"),
            ("5.1000.1", "one to three digits"),
            ("250 5.1.1", "can never match"),
            ("250 ok now", "not a reply pattern"),
            ("refused", "`connect` only"),
        ] {
            let e = Pattern::parse_text(bad, false).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(matches!(
            Pattern::parse_text("refused", true),
            Ok(Pattern::Connect(ConnectOutcome::Refused))
        ));
    }

    #[test]
    fn not_text_and_lists() {
        let not2xx = Pattern::Not(Box::new(Expect {
            any: vec![p("2xx")],
        }));
        assert!(not2xx.matches(550, None, ""));
        assert!(!not2xx.matches(250, None, ""));
        let text = Pattern::Reply {
            code: Some(CodePattern::parse("5xx").unwrap()),
            enhanced: None,
            text: Some(Regex::new("(?i)not authenticated").unwrap()),
        };
        assert!(text.matches(530, Some([5, 7, 1]), "5.7.1 Client was not authenticated"));
        assert!(!text.matches(530, Some([5, 7, 1]), "5.7.1 Go away"));
        let list = Expect {
            any: vec![p("250"), p("251")],
        };
        assert!(list.matches(251, None, "") && !list.matches(252, None, ""));
        assert_eq!(list.to_string(), "one of [250, 251]");
        assert_eq!(p("250 2.1.x").to_string(), "250 2.1.x");
    }
}
