//! Requests Warden itself sends the client ([`warden_guard::ClientChannel`]): a guard's
//! `elicitation/create`, sent through the client's own exchange ([`Early`]) with an id of
//! Warden's own (`warden-<128 random bits>`), and answered when the client posts the response
//! in the same session. Such answers are taken here and never reach an upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use warden_guard::{BoxFuture, ClientChannel, ClientError};
use warden_proto::Message;

use super::answer::Early;

/// Prefix of the ids of Warden's own requests to the client.
pub const ID_PREFIX: &str = "warden-";

type Waiter = oneshot::Sender<Result<serde_json::Value, ClientError>>;

/// Warden's requests to a session's client awaiting answers, by id.
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<String, Waiter>>,
    closed: std::sync::atomic::AtomicBool,
}

impl Waiters {
    /// Is this response (or error) an answer to one of Warden's own requests? If so it is
    /// handed to its waiter and `true` is returned: the caller must not forward it.
    pub fn take_answer(&self, msg: &Message<'_>) -> bool {
        let Some(id) = msg
            .id()
            .and_then(|i| serde_json::from_str::<String>(i.get()).ok())
        else {
            return false;
        };
        if !id.starts_with(ID_PREFIX) {
            return false;
        }
        let waiter = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if let Some(w) = waiter {
            let answer = match (msg.result(), msg.error()) {
                (Some(r), _) => serde_json::from_str(r.get())
                    .map_err(|e| ClientError::Refused(format!("unreadable result: {e}"))),
                (_, Some(e)) => Err(ClientError::Refused(e.get().to_owned())),
                _ => Err(ClientError::Refused("empty answer".into())),
            };
            let _ = w.send(answer);
        }
        // An answer to a Warden id that is no longer awaited (timed out) is still Warden's:
        // it is consumed, never forwarded.
        true
    }

    fn register(
        &self,
        id: String,
    ) -> Option<oneshot::Receiver<Result<serde_json::Value, ClientError>>> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        Some(rx)
    }

    fn forget(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The session ended: every waiter gets `Closed`.
    pub fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        for (_, w) in self.map.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            let _ = w.send(Err(ClientError::Closed));
        }
    }
}

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
