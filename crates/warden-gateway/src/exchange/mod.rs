//! The exchange core: the one path every client message takes, whichever front end read it
//! (`warden serve` over Streamable HTTP, `warden wrap` over stdio) and however many upstreams
//! stand behind Warden.
//!
//! ```text
//! front end ─▶ limits + envelope ─▶ generation + session ─▶ route ─▶ client guards (top-down)
//!           ─▶ upstream_request ─▶ forward ─▶ every server message: list items + server guards
//!           (bottom-up) ─▶ Answer ─▶ front end
//! ```
//!
//! * [`route`] decides where a message goes before any guard runs, so guards see the upstream
//!   and the original name (`ctx.route`) and the very bytes that will be forwarded; a name the
//!   session's catalog does not know yet is looked up by asking the lists first (`fill`);
//!   `rename` renames `Mcp-Name` with the body, so they see the very headers too.
//! * [`relay`] puts every server→client message (a JSON body, each SSE frame, each stdio line)
//!   through the guards; [`fanout`] does the same for each part of a fanned-out answer before
//!   [`merge`] joins them; [`lists`] applies the `list_item` hook on every path. Inside a session
//!   event ids go out bound to it, and a `Last-Event-ID` comes back in only if it is one of them
//!   (`resume.rs`, `event_ids.rs`).
//! * [`client_link`] lets a guard send the client a request of Warden's own and await the
//!   answer; [`upstream_link`] lets it list the routed upstream as Warden (tool definitions it
//!   must know to check a call); [`answer`] is what the front ends write.
//! * A session-less `notifications/cancelled` goes to [`cancel`]: it may name only the sender's
//!   own open requests.
//!
//! It must not know hyper or a socket: front ends read and write their wire, nothing more.

mod all;
pub mod answer;
mod cancel;
pub mod client_link;
pub mod fanout;
mod fill;
pub mod hold;
mod ingress;
pub mod lists;
pub mod merge;
pub mod relay;
mod rename;
mod resume;
pub mod route;
pub mod upstream_link;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use warden_audit::Decision;
use warden_guard::{Ctx, Refusal, Route, SessionRef};
use warden_proto::{Generation, Kind, Message, ProtocolVersion, splice};

use crate::gateway::{Gateway, Link, SessionState, Transport};
use crate::pipeline::{Cleared, Passed};
use crate::session::Owner;
use answer::{Answer, Answered, Early, refuse};
use relay::{Relay, upstream_refusal};
use route::Target;

pub use ingress::{delete, get, line, post};

/// One client message that passed limits and the envelope, with its session resolved.
pub struct Incoming<'a> {
    /// The client's bytes.
    pub raw: &'a Bytes,
    /// Their parse.
    pub msg: &'a Message<'a>,
    /// The client's HTTP headers (empty on stdio).
    pub headers: &'a Arc<HeaderMap>,
    /// The session the message belongs to.
    pub session: Option<Arc<SessionState>>,
    /// Set when this message (an `initialize`) opened the session.
    pub new_session: Option<String>,
}

/// The owner a session is bound to: the authenticated principal, else the client address.
pub fn owner_of(ctx: &Ctx) -> Owner {
    match (&ctx.principal, ctx.client) {
        (Some(p), _) => Owner::Subject(p.id().clone()),
        (None, Some(c)) => Owner::Addr(c.ip()),
        (None, None) => Owner::Local,
    }
}

