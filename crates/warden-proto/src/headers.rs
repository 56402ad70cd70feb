//! 2026-07-28 request-metadata headers (SEP-2243): `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`
//! and `Mcp-Param-{Name}` must agree with the body, or the request is refused with HTTP 400 and
//! JSON-RPC -32020 `HeaderMismatch` (P1.1, P3.4). A client that names one tool in the header and
//! another in the body must never get past Warden.

use std::borrow::Cow;

use base64::Engine;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::envelope::{Message, Params};
use crate::strict;

/// The request headers these rules read; values as received (trimmed here).
#[derive(Debug, Default, Clone, Copy)]
pub struct MetaHeaders<'h> {
    pub protocol_version: Option<&'h str>,
    pub method: Option<&'h str>,
    pub name: Option<&'h str>,
}

/// A header that disagrees with the body, is missing, or is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header mismatch on {header}: {detail}")]
pub struct HeaderMismatch {
    pub header: String,
    pub detail: String,
}

fn mismatch(header: &str, detail: impl Into<String>) -> HeaderMismatch {
    HeaderMismatch {
        header: header.to_owned(),
        detail: detail.into(),
    }
}

/// Methods whose `Mcp-Name` header is required, and the params field it mirrors.
pub fn name_source(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Check `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` against a parsed request.
pub fn check_standard(
    h: &MetaHeaders<'_>,
    msg: &Message<'_>,
    params: &Params<'_>,
) -> Result<(), HeaderMismatch> {
    let body_version = params.meta.as_ref().and_then(|m| m.protocol_version_str());
    match (h.protocol_version.map(ows), body_version.as_deref()) {
        (None, _) => return Err(mismatch("MCP-Protocol-Version", "header is required")),
        (Some(hv), Some(bv)) if hv != bv => {
            return Err(mismatch(
                "MCP-Protocol-Version",
                format!("header '{hv}' does not match body _meta '{bv}'"),
            ));
        }
        _ => {}
    }
    let method = msg.method().unwrap_or_default();
    match h.method.map(ows) {
        None => return Err(mismatch("Mcp-Method", "header is required")),
        Some(hm) if hm != method => {
            return Err(mismatch(
                "Mcp-Method",
                format!("header '{hm}' does not match body method '{method}'"),
            ));
        }
        Some(_) => {}
    }
    if let Some(field) = name_source(method) {
        let body = if field == "uri" {
            params.uri.as_deref()
        } else {
            params.name.as_deref()
        };
        let header = h
            .name
            .map(ows)
            .ok_or_else(|| mismatch("Mcp-Name", "header is required for this method"))?;
        let decoded = decode_value(header).map_err(|d| mismatch("Mcp-Name", d))?;
        if Some(decoded.as_ref()) != body {
            return Err(mismatch(
                "Mcp-Name",
                format!("header does not match body params.{field}"),
            ));
        }
    }
    Ok(())
}

/// Trim optional whitespace (RFC 9110 OWS) around a header value.
fn ows(v: &str) -> &str {
    v.trim_matches([' ', '\t'])
}

/// Decode a header value: the Base64 sentinel `=?base64?…?=` or a plain visible-ASCII value.
pub fn decode_value(v: &str) -> Result<Cow<'_, str>, String> {
    if let Some(inner) = v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(inner)
            .map_err(|_| "invalid base64 in sentinel value".to_owned())?;
        return String::from_utf8(bytes)
            .map(Cow::Owned)
            .map_err(|_| "base64 value is not UTF-8".to_owned());
    }
    if v.bytes()
        .all(|b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b))
    {
        Ok(Cow::Borrowed(v))
    } else {
        Err("header value has characters outside visible ASCII".to_owned())
    }
}

/// One `x-mcp-header` annotation of a tool's `inputSchema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    /// The `{Name}` of `Mcp-Param-{Name}`.
    pub name: String,
    /// The chain of `properties` keys leading to the annotated property.
    pub path: Vec<String>,
}

