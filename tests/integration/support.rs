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
