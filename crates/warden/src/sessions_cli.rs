//! `warden sessions`: list and revoke downstream sessions through the admin listener of a
//! running `warden serve` (its Unix socket when configured, else its TCP address with the
//! admin token). A thin client: the admin listener decides and audits.

use std::io::{Read, Write};
use std::process::ExitCode;

use warden_config::Config;

/// What to do.
pub enum Action {
    List,
    Revoke(String),
    RevokePrincipal(String),
}

pub fn run(cfg: &Config, action: Action) -> ExitCode {
    let Some(admin) = &cfg.admin else {
        eprintln!("warden: the configuration has no [admin] listener");
        return ExitCode::from(2);
    };
    let (method, target) = match &action {
        Action::List => ("GET", "/sessions".to_owned()),
        Action::Revoke(fp) => ("DELETE", format!("/sessions/{}", encode(fp))),
        Action::RevokePrincipal(p) => ("DELETE", format!("/sessions?principal={}", encode(p))),
    };
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: warden-admin\r\nConnection: close\r\n");
    let reply = if let Some(sock) = admin.socket.as_ref().filter(|_| cfg!(unix)) {
        head.push_str("\r\n");
        exchange_unix(sock, &head)
    } else if let Some(addr) = admin.listen {
        if let Some(t) = &admin.token {
            match warden_gateway::identity::secret::read(t) {
                Ok(s) => head.push_str(&format!("Authorization: Bearer {}\r\n", s.expose())),
                Err(e) => {
                    eprintln!("warden: admin.token: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        head.push_str("\r\n");
        std::net::TcpStream::connect(addr).and_then(|s| exchange(s, &head))
    } else {
        eprintln!("warden: [admin] has neither socket nor listen");
        return ExitCode::from(2);
    };
    match reply {
        Ok(text) => {
            let (status_line, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let ok = status_line.starts_with("HTTP/1.1 200");
            println!("{}", body.trim_end());
            if ok {
                ExitCode::SUCCESS
            } else {
                eprintln!("warden: {}", status_line.lines().next().unwrap_or_default());
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("warden: cannot reach the admin listener: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(unix)]
fn exchange_unix(path: &std::path::Path, head: &str) -> std::io::Result<String> {
    exchange(std::os::unix::net::UnixStream::connect(path)?, head)
}

#[cfg(not(unix))]
fn exchange_unix(_: &std::path::Path, _: &str) -> std::io::Result<String> {
    Err(std::io::Error::other("Unix sockets are not available here"))
}

fn exchange(mut s: impl Read + Write, head: &str) -> std::io::Result<String> {
    s.write_all(head.as_bytes())?;
    let mut out = Vec::new();
    s.take(4 * 1024 * 1024).read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    // The admin listener answers with a length or chunks; a chunked body is de-chunked here.
    if let Some((head, body)) = text.split_once("\r\n\r\n")
        && head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    {
        let mut rest = body;
        let mut plain = String::new();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            plain.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        return Ok(format!("{head}\r\n\r\n{plain}"));
    }
    Ok(text)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
