//! `x-mcp-header` custom headers of the 2026-07-28 generation (SEP-2243; P1.1, C15).
//!
//! On each item of a `tools/list` result (the core's `list_item` hook, on every path) this guard
//! reads the tool's `inputSchema` annotations: a tool with an invalid annotation (or a definition
//! two readers could read differently: a duplicate key, an unreadable value) is withheld from the
//! list the client sees (the core splices it out; the other tools stay byte-for-byte), and the
//! valid annotations are remembered by upstream and the upstream's tool name. On `tools/call` it
//! hands the called tool's annotations to the protocol rules, which check every
//! `Mcp-Param-{Name}` header against the argument it mirrors. A call to a tool that was withheld
//! is refused.
//!
//! A call to a tool whose definition Warden has not seen (no `tools/list` went through it yet)
//! is not let through unchecked (#13 item 5a): the guard lists the routed upstream's tools itself
//! (`ctx.upstream_channel`) and decides with what it learnt; a list that fails refuses the call
//! (502). One list of an upstream is under way at a time and every call waiting on it decides
//! with its result (a concurrent call cannot slip through while it runs); an upstream is listed
//! at most once every ten seconds (a failure is retried after a second; calls meanwhile are
//! refused). A tool still unknown afterwards has no annotations Warden could check, so a call
//! carrying `Mcp-Param-*` headers for it is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warden_guard::{Check, Ctx, Guard, ItemVerdict, ListItem, ListKind, Listed, Refusal, Verdict};
use warden_proto::error::code;
use warden_proto::headers::{ParamHeader, param_headers};
use warden_proto::{Generation, Message, strict};

enum Entry {
    Valid(Arc<Vec<ParamHeader>>),
    Invalid(String),
}

/// When the guard last listed an upstream itself, and the error if that list failed. Held
/// while a list is under way: calls for the same upstream wait for its outcome.
type ListGate = Arc<tokio::sync::Mutex<Option<(Instant, Option<String>)>>>;

/// Annotations by (upstream, the upstream's tool name).
#[derive(Default)]
pub struct ToolHeaders {
    tools: Mutex<HashMap<(Arc<str>, String), Entry>>,
    /// One gate per upstream (upstream names come from the configuration: bounded).
    listed: Mutex<HashMap<Arc<str>, ListGate>>,
}

/// Deepest schema nesting searched for annotations.
const MAX_SCHEMA_DEPTH: usize = 32;
/// Most tools remembered (a hostile server cannot grow the map without bound).
const MAX_TOOLS: usize = 65_536;
/// Least time between two lists of one upstream the guard sends itself (calls to unknown tools
/// cannot make Warden list an upstream once per call). A tool added later is learnt from the
/// list the client makes on `list_changed`, or from the next own list after this.
const RELIST_EVERY: Duration = Duration::from_secs(10);
/// Least time before a failed own list is tried again (calls meanwhile are refused at once).
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(1);

/// What is known about the called tool.
enum Known {
    Valid(Arc<Vec<ParamHeader>>),
    Invalid(String),
    Unknown,
}

impl ToolHeaders {
    fn lookup(&self, upstream: &Arc<str>, name: &str) -> Known {
        let tools = self.tools.lock().unwrap_or_else(|p| p.into_inner());
        match tools.get(&(upstream.clone(), name.to_owned())) {
            Some(Entry::Valid(specs)) => Known::Valid(specs.clone()),
            Some(Entry::Invalid(why)) => Known::Invalid(why.clone()),
            None => Known::Unknown,
        }
    }

    fn gate(&self, upstream: &Arc<str>) -> ListGate {
        self.listed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(upstream.clone())
            .or_default()
            .clone()
    }

    fn decide(known: Known, name: &str, ctx: &mut Ctx) -> Verdict {
        match known {
            Known::Valid(specs) => {
                ctx.param_headers = Some(specs);
                Verdict::Continue
            }
            Known::Invalid(why) => Verdict::Deny(Refusal::new(
                400,
                code::INVALID_PARAMS,
                "tool_definition_invalid",
                "P1.1",
                format!("Tool '{name}' was withheld: {why}"),
                "the server's definition of this tool has an invalid x-mcp-header annotation",
            )),
            Known::Unknown => {
                let mirrored = ctx.headers.as_ref().and_then(|h| {
                    h.keys()
                        .find(|k| k.as_str().starts_with("mcp-param-"))
                        .cloned()
                });
                match mirrored {
                    None => Verdict::Continue,
                    Some(h) => Verdict::Deny(
                        Refusal::new(
                            400,
                            code::HEADER_MISMATCH,
                            "param_header_unverifiable",
                            "P1.1",
                            format!("Header mismatch: {h} names a parameter of tool '{name}', whose definition the upstream does not list"),
                            "call tools the upstream lists; Mcp-Param-* headers mirror x-mcp-header annotations of a listed tool",
                        )
                        .with_data("header", h.as_str().into()),
                    ),
                }
            }
        }
    }

