//! Downstream sessions of the session-based generation (M4, P8.1–P8.3).
//!
//! Ids come from the OS CSPRNG (256 bits, base64url: visible ASCII), are never derived from user
//! data, and are bound to their [`Owner`]: a lookup by anyone else finds nothing (404,
//! indistinguishable from an unknown id). Sessions end when idle, at an absolute age, on
//! DELETE, or when an upstream ends them; owners are capped in how many they may hold.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use warden_config::SessionConfig;

/// A fresh session id: 32 bytes from the OS CSPRNG, base64url without padding (43 chars).
pub fn new_session_id() -> Result<String, getrandom::Error> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// A short, non-reversible fingerprint of a session id for logs and audit (never the id itself).
pub fn fingerprint(id: &str) -> std::sync::Arc<str> {
    // FNV-1a over the id: enough to correlate events, useless to replay the session.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}").into()
}

/// Who a session belongs to: the authenticated subject, else the client's address (until the
/// identity guard lands), or the local stdio client. Cheap to build on every request: no
/// formatting.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The principal's id (`iss sub`), shared with the principal: no copy per request.
    Subject(std::sync::Arc<str>),
    Addr(IpAddr),
    Local,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Subject(s) => f.write_str(s),
            Owner::Addr(a) => a.fmt(f),
            Owner::Local => f.write_str("stdio"),
        }
    }
}

impl From<&str> for Owner {
    fn from(s: &str) -> Self {
        Owner::Subject(s.into())
    }
}

/// Why a session could not be used. Both answer 404 alike (M2); only the audit tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Unknown, ended or expired.
    NotFound,
    /// Open, but another owner's: someone presented an id that is not theirs.
    OtherOwner,
}

/// One open session as the admin listener shows it (never its id).
#[derive(Debug, Clone)]
pub struct Listed {
    pub fingerprint: std::sync::Arc<str>,
    pub owner: String,
    pub age_secs: u64,
    pub idle_secs: u64,
}

/// Why a session could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    OwnerCap,
    TotalCap,
    Rng,
}

/// Bookkeeping of one session; the transport keeps its own state beside it, keyed by `id`.
#[derive(Debug)]
pub struct SessionEntry {
    pub id: String,
    pub owner: Owner,
    pub created: Instant,
    last_used_ms: AtomicU64,
}

