//! Tool arguments (untrusted JSON) → Cedar values, built programmatically (P2.2, A-ZT3).
//!
//! Cedar's own JSON loader is not used for arguments: it rejects `null`, floats and integers
//! beyond `i64`, and it reads `{"__entity": …}` / `{"__extn": …}` as entity references and
//! extension values — an argument could forge `context.args.owner == principal`. Here every
//! object becomes a plain record (a key named `__entity` is just a key), `null` is left out,
//! an integer that fits `i64` is a Long, and any other number is a String of its exact JSON text
//! (compare it as text, or declare the argument a string). Arrays become sets. Depth, element
//! count and string size are bounded; beyond them the conversion fails and the caller refuses.

use cedar_policy::RestrictedExpression;
use serde_json::Value;

/// Deepest nesting converted.
pub const MAX_DEPTH: usize = 32;
/// Most values converted in one argument tree.
pub const MAX_VALUES: usize = 10_000;

/// Why arguments could not be converted (the call is refused: fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("arguments nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// More than [`MAX_VALUES`] values.
    #[error("arguments hold more than {MAX_VALUES} values")]
    TooMany,
    /// Cedar refused a record (a key twice cannot happen from JSON objects, but is checked).
    #[error("arguments could not be represented: {0}")]
    Unrepresentable(String),
}

/// `v` as a Cedar value; `None` for `null` (left out).
pub fn to_cedar(v: &Value) -> Result<Option<RestrictedExpression>, ValueError> {
    let mut budget = MAX_VALUES;
    convert(v, 0, &mut budget)
}

fn convert(
    v: &Value,
    depth: usize,
    budget: &mut usize,
) -> Result<Option<RestrictedExpression>, ValueError> {
    if depth > MAX_DEPTH {
        return Err(ValueError::TooDeep);
    }
    *budget = budget.checked_sub(1).ok_or(ValueError::TooMany)?;
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => RestrictedExpression::new_string(n.to_string()),
        },
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len().min(64));
            for i in items {
                if let Some(x) = convert(i, depth + 1, budget)? {
                    out.push(x);
                }
            }
            RestrictedExpression::new_set(out)
        }
        Value::Object(m) => {
            let mut fields = Vec::with_capacity(m.len().min(64));
            for (k, x) in m {
                if let Some(x) = convert(x, depth + 1, budget)? {
                    fields.push((k.clone(), x));
                }
            }
            RestrictedExpression::new_record(fields)
                .map_err(|e| ValueError::Unrepresentable(e.to_string()))?
        }
    }))
}
