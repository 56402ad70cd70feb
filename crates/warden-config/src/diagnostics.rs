//! Configuration errors with line, column and hint, and a deserializer that keeps going after the
//! first error so `check-config` can report every one.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use crate::Config;

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line (0 when the problem has no place in the file).
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: String,
}

/// Every problem found in one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Render as `FILE:LINE:COL: error: …` lines followed by `  hint: …`.
    pub fn render(&self, file: &str) -> String {
        let mut out = String::new();
        for d in &self.0 {
            out.push_str(&format!(
                "{file}:{}:{}: error: {}\n  hint: {}\n",
                d.line, d.column, d.message, d.hint
            ));
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("config"))
    }
}

impl std::error::Error for Diagnostics {}

/// 1-based (line, column) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

pub(crate) fn at(
    text: &str,
    span: Option<Range<usize>>,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Diagnostic {
    let (line, column) = span.map_or((0, 0), |s| line_col(text, s.start));
    Diagnostic {
        line,
        column,
        message: message.into(),
        hint: hint.into(),
    }
}

fn hint_for(message: &str) -> String {
    if message.contains("unknown field") {
        "remove the key or correct its spelling; the expected keys are listed above".into()
    } else if message.contains("invalid type") {
        "give the value the type the key expects (see the config reference in README.md)".into()
    } else if message.contains("missing field") {
        "add the required key".into()
    } else if message.contains("socket address") {
        "write an address as IP:PORT, e.g. 127.0.0.1:8080".into()
    } else {
        "see the config reference in README.md".into()
    }
}

/// Deserialize the document, collecting errors: syntax errors first, then for each type error the
/// offending key (or `[[upstream]]` element) is set aside and the rest tried again. Returns the
/// configuration built from what remained (for the semantic checks) with the errors found.
pub(crate) fn deserialize_all(text: &str) -> (Option<Config>, Vec<Diagnostic>) {
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let d = syntax
            .iter()
            .map(|e| {
                at(
                    text,
                    e.span(),
                    e.message().trim(),
                    "fix the TOML syntax at this place",
                )
            })
            .collect();
        return (None, d);
    }
    let span = root.span();
    let mut table = root.into_inner();
    let mut problems = Vec::new();
    for _ in 0..64 {
        let attempt = toml::de::Deserializer::from(toml::Spanned::new(span.clone(), table.clone()));
        match Config::deserialize(attempt) {
            Ok(cfg) => return (Some(cfg), problems),
            Err(e) => {
                let msg = e.message().trim().to_owned();
                problems.push(at(text, e.span(), msg.clone(), hint_for(&msg)));
                let Some(err_span) = e.span() else { break };
                if !set_aside(&mut table, &err_span) {
                    break;
                }
            }
        }
    }
    (None, problems)
}

/// Remove the innermost entry the error at `span` belongs to: within a table, the key that starts
/// last before the error (recursing into tables and arrays of tables). False if nothing was removed.
fn set_aside(table: &mut DeTable<'_>, span: &Range<usize>) -> bool {
    let start_of = |k: &toml::Spanned<toml::de::DeString<'_>>, v: &toml::Spanned<DeValue<'_>>| {
        k.span().start.min(v.span().start)
    };
    let Some(key) = table
        .iter()
        .filter(|(k, v)| start_of(k, v) <= span.start)
        .max_by_key(|(k, v)| start_of(k, v))
        .map(|(k, _)| k.clone())
    else {
        return false;
    };
    let inner_removed = match table.get_mut(&key).map(|v| v.get_mut()) {
        Some(DeValue::Table(t)) => set_aside(t, span),
        Some(DeValue::Array(items)) => {
            let owner = items
                .iter()
                .map(|i| i.span().start)
                .filter(|s| *s <= span.start)
                .max();
            let mut removed = false;
            let mut kept: Vec<toml::Spanned<DeValue<'_>>> = Vec::new();
            for mut item in items.iter().cloned() {
                if Some(item.span().start) == owner && !removed {
                    removed = true;
                    if let DeValue::Table(t) = item.get_mut()
                        && set_aside(t, span)
                    {
                        kept.push(item);
                        continue;
                    }
                    continue;
                }
                kept.push(item);
            }
            if removed && !kept.is_empty() {
                *items = kept.into_iter().collect();
                true
            } else {
                false
            }
        }
        _ => false,
    };
    inner_removed || table.remove(&key).is_some()
}

/// Span of a top-level key's value, or of element `index` of an array of tables.
pub(crate) fn span_of(
    text: &str,
    key: &str,
    index: Option<usize>,
    field: Option<&str>,
) -> Option<Range<usize>> {
    let root = DeTable::parse(text).ok()?.into_inner();
    let (_, v) = root.iter().find(|(k, _)| k.get_ref().as_ref() == key)?;
    let node = match (v.get_ref(), index) {
        (DeValue::Array(items), Some(i)) => items.get(i)?,
        (_, None) => v,
        _ => return Some(v.span()),
    };
    if let (Some(f), DeValue::Table(t)) = (field, node.get_ref())
        && let Some((k, _)) = t.iter().find(|(k, _)| k.get_ref().as_ref() == f)
    {
        return Some(k.span());
    }
    Some(node.span())
}