/// Fill the context from a parsed message: method and the name it is about; the parse of
/// `params` is handed back for the caller's reading (no second parse). A request or
/// notification whose `params` could be read two ways by the guards and the upstream (a
/// duplicated `name`, `uri`, `arguments` or `_meta` member or `_meta` protocol field, a field of
/// the wrong type) is refused here, on every path and in both generations (#13 item 14).
pub fn describe<'m>(
    ctx: &mut Ctx,
    msg: &Message<'m>,
) -> Result<warden_proto::envelope::Params<'m>, Refusal> {
    ctx.method = msg.method().map(crate::metrics::method_name);
    match msg.params_view() {
        Ok(p) => {
            ctx.tool = p
                .name
                .as_deref()
                .or(p.uri.as_deref())
                .map(|s| crate::gateway::truncate_shared(s, 256));
            Ok(p)
        }
        Err(e) if matches!(msg.kind(), Kind::Request | Kind::Notification) => Err(Refusal::new(
            400,
            warden_proto::error::code::INVALID_PARAMS,
            "invalid_params",
            "P1.1",
            format!("Invalid params: {e}"),
            "send params with each member once, name and uri as strings and _meta as an object",
        )),
        Err(_) => Ok(Default::default()),
    }
}

/// The one path: route, guards, forward, relay. `early` reaches the client before the answer.
pub async fn exchange(
    gw: &Arc<Gateway>,
    mut ctx: Ctx,
    inc: Incoming<'_>,
    early: Early,
) -> Answered {
    let Incoming {
        raw,
        msg,
        headers,
        session,
        new_session,
    } = inc;
    let _call = hold::Hold::begin(gw, &ctx);
    // An answer to a request Warden itself sent the client is Warden's: never forwarded.
    if let Some(s) = &session
        && matches!(msg.kind(), Kind::Response | Kind::Error)
        && s.waiters.take_answer(msg)
    {
        gw.audit_done(&ctx, Decision::Allow, Some(202), Some("answer_to_warden"));
        return Answer::Accepted.into();
    }
    if let Some(s) = &session {
        ctx.state = Some(SessionRef {
            key: s.key.clone(),
            store: gw.store.clone(),
        });
        ctx.client_channel = Some(Arc::new(client_link::SessionClient {
            session: s.clone(),
            early: early.clone(),
        }));
        if msg.method() == Some("initialize") {
            record_client_caps(s, msg);
        }
    }
    let ending = EndOnFailure {
        gw,
        owner: owner_of(&ctx),
        id: new_session.clone(),
    };
    if cancel::applies(msg, session.is_some()) {
        return Box::pin(cancel::cancelled(gw, ctx, raw, msg, headers, ending)).await;
    }
    match fill::target(gw, &ctx, msg, headers, session.as_deref()).await {
        // `fill::target` resolves what it can: an unlisted name is unknown by now.
        Target::Unlisted(_) => refuse(gw, &ctx, route::unknown_name(), msg.id()),
        Target::Nowhere(r) => {
            ending.now().await;
            refuse(gw, &ctx, r, msg.id())
        }
        Target::One { route, rewritten } => {
            one(
                gw,
                ctx,
                raw,
                msg,
                headers,
                route,
                rewritten,
                session,
                new_session,
                early,
                ending,
            )
            .await
        }
        // The paths below are boxed: their state (fan-out, merge, lists) stays out of the future
        // of every exchange, which the front end moves whole (it is benchmarked).
        Target::Reply { route, original } => {
            Box::pin(reply(
                gw,
                ctx,
                msg,
                headers,
                route,
                &original,
                session.as_deref(),
            ))
            .await
        }
        Target::Ping | Target::All | Target::Listen => {
            Box::pin(all::all(
                gw,
                ctx,
                raw,
                msg,
                headers,
                session,
                new_session,
                early,
                ending,
            ))
            .await
        }
    }
}

/// Remembers to end a session this exchange opened if the exchange fails.
pub(crate) struct EndOnFailure<'a> {
    gw: &'a Gateway,
    owner: Owner,
    id: Option<String>,
}

impl EndOnFailure<'_> {
    pub(crate) async fn now(&self) {
        if let Some(id) = &self.id {
            self.gw.end_session(&self.owner, id).await;
        }
    }
}

