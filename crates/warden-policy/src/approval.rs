//! Approvals (P2.4 for people, A-ZT4; #15 item 6): the digest of a call, the integrity-protected
//! `requestState` of the 2026-07-28 retry, and the book of handles an operator can grant.
//!
//! * [`digest`]: SHA-256 over the method, upstream, tool and the arguments as canonical JSON
//!   (keys sorted): what a person approved is exactly what is forwarded.
//! * [`StateKey`]: `requestState` = `base64url(payload).base64url(HMAC-SHA256(payload))`, the
//!   payload binding the call digest, the principal, an expiry and a single-use nonce (F17).
//!   Anything else — another principal, another call, late, tampered, replayed — is refused.
//! * [`Book`]: open approval handles (a client without elicitation gets one in its refusal),
//!   operator grants, remembered approvals per (principal, tool, arguments or any arguments)
//!   and spent nonces; bounded, every entry expiring.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::{digest as sha, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most open handles, remembered approvals or spent nonces kept (each).
pub const MAX_ENTRIES: usize = 10_000;

/// The digest of a call: hex SHA-256 of `method`, `upstream`, `tool` and canonical `args`.
pub fn digest(method: &str, upstream: &str, tool: &str, args: Option<&Value>) -> String {
    let mut c = sha::Context::new(&sha::SHA256);
    for part in [method, upstream, tool] {
        c.update(part.as_bytes());
        c.update(&[0]);
    }
    let mut a = String::new();
    match args {
        Some(v) => canonical(v, &mut a),
        None => a.push_str("{}"),
    }
    c.update(a.as_bytes());
    hex(c.finish().as_ref())
}

/// `v` as JSON with every object's keys sorted (whatever order the map keeps them in).
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// 128 random bits as hex (handles, nonces).
pub fn random_id() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    Some(hex(&b))
}

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    v: u8,
    /// Call digest.
    d: String,
    /// Principal id.
    p: String,
    /// Expiry, unix seconds.
    e: u64,
    /// Nonce.
    n: String,
}

/// Why a `requestState` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not Warden's format, or the HMAC does not verify.
    #[error("the request state is not one Warden issued (tampered or foreign)")]
    Invalid,
    /// Issued for someone else.
    #[error("the request state was issued to another principal")]
    OtherPrincipal,
    /// Issued for another call.
    #[error("the request state was issued for another call")]
    OtherCall,
    /// Too late.
    #[error("the request state has expired")]
    Expired,
    /// Used before.
    #[error("the request state was used already")]
    Replayed,
}

/// The HMAC key of `requestState`.
pub struct StateKey(hmac::Key);

impl StateKey {
    /// A key from `secret` (at least 32 bytes).
    pub fn new(secret: &[u8]) -> Option<Self> {
        (secret.len() >= 32).then(|| Self(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// A random key (states do not survive a restart, nor cross replicas).
    pub fn random() -> Option<Self> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).ok()?;
        Self::new(&b)
    }

    /// A state for `digest` by `principal`, valid until `expires`, with a fresh nonce.
    pub fn mint(&self, digest: &str, principal: &str, expires: u64) -> Option<String> {
        let p = Payload {
            v: 1,
            d: digest.into(),
            p: principal.into(),
            e: expires,
            n: random_id()?,
        };
        let body = B64.encode(serde_json::to_vec(&p).ok()?);
        let tag = hmac::sign(&self.0, body.as_bytes());
        Some(format!("{body}.{}", B64.encode(tag.as_ref())))
    }

    /// Check `state` for `digest` by `principal` at `now`; on success its nonce and expiry
    /// (spend the nonce in the [`Book`]).
    pub fn verify(
        &self,
        state: &str,
        digest: &str,
        principal: &str,
        now: u64,
    ) -> Result<(String, u64), StateError> {
        if state.len() > 2048 {
            return Err(StateError::Invalid);
        }
        let (body, tag) = state.split_once('.').ok_or(StateError::Invalid)?;
        let tag = B64.decode(tag).map_err(|_| StateError::Invalid)?;
        hmac::verify(&self.0, body.as_bytes(), &tag).map_err(|_| StateError::Invalid)?;
        let raw = B64.decode(body).map_err(|_| StateError::Invalid)?;
        let p: Payload = serde_json::from_slice(&raw).map_err(|_| StateError::Invalid)?;
        if p.v != 1 {
            return Err(StateError::Invalid);
        }
        if p.p != principal {
            return Err(StateError::OtherPrincipal);
        }
        if p.d != digest {
            return Err(StateError::OtherCall);
        }
        if now > p.e {
            return Err(StateError::Expired);
        }
        Ok((p.n, p.e))
    }
}

/// What an approval is for, as a person or operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// The handle.
    pub id: String,
    /// Who asked.
    pub principal: String,
    /// Which upstream.
    pub upstream: String,
    /// Which tool.
    pub tool: String,
    /// The arguments, summarised.
    pub summary: String,
    /// The policies that asked.
    pub policies: Vec<String>,
    /// The call digest.
    pub digest: String,
    /// Until when it can be granted (unix seconds).
    pub expires: u64,
    /// Granted by an operator (and not yet used).
    pub granted: bool,
}