impl SessionEntry {
    fn touch(&self, base: Instant) {
        self.last_used_ms
            .store(base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// The session table, generic over what the transport attaches to a session.
pub struct Sessions<T> {
    cfg: SessionConfig,
    base: Instant,
    /// Keyed by session id; the entry's owner must match for a lookup to find it.
    map: Mutex<HashMap<String, (SessionEntry, std::sync::Arc<T>)>>,
}

impl<T> Sessions<T> {
    pub fn new(cfg: SessionConfig) -> Self {
        Self {
            cfg,
            base: Instant::now(),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Open a session for `owner`, attaching `state` built from the new id.
    pub fn open(
        &self,
        owner: &Owner,
        state: impl FnOnce(&str) -> T,
    ) -> Result<(String, std::sync::Arc<T>), OpenError> {
        let id = new_session_id().map_err(|_| OpenError::Rng)?;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        self.expire_locked(&mut map);
        if map.len() >= self.cfg.max_total {
            return Err(OpenError::TotalCap);
        }
        if map.values().filter(|(e, _)| e.owner == *owner).count() >= self.cfg.max_per_client {
            return Err(OpenError::OwnerCap);
        }
        let entry = SessionEntry {
            id: id.clone(),
            owner: owner.clone(),
            created: Instant::now(),
            last_used_ms: AtomicU64::new(0),
        };
        entry.touch(self.base);
        let state = std::sync::Arc::new(state(&id));
        map.insert(id.clone(), (entry, state.clone()));
        Ok((id, state))
    }

    /// The session `id` of `owner`, if it is open and not expired; marks it used.
    pub fn get(&self, owner: &Owner, id: &str) -> Result<std::sync::Arc<T>, Lookup> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(id) {
            Some((e, _)) if e.owner != *owner => Err(Lookup::OtherOwner),
            None => Err(Lookup::NotFound),
            Some((e, _)) if self.is_expired(e) => {
                map.remove(id);
                Err(Lookup::NotFound)
            }
            Some((e, s)) => {
                e.touch(self.base);
                Ok(s.clone())
            }
        }
    }

    /// End a session of `owner`; returns its state so the transport can close upstream links.
    pub fn remove(&self, owner: &Owner, id: &str) -> Option<std::sync::Arc<T>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(id) {
            Some((e, _)) if e.owner == *owner => map.remove(id).map(|(_, s)| s),
            _ => None,
        }
    }

    /// The open sessions (admin listing).
    pub fn list(&self) -> Vec<Listed> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now_ms = self.base.elapsed().as_millis() as u64;
        let mut out: Vec<Listed> = map
            .values()
            .filter(|(e, _)| !self.is_expired(e))
            .map(|(e, _)| Listed {
                fingerprint: fingerprint(&e.id),
                owner: e.owner.to_string(),
                age_secs: e.created.elapsed().as_secs(),
                idle_secs: now_ms.saturating_sub(e.last_used_ms.load(Ordering::Relaxed)) / 1000,
            })
            .collect();
        out.sort_by(|a, b| {
            a.owner
                .cmp(&b.owner)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        out
    }

    /// Remove the sessions `pick` chooses (revocation); returns (fingerprint, owner, state).
    pub fn revoke(
        &self,
        pick: impl Fn(&str, &Owner) -> bool,
    ) -> Vec<(std::sync::Arc<str>, Owner, std::sync::Arc<T>)> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let ids: Vec<String> = map
            .iter()
            .filter(|(id, (e, _))| pick(&fingerprint(id), &e.owner))
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter()
            .filter_map(|id| map.remove(id))
            .map(|(e, s)| (fingerprint(&e.id), e.owner, s))
            .collect()
    }

    /// Remove expired sessions; returns their states for cleanup.
    pub fn sweep(&self) -> Vec<std::sync::Arc<T>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        self.expire_locked(&mut map)
    }

    /// Remove every session (Warden is stopping); returns their states for cleanup.
    pub fn take_all(&self) -> Vec<std::sync::Arc<T>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.drain().map(|(_, (_, s))| s).collect()
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_expired(&self, e: &SessionEntry) -> bool {
        let now_ms = self.base.elapsed().as_millis() as u64;
        let idle =
            Duration::from_millis(now_ms.saturating_sub(e.last_used_ms.load(Ordering::Relaxed)));
        idle > Duration::from_secs(self.cfg.idle_timeout_secs)
            || e.created.elapsed() > Duration::from_secs(self.cfg.absolute_timeout_secs)
    }

    fn expire_locked(
        &self,
        map: &mut HashMap<String, (SessionEntry, std::sync::Arc<T>)>,
    ) -> Vec<std::sync::Arc<T>> {
        let dead: Vec<String> = map
            .iter()
            .filter(|(_, (e, _))| self.is_expired(e))
            .map(|(k, _)| k.clone())
            .collect();
        dead.iter()
            .filter_map(|k| map.remove(k))
            .map(|(_, s)| s)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(idle: u64, abs: u64, per: usize, total: usize) -> SessionConfig {
        SessionConfig {
            idle_timeout_secs: idle,
            absolute_timeout_secs: abs,
            max_per_client: per,
            max_total: total,
        }
    }

    #[test]
    fn ids_are_random_visible_ascii_and_long() {
        let a = new_session_id().unwrap();
        let b = new_session_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|c| (0x21..=0x7e).contains(&c)));
        assert_ne!(&*fingerprint(&a), a);
    }

    #[test]
    fn sessions_are_bound_to_their_owner() {
        let s: Sessions<()> = Sessions::new(cfg(60, 600, 4, 10));
        let (alice, mallory) = (Owner::from("alice"), Owner::from("mallory"));
        let (id, _) = s.open(&alice, |_| ()).unwrap();
        assert!(s.get(&alice, &id).is_ok());
        assert_eq!(s.get(&mallory, &id).err(), Some(Lookup::OtherOwner));
        assert!(s.remove(&mallory, &id).is_none(), "no one else may end it");
        assert_eq!(s.get(&alice, "forged").err(), Some(Lookup::NotFound));
        assert!(s.remove(&alice, &id).is_some());
        assert_eq!(s.get(&alice, &id).err(), Some(Lookup::NotFound));
    }

    #[test]
    fn revocation_by_fingerprint_and_by_owner() {
        let s: Sessions<()> = Sessions::new(cfg(60, 600, 4, 10));
        let (alice, bob) = (Owner::from("alice"), Owner::from("bob"));
        let (a1, _) = s.open(&alice, |_| ()).unwrap();
        let (a2, _) = s.open(&alice, |_| ()).unwrap();
        let (b1, _) = s.open(&bob, |_| ()).unwrap();
        assert_eq!(s.list().len(), 3);
        assert!(
            s.list()
                .iter()
                .all(|l| l.fingerprint.len() == 16 && l.owner != a1)
        );
        let fp = fingerprint(&a1);
        assert_eq!(s.revoke(|f, _| *f == *fp).len(), 1);
        assert_eq!(s.get(&alice, &a1).err(), Some(Lookup::NotFound));
        assert!(s.get(&alice, &a2).is_ok());
        assert_eq!(s.revoke(|_, o| *o == alice).len(), 1);
        assert_eq!(s.get(&alice, &a2).err(), Some(Lookup::NotFound));
        assert!(
            s.get(&bob, &b1).is_ok(),
            "another principal's sessions stay"
        );
    }

    #[test]
    fn caps_per_owner_and_in_total() {
        let s: Sessions<()> = Sessions::new(cfg(60, 600, 2, 3));
        let [a, b, c] = ["a", "b", "c"].map(Owner::from);
        s.open(&a, |_| ()).unwrap();
        s.open(&a, |_| ()).unwrap();
        assert_eq!(s.open(&a, |_| ()).err(), Some(OpenError::OwnerCap));
        s.open(&b, |_| ()).unwrap();
        assert_eq!(s.open(&c, |_| ()).err(), Some(OpenError::TotalCap));
    }

    #[test]
    fn idle_sessions_expire() {
        let s: Sessions<()> = Sessions::new(cfg(0, 600, 2, 3));
        let a = Owner::from("a");
        let (id, _) = s.open(&a, |_| ()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.get(&a, &id).err(), Some(Lookup::NotFound));
    }
}
