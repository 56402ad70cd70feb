//! `x-mcp-header` custom headers of the 2026-07-28 generation (SEP-2243; P1.1, C15).
//!
//! On each item of a `tools/list` result (the core's `list_item` hook, on every path) this guard
//! reads the tool's `inputSchema` annotations: a tool with an invalid annotation is withheld
//! from the list the client sees (the core splices it out; the other tools stay byte-for-byte),
//! and the valid annotations are remembered by upstream and the upstream's tool name. On `tools/call` it hands
//! the called tool's annotations to the protocol rules, which check every `Mcp-Param-{Name}`
//! header against the argument it mirrors. A call to a tool that was withheld is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use warden_guard::{Check, Ctx, Guard, ItemVerdict, ListItem, ListKind, Refusal, Verdict};
use warden_proto::error::code;
use warden_proto::headers::{ParamHeader, param_headers};
use warden_proto::{Generation, Message};

enum Entry {
    Valid(Arc<Vec<ParamHeader>>),
    Invalid(String),
}

/// Annotations by (upstream, the upstream's tool name).
#[derive(Default)]
pub struct ToolHeaders {
    tools: Mutex<HashMap<(Arc<str>, String), Entry>>,
}

/// Deepest schema nesting searched for annotations.
const MAX_SCHEMA_DEPTH: usize = 32;
/// Most tools remembered (a hostile server cannot grow the map without bound).
const MAX_TOOLS: usize = 65_536;

impl ToolHeaders {
    fn on_call(&self, ctx: &mut Ctx) -> Verdict {
        let Some(route) = &ctx.route else {
            return Verdict::Continue;
        };
        let Some(name) = route.original.as_deref() else {
            return Verdict::Continue;
        };
        let tools = self.tools.lock().unwrap_or_else(|p| p.into_inner());
        match tools.get(&(route.upstream.clone(), name.to_owned())) {
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

    fn on_item(&self, item: &ListItem<'_>) -> ItemVerdict {
        #[derive(serde::Deserialize)]
        struct Tool {
            #[serde(rename = "inputSchema", default)]
            input_schema: serde_json::Value,
        }
        let Ok(t) = serde_json::from_str::<Tool>(item.raw.get()) else {
            return ItemVerdict::Keep;
        };
        let entry = match param_headers(&t.input_schema, MAX_SCHEMA_DEPTH) {
            Ok(specs) => Entry::Valid(Arc::new(specs)),
            Err(why) => {
                tracing::warn!(tool = %item.original, %why, "tool withheld: invalid x-mcp-header annotation");
                Entry::Invalid(why)
            }
        };
        let verdict = match entry {
            Entry::Valid(_) => ItemVerdict::Keep,
            Entry::Invalid(_) => ItemVerdict::Drop {
                reason: "tool_definition_invalid",
                control: "P1.1",
            },
        };
        let mut tools = self.tools.lock().unwrap_or_else(|p| p.into_inner());
        if tools.len() < MAX_TOOLS {
            tools.insert((item.upstream.into(), item.original.to_owned()), entry);
        }
        verdict
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
        Check::Ready(self.on_call(ctx))
    }
    fn list_item<'a>(&'a self, item: &'a ListItem<'a>, ctx: &'a Ctx) -> Check<'a, ItemVerdict> {
        if ctx.generation != Some(Generation::Stateless) || item.kind != ListKind::Tools {
            return Check::Ready(ItemVerdict::Keep);
        }
        Check::Ready(self.on_item(item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;
    use warden_guard::Route;

    fn ready<T>(c: Check<'_, T>) -> T {
        match c {
            Check::Ready(v) => v,
            Check::Later(_) => panic!("sync guard"),
        }
    }

    fn item<'a>(raw: &'a RawValue, name: &'a str) -> ListItem<'a> {
        ListItem {
            kind: ListKind::Tools,
            raw,
            upstream: "u",
            original: name,
            exposed: name,
        }
    }

    #[test]
    fn withholds_invalid_tools_and_remembers_valid_annotations() {
        let g = ToolHeaders::default();
        let mut ctx = Ctx::test();
        ctx.generation = Some(Generation::Stateless);
        let good = RawValue::from_string(r#"{"name":"good","inputSchema":{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"Region"}}},"x":1}"#.into()).unwrap();
        let bad = RawValue::from_string(r#"{"name":"bad","inputSchema":{"type":"object","properties":{"a":{"type":"array","items":{"type":"string","x-mcp-header":"A"}}}}}"#.into()).unwrap();
        assert_eq!(
            ready(g.list_item(&item(&good, "good"), &ctx)),
            ItemVerdict::Keep
        );
        assert!(matches!(
            ready(g.list_item(&item(&bad, "bad"), &ctx)),
            ItemVerdict::Drop {
                reason: "tool_definition_invalid",
                ..
            }
        ));

        ctx.route = Some(Route {
            original: Some("good".into()),
            ..Route::to(0, "u".into())
        });
        let call = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"good"}}"#;
        let m = Message::parse(call).unwrap();
        assert_eq!(ready(g.client_message(&m, &mut ctx)), Verdict::Continue);
        assert_eq!(ctx.param_headers.as_ref().unwrap()[0].name, "Region");
        ctx.route.as_mut().unwrap().original = Some("bad".into());
        let m = Message::parse(
            br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"bad"}}"#,
        )
        .unwrap();
        assert!(
            matches!(ready(g.client_message(&m, &mut ctx)), Verdict::Deny(r) if r.reason == "tool_definition_invalid")
        );
        // Another upstream's tool of the same name is not this one.
        ctx.route = Some(Route {
            original: Some("bad".into()),
            ..Route::to(1, "other".into())
        });
        assert_eq!(ready(g.client_message(&m, &mut ctx)), Verdict::Continue);
    }
}
