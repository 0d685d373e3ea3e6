//! JUnit XML (spec section 10), written with the `junit-report` crate: one
//! `<testsuite>` per plan test, one `<testcase>` per (test, target). Everything that
//! comes from a server or a plan is made safe for XML first: characters XML 1.0
//! forbids are shown as `\xNN`, and `]]>` is split so a transcript cannot end its
//! CDATA section early. The result is well-formed whatever a server sent.

use crate::result::{CaseResult, Outcome, RunResult};
use junit_report::{Duration as JDuration, OffsetDateTime, ReportBuilder, TestCase, TestSuite};
use std::time::{Duration, SystemTime};

/// Which transcripts go into `<system-out>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Transcripts {
    /// Every case.
    All,
    /// Failed and errored cases (the default).
    #[default]
    Failures,
    /// None.
    None,
}

/// Text safe for XML 1.0 character data and attributes (section 2.2 `Char`):
/// other control characters and U+FFFE/U+FFFF are escaped as `\xNN`/`\u{..}`.
pub fn xml_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            '\u{fffe}' | '\u{ffff}' => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Text for a CDATA section: XML-safe, and `]]>` split across two sections.
fn cdata_safe(s: &str) -> String {
    xml_safe(s).replace("]]>", "]]]]><![CDATA[>")
}

fn jtime(d: Duration) -> JDuration {
    JDuration::try_from(d).unwrap_or(JDuration::MAX)
}

fn case(c: &CaseResult, transcripts: Transcripts) -> TestCase {
    let name = xml_safe(&c.name);
    let time = jtime(c.duration);
    let mut t = match &c.outcome {
        Outcome::Passed => TestCase::success(&name, time),
        Outcome::Failed { message } => {
            let mut t = TestCase::failure(&name, time, "reply", &xml_safe(message));
            // GitLab shows the element's body, not its message attribute.
            t.result = failure_with_body(t.result, message);
            t
        }
        Outcome::Errored { kind, message } => {
            let mut t = TestCase::error(&name, time, &kind.to_string(), &xml_safe(message));
            t.result = failure_with_body(t.result, message);
            t
        }
        Outcome::Skipped { message } => {
            TestCase::skipped_with_cause(&name, "skipped", &xml_safe(message))
        }
    };
    t.set_classname(&xml_safe(&c.classname));
    let show = match transcripts {
        Transcripts::All => true,
        Transcripts::Failures => {
            matches!(c.outcome, Outcome::Failed { .. } | Outcome::Errored { .. })
        }
        Transcripts::None => false,
    };
    let mut out = String::new();
    for f in &c.facts {
        out.push_str(f);
        out.push('\n');
    }
    if show && !c.transcript.entries.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&c.transcript.render());
    }
    if !out.is_empty() {
        t.set_system_out(&cdata_safe(&out));
    }
    t
}

fn failure_with_body(result: junit_report::TestResult, message: &str) -> junit_report::TestResult {
    use junit_report::TestResult::*;
    let cause = Some(cdata_safe(message));
    match result {
        Failure { type_, message, .. } => Failure {
            type_,
            message,
            cause,
        },
        Error { type_, message, .. } => Error {
            type_,
            message,
            cause,
        },
        other => other,
    }
}

/// Writes the report. `started` stamps the suites; `hostname` names this machine.
pub fn write(
    run: &RunResult,
    transcripts: Transcripts,
    started: SystemTime,
    hostname: &str,
) -> Vec<u8> {
    let stamp = OffsetDateTime::from(started);
    let mut builder = ReportBuilder::new();
    for s in &run.suites {
        let mut suite = TestSuite::new(&xml_safe(&s.name));
        suite.timestamp = stamp;
        suite.hostname = xml_safe(hostname);
        suite.package = xml_safe(&s.name);
        suite.add_testcases(s.cases.iter().map(|c| case(c, transcripts)));
        builder.add_testsuite(suite);
    }
    let mut out = Vec::new();
    builder
        .build()
        .write_xml(&mut out)
        .expect("writing XML to memory cannot fail");
    name_testsuites(out, run)
}

/// junit-report writes a bare `<testsuites>`; spec section 10 wants its name and
/// totals (the attributes junit-10.xsd allows there). Also rounds every `time`.
fn name_testsuites(xml: Vec<u8>, run: &RunResult) -> Vec<u8> {
    let c = run.counts();
    let attrs = format!(
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\"",
        attr_escape(&xml_safe(&run.name)),
        c.passed + c.failed + c.errored + c.skipped,
        c.failed,
        c.errored,
        run.duration.as_secs_f64()
    );
    let text = String::from_utf8(xml).expect("junit-report writes UTF-8");
    let text = text.replacen("<testsuites", &attrs, 1);
    // junit-10.xsd allows at most three decimals in `time`; junit-report prints
    // whatever f64 formatting gives.
    let time = regex::Regex::new(r#" time="([0-9.eE+-]+)""#).expect("valid regex");
    time.replace_all(&text, |c: &regex::Captures| {
        let secs: f64 = c[1].parse().unwrap_or(0.0);
        format!(" time=\"{secs:.3}\"")
    })
    .into_owned()
    .into_bytes()
}

fn attr_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_safe_escapes_what_xml_forbids() {
        assert_eq!(xml_safe("a\u{1b}[31mb\0c\td"), "a\\x1b[31mb\\x00c\td");
        assert_eq!(xml_safe("\u{fffe}"), "\\u{fffe}");
        assert_eq!(cdata_safe("x]]>y"), "x]]]]><![CDATA[>y");
    }
}
