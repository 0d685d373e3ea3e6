//! Plans: everything from the bytes of a plan file to a checked [`model::Plan`].
//! `load` parses YAML and checks its shape against the schema generated from
//! `raw`; `validate` checks meaning and builds the model. Nothing downstream of this
//! module sees a `Raw*` type or the YAML crate.

pub mod error;
pub mod load;
pub mod locate;
pub mod model;
pub mod pattern;
pub mod raw;
pub mod structure;
pub mod validate;
pub mod vars;

use error::{Diagnostic, Source};
use std::path::Path;

pub use validate::Options;

/// Reads, parses and validates the plan at `path`.
pub fn load_file(path: &Path, opts: &Options) -> Result<model::Plan, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| {
        vec![Diagnostic::whole_file(
            &name,
            format!("cannot read plan: {e}"),
        )]
    })?;
    let text = String::from_utf8(text).map_err(|e| {
        vec![Diagnostic::whole_file(
            &name,
            format!(
                "plan is not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            ),
        )]
    })?;
    load_str(path, &Source::new(name, text), opts)
}

/// Parses and validates plan text read from `path`.
pub fn load_str(
    path: &Path,
    source: &Source,
    opts: &Options,
) -> Result<model::Plan, Vec<Diagnostic>> {
    let mut r = load::Reporter::new(source);
    match load::load(&mut r)? {
        Some(raw) => validate::validate(raw, r, path, opts),
        None => Err(r.finish()),
    }
}
