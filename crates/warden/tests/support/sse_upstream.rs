//! A session-based HTTP MCP upstream whose standalone GET stream behaves like the SDKs': one
//! GET stream per session (a second one, while the first is open, gets 409 "only one SSE stream
//! per session"), opened after a chosen delay, whose first event is a server request
//! (`roots/list`). It counts the GETs and the conflicts, so a test can prove Warden sent one GET
//! per session and the client's GET joined it. Threads on 127.0.0.1; the stream ends by itself
//! after a few seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the upstream answers its GET stream.
#[derive(Clone, Copy)]
pub enum Get {
    /// A stream, after `delay`, starting with a `roots/list` request.
    Stream { delay: Duration },
    /// An empty answer with this status (405: no stream offered; 500: broken).
    Status(u16),
}

pub struct SseUpstream {
    pub url: String,
    pub gets: Arc<AtomicUsize>,
    pub conflicts: Arc<AtomicUsize>,
    /// Bodies of the POSTs received.
    pub posts: Arc<Mutex<Vec<String>>>,
}

struct Shared {
    name: String,
    get: Get,
    open: AtomicBool,
    gets: Arc<AtomicUsize>,
    conflicts: Arc<AtomicUsize>,
    posts: Arc<Mutex<Vec<String>>>,
}

impl SseUpstream {
    pub fn start(name: &str, get: Get) -> SseUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            get,
            open: AtomicBool::new(false),
            gets: Arc::default(),
            conflicts: Arc::default(),
            posts: Arc::default(),
        });
        let up = SseUpstream {
            url: format!("http://127.0.0.1:{port}/mcp"),
            gets: shared.gets.clone(),
            conflicts: shared.conflicts.clone(),
            posts: shared.posts.clone(),
        };
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        up
    }

    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    pub fn conflicts(&self) -> usize {
        self.conflicts.load(Ordering::SeqCst)
    }
}

fn answer(out: &mut TcpStream, status: u16, extra: &str, body: &str) -> bool {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())
        .and_then(|_| out.write_all(body.as_bytes()))
        .and_then(|_| out.flush())
        .is_ok()
}

fn serve(stream: TcpStream, s: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut out = stream;
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
        let mut len = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if method == "GET" {
            return get_stream(out, s);
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        if let Ok(mut p) = s.posts.lock() {
            p.push(text.clone());
        }
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let ok = match (&v["method"], &v["id"]) {
            (serde_json::Value::String(m), id) if m == "initialize" => answer(
                &mut out,
                200,
                &format!("mcp-session-id: {}-session\r\n", s.name),
                &serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":s.name,"version":"1"}}}).to_string(),
            ),
            (serde_json::Value::String(_), id) if !id.is_null() => answer(
                &mut out,
                200,
                "",
                &serde_json::json!({"jsonrpc":"2.0","id":id,"result":{}}).to_string(),
            ),
            _ => answer(&mut out, 202, "", ""),
        };
        if !ok {
            return;
        }
    }
}

fn get_stream(mut out: TcpStream, s: &Shared) {
    s.gets.fetch_add(1, Ordering::SeqCst);
    let delay = match s.get {
        Get::Status(status) => {
            answer(&mut out, status, "", "");
            return;
        }
        Get::Stream { delay } => delay,
    };
    if s.open.swap(true, Ordering::SeqCst) {
        s.conflicts.fetch_add(1, Ordering::SeqCst);
        let body = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Conflict: Only one SSE stream is allowed per session"}}"#;
        answer(&mut out, 409, "", body);
        return;
    }
    std::thread::sleep(delay);
    let event = format!(
        "event: message\nid: {name}-ev-1\ndata: {{\"jsonrpc\":\"2.0\",\"id\":\"roots-1\",\"method\":\"roots/list\"}}\n\n",
        name = s.name
    );
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    let chunk = |b: &str| format!("{:x}\r\n{b}\r\n", b.len());
    let mut alive = out.write_all(head.as_bytes()).is_ok()
        && out.write_all(chunk(&event).as_bytes()).is_ok()
        && out.flush().is_ok();
    let until = Instant::now() + Duration::from_secs(8);
    while alive && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        alive = out.write_all(chunk(": ka\n\n").as_bytes()).is_ok() && out.flush().is_ok();
    }
    let _ = out.write_all(b"0\r\n\r\n");
    s.open.store(false, Ordering::SeqCst);
}
