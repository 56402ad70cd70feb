//! Server→client request ids and SSE event ids when several upstreams share one endpoint:
//! tagged `<upstream name>~<id>` on the way out, so that the client's answer (and its
//! `Last-Event-ID`) finds its upstream, which gets its own id back.
//!
//! Upstream names are 1–64 of `[A-Za-z0-9_-]` (checked when the configuration loads), so the
//! first `~` always ends the name and a tag adds at most 65 bytes to an id.
//!
//! It owns the format only: it must not decide where a message goes (`exchange::route` does).

use bytes::Bytes;
use warden_proto::{Kind, Message, splice};

use crate::upstream::Frame;

/// `<name>~<id>`.
pub fn tag(name: &str, id: &str) -> String {
    format!("{name}~{id}")
}

/// The upstream name and the upstream's own id of a tag.
pub fn untag(tagged: &str) -> Option<(&str, &str)> {
    tagged.split_once('~')
}

/// Tag a frame's SSE event id and, when it carries a server→client request, that request's id
/// (spliced into the original bytes; nothing else changes).
pub fn tag_frame(name: &str, mut f: Frame) -> Frame {
    if let Some(id) = f.id.take() {
        f.id = Some(tag(name, &id));
        f.raw = None;
    }
    if let Some(data) = &f.data
        && let Ok(m) = Message::parse(data)
        && let (Kind::Request, Some(span), Some(id)) = (m.kind(), m.id_span(), m.id_text())
    {
        let tagged = serde_json::to_string(&tag(name, id)).unwrap_or_default();
        if let Ok(b) = splice::replace(data, span, tagged.as_bytes()) {
            f.data = Some(Bytes::from(b));
            f.raw = None;
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_the_name_and_split_at_the_first_tilde() {
        let f = tag_frame(
            "beta",
            Frame {
                id: Some("7~x".into()),
                ..Frame::message(Bytes::from_static(
                    br#"{"jsonrpc":"2.0","id":"a~b","method":"roots/list"}"#,
                ))
            },
        );
        assert_eq!(f.id.as_deref(), Some("beta~7~x"));
        assert_eq!(
            f.data.as_deref(),
            Some(&br#"{"jsonrpc":"2.0","id":"beta~\"a~b\"","method":"roots/list"}"#[..])
        );
        assert_eq!(untag("beta~7~x"), Some(("beta", "7~x")));
    }
}
