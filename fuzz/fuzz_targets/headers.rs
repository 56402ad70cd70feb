//! Fuzz target `headers`: SEP-2243 header checks (`headers::check_standard`, `decode_value`,
//! `param_headers`, `check_params`) on arbitrary header values and bodies (P1.1, P3.4).
//!
//! Input framing: four header values, each a length byte (0xFF = header absent) followed by that
//! many bytes (absent too when not UTF-8): MCP-Protocol-Version, Mcp-Method, Mcp-Name and the value
//! given to every Mcp-Param-* lookup. The rest is the body: a JSON-RPC message, also read as JSON.
//!
//! Invariants: nothing panics; `decode_value` returns plain values unchanged and base64 sentinels
//! decoded (round-tripping); `check_standard` accepts only when the headers really match the body;
//! `param_headers` accepts only unique, token-shaped names on a non-empty `properties` path;
//! `check_params` accepts only when header presence matches the body value's presence.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::borrow::Cow;
use warden_proto::Message;
use warden_proto::headers::{
    MetaHeaders, ParamHeader, check_params, check_standard, decode_value, name_source,
    param_headers,
};
use warden_proto::limits::Limits;

fn take<'a>(data: &mut &'a [u8]) -> Option<&'a str> {
    let (&len, rest) = data.split_first()?;
    if len == 0xFF {
        *data = rest;
        return None;
    }
    let (value, rest) = rest.split_at(usize::from(len).min(rest.len()));
    *data = rest;
    std::str::from_utf8(value).ok()
}

fn ows(v: &str) -> &str {
    v.trim_matches([' ', '\t'])
}

fn check_decode(v: &str) {
    let sentinel = v.len() >= 11 && v.starts_with("=?base64?") && v.ends_with("?=");
    match decode_value(v) {
        Ok(Cow::Borrowed(s)) => {
            assert!(!sentinel, "sentinel {v:?} passed through undecoded");
            assert_eq!(s, v);
            assert!(
                v.bytes()
                    .all(|b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b))
            );
        }
        Ok(Cow::Owned(s)) => {
            assert!(sentinel, "non-sentinel {v:?} was decoded");
            let again = base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
            let sentinel = format!("=?base64?{again}?=");
            let round = decode_value(&sentinel).expect("re-encoded sentinel decodes");
            assert_eq!(round, s, "base64 sentinel does not round-trip");
        }
        Err(_) => {}
    }
}

fn check_specs(specs: &[ParamHeader]) {
    let mut names: Vec<String> = specs.iter().map(|s| s.name.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        specs.len(),
        "duplicate x-mcp-header names accepted"
    );
    for s in specs {
        assert!(!s.path.is_empty(), "annotation with an empty path accepted");
        assert!(!s.name.is_empty(), "empty header name accepted");
        assert!(
            s.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)),
            "non-token header name {:?} accepted",
            s.name
        );
    }
}

fn check_param_headers(schema: &Value, arguments: Option<&Value>, value: Option<&str>) {
    let Ok(specs) = param_headers(schema, 16) else {
        return;
    };
    check_specs(&specs);
    let raw = arguments.and_then(|a| serde_json::value::to_raw_value(a).ok());
    if check_params(&specs, raw.as_deref(), |_| value).is_ok() {
        for spec in &specs {
            let mut body = arguments;
            for key in &spec.path {
                body = body.and_then(|v| v.get(key));
            }
            let present = body.is_some_and(|v| !v.is_null());
            assert_eq!(
                present,
                value.is_some(),
                "Mcp-Param-{} presence mismatch accepted",
                spec.name
            );
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let h = MetaHeaders {
        protocol_version: take(&mut data),
        method: take(&mut data),
        name: take(&mut data),
    };
    let param = take(&mut data);
    for v in [h.protocol_version, h.method, h.name, param]
        .into_iter()
        .flatten()
    {
        check_decode(v);
        check_decode(ows(v));
    }

    let body = data;
    let value: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(v) = &value {
        // The body itself as a schema, and the schemas / arguments a message may carry.
        let arguments = v.pointer("/params/arguments");
        check_param_headers(v, arguments, param);
        if let Some(tools) = v.pointer("/result/tools").and_then(Value::as_array) {
            for t in tools {
                if let Some(schema) = t.get("inputSchema") {
                    check_param_headers(schema, arguments, param);
                }
            }
        }
    }

    if Limits::default().check(body).is_err() {
        return;
    }
    let Ok(msg) = Message::parse(body) else {
        return;
    };
    let Ok(params) = msg.params_view() else {
        return;
    };
    if check_standard(&h, &msg, &params).is_ok() {
        let method = msg.method().unwrap_or_default();
        let hv = ows(h
            .protocol_version
            .expect("accepted without MCP-Protocol-Version"));
        if let Some(bv) = params.meta.as_ref().and_then(|m| m.protocol_version_str()) {
            assert_eq!(hv, bv, "protocol version mismatch accepted");
        }
        assert_eq!(ows(h.method.expect("accepted without Mcp-Method")), method);
        if let Some(field) = name_source(method) {
            let name = decode_value(ows(h.name.expect("accepted without Mcp-Name"))).unwrap();
            let body = if field == "uri" {
                params.uri.as_deref()
            } else {
                params.name.as_deref()
            };
            assert_eq!(Some(name.as_ref()), body, "Mcp-Name mismatch accepted");
        }
    }
});