/// The client guards for a message bound for `route`; `Err` is the answer to give instead.
pub(crate) async fn clear(
    gw: &Gateway,
    ctx: &mut Ctx,
    raw: &Bytes,
    msg: &Message<'_>,
    ending: &EndOnFailure<'_>,
) -> Result<Cleared, Answered> {
    match gw.pipeline.client(raw, msg, ctx).await {
        Ok(Passed::Forward(c)) => Ok(c),
        Ok(Passed::Answer(result)) => {
            gw.audit_done(ctx, Decision::Allow, Some(200), Some("answered_by_guard"));
            Err(Answer::Json {
                status: 200,
                content_type: Some(http::HeaderValue::from_static("application/json")),
                body: local_result(msg.id(), &result),
            }
            .into())
        }
        Err(r) => {
            ending.now().await;
            Err(refuse(gw, ctx, r, msg.id()))
        }
    }
}

/// `{"jsonrpc":"2.0","id":<id>,"result":<result>}`.
pub(crate) fn local_result(id: Option<&serde_json::value::RawValue>, result: &[u8]) -> Bytes {
    let id = id.map_or("null", |i| i.get());
    let mut b = Vec::with_capacity(40 + id.len() + result.len());
    b.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    b.extend_from_slice(id.as_bytes());
    b.extend_from_slice(br#","result":"#);
    b.extend_from_slice(result);
    b.push(b'}');
    Bytes::from(b)
}

/// A message for one upstream.
#[allow(clippy::too_many_arguments)]
async fn one(
    gw: &Arc<Gateway>,
    mut ctx: Ctx,
    raw: &Bytes,
    msg: &Message<'_>,
    headers: &Arc<HeaderMap>,
    route: Route,
    rewritten: Option<Vec<u8>>,
    session: Option<Arc<SessionState>>,
    new_session: Option<String>,
    early: Early,
    ending: EndOnFailure<'_>,
) -> Answered {
    let idx = route.index;
    ctx.route = Some(route);
    if ctx.generation == Some(Generation::Stateless) && msg.kind() == Kind::Request {
        let link_ctx = ctx.clone();
        ctx.upstream_channel = Some(Arc::new(upstream_link::UpstreamLink {
            gw: gw.clone(),
            idx,
            ctx: link_ctx,
        }));
    }
    // The guards see the bytes that will be forwarded: with the upstream's own name spliced in.
    let client_msg = msg;
    let was_rewritten = rewritten.is_some();
    let (bytes, reparsed);
    let msg = match rewritten {
        None => {
            bytes = raw.clone();
            msg
        }
        Some(b) => {
            bytes = Bytes::from(b);
            match Message::parse(&bytes) {
                Ok(m) => {
                    reparsed = m;
                    &reparsed
                }
                Err(_) => return refuse(gw, &ctx, Refusal::internal(), msg.id()),
            }
        }
    };
    // And the headers that will be forwarded: a name the route renamed in the body is renamed
    // in `Mcp-Name` too (#13 item 17), so guards and upstream see one name.
    let stateless = ctx.generation == Some(Generation::Stateless);
    let renamed;
    let rename = match was_rewritten {
        true => rename::renamed_headers(headers, client_msg, msg, stateless),
        false => Ok(None),
    };
    let headers = match rename {
        Ok(None) => headers,
        Ok(Some(h)) => {
            renamed = Arc::new(h);
            ctx.headers = Some(renamed.clone());
            &renamed
        }
        Err(r) => {
            ending.now().await;
            return refuse(gw, &ctx, r, msg.id());
        }
    };
    let cleared = match clear(gw, &mut ctx, &bytes, msg, &ending).await {
        Ok(c) => c,
        Err(answer) => return answer,
    };
    let fwd_parse;
    let fwd = if cleared.changed() {
        match Message::parse(cleared.bytes()) {
            Ok(m) => {
                fwd_parse = m;
                &fwd_parse
            }
            Err(_) => return refuse(gw, &ctx, Refusal::internal(), msg.id()),
        }
    } else {
        msg
    };
    if ctx.generation == Some(Generation::Stateless) {
        // Boxed, like the standalone stream below: rare paths, kept out of every call's future.
        let r = match Box::pin(gw.speaks_stateless(idx)).await {
            Ok(true) => None,
            Ok(false) => Some(generation_refusal(&gw.upstreams[idx].cfg.name)),
            Err(e) => Some(upstream_refusal(&e)),
        };
        if let Some(r) = r {
            ending.now().await;
            return refuse(gw, &ctx, r, msg.id());
        }
    }
    let request_id = fwd.id_text().map(str::to_owned);
    let is_init = fwd.method() == Some("initialize");
    let owner = owner_of(&ctx);
    let (reply, upstream_sid) = match gw
        .forward(idx, session.as_deref(), headers, fwd, &cleared, &owner)
        .await
    {
        Ok(x) => x,
        Err(e) => {
            ending.now().await;
            return refuse(gw, &ctx, upstream_refusal(&e), msg.id());
        }
    };
    if let (Some(s), Some(sid)) = (&session, upstream_sid)
        && let Link::Http { session_id, .. } = &s.links[idx]
        && (is_init || gw.upstreams.len() > 1)
    {
        *session_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(sid);
    }
    if let (Some(s), Some("notifications/initialized")) = (&session, fwd.method()) {
        Box::pin(gw.open_standalone(idx, s, headers)).await;
    }
    let on_final: Option<relay::OnFinal> = match (&session, is_init) {
        (Some(s), true) => {
            let s = s.clone();
            let gw2 = gw.clone();
            let id = new_session.clone();
            let owner = owner_of(&ctx);
            Some(Box::new(move |m: &Message<'_>| {
                record_negotiation(&gw2, &s, m, id.as_deref(), &owner)
            }))
        }
        _ => None,
    };
    let log = match (&gw.upstreams[idx].transport, &session) {
        (Transport::Stdio { .. }, Some(s))
            if early.wire() == answer::Wire::Sse && accepts_sse(headers) =>
        {
            Some(s.events.clone())
        }
        _ => None,
    };
    let reply = if gw.upstreams.len() > 1 {
        fanout::tag_reply(gw.upstreams[idx].name.clone(), reply)
    } else {
        reply
    };
    let relay = Relay {
        request_id,
        on_final,
        cancel: stdio_child(gw, idx, session.as_deref()),
        session_header: new_session,
        log,
        wire: early.wire(),
        ..Relay::new(
            gw.clone(),
            ctx,
            Duration::from_millis(gw.upstreams[idx].cfg.timeout_ms),
        )
    };
    relay.respond(reply).await
}

