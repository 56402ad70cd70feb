//! Routing a call to the upstream that owns the name, with the original name spliced back into the
//! original bytes, and tagging what comes back so answers find their way home.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use warden_proto::{Kind, Message, envelope::span_in, splice};

use super::ListKind;
use crate::gateway::Gateway;
use crate::upstream::{Frame, UpstreamError};

pub(super) fn resolve_name(gw: &Gateway, kind: ListKind, name: &str) -> Option<(usize, String)> {
    for (idx, u) in gw.upstreams.iter().enumerate() {
        if let Some(rest) = u
            .cfg
            .prefix
            .as_deref()
            .and_then(|p| name.strip_prefix(p))
            .and_then(|r| r.strip_prefix('_'))
        {
            return Some((idx, rest.to_owned()));
        }
    }
    gw.catalog
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .names
        .get(&(kind, name.to_owned()))
        .cloned()
}

/// Replace the string at `field` of `params` with `value`, editing only that span.
pub(super) fn rewrite_param(msg: &Message<'_>, field: &str, value: &str) -> Option<Vec<u8>> {
    let params: HashMap<&str, &RawValue> = serde_json::from_str(msg.params()?.get()).ok()?;
    let span = span_in(msg.raw(), params.get(field)?)?;
    splice::replace(
        msg.raw(),
        span,
        serde_json::to_string(value).ok()?.as_bytes(),
    )
    .ok()
}

pub(super) fn route_by_name(
    gw: &Gateway,
    msg: &Message<'_>,
    kind: ListKind,
) -> Option<(usize, Option<Vec<u8>>)> {
    let name = msg.params_view().ok()?.name?.into_owned();
    let (idx, orig) = resolve_name(gw, kind, &name)?;
    let edit = (orig != name)
        .then(|| rewrite_param(msg, "name", &orig))
        .flatten();
    Some((idx, edit))
}

pub(super) fn route_by_uri(gw: &Gateway, msg: &Message<'_>) -> Option<(usize, Option<Vec<u8>>)> {
    let uri = msg.params_view().ok()?.uri?.into_owned();
    let catalog = gw.catalog.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((idx, _)) = catalog.names.get(&(ListKind::Resources, uri.clone())) {
        return Some((*idx, None));
    }
    let by_template = catalog
        .names
        .iter()
        .filter(|((k, _), _)| *k == ListKind::Templates)
        .find(|((_, t), _)| {
            let stem = t.split('{').next().unwrap_or(t);
            !stem.is_empty() && uri.starts_with(stem)
        });
    by_template
        .map(|(_, (idx, _))| (*idx, None))
        .or(Some((0, None)))
}

pub(super) fn route_completion(
    gw: &Gateway,
    msg: &Message<'_>,
) -> Option<(usize, Option<Vec<u8>>)> {
    #[derive(serde::Deserialize)]
    struct Ref {
        #[serde(rename = "type")]
        kind: String,
        name: Option<String>,
        uri: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct P<'a> {
        #[serde(rename = "ref", borrow)]
        r#ref: &'a RawValue,
    }
    let p: P<'_> = serde_json::from_str(msg.params()?.get()).ok()?;
    let r: Ref = serde_json::from_str(p.r#ref.get()).ok()?;
    match (r.kind.as_str(), r.name, r.uri) {
        ("ref/prompt", Some(name), _) => {
            let (idx, orig) = resolve_name(gw, ListKind::Prompts, &name)?;
            let span = span_in(
                msg.raw(),
                serde_json::from_str::<HashMap<&str, &RawValue>>(p.r#ref.get())
                    .ok()?
                    .get("name")?,
            )?;
            let edit = (orig != name)
                .then(|| {
                    splice::replace(
                        msg.raw(),
                        span,
                        serde_json::to_string(&orig).ok()?.as_bytes(),
                    )
                    .ok()
                })
                .flatten();
            Some((idx, edit))
        }
        (_, _, Some(uri)) => {
            let catalog = gw.catalog.lock().unwrap_or_else(|p| p.into_inner());
            let hit = catalog.names.iter().find(|((k, n), _)| {
                matches!(k, ListKind::Resources | ListKind::Templates) && *n == uri
            });
            Some((hit.map_or(0, |(_, (i, _))| *i), None))
        }
        _ => None,
    }
}

/// Tag server→client request ids and SSE event ids with the upstream index.
pub(super) fn tag_frame(idx: usize, mut f: Frame) -> Frame {
    if let Some(id) = f.id.take() {
        f.id = Some(format!("{idx}~{id}"));
        f.raw = None;
    }
    if let Some(data) = &f.data
        && let Ok(m) = Message::parse(data)
        && let (Kind::Request, Some(span), Some(id)) = (m.kind(), m.id_span(), m.id())
    {
        let tagged = serde_json::to_string(&format!("{idx}~{}", id.get())).unwrap_or_default();
        if let Ok(b) = splice::replace(data, span, tagged.as_bytes()) {
            f.data = Some(Bytes::from(b));
            f.raw = None;
        }
    }
    f
}

pub(super) fn tagged(
    idx: usize,
    mut rx: mpsc::Receiver<Result<Frame, UpstreamError>>,
    tx: mpsc::Sender<Result<Frame, UpstreamError>>,
) {
    tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            if tx.send(item.map(|f| tag_frame(idx, f))).await.is_err() {
                return;
            }
        }
    });
}
