//! Names a catalog does not know yet (several upstreams): before a call is refused as unknown,
//! the lists that could name it are asked for, **on the client's behalf and like any list the
//! client sends**: Warden's own `tools/list` (or `prompts/list`, `resources/list`,
//! `resources/templates/list`) meets the client guards with the client's context, goes to every
//! live upstream of the session, each answer meets `list_item` and the server guards, and the
//! merge withholds collisions (sticky, audited) exactly as for a client's list. The names fill
//! the session's catalog (a stateless request's own), then the call is routed again.
//!
//! It must not route (route does), merge (merge does) or answer the client: what the lists
//! say reaches the client only through the call's own answer.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};
use warden_audit::Decision;
use warden_guard::{Ctx, ListKind};
use warden_proto::Message;

use super::fanout;
use super::merge::merge_list;
use super::route::{self, Target};
use crate::catalog::Catalog;
use crate::gateway::{Gateway, SessionState};
use crate::pipeline::Passed;

/// Where `msg` goes, asking the upstreams' lists when its name is not known yet.
pub(super) async fn target(
    gw: &Gateway,
    ctx: &Ctx,
    msg: &Message<'_>,
    headers: &HeaderMap,
    session: Option<&SessionState>,
) -> Target {
    let mut own = Catalog::default();
    let kinds = match resolve(gw, ctx, msg, session, &own) {
        Target::Unlisted(kinds) => kinds,
        t => return t,
    };
    for kind in kinds {
        // Boxed: the rare path's state stays out of every exchange's future.
        Box::pin(fill(gw, ctx, msg, headers, session, *kind, &mut own)).await;
    }
    match resolve(gw, ctx, msg, session, &own) {
        Target::Unlisted(_) => Target::Nowhere(route::unknown_name()),
        t => t,
    }
}

fn resolve(
    gw: &Gateway,
    ctx: &Ctx,
    msg: &Message<'_>,
    session: Option<&SessionState>,
    own: &Catalog,
) -> Target {
    let (generation, named) = (ctx.generation, ctx.tool.as_ref());
    match session {
        // One upstream: every message goes to it, no catalog is read (or locked).
        Some(s) if gw.upstreams.len() > 1 => route::resolve(
            gw,
            msg,
            generation,
            &s.catalog.lock().unwrap_or_else(|p| p.into_inner()),
            named,
        ),
        _ => route::resolve(gw, msg, generation, own, named),
    }
}

fn list_method(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Tools => "tools/list",
        ListKind::Prompts => "prompts/list",
        ListKind::Resources => "resources/list",
        ListKind::Templates => "resources/templates/list",
    }
}

/// One list of `kind` across the session's upstreams, through the guards, into the catalog.
async fn fill(
    gw: &Gateway,
    ctx: &Ctx,
    call: &Message<'_>,
    headers: &HeaderMap,
    session: Option<&SessionState>,
    kind: ListKind,
    own: &mut Catalog,
) {
    let method = list_method(kind);
    let raw = Bytes::from(list_request(ctx, call, method));
    let Ok(msg) = Message::parse(&raw) else {
        return;
    };
    let headers = Arc::new(list_headers(headers, method));
    let mut lctx = ctx.clone();
    lctx.method = Some(method.into());
    lctx.tool = None;
    lctx.route = None;
    lctx.param_headers = None;
    lctx.headers = Some(headers.clone());
    let cleared = match gw.pipeline.client(&raw, &msg, &mut lctx).await {
        Ok(Passed::Forward(c)) => c,
        Ok(Passed::Answer(_)) => {
            // A guard answered the list itself: the upstreams were not asked, nothing is learned.
            gw.audit_done(&lctx, Decision::Allow, Some(200), Some("answered_by_guard"));
            return;
        }
        Err(r) => {
            gw.audit_refusal(&lctx, &r, msg.id());
            return;
        }
    };
    let reparsed;
    let msg = if cleared.changed() {
        match Message::parse(cleared.bytes()) {
            Ok(m) => {
                reparsed = m;
                &reparsed
            }
            Err(_) => return,
        }
    } else {
        &msg
    };
    let parts = fanout::fan_out(gw, &lctx, &headers, session, msg, &cleared).await;
    if !parts.others.is_empty() {
        let mut ev = lctx.event("stream.parts_dropped", Decision::Info);
        ev.reason = Some("catalog_fill".into());
        ev.hint = Some(format!(
            "{} message(s) the upstreams sent before their list answers were not delivered: Warden asked for the list itself",
            parts.others.len()
        ));
        gw.audit.emit(ev);
    }
    {
        let mut session_cat = session.map(|s| s.catalog.lock().unwrap_or_else(|p| p.into_inner()));
        let into = session_cat.as_deref_mut().unwrap_or(own);
        merge_list(gw, &lctx, None, kind, &parts.finals, into);
    }
    gw.audit_done(&lctx, Decision::Allow, Some(200), Some("catalog_fill"));
}

/// Warden's list request, with the call's protocol `_meta` (what a 2026-07-28 upstream needs)
/// and nothing else of it.
fn list_request(ctx: &Ctx, call: &Message<'_>, method: &str) -> Vec<u8> {
    #[derive(serde::Deserialize)]
    struct P {
        #[serde(rename = "_meta", default)]
        meta: Map<String, Value>,
    }
    let meta: Map<String, Value> = call
        .params()
        .and_then(|p| serde_json::from_str::<P>(p.get()).ok())
        .map(|p| {
            p.meta
                .into_iter()
                .filter(|(k, _)| k.starts_with("io.modelcontextprotocol/"))
                .collect()
        })
        .unwrap_or_default();
    let mut params = Map::new();
    if !meta.is_empty() {
        params.insert("_meta".into(), Value::Object(meta));
    }
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": format!("warden-list-{}", ctx.request_id.0),
        "method": method,
        "params": params,
    })
    .to_string()
    .into_bytes()
}

/// The call's headers as a list's: `Mcp-Method` says the list, the call's `Mcp-Name` and
/// `Mcp-Param-*` go.
fn list_headers(call: &HeaderMap, method: &'static str) -> HeaderMap {
    let mut h = call.clone();
    h.remove("mcp-name");
    let params: Vec<_> = h
        .keys()
        .filter(|k| k.as_str().starts_with("mcp-param-"))
        .cloned()
        .collect();
    for k in params {
        h.remove(k);
    }
    if h.contains_key("mcp-method") {
        h.insert("mcp-method", HeaderValue::from_static(method));
    }
    h
}
