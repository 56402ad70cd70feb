//! Random inputs for the losslessness property (`tests/lossless.rs`): a JSON tree (so the test
//! knows the decoded values) rendered with random whitespace, escapes and key order, and the
//! proptest strategies for one exchange's ingredients (`Parts`).

use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Random JSON, kept as a tree so the test knows the decoded values (for Mcp-Name and friends)
// while the rendering (whitespace, escapes) is chosen at random.

#[derive(Debug, Clone)]
pub enum J {
    Null,
    Bool(bool),
    /// A number exactly as written.
    Num(&'static str),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

pub const NUMBERS: &[&str] = &[
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

pub const INT_IDS: &[&str] = &[
    "0",
    "1",
    "-7",
    "42",
    "9007199254740993",
    "12345678901234567890",
];

pub fn text_char() -> impl Strategy<Value = char> {
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

pub fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(text_char(), 0..max).prop_map(String::from_iter)
}

/// Keys that can never collide with the fields Warden reads (`jsonrpc`, `id`, `method`, `params`,
/// `result`, `error`, `name`, `uri`, `arguments`, `_meta`).
pub fn extra_key() -> impl Strategy<Value = String> {
    text(8).prop_map(|s| format!("x{s}"))
}

pub fn json_value() -> impl Strategy<Value = J> {
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

pub fn dedup(mut kv: Vec<(String, J)>) -> Vec<(String, J)> {
    let mut seen = std::collections::HashSet::new();
    kv.retain(|(k, _)| seen.insert(k.clone()));
    kv
}

pub fn extras() -> impl Strategy<Value = Vec<(String, J)>> {
    proptest::collection::vec((extra_key(), json_value()), 0..4).prop_map(dedup)
}

/// `_meta` members: reserved-looking keys (other than the three the 2026-07-28 rules read) and
/// random ones.
pub fn meta_entries() -> impl Strategy<Value = Vec<(String, J)>> {
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

pub fn request_id() -> impl Strategy<Value = J> {
    prop_oneof![
        proptest::sample::select(INT_IDS).prop_map(J::Num),
        text(10).prop_map(J::Str),
    ]
}

/// Tool and prompt names: plain ASCII (sent as is in Mcp-Name) or with unicode/space (sent with
/// the Base64 sentinel).
pub fn tool_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-zA-Z0-9_.-]{0,12}",
        "[a-z]{1,4}[éß日本🦀 ]{1,3}[a-z]{1,3}",
        "[a-z]{1,3}[\"\\\\/{}]{1,2}[a-z]{1,3}",
    ]
}

pub fn resource_uri() -> impl Strategy<Value = String> {
    prop_oneof![
        "file:///[a-z]{1,8}/[a-z0-9._-]{1,8}",
        "custom://[a-z]{1,5}/[a-zé日]{1,6}\\?q=[0-9]{1,3}",
    ]
}

pub fn event_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_:/.-]{1,16}",
        "[a-z]{1,4}-[é日🦀]{1,2}-[0-9]{1,3}",
        Just(String::new())
    ]
}

// ---------------------------------------------------------------------------------------------
// Rendering: whitespace, escapes and key order chosen by a small deterministic PRNG.

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Ws {
    Compact,
    Spaces,
    /// Any JSON whitespace, CR LF included (HTTP bodies).
    Wild,
    /// Spaces, tabs and LF only: an SSE `data:` payload split over several lines.
    Sse,
}

pub struct Render {
    pub rng: Rng,
    pub ws: Ws,
    pub escape_pct: u64,
}

impl Render {
    pub fn new(seed: u64, ws: Ws) -> Self {
        let mut rng = Rng(seed);
        let escape_pct = [0, 10, 40][rng.below(3)];
        Render {
            rng,
            ws,
            escape_pct,
        }
    }

    pub fn ws(&mut self, out: &mut String) {
        let pick: &[&str] = match self.ws {
            Ws::Compact => return,
            Ws::Spaces => &["", " ", "  "],
            Ws::Wild => &["", " ", "\t", "\n", "\r\n", " \r\n\t ", "\n\n"],
            Ws::Sse => &["", " ", "\t", "\n", " \n  "],
        };
        out.push_str(pick[self.rng.below(pick.len())]);
    }

    pub fn string(&mut self, s: &str, out: &mut String) {
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

    pub fn value(&mut self, j: &J, out: &mut String) {
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
    pub fn message(&mut self, members: Vec<(String, J)>) -> String {
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
    pub fn shuffled(&mut self, mut members: Vec<(String, J)>) -> J {
        self.rng.shuffle(&mut members);
        J::Obj(members)
    }
}

pub fn kv(k: &str, v: J) -> (String, J) {
    (k.to_owned(), v)
}

pub fn s(v: &str) -> J {
    J::Str(v.to_owned())
}

// ---------------------------------------------------------------------------------------------
// One random exchange's ingredients.

#[derive(Debug, Clone)]
pub struct Parts {
    pub id: J,
    pub top: Vec<(String, J)>,
    pub params: Vec<(String, J)>,
    pub meta: Vec<(String, J)>,
    pub caps: Vec<(String, J)>,
    pub args: Vec<(String, J)>,
    pub name: String,
    pub uri: String,
    /// Custom method (or prompts/get) for the third request of each generation.
    pub custom: &'static str,
    pub notification: &'static str,
    /// Upstream answer: extra fields of the response, its `result`, `_meta`, error or not.
    pub reply_top: Vec<(String, J)>,
    pub reply_result: Vec<(String, J)>,
    pub reply_meta: Vec<(String, J)>,
    pub reply_text: String,
    pub reply_error: bool,
    pub sse_json: bool,
    /// Upstream stream: event ids, `retry:`, CRLF or LF, `event:` lines, space after colon.
    pub event_ids: Vec<String>,
    pub retry: Option<u32>,
    pub crlf: bool,
    pub event_lines: bool,
    pub keepalive: bool,
    pub server_request: &'static str,
    pub server_params: Vec<(String, J)>,
    pub seed: u64,
    pub ws: u8,
}

pub fn parts() -> impl Strategy<Value = Parts> {
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
