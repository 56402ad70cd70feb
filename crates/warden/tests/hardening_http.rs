//! Relay hardening of `warden serve`'s HTTP front end (issue #13): connections that never send a
//! request, or go idle, are closed on a deadline so they cannot hold every `max_connections`
//! slot (P4.4); request heads two parsers could read differently (duplicate `Host`, `Host` vs
//! authority, `Content-Length` with `Transfer-Encoding`) are refused or cannot smuggle (P1.1,
//! P8.4).
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::attack::{Arena, expect, init_body, raw_reply, read_response};
use support::client::Reply;

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

/// One HTTP/1.1 request written as given (`head` without the final blank line), its answer.
fn raw_post(port: u16, head: &str, body: &str) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "{head}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    raw_reply(read_response(&mut s, Duration::from_secs(5)).expect("an answer"))
}

/// P1.1 / P8.4: two `Host` headers — the allowlist would check only the first, another reader
/// might take the second — are refused with 400 before any guard reads them, audited, and the
/// request never reaches the upstream.
#[test]
fn duplicate_host_headers_are_refused() {
    let mut a = Arena::start("");
    let port = a.w.port;
    for (marker, hosts) in [
        (
            "dup-host-1",
            format!("host: 127.0.0.1:{port}\r\nhost: localhost:{port}"),
        ),
        (
            "dup-host-2",
            format!("host: 127.0.0.1:{port}\r\nhost: 127.0.0.1:{port}"),
        ),
    ] {
        let r = raw_post(
            port,
            &format!("POST /mcp HTTP/1.1\r\n{hosts}"),
            &init_body(marker),
        );
        a.refused(marker, &r, expect(400, -32600, "duplicate_host", "P1.1"));
    }
    a.assert_healthy(None);
}

/// P1.1 / P8.4: a `Host` header that names another host than the request target's authority — an
/// HTTP/1.1 absolute-form target, or HTTP/2 `:authority` — is refused with 400, even when both
/// hosts are allowed (the allowlist checks the authority; anything reading `Host` sees another).
#[test]
fn host_differing_from_the_authority_is_refused() {
    let mut a = Arena::start("");
    let port = a.w.port;
    // HTTP/1.1 absolute-form.
    let r = raw_post(
        port,
        &format!("POST http://127.0.0.1:{port}/mcp HTTP/1.1\r\nhost: localhost:{port}"),
        &init_body("abs-form-1"),
    );
    a.refused(
        "abs-form-1",
        &r,
        expect(400, -32600, "host_authority_mismatch", "P1.1"),
    );
    // The same target with a matching Host is served.
    let ok = raw_post(
        port,
        &format!("POST http://127.0.0.1:{port}/mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}"),
        &init_body("abs-form-ok"),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    a.allowed_upstream += 1;

    // HTTP/2 (prior knowledge): `host` vs `:authority`; then without `host`, served.
    let h2_post = |host: Option<String>, marker: &str| -> Reply {
        let body = init_body(marker);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (mut client, conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
            tokio::spawn(conn);
            let mut req = http::Request::post(format!("http://127.0.0.1:{port}/mcp"))
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream");
            if let Some(h) = host {
                req = req.header("host", h);
            }
            let (resp, mut send) = client.send_request(req.body(()).unwrap(), false).unwrap();
            send.send_data(Bytes::from(body), true).unwrap();
            let resp = resp.await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let mut body = resp.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            Reply {
                status,
                headers,
                body: bytes,
            }
        })
    };
    let r = h2_post(Some(format!("localhost:{port}")), "h2-host-1");
    a.refused(
        "h2-host-1",
        &r,
        expect(400, -32600, "host_authority_mismatch", "P1.1"),
    );
    let ok = h2_post(Some(format!("127.0.0.1:{port}")), "h2-host-ok");
    assert_eq!(ok.status, 200, "{}", ok.text());
    let ok = h2_post(None, "h2-no-host");
    assert_eq!(ok.status, 200, "{}", ok.text());
    a.allowed_upstream += 2;
    a.assert_healthy(None);
}

/// P1.1 (request smuggling): `Content-Length` together with `Transfer-Encoding: chunked`, in both
/// orders. hyper 1.x drops the `Content-Length` before Warden sees the head (so the
/// `content_length_with_transfer_encoding` check in `guards/http_hygiene.rs` cannot fire behind
/// it): the body is framed by the chunked encoding alone and the connection is closed after the
/// response, so a request hidden after the body is never read, let alone relayed.
#[test]
fn content_length_with_transfer_encoding_cannot_smuggle() {
    let mut a = Arena::start("");
    let port = a.w.port;
    for (i, framing) in [
        "content-length: 4\r\ntransfer-encoding: chunked",
        "transfer-encoding: chunked\r\ncontent-length: 4",
    ]
    .iter()
    .enumerate()
    {
        let body = init_body(&format!("clte-{i}"));
        let smuggled = init_body(&format!("smuggled-{i}"));
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            s,
            "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n{framing}\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n\
             POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{smuggled}",
            body.len(),
            smuggled.len()
        )
        .unwrap();
        let (status, head, _) =
            read_response(&mut s, Duration::from_secs(5)).expect("an answer to the first request");
        assert_eq!(
            status, 200,
            "framed by Transfer-Encoding: the chunked body is the message"
        );
        a.allowed_upstream += 1;
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "hyper closes a connection whose framing was ambiguous: {head}"
        );
        let closed = closed_after(&mut s, Instant::now(), Duration::from_secs(3));
        assert!(
            closed.is_some(),
            "no second answer: the connection is closed"
        );
        let seen = a.up.bodies();
        assert!(
            seen.iter().any(|b| b.contains(&format!("clte-{i}"))),
            "the chunked body was relayed: {seen:?}"
        );
        assert!(
            !seen.iter().any(|b| b.contains("smuggled")),
            "the request after the body was never relayed: {seen:?}"
        );
    }
    a.assert_upstream_count("CL+TE");
    a.assert_healthy(None);
}

/// P1.1: a `Transfer-Encoding` hyper refuses itself (not ending in `chunked`), sent with a
/// `Content-Length`, is answered 400 by hyper before Warden sees a request — and is not silent:
/// audited as `connection.refused`, reason `malformed_http`, and counted.
#[test]
fn framing_hyper_refuses_is_audited() {
    let mut a = Arena::start("");
    let port = a.w.port;
    let body = init_body("te-gzip");
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\ncontent-length: {}\r\ntransfer-encoding: gzip\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let answer = read_response(&mut s, Duration::from_secs(5));
    assert_eq!(
        answer.map(|(status, _, _)| status),
        Some(400),
        "hyper answers 400"
    );
    let events = support::attack::audit_with(&a.w, "malformed_http", 1);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["kind"], "connection.refused");
    assert_eq!(events[0]["decision"], "deny");
    assert_eq!(events[0]["control"], "P1.1");
    a.tally.insert("malformed_http", 1);
    a.assert_upstream_count("TE gzip");
    a.assert_healthy(None);
}
