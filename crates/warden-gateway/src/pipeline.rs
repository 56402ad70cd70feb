//! The order of Warden's guards — the one place it is written — and the runner that walks them.
//!
//! Before any guard sees a message, the exchange core applies the input limits (size, UTF-8,
//! depth), parses the JSON-RPC envelope (P1.1) and resolves the route; a message that fails there
//! is answered -32700/-32600 and audited. Then:
//!
//! * HTTP request heads meet the guards top-down (`http_request`); paths a guard registered are
//!   served by it (`serve_local`).
//! * Client→server messages meet the guards **top-down** (`client_message`), then the upstream
//!   request is shaped top-down (`upstream_request`).
//! * Server→client messages, list items and outcomes meet them **bottom-up** (`server_message`,
//!   `list_item`, `done`).
//!
//! A `Deny` stops the walk; a `Rewrite` replaces the message for the guards after it (rewrites
//! compose); an `Answer` ends a client request locally. Identity, policy, tool pinning,
//! inspection and limits guards slot into [`guards`] as they land.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use warden_audit::RequestId;
use warden_config::Config;
use warden_guard::{
    Check, Ctx, Front, Guard, GuardEnv, HttpFacts, ItemVerdict, ListItem, LocalResponse, Outcome,
    Principal, Refusal, Route, SessionKey, UpstreamRequest, Verdict,
};
use warden_proto::Message;

use crate::guards::{
    host_origin::HostOrigin, http_hygiene::HttpHygiene, protocol::StatelessRules,
    tool_headers::ToolHeaders,
};
use crate::identity::{Identity, upstream::UpstreamCredentials};

/// The guards, in order.
pub fn guards(cfg: &Config, _env: &GuardEnv) -> Vec<Box<dyn Guard>> {
    let mut g: Vec<Box<dyn Guard>> = vec![
        // P1.1 / P8.4 request-smuggling hygiene: one Host, equal to the authority; one framing;
        // each MCP header once. First, so what the guards below check is the only value.
        Box::new(HttpHygiene),
        // P8.4 DNS-rebinding defence: Host and Origin allowlists.
        Box::new(HostOrigin::new(&cfg.server)),
    ];
    // M1 M2 P2.1–P2.4: the access token of every HTTP request; the principal; per-method and
    // per-tool scopes and step-up. Before anything that reads the message or asks an upstream.
    match Identity::new(cfg) {
        Ok(Some(i)) => g.push(Box::new(i)),
        Ok(None) => {}
        Err(e) => g.push(Box::new(Misconfigured("identity", e))),
    }
    // P1.1 (SEP-2243): x-mcp-header annotations — withhold invalid tools, hand the called
    // tool's annotations to the protocol rules below (listing the upstream itself when no
    // list has shown the tool yet).
    g.push(Box::new(ToolHeaders::default()));
    // P3.4 / P1.1: 2026-07-28 `_meta`, version and header–body agreement (incl. Mcp-Param-*).
    g.push(Box::new(StatelessRules));
    // P7.1–P7.4: Warden's own credential for the upstream a cleared message goes to.
    match UpstreamCredentials::new(cfg) {
        Ok(Some(c)) => g.push(Box::new(c)),
        Ok(None) => {}
        Err(e) => g.push(Box::new(Misconfigured("upstream_credentials", e))),
    }
    g
}

/// The guards `cfg` needs could not be built: say why (`warden serve` refuses to start on
/// this; a gateway built anyway refuses every message — fail closed).
pub fn check(cfg: &Config) -> Result<(), String> {
    Identity::new(cfg)?;
    UpstreamCredentials::new(cfg)?;
    Ok(())
}

/// A guard whose configuration failed: it refuses everything.
struct Misconfigured(&'static str, String);

impl Misconfigured {
    fn refusal(&self) -> Refusal {
        Refusal::new(
            503,
            warden_proto::error::code::GATEWAY_DENIED,
            "guard_misconfigured",
            "P1.1",
            "Service Unavailable: a security control is misconfigured",
            format!("{}: {}", self.0, self.1),
        )
    }
}

impl Guard for Misconfigured {
    fn name(&self) -> &'static str {
        self.0
    }
    fn http_request<'a>(&'a self, _req: &'a HttpFacts<'a>, _ctx: &'a mut Ctx) -> Check<'a> {
        Check::Ready(Verdict::Deny(self.refusal()))
    }
    fn client_message<'a>(&'a self, _msg: &'a Message<'a>, _ctx: &'a mut Ctx) -> Check<'a> {
        Check::Ready(Verdict::Deny(self.refusal()))
    }
}

