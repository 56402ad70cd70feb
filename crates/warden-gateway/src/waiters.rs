//! Warden's own requests to a session's client (a guard's `elicitation/create`) that await
//! their answers, by id. Each id is Warden's (`warden-<128 random bits>`); an answer the client
//! posts with such an id is taken here and never reaches an upstream, awaited or not.
//!
//! It owns the waiting, not the sending: `exchange::client_link` sends the request.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;
use warden_guard::ClientError;
use warden_proto::Message;

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
            .id_text()
            .and_then(|i| serde_json::from_str::<String>(i).ok())
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
            let answer = match (msg.result_text(), msg.error_text()) {
                (Some(r), _) => serde_json::from_str(r)
                    .map_err(|e| ClientError::Refused(format!("unreadable result: {e}"))),
                (_, Some(e)) => Err(ClientError::Refused(e.to_owned())),
                _ => Err(ClientError::Refused("empty answer".into())),
            };
            let _ = w.send(answer);
        }
        // An answer to a Warden id that is no longer awaited (timed out) is still Warden's:
        // it is consumed, never forwarded.
        true
    }

    pub(crate) fn register(
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

    pub(crate) fn forget(&self, id: &str) {
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
