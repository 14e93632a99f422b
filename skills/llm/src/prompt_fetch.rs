//! Fetching the prompt of an oracle request made by hash and URI
//! (`InferenceOracle.requestByHash`): [`PromptFetch`].
//!
//! The URI is the requester's, so the fetch is hostile input's: only `data:`,
//! `http(s)://` and, through a configured gateway, `ipfs://` URIs are fetched; a host
//! that resolves to a loopback, private, link-local or otherwise non-public address is
//! refused (unless allowed, for tests and private deployments), and the connection
//! goes to the very addresses that were checked; redirects are not followed; the body
//! is bounded in size and time. The caller checks the bytes against the request's
//! prompt hash.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

/// Most bytes a fetched prompt may have.
pub const MAX_PROMPT_FETCH_BYTES: usize = 64 * 1024;

/// The environment variable naming the IPFS HTTP gateway for `ipfs://` prompt URIs
/// (e.g. `http://127.0.0.1:8080`, a local node's gateway).
pub const IPFS_GATEWAY_ENV: &str = "AGORA_IPFS_GATEWAY";

/// How prompts given by URI are fetched (see the module's documentation).
#[derive(Clone, Debug)]
pub struct PromptFetch {
    ipfs_gateway: Option<Url>,
    allow_private: bool,
    timeout: Duration,
    max_bytes: usize,
}

impl Default for PromptFetch {
    fn default() -> Self {
        Self::new()
    }
}

impl PromptFetch {
    /// `data:` and `http(s)://` URIs of public hosts, 10 s and
    /// [`MAX_PROMPT_FETCH_BYTES`] at most; `ipfs://` URIs through the gateway named by
    /// [`IPFS_GATEWAY_ENV`], when it is set to a URL.
    pub fn new() -> Self {
        Self {
            ipfs_gateway: std::env::var(IPFS_GATEWAY_ENV)
                .ok()
                .and_then(|g| Url::parse(&g).ok()),
            allow_private: false,
            timeout: Duration::from_secs(10),
            max_bytes: MAX_PROMPT_FETCH_BYTES,
        }
    }

    /// Fetches `ipfs://CID/path` as `GATEWAY/ipfs/CID/path`.
    #[must_use]
    pub fn with_ipfs_gateway(mut self, gateway: Url) -> Self {
        self.ipfs_gateway = Some(gateway);
        self
    }

    /// Also fetches from hosts on loopback, private and link-local addresses (a test,
    /// or a deployment whose prompts live on its own network).
    #[must_use]
    pub fn allow_private_hosts(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    /// The bytes at `uri`.
    ///
    /// # Errors
    /// What stopped the fetch, in words: an unsupported scheme, a non-public host, a
    /// status other than 200, a body over the limit, a timeout.
    pub async fn fetch(&self, uri: &str) -> Result<Vec<u8>, String> {
        if uri.starts_with("data:") {
            let data =
                data_url::DataUrl::process(uri).map_err(|e| format!("a bad data URI: {e:?}"))?;
            let (body, _) = data
                .decode_to_vec()
                .map_err(|e| format!("a bad data URI body: {e:?}"))?;
            return self.bounded(body);
        }
        let parsed = Url::parse(uri).map_err(|e| format!("not a URI: {e}"))?;
        let url = match parsed.scheme() {
            "http" | "https" => parsed,
            "ipfs" => {
                let gateway = self.ipfs_gateway.as_ref().ok_or_else(|| {
                    format!("ipfs:// URIs need a gateway; set {IPFS_GATEWAY_ENV}")
                })?;
                let cid = parsed.host_str().unwrap_or_default();
                gateway
                    .join(&format!("ipfs/{cid}{}", parsed.path()))
                    .map_err(|e| format!("the gateway URL: {e}"))?
            }
            other => {
                return Err(format!(
                    "{other}: URIs are not fetched (data, http, https, ipfs are)"
                ))
            }
        };
        let host = url.host_str().ok_or("the URI has no host")?.to_owned();
        let port = url.port_or_known_default().ok_or("the URI has no port")?;
        let lookup =
            tokio::time::timeout(self.timeout, tokio::net::lookup_host((host.as_str(), port)))
                .await
                .map_err(|_| format!("resolving {host} timed out"))?
                .map_err(|e| format!("resolving {host}: {e}"))?;
        let addrs: Vec<SocketAddr> = lookup.collect();
        if addrs.is_empty() {
            return Err(format!("{host} resolves to no address"));
        }
        if !self.allow_private {
            if let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(format!(
                    "{host} resolves to {}, which is not a public address",
                    a.ip()
                ));
            }
        }
        // Connect to the addresses checked, not to a second lookup's.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .resolve_to_addrs(&host, &addrs)
            .build()
            .map_err(|e| format!("the HTTP client: {e}"))?;
        let mut response = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("fetching it: {e}"))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("the server answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading it: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > self.max_bytes {
                break;
            }
        }
        self.bounded(body)
    }

    fn bounded(&self, body: Vec<u8>) -> Result<Vec<u8>, String> {
        if body.len() > self.max_bytes {
            return Err(format!(
                "it is more than {} bytes, the most a prompt may be",
                self.max_bytes
            ));
        }
        Ok(body)
    }
}

/// Whether `ip` is a public unicast address: not loopback, unspecified, private,
/// shared (100.64/10), link-local, broadcast, documentation, multicast or unique
/// local; an IPv4-mapped IPv6 address is judged as its IPv4 address.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || (a == 100 && (64..128).contains(&b))
                || a == 0)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn data_uris_decode_and_other_schemes_and_private_hosts_are_refused() {
        let fetch = PromptFetch::new();
        assert_eq!(
            fetch
                .fetch("data:text/plain,The%20capital%20of")
                .await
                .unwrap(),
            b"The capital of"
        );
        assert_eq!(fetch.fetch("data:;base64,SGk=").await.unwrap(), b"Hi");
        let err = fetch.fetch("file:///etc/passwd").await.unwrap_err();
        assert!(err.contains("not fetched"), "{err}");
        let err = fetch.fetch("http://127.0.0.1:9/prompt").await.unwrap_err();
        assert!(err.contains("not a public address"), "{err}");
        let err = fetch
            .clone()
            .with_ipfs_gateway(Url::parse("http://127.0.0.1:8080/").unwrap())
            .fetch("ipfs://bafy/prompt.txt")
            .await
            .unwrap_err();
        assert!(err.contains("not a public address"), "{err}");
        let big = format!("data:,{}", "a".repeat(MAX_PROMPT_FETCH_BYTES + 1));
        assert!(fetch.fetch(&big).await.unwrap_err().contains("more than"));
    }
}