    fn on_call<'a>(&'a self, ctx: &'a mut Ctx) -> Check<'a> {
        let Some(route) = &ctx.route else {
            return Check::Ready(Verdict::Continue);
        };
        let Some(name) = route.original.clone() else {
            return Check::Ready(Verdict::Continue);
        };
        let upstream = route.upstream.clone();
        let known = self.lookup(&upstream, &name);
        // Over stdio there are no headers to check: what is known decides.
        let channel = ctx
            .upstream_channel
            .clone()
            .filter(|_| ctx.headers.is_some());
        let (Known::Unknown, Some(channel)) = (&known, channel) else {
            return Check::Ready(Self::decide(known, &name, ctx));
        };
        let gate = self.gate(&upstream);
        Check::Later(Box::pin(async move {
            // Wait for a list under way; then what it learnt decides.
            let mut last = gate.lock().await;
            let known = self.lookup(&upstream, &name);
            if !matches!(known, Known::Unknown) {
                return Self::decide(known, &name, ctx);
            }
            match &*last {
                Some((at, None)) if at.elapsed() < RELIST_EVERY => {
                    return Self::decide(known, &name, ctx);
                }
                Some((at, Some(why))) if at.elapsed() < RETRY_FAILED_AFTER => {
                    return Verdict::Deny(unavailable(&name, why));
                }
                _ => {}
            }
            match channel.list(ListKind::Tools).await {
                Ok(Listed::Items(_)) => {
                    *last = Some((Instant::now(), None));
                    let known = self.lookup(&upstream, &name);
                    Self::decide(known, &name, ctx)
                }
                // The core refuses the generation itself.
                Ok(Listed::Unsupported) => Verdict::Continue,
                Err(why) => {
                    let refusal = unavailable(&name, &why);
                    *last = Some((Instant::now(), Some(why)));
                    Verdict::Deny(refusal)
                }
            }
        }))
    }

    fn on_item(&self, item: &ListItem<'_>) -> ItemVerdict {
        let entry = match definition(item) {
            Ok(schema) => match param_headers(&schema, MAX_SCHEMA_DEPTH) {
                Ok(specs) => Entry::Valid(Arc::new(specs)),
                Err(why) => Entry::Invalid(why),
            },
            Err(why) => Entry::Invalid(why),
        };
        let verdict = match &entry {
            Entry::Valid(_) => ItemVerdict::Keep,
            Entry::Invalid(why) => {
                tracing::warn!(tool = %item.original, %why, "tool withheld: invalid definition or x-mcp-header annotation");
                ItemVerdict::Drop {
                    reason: "tool_definition_invalid",
                    control: "P1.1",
                }
            }
        };
        let mut tools = self.tools.lock().unwrap_or_else(|p| p.into_inner());
        if tools.len() < MAX_TOOLS {
            tools.insert((item.upstream.into(), item.original.to_owned()), entry);
        }
        verdict
    }
}

/// The tool's definition could not be listed: fail closed.
fn unavailable(name: &str, why: &str) -> Refusal {
    Refusal::new(
        502,
        code::UPSTREAM_UNAVAILABLE,
        "tool_definitions_unavailable",
        "P1.1",
        format!("Tool '{name}' cannot be checked: its definition could not be listed"),
        format!("the upstream's tools/list failed ({why}); retry"),
    )
}

/// The tool's `inputSchema`, read strictly: the item and its schema must be readable alike by
/// every reader (no duplicate key: a client must not see other annotations than Warden).
fn definition(item: &ListItem<'_>) -> Result<serde_json::Value, String> {
    let members = strict::members(item.raw)
        .map_err(|e| format!("the tool definition cannot be read: {e}"))?
        .ok_or("the tool definition is not an object")?;
    let Some((_, schema)) = members.iter().find(|(k, _)| k == "inputSchema") else {
        return Ok(serde_json::Value::Null);
    };
    strict::readable(schema.get()).map_err(|e| format!("inputSchema cannot be read: {e}"))?;
    serde_json::from_str(schema.get()).map_err(|e| format!("inputSchema cannot be read: {e}"))
}

