//! Protocol rules of the stateless 2026-07-28 generation (P3.4, P1.1): every request carries its
//! version and client capabilities in `_meta` (-32602), names a version Warden supports (-32022,
//! with the supported list), and its `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and
//! `Mcp-Param-*` headers match the body (-32020). All refusals are HTTP 400.

use warden_proto::error::code;
use warden_proto::headers::{MetaHeaders, check_params, check_standard};
use warden_proto::{Generation, Kind, Message, ProtocolVersion};

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

impl StatelessRules {
    fn check(&self, msg: &Message<'_>, ctx: &Ctx) -> Result<(), Refusal> {
        if ctx.generation != Some(Generation::Stateless) || msg.kind() != Kind::Request {
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
        let version = meta.and_then(|m| m.protocol_version_str());
        let (Some(version), Some(_)) =
            (version.as_deref(), meta.and_then(|m| m.client_capabilities))
        else {
            return Err(bad_request(
                code::INVALID_PARAMS,
                "request_meta_missing",
                "Missing required _meta fields".into(),
                "2026-07-28 requests carry _meta io.modelcontextprotocol/protocolVersion and io.modelcontextprotocol/clientCapabilities",
            ));
        };
        // A header that disagrees with the body is a mismatch (-32020) before it is a version question.
        let header_version = ctx
            .headers
            .as_ref()
            .and_then(|h| h.get("mcp-protocol-version"))
            .map(|v| {
                v.to_str()
                    .unwrap_or("")
                    .trim_matches([' ', '\t'])
                    .to_owned()
            });
        if let Some(hv) = header_version.filter(|hv| hv != version) {
            return Err(bad_request(code::HEADER_MISMATCH, "header_mismatch", format!("Header mismatch: MCP-Protocol-Version '{hv}' does not match body _meta '{version}'"), "send MCP-Protocol-Version equal to _meta io.modelcontextprotocol/protocolVersion")
                .with_data("header", "MCP-Protocol-Version".into()));
        }
        if ProtocolVersion::parse(version).map(ProtocolVersion::generation)
            != Some(Generation::Stateless)
        {
            return Err(bad_request(
                code::UNSUPPORTED_PROTOCOL_VERSION,
                "unsupported_protocol_version",
                format!("Unsupported protocol version: {version}"),
                "use one of the versions listed in error.data.supported",
            )
            .with_data("supported", supported_stateless())
            .with_data("requested", version.into()));
        }
        if let Some(h) = &ctx.headers {
            let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
            let meta_headers = MetaHeaders {
                protocol_version: get("mcp-protocol-version"),
                method: get("mcp-method"),
                name: get("mcp-name"),
            };
            let mismatch = |e: warden_proto::headers::HeaderMismatch| {
                bad_request(
                    code::HEADER_MISMATCH,
                    "header_mismatch",
                    format!("Header mismatch: {e}"),
                    "send Mcp-* headers equal to the body values (SEP-2243)",
                )
                .with_data("header", e.header.into())
            };
            check_standard(&meta_headers, msg, &params).map_err(mismatch)?;
            if let (Some(specs), "tools/call") =
                (&ctx.param_headers, msg.method().unwrap_or_default())
            {
                let args: Option<serde_json::Value> = params
                    .arguments
                    .and_then(|a| serde_json::from_str(a.get()).ok());
                let lookup = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
                check_params(specs, args.as_ref(), lookup).map_err(mismatch)?;
            }
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
}
