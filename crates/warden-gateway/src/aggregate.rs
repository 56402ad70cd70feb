//! Several upstreams behind one endpoint. Lists (`tools`, `prompts`, `resources`, templates) are
//! fetched from every upstream and merged; names get the upstream's `prefix` (`<prefix>_<name>`);
//! calls are routed back by prefix (or by the catalog for unprefixed upstreams) with the original
//! name spliced into the original bytes. Two upstreams exposing one name are a collision: both are
//! withheld and the collision is audited (tool shadowing, P9.2) — never silently shadowed. One
//! upstream failing leaves the others serving. Server→client request ids and SSE event ids are
//! tagged `<upstream>~<id>` so answers and resumptions find their way back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use warden_audit::Decision;
use warden_proto::error::code;
use warden_proto::{Generation, Kind, Message, envelope::span_in, splice};

use crate::downstream::body::Response;
use crate::downstream::http::owner_of;
use crate::downstream::respond;
use crate::downstream::streams::{Relay, upstream_refusal};
use crate::gateway::{Gateway, Link, SessionState, Transport};
use crate::guard::{Ctx, Refusal};
use crate::router::record_negotiation;
use crate::upstream::{Frame, Reply, UpstreamError};

/// Which list a name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    fn of(method: &str) -> Option<Self> {
        Some(match method {
            "tools/list" => Self::Tools,
            "prompts/list" => Self::Prompts,
            "resources/list" => Self::Resources,
            "resources/templates/list" => Self::Templates,
            _ => return None,
        })
    }
    fn key(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources => "resources",
            Self::Templates => "resourceTemplates",
        }
    }
    /// The item field that names it; prefixes apply to names, not to URIs.
    fn name_field(self) -> &'static str {
        match self {
            Self::Tools | Self::Prompts => "name",
            Self::Resources => "uri",
            Self::Templates => "uriTemplate",
        }
    }
}

/// Exposed name → (upstream, original name), learned from merged lists.
#[derive(Default)]
pub struct Catalog {
    names: HashMap<(ListKind, String), (usize, String)>,
}

fn refuse(gw: &Gateway, ctx: &Ctx, r: Refusal, id: Option<&RawValue>) -> Response {
    gw.audit_refusal(ctx, &r, None);
    respond::refusal(&r, id)
}

fn exposed(gw: &Gateway, idx: usize, name: &str, kind: ListKind) -> String {
    match (&gw.upstreams[idx].cfg.prefix, kind) {
        (Some(p), ListKind::Tools | ListKind::Prompts) => format!("{p}_{name}"),
        _ => name.to_owned(),
    }
}

/// Resolve an exposed tool/prompt name to (upstream, original name).
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

fn live(session: Option<&SessionState>, idx: usize) -> bool {
    session.is_none_or(|s| s.live[idx].load(std::sync::atomic::Ordering::Relaxed))
}

