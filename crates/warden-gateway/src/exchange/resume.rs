//! `Last-Event-ID` on the way in (#13 item 18; P8.2, M2; spec checklist E7, E11): a GET that
//! resumes a stream names an event id Warden gave this session, and the upstream gets back only
//! the id it sent (`event_ids.rs` seals them on the way out).
//!
//! With an HTTP upstream behind the session the header must be one of this session's sealed ids
//! (translated back to the upstream's own id) or one of the session's own Warden-numbered events
//! (stdio upstreams, served from `event_log.rs`); anything else — a raw upstream id, another
//! session's id, a forgery, two headers — is refused 400 `last_event_id_unknown`, audited, and
//! never reaches an upstream. With only stdio upstreams nothing is forwarded and Warden's own log
//! decides, as before. This module must not contact an upstream or keep state.

use http::{HeaderMap, HeaderName, HeaderValue};
use warden_guard::Refusal;
use warden_proto::error::code;

use crate::event_log::parse_event_id;
use crate::gateway::{Gateway, Link, SessionState};

static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The refusal for a `Last-Event-ID` that is not this session's.
fn unknown(message: &'static str) -> Refusal {
    Refusal::new(
        400,
        code::INVALID_REQUEST,
        "last_event_id_unknown",
        "P8.2",
        message,
        "resume only with an event id this session received from Warden, or open the stream without Last-Event-ID",
    )
}

/// The client's headers with `Last-Event-ID` translated back to the upstream's id, or the refusal.
pub fn translate(
    gw: &Gateway,
    session: &SessionState,
    mut headers: HeaderMap,
) -> Result<HeaderMap, Refusal> {
    let mut all = headers.get_all(&LAST_EVENT_ID).iter();
    let Some(value) = all.next() else {
        return Ok(headers);
    };
    if all.next().is_some() {
        return Err(unknown("more than one Last-Event-ID header"));
    }
    if !session.links.iter().any(|l| matches!(l, Link::Http { .. })) {
        return Ok(headers); // stdio only: nothing is forwarded, the session's own log decides
    }
    let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
        return Err(unknown("Last-Event-ID is not UTF-8"));
    };
    if let Some(id) = gw.event_ids.open(&session.fingerprint, text) {
        let v = HeaderValue::from_bytes(id.as_bytes())
            .map_err(|_| unknown("Last-Event-ID does not name an event of this session"))?;
        headers.insert(LAST_EVENT_ID.clone(), v);
        return Ok(headers);
    }
    // One of the session's own Warden-numbered events (a stdio upstream beside HTTP ones).
    if let Some((stream, _)) = parse_event_id(text)
        && session.events.after(stream, Some(u64::MAX)).is_some()
    {
        return Ok(headers);
    }
    Err(unknown(
        "Last-Event-ID does not name an event Warden sent this session",
    ))
}
