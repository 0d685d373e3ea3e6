//! The structural check: walks a parsed YAML document against the plan's JSON
//! Schema (generated from `raw.rs`) and reports every unknown key, missing key,
//! wrong type and out-of-range number, with a path for each, in one pass.
//!
//! serde stops at the first error of a document; this walk does not, which is what
//! lets `smtp-plan validate` list all the mistakes of a file at once. It only
//! understands the schema keywords that schemars emits for the plan types.

use super::locate::{Path, Seg};
use crate::plan::error::did_you_mean;
use serde_json::Value as Schema;
use serde_yaml::Value;

/// One structural problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// Where it is.
    pub path: Path,
    /// Point at the key of the last path segment rather than at its value.
    pub at_key: bool,
    /// Characters to underline.
    pub width: usize,
    /// What is wrong.
    pub message: String,
    /// This issue is the node itself having the wrong kind (used to pick among alternatives).
    kind_mismatch: bool,
}

/// Checks `doc` against `schema` (a root schema with `$defs`).
pub fn check(schema: &Schema, doc: &Value) -> Vec<Issue> {
    let walker = Walker { root: schema };
    let mut out = Vec::new();
    walker.node(schema, doc, &mut Vec::new(), &mut out);
    out
}

struct Walker<'s> {
    root: &'s Schema,
}

/// The kind of a YAML node, as a phrase for messages and as a JSON Schema type.
fn kind(v: &Value) -> (&'static str, &'static str) {
    match v {
        Value::Null => ("nothing", "null"),
        Value::Bool(_) => ("true/false", "boolean"),
        Value::Number(n) if n.is_i64() || n.is_u64() => ("a whole number", "integer"),
        Value::Number(_) => ("a number", "number"),
        Value::String(_) => ("text", "string"),
        Value::Sequence(_) => ("a list", "array"),
        Value::Mapping(_) => ("a map", "object"),
        Value::Tagged(_) => ("a tagged value", "tagged"),
    }
}

fn type_phrase(t: &str) -> &'static str {
    match t {
        "null" => "nothing",
        "boolean" => "true or false",
        "integer" => "a whole number",
        "number" => "a number",
        "string" => "text",
        "array" => "a list",
        "object" => "a map",
        _ => "something else",
    }
}

/// The phrases for accepted types, leaving out what goes without saying: "nothing"
/// (an empty value) beside real alternatives, "a whole number" beside "a number".
fn phrases(types: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in types {
        let redundant =
            (*t == "null" && types.len() > 1) || (*t == "integer" && types.contains(&"number"));
        let p = type_phrase(t).to_string();
        if !redundant && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Joins phrases as "a, b or c".
fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A mapping key as the text a user typed.
pub fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        _ => "?".into(),
    }
}

fn scalar_width(v: &Value) -> usize {
    match v {
        Value::String(s) if !s.contains('\n') => s.chars().count(),
        Value::Number(n) => n.to_string().len(),
        Value::Bool(b) => b.to_string().len(),
        _ => 1,
    }
}