/// Collect and validate the `x-mcp-header` annotations of an `inputSchema` (bounded by `max_depth`).
/// An annotation that breaks the spec's constraints makes the whole tool invalid (C15).
pub fn param_headers(schema: &Value, max_depth: usize) -> Result<Vec<ParamHeader>, String> {
    let mut out = Vec::new();
    collect(schema, &mut Vec::new(), &mut out, max_depth, true)?;
    let mut seen: Vec<String> = Vec::new();
    for p in &out {
        let lower = p.name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(format!("x-mcp-header '{}' is not unique", p.name));
        }
        seen.push(lower);
    }
    Ok(out)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn collect(
    node: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<ParamHeader>,
    depth: usize,
    reachable: bool,
) -> Result<(), String> {
    let Some(obj) = node.as_object() else {
        return Ok(());
    };
    if depth == 0 {
        return Err("schema nests too deep".into());
    }
    if let Some(h) = obj.get("x-mcp-header") {
        let name = h.as_str().ok_or("x-mcp-header must be a string")?;
        if !reachable || path.is_empty() {
            return Err(format!(
                "x-mcp-header '{name}' is not statically reachable through properties"
            ));
        }
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(format!("x-mcp-header '{name}' is not an HTTP token"));
        }
        match obj.get("type").and_then(Value::as_str) {
            Some("string" | "integer" | "boolean") => {}
            _ => {
                return Err(format!(
                    "x-mcp-header '{name}' is on a non-primitive or number parameter"
                ));
            }
        }
        out.push(ParamHeader {
            name: name.to_owned(),
            path: path.clone(),
        });
    }
    for (key, child) in obj {
        match key.as_str() {
            "properties" => {
                if let Some(props) = child.as_object() {
                    for (prop, schema) in props {
                        path.push(prop.clone());
                        collect(schema, path, out, depth - 1, reachable)?;
                        path.pop();
                    }
                }
            }
            "x-mcp-header" | "type" | "description" | "title" | "required" | "enum" | "const"
            | "default" => {}
            _ => match child {
                Value::Object(_) => collect(child, path, out, depth - 1, false)?,
                Value::Array(items) => {
                    for item in items {
                        collect(item, path, out, depth - 1, false)?;
                    }
                }
                _ => {}
            },
        }
    }
    Ok(())
}

/// The argument at `path` of `arguments`, read strictly: a duplicate key on the way is an error
/// (two readers could pick two values). `Ok(None)`: absent.
fn argument<'a>(
    arguments: Option<&'a RawValue>,
    path: &[String],
) -> Result<Option<&'a RawValue>, String> {
    let mut at = arguments;
    for key in path {
        let Some(obj) = at else { return Ok(None) };
        at = strict::member(obj, key).map_err(|e| e.0)?;
    }
    Ok(at)
}

/// Check `Mcp-Param-{Name}` headers against the call's raw `arguments` for the tool's
/// annotations. `header` looks a header up case-insensitively by its full name. Values are
/// compared by the body's JSON type: strings after decoding (a lone surrogate is a mismatch),
/// booleans as `true`/`false`, numbers exactly as decimals (`42` equals `42.0`; no `f64`
/// rounding). Call [`strict::readable`] on the arguments first: this reads only the annotated
/// paths.
pub fn check_params<'h>(
    specs: &[ParamHeader],
    arguments: Option<&RawValue>,
    header: impl Fn(&str) -> Option<&'h str>,
) -> Result<(), HeaderMismatch> {
    for spec in specs {
        let hname = format!("Mcp-Param-{}", spec.name);
        let body = argument(arguments, &spec.path)
            .map_err(|e| mismatch(&hname, format!("the arguments cannot be read: {e}")))?
            .filter(|v| v.get() != "null");
        match (header(&hname).map(ows), body) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(mismatch(
                    &hname,
                    "header is required: the body carries this parameter",
                ));
            }
            (Some(_), None) => {
                return Err(mismatch(
                    &hname,
                    "header is present but the body has no value",
                ));
            }
            (Some(h), Some(b)) => {
                let decoded = decode_value(h).map_err(|d| mismatch(&hname, d))?;
                let text = b.get();
                let equal = match text.as_bytes().first() {
                    Some(b'"') => {
                        serde_json::from_str::<String>(text)
                            .map_err(|_| mismatch(&hname, "the body value is not a valid string"))?
                            == decoded.as_ref()
                    }
                    Some(b't' | b'f') => decoded == text,
                    Some(b'-' | b'0'..=b'9') => strict::same_number(text, &decoded),
                    _ => false,
                };
                if !equal {
                    return Err(mismatch(&hname, "header does not match the body value"));
                }
            }
        }
    }
    Ok(())
}