/// The guards as one value the front ends and the exchange core share.
#[derive(Clone)]
pub struct Pipeline {
    guards: Arc<Vec<Box<dyn Guard>>>,
    /// Paths guards serve themselves, with the guard's position.
    local: Arc<Vec<(String, usize)>>,
}

/// A message that has passed every client→server guard. Only the pipeline makes one (its field
/// is private and it has one constructor), and only this can be forwarded upstream.
pub struct Cleared {
    bytes: Bytes,
    /// A guard rewrote the message (parse `bytes` again before reading it).
    changed: bool,
    /// What the guards add to the upstream request.
    upstream: UpstreamRequest,
    /// The upstream `upstream` was shaped for; another upstream (a fan-out) gets its own,
    /// shaped when it is sent ([`Pipeline::own_request_for`]): one upstream's credential never
    /// goes to another.
    shaped_for: Option<usize>,
    /// Who the message is from, for shaping another upstream's request.
    principal: Option<Arc<Principal>>,
    request_id: RequestId,
}

impl Cleared {
    fn new(bytes: Bytes, changed: bool, upstream: UpstreamRequest, ctx: &Ctx) -> Self {
        Self {
            bytes,
            changed,
            upstream,
            shaped_for: ctx.route.as_ref().map(|r| r.index),
            principal: ctx.principal.clone(),
            request_id: ctx.request_id,
        }
    }
    /// Did a guard rewrite the message?
    pub fn changed(&self) -> bool {
        self.changed
    }
    /// The bytes to send.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// The headers guards set for the upstream request, if it was shaped for upstream `idx`.
    pub fn upstream_headers_for(&self, idx: usize) -> Option<&HeaderMap> {
        (self.shaped_for == Some(idx)).then_some(&self.upstream.headers)
    }
}

/// What the client→server walk decided.
pub enum Passed {
    /// Forward this.
    Forward(Cleared),
    /// A guard answered the request itself: this is the JSON-RPC `result` text.
    Answer(Vec<u8>),
}

/// What a walk over a message the caller already parsed gives back.
pub enum Walked {
    /// No guard changed it: the caller's bytes and parse still stand.
    Unchanged,
    /// A guard rewrote it: these bytes replace the message.
    Rewritten(Bytes),
}

impl Pipeline {
    /// The default guards for `cfg`.
    pub fn new(cfg: &Config, env: &GuardEnv) -> Self {
        Self::from_guards(guards(cfg, env))
    }

    /// Exactly these guards, in this order.
    pub fn from_guards(guards: Vec<Box<dyn Guard>>) -> Self {
        let local = guards
            .iter()
            .enumerate()
            .flat_map(|(i, g)| g.local_paths().into_iter().map(move |p| (p, i)))
            .collect();
        Self {
            guards: Arc::new(guards),
            local: Arc::new(local),
        }
    }