impl<'s> Walker<'s> {
    fn resolve(&self, mut s: &'s Schema) -> &'s Schema {
        while let Some(r) = s.get("$ref").and_then(Schema::as_str) {
            match r
                .strip_prefix("#/$defs/")
                .and_then(|name| self.root.get("$defs")?.get(name))
            {
                Some(target) => s = target,
                None => break,
            }
        }
        s
    }

    /// The JSON Schema types a schema accepts, through references and alternatives.
    fn types(&self, s: &'s Schema) -> Vec<&'s str> {
        let s = self.resolve(s);
        let mut out = Vec::new();
        match s.get("type") {
            Some(Schema::String(t)) => out.push(t.as_str()),
            Some(Schema::Array(ts)) => out.extend(ts.iter().filter_map(Schema::as_str)),
            _ => {}
        }
        for alt in ["anyOf", "oneOf"] {
            for b in s.get(alt).and_then(Schema::as_array).into_iter().flatten() {
                for t in self.types(b) {
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
            }
        }
        out
    }

    /// The constant strings of an enum-like schema, if every alternative is one.
    fn consts(&self, s: &'s Schema) -> Option<Vec<&'s str>> {
        let s = self.resolve(s);
        if let Some(c) = s.get("const") {
            return c.as_str().map(|c| vec![c]);
        }
        if let Some(e) = s.get("enum").and_then(Schema::as_array) {
            return e.iter().map(Schema::as_str).collect();
        }
        let alts = s.get("oneOf").or_else(|| s.get("anyOf"))?.as_array()?;
        let mut out = Vec::new();
        for b in alts {
            out.extend(self.consts(b)?);
        }
        Some(out)
    }

    fn node(&self, s: &'s Schema, v: &Value, path: &mut Path, out: &mut Vec<Issue>) {
        let s = self.resolve(s);
        if s == &Schema::Bool(true) {
            return;
        }
        if let Value::Tagged(t) = v {
            out.push(Issue {
                path: path.clone(),
                at_key: false,
                width: 1,
                message: format!(
                    "YAML tags such as `{}` are not used in plans; write steps as maps (`- ehlo: example.com`)",
                    t.tag
                ),
                kind_mismatch: true,
            });
            return;
        }
        if let Some(alts) = s
            .get("anyOf")
            .or_else(|| s.get("oneOf"))
            .and_then(Schema::as_array)
        {
            self.alternatives(s, alts, v, path, out);
            return;
        }
        if let Some(t) = s.get("type") {
            let (phrase, k) = kind(v);
            let accepted: Vec<&str> = match t {
                Schema::String(t) => vec![t.as_str()],
                Schema::Array(ts) => ts.iter().filter_map(Schema::as_str).collect(),
                _ => vec![],
            };
            let ok = accepted.contains(&k) || (k == "integer" && accepted.contains(&"number"));
            if !ok {
                let wanted = phrases(&accepted);
                out.push(self.mismatch(
                    path,
                    v,
                    format!("expected {}, found {phrase}", or_list(&wanted)),
                ));
                return;
            }
        }
        if let Some(c) = s.get("const").and_then(Schema::as_str) {
            self.one_of_words(&[c], v, path, out);
            return;
        }
        match v {
            Value::Mapping(m) => self.mapping(s, m, path, out),
            Value::Sequence(items) => {
                if let Some(item) = s.get("items") {
                    for (i, e) in items.iter().enumerate() {
                        path.push(Seg::Index(i));
                        self.node(item, e, path, out);
                        path.pop();
                    }
                }
            }
            Value::Number(n) => {
                let range = (
                    s.get("minimum").and_then(Schema::as_f64),
                    s.get("maximum").and_then(Schema::as_f64),
                );
                if let (Some(x), (min, max)) = (n.as_f64(), range) {
                    if min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m) {
                        let bound = match (min, max) {
                            (Some(a), Some(b)) => format!("from {a} to {b}"),
                            (Some(a), None) => format!("at least {a}"),
                            (None, Some(b)) => format!("at most {b}"),
                            (None, None) => unreachable!("checked above"),
                        };
                        out.push(self.mismatch(
                            path,
                            v,
                            format!("{n} is out of range: must be {bound}"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    fn mismatch(&self, path: &Path, v: &Value, message: String) -> Issue {
        Issue {
            path: path.clone(),
            at_key: false,
            width: scalar_width(v),
            message,
            kind_mismatch: true,
        }
    }

    fn one_of_words(&self, words: &[&str], v: &Value, path: &Path, out: &mut Vec<Issue>) {
        let text = match v {
            Value::String(s) => s.clone(),
            other => key_text(other),
        };
        if words.contains(&text.as_str()) {
            return;
        }
        let listed: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
        let mut message = format!("`{text}` is not one of {}", or_list(&listed));
        if let Some(s) = did_you_mean(&text, words.iter().copied()) {
            message.push_str(&format!("; did you mean `{s}`?"));
        }
        out.push(Issue {
            path: path.clone(),
            at_key: false,
            width: scalar_width(v),
            message,
            kind_mismatch: false,
        });
    }

    fn alternatives(
        &self,
        s: &'s Schema,
        alts: &'s [Schema],
        v: &Value,
        path: &mut Path,
        out: &mut Vec<Issue>,
    ) {
        if let (Some(words), Value::String(_)) = (self.consts(s), v) {
            self.one_of_words(&words, v, path, out);
            return;
        }
        let mut best: Option<Vec<Issue>> = None;
        for b in alts {
            let mut found = Vec::new();
            self.node(b, v, path, &mut found);
            if found.is_empty() {
                return;
            }
            let fits = !found.iter().any(|i| i.kind_mismatch && i.path == *path);
            if fits && best.as_ref().is_none_or(|prev| found.len() < prev.len()) {
                best = Some(found);
            }
        }
        match best {
            Some(issues) => out.extend(issues),
            None => {
                let types = self.types(s);
                let wanted = phrases(&types);
                let message = format!("expected {}, found {}", or_list(&wanted), kind(v).0);
                out.push(self.mismatch(path, v, message));
            }
        }
    }

    fn mapping(
        &self,
        s: &'s Schema,
        m: &serde_yaml::Mapping,
        path: &mut Path,
        out: &mut Vec<Issue>,
    ) {
        let props = s.get("properties").and_then(Schema::as_object);
        let extra = s.get("additionalProperties");
        for (k, val) in m {
            let key = key_text(k);
            path.push(Seg::Key(key.clone()));
            match (props.and_then(|p| p.get(&key)), extra) {
                (Some(ps), _) => self.node(ps, val, path, out),
                (None, Some(Schema::Bool(false))) => {
                    let names = props
                        .map(|p| p.keys().map(String::as_str).collect::<Vec<_>>())
                        .unwrap_or_default();
                    let message = match did_you_mean(&key, names.iter().copied()) {
                        Some(s) => format!("unknown key `{key}`; did you mean `{s}`?"),
                        None if names.len() <= 12 => {
                            let listed: Vec<String> =
                                names.iter().map(|n| format!("`{n}`")).collect();
                            format!("unknown key `{key}`; expected {}", or_list(&listed))
                        }
                        None => format!("unknown key `{key}`"),
                    };
                    out.push(Issue {
                        path: path.clone(),
                        at_key: true,
                        width: key.chars().count(),
                        message,
                        kind_mismatch: false,
                    });
                }
                (None, Some(item)) => {
                    if !k.is_string() {
                        out.push(Issue {
                            path: path.clone(),
                            at_key: true,
                            width: key.chars().count(),
                            message: format!("expected a text key, found {}", kind(k).0),
                            kind_mismatch: false,
                        });
                    }
                    self.node(item, val, path, out);
                }
                (None, None) => {}
            }
            path.pop();
        }
        for req in s
            .get("required")
            .and_then(Schema::as_array)
            .into_iter()
            .flatten()
        {
            let Some(req) = req.as_str() else { continue };
            if !m.contains_key(req) {
                out.push(Issue {
                    path: path.clone(),
                    at_key: false,
                    width: 1,
                    message: format!("missing key `{req}`"),
                    kind_mismatch: false,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::raw::RawPlan;

    fn issues(yaml: &str) -> Vec<String> {
        let schema = serde_json::to_value(schemars::schema_for!(RawPlan)).unwrap();
        let doc: Value = serde_yaml::from_str(yaml).unwrap();
        check(&schema, &doc)
            .into_iter()
            .map(|i| i.message)
            .collect()
    }

    const HEAD: &str = "version: 1\nname: n\ntargets: [{host: h}]\n";

    #[test]
    fn a_good_plan_has_no_issues() {
        let plan = format!("{HEAD}tests:\n  - name: t\n    steps:\n      - ehlo: x\n      - quit:\n        expect: [221, {{not: 5xx}}]\n");
        assert_eq!(issues(&plan), Vec::<String>::new());
    }

    #[test]
    fn reports_every_unknown_key_with_a_suggestion() {
        let plan = format!("{HEAD}tests:\n  - name: t\n    stpes: []\n    steps:\n      - rcpt_too: x\n      - mail_form: y\n");
        assert_eq!(
            issues(&plan),
            [
                "unknown key `stpes`; did you mean `steps`?",
                "unknown key `rcpt_too`; did you mean `rcpt_to`?",
                "unknown key `mail_form`; did you mean `mail_from`?",
            ]
        );
    }

    #[test]
    fn reports_wrong_types_and_ranges() {
        let plan = format!(
            "{HEAD}settings: {{port: 70000, tls_verify: yes, tls: implict}}\ntests: {{}}\n"
        );
        assert_eq!(
            issues(&plan),
            [
                "70000 is out of range: must be from 0 to 65535",
                "expected true or false, found text",
                "`implict` is not one of `none` or `implicit`; did you mean `implicit`?",
                "expected a list, found a map",
            ]
        );
    }

    #[test]
    fn picks_the_alternative_that_fits() {
        let plan = format!("{HEAD}tests:\n  - name: t\n    steps:\n      - noop: {{}}\n        expect: {{cod: 250}}\n");
        assert_eq!(issues(&plan), ["unknown key `cod`; did you mean `code`?"]);
        let plan =
            format!("{HEAD}tests:\n  - name: t\n    steps:\n      - noop:\n        expect: true\n");
        assert_eq!(
            issues(&plan),
            ["expected a list, a number, text or a map, found true/false"]
        );
    }

    #[test]
    fn missing_keys_and_tags() {
        assert_eq!(issues("version: 1\nname: n\n"), ["missing key `tests`"]);
        let plan = format!("{HEAD}tests:\n  - name: t\n    steps:\n      - !ehlo x\n");
        assert_eq!(issues(&plan).len(), 1);
        assert!(issues(&plan)[0].contains("YAML tags"));
    }
}
