//! The headers that go with a renamed body (#13 item 17): when the route spliced the upstream's
//! own name into a message (a prefixed tool or prompt), `Mcp-Name` is renamed the same way, so
//! the guards and the upstream see one name in header and body. A client header that does not
//! name what its body called is never renamed into agreement. It must not touch any other header.

use http::HeaderMap;
use warden_guard::Refusal;
use warden_proto::Message;

/// The client's headers with `Mcp-Name` renamed to the upstream's name when the route renamed
/// the body's (`sent` is the client's message, `forwarded` the one with the upstream's name);
/// `None`: nothing to rename. The client's `Mcp-Name` must name what its body called: one that
/// does not is refused in the stateless generation (whose rules compare them), and left as it
/// is in the session-based one (whose rules do not).
pub(super) fn renamed_headers(
    headers: &HeaderMap,
    sent: &Message<'_>,
    forwarded: &Message<'_>,
    stateless: bool,
) -> Result<Option<HeaderMap>, Refusal> {
    let Some(header) = headers.get("mcp-name") else {
        return Ok(None);
    };
    let name = |m: &Message<'_>| {
        let p = m.params_view().ok()?;
        p.name.or(p.uri).map(std::borrow::Cow::into_owned)
    };
    let (Some(exposed), Some(original)) = (name(sent), name(forwarded)) else {
        return Ok(None);
    };
    if exposed == original {
        return Ok(None);
    }
    let value = header
        .to_str()
        .map_err(|_| warden_proto::headers::HeaderMismatch {
            header: "Mcp-Name".into(),
            detail: "header value has characters outside visible ASCII".into(),
        })
        .and_then(|v| warden_proto::headers::renamed_name(v, &exposed, &original));
    match value {
        Ok(v) => {
            let mut out = headers.clone();
            let v = http::HeaderValue::from_str(&v).map_err(|_| Refusal::internal())?;
            out.insert("mcp-name", v);
            Ok(Some(out))
        }
        Err(e) if stateless => Err(Refusal::header_mismatch(&e)),
        Err(_) => Ok(None),
    }
}
