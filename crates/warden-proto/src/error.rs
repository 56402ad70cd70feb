//! JSON-RPC error responses with a stable reason code and a human hint.
//!
//! Every refusal Warden writes as JSON-RPC goes through [`RpcError::to_bytes`]: the request's raw
//! `id` is echoed byte-for-byte (or `null` when it could not be read), and `error.data` carries
//! `reason` (machine-readable, stable) and `hint` (what to do about it).

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

/// JSON-RPC and MCP error codes.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// 2026-07-28: an `Mcp-*` header disagrees with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: the server needs a capability the client did not declare.
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// 2026-07-28: the requested protocol version is not supported.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// Implementation-defined server error range: Warden's own refusals (policy, limits, upstream).
    pub const GATEWAY_DENIED: i64 = -32001;
    pub const UPSTREAM_UNAVAILABLE: i64 = -32003;
}

/// A JSON-RPC error Warden answers with.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: Cow<'static, str>,
    /// Stable machine-readable reason, e.g. `header_mismatch`.
    pub reason: &'static str,
    /// What the caller can do about it.
    pub hint: Cow<'static, str>,
    /// Extra `data` members required by the spec for this error (e.g. `supported`, `requested`).
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize)]
struct Body<'a> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    error: ErrorObj<'a>,
}

#[derive(Serialize)]
struct ErrorObj<'a> {
    code: i64,
    message: &'a str,
    data: serde_json::Map<String, serde_json::Value>,
}

impl RpcError {
    pub fn new(
        code: i64,
        message: impl Into<Cow<'static, str>>,
        reason: &'static str,
        hint: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            code,
            message: message.into(),
            reason,
            hint: hint.into(),
            extra: None,
        }
    }

    /// Add a member to `error.data`.
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value);
        self
    }

    /// The full JSON-RPC error response, echoing `id` exactly (or `null`).
    pub fn to_bytes(&self, id: Option<&RawValue>) -> Vec<u8> {
        let mut data = self.extra.clone().unwrap_or_default();
        data.insert("reason".into(), self.reason.into());
        data.insert("hint".into(), self.hint.as_ref().into());
        let body = Body {
            jsonrpc: "2.0",
            id: id.unwrap_or(RawValue::NULL),
            error: ErrorObj {
                code: self.code,
                message: &self.message,
                data,
            },
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_raw_id_and_carries_reason() {
        let id: &RawValue = serde_json::from_str("\"a\\u0041\"").unwrap();
        let e = RpcError::new(
            code::HEADER_MISMATCH,
            "Header mismatch",
            "header_mismatch",
            "send Mcp-Method equal to the body method",
        )
        .with("header", "Mcp-Method".into());
        let out = String::from_utf8(e.to_bytes(Some(id))).unwrap();
        assert!(out.contains(r#""id":"a\u0041""#), "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["error"]["code"], -32020);
        assert_eq!(v["error"]["data"]["reason"], "header_mismatch");
        assert_eq!(v["error"]["data"]["header"], "Mcp-Method");
        let none = String::from_utf8(e.to_bytes(None)).unwrap();
        assert!(none.contains(r#""id":null"#));
    }
}
