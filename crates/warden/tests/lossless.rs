//! Losslessness property (P1.1 "what Warden does not act on passes unchanged"; J2/J3): for every
//! message kind, in both protocol generations, the bytes the upstream receives equal the bytes the
//! client sent, and the bytes the client receives (each SSE block with its `id:`, `retry:` and
//! comment lines) equal the bytes the upstream sent. Inputs are random: extra top-level fields,
//! extra fields in params/result, `_meta` objects with reserved-looking keys, odd whitespace, key
//! order, big numbers, `\u` escapes and unicode, string and integer ids.
//!
//! One Warden and one recording upstream serve the whole property; the upstream answers with what
//! the test put in a shared slot before each exchange.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::client::{Reply, request};
use support::recorder::{Canned, Recorded, Recorder};
use support::{Warden, upstream_http};

// ---------------------------------------------------------------------------------------------
// Random JSON, kept as a tree so the test knows the decoded values (for Mcp-Name and friends)
// while the rendering (whitespace, escapes) is chosen at random.

#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    /// A number exactly as written.
    Num(&'static str),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "42",
    "12345678901234567890",
    "123456789012345678901234567890",
    "-9223372036854775809",
    "9007199254740993",
    "1.5",
    "0.1",
    "1e3",
    "1E-7",
    "6.02214076e+23",
    "3.14159265358979323846264338327950288",
    "-0.0",
];

const INT_IDS: &[&str] = &[
    "0",
    "1",
    "-7",
    "42",
    "9007199254740993",
    "12345678901234567890",
];

fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range('a', 'z'),
        2 => proptest::char::range('0', '9'),
        3 => proptest::sample::select(vec![
            ' ', '"', '\\', '/', '\n', '\t', '\r', '\u{1}', '\u{1f}', '\u{7f}', 'é', 'ß', '日',
            '本', '🦀', '😀', '\u{2028}', '\u{2029}', '\u{feff}', '\u{200b}', 'Ω', '{', '}', '[',
            ']', ':', ',',
        ]),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(text_char(), 0..max).prop_map(String::from_iter)
}

/// Keys that can never collide with the fields Warden reads (`jsonrpc`, `id`, `method`, `params`,
/// `result`, `error`, `name`, `uri`, `arguments`, `_meta`).
fn extra_key() -> impl Strategy<Value = String> {
    text(8).prop_map(|s| format!("x{s}"))
}

fn json_value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        proptest::sample::select(NUMBERS).prop_map(J::Num),
        text(12).prop_map(J::Str),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(J::Arr),
            proptest::collection::vec((extra_key(), inner), 0..4).prop_map(|kv| J::Obj(dedup(kv))),
        ]
    })
}

fn dedup(mut kv: Vec<(String, J)>) -> Vec<(String, J)> {
    let mut seen = std::collections::HashSet::new();
    kv.retain(|(k, _)| seen.insert(k.clone()));
    kv
}

fn extras() -> impl Strategy<Value = Vec<(String, J)>> {
    proptest::collection::vec((extra_key(), json_value()), 0..4).prop_map(dedup)
}

/// `_meta` members: reserved-looking keys (other than the three the 2026-07-28 rules read) and
/// random ones.
fn meta_entries() -> impl Strategy<Value = Vec<(String, J)>> {
    let key = prop_oneof![
        proptest::sample::select(vec![
            "io.modelcontextprotocol/related-task",
            "io.modelcontextprotocol/unknown-future-key",
            "io.modelcontextprotocol/logLevel",
            "modelcontextprotocol.io/x",
            "dev.mcp/trace",
            "progressToken",
            "com.example/ünïcödé",
            "_meta",
            "",
        ])
        .prop_map(str::to_owned),
        extra_key(),
    ];
    proptest::collection::vec((key, json_value()), 0..4).prop_map(dedup)
}

fn request_id() -> impl Strategy<Value = J> {
    prop_oneof![
        proptest::sample::select(INT_IDS).prop_map(J::Num),
        text(10).prop_map(J::Str),
    ]
}

/// Tool and prompt names: plain ASCII (sent as is in Mcp-Name) or with unicode/space (sent with
/// the Base64 sentinel).
fn tool_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-zA-Z0-9_.-]{0,12}",
        "[a-z]{1,4}[éß日本🦀 ]{1,3}[a-z]{1,3}",
        "[a-z]{1,3}[\"\\\\/{}]{1,2}[a-z]{1,3}",
    ]
}

