//! The published Cedar schema of Warden's requests (#15 item 1), and its generation from a
//! server's `tools/list` so argument types are checked.
//!
//! [`BASE`] (also `crates/warden-policy/schema/warden.cedarschema`, written by
//! `warden policy schema`) declares `User`, `Tool`, `Resource`, `Prompt`, the actions Warden
//! decides and the context ([`crate::context`]). Its `Args` type is empty; [`generate`] fills it
//! from `tools/list` results: Cedar types a context per *action*, and every tool shares the
//! action `tools/call`, so `Args` is the union of the tools' argument properties, each optional
//! (policies guard them with `context.args has x`). A property two tools type differently, a
//! JSON-Schema `number` (Warden passes integral numbers as `Long`, others as their text) and
//! constructs without a Cedar equivalent are left out, and reported. Principal `claims` are in
//! the context at run time but not in the schema (their shape is the issuer's).
//!
//! Evaluated and not used: `cedar-policy-mcp-schema-generator` 0.7.0 models each tool as its own
//! action and pins `cedar-policy-core = "=4.14.0"` (it cannot build beside cedar-policy 4.14.1).

use std::collections::BTreeMap;
use std::str::FromStr;

use cedar_policy::{PolicySet, Schema, ValidationMode, Validator};
use serde_json::Value;

/// The schema with `Args` empty and the well-known labels.
pub const BASE: &str = include_str!("../schema/warden.cedarschema");

/// A generated schema and what was left out of `Args`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Cedar schema text.
    pub text: String,
    /// `property: why` for each property not typed.
    pub skipped: Vec<String>,
}

fn cedar_type(s: &Value, depth: usize) -> Result<String, String> {
    if depth > 8 {
        return Err("nested too deep".into());
    }
    match s.get("type").and_then(Value::as_str) {
        Some("string") => Ok("String".into()),
        Some("integer") => Ok("Long".into()),
        Some("boolean") => Ok("Bool".into()),
        Some("array") => {
            let items = s.get("items").ok_or("an array without items")?;
            Ok(format!("Set<{}>", cedar_type(items, depth + 1)?))
        }
        Some("object") => {
            let mut fields = Vec::new();
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    if let Ok(t) = cedar_type(v, depth + 1) {
                        fields.push(format!("{}?: {t}", quote(k)));
                    }
                }
            }
            Ok(format!("{{ {} }}", fields.join(", ")))
        }
        Some("number") => {
            Err("a JSON-Schema number (integral values arrive as Long, others as String)".into())
        }
        Some(t) => Err(format!("type {t:?} has no Cedar equivalent")),
        None => Err("no single type".into()),
    }
}

fn quote(k: &str) -> String {
    serde_json::Value::String(k.to_owned()).to_string()
}

/// The schema for the tools of these `tools/list` results (each `{"tools": [...]}`), with
/// `labels` counted besides the well-known ones.
pub fn generate(lists: &[Value], labels: &[String]) -> Generated {
    let mut props: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for list in lists {
        for tool in list
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or("?");
            let Some(p) = tool
                .get("inputSchema")
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
            else {
                continue;
            };
            for (k, v) in p {
                match (cedar_type(v, 0), props.get(k)) {
                    (Err(e), _) => {
                        skipped.push(format!("{k} ({name}): {e}"));
                        props.insert(k.clone(), None);
                    }
                    (Ok(t), None) => {
                        props.insert(k.clone(), Some(t));
                    }
                    (Ok(t), Some(Some(old))) if *old != t => {
                        skipped.push(format!("{k} ({name}): typed {t} here, {old} elsewhere"));
                        props.insert(k.clone(), None);
                    }
                    _ => {}
                }
            }
        }
    }
    let args: Vec<String> = props
        .iter()
        .filter_map(|(k, t)| t.as_ref().map(|t| format!("  {}?: {t},", quote(k))))
        .collect();
    let mut text = BASE.replace(
        "type Args = {};",
        &format!("type Args = {{\n{}\n}};", args.join("\n")),
    );
    let extra: Vec<String> = labels
        .iter()
        .filter(|l| !crate::flow::WELL_KNOWN.contains(&l.as_str()))
        .map(|l| format!("  {}: Counts,", quote(l)))
        .collect();
    if !extra.is_empty() {
        text = text.replace(
            "  destructive: Counts,\n",
            &format!("  destructive: Counts,\n{}\n", extra.join("\n")),
        );
    }
    skipped.sort();
    skipped.dedup();
    Generated { text, skipped }
}

/// Validate `policies` against schema text `schema` (strict mode): every error, located.
pub fn validate(policies: &str, schema: &str) -> Result<(), Vec<String>> {
    let set = PolicySet::from_str(policies).map_err(|e| vec![format!("{e:?}")])?;
    let (schema, _) =
        Schema::from_cedarschema_str(schema).map_err(|e| vec![format!("schema: {e:?}")])?;
    let r = Validator::new(schema).validate(&set, ValidationMode::Strict);
    if r.validation_passed_without_warnings() {
        return Ok(());
    }
    let id = |pid: &cedar_policy::PolicyId| {
        set.policy(pid)
            .and_then(|p| p.annotation("id"))
            .unwrap_or(pid.as_ref())
            .to_owned()
    };
    let mut out: Vec<String> = r
        .validation_errors()
        .map(|e| format!("policy {}: {e}", id(e.policy_id())))
        .collect();
    // Warnings (a policy that can never apply, look-alike characters) fail too: a policy
    // that cannot apply is almost always a typo in an attribute name.
    out.extend(
        r.validation_warnings()
            .map(|w| format!("policy {}: {w}", id(w.policy_id()))),
    );
    Err(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_schema_types_arguments_and_catches_mistakes() {
        let tools = json!({"tools": [
            {"name": "read_file", "inputSchema": {"type": "object", "properties": {
                "path": {"type": "string"}, "limit": {"type": "integer"}, "ratio": {"type": "number"}}}},
            {"name": "tag", "inputSchema": {"type": "object", "properties": {
                "path": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                "limit": {"type": "string"}}}}
        ]});
        let g = generate(&[tools], &["send".into()]);
        assert!(g.text.contains("\"path\"?: String"), "{}", g.text);
        assert!(g.text.contains("\"tags\"?: Set<String>"));
        assert!(!g.text.contains("\"limit\"") && !g.text.contains("\"ratio\""));
        assert_eq!(g.skipped.len(), 2, "{:?}", g.skipped);
        let good = r#"@id("p") permit(principal, action == Action::"tools/call", resource)
            when { context.args has path && context.args.path like "/srv/data/*"
                   && context.calls.label.send.hour < 5 && !context.flow.private_data };"#;
        validate(good, &g.text).unwrap();
        // A typo in an argument, a string compared with a number, a missing `has`.
        for bad in [
            r#"permit(principal, action == Action::"tools/call", resource) when { context.args has pth && context.args.pth == "x" };"#,
            r#"permit(principal, action == Action::"tools/call", resource) when { context.args has path && context.args.path == 5 };"#,
            r#"permit(principal, action == Action::"tools/call", resource) when { context.args.path == "x" };"#,
            r#"permit(principal, action == Action::"tools/call", resource) when { resource.lables.contains("egress") };"#,
        ] {
            assert!(validate(bad, &g.text).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_packs_validate_against_the_base_schema() {
        validate(crate::packs::TRIFECTA, BASE).unwrap();
        validate(crate::packs::PERMIT_ALL, BASE).unwrap();
    }
}