pub async fn dispatch(
    gw: Arc<Gateway>,
    mut ctx: Ctx,
    headers: Arc<HeaderMap>,
    bytes: Bytes,
    session: Option<Arc<SessionState>>,
    new_session_id: Option<String>,
) -> Response {
    let owner = owner_of(&ctx);
    let cleared = match gw.pipeline.client_message(bytes.clone(), &mut ctx).await {
        Ok(c) => c.0,
        Err(r) => {
            if let Some(id) = &new_session_id {
                gw.sessions.remove(&owner, id);
            }
            let id = Message::parse(&bytes)
                .ok()
                .and_then(|m| m.id().map(|i| i.get().to_owned()));
            let raw = id.and_then(|i| RawValue::from_string(i).ok());
            return refuse(&gw, &ctx, r, raw.as_deref());
        }
    };
    let Ok(msg) = Message::parse(&cleared) else {
        return refuse(
            &gw,
            &ctx,
            Refusal::new(
                500,
                code::INTERNAL_ERROR,
                "internal_error",
                "P1.1",
                "Internal error",
                "report this",
            ),
            None,
        );
    };
    let id = msg.id();
    let s = session.as_deref();
    let method = msg.method().unwrap_or_default().to_owned();
    match msg.kind() {
        Kind::Response | Kind::Error => return client_response(&gw, &ctx, &headers, s, &msg).await,
        Kind::Notification => {
            let initialized = msg.method() == Some("notifications/initialized");
            for idx in (0..gw.upstreams.len()).filter(|i| live(s, *i)) {
                if let (true, Some(sess)) = (initialized, s) {
                    let _ = gw
                        .forward(
                            idx,
                            s,
                            &headers,
                            &msg,
                            crate::pipeline::Cleared(cleared.clone()),
                        )
                        .await;
                    gw.open_standalone(idx, sess, &headers).await;
                    continue;
                }
                let _ = gw
                    .forward(
                        idx,
                        s,
                        &headers,
                        &msg,
                        crate::pipeline::Cleared(cleared.clone()),
                    )
                    .await;
            }
            gw.audit_done(&ctx, Decision::Allow, Some(202), None);
            return respond::accepted();
        }
        Kind::Request => {}
    }
    if method == "ping" {
        gw.audit_done(&ctx, Decision::Allow, Some(200), None);
        return respond::json(200, local_result(id, "{}"));
    }
    if method == "initialize" || method == "server/discover" || method == "logging/setLevel" {
        let answers = fan_out(&gw, &mut ctx, &headers, s, &msg, &cleared).await;
        if answers.is_empty() {
            if let Some(sid) = &new_session_id {
                gw.sessions.remove(&owner, sid);
            }
            return refuse(
                &gw,
                &ctx,
                upstream_refusal(&UpstreamError::Unreachable("no upstream answered".into())),
                id,
            );
        }
        if let Some(sess) = &session {
            for idx in 0..gw.upstreams.len() {
                sess.live[idx].store(
                    answers.iter().any(|(i, _)| *i == idx),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        }
        let merged = if method == "logging/setLevel" {
            local_result(id, "{}")
        } else {
            merge_init(&gw, id, &answers)
        };
        // The server guards see the merged result the client gets, not its parts.
        let body = match gw.pipeline.server_message(merged, &mut ctx).await {
            Ok(b) => b,
            Err(r) => return refuse(&gw, &ctx, r, id),
        };
        if let (Some(sess), true) = (&session, method == "initialize")
            && let Ok(m) = Message::parse(&body)
        {
            record_negotiation(&gw, sess, &m, new_session_id.as_deref(), &owner);
        }
        gw.audit_done(&ctx, Decision::Allow, Some(200), None);
        let r = respond::json(200, body);
        return match &new_session_id {
            Some(sid) => respond::with_session(r, sid),
            None => r,
        };
    }
    if let Some(kind) = ListKind::of(&method) {
        let answers = fan_out(&gw, &mut ctx, &headers, s, &msg, &cleared).await;
        let merged = merge_list(&gw, &ctx, id, kind, &answers);
        let body = match gw.pipeline.server_message(merged, &mut ctx).await {
            Ok(b) => b,
            Err(r) => return refuse(&gw, &ctx, r, id),
        };
        gw.audit_done(&ctx, Decision::Allow, Some(200), None);
        return respond::json(200, body);
    }
    let target = match method.as_str() {
        "tools/call" => route_by_name(&gw, &msg, ListKind::Tools),
        "prompts/get" => route_by_name(&gw, &msg, ListKind::Prompts),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            route_by_uri(&gw, &msg)
        }
        "completion/complete" => route_completion(&gw, &msg),
        "subscriptions/listen" => {
            return listen(gw.clone(), ctx, headers.clone(), s, &msg, cleared.clone()).await;
        }
        _ => {
            let status = if ctx.generation == Some(Generation::Stateless) {
                404
            } else {
                200
            };
            let r = Refusal::new(
                status,
                code::METHOD_NOT_FOUND,
                "method_not_routable",
                "P1.1",
                format!("Method not found: {method}"),
                "this method is not routed across several upstreams",
            );
            return refuse(&gw, &ctx, r, id);
        }
    };
    let Some((idx, rewritten)) = target else {
        let r = Refusal::new(
            200,
            code::INVALID_PARAMS,
            "unknown_name",
            "P1.1",
            "Unknown tool, prompt or resource",
            "list first; names carry their upstream's prefix",
        );
        return refuse(&gw, &ctx, r, id);
    };
    let out = rewritten
        .map(Bytes::from)
        .unwrap_or_else(|| cleared.clone());
    let Ok(fwd) = Message::parse(&out) else {
        return refuse(
            &gw,
            &ctx,
            Refusal::new(
                500,
                code::INTERNAL_ERROR,
                "internal_error",
                "P1.1",
                "Internal error",
                "report this",
            ),
            id,
        );
    };
    ctx.upstream = Some(gw.upstreams[idx].cfg.name.clone());
    match gw
        .forward(
            idx,
            s,
            &headers,
            &fwd,
            crate::pipeline::Cleared(out.clone()),
        )
        .await
    {
        Ok((reply, _)) => {
            relay_tagged(&gw, ctx, idx, s, id.map(|i| i.get().to_owned()), reply).await
        }
        Err(e) => refuse(&gw, &ctx, upstream_refusal(&e), id),
    }
}

fn local_result(id: Option<&RawValue>, result: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#,
        id.map_or("null", |i| i.get())
    ))
}

