//! Requests Warden itself sends the client ([`warden_guard::ClientChannel`]): a guard's
//! `elicitation/create`, sent through the client's own exchange ([`Early`]) with an id of
//! Warden's own (`warden-<128 random bits>`), and answered when the client posts the response
//! in the same session. Such answers are taken here and never reach an upstream.

use std::sync::Arc;
use std::time::Duration;

use warden_guard::{BoxFuture, ClientChannel, ClientError};

use super::answer::Early;
use crate::waiters::ID_PREFIX;

/// The client channel of one exchange in a session.
pub struct SessionClient {
    /// The session (its waiters and declared capabilities).
    pub session: Arc<crate::gateway::SessionState>,
    /// How to reach the client now.
    pub early: Early,
}

fn new_id() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    let mut s = String::with_capacity(ID_PREFIX.len() + 32);
    s.push_str(ID_PREFIX);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    Some(s)
}

impl ClientChannel for SessionClient {
    fn has_capability(&self, name: &str) -> bool {
        self.session
            .client_caps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|c| c == name)
    }

    fn request<'a>(
        &'a self,
        method: &'a str,
        params: serde_json::Value,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<serde_json::Value, ClientError>> {
        Box::pin(async move {
            if !self.early.available() {
                return Err(ClientError::Unsupported);
            }
            let id = new_id().ok_or(ClientError::Unsupported)?;
            let Some(rx) = self.session.waiters.register(id.clone()) else {
                return Err(ClientError::Closed);
            };
            let msg =
                serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            let bytes = serde_json::to_vec(&msg).unwrap_or_default();
            if !self.early.send(&bytes).await {
                self.session.waiters.forget(&id);
                return Err(ClientError::Unsupported);
            }
            let out = match tokio::time::timeout(timeout, rx).await {
                Err(_) => Err(ClientError::Timeout),
                Ok(Err(_)) => Err(ClientError::Closed),
                Ok(Ok(r)) => r,
            };
            self.session.waiters.forget(&id);
            out
        })
    }
}
