//! Wires the commands together. The only place that prints fatal errors and
//! decides the exit status (spec section 8).

use crate::cli::{Cli, Command};
use crate::plan::{self, Options};
use std::io::Write;
use std::path::PathBuf;

/// Every test passed (or, for `validate`, every plan is valid).
pub const EXIT_OK: i32 = 0;
/// A plan or the command line is invalid; nothing was sent.
pub const EXIT_INVALID: i32 = 2;

/// Runs a parsed command line and returns the exit status.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { plans, vars } => validate(&plans, &vars),
        Command::Schema => {
            print!("{}", plan::load::schema_text());
            EXIT_OK
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn validate(paths: &[PathBuf], vars: &[(String, String)]) -> i32 {
    let opts = Options { vars, env: &env };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    let mut bad = 0;
    for path in paths {
        match plan::load_file(path, &opts) {
            Ok(p) => {
                let steps: usize = p.tests.iter().map(|t| t.steps.len()).sum();
                let _ = writeln!(
                    out,
                    "ok: {} ({} tests, {} targets, {} steps)",
                    path.display(),
                    p.tests.len(),
                    p.targets.len(),
                    steps
                );
            }
            Err(diags) => {
                bad += 1;
                for d in &diags {
                    let _ = writeln!(err, "{d}\n");
                }
                let n = diags.len();
                let _ = writeln!(
                    err,
                    "error: {} is invalid ({n} error{})\n",
                    path.display(),
                    if n == 1 { "" } else { "s" }
                );
            }
        }
    }
    if bad == 0 {
        EXIT_OK
    } else {
        let _ = writeln!(err, "error: {bad} of {} plans invalid", paths.len());
        EXIT_INVALID
    }
}
