//! Variables (spec section 7): parsing `${...}` references in plan strings and
//! expanding them into templates. Plan variables and `${env:...}` are filled in at
//! validation; the ones that only exist while running (`${target.host}`,
//! `${run.id}`, `${capture.NAME}`, ...) stay in the template as named holes.

use indexmap::IndexMap;
use std::fmt;

/// A value that may still hold run-time variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    /// The pieces, in order.
    pub pieces: Vec<Piece>,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text from the plan or a plan variable.
    Lit(String),
    /// The value of an environment variable, kept apart so it can be masked.
    Env {
        /// The variable's name.
        name: String,
        /// Its value (or the default).
        value: String,
    },
    /// A variable known only at run time.
    Run(RunVar),
}

/// Variables filled in while running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunVar {
    /// `${target.host}`
    TargetHost,
    /// `${target.domain}`
    TargetDomain,
    /// `${target.port}`
    TargetPort,
    /// `${target.address}`
    TargetAddress,
    /// `${test.name}`
    TestName,
    /// `${run.id}`
    RunId,
    /// `${settings.helo}`
    SettingsHelo,
    /// `${capture.NAME}`
    Capture(String),
}

impl RunVar {
    fn from_name(name: &str) -> Option<RunVar> {
        Some(match name {
            "target.host" => RunVar::TargetHost,
            "target.domain" => RunVar::TargetDomain,
            "target.port" => RunVar::TargetPort,
            "target.address" => RunVar::TargetAddress,
            "test.name" => RunVar::TestName,
            "run.id" => RunVar::RunId,
            "settings.helo" => RunVar::SettingsHelo,
            _ => RunVar::Capture(name.strip_prefix("capture.")?.to_string()),
        })
    }
}

/// The built-in run-time variable names, for "did you mean".
pub const RUN_VARS: &[&str] = &[
    "target.host",
    "target.domain",
    "target.port",
    "target.address",
    "test.name",
    "run.id",
    "settings.helo",
];

impl Template {
    /// A template of plain text.
    pub fn lit(s: impl Into<String>) -> Template {
        Template {
            pieces: vec![Piece::Lit(s.into())],
        }
    }

    /// The text when the template holds no run-time variable.
    pub fn static_text(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(s) | Piece::Env { value: s, .. } => out.push_str(s),
                Piece::Run(_) => return None,
            }
        }
        Some(out)
    }

    /// The run-time variables the template uses.
    pub fn run_vars(&self) -> impl Iterator<Item = &RunVar> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Run(v) => Some(v),
            _ => None,
        })
    }

    fn push_lit(&mut self, s: &str) {
        if let Some(Piece::Lit(last)) = self.pieces.last_mut() {
            last.push_str(s);
        } else if !s.is_empty() {
            self.pieces.push(Piece::Lit(s.to_string()));
        }
    }
}

impl fmt::Display for Template {
    /// Shows the template as it would read in a plan, run-time variables as `${...}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.pieces {
            match p {
                Piece::Lit(s) | Piece::Env { value: s, .. } => f.write_str(s)?,
                Piece::Run(RunVar::Capture(c)) => write!(f, "${{capture.{c}}}")?,
                Piece::Run(v) => {
                    let i = [
                        RunVar::TargetHost,
                        RunVar::TargetDomain,
                        RunVar::TargetPort,
                        RunVar::TargetAddress,
                        RunVar::TestName,
                        RunVar::RunId,
                        RunVar::SettingsHelo,
                    ]
                    .iter()
                    .position(|x| x == v)
                    .unwrap_or(0);
                    write!(f, "${{{}}}", RUN_VARS[i])?
                }
            }
        }
        Ok(())
    }
}

/// A problem with one reference, at a byte offset into the string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarError {
    /// Byte offset of the `${`.
    pub offset: usize,
    /// Length of the reference in bytes.
    pub len: usize,
    /// What is wrong.
    pub message: String,
}

/// What a string may refer to.
pub struct Scope<'a> {
    /// Plan variables, already expanded.
    pub vars: &'a IndexMap<String, Template>,
    /// Reads an environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Whether run-time variables are allowed here (in steps, yes; in targets, no).
    pub runtime: bool,
    /// Captures defined by earlier steps of the same test.
    pub captures: &'a [String],
}

