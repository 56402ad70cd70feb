//! What Warden keeps per downstream session: its links to the upstreams and its state.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use warden_guard::SessionKey;
use warden_proto::ProtocolVersion;

use crate::catalog::Catalog;
use crate::standalone::Standalone;
use crate::upstream::stdio::StdioUpstream;

/// A downstream session's link to one upstream.
pub enum Link {
    Http {
        session_id: Mutex<Option<String>>,
        /// The upstream's standalone (GET) stream: one per session, opened by Warden as soon as
        /// the session is initialized and joined by the client's GET (`standalone.rs`).
        standalone: Arc<Standalone>,
    },
    Stdio(Arc<StdioUpstream>),
}

/// What Warden keeps per downstream session.
pub struct SessionState {
    pub fingerprint: Arc<str>,
    pub version: Mutex<Option<ProtocolVersion>>,
    pub links: Vec<Link>,
    /// Upstreams that answered `initialize`; others are left out of this session.
    pub live: Vec<AtomicBool>,
    /// Warden-numbered, resumable SSE streams of this session (stdio upstreams).
    pub events: Arc<crate::event_log::EventLog>,
    /// The guards' state store key for this session.
    pub key: SessionKey,
    /// Requests Warden itself sent the client (elicitation), awaiting their answers.
    pub waiters: crate::waiters::Waiters,
    /// Capabilities the client declared at `initialize` (top-level names).
    pub client_caps: Mutex<Vec<String>>,
    /// Where this session's names lead (several upstreams): filled by its own lists only.
    pub catalog: Mutex<Catalog>,
    /// The principal of the session's latest request (its owner; the token may be newer):
    /// Warden's own requests for the session (GET stream, DELETE) carry its upstream credential.
    pub principal: Mutex<Option<Arc<warden_guard::Principal>>>,
}

impl SessionState {
    /// Remember the principal of a request of this session.
    pub fn seen(&self, p: Option<&Arc<warden_guard::Principal>>) {
        if let Some(p) = p {
            let mut cur = self.principal.lock().unwrap_or_else(|e| e.into_inner());
            if !cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, p)) {
                *cur = Some(p.clone());
            }
        }
    }
}
