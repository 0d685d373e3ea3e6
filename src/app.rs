//! Wires the commands together. The only place that prints fatal errors and
//! decides the exit status (spec section 8).

use crate::cli::{Cli, Command};
use crate::exec::{self, RunConfig};
use crate::plan::{self, model::Plan, Options};
use crate::report::{console, junit};
use crate::responder::Persona;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Every test passed (or, for `validate`, every plan is valid).
pub const EXIT_OK: i32 = 0;
/// A test failed or errored.
pub const EXIT_FAILED: i32 = 1;
/// A plan or the command line is invalid; nothing was sent.
pub const EXIT_INVALID: i32 = 2;
/// Interrupted (Ctrl-C or SIGTERM), after writing the report of what finished.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Runs a parsed command line and returns the exit status.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { plans, vars } => validate(&plans, &vars),
        Command::Run {
            plans,
            junit,
            vars,
            concurrency,
            filter,
            transcripts,
            resolver,
            connect_to,
        } => {
            let config = RunConfig {
                concurrency: concurrency.map(|c| c as usize),
                filter,
                resolver,
                connect_to,
            };
            run_plans(&plans, &vars, junit.as_deref(), &config, transcripts)
        }
        Command::Serve { persona, listen } => serve(&persona, listen),
        Command::Mx {
            domains,
            resolver,
            json,
        } => mx(&domains, resolver, json),
        Command::Schema => {
            out(&plan::load::schema_text());
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// Loads every plan, printing every diagnostic; `None` when any is invalid.
fn load_all(paths: &[PathBuf], vars: &[(String, String)]) -> Option<Vec<Plan>> {
    let opts = Options { vars, env: &env };
    let mut plans = Vec::new();
    let mut bad = 0;
    for path in paths {
        match plan::load_file(path, &opts) {
            Ok(p) => plans.push(p),
            Err(diags) => {
                bad += 1;
                for d in diags {
                    eprintln!("{d}\n");
                }
            }
        }
    }
    (bad == 0).then_some(plans)
}

/// A report file written whole or not at all: the text goes to a temporary file
/// beside the target, which is renamed over it at the end. Opening the temporary
/// file first proves the path is writable before anything is sent.
struct ReportFile {
    path: PathBuf,
    temp: PathBuf,
    file: std::fs::File,
    committed: bool,
}

impl Drop for ReportFile {
    /// A report that was not committed (an early exit) leaves no temporary file.
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

impl ReportFile {
    fn create(path: &Path) -> std::io::Result<ReportFile> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let file = std::fs::File::create(&temp)?;
        Ok(ReportFile {
            path: path.to_path_buf(),
            temp,
            file,
            committed: false,
        })
    }

    fn commit(mut self, bytes: &[u8]) -> std::io::Result<()> {
        let written = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_all());
        if let Err(e) = written.and_then(|()| std::fs::rename(&self.temp, &self.path)) {
            let _ = std::fs::remove_file(&self.temp);
            return Err(e);
        }
        Ok(())
    }
}

fn run_plans(
    paths: &[PathBuf],
    vars: &[(String, String)],
    junit_path: Option<&Path>,
    config: &RunConfig,
    transcripts: junit::Transcripts,
) -> i32 {
    let Some(plans) = load_all(paths, vars) else {
        return EXIT_INVALID;
    };
    let report = match junit_path.map(ReportFile::create).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "error: cannot write the JUnit report {}: {e}",
                junit_path.map_or(String::new(), |p| p.display().to_string())
            );
            return EXIT_INVALID;
        }
    };
    let started = SystemTime::now();
    let colour = console::use_colour();
    let rt = runtime();
    let (cancel, cancelled) = tokio::sync::watch::channel(false);
    rt.spawn(async move {
        interrupted().await;
        let _ = cancel.send(true);
    });
    let result = rt.block_on(exec::run(plans, config, cancelled, &mut |case| {
        out(&format!("{}\n", console::case_line(case, colour)));
    }));
    let counts = result.counts();
    if counts.passed + counts.failed + counts.errored + counts.skipped == 0 {
        eprintln!("error: no test case to run (does --filter match any `TEST @ TARGET`?)");
        return EXIT_INVALID;
    }
    out(&format!("{}\n", console::summary(&counts, result.duration)));
    if let Some(report) = report {
        let path = report.path.clone();
        let xml = junit::write(&result, transcripts, started, &exec::hostname());
        if let Err(e) = report.commit(&xml) {
            eprintln!(
                "error: cannot write the JUnit report {}: {e}",
                path.display()
            );
            return EXIT_FAILED;
        }
    }
    if result.interrupted {
        eprintln!("interrupted: unfinished cases are reported as skipped");
        EXIT_INTERRUPTED
    } else if counts.failed + counts.errored == 0 {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

fn serve(persona: &str, listen: std::net::SocketAddr) -> i32 {
    let persona = match Persona::load(persona) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    match runtime().block_on(crate::responder::serve(persona, listen)) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: responder on {listen}: {e}");
            EXIT_FAILED
        }
    }
}

fn mx(domains: &[String], resolver: Option<std::net::SocketAddr>, json: bool) -> i32 {
    let report = runtime().block_on(crate::mx::lookup(domains, resolver));
    match report {
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_INVALID
        }
        Ok(r) => {
            if json {
                out(&format!("{}\n", r.to_json()));
            } else {
                out(&r.to_text());
            }
            if r.all_routable() {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Writes to stdout, ignoring a reader that went away (`smtp-plan mx ... | head`):
/// the exit status still tells the result.
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
