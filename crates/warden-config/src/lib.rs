//! # warden-config
//!
//! Owns the configuration model (TOML, `deny_unknown_fields` everywhere), its secure defaults
//! (loopback bind, Host/Origin allowlist, body and depth limits, session expiry) and validation.
//! [`load_str`] returns either a [`Config`] or *every* error found, each with line, column and a
//! hint, which is what `warden check-config` prints.
//!
//! It must not open sockets, spawn processes or read anything but the file it is given.

mod auth;
mod check_auth;
mod credentials;
mod diagnostics;
mod model;
mod validate;

pub use auth::*;
pub use check_auth::{ALGORITHMS, serve_diagnostics};
pub use credentials::UpstreamAuth;

pub use diagnostics::{Diagnostic, Diagnostics};
pub use model::*;

/// Parse and validate a configuration document.
pub fn load_str(text: &str) -> Result<Config, Diagnostics> {
    let (cfg, mut problems) = diagnostics::deserialize_all(text);
    if let Some(cfg) = &cfg {
        problems.extend(validate::validate(cfg, text));
        problems.extend(check_auth::validate(cfg, text));
    }
    problems.sort_by_key(|d| (d.line, d.column));
    match cfg {
        Some(cfg) if problems.is_empty() => Ok(cfg),
        _ => Err(Diagnostics(problems)),
    }
}

/// A diagnostic about `field` of the `index`th `[[upstream]]` in `text`, placed at its line, for
/// checks made outside this crate (files the configuration points at).
pub fn upstream_diagnostic(
    text: &str,
    index: usize,
    field: &str,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Diagnostic {
    diagnostics::at(
        text,
        diagnostics::span_of(text, "upstream", Some(index), Some(field)),
        message,
        hint,
    )
}

/// Read, parse and validate a configuration file.
pub fn load_file(path: &std::path::Path) -> Result<Config, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            line: 0,
            column: 0,
            message: format!("cannot read {}: {e}", path.display()),
            hint: "check the path and its permissions".into(),
        }])
    })?;
    load_str(&text)
}
