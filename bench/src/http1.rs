//! A tiny HTTP/1.1 request writer and response parser for the load generator: just enough for
//! keep-alive POSTs to loopback servers, without allocating on the hot path (the parser returns
//! ranges into the caller's buffer; only a chunked body is copied out).

use std::io::Write as _;
use std::ops::Range;

/// Append one request to `out`. `headers` are extra `name: value` pairs.
pub fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (n, v) in headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let _ = write!(out, "content-length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}

/// Where a parsed response's body is.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyAt {
    /// A range of the input buffer (Content-Length bodies).
    Range(Range<usize>),
    /// A decoded chunked body.
    Owned(Vec<u8>),
}

/// One complete response at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub status: u16,
    /// The `Mcp-Session-Id` value, as a range of the buffer.
    pub session: Option<Range<usize>>,
    pub body: BodyAt,
    /// Bytes of the buffer this response used.
    pub used: usize,
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_range(buf: &[u8], mut r: Range<usize>) -> Range<usize> {
    while r.start < r.end && buf[r.start].is_ascii_whitespace() {
        r.start += 1;
    }
    while r.end > r.start && buf[r.end - 1].is_ascii_whitespace() {
        r.end -= 1;
    }
    r
}

fn parse_usize(b: &[u8], radix: u32) -> Option<usize> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| usize::from_str_radix(s.trim(), radix).ok())
}

/// Parse the response at the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<Parsed>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
        return Ok(None);
    };
    let head = &buf[..head_end];
    if head.len() < 12 || !head.starts_with(b"HTTP/1.") {
        return Err(format!(
            "not an HTTP/1 response: {:?}",
            String::from_utf8_lossy(&head[..head.len().min(40)])
        ));
    }
    let status = parse_usize(&head[9..12], 10).ok_or("bad status code")? as u16;
    let mut content_length = None;
    let mut chunked = false;
    let mut session = None;
    let mut pos = find(head, b"\r\n").map_or(head.len(), |p| p + 2);
    while pos < head.len() {
        let end = find(&head[pos..], b"\r\n").map_or(head.len(), |p| pos + p);
        let line = &head[pos..end];
        if let Some(colon) = line.iter().position(|&c| c == b':') {
            let name = &line[..colon];
            let value = trim_range(buf, pos + colon + 1..end);
            if name.eq_ignore_ascii_case(b"content-length") {
                content_length = Some(parse_usize(&buf[value], 10).ok_or("bad content-length")?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = find(&buf[value], b"chunked").is_some();
            } else if name.eq_ignore_ascii_case(b"mcp-session-id") {
                session = Some(value);
            }
        }
        pos = end + 2;
    }
    let body_start = head_end + 4;
    if chunked {
        return Ok(parse_chunked(buf, body_start)?.map(|(body, used)| Parsed {
            status,
            session,
            body: BodyAt::Owned(body),
            used,
        }));
    }
    let len = match content_length {
        Some(n) => n,
        None if status == 204 || status == 304 || status < 200 => 0,
        None => return Err("response without Content-Length or chunked encoding".into()),
    };
    if buf.len() < body_start + len {
        return Ok(None);
    }
    Ok(Some(Parsed {
        status,
        session,
        body: BodyAt::Range(body_start..body_start + len),
        used: body_start + len,
    }))
}

fn parse_chunked(buf: &[u8], mut pos: usize) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = &buf[pos..pos + eol];
        let size_part = line.split(|&c| c == b';').next().unwrap_or_default();
        let size = parse_usize(size_part, 16).ok_or("bad chunk size")?;
        pos += eol + 2;
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            return Ok(find(&buf[pos..], b"\r\n").map(|p| {
                let used = pos + p + 2;
                (std::mem::take(&mut body), used)
            }));
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn content_length_response_with_session() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: abc \r\ncontent-length: 2\r\n\r\n{}extra";
        let p = parse(raw).unwrap().unwrap();
        assert_eq!(p.status, 200);
        assert_eq!(&raw[p.session.clone().unwrap()], b"abc");
        assert_eq!(p.body, BodyAt::Range(p.used - 2..p.used));
        assert_eq!(&raw[p.used..], b"extra");
        assert_eq!(
            parse(&raw[..raw.len() - 7]).unwrap(),
            None,
            "body incomplete"
        );
        assert_eq!(parse(&raw[..20]).unwrap(), None, "head incomplete");
    }

    #[test]
    fn chunked_and_empty_responses() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let p = parse(raw).unwrap().unwrap();
        assert_eq!(p.body, BodyAt::Owned(b"abcde".to_vec()));
        assert_eq!(p.used, raw.len());
        assert_eq!(parse(&raw[..raw.len() - 2]).unwrap(), None);
        let p = parse(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(p.status, 202);
        assert!(parse(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn request_shape() {
        let mut out = Vec::new();
        write_request(
            &mut out,
            "POST",
            "127.0.0.1:1",
            "/mcp",
            &[("a", "b")],
            b"{}",
        );
        assert_eq!(
            out,
            b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:1\r\na: b\r\ncontent-length: 2\r\n\r\n{}"
        );
    }
}
