//! The borrowed JSON-RPC 2.0 envelope (P1.1, J2, J3).
//!
//! [`Message::parse`] reads only the envelope (`jsonrpc`, `id`, `method`, `params`, `result`,
//! `error`) as borrowed slices of the input. Everything else — unknown fields, `_meta`, key order,
//! whitespace, number spelling — stays in the caller's bytes, which are what gets forwarded.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

/// What a JSON-RPC message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    /// A response carrying `result`.
    Response,
    /// A response carrying `error`.
    Error,
}

/// Why bytes are not one valid JSON-RPC message. `code()` is the JSON-RPC error code to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Not JSON at all (JSON-RPC -32700).
    #[error("parse error: {0}")]
    Parse(String),
    /// JSON, but not a valid JSON-RPC message (JSON-RPC -32600).
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    /// A key repeated within one object, at any depth (JSON-RPC -32600): parsers disagree on
    /// which one counts. `id` is the message's raw id when it could be read, to echo it.
    #[error("invalid request: the key {key:?} appears twice in one object")]
    DuplicateKey {
        /// The repeated key (at most 64 characters).
        key: String,
        /// The raw JSON text of the message's id.
        id: Option<String>,
    },
}

impl ProtoError {
    pub fn code(&self) -> i64 {
        match self {
            ProtoError::Parse(_) => crate::error::code::PARSE_ERROR,
            ProtoError::Invalid(_) | ProtoError::DuplicateKey { .. } => {
                crate::error::code::INVALID_REQUEST
            }
        }
    }
    /// Stable machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ProtoError::Parse(_) => "malformed_json",
            ProtoError::Invalid(_) => "invalid_jsonrpc",
            ProtoError::DuplicateKey { .. } => "duplicate_key",
        }
    }

    /// The raw id of the message refused, when it could be read (to echo in the error).
    pub fn id(&self) -> Option<&str> {
        match self {
            ProtoError::DuplicateKey { id, .. } => id.as_deref(),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// An optional string borrowed from the input when it has no escapes. (`#[serde(borrow)]` on an
/// `Option<Cow<str>>` does not borrow: serde allocates every such string. These are read for
/// every message in both directions.)
fn borrowed_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Option::<Borrowed<'de>>::deserialize(d).map(|o| o.map(|Borrowed(s)| s))
}

/// A present field is `Some` even when its value is `null` (serde's `Option` would say `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// One JSON-RPC message, borrowed from its bytes. The members are kept as their value text
/// (without the whitespace around it); [`Self::id`] and the others lend them as `RawValue`s.
/// Two reads are equal when their bytes, kind and members are (members compared as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    raw: &'a [u8],
    kind: Kind,
    id: Option<&'a str>,
    method: Option<Cow<'a, str>>,
    params: Option<&'a str>,
    result: Option<&'a str>,
    error: Option<&'a str>,
}

/// The value text of a member as a `RawValue`: the text is valid JSON (the message was read), so
/// this only wraps it; it reads the value once more, so hot paths use the `_text` accessors.
fn lend(text: Option<&str>) -> Option<&RawValue> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

