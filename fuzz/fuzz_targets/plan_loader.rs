//! Fuzzes the plan loader: YAML text -> checked plan or diagnostics.
//!
//! The input is taken as UTF-8 (invalid sequences replaced, as a reader of the
//! file would otherwise refuse it before the loader) and loaded as `fuzz.yaml`
//! with no `--var` overrides and an empty environment. Loading must never panic,
//! a failure must come with at least one diagnostic, and every diagnostic must
//! render. A diagnostic that points into `fuzz.yaml` must point at a line of it
//! and show that line's text; that check is skipped for texts holding a line
//! break that YAML counts but `Source::line` does not (a lone CR, NEL, LS or PS),
//! a known mismatch (see README.md, "Findings").
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_plan::plan::{self, error::Source, Options};
use std::path::Path;

const NAME: &str = "fuzz.yaml";

/// Whether `text` has a line break other than LF and CRLF: YAML (libyaml) counts
/// a lone CR, NEL (U+0085), LS (U+2028) and PS (U+2029) as line breaks, so the
/// loader's line numbers disagree with `Source::line` there.
fn has_other_line_breaks(text: &str) -> bool {
    let bytes = text.as_bytes();
    let lone_cr = bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
    lone_cr || text.contains(['\u{85}', '\u{2028}', '\u{2029}'])
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let source = Source::new(NAME, text.as_ref());
    let opts = Options {
        vars: &[],
        env: &|_| None,
    };
    match plan::load_str(Path::new(NAME), &source, &opts) {
        Ok(plan) => {
            let _ = format!("{plan:?}");
        }
        Err(diagnostics) => {
            assert!(
                !diagnostics.is_empty(),
                "load_str failed without a diagnostic"
            );
            let check_positions = !has_other_line_breaks(&text);
            let lines = text.split('\n').count();
            for diagnostic in &diagnostics {
                let rendered = diagnostic.to_string();
                assert!(!rendered.is_empty());
                assert!(
                    !diagnostic.message.is_empty(),
                    "empty message: {diagnostic:?}"
                );
                let Some(pos) = &diagnostic.position else {
                    continue;
                };
                if !check_positions || diagnostic.file != NAME {
                    continue;
                }
                assert!(
                    pos.line >= 1 && pos.column >= 1,
                    "position not 1-based: {diagnostic:?}"
                );
                assert!(pos.width >= 1, "zero width: {diagnostic:?}");
                if pos.line == lines + 1 {
                    // The end of a text without a final line break: libyaml puts
                    // the end of the stream at column 1 of the line after it.
                    assert!(
                        pos.column == 1 && pos.text.is_empty(),
                        "position past the end of the text: {diagnostic:?}"
                    );
                    continue;
                }
                assert!(
                    pos.line <= lines,
                    "line {} past the end ({lines} lines): {diagnostic:?}",
                    pos.line
                );
                assert_eq!(
                    Some(pos.text.as_str()),
                    source.line(pos.line),
                    "diagnostic shows another text than its line: {diagnostic:?}"
                );
                let chars = pos.text.chars().count();
                assert!(
                    pos.column <= chars + 1,
                    "column {} past the end of its line ({chars} characters): {diagnostic:?}",
                    pos.column
                );
            }
        }
    }
});