/// How far a remembered approval reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The same tool with the same arguments.
    Arguments,
    /// The same tool with any arguments.
    Tool,
}

/// The call a remembered approval is for.
#[derive(Debug, Clone, Copy)]
pub struct Approved<'a> {
    /// Who.
    pub principal: &'a str,
    /// Which upstream.
    pub upstream: &'a str,
    /// Which tool.
    pub tool: &'a str,
    /// The call digest.
    pub digest: &'a str,
}

impl Approved<'_> {
    fn key(&self, reach: Reach) -> (String, String, String, String) {
        let d = match reach {
            Reach::Arguments => self.digest.to_owned(),
            Reach::Tool => String::new(),
        };
        (
            self.principal.into(),
            self.upstream.into(),
            self.tool.into(),
            d,
        )
    }
}

#[derive(Default)]
struct Inner {
    pending: HashMap<String, Pending>,
    remembered: HashMap<(String, String, String, String), u64>,
    spent: HashMap<String, u64>,
}

/// Why a grant failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// No such handle (never issued, expired or used).
    #[error("no open approval with that id (expired, used or never issued)")]
    Unknown,
}

/// Approvals of this process.
#[derive(Default)]
pub struct Book {
    inner: Mutex<Inner>,
}

impl Book {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn prune(i: &mut Inner, now: u64) {
        i.pending.retain(|_, p| p.expires >= now);
        i.remembered.retain(|_, until| *until >= now);
        i.spent.retain(|_, e| *e >= now);
    }

    /// Open a handle for `p` (its `id` is replaced by a fresh one, returned); `None` when the
    /// book is full.
    pub fn open(&self, mut p: Pending, now: u64) -> Option<String> {
        let mut i = self.lock();
        Self::prune(&mut i, now);
        // One open handle per principal and call: asking again returns the same one.
        if let Some(old) = i
            .pending
            .values()
            .find(|x| x.principal == p.principal && x.digest == p.digest)
        {
            return Some(old.id.clone());
        }
        if i.pending.len() >= MAX_ENTRIES {
            return None;
        }
        p.id = random_id()?;
        let id = p.id.clone();
        i.pending.insert(id.clone(), p);
        Some(id)
    }

    /// An operator grants handle `id`.
    pub fn grant(&self, id: &str, now: u64) -> Result<Pending, GrantError> {
        let mut i = self.lock();
        Self::prune(&mut i, now);
        let p = i.pending.get_mut(id).ok_or(GrantError::Unknown)?;
        p.granted = true;
        Ok(p.clone())
    }

    /// An operator denies handle `id` (it is closed).
    pub fn deny(&self, id: &str) -> Result<Pending, GrantError> {
        self.lock().pending.remove(id).ok_or(GrantError::Unknown)
    }

    /// Take (use up) a granted handle for `principal`'s call `digest`.
    pub fn take_grant(&self, principal: &str, digest: &str, now: u64) -> Option<Pending> {
        let mut i = self.lock();
        Self::prune(&mut i, now);
        let id = i
            .pending
            .values()
            .find(|p| p.granted && p.principal == principal && p.digest == digest)?
            .id
            .clone();
        i.pending.remove(&id)
    }

