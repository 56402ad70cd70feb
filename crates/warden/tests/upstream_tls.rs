//! Verified TLS to `https://` upstreams (P3.1; issue #2 item 4, remote Streamable HTTP servers).
//!
//! The chain: Warden under test → a TLS front written here (rustls, a certificate the test mints
//! with rcgen) → a plain Warden → the tiny stdio server. The front counts the connections it
//! forwarded, so a refused handshake is proven to have carried nothing; the inner Warden's audit
//! log proves no MCP message arrived.
#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use support::client::request;
use support::tiny::{ACCEPT, JSON, open_session, rpc, text_of, tiny};
use support::{Proc, Warden, temp_dir, toml_str, upstream_stdio, warden_bin};

/// A certificate and its key, PEM.
struct Leaf {
    cert: String,
    key: String,
}

/// A CA the test trusts, one it does not, and leaves signed by them.
struct Pki {
    dir: PathBuf,
    ca_file: PathBuf,
    /// `localhost`, signed by the trusted CA.
    good: Leaf,
    /// `localhost`, signed by a CA Warden was never told about.
    forged: Leaf,
    /// `other.example`, signed by the trusted CA.
    misnamed: Leaf,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(name: &str, issuer: &Issuer<'static, KeyPair>) -> Leaf {
    let params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    Leaf {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn pki() -> Pki {
    let dir = temp_dir("tls");
    let (ca_pem, trusted) = ca("warden test CA");
    let (_, rogue) = ca("rogue CA");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    Pki {
        good: leaf("localhost", &trusted),
        forged: leaf("localhost", &rogue),
        misnamed: leaf("other.example", &trusted),
        dir,
        ca_file,
    }
}

/// A TLS-terminating front on 127.0.0.1 forwarding each accepted connection to `backend`.
struct TlsFront {
    port: u16,
    /// Connections whose handshake succeeded and were forwarded.
    forwarded: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
    }
}

fn front(leaf: &Leaf, tls12_only: bool, alpn: &[&[u8]], backend: u16) -> TlsFront {
    let chain = vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let forwarded = Arc::new(AtomicUsize::new(0));
    let count = forwarded.clone();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (tcp, _) = tokio::select! {
                    _ = &mut stopped => return,
                    a = listener.accept() => a.unwrap(),
                };
                let acceptor = acceptor.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    let mut back = tokio::net::TcpStream::connect(("127.0.0.1", backend))
                        .await
                        .unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
                });
            }
        });
    });
    TlsFront {
        port,
        forwarded,
        stop: Some(stop),
    }
}

fn inner() -> Warden {
    Warden::start(&upstream_stdio(
        "tiny",
        &tiny(&["--name", "inner", "--tools", "echo"]),
        None,
    ))
}

/// Warden with one `https://localhost:<port>/mcp` upstream and `extra` upstream settings.
fn outer(port: u16, extra: &str) -> Warden {
    Warden::start(&format!(
        "[[upstream]]\nname = \"remote\"\nurl = \"https://localhost:{port}/mcp\"\n{extra}"
    ))
}

fn ca_setting(p: &Pki) -> String {
    format!(
        "[upstream.tls]\nca_file = {}\n",
        toml_str(&p.ca_file.display().to_string())
    )
}

fn calls_reached(w: &Warden) -> usize {
    w.audit()
        .iter()
        .filter(|e| e["kind"] == "mcp.request" && e["decision"] == "allow")
        .count()
}

/// An initialize through `w` is refused with `upstream_tls_failed` (502, P3.1) and audited.
fn assert_refused_for_tls(w: &Warden, label: &str) {
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;
    let r = request(w.port, "POST", "/mcp", &[JSON, ACCEPT], init.as_bytes());
    assert_eq!(r.status, 502, "{label}: {}", r.text());
    assert_eq!(
        r.json()["error"]["data"]["reason"],
        "upstream_tls_failed",
        "{label}"
    );
    let events: Vec<_> = w
        .audit()
        .into_iter()
        .filter(|e| e["reason"] == "upstream_tls_failed")
        .collect();
    assert!(!events.is_empty(), "{label}: refusal not audited");
    assert_eq!(events[0]["control"], "P3.1", "{label}");
}