/// Expands the references in `s`. Every bad reference is reported.
pub fn expand(s: &str, scope: &Scope) -> Result<Template, Vec<VarError>> {
    let mut out = Template::default();
    let mut errors = Vec::new();
    let mut rest = s;
    let mut base = 0;
    while let Some(i) = rest.find('$') {
        out.push_lit(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_lit("${");
            base += i + 3;
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix("${") else {
            out.push_lit("$");
            base += i + 1;
            rest = &after[1..];
            continue;
        };
        let offset = base + i;
        let Some(end) = body.find('}') else {
            errors.push(VarError {
                offset,
                len: after.len(),
                message: "`${` is not closed with `}` (write `$${` for a literal `${`)".into(),
            });
            return Err(errors);
        };
        let name = &body[..end];
        match resolve(name, scope) {
            Ok(pieces) => {
                for p in pieces {
                    match p {
                        Piece::Lit(t) => out.push_lit(&t),
                        other => out.pieces.push(other),
                    }
                }
            }
            Err(message) => errors.push(VarError {
                offset,
                len: end + 3,
                message,
            }),
        }
        base += i + 2 + end + 1;
        rest = &body[end + 1..];
    }
    out.push_lit(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn resolve(name: &str, scope: &Scope) -> Result<Vec<Piece>, String> {
    if name.is_empty() {
        return Err("empty variable reference `${}`".into());
    }
    if let Some(env) = name.strip_prefix("env:") {
        let (var, default) = match env.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (env, None),
        };
        if var.is_empty() {
            return Err("`${env:}` needs the name of an environment variable".into());
        }
        let value = (scope.env)(var).or_else(|| default.map(str::to_string));
        return match value {
            Some(value) => Ok(vec![Piece::Env {
                name: var.to_string(),
                value,
            }]),
            None => Err(format!(
                "environment variable `{var}` is not set (give a default with `${{env:{var}:-VALUE}}`)"
            )),
        };
    }
    if let Some(t) = scope.vars.get(name) {
        return Ok(t.pieces.clone());
    }
    if let Some(run) = RunVar::from_name(name) {
        if !scope.runtime {
            return Err(format!(
                "`${{{name}}}` is known only while a test runs, so it can only be used in steps"
            ));
        }
        if let RunVar::Capture(c) = &run {
            if !scope.captures.iter().any(|x| x == c) {
                return Err(format!(
                    "no earlier step captures `{c}` (define it with `capture: {{ {c}: REGEX }}`)"
                ));
            }
        }
        return Ok(vec![Piece::Run(run)]);
    }
    let known = scope
        .vars
        .keys()
        .map(String::as_str)
        .chain(RUN_VARS.iter().copied());
    let hint = match crate::plan::error::did_you_mean(name, known) {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    };
    Err(format!("unknown variable `{name}`{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope_with<'a>(
        vars: &'a IndexMap<String, Template>,
        env: &'a dyn Fn(&str) -> Option<String>,
        captures: &'a [String],
    ) -> Scope<'a> {
        Scope {
            vars,
            env,
            runtime: true,
            captures,
        }
    }

    #[test]
    fn expands_vars_env_and_run_time_holes() {
        let mut vars = IndexMap::new();
        vars.insert("sender".to_string(), Template::lit("chris@contoso.com"));
        let env = |n: &str| (n == "PASS").then(|| "s3cret".to_string());
        let caps = vec!["queue_id".to_string()];
        let scope = scope_with(&vars, &env, &caps);
        let t = expand(
            "${sender} ${env:PASS} ${env:NOPE:-dflt} $${x} $5 ${run.id} ${capture.queue_id}",
            &scope,
        )
        .unwrap();
        assert_eq!(
            t.pieces,
            vec![
                Piece::Lit("chris@contoso.com ".into()),
                Piece::Env {
                    name: "PASS".into(),
                    value: "s3cret".into()
                },
                Piece::Lit(" ".into()),
                Piece::Env {
                    name: "NOPE".into(),
                    value: "dflt".into()
                },
                Piece::Lit(" ${x} $5 ".into()),
                Piece::Run(RunVar::RunId),
                Piece::Lit(" ".into()),
                Piece::Run(RunVar::Capture("queue_id".into())),
            ]
        );
        assert_eq!(t.static_text(), None);
        assert_eq!(
            t.to_string(),
            "chris@contoso.com s3cret dflt ${x} $5 ${run.id} ${capture.queue_id}"
        );
    }

    #[test]
    fn reports_every_bad_reference_with_its_offset() {
        let vars = IndexMap::new();
        let env = |_: &str| None;
        let scope = scope_with(&vars, &env, &[]);
        let errs = expand("a ${sendr} ${env:HOME_X} ${capture.q} ${}", &scope).unwrap_err();
        let got: Vec<(usize, &str)> = errs
            .iter()
            .map(|e| (e.offset, e.message.as_str()))
            .collect();
        assert_eq!(got[0].0, 2);
        assert!(got[0].1.starts_with("unknown variable `sendr`"));
        assert_eq!(got[1].0, 11);
        assert!(got[1].1.contains("`HOME_X` is not set"));
        assert!(got[2].1.contains("no earlier step captures `q`"));
        assert!(got[3].1.contains("empty"));
        assert!(expand("x ${open", &scope).unwrap_err()[0]
            .message
            .contains("not closed"));
    }

    #[test]
    fn run_time_variables_only_where_allowed() {
        let vars = IndexMap::new();
        let env = |_: &str| None;
        let scope = Scope {
            vars: &vars,
            env: &env,
            runtime: false,
            captures: &[],
        };
        assert!(expand("${target.host}", &scope).unwrap_err()[0]
            .message
            .contains("only be used in steps"));
        let scope = scope_with(&vars, &env, &[]);
        let e = expand("${target.hots}", &scope).unwrap_err();
        assert!(e[0].message.contains("did you mean `target.host`"));
    }
}
