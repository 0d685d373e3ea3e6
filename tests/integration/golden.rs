//! Golden tests for `smtp-plan validate`: every broken plan under
//! `tests/fixtures/invalid` gives exactly the errors in its `.stderr` file and exit
//! status 2; every plan under `tests/fixtures/valid` and `plans/` validates.

use crate::support::{assert_golden, root, run, smtp_plan};
use std::path::PathBuf;

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .expect("fixture folder exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no plans in {dir}");
    files
}

#[test]
fn broken_plans_give_their_golden_errors() {
    let dir = root().join("tests/fixtures/invalid");
    for plan in yaml_files("tests/fixtures/invalid") {
        let name = plan.file_name().unwrap().to_str().unwrap().to_string();
        let out = run(smtp_plan(&dir).args(["validate", &name]));
        assert_eq!(out.status.code(), Some(2), "{name}: exit status");
        assert!(out.stdout.is_empty(), "{name}: stdout should be empty");
        let stderr = String::from_utf8(out.stderr).expect("UTF-8 errors");
        assert!(
            stderr.contains(&format!("{name}:")),
            "{name}: errors name the file"
        );
        assert_golden(&plan.with_extension("stderr"), &stderr);
    }
}

#[test]
fn valid_plans_and_examples_validate() {
    for dir in ["tests/fixtures/valid", "plans"] {
        let files = yaml_files(dir);
        let mut cmd = smtp_plan(&root());
        cmd.arg("validate");
        for f in &files {
            cmd.arg(f.strip_prefix(root()).unwrap());
        }
        let out = run(&mut cmd);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
            files.len()
        );
    }
}

#[test]
fn every_example_plan_names_the_schema() {
    for plan in yaml_files("plans") {
        let text = std::fs::read_to_string(&plan).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/plan.schema.json\n"),
            "{} must start with the schema line",
            plan.display()
        );
    }
}

#[test]
fn one_run_reports_every_broken_plan_and_still_exits_2() {
    let dir = root().join("tests/fixtures");
    let out = run(smtp_plan(&dir).args([
        "validate",
        "valid/minimal.yaml",
        "invalid/version.yaml",
        "invalid/empty.yaml",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok: valid/minimal.yaml (1 tests, 1 targets, 1 steps)\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid/version.yaml:1:10: error: unsupported format version 2"));
    assert!(stderr.contains("invalid/empty.yaml:1:1: error: expected a map, found nothing"));
    assert!(
        stderr.ends_with("error: 2 of 3 plans invalid\n"),
        "{stderr}"
    );
}

#[test]
fn unreadable_plans_and_bad_arguments_exit_2() {
    let out = run(smtp_plan(&root()).args(["validate", "no/such/plan.yaml"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("no/such/plan.yaml: error: cannot read plan:"));
    let out =
        run(smtp_plan(&root()).args(["validate", "--var", "novalue", "plans/open-relay.yaml"]));
    assert_eq!(out.status.code(), Some(2));
    let out = run(smtp_plan(&root()).arg("validate"));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn var_overrides_and_adds_variables() {
    let dir = root().join("tests/fixtures/invalid");
    let out = run(smtp_plan(&dir).args(["validate", "--var", "sendr=x@y.test", "variables.yaml"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("unknown variable `sendr`"), "{stderr}");
    assert!(stderr.contains("SMTP_PLAN_TEST_UNSET"), "{stderr}");
}

#[test]
fn schema_file_matches_the_plan_types() {
    let out = run(smtp_plan(&root()).arg("schema"));
    assert_eq!(out.status.code(), Some(0));
    let printed = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(root().join("schemas/plan.schema.json")).unwrap();
    assert!(
        printed == committed,
        "schemas/plan.schema.json is stale: run `cargo run -- schema > schemas/plan.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        schema["additionalProperties"],
        serde_json::Value::Bool(false)
    );
    assert!(schema["$defs"]["RawStep"]["properties"]["rcpt_to"].is_object());
}
