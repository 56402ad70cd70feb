//! `Probe`, the test-only guard of `guard_interface.rs`: it uses every hook of the guard
//! interface (see that file's top doc for what each path must show).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use warden_guard::{
    Check, Ctx, Guard, GuardEnv, HttpFacts, ItemVerdict, ListItem, LocalResponse, Outcome, Refusal,
    SessionKey, Slot, UpstreamRequest, Verdict,
};
use warden_proto::Message;

static CALLS: Slot<u32> = Slot::new("probe.calls");

#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) ends: Vec<String>,
    pub(crate) outcomes: usize,
}

pub(crate) struct Probe {
    pub(crate) env: GuardEnv,
    pub(crate) seen: Arc<Mutex<Seen>>,
}

const LOCAL_RESULT: &[u8] = br#"{"content":[{"type":"text","text":"answered by probe"}]}"#;

impl Guard for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn local_paths(&self) -> Vec<String> {
        vec!["/.well-known/probe".into()]
    }
    fn serve_local<'a>(
        &'a self,
        _req: &'a HttpFacts<'a>,
        _ctx: &'a mut Ctx,
    ) -> Check<'a, Option<LocalResponse>> {
        Check::Ready(Some(LocalResponse::json(&br#"{"probe":true}"#[..])))
    }
    fn http_request<'a>(&'a self, req: &'a HttpFacts<'a>, _ctx: &'a mut Ctx) -> Check<'a> {
        Check::later(async move {
            tokio::task::yield_now().await; // a hook that awaits
            if req.headers.contains_key("x-probe-deny") {
                return Verdict::Deny(
                    Refusal::new(401, -32001, "probe_denied", "M1", "Unauthorized", "no")
                        .with_header(
                            HeaderName::from_static("www-authenticate"),
                            HeaderValue::from_static("Bearer realm=\"probe\""),
                        ),
                );
            }
            Verdict::Continue
        })
    }
    fn client_message<'a>(&'a self, msg: &'a Message<'a>, ctx: &'a mut Ctx) -> Check<'a> {
        Check::later(async move {
            // A client whose lists this guard refuses (marked by a header): Warden's own list,
            // asked on the client's behalf to fill the catalog, must meet the same refusal.
            if msg.method() == Some("tools/list")
                && ctx
                    .headers
                    .as_ref()
                    .is_some_and(|h| h.contains_key("x-probe-no-lists"))
            {
                return Verdict::Deny(Refusal::new(
                    403,
                    -32001,
                    "probe_lists_denied",
                    "P7.1",
                    "Forbidden",
                    "no lists for this client",
                ));
            }
            if msg.method() != Some("tools/call") {
                return Verdict::Continue;
            }
            if let Some(st) = ctx.state.clone() {
                let n = st.get(&CALLS).await.unwrap().map_or(0, |n| *n) + 1;
                st.set(&CALLS, n).await.unwrap();
                ctx.facts.insert("probe_calls", n.into());
            }
            let original = ctx.route.as_ref().and_then(|r| r.original.clone());
            match original.as_deref() {
                Some("local") => Verdict::Answer(LOCAL_RESULT.to_vec()),
                Some("guarded") => {
                    let Some(ch) = ctx.client_channel.clone() else {
                        return Verdict::Deny(approval("no channel to the client"));
                    };
                    let params = serde_json::json!({"message": "allow guarded?", "requestedSchema": {"type": "object", "properties": {}}});
                    match ch
                        .request("elicitation/create", params, Duration::from_secs(20))
                        .await
                    {
                        Ok(v) if v["action"] == "accept" => Verdict::Continue,
                        _ => Verdict::Deny(approval("the user declined")),
                    }
                }
                _ => Verdict::Continue,
            }
        })
    }
    fn upstream_request<'a>(
        &'a self,
        req: &'a mut UpstreamRequest,
        _ctx: &'a Ctx,
    ) -> Check<'a, Result<(), Refusal>> {
        req.headers
            .insert("x-warden-probe", HeaderValue::from_static("1"));
        Check::Ready(Ok(()))
    }
    fn server_message<'a>(&'a self, msg: &'a Message<'a>, _ctx: &'a mut Ctx) -> Check<'a> {
        // Results lose their first SECRET; list answers get the echo tool's description
        // upper-cased (so every path that carries a list answer shows it met this hook).
        let raw = msg.raw();
        let (from, to): (&[u8], &[u8]) = (b"SECRET", b"[gone]");
        let (at, from, to) = match raw.windows(6).position(|w| w == from) {
            Some(at) => (at, from, to),
            None => match raw.windows(11).position(|w| w == b"\"echo from ") {
                Some(at) => (at, &b"\"echo from "[..], &b"\"ECHO from "[..]),
                None => return Check::Ready(Verdict::Continue),
            },
        };
        let mut out = raw.to_vec();
        out.splice(at..at + from.len(), to.iter().copied());
        Check::Ready(Verdict::Rewrite(out))
    }
    fn list_item<'a>(&'a self, item: &'a ListItem<'a>, ctx: &'a Ctx) -> Check<'a, ItemVerdict> {
        if item.original != "hidden" {
            return Check::Ready(ItemVerdict::Keep);
        }
        let mut ev = ctx.event("probe.withheld", warden_audit::Decision::Deny);
        ev.tool = Some(item.exposed.into());
        ev.upstream = Some(item.upstream.into());
        self.env.audit.emit(ev); // a standalone event of the guard's own
        Check::Ready(ItemVerdict::Drop {
            reason: "probe_hidden",
            control: "P2.2",
        })
    }
    fn session_end<'a>(&'a self, session: &'a SessionKey) -> Check<'a, ()> {
        self.seen.lock().unwrap().ends.push(session.0.to_string());
        Check::Ready(())
    }
    fn done(&self, _ctx: &Ctx, _outcome: &Outcome) {
        self.seen.lock().unwrap().outcomes += 1;
    }
}

fn approval(why: &'static str) -> Refusal {
    Refusal::new(403, -32001, "approval_denied", "P2.4", "Not approved", why)
}