fn resource_uri() -> impl Strategy<Value = String> {
    prop_oneof![
        "file:///[a-z]{1,8}/[a-z0-9._-]{1,8}",
        "custom://[a-z]{1,5}/[a-zé日]{1,6}\\?q=[0-9]{1,3}",
    ]
}

fn event_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_:/.-]{1,16}",
        "[a-z]{1,4}-[é日🦀]{1,2}-[0-9]{1,3}",
        Just(String::new())
    ]
}

// ---------------------------------------------------------------------------------------------
// Rendering: whitespace, escapes and key order chosen by a small deterministic PRNG.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Ws {
    Compact,
    Spaces,
    /// Any JSON whitespace, CR LF included (HTTP bodies).
    Wild,
    /// Spaces, tabs and LF only: an SSE `data:` payload split over several lines.
    Sse,
}

struct Render {
    rng: Rng,
    ws: Ws,
    escape_pct: u64,
}

impl Render {
    fn new(seed: u64, ws: Ws) -> Self {
        let mut rng = Rng(seed);
        let escape_pct = [0, 10, 40][rng.below(3)];
        Render {
            rng,
            ws,
            escape_pct,
        }
    }

    fn ws(&mut self, out: &mut String) {
        let pick: &[&str] = match self.ws {
            Ws::Compact => return,
            Ws::Spaces => &["", " ", "  "],
            Ws::Wild => &["", " ", "\t", "\n", "\r\n", " \r\n\t ", "\n\n"],
            Ws::Sse => &["", " ", "\t", "\n", " \n  "],
        };
        out.push_str(pick[self.rng.below(pick.len())]);
    }

    fn string(&mut self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            let u = c as u32;
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' if self.rng.chance(50) => out.push_str("\\n"),
                '\t' if self.rng.chance(50) => out.push_str("\\t"),
                '\r' if self.rng.chance(50) => out.push_str("\\r"),
                '/' if self.rng.chance(self.escape_pct) => out.push_str("\\/"),
                _ if u < 0x20 || self.rng.chance(self.escape_pct) => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        if self.rng.chance(50) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        } else {
                            out.push_str(&format!("\\u{unit:04X}"));
                        }
                    }
                }
                _ => out.push(c),
            }
        }
        out.push('"');
    }

    fn value(&mut self, j: &J, out: &mut String) {
        match j {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => self.string(s, out),
            J::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ws(out);
                    self.value(v, out);
                    self.ws(out);
                }
                if items.is_empty() {
                    self.ws(out);
                }
                out.push(']');
            }
            J::Obj(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ws(out);
                    self.string(k, out);
                    self.ws(out);
                    out.push(':');
                    self.ws(out);
                    self.value(v, out);
                    self.ws(out);
                }
                if members.is_empty() {
                    self.ws(out);
                }
                out.push('}');
            }
        }
    }

    /// A whole message: the `jsonrpc` value is written plainly (Warden compares it raw), members
    /// are shuffled, and the text may start and end with whitespace.
    fn message(&mut self, members: Vec<(String, J)>) -> String {
        let mut members = members;
        self.rng.shuffle(&mut members);
        let mut out = String::new();
        if !matches!(self.ws, Ws::Sse) {
            self.ws(&mut out);
        }
        out.push('{');
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            self.ws(&mut out);
            self.string(k, &mut out);
            self.ws(&mut out);
            out.push(':');
            self.ws(&mut out);
            if k == "jsonrpc" {
                out.push_str("\"2.0\"");
            } else {
                self.value(v, &mut out);
            }
            self.ws(&mut out);
        }
        out.push('}');
        if !matches!(self.ws, Ws::Sse) {
            self.ws(&mut out);
        }
        out
    }

    /// An object with members shuffled.
    fn shuffled(&mut self, mut members: Vec<(String, J)>) -> J {
        self.rng.shuffle(&mut members);
        J::Obj(members)
    }
}

fn kv(k: &str, v: J) -> (String, J) {
    (k.to_owned(), v)
}

fn s(v: &str) -> J {
    J::Str(v.to_owned())
}

// ---------------------------------------------------------------------------------------------
// One random exchange's ingredients.

