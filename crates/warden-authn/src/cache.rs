//! [`TokenCache`]: verified tokens keyed by the SHA-256 of the token, kept until they expire.
//!
//! A session's later requests skip the signature check but never the expiry check: a cached
//! token at or past `exp` (plus leeway) is answered [`AuthError::Expired`] and dropped (M2). A token
//! whose key left the issuer's key set is dropped too, so a retired key stops working at once.
//! The cache is bounded; when it is full of live tokens a new one is simply not cached.

use std::collections::HashMap;

use crate::error::AuthError;
use crate::keys::KeySet;
use crate::verify::Verified;

/// The cache. Not synchronised: the gateway holds it behind its own lock or shards it.
#[derive(Debug)]
pub struct TokenCache {
    map: HashMap<[u8; 32], Verified>,
    capacity: usize,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity,
        }
    }

    /// The digest the cache keys on.
    pub fn key(token: &str) -> [u8; 32] {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut k = [0u8; 32];
        k.copy_from_slice(d.as_ref());
        k
    }

    /// A cached verification of `token`, if still good at `now` with `keys`:
    /// `None` when not cached (verify it), `Some(Err(Expired))` when it expired.
    pub fn get(
        &mut self,
        token: &str,
        keys: &KeySet,
        now: u64,
        leeway: u64,
    ) -> Option<Result<Verified, AuthError>> {
        let k = Self::key(token);
        let hit = self.map.get(&k)?;
        if now >= hit.expires_at.saturating_add(leeway) {
            self.map.remove(&k);
            return Some(Err(AuthError::Expired));
        }
        if hit.kid.as_deref().is_some_and(|kid| !keys.has_kid(kid)) {
            self.map.remove(&k);
            return None;
        }
        Some(Ok(hit.clone()))
    }

    /// Remembers a verified token.
    pub fn insert(&mut self, token: &str, verified: Verified, now: u64) {
        if self.map.len() >= self.capacity {
            self.map.retain(|_, v| v.expires_at >= now);
            if self.map.len() >= self.capacity {
                return;
            }
        }
        self.map.insert(Self::key(token), verified);
    }

    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Is the cache empty?
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