/// Forward to every live upstream and collect each final response (after the server guards).
async fn fan_out(
    gw: &Gateway,
    ctx: &mut Ctx,
    headers: &HeaderMap,
    s: Option<&SessionState>,
    msg: &Message<'_>,
    cleared: &Bytes,
) -> Vec<(usize, Bytes)> {
    let want = msg.id().map(|i| i.get().to_owned()).unwrap_or_default();
    let mut out = Vec::new();
    for idx in (0..gw.upstreams.len()).filter(|i| live(s, *i)) {
        let timeout = Duration::from_millis(gw.upstreams[idx].cfg.timeout_ms);
        let answer = match gw
            .forward(
                idx,
                s,
                headers,
                msg,
                crate::pipeline::Cleared(cleared.clone()),
            )
            .await
        {
            Ok((reply, sid)) => {
                if let (Some(sess), Some(sid)) = (s, sid)
                    && let Link::Http { session_id, .. } = &sess.links[idx]
                {
                    *session_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(sid);
                }
                final_message(reply, &want, timeout).await
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(b) if Message::parse(&b).is_ok_and(|m| m.kind() == Kind::Response) => {
                out.push((idx, b))
            }
            Ok(_) | Err(_) => {
                let mut ev = gw.event(ctx, "upstream.unavailable", Decision::Error);
                ev.upstream = Some(gw.upstreams[idx].cfg.name.clone());
                ev.reason = Some("upstream_failed_fan_out".into());
                gw.audit.emit(ev);
            }
        }
    }
    out
}

/// The final response to request `want` in a reply (other frames are not needed here).
async fn final_message(
    reply: Reply,
    want: &str,
    timeout: Duration,
) -> Result<Bytes, UpstreamError> {
    match reply {
        Reply::Body { body, .. } => Ok(body),
        Reply::Accepted => Err(UpstreamError::Invalid("no response to a request".into())),
        Reply::Stream { mut frames, .. } => loop {
            match tokio::time::timeout(timeout, frames.recv()).await {
                Err(_) => return Err(UpstreamError::Timeout(timeout.as_millis() as u64)),
                Ok(None) => return Err(UpstreamError::Exited),
                Ok(Some(Err(e))) => return Err(e),
                Ok(Some(Ok(f))) => {
                    if let Some(d) = f.data
                        && Message::parse(&d).is_ok_and(|m| {
                            matches!(m.kind(), Kind::Response | Kind::Error)
                                && m.id().map(|i| i.get()) == Some(want)
                        })
                    {
                        return Ok(d);
                    }
                }
            }
        },
    }
}

fn result_of(b: &Bytes) -> Option<Map<String, Value>> {
    Message::parse(b)
        .ok()?
        .result()
        .and_then(|r| serde_json::from_str(r.get()).ok())
}

/// Merge `initialize` / `server/discover` results: capabilities unioned, Warden as serverInfo.
fn merge_init(gw: &Gateway, id: Option<&RawValue>, answers: &[(usize, Bytes)]) -> Bytes {
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

fn envelope_with(id: Option<&RawValue>, result: &Value) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
        id.map_or("null", |i| i.get()),
        result
    ))
}

