//! Checks that need the whole configuration: one source per upstream, unique names and prefixes,
//! safe listener settings. Each problem carries the place in the file it is about.

use crate::Config;
use crate::diagnostics::{Diagnostic, at, span_of};

pub(crate) fn validate(cfg: &Config, text: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let server_at = |field: &str| span_of(text, "server", None, Some(field));
    if !cfg.server.path.starts_with('/') {
        out.push(at(
            text,
            server_at("path"),
            "server.path must start with '/'",
            "write it like \"/mcp\"",
        ));
    }
    if !cfg.server.listen.ip().is_loopback() && cfg.server.allowed_hosts.is_none() {
        out.push(at(
            text,
            server_at("listen"),
            format!("server.listen {} is not a loopback address but server.allowed_hosts is not set", cfg.server.listen),
            "list the host names clients use in server.allowed_hosts (DNS-rebinding defence), or bind 127.0.0.1",
        ));
    }
    if let Some(hosts) = &cfg.server.allowed_hosts
        && hosts.is_empty()
    {
        out.push(at(
            text,
            server_at("allowed_hosts"),
            "server.allowed_hosts is empty: every request would be refused",
            "list at least one host name",
        ));
    }
    for o in &cfg.server.allowed_origins {
        if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
            out.push(at(
                text,
                server_at("allowed_origins"),
                format!("origin '{o}' is not of the form scheme://host[:port]"),
                "write e.g. \"https://app.example.com\" with no path or trailing slash",
            ));
        }
    }
    if matches!(cfg.server.worker_threads, Some(n) if n == 0 || n > 1024) {
        out.push(at(
            text,
            server_at("worker_threads"),
            "server.worker_threads must be between 1 and 1024",
            "leave it out for one thread per CPU",
        ));
    }
    if cfg.server.first_request_timeout_ms == Some(0) {
        out.push(at(
            text,
            server_at("first_request_timeout_ms"),
            "server.first_request_timeout_ms must be greater than zero",
            "leave it out to use header_timeout_ms, or give a few seconds",
        ));
    }
    if cfg.server.idle_timeout_secs == 0 || cfg.server.idle_timeout_secs > 86_400 {
        out.push(at(
            text,
            server_at("idle_timeout_secs"),
            "server.idle_timeout_secs must be between 1 and 86400",
            "a minute or a few is usual",
        ));
    }
    if cfg.server.shutdown_grace_secs > 3600 {
        out.push(at(
            text,
            server_at("shutdown_grace_secs"),
            "server.shutdown_grace_secs must be at most 3600",
            "a few seconds to a minute is usual; 0 cuts requests in flight at once",
        ));
    }
    if cfg.limits.max_body_bytes == 0
        || cfg.limits.max_json_depth == 0
        || cfg.limits.max_stdio_children == 0
    {
        out.push(at(
            text,
            span_of(text, "limits", None, None),
            "limits must be greater than zero",
            "raise the limit",
        ));
    }
    if cfg.sessions.idle_timeout_secs == 0
        || cfg.sessions.absolute_timeout_secs < cfg.sessions.idle_timeout_secs
    {
        out.push(at(
            text,
            span_of(text, "sessions", None, None),
            "sessions: idle_timeout_secs must be > 0 and <= absolute_timeout_secs",
            "e.g. idle 1800, absolute 86400",
        ));
    }
    let mut names = Vec::new();
    let mut prefixes = Vec::new();
    for (i, u) in cfg.upstreams.iter().enumerate() {
        let here = |field: &str| span_of(text, "upstream", Some(i), Some(field));
        let valid_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !valid_name(&u.name) {
            out.push(at(
                text,
                here("name"),
                format!("upstream name '{}' is not 1-64 of [A-Za-z0-9_-]", u.name),
                "rename it",
            ));
        }
        if names.contains(&u.name) {
            out.push(at(
                text,
                here("name"),
                format!("upstream name '{}' is used twice", u.name),
                "give every upstream its own name",
            ));
        }
        names.push(u.name.clone());
        if let Some(p) = &u.prefix {
            if !valid_name(p) {
                out.push(at(
                    text,
                    here("prefix"),
                    format!("prefix '{p}' is not 1-64 of [A-Za-z0-9_-]"),
                    "use letters, digits, '-' or '_'",
                ));
            }
            if prefixes.contains(p) {
                out.push(at(
                    text,
                    here("prefix"),
                    format!("prefix '{p}' is used by two upstreams"),
                    "prefixes must be unique, or names would collide",
                ));
            }
            prefixes.push(p.clone());
        }
        match (&u.url, &u.command) {
            (Some(_), Some(_)) | (None, None) => out.push(at(
                text,
                here("name"),
                format!("upstream '{}' must have exactly one of url or command", u.name),
                "set url = \"http://…/mcp\" for a remote server or command = [\"prog\", \"arg\"] for a stdio server",
            )),
            (Some(url), None) if url.starts_with("https://") => {}
            (Some(url), None) if !url.starts_with("http://") => {
                out.push(at(text, here("url"), format!("upstream url '{url}' is not http:// or https://"), "write the full endpoint URL, e.g. https://mcp.example.com/mcp"));
            }
            (None, Some(cmd)) if cmd.is_empty() || cmd[0].is_empty() => {
                out.push(at(text, here("command"), "upstream command is empty", "give the program and its arguments, e.g. [\"npx\", \"server\"]"));
            }
            _ => {}
        }
        if u.tls.is_some()
            && !u
                .url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://"))
        {
            out.push(at(
                text,
                here("tls"),
                format!(
                    "upstream '{}': tls settings on an upstream that is not https://",
                    u.name
                ),
                "use an https:// url, or remove [upstream.tls]",
            ));
        }
        if u.timeout_ms == 0 || u.initial_backoff_ms == 0 || u.max_backoff_ms < u.initial_backoff_ms
        {
            out.push(at(text, here("name"), format!("upstream '{}': timeouts and backoff must be > 0 and max_backoff_ms >= initial_backoff_ms", u.name), "use the defaults unless you need otherwise"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::load_str;

    #[test]
    fn defaults_are_secure() {
        let cfg =
            load_str("[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/mcp\"\n").unwrap();
        assert!(cfg.server.listen.ip().is_loopback());
        assert_eq!(
            cfg.server.effective_allowed_hosts(),
            ["localhost", "127.0.0.1", "[::1]"]
        );
        assert_eq!(cfg.server.path, "/mcp");
    }

    #[test]
    fn reports_every_error_with_lines() {
        let text = "[server]\nlisten = \"0.0.0.0:80\"\nbogus = 1\n\n[sessions]\nidle_timeout_secs = \"x\"\n\n[[upstream]]\nname = \"a\"\n\n[[upstream]]\nname = \"a\"\nurl = \"ftp://x\"\ncommand = [\"y\"]\n";
        let errs = load_str(text).unwrap_err();
        let lines: Vec<usize> = errs.0.iter().map(|d| d.line).collect();
        let rendered = errs.render("w.toml");
        assert!(rendered.contains("w.toml:3:"), "{rendered}");
        assert!(rendered.contains("unknown field"), "{rendered}");
        assert!(rendered.contains("w.toml:6:"), "{rendered}");
        assert!(errs.0.iter().all(|d| !d.hint.is_empty()));
        assert!(lines.len() >= 2, "{rendered}");
    }

    #[test]
    fn semantic_errors_point_at_the_upstream() {
        let text = "[server]\nlisten = \"0.0.0.0:80\"\n\n[[upstream]]\nname = \"a\"\n\n[[upstream]]\nname = \"a\"\nurl = \"ftp://x\"\n\n[[upstream]]\nname = \"b\"\n";
        let errs = load_str(text).unwrap_err();
        let r = errs.render("w.toml");
        assert!(
            r.contains("w.toml:2:") && r.contains("allowed_hosts"),
            "{r}"
        );
        assert!(
            r.contains("w.toml:5:") && r.contains("exactly one of url or command"),
            "{r}"
        );
        assert!(r.contains("w.toml:8:") && r.contains("used twice"), "{r}");
        assert!(r.contains("w.toml:9:") && r.contains("ftp://x"), "{r}");
        assert!(r.contains("w.toml:12:"), "{r}");
    }

    #[test]
    fn refuses_what_the_runtime_cannot_do() {
        let text = "[server]\nworker_threads = 0\n\n[[upstream]]\nname = \"a\"\nurl = \"http://x/mcp\"\n[upstream.tls]\nmin_version = \"1.2\"\n";
        let r = load_str(text).unwrap_err().render("w.toml");
        assert!(
            r.contains("w.toml:2:") && r.contains("worker_threads"),
            "{r}"
        );
        assert!(r.contains("w.toml:7:") && r.contains("not https"), "{r}");
        let bad_version = "[[upstream]]\nname = \"a\"\nurl = \"https://x/mcp\"\n[upstream.tls]\nmin_version = \"1.0\"\n";
        let r = load_str(bad_version).unwrap_err().render("w.toml");
        assert!(r.contains("w.toml:5:"), "{r}");
        let tls = "[[upstream]]\nname = \"a\"\nurl = \"https://x/mcp\"\n[upstream.tls]\nca_file = \"ca.pem\"\n";
        let cfg = load_str(tls).unwrap();
        let t = cfg.upstreams[0].tls.as_ref().unwrap();
        assert_eq!(t.min_version, crate::model::TlsVersion::Tls13);
        assert_eq!(t.ca_file.as_deref(), Some(std::path::Path::new("ca.pem")));
        let ok =
            "[server]\nworker_threads = 1\n\n[[upstream]]\nname = \"a\"\nurl = \"http://x/mcp\"\n";
        assert_eq!(load_str(ok).unwrap().server.worker_threads, Some(1));
    }

    #[test]
    fn syntax_errors_have_places() {
        let errs = load_str("[server\nlisten = 1\n").unwrap_err();
        assert_eq!(errs.0[0].line, 1, "{}", errs.render("f"));
    }
}
