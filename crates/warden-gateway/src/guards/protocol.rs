//! Protocol rules of the stateless 2026-07-28 generation (P3.4, P1.1): every request carries its
//! version and client capabilities in `_meta` (-32602), names a version Warden supports (-32022,
//! with the supported list), and its `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and
//! `Mcp-Param-*` headers match the body (-32020). Notifications (whose `_meta` the 2026-07-28
//! schema leaves optional) carry `MCP-Protocol-Version` (every POST does) and `Mcp-Method`
//! equal to the body, and a `_meta` version, when present, agrees with the header. All refusals
//! are HTTP 400.
//!
//! The arguments an `Mcp-Param-*` header mirrors are read strictly (#13 item 5): arguments some
//! reader could not read (`1e400`, a lone surrogate, a duplicate key) are refused, and integers
//! are compared exactly. It must not trust a header it did not compare with the body.

use warden_proto::error::code;
use warden_proto::headers::{MetaHeaders, check_params, check_standard};
use warden_proto::{Generation, Kind, Message, ProtocolVersion, envelope::Params, strict};

use warden_guard::{Check, Ctx, Guard, Refusal, Verdict};

pub struct StatelessRules;

fn bad_request(
    rpc_code: i64,
    reason: &'static str,
    message: String,
    hint: &'static str,
) -> Refusal {
    Refusal::new(400, rpc_code, reason, "P3.4", message, hint)
}

/// The versions a stateless client may ask for, as the -32022 error lists them.
pub fn supported_stateless() -> serde_json::Value {
    ProtocolVersion::of_generation(Generation::Stateless)
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .into()
}

fn unsupported(version: &str) -> Refusal {
    bad_request(
        code::UNSUPPORTED_PROTOCOL_VERSION,
        "unsupported_protocol_version",
        format!("Unsupported protocol version: {version}"),
        "use one of the versions listed in error.data.supported",
    )
    .with_data("supported", supported_stateless())
    .with_data("requested", version.into())
}

fn version_mismatch(hv: &str, version: &str) -> Refusal {
    bad_request(
        code::HEADER_MISMATCH,
        "header_mismatch",
        format!(
            "Header mismatch: MCP-Protocol-Version '{hv}' does not match body _meta '{version}'"
        ),
        "send MCP-Protocol-Version equal to _meta io.modelcontextprotocol/protocolVersion",
    )
    .with_data("header", "MCP-Protocol-Version".into())
}

fn is_stateless(version: &str) -> bool {
    ProtocolVersion::parse(version).map(ProtocolVersion::generation) == Some(Generation::Stateless)
}

/// The `MCP-Protocol-Version` header, OWS trimmed (HTTP front end only).
fn header_version(ctx: &Ctx) -> Option<String> {
    ctx.headers
        .as_ref()
        .and_then(|h| h.get("mcp-protocol-version"))
        .map(|v| {
            v.to_str()
                .unwrap_or("")
                .trim_matches([' ', '\t'])
                .to_owned()
        })
}

impl StatelessRules {
    fn check(&self, msg: &Message<'_>, ctx: &Ctx) -> Result<(), Refusal> {
        if ctx.generation != Some(Generation::Stateless) {
            return Ok(());
        }
        let kind = msg.kind();
        if !matches!(kind, Kind::Request | Kind::Notification) {
            return Ok(());
        }
        let params = msg.params_view().map_err(|e| {
            bad_request(
                code::INVALID_PARAMS,
                "invalid_params",
                e.to_string(),
                "params must be an object",
            )
        })?;
        let meta = params.meta.as_ref();
        let body_version = meta.and_then(|m| m.protocol_version_str());
        let header_version = header_version(ctx);
        if kind == Kind::Request {
            let (Some(_), Some(_)) = (
                body_version.as_deref(),
                meta.and_then(|m| m.client_capabilities),
            ) else {
                return Err(bad_request(
                    code::INVALID_PARAMS,
                    "request_meta_missing",
                    "Missing required _meta fields".into(),
                    "2026-07-28 requests carry _meta io.modelcontextprotocol/protocolVersion and io.modelcontextprotocol/clientCapabilities",
                ));
            };
        }
        // A header that disagrees with the body is a mismatch (-32020) before it is a version
        // question; a notification without `_meta` is judged by its header.
        let version = match (header_version.as_deref(), body_version.as_deref()) {
            (Some(hv), Some(bv)) if hv != bv => return Err(version_mismatch(hv, bv)),
            (_, Some(v)) | (Some(v), None) => Some(v),
            (None, None) => None,
        };
        if let Some(v) = version
            && !is_stateless(v)
        {
            return Err(unsupported(v));
        }
        if ctx.headers.is_some() {
            self.headers(msg, ctx, &params)?;
        }
        Ok(())
    }

