//! Diagnostics for plan files: a message tied to `file:line:column`, rendered the
//! way compilers do, with the offending line and a caret under the spot.

use std::fmt;

/// The text of a plan (or a `file:` target list) with its display name, for
/// turning line/column pairs into rendered diagnostics.
#[derive(Debug, Clone)]
pub struct Source {
    /// How the file is named in messages (the path as the user gave it).
    pub name: String,
    /// The file's contents.
    pub text: String,
}

impl Source {
    /// A source named `name` holding `text`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    /// Line `line` (1-based) without its line ending.
    pub fn line(&self, line: usize) -> Option<&str> {
        self.text
            .split('\n')
            .nth(line.checked_sub(1)?)
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
    }

    /// A diagnostic at `line:column` (1-based, column counted in characters),
    /// underlining `width` characters.
    pub fn error_at(
        &self,
        line: usize,
        column: usize,
        width: usize,
        message: impl Into<String>,
    ) -> Diagnostic {
        // The parser reports the end of a file as the line after the last one;
        // point at the end of the last line instead, so a line is shown.
        let last = self.text.lines().count();
        let (line, column) = if line > last && last > 0 {
            (last, self.line(last).map_or(0, |l| l.chars().count()) + 1)
        } else {
            (line, column)
        };
        Diagnostic {
            file: self.name.clone(),
            position: Some(Position {
                line,
                column,
                width: width.max(1),
                text: self.line(line).unwrap_or("").to_string(),
            }),
            message: message.into(),
        }
    }

    /// The 1-based line and character column of byte offset `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// The byte offset of 1-based `line:column` (column in characters).
    pub fn offset(&self, line: usize, column: usize) -> usize {
        let mut start = 0;
        for _ in 1..line {
            match self.text[start..].find('\n') {
                Some(i) => start += i + 1,
                None => return self.text.len(),
            }
        }
        let rest = &self.text[start..];
        start
            + rest
                .char_indices()
                .nth(column.saturating_sub(1))
                .map_or(rest.len(), |(i, _)| i)
    }
}

/// Where in a file a diagnostic points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Characters to underline.
    pub width: usize,
    /// The text of the line.
    pub text: String,
}

/// One problem found in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file's display name.
    pub file: String,
    /// Where in the file, when known.
    pub position: Option<Position>,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic about a whole file (it cannot be read, for instance).
    pub fn whole_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            position: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(pos) = &self.position else {
            return write!(f, "{}: error: {}", self.file, self.message);
        };
        writeln!(
            f,
            "{}:{}:{}: error: {}",
            self.file, pos.line, pos.column, self.message
        )?;
        let number = pos.line.to_string();
        let gutter = " ".repeat(number.len());
        // Tabs keep their width in the caret line so the caret stays under its column.
        let lead: String = pos
            .text
            .chars()
            .take(pos.column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        writeln!(f, "{number} | {}", pos.text)?;
        write!(f, "{gutter} | {lead}{}", "^".repeat(pos.width))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_and_caret() {
        let src = Source::new("p.yaml", "a: 1\n  rcpt_too: x\n");
        let d = src.error_at(2, 3, 8, "unknown key `rcpt_too`");
        assert_eq!(
            d.to_string(),
            "p.yaml:2:3: error: unknown key `rcpt_too`\n2 |   rcpt_too: x\n  |   ^^^^^^^^"
        );
    }

    #[test]
    fn offsets_round_trip_with_multibyte_text() {
        let src = Source::new("p", "é: 1\nxé: ${a}\n");
        let off = src.offset(2, 5);
        assert_eq!(&src.text[off..off + 2], "${");
        assert_eq!(src.line_col(off), (2, 5));
    }

    #[test]
    fn errors_past_the_end_point_at_the_last_line() {
        let src = Source::new("p", "---");
        let d = src.error_at(2, 1, 1, "expected a map");
        assert_eq!(
            d.to_string(),
            "p:1:4: error: expected a map\n1 | ---\n  |    ^"
        );
    }

    #[test]
    fn whole_file_diagnostic_has_no_position() {
        let d = Diagnostic::whole_file("x.yaml", "cannot read: no such file");
        assert_eq!(d.to_string(), "x.yaml: error: cannot read: no such file");
    }
}

/// The candidate closest to `word` when it is close enough to be a likely typo
/// (edit distance at most a third of the word, and at least 1 allowed).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting a swap of two neighbours as one edit
/// (`rcpt_ot` is one typo away from `rcpt_to`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2 = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod suggest_tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_words_only() {
        let verbs = ["rcpt_to", "mail_from", "ehlo", "helo"];
        assert_eq!(did_you_mean("rcpt_too", verbs), Some("rcpt_to"));
        assert_eq!(did_you_mean("rcpt_ot", verbs), Some("rcpt_to"));
        assert_eq!(did_you_mean("RCPT_TO", verbs), Some("rcpt_to"));
        assert_eq!(did_you_mean("mailfrom", verbs), Some("mail_from"));
        assert_eq!(did_you_mean("elho", verbs), Some("ehlo"));
        assert_eq!(did_you_mean("banana", verbs), None);
    }
}