/// Merge one kind of list across upstreams, prefixing names and withholding collisions.
fn merge_list(
    gw: &Gateway,
    ctx: &Ctx,
    id: Option<&RawValue>,
    kind: ListKind,
    answers: &[(usize, Bytes)],
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
    let mut catalog = gw.catalog.lock().unwrap_or_else(|p| p.into_inner());
    catalog.names.retain(|(k, _), _| *k != kind);
    let mut kept = Vec::new();
    for (idx, name, orig, obj) in &items {
        if counts.get(name.as_str()).copied().unwrap_or(0) > 1 {
            let mut ev = gw.event(ctx, "tool.name_collision", Decision::Deny);
            ev.upstream = Some(gw.upstreams[*idx].cfg.name.clone());
            ev.tool = Some(name.clone());
            ev.reason = Some("name_collision".into());
            ev.control = Some("P9.2");
            ev.hint = Some("two upstreams expose this name; both are withheld until one gets a distinct prefix".into());
            gw.audit.emit(ev);
            continue;
        }
        catalog
            .names
            .insert((kind, name.clone()), (*idx, orig.clone()));
        kept.push(Value::Object(obj.clone()));
    }
    base.insert(kind.key().into(), Value::Array(kept));
    envelope_with(id, &Value::Object(base))
}

/// Replace the string at `field` of `params` with `value`, editing only that span.
fn rewrite_param(msg: &Message<'_>, field: &str, value: &str) -> Option<Vec<u8>> {
    let params: HashMap<&str, &RawValue> = serde_json::from_str(msg.params()?.get()).ok()?;
    let span = span_in(msg.raw(), params.get(field)?)?;
    splice::replace(
        msg.raw(),
        span,
        serde_json::to_string(value).ok()?.as_bytes(),
    )
    .ok()
}