impl Guard for ToolHeaders {
    fn name(&self) -> &'static str {
        "tool_headers"
    }
    fn client_message<'a>(&'a self, msg: &'a Message<'a>, ctx: &'a mut Ctx) -> Check<'a> {
        if ctx.generation != Some(Generation::Stateless) || msg.method() != Some("tools/call") {
            return Check::Ready(Verdict::Continue);
        }
        self.on_call(ctx)
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

    /// Lists as the core would: every item through the guard's `list_item` hook.
    struct FakeUpstream {
        guard: Arc<ToolHeaders>,
        items: Vec<&'static str>,
        fail: bool,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl warden_guard::UpstreamChannel for FakeUpstream {
        fn list(&self, _kind: ListKind) -> warden_guard::BoxFuture<'_, Result<Listed, String>> {
            Box::pin(async move {
                self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                if self.fail {
                    return Err("unreachable".into());
                }
                let mut ctx = Ctx::test();
                ctx.generation = Some(Generation::Stateless);
                for raw in &self.items {
                    let raw = RawValue::from_string((*raw).into()).unwrap();
                    let name = crate::exchange::lists::name_of(&raw, ListKind::Tools).unwrap();
                    let _ = ready(self.guard.list_item(&item(&raw, &name), &ctx));
                }
                Ok(Listed::Items(self.items.len()))
            })
        }
    }

    fn call_ctx(name: &str, channel: Arc<FakeUpstream>, param_header: bool) -> Ctx {
        let mut ctx = Ctx::test();
        ctx.generation = Some(Generation::Stateless);
        ctx.route = Some(Route {
            original: Some(name.into()),
            ..Route::to(0, "u".into())
        });
        let mut h = http::HeaderMap::new();
        if param_header {
            h.insert("mcp-param-region", http::HeaderValue::from_static("us"));
        }
        ctx.headers = Some(Arc::new(h));
        ctx.upstream_channel = Some(channel);
        ctx
    }

    const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t"}}"#;

    /// #13 item 5 (a): a call before any list makes the guard list the upstream itself.
    #[tokio::test]
    async fn an_unseen_tool_is_listed_before_its_call_is_judged() {
        let g = Arc::new(ToolHeaders::default());
        let up = Arc::new(FakeUpstream {
            guard: g.clone(),
            items: vec![
                r#"{"name":"t","inputSchema":{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"Region"}}}}"#,
                r#"{"name":"dup","inputSchema":{"type":"object"},"inputSchema":{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"R"}}}}"#,
            ],
            fail: false,
            calls: Default::default(),
        });
        let m = Message::parse(CALL).unwrap();
        let mut ctx = call_ctx("t", up.clone(), false);
        assert_eq!(
            g.client_message(&m, &mut ctx).resolve().await,
            Verdict::Continue
        );
        assert_eq!(ctx.param_headers.as_ref().unwrap()[0].name, "Region");
        // The definition with two schemas was withheld, and its calls are refused.
        let mut ctx = call_ctx("dup", up.clone(), false);
        assert!(matches!(g.client_message(&m, &mut ctx).resolve().await,
            Verdict::Deny(r) if r.reason == "tool_definition_invalid"));
        // A tool the upstream does not list: headers mirroring it cannot be verified.
        let mut ctx = call_ctx("ghost", up.clone(), true);
        assert!(matches!(g.client_message(&m, &mut ctx).resolve().await,
            Verdict::Deny(r) if r.reason == "param_header_unverifiable" && r.rpc_code == -32020));
        let mut ctx = call_ctx("ghost", up.clone(), false);
        assert_eq!(
            g.client_message(&m, &mut ctx).resolve().await,
            Verdict::Continue
        );
        assert_eq!(
            up.calls.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "one list per upstream per interval, whatever is called"
        );
    }

    #[tokio::test]
    async fn a_failed_list_fails_the_call_closed() {
        let g = Arc::new(ToolHeaders::default());
        let up = Arc::new(FakeUpstream {
            guard: g.clone(),
            items: vec![],
            fail: true,
            calls: Default::default(),
        });
        let m = Message::parse(CALL).unwrap();
        for _ in 0..2 {
            let mut ctx = call_ctx("t", up.clone(), false);
            assert!(matches!(g.client_message(&m, &mut ctx).resolve().await,
                Verdict::Deny(r) if r.reason == "tool_definitions_unavailable" && r.status == 502));
        }
        assert_eq!(
            up.calls.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "a failure is remembered for a second: calls meanwhile fail closed at once"
        );
    }

    /// A call that arrives while a list is under way waits for it: it cannot pass unchecked.
    #[tokio::test]
    async fn concurrent_calls_wait_for_the_list_under_way() {
        let g = Arc::new(ToolHeaders::default());
        let up = Arc::new(FakeUpstream {
            guard: g.clone(),
            items: vec![
                r#"{"name":"t","inputSchema":{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"Region"}}}}"#,
            ],
            fail: false,
            calls: Default::default(),
        });
        let m = Message::parse(CALL).unwrap();
        let (mut c1, mut c2) = (
            call_ctx("t", up.clone(), false),
            call_ctx("t", up.clone(), false),
        );
        let (v1, v2) = tokio::join!(
            g.client_message(&m, &mut c1).resolve(),
            g.client_message(&m, &mut c2).resolve()
        );
        assert_eq!((v1, v2), (Verdict::Continue, Verdict::Continue));
        for c in [&c1, &c2] {
            assert_eq!(c.param_headers.as_ref().unwrap()[0].name, "Region");
        }
        assert_eq!(up.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