/// The stdio child a message for upstream `idx` goes to (to cancel an abandoned call on it).
pub(crate) fn stdio_child(
    gw: &Gateway,
    idx: usize,
    session: Option<&SessionState>,
) -> Option<Arc<crate::upstream::stdio::StdioUpstream>> {
    match (&gw.upstreams[idx].transport, session.map(|s| &s.links[idx])) {
        (Transport::Stdio { .. }, Some(Link::Stdio(c))) => Some(c.clone()),
        (Transport::Stdio { shared }, _) => Some(shared.clone()),
        _ => None,
    }
}

/// A client's answer to an upstream's server request (several upstreams: the id was tagged),
/// through the client guards, back to that upstream with its own id.
async fn reply(
    gw: &Arc<Gateway>,
    mut ctx: Ctx,
    msg: &Message<'_>,
    headers: &Arc<HeaderMap>,
    route: Route,
    original: &str,
    session: Option<&SessionState>,
) -> Answered {
    let idx = route.index;
    ctx.route = Some(route);
    let Some(span) = msg.id_span() else {
        return refuse(gw, &ctx, Refusal::internal(), None);
    };
    let Ok(out) = splice::replace(msg.raw(), span, original.as_bytes()).map(Bytes::from) else {
        return refuse(gw, &ctx, Refusal::internal(), None);
    };
    let Ok(m) = Message::parse(&out) else {
        return refuse(gw, &ctx, Refusal::internal(), None);
    };
    let none = EndOnFailure {
        gw,
        owner: Owner::Local,
        id: None,
    };
    let cleared = match clear(gw, &mut ctx, &out, &m, &none).await {
        Ok(c) => c,
        Err(a) => return a,
    };
    match gw
        .forward(idx, session, headers, &m, &cleared, &owner_of(&ctx))
        .await
    {
        Ok(_) => {
            gw.audit_done(&ctx, Decision::Allow, Some(202), None);
            Answer::Accepted.into()
        }
        Err(e) => refuse(gw, &ctx, upstream_refusal(&e), None),
    }
}

