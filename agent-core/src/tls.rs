//! TLS for the WebSocket transport (rustls): `wss://` endpoints.
//!
//! A host serves TLS when its [`HostConfig`](crate::HostConfig) has a
//! [`ServerTls`] (certificate chain and key in PEM); it dials `wss://` endpoints
//! with a [`ClientTls`], which trusts the web PKI roots and any extra roots given
//! (a private CA, or a self-signed certificate for a test). Over TLS the port
//! serves what it serves in the clear (WebSocket upgrades, the host's HTTP routes
//! and mounted gateways, see [`http`](crate::http)), after the handshake.

use std::sync::Arc;

use tokio_rustls::rustls::{self, Certificate, OwnedTrustAnchor, PrivateKey, RootCertStore};

use crate::error::{Error, Result};

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Host(format!("TLS {what}: {e}"))
}

/// The server side: a certificate chain and its private key.
#[derive(Clone)]
pub struct ServerTls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls { .. }")
    }
}

impl ServerTls {
    /// From PEM: the certificate chain (leaf first) and a PKCS#8, RSA or SEC1 key.
    ///
    /// # Errors
    /// [`Error::Host`] naming what is missing or invalid (never the key's bytes).
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self> {
        let certs: Vec<Certificate> = rustls_pemfile::certs(&mut &*cert_chain)
            .map_err(|e| tls_err("certificate PEM", e))?
            .into_iter()
            .map(Certificate)
            .collect();
        if certs.is_empty() {
            return Err(tls_err("certificate PEM", "no CERTIFICATE block found"));
        }
        let key = rustls_pemfile::read_all(&mut &*key)
            .map_err(|e| tls_err("key PEM", e))?
            .into_iter()
            .find_map(|item| match item {
                rustls_pemfile::Item::PKCS8Key(k)
                | rustls_pemfile::Item::RSAKey(k)
                | rustls_pemfile::Item::ECKey(k) => Some(PrivateKey(k)),
                _ => None,
            })
            .ok_or_else(|| tls_err("key PEM", "no PRIVATE KEY block found"))?;
        let config = rustls::ServerConfig::builder()
            .with_safe_defaults()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| tls_err("server certificate", e))?;
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// The client side: which roots to trust for `wss://` endpoints.
#[derive(Clone)]
pub struct ClientTls {
    pub(crate) connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls { .. }")
    }
}

impl Default for ClientTls {
    fn default() -> Self {
        Self::build(web_pki_roots())
    }
}

fn web_pki_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_trust_anchors(webpki_roots::TLS_SERVER_ROOTS.iter().map(|ta| {
        OwnedTrustAnchor::from_subject_spki_name_constraints(
            ta.subject,
            ta.spki,
            ta.name_constraints,
        )
    }));
    roots
}

impl ClientTls {
    fn build(roots: RootCertStore) -> Self {
        let config = rustls::ClientConfig::builder()
            .with_safe_defaults()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// The web PKI roots plus the certificates in `pem` (a private CA, or a
    /// self-signed peer).
    ///
    /// # Errors
    /// [`Error::Host`] when `pem` holds no usable certificate.
    pub fn with_extra_roots_pem(pem: &[u8]) -> Result<Self> {
        let mut roots = web_pki_roots();
        let ders = rustls_pemfile::certs(&mut &*pem).map_err(|e| tls_err("root PEM", e))?;
        if ders.is_empty() {
            return Err(tls_err("root PEM", "no CERTIFICATE block found"));
        }
        for der in ders {
            roots
                .add(&Certificate(der))
                .map_err(|e| tls_err("root certificate", e))?;
        }
        Ok(Self::build(roots))
    }
}

/// The server name to check a `wss://host:port/...` endpoint's certificate against.
pub(crate) fn server_name(url: &str) -> Result<(rustls::ServerName, String)> {
    let rest = url
        .strip_prefix("wss://")
        .ok_or_else(|| tls_err("endpoint", format!("{url} is not a wss:// URL")))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(443);
    let name = rustls::ServerName::try_from(host)
        .map_err(|e| tls_err("endpoint host", format!("{host}: {e}")))?;
    Ok((name, format!("{host}:{port}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_and_addresses_from_urls() {
        let (_, addr) = server_name("wss://localhost:7400/agents").unwrap();
        assert_eq!(addr, "localhost:7400");
        let (_, addr) = server_name("wss://agents.invalid").unwrap();
        assert_eq!(addr, "agents.invalid:443");
        assert!(server_name("ws://localhost:1").is_err());
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let err = ServerTls::from_pem(b"nope", b"nope").unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
        let err = ClientTls::with_extra_roots_pem(b"").unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    }
}
