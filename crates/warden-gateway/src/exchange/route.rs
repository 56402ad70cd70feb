//! Where a client message goes, decided before any guard runs: one upstream (with the name the
//! upstream uses spliced into the original bytes), every upstream (handshakes, lists), Warden
//! itself, or back to the upstream whose server request a client response answers. With one
//! upstream every message goes to it unchanged. With several, a tool or prompt name routes by
//! its upstream's `prefix` (`<prefix>_<name>`) when prefixes alone decide every name (each
//! upstream has one, none starts another); otherwise names and resource URIs are looked up in
//! the session's catalog (see `catalog.rs` for its scope), which lists fill, and which the core
//! fills on demand ([`Target::Unlisted`]) when a name is not in it yet. A name withheld for a
//! collision is refused before any of that, and a URI that several upstreams' templates cover
//! is refused as ambiguous: nothing is ever routed to "the first upstream".
//!
//! What comes back is tagged `<upstream name>~<id>` (server→client request ids, SSE event ids)
//! so answers and resumptions find their way home. Upstream names are 1–64 of
//! `[A-Za-z0-9_-]` (checked at load), so the first `~` ends the name and the tag adds at most
//! 65 bytes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::sync::mpsc;
use warden_guard::{ListKind, Refusal, Route};
use warden_proto::error::code;
use warden_proto::{Generation, Kind, Message, envelope::span_in, splice};

use crate::catalog::{Catalog, template_covers};
use crate::gateway::Gateway;
use crate::tag::{tag_frame, untag};
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
    /// Not in the catalog yet: fill these lists on demand, then resolve again.
    Unlisted(&'static [ListKind]),
    /// Nowhere.
    Nowhere(Refusal),
}

