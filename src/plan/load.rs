//! Reading plan text into the raw plan types: YAML syntax errors, then the
//! structural check against the schema (every unknown key and wrong type at once),
//! then serde. This is the only file that names the YAML crate's parsing API; the
//! position lookup it relies on lives beside it in `locate.rs`.

use super::error::{Diagnostic, Source};
use super::locate::{locate, Path, Seg};
use super::raw::RawPlan;
use super::structure;
use std::sync::OnceLock;

/// At most this many diagnostics are shown for one file; the rest are counted.
pub const MAX_DIAGNOSTICS: usize = 50;

/// The JSON Schema of the plan format, generated from the raw types.
pub fn schema() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut schema =
            serde_json::to_value(schemars::schema_for!(RawPlan)).expect("the schema serialises");
        schema["$id"] = "https://smtp-plan.dev/schemas/plan.schema.json".into();
        schema
    })
}

/// The JSON Schema as the pretty-printed text committed in `schemas/plan.schema.json`.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(schema()).expect("the schema serialises");
    text.push('\n');
    text
}

/// Collects diagnostics for one file, locating each by its path in the YAML text.
pub struct Reporter<'s> {
    /// The file.
    pub source: &'s Source,
    /// Diagnostics so far.
    pub diags: Vec<Diagnostic>,
    /// Diagnostics beyond `MAX_DIAGNOSTICS`, counted but not located.
    pub more: usize,
    /// Paths of shape problems; meaning checks stay quiet at these nodes and at
    /// their ancestors, where they would only restate the same mistake.
    shaky: Vec<Path>,
}

impl<'s> Reporter<'s> {
    /// A reporter for `source`.
    pub fn new(source: &'s Source) -> Self {
        Reporter {
            source,
            diags: Vec::new(),
            more: 0,
            shaky: Vec::new(),
        }
    }

    fn room(&mut self) -> bool {
        if self.diags.len() >= MAX_DIAGNOSTICS {
            self.more += 1;
            false
        } else {
            true
        }
    }

    fn quiet(&self, path: &Path) -> bool {
        self.shaky.iter().any(|s| s.starts_with(path))
    }

    /// Reports `message` at the node at `path` (or at its key, with `at_key`).
    pub fn at(&mut self, path: &Path, at_key: bool, width: usize, message: impl Into<String>) {
        if self.quiet(path) || !self.room() {
            return;
        }
        let d = match locate(&self.source.text, path, at_key) {
            Some((line, col)) => self.source.error_at(line, col, width, message),
            None => Diagnostic::whole_file(&self.source.name, message),
        };
        self.diags.push(d);
    }

    /// Reports `message` at the first occurrence of `needle` at or after the node at
    /// `path` (a variable reference inside a string, say), else at the node.
    pub fn at_text(&mut self, path: &Path, needle: &str, message: impl Into<String>) {
        if self.quiet(path) || !self.room() {
            return;
        }
        let src = self.source;
        let d = match locate(&src.text, path, false) {
            Some((line, col)) => {
                let start = src.offset(line, col);
                match src.text[start..].find(needle) {
                    Some(i) => {
                        let (l, c) = src.line_col(start + i);
                        let width = needle.lines().next().map_or(1, |t| t.chars().count());
                        src.error_at(l, c, width, message)
                    }
                    None => src.error_at(line, col, 1, message),
                }
            }
            None => Diagnostic::whole_file(&src.name, message),
        };
        self.diags.push(d);
    }

    /// The diagnostics in file order, with a closing note when some were left out.
    pub fn finish(mut self) -> Vec<Diagnostic> {
        self.diags
            .sort_by_key(|d| d.position.as_ref().map(|p| (p.line, p.column)));
        if self.more > 0 {
            self.diags.push(Diagnostic::whole_file(
                &self.source.name,
                format!("{} more errors not shown", self.more),
            ));
        }
        self.diags
    }
}

/// Parses plan text into the raw plan. Syntax errors end the reading at once
/// (`Err`). Shape errors go to `r`; the parts with shape errors are then set
/// aside (unknown keys and mistyped optional values dropped) so that the rest of
/// the plan can still be checked for meaning in the same pass. `Ok(None)` means
/// the plan is too broken for that.
pub fn load(r: &mut Reporter) -> Result<Option<RawPlan>, Vec<Diagnostic>> {
    let source = r.source;
    let mut doc: serde_yaml::Value = match serde_yaml::from_str(&source.text) {
        Ok(doc) => doc,
        Err(e) => return Err(vec![yaml_error(source, &e)]),
    };
    if let Err(e) = doc.apply_merge() {
        return Err(vec![Diagnostic::whole_file(
            &source.name,
            format!("invalid YAML merge: {e}"),
        )]);
    }
    let issues = structure::check(schema(), &doc);
    let mut prunable = true;
    for i in &issues {
        r.at(&i.path, i.at_key, i.width, i.message.clone());
        prunable &= prune(&mut doc, &i.path);
    }
    r.shaky.extend(issues.into_iter().map(|i| i.path));
    if !prunable {
        return Ok(None);
    }
    match serde_yaml::from_value(doc) {
        Ok(raw) => Ok(Some(raw)),
        Err(_) if !r.shaky.is_empty() => Ok(None),
        Err(_) => {
            // The shape check should have caught this; let serde say it with a position.
            let e = serde_yaml::from_str::<RawPlan>(&source.text).err();
            Err(vec![match e {
                Some(e) => yaml_error(source, &e),
                None => Diagnostic::whole_file(&source.name, "the plan could not be read"),
            }])
        }
    }
}

