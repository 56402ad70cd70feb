//! MCP over one HTTP/1.1 keep-alive connection, as the load generator uses it: open a session
//! (`initialize` + `notifications/initialized`), then `tools/call` round trips, each checked (HTTP
//! 200, a JSON-RPC result, the request's own id). [`Conn`] is async (tokio, for the closed-loop
//! workers); [`BlockingConn`] uses std sockets (for the paced run, where `std::thread::sleep` is
//! precise and tokio's 1 ms timer is not).

use std::io::{Read as _, Write as _};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::http1::{self, BodyAt, Parsed, find};

/// The protocol version the benchmark negotiates and then sends in `MCP-Protocol-Version`.
pub const PROTOCOL: &str = "2025-11-25";
pub const INITIALIZE: &[u8] = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"relay-bench","version":"0.1.0"}}}"#;
pub const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const CALL_HEAD: &[u8] = br#"{"jsonrpc":"2.0","id":"#;
const CALL_TAIL: &[u8] = br#","method":"tools/call","params":{"name":"echo","arguments":{"message":"hello from relay-bench"}}}"#;

/// What to send.
#[derive(Clone, Copy)]
pub enum Body {
    Fixed(&'static [u8]),
    /// A `tools/call` with this id.
    Call(u64),
    Empty,
}

/// A response, borrowed from the connection's buffers.
pub struct Answer<'a> {
    pub status: u16,
    pub session: Option<&'a str>,
    pub body: &'a [u8],
}

/// Buffers and session state shared by both connection kinds.
struct Wire {
    host: String,
    path: String,
    session: Option<String>,
    /// `Authorization` value sent on every request (`relay-bench --auth`).
    auth: Option<String>,
    wbuf: Vec<u8>,
    body: Vec<u8>,
    rbuf: Vec<u8>,
    used: usize,
    owned: Vec<u8>,
}

impl Wire {
    fn new(port: u16, path: &str) -> Self {
        Self {
            host: format!("127.0.0.1:{port}"),
            path: path.to_owned(),
            session: None,
            auth: None,
            wbuf: Vec::with_capacity(1024),
            body: Vec::with_capacity(256),
            rbuf: Vec::with_capacity(16 * 1024),
            used: 0,
            owned: Vec::new(),
        }
    }

    /// Drop the previous response and write the next request into `wbuf`.
    fn begin(&mut self, method: &str, body: Body) {
        self.rbuf.drain(..self.used);
        self.used = 0;
        self.wbuf.clear();
        let payload: &[u8] = match body {
            Body::Fixed(b) => b,
            Body::Empty => b"",
            Body::Call(id) => {
                self.body.clear();
                self.body.extend_from_slice(CALL_HEAD);
                let _ = write!(self.body, "{id}");
                self.body.extend_from_slice(CALL_TAIL);
                &self.body
            }
        };
        let mut headers = [
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("authorization", ""),
            ("mcp-session-id", ""),
            ("mcp-protocol-version", PROTOCOL),
        ];
        let mut n = 2;
        if let Some(a) = &self.auth {
            headers[n] = ("authorization", a);
            n += 1;
        }
        if let Some(s) = &self.session {
            headers[n] = ("mcp-session-id", s);
            headers[n + 1] = ("mcp-protocol-version", PROTOCOL);
            n += 2;
        }
        http1::write_request(
            &mut self.wbuf,
            method,
            &self.host,
            &self.path,
            &headers[..n],
            payload,
        );
    }

    fn parsed(&self) -> Result<Option<Parsed>, String> {
        http1::parse(&self.rbuf)
    }

