//! Lists Warden itself asks the routed upstream for ([`warden_guard::UpstreamChannel`]): a
//! guard that must know a tool's definition before it can check a call (the `x-mcp-header`
//! annotations, #13 item 5a) gets it here instead of letting the call through unchecked.
//!
//! The request is Warden's own: a 2026-07-28 `tools/list` (prompts, resources…) with Warden's
//! `_meta`, the headers SEP-2243 asks for and the upstream credentials the guards set
//! (`upstream_request`), never the client's headers. Every page's items meet the `list_item`
//! hook of every guard ([`super::lists::filter`]), so the guards learn exactly as from a list a
//! client asked for; the answer itself goes nowhere. Only the stateless generation is listed
//! here: a session's lists go through the session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::value::RawValue;
use warden_guard::{BoxFuture, Ctx, ListKind, Listed, UpstreamChannel};
use warden_proto::{Generation, Kind, Message};

use crate::gateway::Gateway;

/// Most pages one own list follows (`nextCursor`).
const MAX_PAGES: usize = 32;

/// The channel of one exchange routed to upstream `idx`.
pub struct UpstreamLink {
    pub gw: Arc<Gateway>,
    pub idx: usize,
    /// The exchange's context without channels (route, generation, request id for audit).
    pub ctx: Ctx,
}

fn method_of(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Tools => "tools/list",
        ListKind::Prompts => "prompts/list",
        ListKind::Resources => "resources/list",
        ListKind::Templates => "resources/templates/list",
    }
}

impl UpstreamLink {
    async fn page(
        &self,
        kind: ListKind,
        n: usize,
        cursor: Option<&str>,
        own: Option<&HeaderMap>,
    ) -> Result<(usize, Option<String>), String> {
        let version = self.ctx.version.map_or("2026-07-28", |v| v.as_str());
        let method = method_of(kind);
        let id = format!("warden-list-{}-{n}", self.ctx.request_id);
        let mut params = serde_json::json!({"_meta": {
            "io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "warden", "version": env!("CARGO_PKG_VERSION")},
        }});
        if let Some(c) = cursor {
            params["cursor"] = c.into();
        }
        let body = serde_json::to_vec(
            &serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )
        .map_err(|e| e.to_string())?;
        let msg = Message::parse(&body).map_err(|e| e.to_string())?;
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_str(version).map_err(|e| e.to_string())?,
        );
        headers.insert("mcp-method", HeaderValue::from_static(method));
        let timeout = Duration::from_millis(self.gw.upstreams[self.idx].cfg.timeout_ms);
        let (reply, _) = self
            .gw
            .send_own(self.idx, &headers, own, &msg, Bytes::from(body.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let want = serde_json::to_string(&id).map_err(|e| e.to_string())?;
        let answer = crate::upstream::final_message(reply, &want, timeout)
            .await
            .map_err(|e| e.to_string())?;
        let m = Message::parse(&answer).map_err(|e| format!("invalid answer: {e}"))?;
        if m.kind() != Kind::Response {
            return Err(format!("the upstream answered {method} with an error"));
        }
        super::lists::filter(&self.gw, &self.ctx, &m, kind)
            .await
            .map_err(|r| r.hint.to_string())?;
        let result = m.result().ok_or("no result")?;
        let fields: HashMap<String, &RawValue> =
            serde_json::from_str(result.get()).map_err(|e| e.to_string())?;
        let items = fields
            .get(kind.key())
            .and_then(|a| serde_json::from_str::<Vec<&RawValue>>(a.get()).ok())
            .map_or(0, |v| v.len());
        let next = fields
            .get("nextCursor")
            .and_then(|c| serde_json::from_str::<String>(c.get()).ok());
        Ok((items, next))
    }
}

impl UpstreamChannel for UpstreamLink {
    fn list(&self, kind: ListKind) -> BoxFuture<'_, Result<Listed, String>> {
        Box::pin(async move {
            if self.ctx.generation != Some(Generation::Stateless) {
                return Ok(Listed::Unsupported);
            }
            // No child may be started (the stdio cap): the list fails, so the call fails closed.
            match self.gw.speaks_stateless(self.idx).await {
                Ok(true) => {}
                Ok(false) => return Ok(Listed::Unsupported),
                Err(e) => return Err(e.to_string()),
            }
            let mut own_ctx = self.ctx.clone();
            let own = self
                .gw
                .pipeline
                .own_request(&mut own_ctx)
                .await
                .map_err(|r| r.reason.to_owned())?;
            let own = (!own.headers.is_empty()).then_some(&own.headers);
            let (mut items, mut cursor) = (0, None);
            for n in 0..MAX_PAGES {
                let (got, next) = self.page(kind, n, cursor.as_deref(), own).await?;
                items += got;
                match next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            Ok(Listed::Items(items))
        })
    }
}
