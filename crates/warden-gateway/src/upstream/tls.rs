//! Verified TLS to `https://` upstreams (P3.1): rustls with the aws-lc-rs provider, the server
//! certificate checked against the system's trust store or the upstream's own `ca_file`, and the
//! name checked against the URL's host. TLS 1.3 unless the upstream is configured for 1.2.
//!
//! It must not offer a way around verification, and it reads its files once, at start: a missing
//! or empty CA file stops Warden from starting rather than leaving an upstream unverified.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use warden_config::{TlsVersion, UpstreamTls};

use super::UpstreamError;

/// What a pool needs to open TLS connections to one upstream.
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
    /// ALPN `h2` was offered and must be what the server picked.
    http2: bool,
}

/// Load what an `https://` upstream's TLS needs (its CA file, or the system trust store), as
/// `warden serve` will at start: `check-config` reports the same failure. `Ok` for other upstreams.
pub fn check(up: &warden_config::UpstreamConfig) -> Result<(), UpstreamError> {
    let Some(url) = up.url.as_deref().filter(|u| u.starts_with("https://")) else {
        return Ok(());
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| UpstreamError::Unreachable(format!("bad url {url}: {e}")))?;
    let host = uri.host().unwrap_or_default();
    Tls::new(host, &up.tls.clone().unwrap_or_default(), up.http2).map(|_| ())
}

impl Tls {
    /// Build the client side for `host` (the URL's host: a DNS name or an IP address, which the
    /// certificate must name). `http2` offers ALPN `h2` alone, otherwise `http/1.1`.
    pub fn new(host: &str, cfg: &UpstreamTls, http2: bool) -> Result<Self, UpstreamError> {
        let bad = |why: String| UpstreamError::Tls(why);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| bad(format!("'{host}' is not a DNS name or IP address")))?;
        let roots = match &cfg.ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| bad(format!("tls.ca_file {}: {e}", path.display())))?;
                for cert in certs {
                    let cert =
                        cert.map_err(|e| bad(format!("tls.ca_file {}: {e}", path.display())))?;
                    roots
                        .add(cert)
                        .map_err(|e| bad(format!("tls.ca_file {}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(bad(format!(
                        "tls.ca_file {} holds no certificate",
                        path.display()
                    )));
                }
                roots
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = RootCertStore::empty();
                let (_added, _unparsable) = roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(bad(
                        "the system trust store holds no usable CA certificate; set tls.ca_file"
                            .into(),
                    ));
                }
                roots
            }
        };
        let versions: &[&'static rustls::SupportedProtocolVersion] = match cfg.min_version {
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![if http2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            name,
            http2,
        })
    }

    /// The TLS handshake over a connected socket; the certificate and the protocol are checked
    /// before any request byte is written.
    pub async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, UpstreamError> {
        let stream = self
            .connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| UpstreamError::Tls(format!("handshake with {:?}: {e}", self.name)))?;
        if self.http2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(UpstreamError::Tls(
                "the upstream did not agree to HTTP/2 (ALPN h2); set http2 = false".into(),
            ));
        }
        Ok(stream)
    }
}