/// A header value for `v` per SEP-2243's value encoding: as is when it is plain visible ASCII
/// (inner spaces allowed) that does not look like the sentinel, else `=?base64?…?=`.
pub fn encode_value(v: &str) -> String {
    let b = v.as_bytes();
    let plain = !b.is_empty()
        && b.iter()
            .all(|c| *c == b' ' || *c == b'\t' || (0x21..=0x7e).contains(c))
        && !matches!(b.first(), Some(b' ' | b'\t'))
        && !matches!(b.last(), Some(b' ' | b'\t'))
        && (!v.starts_with("=?base64?") || !v.ends_with("?="));
    if plain {
        v.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(b)
        )
    }
}

/// The `Mcp-Name` to send upstream when Warden renamed the body's name from `exposed` (what the
/// client called) to `original` (what the upstream calls it): the client's header must name
/// `exposed` (else it is a mismatch, never laundered into agreement), and the upstream gets
/// `original`, encoded.
pub fn renamed_name(header: &str, exposed: &str, original: &str) -> Result<String, HeaderMismatch> {
    let decoded = decode_value(ows(header)).map_err(|d| mismatch("Mcp-Name", d))?;
    if decoded != exposed {
        return Err(mismatch(
            "Mcp-Name",
            "header does not match the name the body calls",
        ));
    }
    Ok(encode_value(original))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(body: &str) -> (Message<'_>, Params<'_>) {
        let m = Message::parse(body.as_bytes()).unwrap();
        let p = m.params_view().unwrap();
        (m, p)
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

    #[test]
    fn accepts_matching_headers_with_ows_and_base64() {
        let (m, p) = req(CALL);
        let h = MetaHeaders {
            protocol_version: Some("2026-07-28"),
            method: Some(" tools/call "),
            name: Some("get_weather"),
        };
        assert_eq!(check_standard(&h, &m, &p), Ok(()));
        let h = MetaHeaders {
            name: Some("=?base64?Z2V0X3dlYXRoZXI=?="),
            ..h
        };
        assert_eq!(check_standard(&h, &m, &p), Ok(()));
    }

    #[test]
    fn refuses_spoofed_missing_or_wrong_case_headers() {
        let (m, p) = req(CALL);
        let ok = MetaHeaders {
            protocol_version: Some("2026-07-28"),
            method: Some("tools/call"),
            name: Some("get_weather"),
        };
        for bad in [
            MetaHeaders {
                name: Some("delete_everything"),
                ..ok
            },
            MetaHeaders { name: None, ..ok },
            MetaHeaders {
                method: Some("TOOLS/CALL"),
                ..ok
            },
            MetaHeaders { method: None, ..ok },
            MetaHeaders {
                protocol_version: Some("2025-11-25"),
                ..ok
            },
            MetaHeaders {
                protocol_version: None,
                ..ok
            },
            MetaHeaders {
                name: Some("=?base64?!!!?="),
                ..ok
            },
        ] {
            assert!(check_standard(&bad, &m, &p).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn param_headers_follow_annotations() {
        let schema = json!({"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "n":{"type":"integer","x-mcp-header":"N"},
            "q":{"type":"string"}}});
        let specs = param_headers(&schema, 16).unwrap();
        assert_eq!(specs.len(), 2);
        let args = raw(r#"{"region":"us-west1","n":42,"q":"x"}"#);
        let hdr = |h: &str| match h {
            "Mcp-Param-Region" => Some("us-west1"),
            "Mcp-Param-N" => Some("42.0"),
            _ => None,
        };
        assert_eq!(check_params(&specs, Some(&args), hdr), Ok(()));
        let spoof = |h: &str| match h {
            "Mcp-Param-Region" => Some("eu-west1"),
            "Mcp-Param-N" => Some("42"),
            _ => None,
        };
        assert!(check_params(&specs, Some(&args), spoof).is_err());
        let missing = |h: &str| if h == "Mcp-Param-N" { Some("42") } else { None };
        assert!(check_params(&specs, Some(&args), missing).is_err());
        assert_eq!(check_params(&specs, Some(&raw("{}")), |_| None), Ok(()));
        assert_eq!(check_params(&specs, None, |_| None), Ok(()));
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    /// #13 item 5 (b, c) and item 14: integers compare exactly, a duplicated annotated argument
    /// or an unreadable string is a mismatch, never "no value".
    #[test]
    fn param_values_are_read_strictly() {
        let schema = json!({"type":"object","properties":{
            "n":{"type":"integer","x-mcp-header":"N"},
            "o":{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"R"}}}}});
        let specs = param_headers(&schema, 16).unwrap();
        let n = |v: &'static str| move |h: &str| (h == "Mcp-Param-N").then_some(v);
        let big = raw(r#"{"n":9007199254740993}"#);
        assert!(check_params(&specs, Some(&big), n("9007199254740992")).is_err());
        assert_eq!(
            check_params(&specs, Some(&big), n("9007199254740993")),
            Ok(())
        );
        assert_eq!(
            check_params(&specs, Some(&raw(r#"{"n":4.2e1}"#)), n("42")),
            Ok(())
        );
        assert!(check_params(&specs, Some(&raw(r#"{"n":"42"}"#)), n("43")).is_err());
        // Two values for the annotated argument: refused whichever the header names.
        let dup = raw(r#"{"n":1,"n":2}"#);
        assert!(check_params(&specs, Some(&dup), n("1")).is_err());
        assert!(check_params(&specs, Some(&dup), n("2")).is_err());
        let nested_dup = raw(r#"{"o":{"r":"us","r":"eu"}}"#);
        let r = |h: &str| (h == "Mcp-Param-R").then_some("us");
        assert!(check_params(&specs, Some(&nested_dup), r).is_err());
        assert_eq!(
            check_params(&specs, Some(&raw(r#"{"o":{"r":"us"}}"#)), r),
            Ok(())
        );
        let lone = raw(r#"{"o":{"r":"\ud800"}}"#);
        assert!(check_params(&specs, Some(&lone), r).is_err());
        // A null is no value: no header expected.
        assert_eq!(
            check_params(&specs, Some(&raw(r#"{"n":null}"#)), |_| None),
            Ok(())
        );
    }

    #[test]
    fn values_encode_and_renamed_names_must_agree() {
        assert_eq!(encode_value("get_weather"), "get_weather");
        assert_eq!(encode_value("a b"), "a b");
        for v in [
            " padded ",
            "Hello, 世界",
            "line1\nline2",
            "=?base64?literal?=",
            "",
        ] {
            let e = encode_value(v);
            assert!(e.starts_with("=?base64?"), "{v:?} -> {e}");
            assert_eq!(decode_value(&e).unwrap(), v);
        }
        assert_eq!(
            renamed_name(" a_echo ", "a_echo", "echo"),
            Ok("echo".into())
        );
        assert_eq!(
            renamed_name("=?base64?YV9lY2hv?=", "a_echo", "é"),
            Ok(encode_value("é"))
        );
        assert!(renamed_name("echo", "a_echo", "echo").is_err());
        assert!(renamed_name("b_echo", "a_echo", "echo").is_err());
    }

    #[test]
    fn invalid_annotations_invalidate_the_tool() {
        for schema in [
            json!({"type":"object","properties":{"a":{"type":"array","items":{"type":"string","x-mcp-header":"A"}}}}),
            json!({"type":"object","properties":{"a":{"type":"number","x-mcp-header":"A"}}}),
            json!({"type":"object","properties":{"a":{"type":"string","x-mcp-header":"A B"}}}),
            json!({"type":"object","properties":{"a":{"type":"string","x-mcp-header":"A"},"b":{"type":"string","x-mcp-header":"a"}}}),
            json!({"type":"object","oneOf":[{"properties":{"a":{"type":"string","x-mcp-header":"A"}}}]}),
        ] {
            assert!(param_headers(&schema, 16).is_err(), "{schema}");
        }
    }
}
