//! What a run produced: one [`CaseResult`] per (test, target) pair, with its outcome
//! and its redacted transcript. Reports read these and nothing else.

use std::fmt;
use std::time::Duration;

/// The transcript cap per session (spec: JUnit `<system-out>` is capped at 64 KiB).
pub const TRANSCRIPT_CAP: usize = 64 * 1024;

/// A whole run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// `<testsuites name>`: the plan name, or the plan names joined when several ran.
    pub name: String,
    /// One suite per plan test, in plan order.
    pub suites: Vec<SuiteResult>,
    /// Wall time of the run.
    pub duration: Duration,
    /// The run was interrupted (Ctrl-C, SIGTERM) before every case finished.
    pub interrupted: bool,
}

/// The cases of one plan test.
#[derive(Debug, Clone)]
pub struct SuiteResult {
    /// The test name (`PLAN / TEST` when the run has several plans).
    pub name: String,
    /// Its cases, one per target.
    pub cases: Vec<CaseResult>,
}

/// One (test, target) session.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// `TEST @ TARGET`.
    pub name: String,
    /// `PLAN.TEST`.
    pub classname: String,
    /// Wall time of the session (0 when skipped).
    pub duration: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// The session, redacted.
    pub transcript: Transcript,
    /// Facts reported whatever the transcript setting: TLS version, cipher suite
    /// and certificate of every TLS session.
    pub facts: Vec<String>,
}

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step's reply matched.
    Passed,
    /// A reply did not match its expectation (or an assertion such as `within` failed).
    Failed {
        /// The message, starting with the step: `step 4 rcpt_to: expected 250, got 550 ...`.
        message: String,
    },
    /// The session broke: DNS, connect, TLS, timeout or protocol.
    Errored {
        /// What broke.
        kind: ErrorKind,
        /// The message, naming the step and phase.
        message: String,
    },
    /// Not run.
    Skipped {
        /// Why.
        message: String,
    },
}

/// Kinds of session errors (JUnit `<error type>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Name resolution.
    Dns,
    /// TCP connect.
    Connect,
    /// TLS.
    Tls,
    /// A named timeout expired.
    Timeout,
    /// The server broke the protocol (or closed the connection).
    Protocol,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Dns => "dns",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
        })
    }
}

/// Who a transcript line is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by smtp-plan.
    Client,
    /// Received from the server.
    Server,
    /// A remark of smtp-plan's (connection opened, protocol violation, ...).
    Note,
}

/// One transcript line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Time since the session started.
    pub at: Duration,
    /// From whom.
    pub direction: Direction,
    /// The line, printable (control bytes escaped), secrets masked.
    pub text: String,
}

/// A session transcript, capped at [`TRANSCRIPT_CAP`] bytes of text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// The lines kept.
    pub entries: Vec<Entry>,
    /// Bytes of text kept.
    size: usize,
    /// Lines dropped after the cap.
    pub dropped: usize,
}

impl Transcript {
    /// Adds a line, masking `secrets`; drops it (counting) once the cap is reached.
    pub fn push(&mut self, at: Duration, direction: Direction, text: &str, secrets: &[String]) {
        if self.size + text.len() > TRANSCRIPT_CAP {
            self.dropped += 1;
            return;
        }
        let text = mask(text, secrets);
        self.size += text.len();
        self.entries.push(Entry {
            at,
            direction,
            text,
        });
    }

    /// The transcript as `C:`/`S:` lines with times in seconds since the start.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let who = match e.direction {
                Direction::Client => "C:",
                Direction::Server => "S:",
                Direction::Note => "--",
            };
            out.push_str(&format!("{:>8.3} {who} {}\n", e.at.as_secs_f64(), e.text));
        }
        if self.dropped > 0 {
            out.push_str(&format!(
                "... {} more lines not shown (transcript capped at 64 KiB)\n",
                self.dropped
            ));
        }
        out
    }
}

/// Replaces every secret in `text` with `***`.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

impl RunResult {
    /// Counts of passed, failed, errored and skipped cases.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for case in self.suites.iter().flat_map(|s| &s.cases) {
            c.add(&case.outcome);
        }
        c
    }
}

/// Case counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Errored.
    pub errored: usize,
    /// Skipped.
    pub skipped: usize,
}

impl Counts {
    /// Counts one outcome.
    pub fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Errored { .. } => self.errored += 1,
            Outcome::Skipped { .. } => self.skipped += 1,
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} errored, {} skipped",
            self.passed, self.failed, self.errored, self.skipped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_masks_and_caps() {
        let mut t = Transcript::default();
        let secrets = vec!["hunter2".to_string()];
        t.push(
            Duration::from_millis(12),
            Direction::Client,
            "AUTH PLAIN hunter2",
            &secrets,
        );
        t.push(
            Duration::from_millis(1500),
            Direction::Server,
            "235 2.7.0 ok",
            &secrets,
        );
        assert_eq!(
            t.render(),
            "   0.012 C: AUTH PLAIN ***\n   1.500 S: 235 2.7.0 ok\n"
        );
        let line = "x".repeat(1000);
        for _ in 0..100 {
            t.push(Duration::ZERO, Direction::Server, &line, &secrets);
        }
        assert!(t.dropped > 0);
        assert!(t.render().len() < TRANSCRIPT_CAP + 2048);
        assert!(t.render().ends_with("(transcript capped at 64 KiB)\n"));
    }

    #[test]
    fn counts_read_as_the_summary_line() {
        let mut c = Counts::default();
        c.add(&Outcome::Passed);
        c.add(&Outcome::Failed {
            message: "x".into(),
        });
        c.add(&Outcome::Skipped {
            message: "y".into(),
        });
        assert_eq!(c.to_string(), "1 passed, 1 failed, 0 errored, 1 skipped");
    }
}
