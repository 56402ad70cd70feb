//! A small hostile/recording MCP upstream for attack and losslessness tests: a blocking HTTP/1.1
//! server on 127.0.0.1 that records every request (method, headers, exact body bytes) and answers
//! with whatever the test scripts. It exists to prove what did or did not reach an upstream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the recorder answers.
pub struct Canned {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Canned {
    pub fn json(body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            headers: vec![],
            body: body.into(),
        }
    }
    pub fn sse(body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            content_type: "text/event-stream",
            headers: vec![],
            body: body.into(),
        }
    }
    pub fn accepted() -> Self {
        Self {
            status: 202,
            content_type: "application/json",
            headers: vec![],
            body: vec![],
        }
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Script = dyn Fn(&Recorded) -> Canned + Send + Sync;

pub struct Recorder {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
}

impl Recorder {
    /// Start answering with `script`; the server thread lives until the test process ends.
    pub fn start(script: impl Fn(&Recorded) -> Canned + Send + Sync + 'static) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let seen2 = seen.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (seen, script) = (seen2.clone(), script.clone());
                std::thread::spawn(move || serve_conn(stream, &seen, &*script));
            }
        });
        Recorder {
            url: format!("http://127.0.0.1:{port}/mcp"),
            seen,
            connections,
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Bodies of the POSTs received, as UTF-8 (lossy).
    pub fn bodies(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    }
}

fn serve_conn(stream: TcpStream, seen: &Mutex<Vec<Recorded>>, script: &Script) {
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
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let rec = Recorded {
            method,
            headers,
            body,
        };
        let canned = script(&rec);
        if let Ok(mut v) = seen.lock() {
            v.push(rec);
        }
        let mut head = format!(
            "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
            canned.status,
            canned.content_type,
            canned.body.len()
        );
        for (k, v) in &canned.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if out
            .write_all(head.as_bytes())
            .and_then(|_| out.write_all(&canned.body))
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
    }
}