/// A 2026-07-28 request for an upstream that speaks only the session-based generation.
pub fn generation_refusal(upstream: &str) -> Refusal {
    let supported: Vec<&str> = ProtocolVersion::of_generation(Generation::Session)
        .map(|v| v.as_str())
        .collect();
    Refusal::new(
        400,
        warden_proto::error::code::UNSUPPORTED_PROTOCOL_VERSION,
        "upstream_generation_unsupported",
        "P3.4",
        format!("Unsupported protocol version: upstream '{upstream}' speaks only session-based MCP"),
        "connect with initialize and a session-based version (e.g. 2025-11-25); Warden does not yet bridge 2026-07-28 to older servers",
    )
    .with_data("supported", supported.into())
    .with_data("requested", "2026-07-28".into())
}

/// Does the client take `text/event-stream` answers? True when one media range of `Accept` is
/// `text/event-stream` (any case, any parameters) or `*/*`. Read as bytes: it runs on every POST.
pub fn accepts_sse(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::ACCEPT).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|range| {
            let media = range.split(|&b| b == b';').next().unwrap_or_default();
            let media = media.trim_ascii();
            media.eq_ignore_ascii_case(b"text/event-stream") || media == b"*/*"
        })
    })
}

/// The capabilities a client declared at `initialize` (top-level names), for guards that ask
/// the client things (`elicitation`).
fn record_client_caps(s: &SessionState, msg: &Message<'_>) {
    #[derive(serde::Deserialize)]
    struct P {
        #[serde(default)]
        capabilities: serde_json::Map<String, serde_json::Value>,
    }
    let caps = msg
        .params()
        .and_then(|p| serde_json::from_str::<P>(p.get()).ok())
        .map(|p| p.capabilities.keys().take(32).cloned().collect())
        .unwrap_or_default();
    *s.client_caps.lock().unwrap_or_else(|p| p.into_inner()) = caps;
}

/// After `initialize`: keep the negotiated version, or end the session if the server refused.
pub fn record_negotiation(
    gw: &Arc<Gateway>,
    s: &SessionState,
    m: &Message<'_>,
    session_id: Option<&str>,
    owner: &Owner,
) {
    #[derive(serde::Deserialize)]
    struct InitResult {
        #[serde(rename = "protocolVersion")]
        protocol_version: Option<String>,
    }
    let version = m
        .result()
        .and_then(|r| serde_json::from_str::<InitResult>(r.get()).ok())
        .and_then(|r| r.protocol_version)
        .and_then(|v| ProtocolVersion::parse(&v));
    match version {
        Some(v) => *s.version.lock().unwrap_or_else(|p| p.into_inner()) = Some(v),
        None => {
            if let Some(id) = session_id {
                let gw = gw.clone();
                let (owner, id) = (owner.clone(), id.to_owned());
                tokio::spawn(async move {
                    gw.end_session(&owner, &id).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::accepts_sse;
    use http::{HeaderMap, HeaderValue, header::ACCEPT};

    fn with(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn accept_is_read_as_media_ranges() {
        for yes in [
            &["application/json, text/event-stream"][..],
            &["TEXT/Event-Stream;q=0.5"],
            &["application/json", " */* "],
        ] {
            assert!(accepts_sse(&with(yes)), "{yes:?}");
        }
        for no in [
            &[][..],
            &["application/json"],
            &["text/event-streams, text/*"],
        ] {
            assert!(!accepts_sse(&with(no)), "{no:?}");
        }
    }
}
