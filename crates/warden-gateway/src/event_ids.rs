//! SSE event ids bound to the session (#13 item 18; P8.2, M2; spec checklist E7, E11).
//!
//! An upstream's event id is a cursor: the client hands it back as `Last-Event-ID` to resume a
//! stream. Forwarded verbatim, any session could name any stream to the upstream — another
//! session's, or one the client never saw — and resumption safety would rest on every upstream
//! keying its event store by session (many do not: ids like `<stream>.<seq>` are easy to guess).
//!
//! So within a session Warden hands the client `<mac>.<id>` for each upstream event id `<id>`,
//! where `<mac>` is HMAC-SHA256 over the session's fingerprint and `<id>`, under a key drawn at
//! start (sessions do not outlive the process), truncated to 128 bits and base64url-encoded
//! (22 characters). A `Last-Event-ID` is translated back to `<id>` only when its MAC verifies for
//! this session (in constant time); with several upstreams `<id>` is already `<upstream>~<id>`
//! (`exchange/route.rs`), so the MAC binds the upstream too. Anything else is refused before it
//! can reach an upstream (`exchange/resume.rs`). No state is kept per id.
//!
//! Lossless relay versus security: the event id is the one SSE field Warden changes, and only
//! where a client could resume through Warden — inside a session. The id's value gets the prefix
//! spliced in; every other byte of the block stays (`warden_proto::sse::prefix_id`). Empty ids
//! (which reset the client's cursor) and streams outside a session keep their bytes.
//!
//! Must not: accept an id whose MAC it did not check, or hold any per-session table.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Bytes of the HMAC kept.
const MAC_BYTES: usize = 16;
/// Characters of the encoded MAC.
pub const MAC_CHARS: usize = 22;

/// The key that seals event ids for every session of this gateway.
pub struct EventIds {
    key: hmac::Key,
}

impl EventIds {
    /// A fresh random key.
    pub fn new() -> Result<Self, getrandom::Error> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k)?;
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &k),
        })
    }

    fn mac(&self, session: &str, id: &str) -> [u8; MAC_BYTES] {
        let mut cx = hmac::Context::with_key(&self.key);
        cx.update(&(session.len() as u64).to_be_bytes());
        cx.update(session.as_bytes());
        cx.update(id.as_bytes());
        let tag = cx.sign();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&tag.as_ref()[..MAC_BYTES]);
        out
    }

    /// The prefix (`<mac>.`) that binds upstream event id `id` to `session`.
    pub fn prefix(&self, session: &str, id: &str) -> String {
        let mut p = URL_SAFE_NO_PAD.encode(self.mac(session, id));
        p.push('.');
        p
    }

    /// The upstream event id inside `sealed`, when Warden gave it to `session`.
    pub fn open<'a>(&self, session: &str, sealed: &'a str) -> Option<&'a str> {
        let (mac, id) = (sealed.get(..MAC_CHARS)?, sealed.get(MAC_CHARS..)?);
        let id = id.strip_prefix('.')?;
        let mut got = [0u8; MAC_BYTES + 2];
        let n = URL_SAFE_NO_PAD.decode_slice(mac, &mut got).ok()?;
        let want = self.mac(session, id);
        (n == MAC_BYTES
            && aws_lc_rs::constant_time::verify_slices_are_equal(&got[..n], &want).is_ok())
        .then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_open_only_in_their_own_session() {
        let ids = EventIds::new().unwrap();
        let sealed = format!("{}{}", ids.prefix("aaaa", "0~s.5"), "0~s.5");
        assert_eq!(sealed.len(), MAC_CHARS + 1 + 5);
        assert_eq!(ids.open("aaaa", &sealed), Some("0~s.5"));
        assert_eq!(ids.open("aaab", &sealed), None, "another session");
        let forged = format!("{}{}", &sealed[..MAC_CHARS + 1], "0~s.6");
        assert_eq!(ids.open("aaaa", &forged), None, "another id under the MAC");
        for junk in [
            "",
            "s.5",
            "0~s.5",
            &sealed[..MAC_CHARS],
            "é".repeat(30).as_str(),
        ] {
            assert_eq!(ids.open("aaaa", junk), None, "{junk}");
        }
        let other = EventIds::new().unwrap();
        assert_eq!(other.open("aaaa", &sealed), None, "another gateway's key");
    }
}
