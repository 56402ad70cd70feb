//! `x-mcp-header` custom headers of the 2026-07-28 generation (SEP-2243; P1.1, C15).
//!
//! On `tools/list` results this guard reads each tool's `inputSchema` annotations: a tool with an
//! invalid annotation is removed from the list the client sees (its other tools are untouched,
//! byte-for-byte), and the valid annotations are remembered by tool name. On `tools/call` it hands
//! the called tool's annotations to the protocol rules, which check every `Mcp-Param-{Name}`
//! header against the argument it mirrors. A call to a tool that was withheld is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;
use warden_proto::error::code;
use warden_proto::headers::{ParamHeader, param_headers};
use warden_proto::{Generation, Kind, Message, envelope::span_in, splice};

use crate::guard::{Check, Ctx, Guard, Refusal, Verdict};

enum Entry {
    Valid(Arc<Vec<ParamHeader>>),
    Invalid(String),
}

#[derive(Default)]
pub struct ToolHeaders {
    tools: Mutex<HashMap<String, Entry>>,
}

/// Deepest schema nesting searched for annotations.
const MAX_SCHEMA_DEPTH: usize = 32;

impl ToolHeaders {
    fn on_call(&self, msg: &Message<'_>, ctx: &mut Ctx) -> Verdict {
        let Some(name) = msg
            .params_view()
            .ok()
            .and_then(|p| p.name)
            .map(|n| n.into_owned())
        else {
            return Verdict::Continue;
        };
        let tools = self.tools.lock().unwrap_or_else(|p| p.into_inner());
        match tools.get(&name) {
            Some(Entry::Valid(specs)) => {
                ctx.param_headers = Some(specs.clone());
                Verdict::Continue
            }
            Some(Entry::Invalid(why)) => Verdict::Deny(Refusal::new(
                400,
                code::INVALID_PARAMS,
                "tool_definition_invalid",
                "P1.1",
                format!("Tool '{name}' was withheld: {why}"),
                "the server's definition of this tool has an invalid x-mcp-header annotation",
            )),
            None => Verdict::Continue,
        }
    }

    fn on_list(&self, msg: &Message<'_>) -> Verdict {
        let Some(result) = msg.result() else {
            return Verdict::Continue;
        };
        let Ok(fields) = serde_json::from_str::<HashMap<&str, &RawValue>>(result.get()) else {
            return Verdict::Continue;
        };
        let Some(tools_raw) = fields.get("tools") else {
            return Verdict::Continue;
        };
        let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(tools_raw.get()) else {
            return Verdict::Continue;
        };
        #[derive(serde::Deserialize)]
        struct Tool {
            name: String,
            #[serde(rename = "inputSchema", default)]
            input_schema: serde_json::Value,
        }
        let mut kept = Vec::with_capacity(items.len());
        let mut dropped = 0;
        let mut tools = self.tools.lock().unwrap_or_else(|p| p.into_inner());
        for item in &items {
            let Ok(t) = serde_json::from_str::<Tool>(item.get()) else {
                kept.push(item.get());
                continue;
            };
            match param_headers(&t.input_schema, MAX_SCHEMA_DEPTH) {
                Ok(specs) => {
                    tools.insert(t.name, Entry::Valid(Arc::new(specs)));
                    kept.push(item.get());
                }
                Err(why) => {
                    tracing::warn!(tool = %t.name, %why, "tool withheld: invalid x-mcp-header annotation");
                    tools.insert(t.name, Entry::Invalid(why));
                    dropped += 1;
                }
            }
        }
        if dropped == 0 {
            return Verdict::Continue;
        }
        let Some(span) = span_in(msg.raw(), tools_raw) else {
            return Verdict::Continue;
        };
        let array = format!("[{}]", kept.join(","));
        match splice::replace(msg.raw(), span, array.as_bytes()) {
            Ok(b) => Verdict::Rewrite(b),
            Err(_) => Verdict::Deny(Refusal::new(
                502,
                code::INTERNAL_ERROR,
                "tool_list_rewrite_failed",
                "P1.1",
                "Tool list could not be filtered",
                "report this",
            )),
        }
    }
}

impl Guard for ToolHeaders {
    fn name(&self) -> &'static str {
        "tool_headers"
    }
    fn client_message<'a>(&'a self, msg: &'a Message<'a>, ctx: &'a mut Ctx) -> Check<'a> {
        if ctx.generation != Some(Generation::Stateless) || msg.method() != Some("tools/call") {
            return Check::Ready(Verdict::Continue);
        }
        Check::Ready(self.on_call(msg, ctx))
    }
    fn server_message<'a>(&'a self, msg: &'a Message<'a>, ctx: &'a mut Ctx) -> Check<'a> {
        if ctx.generation != Some(Generation::Stateless)
            || msg.kind() != Kind::Response
            || ctx.method.as_deref() != Some("tools/list")
        {
            return Check::Ready(Verdict::Continue);
        }
        Check::Ready(self.on_list(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(c: Check<'_>) -> Verdict {
        match c {
            Check::Ready(v) => v,
            Check::Later(_) => panic!("sync guard"),
        }
    }

    #[test]
    fn drops_invalid_tools_and_remembers_valid_annotations() {
        let g = ToolHeaders::default();
        let mut ctx = Ctx::test();
        ctx.generation = Some(Generation::Stateless);
        ctx.method = Some("tools/list".into());
        let list = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[ {"name":"good","inputSchema":{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"Region"}}},"x":1} ,{"name":"bad","inputSchema":{"type":"object","properties":{"a":{"type":"array","items":{"type":"string","x-mcp-header":"A"}}}}}],"resultType":"complete"}}"#;
        let m = Message::parse(list).unwrap();
        let Verdict::Rewrite(out) = ready(g.server_message(&m, &mut ctx)) else {
            panic!("expected a rewrite")
        };
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains(r#"{"name":"good","inputSchema":{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"Region"}}},"x":1}"#), "{out}");
        assert!(!out.contains("\"bad\""), "{out}");
        assert!(out.ends_with(r#"],"resultType":"complete"}}"#), "{out}");

        ctx.method = Some("tools/call".into());
        let call = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"good"}}"#;
        let m = Message::parse(call).unwrap();
        assert_eq!(ready(g.client_message(&m, &mut ctx)), Verdict::Continue);
        assert_eq!(ctx.param_headers.as_ref().unwrap()[0].name, "Region");
        let call_bad = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"bad"}}"#;
        let m = Message::parse(call_bad).unwrap();
        assert!(
            matches!(ready(g.client_message(&m, &mut ctx)), Verdict::Deny(r) if r.reason == "tool_definition_invalid")
        );
    }
}