/// Decide where `msg` goes; `cat` is the catalog of the message's scope (its session's, or the
/// request's own); `named` is the name or URI the message is about as [`super::describe`] read
/// it into `ctx.tool` (read once per message).
pub fn resolve(
    gw: &Gateway,
    msg: &Message<'_>,
    generation: Option<Generation>,
    cat: &Catalog,
    named: Option<&Arc<str>>,
) -> Target {
    if gw.upstreams.len() == 1 {
        let mut route = Route::to(0, gw.upstreams[0].name.clone());
        if let Some(n) = named {
            route.original = Some(n.clone());
            route.exposed = Some(n.clone());
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
        "tools/call" => route_by_name(gw, cat, msg, ListKind::Tools),
        "prompts/get" => route_by_name(gw, cat, msg, ListKind::Prompts),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            route_by_uri(gw, cat, msg)
        }
        "completion/complete" => route_completion(gw, cat, msg),
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
    let (idx, rewritten, original) = match found {
        Lookup::Found(idx, rewritten, original) => (idx, rewritten, original),
        Lookup::Unknown(kinds) => return Target::Unlisted(kinds),
        Lookup::Withheld(name) => return Target::Nowhere(withheld(&name)),
        Lookup::Ambiguous(uri) => {
            return Target::Nowhere(Refusal::new(
                200,
                code::INVALID_PARAMS,
                "uri_ambiguous",
                "P9.2",
                format!(
                    "Resource URI '{}' is covered by the templates of several upstreams",
                    crate::gateway::truncate(&uri, 256)
                ),
                "no upstream lists this URI itself and several upstreams' templates cover it; the operator must resolve the overlap",
            ));
        }
        Lookup::Invalid => return Target::Nowhere(unknown_name()),
    };
    let exposed = named.cloned();
    let route = Route {
        original: original
            .map(|o| crate::gateway::truncate_shared(&o, 256))
            .or(exposed.clone()),
        exposed,
        ..Route::to(idx, gw.upstreams[idx].name.clone())
    };
    Target::One { route, rewritten }
}

/// A name or URI no upstream has (after the lists were asked).
pub fn unknown_name() -> Refusal {
    Refusal::new(
        200,
        code::INVALID_PARAMS,
        "unknown_name",
        "P1.1",
        "Unknown tool, prompt or resource",
        "no upstream lists this name; names carry their upstream's prefix",
    )
}

/// A name withheld for a collision (P9.2): never routed, whoever asks.
fn withheld(name: &str) -> Refusal {
    Refusal::new(
        200,
        code::INVALID_PARAMS,
        "name_withheld",
        "P9.2",
        format!(
            "'{}' is withheld: two upstreams expose it",
            crate::gateway::truncate(name, 256)
        ),
        "the name collides across upstreams; the operator must give one a distinct prefix (config change and restart)",
    )
}

/// A client's answer to a tagged server request goes back to its upstream with the original id.
fn reply_target(gw: &Gateway, msg: &Message<'_>) -> Target {
    let tag: Option<String> = msg.id_text().and_then(|i| serde_json::from_str(i).ok());
    let parsed = tag
        .as_deref()
        .and_then(untag)
        .and_then(|(name, rest)| Some((index_of(gw, name)?, rest.to_owned())));
    match parsed {
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

/// The index of the upstream called `name`.
pub(crate) fn index_of(gw: &Gateway, name: &str) -> Option<usize> {
    gw.upstreams.iter().position(|u| &*u.name == name)
}

/// What a name or URI resolved to.
enum Lookup {
    /// Upstream, the rewritten message (the upstream's own name spliced in), the original name.
    Found(usize, Option<Vec<u8>>, Option<String>),
    /// Not known yet: these lists may know it.
    Unknown(&'static [ListKind]),
    /// Withheld for a collision.
    Withheld(String),
    /// A URI several upstreams' templates cover.
    Ambiguous(String),
    /// The message names nothing.
    Invalid,
}

fn resolve_name(gw: &Gateway, cat: &Catalog, kind: ListKind, name: &str) -> Lookup {
    if gw
        .withheld
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(kind, name)
    {
        return Lookup::Withheld(name.to_owned());
    }
    if gw.by_prefix {
        // Prefixes decide every name: no list is needed, and no name can be another's.
        return gw
            .upstreams
            .iter()
            .enumerate()
            .find_map(|(idx, u)| {
                let rest = name
                    .strip_prefix(u.cfg.prefix.as_deref()?)?
                    .strip_prefix('_')?;
                Some(Lookup::Found(idx, None, Some(rest.to_owned())))
            })
            .unwrap_or(Lookup::Invalid);
    }
    match cat.get(kind, name) {
        Some((idx, orig)) => Lookup::Found(idx, None, Some(orig.to_owned())),
        None => Lookup::Unknown(match kind {
            ListKind::Prompts => &[ListKind::Prompts],
            _ => &[ListKind::Tools],
        }),
    }
}

const URI_LISTS: &[ListKind] = &[ListKind::Resources, ListKind::Templates];

/// The upstream of a resource URI (or, for completions, a template): the one that lists it,
/// else the one whose templates cover it; withheld and ambiguous URIs are never routed.
fn resolve_uri(gw: &Gateway, cat: &Catalog, uri: &str) -> Lookup {
    let withheld = gw.withheld.lock().unwrap_or_else(|p| p.into_inner());
    if withheld.contains(ListKind::Resources, uri) || withheld.contains(ListKind::Templates, uri) {
        return Lookup::Withheld(uri.to_owned());
    }
    if let Some((idx, _)) = cat
        .get(ListKind::Resources, uri)
        .or_else(|| cat.get(ListKind::Templates, uri))
    {
        return Lookup::Found(idx, None, None);
    }
    let covering: BTreeSet<usize> = cat
        .templates()
        .filter(|(t, _)| template_covers(t, uri))
        .map(|(_, idx)| idx)
        .collect();
    if !URI_LISTS.iter().all(|k| cat.has(*k)) {
        // A template must not win over a resource another upstream lists but nobody asked for.
        return Lookup::Unknown(URI_LISTS);
    }
    if covering.len() > 1 || withheld.templates().any(|t| template_covers(t, uri)) {
        return Lookup::Ambiguous(uri.to_owned());
    }
    match covering.first() {
        Some(idx) => Lookup::Found(*idx, None, None),
        None => Lookup::Unknown(URI_LISTS),
    }
}

/// Replace the string at `field` of `params` with `value`, editing only that span.
fn rewrite_param(msg: &Message<'_>, field: &str, value: &str) -> Option<Vec<u8>> {
    let params: HashMap<String, &RawValue> = serde_json::from_str(msg.params_text()?).ok()?;
    let span = span_in(msg.raw(), params.get(field)?)?;
    splice::replace(
        msg.raw(),
        span,
        serde_json::to_string(value).ok()?.as_bytes(),
    )
    .ok()
}

fn route_by_name(gw: &Gateway, cat: &Catalog, msg: &Message<'_>, kind: ListKind) -> Lookup {
    let Some(name) = msg.params_view().ok().and_then(|p| p.name) else {
        return Lookup::Invalid;
    };
    match resolve_name(gw, cat, kind, &name) {
        Lookup::Found(idx, _, Some(orig)) => {
            let edit = (orig != name)
                .then(|| rewrite_param(msg, "name", &orig))
                .flatten();
            Lookup::Found(idx, edit, Some(orig))
        }
        other => other,
    }
}

fn route_by_uri(gw: &Gateway, cat: &Catalog, msg: &Message<'_>) -> Lookup {
    match msg.params_view().ok().and_then(|p| p.uri) {
        Some(uri) => resolve_uri(gw, cat, &uri),
        None => Lookup::Invalid,
    }
}

fn route_completion(gw: &Gateway, cat: &Catalog, msg: &Message<'_>) -> Lookup {
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
    let Some(p) = msg
        .params()
        .and_then(|p| serde_json::from_str::<P<'_>>(p.get()).ok())
    else {
        return Lookup::Invalid;
    };
    let Ok(r) = serde_json::from_str::<Ref>(p.r#ref.get()) else {
        return Lookup::Invalid;
    };
    match (r.kind.as_str(), r.name, r.uri) {
        ("ref/prompt", Some(name), _) => {
            let (idx, orig) = match resolve_name(gw, cat, ListKind::Prompts, &name) {
                Lookup::Found(idx, _, Some(orig)) => (idx, orig),
                other => return other,
            };
            let span = serde_json::from_str::<HashMap<String, &RawValue>>(p.r#ref.get())
                .ok()
                .and_then(|f| span_in(msg.raw(), f.get("name")?));
            let Some(span) = span else {
                return Lookup::Invalid;
            };
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
            Lookup::Found(idx, edit, Some(orig))
        }
        (_, _, Some(uri)) => resolve_uri(gw, cat, &uri),
        _ => Lookup::Invalid,
    }
}

pub(super) fn tagged(
    name: Arc<str>,
    mut rx: mpsc::Receiver<Result<Frame, UpstreamError>>,
    tx: mpsc::Sender<Result<Frame, UpstreamError>>,
) {
    tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            if tx.send(item.map(|f| tag_frame(&name, f))).await.is_err() {
                return;
            }
        }
    });
}