    fn answer(&mut self, p: Parsed) -> Answer<'_> {
        self.used = p.used;
        let range = match p.body {
            BodyAt::Range(r) => Some(r),
            BodyAt::Owned(b) => {
                self.owned = b;
                None
            }
        };
        let body: &[u8] = match range {
            Some(r) => &self.rbuf[r],
            None => &self.owned,
        };
        Answer {
            status: p.status,
            session: p
                .session
                .and_then(|r| std::str::from_utf8(&self.rbuf[r]).ok()),
            body,
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned()
}

/// Is this the successful answer to `tools/call` number `id`?
pub fn check_call(a: &Answer<'_>, id: u64) -> Result<(), String> {
    let id_ok = find(a.body, b"\"id\":").is_some_and(|p| {
        let digits: &[u8] = &a.body[p + 5..];
        let end = digits
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        std::str::from_utf8(&digits[..end])
            .ok()
            .and_then(|s| s.parse().ok())
            == Some(id)
    });
    if a.status == 200 && id_ok && find(a.body, b"\"result\"").is_some() {
        Ok(())
    } else {
        Err(format!(
            "tools/call {id}: HTTP {}: {}",
            a.status,
            lossy(a.body)
        ))
    }
}

fn check_init(a: &Answer<'_>) -> Result<String, String> {
    match (a.status, a.session) {
        (200, Some(s)) => Ok(s.to_owned()),
        _ => Err(format!(
            "initialize: HTTP {} (session id {:?}): {}",
            a.status,
            a.session,
            lossy(a.body)
        )),
    }
}

fn check_initialized(a: &Answer<'_>) -> Result<(), String> {
    if a.status == 202 {
        Ok(())
    } else {
        Err(format!(
            "notifications/initialized: HTTP {}: {}",
            a.status,
            lossy(a.body)
        ))
    }
}

/// An async keep-alive connection with its MCP session.
pub struct Conn {
    stream: tokio::net::TcpStream,
    wire: Wire,
}

impl Conn {
    pub async fn connect(port: u16, path: &str) -> Result<Self, String> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            wire: Wire::new(port, path),
        })
    }

    /// Connect and open an MCP session.
    pub async fn open(port: u16, path: &str) -> Result<Self, String> {
        Self::open_with(port, path, None).await
    }

    /// Connect and open an MCP session, sending `auth` as `Authorization` on every request.
    pub async fn open_with(port: u16, path: &str, auth: Option<&str>) -> Result<Self, String> {
        let mut c = Self::connect(port, path).await?;
        c.wire.auth = auth.map(str::to_owned);
        let sid = check_init(&c.roundtrip("POST", Body::Fixed(INITIALIZE)).await?)?;
        c.wire.session = Some(sid);
        check_initialized(&c.roundtrip("POST", Body::Fixed(INITIALIZED)).await?)?;
        Ok(c)
    }

    pub async fn roundtrip(&mut self, method: &str, body: Body) -> Result<Answer<'_>, String> {
        self.wire.begin(method, body);
        self.stream
            .write_all(&self.wire.wbuf)
            .await
            .map_err(|e| format!("write: {e}"))?;
        loop {
            if let Some(p) = self.wire.parsed()? {
                return Ok(self.wire.answer(p));
            }
            let n = self
                .stream
                .read_buf(&mut self.wire.rbuf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
        }
    }

    /// One checked `tools/call`.
    pub async fn call(&mut self, id: u64) -> Result<(), String> {
        let a = self.roundtrip("POST", Body::Call(id)).await?;
        check_call(&a, id)
    }

    /// End the session (DELETE); the status is returned, not checked.
    pub async fn close(&mut self) -> Result<u16, String> {
        Ok(self.roundtrip("DELETE", Body::Empty).await?.status)
    }
}

/// A blocking keep-alive connection with its MCP session.
pub struct BlockingConn {
    stream: std::net::TcpStream,
    wire: Wire,
    chunk: Box<[u8]>,
}

impl BlockingConn {
    pub fn open(port: u16, path: &str) -> Result<Self, String> {
        Self::open_with(port, path, None)
    }

    /// As [`BlockingConn::open`], sending `auth` as `Authorization` on every request.
    pub fn open_with(port: u16, path: &str, auth: Option<&str>) -> Result<Self, String> {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
        let mut c = Self {
            stream,
            wire: Wire::new(port, path),
            chunk: vec![0; 16 * 1024].into_boxed_slice(),
        };
        c.wire.auth = auth.map(str::to_owned);
        let sid = check_init(&c.roundtrip("POST", Body::Fixed(INITIALIZE))?)?;
        c.wire.session = Some(sid);
        check_initialized(&c.roundtrip("POST", Body::Fixed(INITIALIZED))?)?;
        Ok(c)
    }

    pub fn roundtrip(&mut self, method: &str, body: Body) -> Result<Answer<'_>, String> {
        self.wire.begin(method, body);
        self.stream
            .write_all(&self.wire.wbuf)
            .map_err(|e| format!("write: {e}"))?;
        loop {
            if let Some(p) = self.wire.parsed()? {
                return Ok(self.wire.answer(p));
            }
            let n = self
                .stream
                .read(&mut self.chunk)
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            self.wire.rbuf.extend_from_slice(&self.chunk[..n]);
        }
    }

    pub fn call(&mut self, id: u64) -> Result<(), String> {
        let a = self.roundtrip("POST", Body::Call(id))?;
        check_call(&a, id)
    }

    pub fn close(&mut self) -> Result<u16, String> {
        Ok(self.roundtrip("DELETE", Body::Empty)?.status)
    }
}
