//! The console: one line per finished case (status, case name, time, and for a
//! failure or error the message), then the summary line. Colour only on a
//! terminal, never with `NO_COLOR` set.

use crate::result::{CaseResult, Counts, Outcome};
use std::time::Duration;

/// Whether to colour: stdout is a terminal and `NO_COLOR` is unset or empty
/// (no-color.org).
pub fn use_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn paint(text: &str, code: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// The line for a finished case.
pub fn case_line(c: &CaseResult, colour: bool) -> String {
    let time = secs(c.duration);
    let (status, detail) = match &c.outcome {
        Outcome::Passed => (paint("PASS ", "32", colour), String::new()),
        Outcome::Failed { message } => (paint("FAIL ", "31", colour), format!("\n      {message}")),
        Outcome::Errored { kind, message } => (
            paint("ERROR", "31;1", colour),
            format!("\n      {kind}: {message}"),
        ),
        Outcome::Skipped { message } => {
            (paint("SKIP ", "33", colour), format!("\n      {message}"))
        }
    };
    format!("{status} {} ({time}){detail}", c.name)
}

/// The summary line: `N passed, N failed, N errored, N skipped`.
pub fn summary(counts: &Counts, took: Duration) -> String {
    format!("{counts} ({})", secs(took))
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{ErrorKind, Transcript};

    fn case(outcome: Outcome) -> CaseResult {
        CaseResult {
            name: "t @ h:25".into(),
            classname: "p.t".into(),
            duration: Duration::from_millis(1234),
            outcome,
            transcript: Transcript::default(),
            facts: Vec::new(),
        }
    }

    #[test]
    fn lines_show_status_name_time_and_reason() {
        assert_eq!(
            case_line(&case(Outcome::Passed), false),
            "PASS  t @ h:25 (1.234s)"
        );
        let f = case(Outcome::Failed {
            message: "step 3 rcpt_to: expected 250, got 550 5.1.1 User unknown".into(),
        });
        assert_eq!(case_line(&f, false), "FAIL  t @ h:25 (1.234s)\n      step 3 rcpt_to: expected 250, got 550 5.1.1 User unknown");
        let e = case(Outcome::Errored {
            kind: ErrorKind::Timeout,
            message: "x".into(),
        });
        assert_eq!(
            case_line(&e, true),
            "\x1b[31;1mERROR\x1b[0m t @ h:25 (1.234s)\n      timeout: x"
        );
    }
}
