//! The `list_item` hook, applied by the core to every list answer on every path: each item of a
//! `tools/list`, `prompts/list`, `resources/list` or `resources/templates/list` result meets the
//! guards (bottom-up) with its upstream, original and exposed name. Kept items stay their
//! original bytes; the answer is spliced from the original message only when a guard dropped or
//! replaced an item, so a guard never re-splices a list by hand. An item with a duplicated
//! member (two `name`s: the guards and the client could read two tools) is withheld before any
//! guard sees it (`list_item_ambiguous`, #13 item 14).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::value::RawValue;
use warden_audit::Decision;
use warden_guard::{Ctx, ItemVerdict, ListItem, ListKind, Refusal};
use warden_proto::{Message, envelope::span_in, splice, strict};

use crate::gateway::Gateway;

/// Most items a list answer may hold (a hostile server cannot make Warden walk millions).
pub const MAX_ITEMS: usize = 10_000;

/// The exposed name of `original` from upstream `idx` (prefixed tools and prompts when several
/// upstreams share the endpoint; URIs are never prefixed).
pub fn exposed(gw: &Gateway, idx: usize, original: &str, kind: ListKind) -> String {
    match (&gw.upstreams[idx].cfg.prefix, kind, gw.upstreams.len() > 1) {
        (Some(p), ListKind::Tools | ListKind::Prompts, true) => format!("{p}_{original}"),
        _ => original.to_owned(),
    }
}

/// Apply the hook to list answer `msg` from the upstream `ctx.route` names. `None`: every item
/// kept as it is (the caller's bytes stand); `Some(bytes)`: the answer with items dropped or
/// replaced.
pub async fn filter(
    gw: &Gateway,
    ctx: &Ctx,
    msg: &Message<'_>,
    kind: ListKind,
) -> Result<Option<Bytes>, Refusal> {
    let Some(route) = &ctx.route else {
        return Err(Refusal::internal());
    };
    let Some(result) = msg.result_text() else {
        return Ok(None); // an error answer has no items
    };
    let fields: HashMap<String, &RawValue> = serde_json::from_str(result)
        .map_err(|_| Refusal::upstream_invalid("a list result that is not a JSON object"))?;
    let Some(array) = fields.get(kind.key()) else {
        return Ok(None);
    };
    let items: Vec<&RawValue> = serde_json::from_str(array.get())
        .map_err(|_| Refusal::upstream_invalid("a list whose items are not an array"))?;
    if items.len() > MAX_ITEMS {
        return Err(Refusal::upstream_invalid(format!(
            "a list of more than {MAX_ITEMS} items"
        )));
    }
    let mut out: Vec<std::borrow::Cow<'_, str>> = Vec::with_capacity(items.len());
    let mut changed = false;
    for item in &items {
        let Ok(original) = strict_name_of(item, kind) else {
            changed = true;
            let mut ev = ctx.event("list.item_withheld", Decision::Deny);
            ev.upstream = Some(route.upstream.clone());
            ev.reason = Some("list_item_ambiguous".into());
            ev.control = Some("P1.1");
            ev.hint = Some("a list item with a duplicated member was withheld".into());
            gw.audit.emit(ev);
            continue;
        };
        let original = original.unwrap_or_default();
        let exposed = exposed(gw, route.index, &original, kind);
        let li = ListItem {
            kind,
            raw: item,
            upstream: &route.upstream,
            original: &original,
            exposed: &exposed,
        };
        match gw.pipeline.list_item(&li, ctx).await {
            ItemVerdict::Keep => out.push(item.get().into()),
            ItemVerdict::Drop { reason, control } => {
                changed = true;
                let mut ev = ctx.event("list.item_withheld", Decision::Deny);
                ev.upstream = Some(route.upstream.clone());
                ev.tool = Some(exposed.as_str().into());
                ev.reason = Some(reason.into());
                ev.control = Some(control);
                gw.audit.emit(ev);
            }
            ItemVerdict::Replace(b) => {
                changed = true;
                let text = String::from_utf8(b).map_err(|_| Refusal::internal())?;
                out.push(text.into());
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    let span = span_in(msg.raw(), array).ok_or_else(Refusal::internal)?;
    let mut text = String::with_capacity(span.len());
    text.push('[');
    for (i, item) in out.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(item);
    }
    text.push(']');
    splice::replace(msg.raw(), span, text.as_bytes())
        .map(Bytes::from)
        .map(Some)
        .map_err(|_| Refusal::internal())
}

/// The item's name (or URI) member, if it is a string; `Err` when a member of the item is
/// duplicated.
fn strict_name_of(item: &RawValue, kind: ListKind) -> Result<Option<String>, ()> {
    let Some(members) = strict::members(item).map_err(|_| ())? else {
        return Ok(None);
    };
    Ok(members
        .iter()
        .find(|(k, _)| k == kind.name_field())
        .and_then(|(_, v)| serde_json::from_str(v.get()).ok()))
}

/// The item's name (or URI) member, if it is a string.
pub fn name_of(item: &RawValue, kind: ListKind) -> Option<String> {
    let fields: HashMap<String, &RawValue> = serde_json::from_str(item.get()).ok()?;
    serde_json::from_str(fields.get(kind.name_field())?.get()).ok()
}