/// True when the body is a JSON array (a batch), judged by its first non-space byte.
pub fn is_batch(raw: &[u8]) -> bool {
    raw.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

impl<'a> Message<'a> {
    /// Parse one message. Apply [`crate::limits::Limits::check`] first on untrusted input (or
    /// use [`Self::parse_scanned`]).
    pub fn parse(raw: &'a [u8]) -> Result<Self, ProtoError> {
        let text = std::str::from_utf8(raw).map_err(|e| ProtoError::Parse(e.to_string()))?;
        if let Some(fields) = crate::scan::scan(raw, usize::MAX)
            && let Some(read) = Self::from_fields(text, fields)
        {
            return read;
        }
        Self::parse_with(text, || crate::unique::first_duplicate(raw))
    }

    /// The full path alone (serde_json and the repeated-key walk), without the validating scan
    /// [`Self::parse`] tries first: what the scan is checked against by tests and fuzzing.
    #[doc(hidden)]
    pub fn parse_full(raw: &'a [u8]) -> Result<Self, ProtoError> {
        let text = std::str::from_utf8(raw).map_err(|e| ProtoError::Parse(e.to_string()))?;
        Self::parse_with(text, || crate::unique::first_duplicate(raw))
    }

    /// Parse bytes that passed [`crate::limits::Limits::check_scanned`], whose walk already looked
    /// for repeated keys.
    pub fn parse_scanned(scanned: crate::limits::Scanned<'a>) -> Result<Self, ProtoError> {
        let crate::limits::Scanned {
            text,
            duplicate,
            fields,
        } = scanned;
        if let Some(fields) = fields
            && let Some(read) = Self::from_fields(text, fields)
        {
            return read;
        }
        Self::parse_with(text, || duplicate)
    }

    /// The envelope from the members the validating scan found (`crate::scan`: valid JSON, an
    /// object, no key repeated). `None` for anything but the ordinary spelling — `jsonrpc` other
    /// than `"2.0"` as is, a `method` that is not a string without escapes — which serde_json
    /// then reads and judges ([`Self::parse_with`]).
    fn from_fields(text: &'a str, fields: crate::scan::Fields) -> Option<Result<Self, ProtoError>> {
        use crate::scan::{ERROR, ID, JSONRPC, METHOD, PARAMS, RESULT};
        if fields.get(text, JSONRPC)? != "\"2.0\"" {
            return None;
        }
        let method = match fields.get(text, METHOD) {
            None => None,
            Some(m) => {
                let inner = m.strip_prefix('"')?.strip_suffix('"')?;
                if inner.contains('\\') {
                    return None;
                }
                Some(Cow::Borrowed(inner))
            }
        };
        Some(Self::finish(
            text.as_bytes(),
            fields.get(text, ID),
            method,
            fields.get(text, PARAMS),
            fields.get(text, RESULT),
            fields.get(text, ERROR),
        ))
    }

    /// `text` is the message, known to be UTF-8: serde_json reads it as `str` and does not check
    /// the UTF-8 of every value it borrows again.
    fn parse_with(
        text: &'a str,
        duplicate: impl FnOnce() -> Option<String>,
    ) -> Result<Self, ProtoError> {
        let raw = text.as_bytes();
        let env: Envelope<'a> = serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ProtoError::Invalid(data_reason(&e)),
            _ => ProtoError::Parse(e.to_string()),
        })?;
        let version_ok = match env.jsonrpc.map(RawValue::get) {
            Some("\"2.0\"") => true,
            // The same string spelt with escapes (`"2\u002e0"`) is still "2.0".
            Some(raw) if raw.contains('\\') => {
                serde_json::from_str::<String>(raw).ok().as_deref() == Some("2.0")
            }
            _ => false,
        };
        if !version_ok {
            return Err(ProtoError::Invalid("\"jsonrpc\" must be \"2.0\""));
        }
        // A key repeated in any object: parsers disagree on which one counts (#13 items 4, 14).
        if let Some(key) = duplicate() {
            let id = env
                .id
                .filter(|i| check_request_id(i.get()).is_ok())
                .map(|i| i.get().to_owned());
            return Err(ProtoError::DuplicateKey {
                key: key.chars().take(64).collect(),
                id,
            });
        }
        Self::finish(
            raw,
            env.id.map(RawValue::get),
            env.method,
            env.params.map(RawValue::get),
            env.result.map(RawValue::get),
            env.error.map(RawValue::get),
        )
    }

    /// The checks on the members that make the message one valid JSON-RPC message.
    fn finish(
        raw: &'a [u8],
        id: Option<&'a str>,
        method: Option<Cow<'a, str>>,
        params: Option<&'a str>,
        result: Option<&'a str>,
        error: Option<&'a str>,
    ) -> Result<Self, ProtoError> {
        let kind = match (&method, result, error) {
            (Some(_), None, None) => match id {
                None => Kind::Notification,
                Some(id) => {
                    check_request_id(id)?;
                    Kind::Request
                }
            },
            (None, Some(_), None) => Kind::Response,
            (None, None, Some(_)) => Kind::Error,
            (None, Some(_), Some(_)) => {
                return Err(ProtoError::Invalid("a response has both result and error"));
            }
            (None, None, None) => {
                return Err(ProtoError::Invalid("neither method, result nor error"));
            }
            (Some(_), _, _) => {
                return Err(ProtoError::Invalid("a request carries result or error"));
            }
        };
        if matches!(kind, Kind::Response | Kind::Error) {
            match id {
                None => return Err(ProtoError::Invalid("a response has no id")),
                Some(id) if kind == Kind::Response => check_request_id(id)?,
                Some(id) => {
                    if id != "null" {
                        check_request_id(id)?
                    }
                }
            }
        }
        if let Some(p) = params
            && !matches!(p.as_bytes().first(), Some(b'{' | b'['))
        {
            return Err(ProtoError::Invalid("\"params\" must be an object or array"));
        }
        Ok(Message {
            raw,
            kind,
            id,
            method,
            params,
            result,
            error,
        })
    }

    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// The raw id (`1`, `"abc"`), exactly as sent.
    pub fn id(&self) -> Option<&'a RawValue> {
        lend(self.id)
    }
    /// The id's raw text, exactly as sent.
    pub fn id_text(&self) -> Option<&'a str> {
        self.id
    }
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }
    pub fn params(&self) -> Option<&'a RawValue> {
        lend(self.params)
    }
    /// The raw text of `params`.
    pub fn params_text(&self) -> Option<&'a str> {
        self.params
    }
    pub fn result(&self) -> Option<&'a RawValue> {
        lend(self.result)
    }
    /// The raw text of `result`.
    pub fn result_text(&self) -> Option<&'a str> {
        self.result
    }
    pub fn error(&self) -> Option<&'a RawValue> {
        lend(self.error)
    }
    /// The raw text of `error`.
    pub fn error_text(&self) -> Option<&'a str> {
        self.error
    }
    /// Byte range of the id value within [`Self::raw`].
    pub fn id_span(&self) -> Option<Range<usize>> {
        self.id.and_then(|v| text_span(self.raw, v))
    }
    /// The parts of `params` that routing and header checks read.
    pub fn params_view(&self) -> Result<Params<'a>, ProtoError> {
        match self.params {
            None => Ok(Params::default()),
            // A derived struct refuses a duplicate of its own fields (also spelt with escapes):
            // `name`, `uri`, `arguments`, `_meta` and the `_meta` protocol fields.
            Some(p) if p.starts_with('{') => serde_json::from_str(p).map_err(|e| {
                if e.to_string().contains("duplicate field") {
                    ProtoError::Invalid("a member of \"params\" Warden reads is duplicated")
                } else {
                    ProtoError::Invalid("\"params\" has fields of the wrong type")
                }
            }),
            Some(_) => Ok(Params::default()),
        }
    }
}

