//! The hostile-ish HTTP upstream of `hardening_stream.rs` and a client that watches a streamed
//! answer arrive. The upstream streams newline-delimited JSON slowly (chunked, with pauses),
//! answers SSE with event ids, and records every request it gets (so every `Last-Event-ID`). It
//! binds 127.0.0.1 on a port the OS picks; its threads end with the test process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::support::attack::contains;

pub const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
/// The upstream's pause before the second message of a listen stream.
pub const LISTEN_PAUSE: Duration = Duration::from_millis(3000);
pub const ACK: &str = r#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"listen-1"},"notifications":{"toolsListChanged":true}}}"#;
pub const CHANGED: &str = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"listen-1"}}}"#;

// ---------------------------------------------------------------------------------------------
// The upstream.

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One answer: a head, then chunks (a pause before each), chunked unless `length` is set.
struct Script {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    chunks: Vec<(Duration, Vec<u8>)>,
    length: bool,
}

fn whole(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Script {
    Script {
        status,
        content_type,
        headers: Vec::new(),
        chunks: vec![(Duration::ZERO, body.into())],
        length: true,
    }
}

fn chunked(parts: Vec<(u64, String)>) -> Script {
    Script {
        status: 200,
        content_type: "application/json",
        headers: Vec::new(),
        chunks: parts
            .into_iter()
            .map(|(ms, s)| (Duration::from_millis(ms), s.into_bytes()))
            .collect(),
        length: false,
    }
}

pub fn padded_note(n: usize) -> String {
    let pad = "p".repeat(n);
    format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"level":"info","data":"{pad}"}}}}"#
    )
}

pub fn result(id: &Value, text: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":text}]}}).to_string()
}

/// What the upstream answers.
fn script(r: &Seen) -> Script {
    if r.method == "GET" {
        return match r.header("last-event-id") {
            // A resumption: the rest of the call's stream.
            Some(_) => whole(
                200,
                "text/event-stream",
                format!(
                    "id: call.2\nevent: message\ndata: {}\n\n",
                    result(&json!(2), "replayed")
                ),
            ),
            None => whole(405, "application/json", ""),
        };
    }
    if r.method != "POST" {
        return whole(200, "application/json", "");
    }
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let (id, method) = (&v["id"], v["method"].as_str().unwrap_or_default());
    match (method, v["params"]["name"].as_str()) {
        ("initialize", _) => {
            let mut s = whole(
                200,
                "application/json",
                json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"streamer","version":"0"}}}).to_string(),
            );
            s.headers.push(("mcp-session-id", "up-session".into()));
            s
        }
        ("server/discover", _) => whole(
            200,
            "application/json",
            json!({"jsonrpc":"2.0","id":id,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{"listChanged":true}},"serverInfo":{"name":"streamer","version":"0"}}}).to_string(),
        ),
        ("tools/list", _) => {
            let tools: Vec<Value> = ["sse", "many", "huge", "pretty"]
                .iter()
                .map(|n| json!({"name": n, "inputSchema": {"type": "object"}}))
                .collect();
            whole(
                200,
                "application/json",
                json!({"jsonrpc":"2.0","id":id,"result":{"tools":tools}}).to_string(),
            )
        }
        ("subscriptions/listen", _) => chunked(vec![
            (0, format!("{ACK}\n")),
            (LISTEN_PAUSE.as_millis() as u64, format!("{CHANGED}\n")),
        ]),
        ("tools/call", Some("sse")) => whole(
            200,
            "text/event-stream",
            format!(
                "id: call.1\nevent: message\ndata: {}\n\nid: call.2\nevent: message\ndata: {}\n\n",
                padded_note(4),
                result(id, "live")
            ),
        ),
        // Three messages of 1.5 KB (4.5 KB in all, the limit is 2 KB a message); the middle one
        // has duplicate keys.
        ("tools/call", Some("many")) => chunked(vec![
            (0, format!("{}\n", padded_note(1500))),
            (
                50,
                r#"{"jsonrpc":"2.0","method":"notifications/message","method":"sampling/createMessage","params":{}}"#.to_owned() + "\n",
            ),
            (50, format!("{}\n", result(id, &"r".repeat(1500)))),
        ]),
        // A message over the limit in the middle of a stream.
        ("tools/call", Some("huge")) => chunked(vec![
            (0, format!("{}\n", padded_note(10))),
            (50, format!("{}\n", padded_note(3000))),
            (50, format!("{}\n", result(id, "never"))),
        ]),
        // One message, chunked and spaced oddly.
        ("tools/call", Some("pretty")) => chunked(vec![
            (0, "{ \"jsonrpc\" : \"2.0\" ,\n  \"id\" : ".to_owned()),
            (30, format!("{id},  \"result\" : {{\"content\":[{{\"type\":\"text\",")),
            (30, "\"text\":\"pretty\"}]}\n}\n".to_owned()),
        ]),
        (_, _) if !id.is_null() => whole(200, "application/json", result(id, "ok")),
        _ => whole(202, "application/json", ""),
    }
}