#[derive(Debug, Clone)]
struct Parts {
    id: J,
    top: Vec<(String, J)>,
    params: Vec<(String, J)>,
    meta: Vec<(String, J)>,
    caps: Vec<(String, J)>,
    args: Vec<(String, J)>,
    name: String,
    uri: String,
    /// Custom method (or prompts/get) for the third request of each generation.
    custom: &'static str,
    notification: &'static str,
    /// Upstream answer: extra fields of the response, its `result`, `_meta`, error or not.
    reply_top: Vec<(String, J)>,
    reply_result: Vec<(String, J)>,
    reply_meta: Vec<(String, J)>,
    reply_text: String,
    reply_error: bool,
    sse_json: bool,
    /// Upstream stream: event ids, `retry:`, CRLF or LF, `event:` lines, space after colon.
    event_ids: Vec<String>,
    retry: Option<u32>,
    crlf: bool,
    event_lines: bool,
    keepalive: bool,
    server_request: &'static str,
    server_params: Vec<(String, J)>,
    seed: u64,
    ws: u8,
}

fn parts() -> impl Strategy<Value = Parts> {
    let request = (
        request_id(),
        extras(),
        extras(),
        meta_entries(),
        extras(),
        extras(),
        tool_name(),
        resource_uri(),
        proptest::sample::select(vec![
            "prompts/get",
            "tools/list",
            "ping",
            "completion/complete",
            "com.example/custom",
            "x-vendor/do.something",
        ]),
        proptest::sample::select(vec![
            "notifications/progress",
            "notifications/cancelled",
            "notifications/roots/list_changed",
            "com.example/notify",
        ]),
    );
    let reply = (
        extras(),
        extras(),
        meta_entries(),
        text(16),
        proptest::bool::weighted(0.2),
        any::<bool>(),
    );
    let stream = (
        proptest::collection::vec(event_id(), 4),
        proptest::option::of(0u32..100_000),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::sample::select(vec![
            "sampling/createMessage",
            "elicitation/create",
            "roots/list",
            "ping",
        ]),
        extras(),
        any::<u64>(),
        0u8..3,
    );
    (request, reply, stream).prop_map(|(rq, rp, st)| Parts {
        id: rq.0,
        top: rq.1,
        params: rq.2,
        meta: rq.3,
        caps: rq.4,
        args: rq.5,
        name: rq.6,
        uri: rq.7,
        custom: rq.8,
        notification: rq.9,
        reply_top: rp.0,
        reply_result: rp.1,
        reply_meta: rp.2,
        reply_text: rp.3,
        reply_error: rp.4,
        sse_json: rp.5,
        event_ids: st.0,
        retry: st.1,
        crlf: st.2,
        event_lines: st.3,
        keepalive: st.4,
        server_request: st.5,
        server_params: st.6,
        seed: st.7,
        ws: st.8,
    })
}

// ---------------------------------------------------------------------------------------------
// The message matrix: every kind in both generations.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Gen {
    Session,
    Stateless,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum What {
    ToolsCall,
    ResourcesRead,
    Custom,
    Notification,
    ClientResponse,
    GetStream,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Json,
    Sse,
    Random,
    Accepted,
}

const MATRIX: [(Gen, What, Answer); 10] = [
    (Gen::Session, What::ToolsCall, Answer::Json),
    (Gen::Session, What::ResourcesRead, Answer::Sse),
    (Gen::Session, What::Custom, Answer::Random),
    (Gen::Session, What::Notification, Answer::Accepted),
    (Gen::Session, What::ClientResponse, Answer::Accepted),
    (Gen::Session, What::GetStream, Answer::Sse),
    (Gen::Stateless, What::ToolsCall, Answer::Sse),
    (Gen::Stateless, What::ResourcesRead, Answer::Json),
    (Gen::Stateless, What::Custom, Answer::Random),
    (Gen::Stateless, What::Notification, Answer::Accepted),
];