/// The fields of `params` Warden reads; the rest stays in the bytes.
#[derive(Debug, Default, Deserialize)]
pub struct Params<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub uri: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub arguments: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "_meta")]
    pub meta: Option<Meta<'a>>,
}

/// `_meta` keys with meaning to the protocol (2026-07-28 request metadata, progress).
#[derive(Debug, Default, Deserialize)]
pub struct Meta<'a> {
    #[serde(borrow, default, rename = "io.modelcontextprotocol/protocolVersion")]
    pub protocol_version: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "io.modelcontextprotocol/clientCapabilities")]
    pub client_capabilities: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "io.modelcontextprotocol/clientInfo")]
    pub client_info: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "progressToken")]
    pub progress_token: Option<&'a RawValue>,
}

impl Meta<'_> {
    /// The declared protocol version when it is a JSON string.
    pub fn protocol_version_str(&self) -> Option<String> {
        self.protocol_version
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
    }
}

/// Where `inner` (a slice borrowed from `outer`) sits in `outer`.
pub fn span_in(outer: &[u8], inner: &RawValue) -> Option<Range<usize>> {
    text_span(outer, inner.get())
}

fn text_span(outer: &[u8], inner: &str) -> Option<Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (end <= outer.len()).then_some(start..end)
}

fn check_request_id(s: &str) -> Result<(), ProtoError> {
    match s.as_bytes().first() {
        Some(b'"') => Ok(()),
        Some(b'-' | b'0'..=b'9') if !s.contains(['.', 'e', 'E']) => Ok(()),
        Some(b'n') => Err(ProtoError::Invalid("request id must not be null")),
        _ => Err(ProtoError::Invalid(
            "request id must be a string or an integer",
        )),
    }
}