    /// Names in order (for `warden check-config` and tests).
    pub fn names(&self) -> Vec<&'static str> {
        self.guards.iter().map(|g| g.name()).collect()
    }

    /// Is `path` served by a guard?
    pub fn serves(&self, path: &str) -> bool {
        self.local.iter().any(|(p, _)| p == path)
    }

    /// Serve a path a guard registered; `None` when no guard answers it.
    pub async fn serve_local(&self, req: &HttpFacts<'_>, ctx: &mut Ctx) -> Option<LocalResponse> {
        for (p, i) in self.local.iter() {
            if p == req.path
                && let Some(r) = self.guards[*i].serve_local(req, ctx).resolve().await
            {
                return Some(r);
            }
        }
        None
    }

    /// The HTTP request head, top-down.
    pub async fn http_request(&self, facts: &HttpFacts<'_>, ctx: &mut Ctx) -> Result<(), Refusal> {
        for g in self.guards.iter() {
            match g.http_request(facts, ctx).resolve().await {
                Verdict::Continue => {}
                Verdict::Deny(r) => return Err(with_guard(r, g.name(), ctx)),
                // A head has no message to rewrite or answer: a guard that tries fails closed.
                Verdict::Rewrite(_) | Verdict::Answer(_) => {
                    return Err(with_guard(Refusal::internal(), g.name(), ctx));
                }
            }
        }
        Ok(())
    }

    /// Walk a routed client→server message top-down, then shape the upstream request.
    pub async fn client(
        &self,
        raw: &Bytes,
        msg: &Message<'_>,
        ctx: &mut Ctx,
    ) -> Result<Passed, Refusal> {
        let (bytes, changed) = match self.walk(msg, ctx, false).await? {
            Step::Done(Walked::Unchanged) => (raw.clone(), false),
            Step::Done(Walked::Rewritten(b)) => (b, true),
            Step::Answer(a) => return Ok(Passed::Answer(a)),
        };
        let up = self.own_request(ctx).await?;
        Ok(Passed::Forward(Cleared::new(bytes, changed, up, ctx)))
    }

    /// What the guards add to a request for the routed upstream (Warden's own credentials),
    /// top-down: for a cleared client message, and for a request of Warden's own.
    pub async fn own_request(&self, ctx: &mut Ctx) -> Result<UpstreamRequest, Refusal> {
        let mut up = UpstreamRequest::default();
        for g in self.guards.iter() {
            if let Err(r) = g.upstream_request(&mut up, ctx).resolve().await {
                return Err(with_guard(r, g.name(), ctx));
            }
        }
        Ok(up)
    }

    /// The upstream request for upstream `idx` (called `name`) of a cleared message that was
    /// shaped for another (a fan-out to every upstream).
    pub async fn own_request_for(
        &self,
        cleared: &Cleared,
        idx: usize,
        name: Arc<str>,
        front: Front,
    ) -> Result<UpstreamRequest, Refusal> {
        self.own_request_as(
            idx,
            name,
            front,
            cleared.principal.clone(),
            cleared.request_id,
        )
        .await
    }

    /// The upstream request Warden sends upstream `idx` (called `name`) on behalf of
    /// `principal`: a cleared message's other upstreams, or Warden's own request for a session.
    pub async fn own_request_as(
        &self,
        idx: usize,
        name: Arc<str>,
        front: Front,
        principal: Option<Arc<Principal>>,
        request_id: RequestId,
    ) -> Result<UpstreamRequest, Refusal> {
        let mut ctx = Ctx::new(request_id, front, None, "warden".into());
        ctx.principal = principal;
        ctx.route = Some(Route::to(idx, name));
        self.own_request(&mut ctx).await
    }

    /// Walk a server→client message bottom-up.
    pub async fn server_parsed(&self, msg: &Message<'_>, ctx: &mut Ctx) -> Result<Walked, Refusal> {
        match self.walk(msg, ctx, true).await? {
            Step::Done(w) => Ok(w),
            // Only client requests can be answered locally.
            Step::Answer(_) => Err(Refusal::internal()),
        }
    }

    /// One list item, bottom-up: `Keep`, `Drop`, or `Replace` with the last replacement (each
    /// guard after a replacement sees the replacement).
    pub async fn list_item(&self, item: &ListItem<'_>, ctx: &Ctx) -> ItemVerdict {
        let mut replaced: Option<Vec<u8>> = None;
        for g in self.guards.iter().rev() {
            let raw_box;
            let current = match &replaced {
                None => *item,
                Some(b) => {
                    let Ok(text) = std::str::from_utf8(b) else {
                        return drop_invalid();
                    };
                    let Ok(r) = serde_json::value::RawValue::from_string(text.to_owned()) else {
                        return drop_invalid();
                    };
                    raw_box = r;
                    ListItem {
                        raw: &raw_box,
                        ..*item
                    }
                }
            };
            match g.list_item(&current, ctx).resolve().await {
                ItemVerdict::Keep => {}
                d @ ItemVerdict::Drop { .. } => return d,
                ItemVerdict::Replace(b) => replaced = Some(b),
            }
        }
        replaced.map_or(ItemVerdict::Keep, ItemVerdict::Replace)
    }

    /// A session ended: every guard's hook, bottom-up.
    pub async fn session_end(&self, key: &SessionKey) {
        for g in self.guards.iter().rev() {
            g.session_end(key).resolve().await;
        }
    }

    /// An exchange ended: every guard sees the outcome, bottom-up.
    pub fn done(&self, ctx: &Ctx, outcome: &Outcome) {
        for g in self.guards.iter().rev() {
            g.done(ctx, outcome);
        }
    }

    /// Run the guards from position `i` on; stops at a rewrite or an answer (`i` then points
    /// past that guard).
    async fn run(
        &self,
        msg: &Message<'_>,
        ctx: &mut Ctx,
        reverse: bool,
        i: &mut usize,
    ) -> Result<Option<Verdict>, Refusal> {
        let n = self.guards.len();
        while *i < n {
            let g = &self.guards[if reverse { n - 1 - *i } else { *i }];
            *i += 1;
            let check: Check<'_> = if reverse {
                g.server_message(msg, ctx)
            } else {
                g.client_message(msg, ctx)
            };
            match check.resolve().await {
                Verdict::Continue => {}
                Verdict::Deny(r) => return Err(with_guard(r, g.name(), ctx)),
                v => {
                    if matches!(v, Verdict::Answer(_)) {
                        ctx.facts.insert("answered_by", g.name().into());
                    }
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }

    /// The caller's parse serves until a guard rewrites; each rewrite is parsed again before the
    /// next guard sees it.
    async fn walk(&self, msg: &Message<'_>, ctx: &mut Ctx, reverse: bool) -> Result<Step, Refusal> {
        let mut i = 0;
        let mut bytes = match self.run(msg, ctx, reverse, &mut i).await? {
            None => return Ok(Step::Done(Walked::Unchanged)),
            Some(Verdict::Rewrite(b)) => b,
            Some(Verdict::Answer(a)) => return answer(msg, a),
            Some(_) => return Err(Refusal::internal()),
        };
        loop {
            let next = {
                let m = Message::parse(&bytes).map_err(|e| {
                    Refusal::new(
                        502,
                        e.code(),
                        "guard_rewrite_invalid",
                        "P1.1",
                        "A guard produced an invalid message",
                        e.to_string(),
                    )
                })?;
                match self.run(&m, ctx, reverse, &mut i).await? {
                    None => None,
                    Some(Verdict::Rewrite(b)) => Some(b),
                    Some(Verdict::Answer(a)) => return answer(&m, a),
                    Some(_) => return Err(Refusal::internal()),
                }
            };
            match next {
                Some(b) => bytes = b,
                None => return Ok(Step::Done(Walked::Rewritten(Bytes::from(bytes)))),
            }
        }
    }
}

enum Step {
    Done(Walked),
    Answer(Vec<u8>),
}

/// Only a client request can be answered locally.
fn answer(msg: &Message<'_>, a: Vec<u8>) -> Result<Step, Refusal> {
    match msg.kind() {
        warden_proto::Kind::Request => Ok(Step::Answer(a)),
        _ => Err(Refusal::internal()),
    }
}

fn drop_invalid() -> ItemVerdict {
    ItemVerdict::Drop {
        reason: "guard_rewrite_invalid",
        control: "P1.1",
    }
}

fn with_guard(r: Refusal, guard: &'static str, ctx: &mut Ctx) -> Refusal {
    ctx.facts.insert("refused_by", guard.into());
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Tracer(&'static str, Arc<Mutex<Vec<String>>>);
    impl Guard for Tracer {
        fn name(&self) -> &'static str {
            self.0
        }
        fn client_message<'a>(&'a self, _m: &'a Message<'a>, _c: &'a mut Ctx) -> Check<'a> {
            self.1.lock().unwrap().push(format!("c:{}", self.0));
            Check::Ready(Verdict::Continue)
        }
        fn server_message<'a>(&'a self, _m: &'a Message<'a>, _c: &'a mut Ctx) -> Check<'a> {
            self.1.lock().unwrap().push(format!("s:{}", self.0));
            if self.0 == "b" {
                Check::Ready(Verdict::Rewrite(
                    br#"{"jsonrpc":"2.0","id":1,"result":{"x":2}}"#.to_vec(),
                ))
            } else {
                Check::Ready(Verdict::Continue)
            }
        }
    }

    #[tokio::test]
    async fn client_walk_is_top_down_server_walk_bottom_up() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let p = Pipeline::from_guards(vec![
            Box::new(Tracer("a", log.clone())),
            Box::new(Tracer("b", log.clone())),
        ]);
        let mut ctx = Ctx::test();
        let raw = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        let m = Message::parse(&raw).unwrap();
        let Passed::Forward(out) = p.client(&raw, &m, &mut ctx).await.unwrap() else {
            panic!("forwarded")
        };
        assert_eq!(
            out.bytes(),
            &raw,
            "untouched messages pass as the same bytes"
        );
        let s = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        let m = Message::parse(s).unwrap();
        let Walked::Rewritten(out) = p.server_parsed(&m, &mut ctx).await.unwrap() else {
            panic!("rewritten")
        };
        assert_eq!(&out[..], br#"{"jsonrpc":"2.0","id":1,"result":{"x":2}}"#);
        assert_eq!(*log.lock().unwrap(), ["c:a", "c:b", "s:b", "s:a"]);
    }

    #[test]
    fn default_order_is_pinned() {
        let env = GuardEnv {
            audit: Arc::new(warden_audit::MemorySink::default()),
        };
        assert_eq!(
            Pipeline::new(&Config::default(), &env).names(),
            [
                "http_hygiene",
                "host_origin",
                "tool_headers",
                "stateless_rules"
            ]
        );
    }
}