/// What the upstream answers (the recorder's script reads it from a shared slot).
#[derive(Debug, Clone)]
struct Canned2 {
    /// Answer with `Mcp-Session-Id` (initialize only).
    session: bool,
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

/// One exchange, fully rendered.
#[derive(Debug)]
struct Exchange {
    label: String,
    method: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    answer: Canned2,
}

/// A header value for `Mcp-Name`: plain when it is visible ASCII, else the Base64 sentinel.
fn name_header(v: &str, rng: &mut Rng) -> String {
    let plain = !v.is_empty() && v.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if plain && rng.chance(80) {
        v.to_owned()
    } else {
        format!("=?base64?{}?=", base64(v.as_bytes()))
    }
}

/// Standard Base64 with padding (RFC 4648 §4).
fn base64(b: &[u8]) -> String {
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

fn build(p: &Parts, generation: Gen, what: What, answer: Answer, sid: &str) -> Exchange {
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
fn response_json(p: &Parts, r: &mut Render) -> String {
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
fn sse_stream(p: &Parts, r: &mut Render, with_final: bool) -> Vec<u8> {
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
fn blocks(b: &[u8]) -> Vec<String> {
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

struct Env {
    w: Warden,
    up: Recorder,
    slot: Arc<Mutex<Canned2>>,
    sid: String,
}

fn start() -> Env {
    let slot = Arc::new(Mutex::new(Canned2 {
        session: true,
        status: 200,
        content_type: "application/json",
        body: br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{},"resources":{}},"serverInfo":{"name":"rec","version":"0"}}}"#.to_vec(),
    }));
    let script_slot = slot.clone();
    let up = Recorder::start(move |_r: &Recorded| {
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
    Env { w, up, slot, sid }
}

fn run_exchange(env: &Env, ex: &Exchange) -> Result<(), TestCaseError> {
    let label = &ex.label;
    if std::env::var_os("WARDEN_TEST_VERBOSE").is_some() {
        eprintln!(
            "--- {label}\n{:?}\n>>> {}\n<<< {}",
            ex.headers,
            String::from_utf8_lossy(&ex.body),
            String::from_utf8_lossy(&ex.answer.body)
        );
    }
    *env.slot.lock().expect("slot") = ex.answer.clone();
    let before = env.up.requests().len();
    let headers: Vec<(&str, &str)> = ex
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let reply: Reply = request(env.w.port, ex.method, "/mcp", &headers, &ex.body);
    let seen = env.up.requests();
    prop_assert_eq!(
        seen.len(),
        before + 1,
        "{}: the upstream got exactly one request; client got {} {}",
        label,
        reply.status,
        reply.text()
    );
    let got: &Recorded = &seen[before];
    prop_assert_eq!(&got.method, ex.method, "{}", label);
    prop_assert!(
        got.body == ex.body,
        "{}: upstream bytes differ\n sent: {:?}\n got:  {:?}",
        label,
        String::from_utf8_lossy(&ex.body),
        String::from_utf8_lossy(&got.body)
    );
    for (k, v) in &ex.headers {
        let expected = match k.as_str() {
            "mcp-session-id" => "upstream-session-1",
            "mcp-method" | "mcp-name" | "mcp-protocol-version" => v.as_str(),
            _ => continue,
        };
        prop_assert_eq!(
            got.header(k),
            Some(expected),
            "{}: upstream header {}",
            label,
            k
        );
    }
    if !ex.headers.iter().any(|(k, _)| k == "mcp-session-id") {
        prop_assert_eq!(got.header("mcp-session-id"), None, "{}: stateless", label);
    }
    prop_assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{}",
        label
    );
    prop_assert_eq!(reply.header("cache-control"), Some("no-store"), "{}", label);
    prop_assert_eq!(
        reply.status,
        ex.answer.status,
        "{}: client status; body {}",
        label,
        reply.text()
    );
    if ex.answer.content_type == "text/event-stream" {
        prop_assert!(
            reply
                .header("content-type")
                .is_some_and(|c| c.starts_with("text/event-stream")),
            "{}: {:?}",
            label,
            reply.headers
        );
        let (want, have) = (blocks(&ex.answer.body), blocks(&reply.body));
        for (i, (w, h)) in want.iter().zip(have.iter()).enumerate() {
            prop_assert_eq!(h, w, "{}: SSE block {} differs", label, i);
        }
        prop_assert_eq!(have.len(), want.len(), "{}: number of SSE blocks", label);
    }
    prop_assert!(
        reply.body == ex.answer.body,
        "{}: client bytes differ\n upstream sent: {:?}\n client got:    {:?}",
        label,
        String::from_utf8_lossy(&ex.answer.body),
        reply.text()
    );
    Ok(())
}

/// P1.1, J2, J3: byte-for-byte relay of everything Warden does not act on, for client requests
/// (tools/call, resources/read, custom methods), notifications, client responses, server JSON
/// responses, server SSE streams (priming event, `retry:`, ids, notification and server→client
/// request before the final response) and the GET stream, in both generations.
#[test]
fn what_warden_does_not_act_on_passes_byte_for_byte() {
    let env = start();
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(parts(), MATRIX.len());
    let result = runner.run(&strategy, |case| {
        for (p, (generation, what, answer)) in case.iter().zip(MATRIX) {
            let ex = build(p, generation, what, answer, &env.sid);
            run_exchange(&env, &ex)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let mut w = env.w;
    assert!(w.proc.is_running(), "warden still running");
    let audit = w.audit();
    assert!(
        !audit.iter().any(|e| e["decision"] == "deny"),
        "nothing was refused: {:?}",
        audit
            .iter()
            .filter(|e| e["decision"] == "deny")
            .collect::<Vec<_>>()
    );
}
