//! Reading a [`SecretRef`]: an environment variable or a file, at start. The value is never
//! logged; an error names the reference, not the value.

use warden_config::SecretRef;
use warden_guard::Secret;

/// The secret `r` names, or why it cannot be read (empty counts as missing).
pub fn read(r: &SecretRef) -> Result<Secret, String> {
    let value = match (&r.env, &r.file) {
        (Some(var), None) => {
            std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
        }
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| format!("{}: {e}", f.display()))?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        _ => return Err("a secret reference needs exactly one of env or file".into()),
    };
    if value.is_empty() {
        return Err(match (&r.env, &r.file) {
            (Some(v), _) => format!("environment variable {v} is empty"),
            (_, Some(f)) => format!("{} is empty", f.display()),
            _ => "empty secret".into(),
        });
    }
    Ok(Secret::new(&value))
}
