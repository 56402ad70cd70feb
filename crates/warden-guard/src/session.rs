//! Per-session state a guard owns, behind a small store interface.
//!
//! A guard declares a typed [`Slot`] once (`static RISK: Slot<Risk> = Slot::new("policy.risk")`)
//! and reads and writes it through the request's [`SessionRef`]. The store only sees slot names
//! and erased values; [`MemoryStore`] keeps them in process, and a shared store (Redis) can
//! implement [`SessionStore`] with the [`Stored::encode`] / [`Slot`] decode functions it is
//! handed, without any guard changing. When a session ends, the core calls every guard's
//! `session_end` hook and then [`SessionStore::end`].

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::verdict::Check;

/// The store's key for one downstream session: opaque, chosen by the core, never the session id
/// a client presents.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey(pub Arc<str>);

/// A value as the store holds it.
pub type Erased = Arc<dyn Any + Send + Sync>;

/// A value on its way into a store: the live value and how to encode it for a shared store.
pub struct Stored {
    /// The value itself.
    pub value: Erased,
    /// JSON encoding of `value` (for stores outside the process).
    pub encode: fn(&(dyn Any + Send + Sync)) -> Option<Vec<u8>>,
}

/// How to decode a slot's JSON back into a live value (for stores outside the process).
pub type Decode = fn(&[u8]) -> Option<Erased>;

/// Why the store could not answer. A guard that needs its state must fail closed on this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

/// Where session state lives. Every method may await (a network store).
pub trait SessionStore: Send + Sync {
    /// The value of `slot` for `session`, if any.
    fn load<'a>(
        &'a self,
        session: &'a SessionKey,
        slot: &'static str,
        decode: Decode,
    ) -> Check<'a, Result<Option<Erased>, StoreError>>;
    /// Set `slot` for `session`.
    fn save<'a>(
        &'a self,
        session: &'a SessionKey,
        slot: &'static str,
        value: Stored,
    ) -> Check<'a, Result<(), StoreError>>;
    /// Forget everything of `session`.
    fn end<'a>(&'a self, session: &'a SessionKey) -> Check<'a, ()>;
}

/// A typed slot of session state, named once per guard.
pub struct Slot<T> {
    name: &'static str,
    _t: PhantomData<fn() -> T>,
}

impl<T> Slot<T> {
    /// A slot called `name` (prefix it with the guard's name: `"policy.flow"`).
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _t: PhantomData,
        }
    }
    /// The slot's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

fn encode<T: Serialize + Send + Sync + 'static>(v: &(dyn Any + Send + Sync)) -> Option<Vec<u8>> {
    serde_json::to_vec(v.downcast_ref::<T>()?).ok()
}

fn decode<T: DeserializeOwned + Send + Sync + 'static>(b: &[u8]) -> Option<Erased> {
    serde_json::from_slice::<T>(b)
        .ok()
        .map(|v| Arc::new(v) as Erased)
}

/// The request's handle on its session's state.
#[derive(Clone)]
pub struct SessionRef {
    /// The store key.
    pub key: SessionKey,
    /// The store.
    pub store: Arc<dyn SessionStore>,
}

impl std::fmt::Debug for SessionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRef")
            .field("key", &self.key)
            .finish()
    }
}

impl SessionRef {
    /// The slot's value, if set.
    pub async fn get<T>(&self, slot: &Slot<T>) -> Result<Option<Arc<T>>, StoreError>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let v = self
            .store
            .load(&self.key, slot.name, decode::<T>)
            .resolve()
            .await?;
        Ok(v.and_then(|v| v.downcast::<T>().ok()))
    }

    /// Set the slot.
    pub async fn set<T>(&self, slot: &Slot<T>, value: T) -> Result<(), StoreError>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let stored = Stored {
            value: Arc::new(value),
            encode: encode::<T>,
        };
        self.store
            .save(&self.key, slot.name, stored)
            .resolve()
            .await
    }
}

/// Session state in this process: a map per session, dropped when the session ends.
#[derive(Default)]
pub struct MemoryStore {
    map: Mutex<HashMap<SessionKey, HashMap<&'static str, Erased>>>,
}

impl MemoryStore {
    /// How many sessions hold state (for tests and metrics).
    pub fn sessions(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl SessionStore for MemoryStore {
    fn load<'a>(
        &'a self,
        session: &'a SessionKey,
        slot: &'static str,
        _decode: Decode,
    ) -> Check<'a, Result<Option<Erased>, StoreError>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Check::Ready(Ok(map.get(session).and_then(|s| s.get(slot)).cloned()))
    }

    fn save<'a>(
        &'a self,
        session: &'a SessionKey,
        slot: &'static str,
        value: Stored,
    ) -> Check<'a, Result<(), StoreError>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(session.clone())
            .or_default()
            .insert(slot, value.value);
        Check::Ready(Ok(()))
    }

    fn end<'a>(&'a self, session: &'a SessionKey) -> Check<'a, ()> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session);
        Check::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Count(u32);
    static COUNT: Slot<Count> = Slot::new("test.count");

    #[tokio::test]
    async fn typed_slots_round_trip_and_end_with_the_session() {
        let store = Arc::new(MemoryStore::default());
        let s = SessionRef {
            key: SessionKey("k".into()),
            store: store.clone(),
        };
        assert_eq!(s.get(&COUNT).await.unwrap(), None);
        s.set(&COUNT, Count(3)).await.unwrap();
        assert_eq!(*s.get(&COUNT).await.unwrap().unwrap(), Count(3));
        assert_eq!(store.sessions(), 1);
        store.end(&s.key).resolve().await;
        assert_eq!(s.get(&COUNT).await.unwrap(), None);
        assert_eq!(store.sessions(), 0);
    }

    #[test]
    fn stored_values_encode_for_a_shared_store() {
        let v: Erased = Arc::new(Count(7));
        assert_eq!(encode::<Count>(&*v).unwrap(), b"7");
        let back = decode::<Count>(b"7").unwrap();
        assert_eq!(back.downcast_ref::<Count>(), Some(&Count(7)));
    }
}