pub struct Upstream {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    /// Serve [`script`] on 127.0.0.1; the thread lives as long as the test process.
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}/mcp",
            listener.local_addr().unwrap().port()
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().map_while(Result::ok) {
                let log = log.clone();
                std::thread::spawn(move || serve(s, &log));
            }
        });
        Upstream { url, seen }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The `Last-Event-ID` values the upstream was sent, in order.
    pub fn last_event_ids(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|r| r.header("last-event-id").map(str::to_owned))
            .collect()
    }
}

fn serve(s: TcpStream, log: &Mutex<Vec<Seen>>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut out = s;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let method = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let close = headers
            .iter()
            .any(|(k, v)| k == "connection" && v == "close");
        let seen = Seen {
            method,
            headers,
            body,
        };
        let sc = script(&seen);
        log.lock().unwrap().push(seen);
        let mut head = format!(
            "HTTP/1.1 {} X\r\ncontent-type: {}\r\n",
            sc.status, sc.content_type
        );
        if sc.length {
            let n: usize = sc.chunks.iter().map(|(_, c)| c.len()).sum();
            head.push_str(&format!("content-length: {n}\r\n"));
        } else {
            head.push_str("transfer-encoding: chunked\r\n");
        }
        for (k, v) in &sc.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        for (pause, c) in &sc.chunks {
            std::thread::sleep(*pause);
            let framed = if sc.length {
                c.clone()
            } else {
                [format!("{:x}\r\n", c.len()).as_bytes(), c, b"\r\n"].concat()
            };
            if out.write_all(&framed).and_then(|()| out.flush()).is_err() {
                return;
            }
        }
        if !sc.length && out.write_all(b"0\r\n\r\n").is_err() {
            return;
        }
        if close {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A client that watches a streamed answer arrive.

/// What a POST's answer looked like as it came.
pub struct Watched {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    /// When `needle` first appeared in the body, from the moment the request was written.
    pub needle_at: Option<Duration>,
}

/// De-chunk as far as the bytes go.
fn dechunk(b: &[u8]) -> Vec<u8> {
    let (mut out, mut i) = (Vec::new(), 0);
    while let Some(p) = b[i..].windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[i..i + p])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = i + p + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        i = start + size + 2;
        if i > b.len() {
            break;
        }
    }
    out
}

/// POST `body` to `url`'s port and read the answer for at most `window` (or until it ends).
pub fn watch(
    port: u16,
    headers: &[(&str, &str)],
    body: &str,
    needle: &str,
    window: Duration,
) -> Watched {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let (mut raw, mut buf, mut needle_at) = (Vec::new(), [0u8; 8192], None);
    while t0.elapsed() < window {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        if needle_at.is_none()
            && let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n")
            && contains(&decode(&raw, end), needle.as_bytes())
        {
            needle_at = Some(t0.elapsed());
        }
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Watched {
        status,
        body: decode(&raw, end),
        head,
        needle_at,
    }
}

fn decode(raw: &[u8], head_end: usize) -> Vec<u8> {
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let body = raw.get(head_end + 4..).unwrap_or_default();
    if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_vec()
    }
}

pub fn lines(b: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(b)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line is not JSON ({e}): {l}")))
        .collect()
}