    /// SEP-2243 on the HTTP front end: the standard headers, then the called tool's
    /// `Mcp-Param-*` headers.
    fn headers(&self, msg: &Message<'_>, ctx: &Ctx, params: &Params<'_>) -> Result<(), Refusal> {
        let Some(h) = &ctx.headers else {
            return Ok(());
        };
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        let meta_headers = MetaHeaders {
            protocol_version: get("mcp-protocol-version"),
            method: get("mcp-method"),
            name: get("mcp-name"),
        };
        check_standard(&meta_headers, msg, params).map_err(|e| Refusal::header_mismatch(&e))?;
        if let (Some(specs), Kind::Request, Some("tools/call")) =
            (&ctx.param_headers, msg.kind(), msg.method())
            && !specs.is_empty()
        {
            if let Some(args) = params.arguments {
                strict::readable(args.get()).map_err(|e| {
                    Refusal::new(
                        400,
                        code::INVALID_PARAMS,
                        "arguments_unreadable",
                        "P1.1",
                        format!("Invalid params: arguments cannot be read: {e}"),
                        "send arguments every JSON reader reads alike: no duplicate keys, numbers within double range, valid Unicode strings",
                    )
                })?;
            }
            check_params(specs, params.arguments, get).map_err(|e| Refusal::header_mismatch(&e))?;
        }
        Ok(())
    }
}

impl Guard for StatelessRules {
    fn name(&self) -> &'static str {
        "stateless_rules"
    }
    fn client_message<'a>(&'a self, msg: &'a Message<'a>, ctx: &'a mut Ctx) -> Check<'a> {
        Check::Ready(match self.check(msg, ctx) {
            Ok(()) => Verdict::Continue,
            Err(r) => Verdict::Deny(r),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};
    use std::sync::Arc;

    fn run(body: &str, headers: &[(&'static str, &str)]) -> Verdict {
        let m = Message::parse(body.as_bytes()).unwrap();
        let mut ctx = Ctx::test();
        ctx.generation = Some(Generation::Stateless);
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        ctx.headers = Some(Arc::new(h));
        match StatelessRules.client_message(&m, &mut ctx) {
            Check::Ready(v) => v,
            Check::Later(_) => panic!("sync guard"),
        }
    }

    fn code_of(v: Verdict) -> i64 {
        match v {
            Verdict::Deny(r) => {
                assert_eq!(r.status, 400);
                r.rpc_code
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

    #[test]
    fn accepts_a_well_formed_request() {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo",{META}}}}}"#
        );
        let v = run(
            &body,
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
            ],
        );
        assert_eq!(v, Verdict::Continue);
    }

    #[test]
    fn refuses_missing_meta_unsupported_version_and_spoofed_headers() {
        let h = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ];
        assert_eq!(
            code_of(run(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#,
                &h
            )),
            -32602
        );
        let old = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"1900-01-01","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        let old_h = [
            ("mcp-protocol-version", "1900-01-01"),
            ("mcp-method", "tools/list"),
        ];
        assert_eq!(code_of(run(old, &old_h)), -32022);
        // A header that disagrees with the body is a mismatch first.
        assert_eq!(code_of(run(old, &h)), -32020);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo",{META}}}}}"#
        );
        let spoof = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "rm_rf"),
        ];
        assert_eq!(code_of(run(&body, &spoof)), -32020);
        assert_eq!(
            code_of(run(
                &body,
                &[
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "tools/call")
                ]
            )),
            -32020
        );
    }

    /// #13 item 7: a stateless notification meets the header rules too.
    #[test]
    fn notifications_carry_matching_headers() {
        let note =
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#;
        let ok = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "notifications/cancelled"),
        ];
        assert_eq!(run(note, &ok), Verdict::Continue);
        let spoofed = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ];
        assert_eq!(code_of(run(note, &spoofed)), -32020);
        assert_eq!(
            code_of(run(note, &[("mcp-method", "notifications/cancelled")])),
            -32020
        );
        let meta = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#;
        assert_eq!(code_of(run(meta, &ok)), -32020);
        let old = [
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-method", "notifications/cancelled"),
        ];
        assert_eq!(code_of(run(meta, &old)), -32022);
    }

    fn call_with(args: &str, headers: &[(&'static str, &str)]) -> Verdict {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{args},{META}}}}}"#
        );
        let m = Message::parse(body.as_bytes()).unwrap();
        let mut ctx = Ctx::test();
        ctx.generation = Some(Generation::Stateless);
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "t"),
        ]
        .iter()
        .chain(headers)
        {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        ctx.headers = Some(Arc::new(h));
        ctx.param_headers = Some(Arc::new(vec![warden_proto::headers::ParamHeader {
            name: "N".into(),
            path: vec!["n".into()],
        }]));
        match StatelessRules.client_message(&m, &mut ctx) {
            Check::Ready(v) => v,
            Check::Later(_) => panic!("sync guard"),
        }
    }

    /// #13 item 5 (b, c): unreadable arguments are refused, integers compare exactly.
    #[test]
    fn mirrored_arguments_are_read_strictly() {
        let n = |v| [("mcp-param-n", v)];
        assert_eq!(call_with(r#"{"n":42}"#, &n("42")), Verdict::Continue);
        assert_eq!(
            code_of(call_with(
                r#"{"n":9007199254740993}"#,
                &n("9007199254740992")
            )),
            -32020
        );
        // (Duplicate keys never get this far: the envelope refuses them.)
        for unreadable in [r#"{"n":42,"x":1e400}"#, r#"{"n":42,"x":"\ud800"}"#] {
            assert_eq!(
                code_of(call_with(unreadable, &n("42"))),
                -32602,
                "{unreadable}"
            );
        }
    }
}
