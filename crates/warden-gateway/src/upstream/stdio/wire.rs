//! What a shared stdio child sees in place of what clients sent, and back: each request gets
//! Warden's own id and progress token, both unguessable (128 bits from the OS CSPRNG), and what
//! the child says about it gets the client's own bytes back exactly. Also where the fields that
//! tie a message to a request sit in a message (`progressToken`, `requestId`, `subscriptionId`).
//!
//! Byte-span edits only ([`splice`]): it must not re-serialise a message, and does no I/O.

use std::ops::Range;

use base64::Engine;
use bytes::Bytes;
use serde_json::value::RawValue;
use warden_proto::envelope::span_in;
use warden_proto::{Message, splice};

use super::UpstreamError;

/// A fresh JSON string `"<prefix><22 base64url chars>"`: 128 bits no client can guess.
pub fn unguessable(prefix: &str) -> Result<String, UpstreamError> {
    let mut buf = [0u8; 16];
    getrandom::fill(&mut buf)
        .map_err(|e| UpstreamError::Unreachable(format!("no randomness for a wire id: {e}")))?;
    Ok(format!(
        "\"{prefix}{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
    ))
}

/// A client's request as a shared child gets it.
pub struct Rewritten {
    /// The line to write.
    pub line: Bytes,
    /// Warden's id for the request (raw JSON).
    pub wire_id: String,
    /// The client's id, exactly as it sent it.
    pub client_id: String,
    /// Warden's progress token and the client's own, when the request asked for progress.
    pub token: Option<(String, Bytes)>,
}

/// Replace the request's id and its `_meta.progressToken` (if any) with Warden's own.
pub fn rewrite_request(msg: &Message<'_>) -> Result<Rewritten, UpstreamError> {
    let invalid = |why: &str| UpstreamError::Invalid(why.to_owned());
    let (Some(id), Some(id_span)) = (msg.id(), msg.id_span()) else {
        return Err(invalid("request without id"));
    };
    let wire_id = unguessable("w-")?;
    let mut edits = splice::Edits::new();
    edits.replace(id_span, wire_id.as_bytes());
    let token = match request_token(msg) {
        Some((raw, span)) => {
            let ours = unguessable("wp-")?;
            edits.replace(span, ours.as_bytes());
            Some((ours, Bytes::copy_from_slice(raw.get().as_bytes())))
        }
        None => None,
    };
    let line = edits
        .apply(msg.raw())
        .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
    Ok(Rewritten {
        line: Bytes::from(line),
        wire_id,
        client_id: id.get().to_owned(),
        token,
    })
}

/// A request's `params._meta.progressToken`, and where it sits in the message.
pub fn request_token<'a>(msg: &Message<'a>) -> Option<(&'a RawValue, Range<usize>)> {
    let token = msg.params_view().ok()?.meta?.progress_token?;
    Some((token, span_in(msg.raw(), token)?))
}

/// A `notifications/progress`'s `params.progressToken`, and where it sits.
pub fn progress_token<'a>(msg: &Message<'a>) -> Option<(&'a RawValue, Range<usize>)> {
    if msg.method() != Some("notifications/progress") {
        return None;
    }
    let token = param(msg, "progressToken")?;
    Some((token, span_in(msg.raw(), token)?))
}

/// A `notifications/cancelled`'s `params.requestId`, and where it sits.
pub fn cancelled_id<'a>(msg: &Message<'a>) -> Option<(&'a RawValue, Range<usize>)> {
    if msg.method() != Some("notifications/cancelled") {
        return None;
    }
    let id = param(msg, "requestId")?;
    Some((id, span_in(msg.raw(), id)?))
}

/// `params._meta["io.modelcontextprotocol/subscriptionId"]`: its raw text and span.
pub fn subscription_id(msg: &Message<'_>) -> Option<(String, Range<usize>)> {
    #[derive(serde::Deserialize)]
    struct M<'a> {
        #[serde(borrow, rename = "io.modelcontextprotocol/subscriptionId")]
        sub: Option<&'a RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct P<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<M<'a>>,
    }
    let p: P<'_> = serde_json::from_str(msg.params_text()?).ok()?;
    let sub = p.meta?.sub?;
    Some((sub.get().to_owned(), span_in(msg.raw(), sub)?))
}

/// One member of an object `params` (a duplicate member makes it unreadable: `None`).
fn param<'a>(msg: &Message<'a>, key: &str) -> Option<&'a RawValue> {
    let params = msg.params_text()?;
    let map: std::collections::HashMap<std::borrow::Cow<'a, str>, &'a RawValue> =
        serde_json::from_str(params).ok()?;
    let count = map.len();
    let v = map.get(key).copied();
    // serde keeps the last of two equal keys: read the members again to refuse that case.
    let members = serde_json::from_str::<Members>(params).ok()?;
    (members.0 == count).then_some(v).flatten()
}

/// The number of members of a JSON object, duplicates included.
struct Members(usize);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Members, A::Error> {
                let mut n = 0;
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {
                    n += 1;
                }
                Ok(Members(n))
            }
        }
        d.deserialize_map(V)
    }
}

/// Put `with` (a client's own bytes) at `span` of `raw`; the message unchanged if it cannot be.
pub fn put_back(raw: &Bytes, span: Range<usize>, with: &[u8]) -> Bytes {
    splice::replace(raw, span, with)
        .map(Bytes::from)
        .unwrap_or_else(|_| raw.clone())
}

/// At most `max` bytes of `s` (on a character boundary), for audit details.
pub fn bounded(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_gets_warden_s_id_and_token_and_keeps_every_other_byte() {
        let raw = br#"{"jsonrpc":"2.0","id": 7 ,"method":"tools/call","params":{"name":"x","_meta":{"progressToken" : "mine","k":1e400}}}"#;
        let msg = Message::parse(raw).unwrap();
        let r = rewrite_request(&msg).unwrap();
        assert_eq!(r.client_id, "7");
        let (ours, theirs) = r.token.clone().unwrap();
        assert_eq!(&theirs[..], br#""mine""#);
        assert!(r.wire_id.starts_with("\"w-") && r.wire_id.len() == 2 + 2 + 22);
        assert!(ours.starts_with("\"wp-") && ours.len() == 2 + 3 + 22);
        let expected = format!(
            r#"{{"jsonrpc":"2.0","id": {} ,"method":"tools/call","params":{{"name":"x","_meta":{{"progressToken" : {},"k":1e400}}}}}}"#,
            r.wire_id, ours
        );
        assert_eq!(std::str::from_utf8(&r.line).unwrap(), expected);
        let again = rewrite_request(&msg).unwrap();
        assert_ne!(again.wire_id, r.wire_id, "ids are fresh every time");
    }

    #[test]
    fn tokens_and_request_ids_are_found_where_they_sit() {
        let raw = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1,"progressToken":"wp-x"}}"#;
        let m = Message::parse(raw).unwrap();
        let (t, span) = progress_token(&m).unwrap();
        assert_eq!(t.get(), r#""wp-x""#);
        assert_eq!(&raw[span], br#""wp-x""#);
        let raw =
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#;
        let m = Message::parse(raw).unwrap();
        assert_eq!(cancelled_id(&m).unwrap().0.get(), "3");
        // Two requestIds: which one a server reads is anyone's guess; the envelope refuses it.
        let raw = br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3,"requestId":4}}"#;
        assert!(Message::parse(raw).is_err());
    }
}
