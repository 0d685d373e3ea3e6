//! Running the built binary with a fixed environment, and golden-file comparison.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `smtp-plan` command run in `dir`, with the environment the fixtures expect.
pub fn smtp_plan(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smtp-plan"));
    cmd.current_dir(dir)
        .env_remove("SMTP_PLAN_TEST_UNSET")
        .env("SMTP_PLAN_TEST_SET", "s3cret")
        .env("SMTP_PLAN_TEST_LINES", "a\nb")
        .env("SUBMISSION_PASSWORD", "s3cret")
        .env("NO_COLOR", "1");
    cmd
}

/// Runs the command and returns its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("smtp-plan runs")
}

/// Compares `actual` with the golden file at `path`; with `SMTP_PLAN_BLESS=1` set,
/// writes it instead.
pub fn assert_golden(path: &Path, actual: &str) {
    if std::env::var_os("SMTP_PLAN_BLESS").is_some() {
        std::fs::write(path, actual).expect("golden file written");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with SMTP_PLAN_BLESS=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the output.\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// A fresh empty folder under the system's temporary folder.
pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "smtp-plan-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Replaces what changes from run to run (times, dates, ports, run ids) with
/// fixed text, for golden comparison.
pub fn normalise(text: &str) -> String {
    let rules: &[(&str, &str)] = &[
        (r"\(\d+\.\d{3}s\)", "(0.000s)"),
        (r#"time="[0-9.e-]+""#, r#"time="0""#),
        (r#"timestamp="[^"]+""#, r#"timestamp="T""#),
        (r#"hostname="[^"]+""#, r#"hostname="HOST""#),
        (r"(?m)^ *\d+\.\d{3} (C:|S:|--)", "   0.000 $1"),
        (
            r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}",
            "DATE",
        ),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:PORT"),
        (r"\b[0-9a-f]{13,}\b", "RUNID"),
        (r"took \d+(ms|s)", "took T"),
    ];
    let mut out = text.to_string();
    for (pat, with) in rules {
        out = regex::Regex::new(pat)
            .unwrap()
            .replace_all(&out, *with)
            .into_owned();
    }
    out
}

/// Whether interop and schema checks must run instead of skipping.
pub fn required() -> bool {
    std::env::var("SMTP_PLAN_INTEROP").is_ok_and(|v| v == "require")
}

/// Checks `xml` is well-formed by reading every event.
pub fn assert_well_formed(xml: &[u8]) {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!(
                "not well-formed XML at {}: {e}\n{}",
                reader.buffer_position(),
                String::from_utf8_lossy(xml)
            ),
        }
        buf.clear();
    }
}

/// Validates a JUnit file against Jenkins' junit-10.xsd with xmllint, when both
/// are present (`SMTP_PLAN_JUNIT_XSD`, default `target/junit-10.xsd`); skips with a
/// printed reason otherwise, unless `SMTP_PLAN_INTEROP=require`.
pub fn assert_junit_valid(path: &Path) {
    let xsd = std::env::var("SMTP_PLAN_JUNIT_XSD")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/junit-10.xsd"));
    let have_xmllint = Command::new("xmllint").arg("--version").output().is_ok();
    if !xsd.is_file() || !have_xmllint {
        let why = format!(
            "skipping junit-10.xsd validation: {} (.ci/run fetches both)",
            if have_xmllint {
                format!("{} is missing", xsd.display())
            } else {
                "xmllint is not installed".into()
            }
        );
        assert!(!required(), "{why}, but SMTP_PLAN_INTEROP=require");
        eprintln!("{why}");
        return;
    }
    let out = Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(&xsd)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} does not validate against junit-10.xsd:\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A plan run by the binary in a folder of its own, with its JUnit report.
pub struct PlanRun {
    /// Exit status.
    pub code: Option<i32>,
    /// Console output.
    pub stdout: String,
    /// The JUnit report (empty when none was written); checked to be well-formed.
    pub xml: String,
}

/// Writes `plan` to a fresh folder (with `files`, name and text, beside it) and
/// runs `smtp-plan run p.yaml --transcripts all --junit r.xml EXTRA...` there.
pub fn run_plan(tag: &str, plan: &str, files: &[(&str, &str)], extra: &[&str]) -> PlanRun {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("p.yaml"), plan).expect("plan written");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("file written");
    }
    let out = run(smtp_plan(&dir)
        .args(["run", "p.yaml", "--transcripts", "all", "--junit", "r.xml"])
        .args(extra));
    let xml = std::fs::read(dir.join("r.xml")).unwrap_or_default();
    if !xml.is_empty() {
        assert_well_formed(&xml);
    }
    PlanRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        xml: String::from_utf8_lossy(&xml).into_owned(),
    }
}