fn route_by_name(
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

fn route_by_uri(gw: &Gateway, msg: &Message<'_>) -> Option<(usize, Option<Vec<u8>>)> {
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

fn route_completion(gw: &Gateway, msg: &Message<'_>) -> Option<(usize, Option<Vec<u8>>)> {
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
fn tag_frame(idx: usize, mut f: Frame) -> Frame {
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

fn tagged(
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

async fn relay_tagged(
    gw: &Arc<Gateway>,
    ctx: Ctx,
    idx: usize,
    s: Option<&SessionState>,
    request_id: Option<String>,
    reply: Reply,
) -> Response {
    let reply = match reply {
        Reply::Stream { frames, sse } => {
            let (tx, rx) = mpsc::channel(64);
            tagged(idx, frames, tx);
            Reply::Stream { frames: rx, sse }
        }
        other => other,
    };
    let cancel = match (&gw.upstreams[idx].transport, s.map(|s| &s.links[idx])) {
        (Transport::Stdio { .. }, Some(Link::Stdio(c))) => Some(c.clone()),
        (Transport::Stdio { shared }, _) => Some(shared.clone()),
        _ => None,
    };
    let relay = Relay {
        timeout: Duration::from_millis(gw.upstreams[idx].cfg.timeout_ms),
        gw: gw.clone(),
        ctx,
        request_id,
        on_final: None,
        cancel,
        session_header: None,
        log: None,
    };
    relay.respond(reply).await
}

/// A client's answer to a tagged server request goes back to its upstream with the original id.
async fn client_response(
    gw: &Arc<Gateway>,
    ctx: &Ctx,
    headers: &HeaderMap,
    s: Option<&SessionState>,
    msg: &Message<'_>,
) -> Response {
    let tag: Option<String> = msg.id().and_then(|i| serde_json::from_str(i.get()).ok());
    let parsed = tag
        .as_deref()
        .and_then(|t| t.split_once('~'))
        .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest.to_owned())));
    let Some((idx, orig)) = parsed.filter(|(i, _)| *i < gw.upstreams.len()) else {
        let r = Refusal::new(
            400,
            code::INVALID_REQUEST,
            "unknown_response_id",
            "P1.1",
            "Response to an unknown server request",
            "answer server requests with the id they carried",
        );
        return refuse(gw, ctx, r, None);
    };
    let Some(span) = msg.id_span() else {
        return respond::accepted();
    };
    let Ok(out) = splice::replace(msg.raw(), span, orig.as_bytes()) else {
        return respond::accepted();
    };
    let Ok(fwd) = Message::parse(&out) else {
        return respond::accepted();
    };
    match gw
        .forward(
            idx,
            s,
            headers,
            &fwd,
            crate::pipeline::Cleared(Bytes::from(out.clone())),
        )
        .await
    {
        Ok(_) => {
            gw.audit_done(ctx, Decision::Allow, Some(202), None);
            respond::accepted()
        }
        Err(e) => refuse(gw, ctx, upstream_refusal(&e), None),
    }
}

/// `subscriptions/listen` across upstreams: one merged stream.
async fn listen(
    gw: Arc<Gateway>,
    ctx: Ctx,
    headers: Arc<HeaderMap>,
    s: Option<&SessionState>,
    msg: &Message<'_>,
    cleared: Bytes,
) -> Response {
    let (tx, rx) = mpsc::channel(64);
    for idx in (0..gw.upstreams.len()).filter(|i| live(s, *i)) {
        if let Ok((reply, _)) = gw
            .forward(
                idx,
                s,
                &headers,
                msg,
                crate::pipeline::Cleared(cleared.clone()),
            )
            .await
        {
            match reply {
                Reply::Stream { frames, .. } => tagged(idx, frames, tx.clone()),
                Reply::Body { body, .. } => {
                    let _ = tx.try_send(Ok(Frame::message(body)));
                }
                Reply::Accepted => {}
            }
        }
    }
    drop(tx);
    let relay = Relay {
        timeout: Duration::from_secs(3600),
        gw: gw.clone(),
        ctx,
        request_id: None,
        on_final: None,
        cancel: None,
        session_header: None,
        log: None,
    };
    relay
        .respond(Reply::Stream {
            frames: rx,
            sse: true,
        })
        .await
}

/// The standalone GET stream across upstreams; `Last-Event-ID` goes only to the upstream it names.
pub async fn get_stream(
    gw: Arc<Gateway>,
    ctx: Ctx,
    headers: HeaderMap,
    session: Arc<SessionState>,
) -> Response {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('~'))
        .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest.to_owned())));
    let (tx, rx) = mpsc::channel(64);
    for idx in (0..gw.upstreams.len()).filter(|i| live(Some(&session), *i)) {
        let mut h = headers.clone();
        h.remove("last-event-id");
        if let Some((li, rest)) = &last
            && *li == idx
            && let Ok(v) = http::HeaderValue::from_str(rest)
        {
            h.insert("last-event-id", v);
        }
        match &session.links[idx] {
            Link::Stdio(child) => tagged(idx, child.open_server_stream(), tx.clone()),
            Link::Http { standalone, .. } => {
                let opened = if h.contains_key("last-event-id") {
                    None
                } else {
                    standalone.lock().ok().and_then(|mut s| s.take())
                };
                if let Some(frames) = opened {
                    tagged(idx, frames, tx.clone());
                } else if let Some(Ok(a)) =
                    gw.forward_http(idx, &session, http::Method::GET, &h).await
                    && let Reply::Stream { frames, .. } = a.reply
                {
                    tagged(idx, frames, tx.clone());
                }
            }
        }
    }
    drop(tx);
    let relay = Relay {
        timeout: Duration::from_secs(3600),
        gw: gw.clone(),
        ctx,
        request_id: None,
        on_final: None,
        cancel: None,
        session_header: None,
        log: None,
    };
    relay
        .respond(Reply::Stream {
            frames: rx,
            sse: true,
        })
        .await
}
