//! The order of Warden's guards — the one place it is written.
//!
//! Before any guard sees a message, the relay applies the input limits (size, UTF-8, depth) and
//! parses the JSON-RPC envelope (P1.1); a message that fails there is answered -32700/-32600 and
//! audited. Then:
//!
//! * HTTP request heads meet the guards top-down (`http_request`).
//! * Client→server messages meet the guards **top-down** (`client_message`).
//! * Server→client messages meet the guards **bottom-up** (`server_message`).
//!
//! A `Deny` stops the walk; a `Rewrite` replaces the message for the guards after it. Identity,
//! policy, tool pinning, inspection, limits and audit guards slot into this list as they land.

use std::sync::Arc;

use bytes::Bytes;
use warden_config::Config;
use warden_proto::Message;

use crate::guard::{Ctx, Guard, HttpFacts, Refusal, Verdict};
use crate::guards::{host_origin::HostOrigin, protocol::StatelessRules, tool_headers::ToolHeaders};

/// The guards, in order.
pub fn guards(cfg: &Config) -> Vec<Box<dyn Guard>> {
    vec![
        // P8.4 DNS-rebinding defence: Host and Origin allowlists.
        Box::new(HostOrigin::new(&cfg.server)),
        // P1.1 (SEP-2243): x-mcp-header annotations — withhold invalid tools, hand the called
        // tool's annotations to the protocol rules below.
        Box::new(ToolHeaders::default()),
        // P3.4 / P1.1: 2026-07-28 `_meta`, version and header–body agreement (incl. Mcp-Param-*).
        Box::new(StatelessRules),
    ]
}

/// The guards as one value the transports share.
#[derive(Clone)]
pub struct Pipeline {
    guards: Arc<Vec<Box<dyn Guard>>>,
}

/// A message that has passed every client→server guard; only this can be forwarded upstream.
pub struct Cleared(pub Bytes);

/// What a walk over a message the caller already parsed gives back.
pub enum Walked {
    /// No guard changed it: the caller's bytes and parse still stand.
    Unchanged,
    /// A guard rewrote it: these bytes replace the message (parse them again).
    Rewritten(Bytes),
}

impl Pipeline {
    pub fn new(cfg: &Config) -> Self {
        Self::from_guards(guards(cfg))
    }

    pub fn from_guards(guards: Vec<Box<dyn Guard>>) -> Self {
        Self {
            guards: Arc::new(guards),
        }
    }

    /// Names in order (for `warden check-config` and tests).
    pub fn names(&self) -> Vec<&'static str> {
        self.guards.iter().map(|g| g.name()).collect()
    }

    pub fn http_request(&self, facts: &HttpFacts<'_>, ctx: &mut Ctx) -> Result<(), Refusal> {
        for g in self.guards.iter() {
            if let Verdict::Deny(r) = g.http_request(facts, ctx) {
                return Err(with_guard(r, g.name(), ctx));
            }
        }
        Ok(())
    }

    /// Walk a client→server message top-down.
    pub async fn client_message(&self, raw: Bytes, ctx: &mut Ctx) -> Result<Cleared, Refusal> {
        match self.client_parsed(&parse(&raw)?, ctx).await? {
            Walked::Unchanged => Ok(Cleared(raw)),
            Walked::Rewritten(b) => Ok(Cleared(b)),
        }
    }

    /// Walk a server→client message bottom-up.
    pub async fn server_message(&self, raw: Bytes, ctx: &mut Ctx) -> Result<Bytes, Refusal> {
        match self.server_parsed(&parse(&raw)?, ctx).await? {
            Walked::Unchanged => Ok(raw),
            Walked::Rewritten(b) => Ok(b),
        }
    }

    /// [`Self::client_message`] for a message the caller has parsed already (the hot path
    /// parses each message once).
    pub async fn client_parsed(&self, msg: &Message<'_>, ctx: &mut Ctx) -> Result<Walked, Refusal> {
        self.walk(msg, ctx, false).await
    }

    /// [`Self::server_message`] for a message the caller has parsed already.
    pub async fn server_parsed(&self, msg: &Message<'_>, ctx: &mut Ctx) -> Result<Walked, Refusal> {
        self.walk(msg, ctx, true).await
    }

    /// Run the guards from position `i` on; `Some(bytes)` when one rewrote the message (`i` then
    /// points past it).
    async fn run(
        &self,
        msg: &Message<'_>,
        ctx: &mut Ctx,
        reverse: bool,
        i: &mut usize,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        let n = self.guards.len();
        while *i < n {
            let g = &self.guards[if reverse { n - 1 - *i } else { *i }];
            *i += 1;
            let check = if reverse {
                g.server_message(msg, ctx)
            } else {
                g.client_message(msg, ctx)
            };
            match check.resolve().await {
                Verdict::Continue => {}
                Verdict::Deny(r) => return Err(with_guard(r, g.name(), ctx)),
                Verdict::Rewrite(bytes) => return Ok(Some(bytes)),
            }
        }
        Ok(None)
    }

    /// The caller's parse serves until a guard rewrites; each rewrite is parsed again before the
    /// next guard sees it.
    async fn walk(
        &self,
        msg: &Message<'_>,
        ctx: &mut Ctx,
        reverse: bool,
    ) -> Result<Walked, Refusal> {
        let mut i = 0;
        let Some(mut bytes) = self.run(msg, ctx, reverse, &mut i).await? else {
            return Ok(Walked::Unchanged);
        };
        loop {
            let next = {
                let msg = Message::parse(&bytes).map_err(|e| {
                    Refusal::new(
                        502,
                        e.code(),
                        "guard_rewrite_invalid",
                        "P1.1",
                        "A guard produced an invalid message",
                        e.to_string(),
                    )
                })?;
                self.run(&msg, ctx, reverse, &mut i).await?
            };
            match next {
                Some(b) => bytes = b,
                None => return Ok(Walked::Rewritten(Bytes::from(bytes))),
            }
        }
    }
}

/// The envelope of a message the caller did not parse (callers validate first; this is the
/// fail-closed backstop).
fn parse(raw: &[u8]) -> Result<Message<'_>, Refusal> {
    Message::parse(raw)
        .map_err(|e| Refusal::invalid_message(&e, "send one valid JSON-RPC 2.0 message"))
}

fn with_guard(r: Refusal, guard: &'static str, ctx: &mut Ctx) -> Refusal {
    ctx.facts.insert("refused_by", guard.into());
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::Check;
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
        let out = p.client_message(raw.clone(), &mut ctx).await.unwrap();
        assert_eq!(out.0, raw, "untouched messages pass as the same bytes");
        let out = p
            .server_message(
                Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
                &mut ctx,
            )
            .await
            .unwrap();
        assert_eq!(&out[..], br#"{"jsonrpc":"2.0","id":1,"result":{"x":2}}"#);
        assert_eq!(*log.lock().unwrap(), ["c:a", "c:b", "s:b", "s:a"]);
    }

    #[test]
    fn default_order_is_pinned() {
        assert_eq!(
            Pipeline::new(&Config::default()).names(),
            ["host_origin", "tool_headers", "stateless_rules"]
        );
    }
}