/// Removes the mapping entry at `path`; false when the path does not end in a
/// mapping key (a list element cannot go without shifting its neighbours' paths).
fn prune(doc: &mut serde_yaml::Value, path: &Path) -> bool {
    let Some((Seg::Key(last), parents)) = path.split_last() else {
        return false;
    };
    let mut node = doc;
    for seg in parents {
        node = match (seg, node) {
            (Seg::Key(k), serde_yaml::Value::Mapping(m)) => {
                match m.iter_mut().find(|(key, _)| structure::key_text(key) == *k) {
                    Some((_, v)) => v,
                    None => return true,
                }
            }
            (Seg::Index(i), serde_yaml::Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return true,
            },
            _ => return true,
        };
    }
    if let serde_yaml::Value::Mapping(m) = node {
        m.retain(|k, _| structure::key_text(k) != *last);
    }
    true
}

/// A YAML or serde error as a diagnostic, its position moved out of the message.
fn yaml_error(source: &Source, e: &serde_yaml::Error) -> Diagnostic {
    let mut message = e.to_string();
    match e.location() {
        Some(loc) => {
            let here = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(i) = message.find(&here) {
                message.replace_range(i..i + here.len(), "");
            }
            let (line, column) = duplicate_key_position(source, &message, loc.line(), loc.column())
                .unwrap_or((loc.line(), loc.column()));
            source.error_at(line, column, 1, format!("invalid YAML: {message}"))
        }
        None => Diagnostic::whole_file(&source.name, format!("invalid YAML: {message}")),
    }
}

/// serde_yaml places a duplicate key error at the start of its mapping; find the
/// second `KEY:` at that mapping's indentation so the caret points at the duplicate.
fn duplicate_key_position(
    source: &Source,
    message: &str,
    line: usize,
    column: usize,
) -> Option<(usize, usize)> {
    let start = message.find("duplicate entry with key \"")? + "duplicate entry with key \"".len();
    let key = message[start..].split('"').next()?;
    let indent = " ".repeat(column - 1);
    let mut seen = 0;
    for (n, text) in source.text.lines().enumerate().skip(line - 1) {
        let rest = if n + 1 == line {
            text.get(source.offset(line, column) - source.offset(line, 1)..)?
        } else if text.trim().is_empty() {
            continue;
        } else {
            // A line indented less than the mapping ends it.
            let rest = text.strip_prefix(&indent)?;
            if rest.starts_with([' ', '#']) || rest.is_empty() {
                continue;
            }
            rest
        };
        if rest
            .strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with(':'))
        {
            seen += 1;
            if seen == 2 {
                return Some((n + 1, column));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let src = Source::new("p.yaml", text);
        let mut r = Reporter::new(&src);
        match load(&mut r) {
            Err(diags) => diags,
            Ok(_) => r.finish(),
        }
        .iter()
        .map(ToString::to_string)
        .collect()
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = errors("version: 1\nname: [a\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("p.yaml:2:9: error: invalid YAML:"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = errors("version: 1\nname: a\nname: b\ntests: []\n");
        assert!(e[0].contains("duplicate"), "{}", e[0]);
        assert!(e[0].starts_with("p.yaml:3:1:"), "{}", e[0]);
        let e = errors("tests:\n  - name: a\n    steps: []\n    name: b\n");
        assert!(e[0].starts_with("p.yaml:4:5:"), "{}", e[0]);
    }

    #[test]
    fn structure_errors_come_all_at_once() {
        let e = errors("version: 1\nname: a\nnmae: b\ntests:\n  - name: t\n    setps: []\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("p.yaml:3:1: error: unknown key `nmae`; did you mean `name`?"));
        assert!(e[1].starts_with("p.yaml:5:5: error: missing key `steps`"));
        assert!(e[2].starts_with("p.yaml:6:5: error: unknown key `setps`; did you mean `steps`?"));
    }

    #[test]
    fn merge_keys_are_applied() {
        let text = "version: 1\nname: a\ntests:\n  - name: t\n    steps: [{ehlo: x}]\n    <<: {port: 2525}\n";
        let src = Source::new("p", text);
        let raw = load(&mut Reporter::new(&src)).unwrap().unwrap();
        assert_eq!(raw.tests[0].settings.port, Some(2525));
    }

    #[test]
    fn long_error_lists_are_capped() {
        let mut text = String::from("version: 1\nname: a\ntests:\n");
        for i in 0..80 {
            text.push_str(&format!("  - name: t{i}\n    stpes: []\n    steps: []\n"));
        }
        let e = errors(&text);
        assert_eq!(e.len(), MAX_DIAGNOSTICS + 1);
        assert_eq!(e.last().unwrap(), "p.yaml: error: 30 more errors not shown");
    }
}
