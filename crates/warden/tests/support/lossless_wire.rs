//! The exchanges of the losslessness property (`tests/lossless.rs`): the message kinds and
//! generations, rendering one exchange (request bytes, headers, the upstream's canned JSON or SSE
//! answer), SSE block splitting, and the scripted recording upstream behind one Warden.

use std::sync::{Arc, Mutex};

use super::client::request;
use super::lossless_gen::{J, Parts, Render, Rng, Ws, kv, s};
use super::recorder::{Canned, Recorded, Recorder};
use super::{Warden, upstream_http};

// ---------------------------------------------------------------------------------------------
// The kinds of exchange (the matrix that combines them is in `tests/lossless.rs`).

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gen {
    Session,
    Stateless,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum What {
    ToolsCall,
    ResourcesRead,
    Custom,
    Notification,
    ClientResponse,
    GetStream,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    Json,
    Sse,
    Random,
    Accepted,
}

/// What the upstream answers (the recorder's script reads it from a shared slot).
#[derive(Debug, Clone)]
pub struct Canned2 {
    /// Answer with `Mcp-Session-Id` (initialize only).
    pub session: bool,
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// One exchange, fully rendered.
#[derive(Debug)]
pub struct Exchange {
    pub label: String,
    pub method: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub answer: Canned2,
}

/// A header value for `Mcp-Name`: plain when it is visible ASCII, else the Base64 sentinel.
pub fn name_header(v: &str, rng: &mut Rng) -> String {
    let plain = !v.is_empty() && v.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if plain && rng.chance(80) {
        v.to_owned()
    } else {
        format!("=?base64?{}?=", base64(v.as_bytes()))
    }
}

/// Standard Base64 with padding (RFC 4648 §4).
pub fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | u32::from(c) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn build(p: &Parts, generation: Gen, what: What, answer: Answer, sid: &str) -> Exchange {
    let ws = match p.ws {
        0 => Ws::Compact,
        1 => Ws::Spaces,
        _ => Ws::Wild,
    };
    let mut r = Render::new(p.seed, ws);
    let mut headers: Vec<(String, String)> = vec![
        ("content-type".into(), "application/json".into()),
        (
            "accept".into(),
            "application/json, text/event-stream".into(),
        ),
    ];
    match generation {
        Gen::Session => {
            headers.push(("mcp-session-id".into(), sid.into()));
            headers.push(("mcp-protocol-version".into(), "2025-11-25".into()));
        }
        Gen::Stateless => headers.push(("mcp-protocol-version".into(), "2026-07-28".into())),
    }
    // _meta: random members, plus the 2026-07-28 request metadata when stateless.
    let mut meta = p.meta.clone();
    if generation == Gen::Stateless {
        meta.push(kv(
            "io.modelcontextprotocol/protocolVersion",
            s("2026-07-28"),
        ));
        meta.push(kv(
            "io.modelcontextprotocol/clientCapabilities",
            J::Obj(p.caps.clone()),
        ));
        if r.rng.chance(50) {
            meta.push(kv(
                "io.modelcontextprotocol/clientInfo",
                J::Obj(vec![kv("name", s("prop")), kv("version", s("0"))]),
            ));
        }
    }
    let with_meta = generation == Gen::Stateless || r.rng.chance(70);
    let mut params = p.params.clone();
    if with_meta {
        params.push(kv("_meta", r.shuffled(meta)));
    }
    let method: &str = match what {
        What::ToolsCall => "tools/call",
        What::ResourcesRead => "resources/read",
        What::Custom => p.custom,
        What::Notification => p.notification,
        What::ClientResponse | What::GetStream => "",
    };
    let mut name_value: Option<&str> = None;
    match (what, method) {
        (What::ToolsCall, _) | (What::Custom, "prompts/get") => {
            params.push(kv("name", s(&p.name)));
            params.push(kv("arguments", J::Obj(p.args.clone())));
            name_value = Some(&p.name);
        }
        (What::ResourcesRead, _) => {
            params.push(kv("uri", s(&p.uri)));
            name_value = Some(&p.uri);
        }
        _ => {}
    }
    let mut top = p.top.clone();
    top.push(kv("jsonrpc", s("2.0")));
    match what {
        What::ClientResponse => {
            top.push(kv("id", p.id.clone()));
            if p.reply_error {
                let err = vec![
                    kv("code", J::Num("-32000")),
                    kv("message", J::Str(p.reply_text.clone())),
                    kv("data", J::Obj(p.params.clone())),
                ];
                top.push(kv("error", r.shuffled(err)));
            } else {
                params.push(kv("content", J::Str(p.reply_text.clone())));
                top.push(kv("result", r.shuffled(params)));
            }
        }
        What::GetStream => {}
        What::Notification => {
            top.push(kv("method", s(method)));
            if !params.is_empty() || r.rng.chance(50) {
                top.push(kv("params", r.shuffled(params)));
            }
        }
        _ => {
            top.push(kv("id", p.id.clone()));
            top.push(kv("method", s(method)));
            if !params.is_empty() || generation == Gen::Stateless || r.rng.chance(50) {
                top.push(kv("params", r.shuffled(params)));
            }
        }
    }
    if generation == Gen::Stateless && what != What::GetStream {
        headers.push(("mcp-method".into(), method.into()));
        if let Some(v) = name_value {
            headers.push(("mcp-name".into(), name_header(v, &mut r.rng)));
        }
    }
    let (http_method, body) = if what == What::GetStream {
        headers.retain(|(k, _)| k != "content-type");
        headers.retain(|(k, _)| k != "accept");
        headers.push(("accept".into(), "text/event-stream".into()));
        ("GET", Vec::new())
    } else {
        ("POST", r.message(top).into_bytes())
    };
    let answer = match answer {
        Answer::Random if p.sse_json => Answer::Sse,
        Answer::Random => Answer::Json,
        a => a,
    };
    let answer = match answer {
        Answer::Accepted => Canned2 {
            session: false,
            status: 202,
            content_type: "application/json",
            body: Vec::new(),
        },
        Answer::Json => Canned2 {
            session: false,
            status: 200,
            content_type: "application/json",
            body: response_json(p, &mut r).into_bytes(),
        },
        _ => Canned2 {
            session: false,
            status: 200,
            content_type: "text/event-stream",
            body: sse_stream(p, &mut r, what != What::GetStream),
        },
    };
    Exchange {
        label: format!("{generation:?} {what:?} {method}"),
        method: http_method,
        headers,
        body,
        answer,
    }
}

/// The upstream's final response to the request: extra members, `result` with extras and `_meta`.
pub fn response_json(p: &Parts, r: &mut Render) -> String {
    let mut top = p.reply_top.clone();
    top.push(kv("jsonrpc", s("2.0")));
    top.push(kv("id", p.id.clone()));
    if p.reply_error {
        let err = vec![
            kv("code", J::Num("-32602")),
            kv("message", J::Str(p.reply_text.clone())),
            kv("data", J::Obj(p.reply_result.clone())),
        ];
        top.push(kv("error", r.shuffled(err)));
    } else {
        let mut result = p.reply_result.clone();
        result.push(kv(
            "content",
            J::Arr(vec![J::Obj(vec![
                kv("type", s("text")),
                kv("text", J::Str(p.reply_text.clone())),
            ])]),
        ));
        if !p.reply_meta.is_empty() {
            result.push(kv("_meta", J::Obj(p.reply_meta.clone())));
        }
        top.push(kv("result", r.shuffled(result)));
    }
    r.message(top)
}

/// An upstream SSE stream: a priming event (id, empty data, maybe `retry:`), maybe a comment, a
/// notification, a server→client request, and (for a POST) the final response.
pub fn sse_stream(p: &Parts, r: &mut Render, with_final: bool) -> Vec<u8> {
    let le = if p.crlf { "\r\n" } else { "\n" };
    let mut json_render = Render::new(p.seed ^ 0x5555, Ws::Sse);
    let mut out = String::new();
    let data_lines = |out: &mut String, json: &str, spaced: bool| {
        for line in json.split('\n') {
            out.push_str(if spaced { "data: " } else { "data:" });
            out.push_str(line);
            out.push_str(le);
        }
    };
    // Priming event.
    out.push_str(&format!("id: {}{le}", p.event_ids[0]));
    if let Some(ms) = p.retry {
        out.push_str(&format!("retry: {ms}{le}"));
    }
    out.push_str(if r.rng.chance(50) { "data:" } else { "data: " });
    out.push_str(le);
    out.push_str(le);
    if p.keepalive {
        out.push_str(&format!(": keep-alive ü{le}{le}"));
    }
    // A notification.
    let mut note_params = p.server_params.clone();
    note_params.push(kv("progressToken", p.id.clone()));
    note_params.push(kv("progress", J::Num("12345678901234567890")));
    if !p.reply_meta.is_empty() {
        note_params.push(kv("_meta", J::Obj(p.reply_meta.clone())));
    }
    let note_params = json_render.shuffled(note_params);
    let note = json_render.message(vec![
        kv("jsonrpc", s("2.0")),
        kv("method", s("notifications/progress")),
        kv("params", note_params),
    ]);
    if p.event_lines {
        out.push_str(&format!("event: message{le}"));
    }
    out.push_str(&format!("id:{}{le}", p.event_ids[1]));
    data_lines(&mut out, &note, r.rng.chance(70));
    out.push_str(le);
    // A server→client request.
    let req = json_render.message(vec![
        kv("jsonrpc", s("2.0")),
        kv("id", J::Str(format!("srv-{}", p.event_ids[2]))),
        kv("method", s(p.server_request)),
        kv("params", J::Obj(p.server_params.clone())),
    ]);
    out.push_str(&format!("id: {}{le}", p.event_ids[2]));
    if p.event_lines {
        out.push_str(&format!("x-unknown-field: kept{le}event: message{le}"));
    }
    data_lines(&mut out, &req, true);
    out.push_str(le);
    if with_final {
        let fin = response_json(p, &mut json_render);
        out.push_str(&format!("id: {}{le}", p.event_ids[3]));
        if p.retry.is_some() {
            out.push_str(&format!("retry: 1000{le}"));
        }
        data_lines(
            &mut out,
            fin.trim_matches([' ', '\t', '\n']),
            r.rng.chance(50),
        );
        out.push_str(le);
    }
    out.into_bytes()
}

/// Split an SSE body into blocks (each ending at its blank line), for block-by-block comparison.
pub fn blocks(b: &[u8]) -> Vec<String> {
    let t = String::from_utf8_lossy(b);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut at_line_start = true;
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        cur.push(c);
        if c == '\r' && chars.peek() == Some(&'\n') {
            cur.push('\n');
            chars.next();
        }
        if c == '\n' || c == '\r' {
            if at_line_start {
                out.push(std::mem::take(&mut cur));
            }
            at_line_start = true;
        } else {
            at_line_start = false;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

// ---------------------------------------------------------------------------------------------

/// One Warden in front of the scripted recorder, with a session opened (initialize, initialized)
/// and the one-time `server/discover` probe done. The recorder answers every request with what
/// is in `slot` (the probe with a plain result).
pub struct Env {
    pub w: Warden,
    pub up: Recorder,
    pub slot: Arc<Mutex<Canned2>>,
    pub sid: String,
}

/// A request Warden sent on its own (the `server/discover` probe, a guard's own `tools/list`),
/// not one it relayed: its id is Warden's (`warden-…`).
pub fn is_own(r: &Recorded) -> bool {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    v["id"].as_str().is_some_and(|id| id.starts_with("warden-"))
}

/// What the upstream received from clients, in order (Warden's own requests left out).
pub fn relayed(up: &Recorder) -> Vec<Recorded> {
    up.requests().into_iter().filter(|r| !is_own(r)).collect()
}

pub fn start() -> Env {
    let slot = Arc::new(Mutex::new(Canned2 {
        session: true,
        status: 200,
        content_type: "application/json",
        body: br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{},"resources":{}},"serverInfo":{"name":"rec","version":"0"}}}"#.to_vec(),
    }));
    let script_slot = slot.clone();
    let up = Recorder::start(move |r: &Recorded| {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if v["method"] == "server/discover" {
            let found = serde_json::json!({"jsonrpc": "2.0", "id": v["id"], "result": {}});
            return Canned::json(found.to_string());
        }
        // Warden's own tools/list before a stateless call to a tool it has not seen (#13 item
        // 5a): no tools, so nothing is checked and the call passes as it is.
        if is_own(r) {
            let none =
                serde_json::json!({"jsonrpc": "2.0", "id": v["id"], "result": {"tools": []}});
            return Canned::json(none.to_string());
        }
        let a = script_slot
            .lock()
            .map(|a| a.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        Canned {
            status: a.status,
            content_type: a.content_type,
            headers: if a.session {
                vec![("mcp-session-id".into(), "upstream-session-1".into())]
            } else {
                vec![]
            },
            body: a.body,
        }
    });
    let w = Warden::start(&upstream_http("rec", &up.url, None));
    let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{},"sampling":{},"elicitation":{}},"clientInfo":{"name":"prop","version":"0"}}}"#;
    let r = request(
        w.port,
        "POST",
        "/mcp",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        init,
    );
    assert_eq!(r.status, 200, "initialize: {}", r.text());
    let sid = r.header("mcp-session-id").expect("session id").to_owned();
    *slot.lock().expect("slot") = Canned2 {
        session: false,
        status: 202,
        content_type: "application/json",
        body: Vec::new(),
    };
    let r = request(
        w.port,
        "POST",
        "/mcp",
        &[
            ("content-type", "application/json"),
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(r.status, 202, "initialized: {}", r.text());
    warm_up_discovery(&w, &up, &slot);
    Env { w, up, slot, sid }
}

/// Before its first 2026-07-28 request to an upstream, Warden asks it once with `server/discover`
/// whether it speaks that generation, and remembers the answer. That probe is Warden's own request,
/// so it is made here, before the property counts what the upstream receives per exchange.
fn warm_up_discovery(w: &Warden, up: &Recorder, slot: &Mutex<Canned2>) {
    *slot.lock().expect("slot") = Canned2 {
        session: false,
        status: 200,
        content_type: "application/json",
        body: br#"{"jsonrpc":"2.0","id":"warm-up","result":{"tools":[]}}"#.to_vec(),
    };
    let before = up.requests().len();
    let body = br#"{"jsonrpc":"2.0","id":"warm-up","method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let r = request(
        w.port,
        "POST",
        "/mcp",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
        body,
    );
    assert_eq!(r.status, 200, "stateless warm-up: {}", r.text());
    let seen: Vec<Vec<u8>> = up.requests()[before..]
        .iter()
        .map(|r| r.body.clone())
        .collect();
    assert!(
        seen.len() == 2
            && String::from_utf8_lossy(&seen[0]).contains(r#""method":"server/discover""#)
            && seen[1] == body,
        "one server/discover probe, then the warm-up request: {:?}",
        seen.iter()
            .map(|b| String::from_utf8_lossy(b))
            .collect::<Vec<_>>()
    );
}