#[test]
fn a_trusted_https_upstream_relays_over_http1_and_http2() {
    let p = pki();
    let inner = inner();
    let h1 = front(&p.good, false, &[b"http/1.1"], inner.port);
    let w = outer(h1.port, &ca_setting(&p));
    let sid = open_session(w.port);
    let call = rpc(
        w.port,
        &sid,
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"via": "tls"}}),
    );
    assert_eq!(text_of(&call), r#"inner:echo:{"via": "tls"}"#, "{call}");
    assert!(h1.forwarded.load(Ordering::SeqCst) >= 1);

    let h2 = front(&p.good, false, &[b"h2"], inner.port);
    let w2 = outer(h2.port, &format!("http2 = true\n{}", ca_setting(&p)));
    let sid = open_session(w2.port);
    let call = rpc(
        w2.port,
        &sid,
        2,
        "tools/call",
        json!({"name": "echo", "arguments": {"via": "h2"}}),
    );
    assert_eq!(text_of(&call), r#"inner:echo:{"via": "h2"}"#, "{call}");
    assert!(h2.forwarded.load(Ordering::SeqCst) >= 1);
}

#[test]
fn forged_misnamed_and_downgraded_upstreams_are_refused_before_any_request() {
    let p = pki();
    let inner = inner();
    let cases = [
        (
            "certificate from an unknown CA",
            front(&p.forged, false, &[], inner.port),
            ca_setting(&p),
        ),
        (
            "certificate for another name",
            front(&p.misnamed, false, &[], inner.port),
            ca_setting(&p),
        ),
        (
            "TLS 1.2 only, 1.3 required",
            front(&p.good, true, &[], inner.port),
            ca_setting(&p),
        ),
        // Without ca_file the system trust store applies, which does not know the test CA.
        (
            "test CA not in the system store",
            front(&p.good, false, &[], inner.port),
            String::new(),
        ),
        // rustls aborts the handshake when the client's only protocol is not on offer.
        (
            "server offers only http/1.1 by ALPN",
            front(&p.good, false, &[b"http/1.1"], inner.port),
            format!("http2 = true\n{}", ca_setting(&p)),
        ),
        // A server that ignores ALPN completes the handshake; Warden's own check drops it.
        (
            "server ignores ALPN",
            front(&p.good, false, &[], inner.port),
            format!("http2 = true\n{}", ca_setting(&p)),
        ),
    ];
    for (label, f, settings) in &cases {
        let w = outer(f.port, settings);
        assert_refused_for_tls(&w, label);
        if label.contains("ignores ALPN") {
            // The handshake succeeded and the front forwarded the connection; Warden dropped it
            // before writing a request.
            assert!(f.forwarded.load(Ordering::SeqCst) >= 1, "{label}");
            assert_eq!(
                calls_reached(&inner),
                0,
                "{label}: a message reached the server"
            );
        } else {
            assert_eq!(
                f.forwarded.load(Ordering::SeqCst),
                0,
                "{label}: a connection got through"
            );
        }
    }
    assert_eq!(
        calls_reached(&inner),
        0,
        "no MCP message reached the server"
    );

    // The same TLS 1.2 server is accepted once the operator allows 1.2.
    let old = front(&p.good, true, &[], inner.port);
    let w = outer(
        old.port,
        &format!("{}min_version = \"1.2\"\n", ca_setting(&p)),
    );
    let sid = open_session(w.port);
    let call = rpc(
        w.port,
        &sid,
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {}}),
    );
    assert_eq!(text_of(&call), "inner:echo:{}", "{call}");
}

#[test]
fn an_unreadable_ca_file_fails_check_config_and_stops_warden_at_start() {
    let p = pki();
    for (label, file) in [
        ("missing", p.dir.join("nope.pem")),
        ("no certificate in it", {
            let f = p.dir.join("empty.pem");
            std::fs::write(&f, "not a certificate\n").unwrap();
            f
        }),
    ] {
        let cfg = p.dir.join(format!("{}.toml", label.replace(' ', "_")));
        std::fs::write(
            &cfg,
            format!(
                "[audit]\npath = {}\n\n[[upstream]]\nname = \"remote\"\nurl = \"https://localhost:9/mcp\"\n[upstream.tls]\nca_file = {}\n\n[auth]\nmode = \"local\"\n",
                toml_str(&p.dir.join("audit.jsonl").display().to_string()),
                toml_str(&file.display().to_string())
            ),
        )
        .unwrap();
        // check-config finds it first, at the [upstream.tls] line.
        let checked = std::process::Command::new(warden_bin())
            .arg("check-config")
            .arg(&cfg)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&checked.stderr);
        assert_eq!(checked.status.code(), Some(2), "{label}: {said}");
        assert!(
            said.contains(&format!("{}:7:", cfg.display())) && said.contains("tls.ca_file"),
            "{label}: {said}"
        );
        let mut cmd = std::process::Command::new(warden_bin());
        cmd.args(["serve", "--config"]).arg(&cfg);
        let mut proc = Proc::spawn("warden", cmd);
        let line = proc.wait_for("tls.ca_file", Duration::from_secs(20));
        assert!(
            line.contains(&file.display().to_string()),
            "{label}: {line}"
        );
        assert_eq!(proc.wait_exit(Duration::from_secs(5)), Some(2), "{label}");
    }
}
