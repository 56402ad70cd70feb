//! Where a client message goes, decided before any guard runs: one upstream (with the name the
//! upstream uses spliced into the original bytes), every upstream (handshakes, lists), Warden
//! itself, or back to the upstream whose server request a client response answers. With one
//! upstream every message goes to it unchanged. With several, names carry the upstream's
//! `prefix` (`<prefix>_<name>`) or are found in the catalog that merged lists fill.
//!
//! What comes back is tagged `<upstream index>~<id>` (server→client request ids, SSE event ids)
//! so answers and resumptions find their way home.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use warden_guard::{ListKind, Refusal, Route};
use warden_proto::error::code;
use warden_proto::{Generation, Kind, Message, envelope::span_in, splice};

use crate::gateway::Gateway;
use crate::upstream::{Frame, UpstreamError};

/// What a client message is for.
pub enum Target {
    /// One upstream; `rewritten` is the message with the upstream's own name spliced in.
    One {
        /// The route guards see.
        route: Route,
        /// The bytes to send instead of the client's, when the name changed.
        rewritten: Option<Vec<u8>>,
    },
    /// Every live upstream, answers merged (`initialize`, `server/discover`,
    /// `logging/setLevel`, lists, notifications).
    All,
    /// `subscriptions/listen` on every upstream, one merged stream.
    Listen,
    /// Warden answers itself (`ping` across several upstreams).
    Ping,
    /// A client response to a server request of upstream `idx`, whose own id was `original`.
    Reply {
        /// The route.
        route: Route,
        /// The upstream's id text.
        original: String,
    },
    /// Nowhere.
    Nowhere(Refusal),
}

/// Decide where `msg` goes.
pub fn resolve(gw: &Gateway, msg: &Message<'_>, generation: Option<Generation>) -> Target {
    if gw.upstreams.len() == 1 {
        let mut route = Route::to(0, gw.upstreams[0].name.clone());
        if let Ok(p) = msg.params_view()
            && let Some(n) = p.name.as_deref().or(p.uri.as_deref())
        {
            let n: Arc<str> = crate::gateway::truncate_shared(n, 256);
            route.original = Some(n.clone());
            route.exposed = Some(n);
        }
        return Target::One {
            route,
            rewritten: None,
        };
    }
    let method = msg.method().unwrap_or_default();
    match msg.kind() {
        Kind::Response | Kind::Error => return reply_target(gw, msg),
        Kind::Notification => return Target::All,
        Kind::Request => {}
    }
    if method == "ping" {
        return Target::Ping;
    }
    if matches!(
        method,
        "initialize" | "server/discover" | "logging/setLevel"
    ) || ListKind::of(method).is_some()
    {
        return Target::All;
    }
    let found = match method {
        "tools/call" => route_by_name(gw, msg, ListKind::Tools),
        "prompts/get" => route_by_name(gw, msg, ListKind::Prompts),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => route_by_uri(gw, msg),
        "completion/complete" => route_completion(gw, msg),
        "subscriptions/listen" => return Target::Listen,
        _ => {
            let status = if generation == Some(Generation::Stateless) {
                404
            } else {
                200
            };
            return Target::Nowhere(Refusal::new(
                status,
                code::METHOD_NOT_FOUND,
                "method_not_routable",
                "P1.1",
                format!("Method not found: {method}"),
                "this method is not routed across several upstreams",
            ));
        }
    };
    let Some((idx, rewritten, original)) = found else {
        return Target::Nowhere(Refusal::new(
            200,
            code::INVALID_PARAMS,
            "unknown_name",
            "P1.1",
            "Unknown tool, prompt or resource",
            "list first; names carry their upstream's prefix",
        ));
    };
    let exposed = msg.params_view().ok().and_then(|p| {
        p.name
            .or(p.uri)
            .map(|n| crate::gateway::truncate_shared(&n, 256))
    });
    let route = Route {
        original: original
            .map(|o| crate::gateway::truncate_shared(&o, 256))
            .or(exposed.clone()),
        exposed,
        ..Route::to(idx, gw.upstreams[idx].name.clone())
    };
    Target::One { route, rewritten }
}

/// A client's answer to a tagged server request goes back to its upstream with the original id.
fn reply_target(gw: &Gateway, msg: &Message<'_>) -> Target {
    let tag: Option<String> = msg.id().and_then(|i| serde_json::from_str(i.get()).ok());
    let parsed = tag
        .as_deref()
        .and_then(|t| t.split_once('~'))
        .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest.to_owned())));
    match parsed.filter(|(i, _)| *i < gw.upstreams.len()) {
        Some((idx, original)) => Target::Reply {
            route: Route::to(idx, gw.upstreams[idx].name.clone()),
            original,
        },
        None => Target::Nowhere(Refusal::new(
            400,
            code::INVALID_REQUEST,
            "unknown_response_id",
            "P1.1",
            "Response to an unknown server request",
            "answer server requests with the id they carried",
        )),
    }
}

fn resolve_name(gw: &Gateway, kind: ListKind, name: &str) -> Option<(usize, String)> {
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
fn rewrite_param(msg: &Message<'_>, field: &str, value: &str) -> Option<Vec<u8>> {
    let params: HashMap<String, &RawValue> = serde_json::from_str(msg.params()?.get()).ok()?;
    let span = span_in(msg.raw(), params.get(field)?)?;
    splice::replace(
        msg.raw(),
        span,
        serde_json::to_string(value).ok()?.as_bytes(),
    )
    .ok()
}

type Found = Option<(usize, Option<Vec<u8>>, Option<String>)>;

fn route_by_name(gw: &Gateway, msg: &Message<'_>, kind: ListKind) -> Found {
    let name = msg.params_view().ok()?.name?.into_owned();
    let (idx, orig) = resolve_name(gw, kind, &name)?;
    let edit = (orig != name)
        .then(|| rewrite_param(msg, "name", &orig))
        .flatten();
    Some((idx, edit, Some(orig)))
}

fn route_by_uri(gw: &Gateway, msg: &Message<'_>) -> Found {
    let uri = msg.params_view().ok()?.uri?.into_owned();
    let catalog = gw.catalog.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((idx, _)) = catalog.names.get(&(ListKind::Resources, uri.clone())) {
        return Some((*idx, None, None));
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
        .map(|(_, (idx, _))| (*idx, None, None))
        .or(Some((0, None, None)))
}

fn route_completion(gw: &Gateway, msg: &Message<'_>) -> Found {
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
                serde_json::from_str::<HashMap<String, &RawValue>>(p.r#ref.get())
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
            Some((idx, edit, Some(orig)))
        }
        (_, _, Some(uri)) => {
            let catalog = gw.catalog.lock().unwrap_or_else(|p| p.into_inner());
            let hit = catalog.names.iter().find(|((k, n), _)| {
                matches!(k, ListKind::Resources | ListKind::Templates) && *n == uri
            });
            Some((hit.map_or(0, |(_, (i, _))| *i), None, None))
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
