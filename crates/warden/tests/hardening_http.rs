//! Relay hardening of `warden serve`'s HTTP front end (issue #13): connections that never send a
//! request, or go idle, are closed on a deadline so they cannot hold every `max_connections`
//! slot (P4.4).
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::attack::{Arena, init_body, read_response};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const H2_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Read (and discard) until the peer closes; when it did, measured from `since`. `None`: still
/// open at `since + limit`.
fn closed_after(s: &mut TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    loop {
        let left = (since + limit).saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(since.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset is a close too (Warden dropped the socket with bytes unread).
            Err(_) => return Some(since.elapsed()),
        }
    }
}

/// P4.4: connections that send nothing, one byte, part of the HTTP/2 preface, or the whole h2c
/// preface and SETTINGS and then nothing, are each closed at `first_request_timeout_ms`, audited
/// (`connection.timeout`, `first_request_timeout`) and counted. With `max_connections = 4` they
/// first hold every slot (a fifth client is turned away); once they are cut, clients are served.
#[test]
fn silent_connections_are_cut_at_the_first_request_deadline() {
    let mut a = Arena::start(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = 4\nfirst_request_timeout_ms = 700\n",
    );
    let port = a.w.port;
    let attacks: [(&str, Vec<u8>); 4] = [
        ("nothing", Vec::new()),
        ("one byte", b"P".to_vec()),
        ("a partial HTTP/2 preface", H2_PREFACE[..10].to_vec()),
        (
            "the h2c preface and SETTINGS",
            [H2_PREFACE, &H2_SETTINGS[..]].concat(),
        ),
    ];
    let started = Instant::now();
    let mut silent: Vec<(&str, TcpStream)> = attacks
        .iter()
        .map(|(what, bytes)| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.write_all(bytes).expect("write");
            (*what, s)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    // They hold every slot: a legitimate client is turned away while they do.
    let mut turned_away = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let body = init_body("while-locked-out");
    let _ = write!(
        turned_away,
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    assert!(
        read_response(&mut turned_away, Duration::from_secs(3)).is_none(),
        "the silent connections hold all max_connections slots"
    );

    for (what, s) in &mut silent {
        let waited = closed_after(s, started, Duration::from_secs(6));
        assert!(
            waited.is_some_and(|w| w >= Duration::from_millis(600) && w < Duration::from_secs(4)),
            "a connection that sent {what} must be closed at first_request_timeout_ms (700 ms); \
             closed after {waited:?}"
        );
    }

    let events = support::attack::audit_with(&a.w, "first_request_timeout", 4);
    assert_eq!(
        events.len(),
        4,
        "one audit event per cut connection: {events:#?}"
    );
    for e in &events {
        assert_eq!(e["kind"], "connection.timeout", "{e}");
        assert_eq!(e["decision"], "deny", "{e}");
        assert_eq!(e["control"], "P4.4", "{e}");
        assert!(
            e["client"]
                .as_str()
                .is_some_and(|c| c.starts_with("127.0.0.1:")),
            "{e}"
        );
        assert!(e["hint"].as_str().is_some_and(|h| !h.is_empty()), "{e}");
    }
    a.tally.insert("first_request_timeout", 4);
    a.tally.insert("too_many_connections", 1);
    a.assert_upstream_count("silent connections");
    // A legitimate client is served again, and /metrics counts the cuts.
    a.assert_healthy(None);
}

/// P4.4: an HTTP/2 connection is kept while it is used, and closed (GOAWAY, then EOF) once it has
/// had no open stream for `idle_timeout_secs` — even though its client answers every keep-alive
/// ping. The close is audited as `connection.timeout`, reason `idle_timeout`, decision `info`.
#[test]
fn idle_http2_connections_are_closed() {
    let a = Arena::start(
        "[server]\nlisten = \"127.0.0.1:0\"\nidle_timeout_secs = 1\nfirst_request_timeout_ms = 500\n",
    );
    let port = a.w.port;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
        let mut conn = tokio::spawn(conn);
        // In use for 3 s, well past idle_timeout_secs, with a request every 600 ms: kept.
        let mut last = Instant::now();
        for i in 0..5 {
            let req = http::Request::post(format!("http://127.0.0.1:{port}/mcp"))
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(())
                .unwrap();
            let (resp, mut send) = client
                .send_request(req, false)
                .unwrap_or_else(|e| panic!("request {i}: the connection in use was closed: {e}"));
            send.send_data(Bytes::from(init_body(&format!("h2-busy-{i}"))), true)
                .unwrap();
            let resp = resp.await.unwrap();
            assert_eq!(resp.status(), 200, "request {i}");
            let mut body = resp.into_body();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            last = Instant::now();
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        assert!(!conn.is_finished(), "an HTTP/2 connection in use is kept");
        // Then idle: closed between one and two idle periods after its last stream ended.
        let ended = tokio::time::timeout(Duration::from_secs(6), &mut conn).await;
        let waited = last.elapsed();
        assert!(
            ended.is_ok()
                && waited >= Duration::from_millis(900)
                && waited < Duration::from_secs(4),
            "an idle HTTP/2 connection must be closed after idle_timeout_secs (1 s); \
             closed: {}, after {waited:?}",
            ended.is_ok()
        );
        drop(client);
    });
    let events = support::attack::audit_with(&a.w, "idle_timeout", 1);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["kind"], "connection.timeout");
    assert_eq!(events[0]["decision"], "info");
    assert_eq!(events[0]["control"], "P4.4");
}

/// P4.4: an HTTP/1.1 keep-alive connection idle after a response is closed after
/// `header_timeout_ms` (hyper's header-read timer restarts when the response is written), so
/// keep-alive cannot be used to hold a slot either.
#[test]
fn idle_http1_keep_alive_connections_are_closed() {
    let mut a = Arena::start("[server]\nlisten = \"127.0.0.1:0\"\nheader_timeout_ms = 800\n");
    let port = a.w.port;
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let body = init_body("h1-keep-alive");
    write!(
        s,
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let (status, _, _) = read_response(&mut s, Duration::from_secs(5)).expect("an answer");
    assert_eq!(status, 200);
    a.allowed_upstream += 1;
    let answered = Instant::now();
    let waited = closed_after(&mut s, answered, Duration::from_secs(6));
    assert!(
        waited.is_some_and(|w| w >= Duration::from_millis(600) && w < Duration::from_secs(4)),
        "an idle keep-alive connection is closed after header_timeout_ms (800 ms); closed after \
         {waited:?}"
    );
    a.assert_healthy(None);
}
