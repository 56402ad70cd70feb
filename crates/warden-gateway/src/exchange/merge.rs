//! Merging the answers of several upstreams into the one the client gets: `initialize` and
//! `server/discover` (capabilities unioned, Warden as `serverInfo`) and the lists (names prefixed,
//! collisions withheld for good and audited).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use warden_audit::Decision;
use warden_proto::Message;

use warden_guard::{Ctx, ListKind};

use super::lists::exposed;
use crate::catalog::Catalog;
use crate::gateway::Gateway;

/// The `result` object of an answer.
pub(super) fn result_of(b: &Bytes) -> Option<Map<String, Value>> {
    Message::parse(b)
        .ok()?
        .result()
        .and_then(|r| serde_json::from_str(r.get()).ok())
}

/// Merge `initialize` / `server/discover` results: capabilities unioned, Warden as serverInfo.
pub(super) fn merge_init(gw: &Gateway, id: Option<&RawValue>, answers: &[(usize, Bytes)]) -> Bytes {
    let mut base = answers
        .first()
        .and_then(|(_, b)| result_of(b))
        .unwrap_or_default();
    let mut caps = Map::new();
    let mut instructions = Vec::new();
    for (idx, b) in answers {
        let Some(r) = result_of(b) else { continue };
        if let Some(Value::Object(c)) = r.get("capabilities") {
            for (k, v) in c {
                match (caps.get_mut(k), v) {
                    (Some(Value::Object(have)), Value::Object(add)) => {
                        for (k2, v2) in add {
                            if v2 == &Value::Bool(true) || !have.contains_key(k2) {
                                have.insert(k2.clone(), v2.clone());
                            }
                        }
                    }
                    (None, _) => {
                        caps.insert(k.clone(), v.clone());
                    }
                    _ => {}
                }
            }
        }
        if let Some(Value::String(i)) = r.get("instructions") {
            instructions.push(format!("[{}] {i}", gw.upstreams[*idx].cfg.name));
        }
    }
    base.insert("capabilities".into(), Value::Object(caps));
    base.insert(
        "serverInfo".into(),
        serde_json::json!({"name": "warden", "version": env!("CARGO_PKG_VERSION")}),
    );
    if instructions.is_empty() {
        base.remove("instructions");
    } else {
        base.insert("instructions".into(), instructions.join("\n\n").into());
    }
    envelope_with(id, &Value::Object(base))
}

pub(super) fn envelope_with(id: Option<&RawValue>, result: &Value) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
        id.map_or("null", |i| i.get()),
        result
    ))
}

/// Merge one kind of list across upstreams, prefixing names and withholding collisions; the
/// names kept fill `into` (the session's catalog, or a request's own). A name two items share is
/// withheld for good ([`crate::catalog::Withheld`]), and one withheld before stays withheld
/// even when only one upstream lists it now (its twin may just be down).
pub(super) fn merge_list(
    gw: &Gateway,
    ctx: &Ctx,
    id: Option<&RawValue>,
    kind: ListKind,
    answers: &[(usize, Bytes)],
    into: &mut Catalog,
) -> Bytes {
    let mut items: Vec<(usize, String, String, Map<String, Value>)> = Vec::new();
    let mut base = Map::new();
    for (idx, b) in answers {
        let Some(mut r) = result_of(b) else { continue };
        if let Some(Value::Array(list)) = r.remove(kind.key()) {
            for item in list {
                let Value::Object(mut obj) = item else {
                    continue;
                };
                let Some(orig) = obj
                    .get(kind.name_field())
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                else {
                    continue;
                };
                let name = exposed(gw, *idx, &orig, kind);
                obj.insert(kind.name_field().into(), name.clone().into());
                items.push((*idx, name, orig, obj));
            }
        }
        r.remove("nextCursor");
        let private = r.get("cacheScope").and_then(Value::as_str) == Some("private");
        if base.is_empty() {
            base = r;
        } else if let (Some(Value::Number(a)), Some(Value::Number(b))) =
            (base.get("ttlMs").cloned(), r.get("ttlMs"))
            && b.as_u64() < a.as_u64()
        {
            base.insert("ttlMs".into(), Value::Number(b.clone()));
        }
        if private {
            base.insert("cacheScope".into(), "private".into());
        }
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (_, name, _, _) in &items {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    let mut withheld = gw.withheld.lock().unwrap_or_else(|p| p.into_inner());
    let mut kept = Vec::new();
    let mut entries = Vec::new();
    for (idx, name, orig, obj) in &items {
        let now = counts.get(name.as_str()).copied().unwrap_or(0) > 1;
        if now || withheld.contains(kind, name) {
            if now {
                withheld.insert(kind, name);
            }
            let mut ev = gw.event(ctx, "tool.name_collision", Decision::Deny);
            ev.upstream = Some(gw.upstreams[*idx].name.clone());
            ev.tool = Some(crate::gateway::truncate_shared(name, 256));
            ev.reason = Some("name_collision".into());
            ev.control = Some("P9.2");
            ev.hint = Some(if now {
                "two upstreams expose this name; it is withheld from every client until one gets a distinct prefix (config change and restart)".into()
            } else {
                "two upstreams exposed this name before; it stays withheld until one gets a distinct prefix (config change and restart)".into()
            });
            gw.audit.emit(ev);
            continue;
        }
        entries.push((name.clone(), *idx, orig.clone()));
        kept.push(Value::Object(obj.clone()));
    }
    drop(withheld);
    into.replace(kind, entries);
    base.insert(kind.key().into(), Value::Array(kept));
    envelope_with(id, &Value::Object(base))
}