    /// Open handles (for the admin listener).
    pub fn list(&self, now: u64) -> Vec<Pending> {
        let mut i = self.lock();
        Self::prune(&mut i, now);
        let mut v: Vec<Pending> = i.pending.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Remember, at `now`, a yes for `call` until `until` (a full book forgets nothing that is
    /// still valid: the next call asks again).
    pub fn remember(&self, call: &Approved<'_>, reach: Reach, now: u64, until: u64) {
        let mut i = self.lock();
        if i.remembered.len() >= MAX_ENTRIES {
            Self::prune(&mut i, now);
        }
        if i.remembered.len() < MAX_ENTRIES {
            i.remembered.insert(call.key(reach), until);
        }
    }

    /// Is a yes remembered for `call`?
    pub fn remembered(&self, call: &Approved<'_>, reach: Reach, now: u64) -> bool {
        self.lock()
            .remembered
            .get(&call.key(reach))
            .is_some_and(|u| *u >= now)
    }

    /// Spend `nonce` (valid until `expires`): `false` if it was spent before (a replay) or the
    /// book is full (fail closed).
    pub fn spend(&self, nonce: &str, expires: u64, now: u64) -> bool {
        let mut i = self.lock();
        Self::prune(&mut i, now);
        if i.spent.contains_key(nonce) || i.spent.len() >= MAX_ENTRIES {
            return false;
        }
        i.spent.insert(nonce.to_owned(), expires);
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn digests_are_canonical_and_distinct() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":[1,2]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "a": [1, 2], "b": 1 }"#).unwrap();
        assert_eq!(
            digest("tools/call", "u", "t", Some(&a)),
            digest("tools/call", "u", "t", Some(&b))
        );
        assert_ne!(
            digest("tools/call", "u", "t", Some(&a)),
            digest("tools/call", "u", "t2", Some(&a))
        );
        assert_ne!(
            digest("tools/call", "u", "t", Some(&a)),
            digest("tools/call", "u", "t", Some(&json!({"b":2,"a":[1,2]})))
        );
        // No ambiguity between fields.
        assert_ne!(digest("m", "ab", "c", None), digest("m", "a", "bc", None));
    }

    #[test]
    fn states_bind_call_principal_expiry_and_are_single_use() {
        let k = StateKey::random().unwrap();
        let s = k.mint("d1", "alice", 100).unwrap();
        let (nonce, exp) = k.verify(&s, "d1", "alice", 50).unwrap();
        let book = Book::default();
        assert!(book.spend(&nonce, exp, 50));
        assert!(!book.spend(&nonce, exp, 51), "replayed");
        assert_eq!(
            k.verify(&s, "d1", "bob", 50),
            Err(StateError::OtherPrincipal)
        );
        assert_eq!(k.verify(&s, "d2", "alice", 50), Err(StateError::OtherCall));
        assert_eq!(k.verify(&s, "d1", "alice", 101), Err(StateError::Expired));
        // Tampering: another payload under the old tag, a flipped tag, another key, junk.
        let (body, tag) = s.split_once('.').unwrap();
        let forged = B64.encode(br#"{"v":1,"d":"d1","p":"alice","e":99999,"n":"x"}"#);
        assert_eq!(
            k.verify(&format!("{forged}.{tag}"), "d1", "alice", 50),
            Err(StateError::Invalid)
        );
        let mut t = B64.decode(tag).unwrap();
        t[0] ^= 1;
        assert_eq!(
            k.verify(&format!("{body}.{}", B64.encode(&t)), "d1", "alice", 50),
            Err(StateError::Invalid)
        );
        assert_eq!(
            StateKey::random().unwrap().verify(&s, "d1", "alice", 50),
            Err(StateError::Invalid)
        );
        for junk in ["", ".", "a.b", "%%%.%%%", &"x".repeat(5000)] {
            assert_eq!(k.verify(junk, "d1", "alice", 50), Err(StateError::Invalid));
        }
        assert!(StateKey::new(b"short").is_none());
    }

    #[test]
    fn handles_grant_once_and_expire() {
        let book = Book::default();
        let p = Pending {
            id: String::new(),
            principal: "alice".into(),
            upstream: "u".into(),
            tool: "send".into(),
            summary: "{}".into(),
            policies: vec!["x".into()],
            digest: "d".into(),
            expires: 100,
            granted: false,
        };
        let id = book.open(p.clone(), 10).unwrap();
        assert_eq!(
            book.open(p.clone(), 11).unwrap(),
            id,
            "asking again: the same handle"
        );
        assert!(
            book.take_grant("alice", "d", 12).is_none(),
            "not granted yet"
        );
        assert_eq!(book.grant("nope", 12), Err(GrantError::Unknown));
        book.grant(&id, 12).unwrap();
        assert!(
            book.take_grant("bob", "d", 13).is_none(),
            "another principal"
        );
        assert!(
            book.take_grant("alice", "other", 13).is_none(),
            "another call"
        );
        assert!(book.take_grant("alice", "d", 13).is_some());
        assert!(book.take_grant("alice", "d", 14).is_none(), "used up");
        let id2 = book.open(p, 20).unwrap();
        assert_eq!(book.grant(&id2, 101), Err(GrantError::Unknown), "expired");
        let call = |digest| Approved {
            principal: "alice",
            upstream: "u",
            tool: "send",
            digest,
        };
        book.remember(&call("d"), Reach::Tool, 100, 200);
        assert!(book.remembered(&call("other"), Reach::Tool, 150));
        assert!(!book.remembered(&call("d"), Reach::Arguments, 150));
        assert!(!book.remembered(&call("d"), Reach::Tool, 201));
        let bob = Approved {
            principal: "bob",
            ..call("d")
        };
        assert!(
            !book.remembered(&bob, Reach::Tool, 150),
            "another principal"
        );
    }
}