fn data_reason(e: &serde_json::Error) -> &'static str {
    let m = e.to_string();
    if m.contains("duplicate field") {
        "duplicate envelope field"
    } else if m.contains("invalid type") && e.line() == 1 && e.column() <= 1 {
        "message must be a JSON object"
    } else {
        "envelope field of the wrong type"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Result<Kind, ProtoError> {
        Message::parse(s.as_bytes()).map(|m| m.kind())
    }

    #[test]
    fn classifies_messages() {
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(Kind::Request)
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Kind::Notification)
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Kind::Response)
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#),
            Ok(Kind::Error)
        );
    }

    #[test]
    fn refuses_invalid_envelopes() {
        for bad in [
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
            r#"{"jsonrpc":"2\u002e1","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            r#"[1]"#,
            r#""str""#,
        ] {
            assert!(matches!(kind(bad), Err(ProtoError::Invalid(_))), "{bad}");
        }
        assert!(matches!(kind("{\"jsonrpc\":"), Err(ProtoError::Parse(_))));
        assert!(matches!(kind("{} x"), Err(ProtoError::Parse(_))));
    }

    #[test]
    fn borrows_spans_and_params() {
        let raw = br#"{"jsonrpc":"2.0","x":[1],"id":  "q\"1","method":"tools/call","params":{"name":"echo","arguments":{"a":1},"_meta":{"progressToken":5,"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let m = Message::parse(raw).unwrap();
        let span = m.id_span().unwrap();
        assert_eq!(&raw[span], br#""q\"1""#);
        let p = m.params_view().unwrap();
        assert_eq!(p.name.as_deref(), Some("echo"));
        // Borrowed from the bytes, not copied (they are read on every message).
        assert!(matches!(p.name, Some(Cow::Borrowed(_))));
        assert!(matches!(m.method, Some(Cow::Borrowed("tools/call"))));
        let escaped =
            Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools\/call"}"#).unwrap();
        assert_eq!(escaped.method(), Some("tools/call"));
        assert_eq!(p.arguments.unwrap().get(), r#"{"a":1}"#);
        let meta = p.meta.unwrap();
        assert_eq!(meta.progress_token.unwrap().get(), "5");
        assert_eq!(meta.protocol_version_str().as_deref(), Some("2026-07-28"));
    }

    /// #13 item 14: the members guards read are never read two ways.
    #[test]
    fn params_with_duplicated_members_are_refused() {
        for bad in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"evil"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","n\u0061me":"evil"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a","uri":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{},"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{},"_meta":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#,
            r#"{"jsonrpc":"2.0","method":"n","params":{"_meta":{"progressToken":1,"progressToken":2}}}"#,
        ] {
            // Refused by the envelope itself, whatever object repeats a key (#13 item 14).
            assert!(
                matches!(
                    Message::parse(bad.as_bytes()),
                    Err(ProtoError::DuplicateKey { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_scanned_parse_refuses_what_the_plain_one_does() {
        let limits = crate::limits::Limits::default();
        for raw in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\u0061me":"b"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"x":{"k":1,"k":2}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            b"{\"jsonrpc\":",
        ] {
            let plain = Message::parse_full(raw).map(|m| m.kind());
            assert_eq!(plain, Message::parse(raw).map(|m| m.kind()));
            let scanned = limits
                .check_scanned(raw)
                .map_err(|e| e.to_string())
                .and_then(|s| Message::parse_scanned(s).map_err(|e| e.to_string()));
            assert_eq!(
                plain.map_err(|e| e.to_string()),
                scanned.map(|m| m.kind()),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn batch_detection() {
        assert!(is_batch(b"  [{}]"));
        assert!(!is_batch(b"{}"));
    }
}
