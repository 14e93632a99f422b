//! ERC-8004 registration files: the JSON an agent's `agentURI` resolves to.
//!
//! [`registration_file`] builds an Agora agent's file from plain inputs: its A2A card,
//! its payment wallet and its x402 resources as `services`, and its identity under
//! `registrations`. [`RegistrationFile::to_data_uri`] turns it into the base64 `data:`
//! URI ERC-8004 recommends for fully on-chain files; a host serves the same JSON at a
//! URL (and at `/.well-known/agent-registration.json` as the EIP's domain proof).
//!
//! ```
//! use registry::erc8004::{registration_file, AgentRegistration, RegistrationFile};
//!
//! let file = registration_file(&AgentRegistration {
//!     name: "weather-1".into(),
//!     description: "Forecasts for any city".into(),
//!     base_url: "http://127.0.0.1:7411".into(),
//!     x402_skills: vec!["weather.forecast".into()],
//!     chain_id: 1337,
//!     wallet: wallets::Address([0x11; 20]),
//!     identity_registry: wallets::Address([0x22; 20]),
//!     agent_id: Some(0),
//!     ..AgentRegistration::default()
//! });
//! assert_eq!(file.services[0].endpoint, "http://127.0.0.1:7411/.well-known/agent-card.json");
//! let uri = file.to_data_uri()?;
//! assert_eq!(RegistrationFile::from_data_uri(&uri)?, file);
//! # Ok::<(), registry::erc8004::RegistrationError>(())
//! ```

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The `type` of an ERC-8004 registration file.
pub const REGISTRATION_V1: &str = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1";

/// The prefix of a registration file as a base64 `data:` URI.
pub const DATA_URI_PREFIX: &str = "data:application/json;base64,";

/// Where an A2A agent card is served, below an agent's base URL.
pub const AGENT_CARD_PATH: &str = "/.well-known/agent-card.json";

/// Errors of registration files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The URI is not a base64 JSON `data:` URI.
    #[error("not a {DATA_URI_PREFIX} URI")]
    NotDataUri,
    /// The base64 does not decode.
    #[error("registration file base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The JSON is not a registration file.
    #[error("registration file JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// An ERC-8004 registration file (registration-v1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationFile {
    /// [`REGISTRATION_V1`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The agent's name.
    pub name: String,
    /// What it does, in natural language.
    pub description: String,
    /// A picture of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How to reach it: A2A card, wallet, x402 resources, ...
    #[serde(default)]
    pub services: Vec<ServiceEntry>,
    /// Whether it takes x402 payments.
    #[serde(default)]
    pub x402_support: bool,
    /// Whether it is in service.
    #[serde(default)]
    pub active: bool,
    /// Its identities in ERC-8004 identity registries.
    #[serde(default)]
    pub registrations: Vec<Registration>,
    /// The trust models it supports ("reputation", "crypto-economic", ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_trust: Vec<String>,
    /// Fields of other writers, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One entry of `services`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntry {
    /// The kind of service: "A2A", "MCP", "agentWallet", "x402", ...
    pub name: String,
    /// Where or what it is.
    pub endpoint: String,
    /// The protocol version, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Fields of other writers (`capabilities`, `skills`, ...), kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ServiceEntry {
    fn new(name: &str, endpoint: String, version: Option<&str>) -> Self {
        Self {
            name: name.into(),
            endpoint,
            version: version.map(Into::into),
            extra: serde_json::Map::new(),
        }
    }
}

/// One entry of `registrations`: an identity in an ERC-8004 identity registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// The agent id (the registry's ERC-721 token id).
    pub agent_id: u64,
    /// The registry, as `eip155:<chain id>:<address>` ([`agent_registry_id`]).
    pub agent_registry: String,
}

/// What [`registration_file`] needs to know about an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRegistration {
    /// The agent's name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// A picture of it (none when `None`).
    pub image: Option<String>,
    /// The agent's HTTP base URL (its A2A card is at `base_url` +
    /// [`AGENT_CARD_PATH`], its x402 resources at `base_url/x402/<skill>`); a
    /// trailing `/` is ignored.
    pub base_url: String,
    /// Whether it serves A2A (its card at `base_url` + [`AGENT_CARD_PATH`]); an agent
    /// that does not lists no `A2A` service.
    pub a2a: bool,
    /// The skills it sells over x402 (none: no x402 entries, `x402Support` false).
    pub x402_skills: Vec<String>,
    /// The chain its wallet and identity are on.
    pub chain_id: u64,
    /// Its payment wallet.
    pub wallet: wallets::Address,
    /// The ERC-8004 identity registry.
    pub identity_registry: wallets::Address,
    /// Its agent id there; `None` before it has one (no `registrations` then).
    pub agent_id: Option<u64>,
    /// Whether it is in service.
    pub active: bool,
}

impl Default for AgentRegistration {
    fn default() -> Self {
        Self {
            name: String::new(),
            description: String::new(),
            image: None,
            base_url: String::new(),
            a2a: true,
            x402_skills: Vec::new(),
            chain_id: 0,
            wallet: wallets::Address([0; 20]),
            identity_registry: wallets::Address([0; 20]),
            agent_id: None,
            active: true,
        }
    }
}

/// `eip155:<chain id>:<address>`, the CAIP-10 form ERC-8004 names registries and
/// wallets by (address EIP-55 checksummed).
pub fn agent_registry_id(chain_id: u64, address: wallets::Address) -> String {
    format!("eip155:{chain_id}:{address}")
}

/// An Agora agent's registration file:
///
/// - `services`: `A2A` (the card at `base_url` + [`AGENT_CARD_PATH`], version "1.0"),
///   when it serves A2A; `agentWallet` (`eip155:<chain id>:<wallet>`); and one `x402`
///   entry per skill sold over x402 (`base_url/x402/<skill>`, version "2");
/// - `x402Support` when it sells over x402, `active` as given;
/// - `registrations`: its identity, when it has an id;
/// - `supportedTrust`: "reputation" (payment-backed feedback through `SettledFeedback`)
///   and "crypto-economic" (escrow, stake and slashing).
pub fn registration_file(agent: &AgentRegistration) -> RegistrationFile {
    let base = agent.base_url.trim_end_matches('/');
    let mut services = Vec::new();
    if agent.a2a {
        services.push(ServiceEntry::new(
            "A2A",
            format!("{base}{AGENT_CARD_PATH}"),
            Some("1.0"),
        ));
    }
    services.push(ServiceEntry::new(
        "agentWallet",
        agent_registry_id(agent.chain_id, agent.wallet),
        None,
    ));
    services.extend(
        agent
            .x402_skills
            .iter()
            .map(|skill| ServiceEntry::new("x402", format!("{base}/x402/{skill}"), Some("2"))),
    );
    RegistrationFile {
        kind: REGISTRATION_V1.into(),
        name: agent.name.clone(),
        description: agent.description.clone(),
        image: agent.image.clone(),
        services,
        x402_support: !agent.x402_skills.is_empty(),
        active: agent.active,
        registrations: agent
            .agent_id
            .map(|agent_id| Registration {
                agent_id,
                agent_registry: agent_registry_id(agent.chain_id, agent.identity_registry),
            })
            .into_iter()
            .collect(),
        supported_trust: vec!["reputation".into(), "crypto-economic".into()],
        extra: serde_json::Map::new(),
    }
}

impl RegistrationFile {
    /// The file as compact JSON.
    ///
    /// # Errors
    /// [`RegistrationError::Json`] if an extension field does not serialize.
    pub fn to_json(&self) -> Result<String, RegistrationError> {
        Ok(serde_json::to_string(self)?)
    }

    /// The file as a `data:application/json;base64,` URI (standard base64 with
    /// padding), for an on-chain `agentURI`.
    ///
    /// # Errors
    /// As [`RegistrationFile::to_json`].
    pub fn to_data_uri(&self) -> Result<String, RegistrationError> {
        let json = self.to_json()?;
        Ok(format!(
            "{DATA_URI_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(json)
        ))
    }

    /// Reads a file back from a `data:application/json;base64,` URI.
    ///
    /// # Errors
    /// [`RegistrationError`] when the URI is not such a URI or does not hold a
    /// registration file.
    pub fn from_data_uri(uri: &str) -> Result<Self, RegistrationError> {
        let b64 = uri
            .strip_prefix(DATA_URI_PREFIX)
            .ok_or(RegistrationError::NotDataUri)?;
        let json = base64::engine::general_purpose::STANDARD.decode(b64)?;
        Ok(serde_json::from_slice(&json)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> AgentRegistration {
        AgentRegistration {
            name: "weather-1".into(),
            description: "Forecasts for any city".into(),
            base_url: "http://127.0.0.1:7411/".into(),
            x402_skills: vec!["weather.forecast".into()],
            chain_id: 1337,
            wallet: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
                .parse()
                .unwrap(),
            identity_registry: "0x5FbDB2315678afecb367f032d93F642f64180aa3"
                .parse()
                .unwrap(),
            agent_id: Some(0),
            ..AgentRegistration::default()
        }
    }

    /// The shape of the example in INTEROP.md (and the EIP): the same keys, in the
    /// same places, with our values.
    #[test]
    fn matches_the_interop_example_shape() {
        let example: serde_json::Value = serde_json::from_str(
            r#"{"type":"https://eips.ethereum.org/EIPS/eip-8004#registration-v1","name":"…","description":"…","image":"…",
             "services":[{"name":"A2A","endpoint":"http://…/.well-known/agent-card.json","version":"1.0"},
                         {"name":"agentWallet","endpoint":"eip155:1337:0x…"}],
             "x402Support":true,"active":true,
             "registrations":[{"agentId":0,"agentRegistry":"eip155:1337:0x<IdentityRegistry>"}],
             "supportedTrust":["reputation","crypto-economic"]}"#,
        )
        .unwrap();
        let ours = serde_json::to_value(registration_file(&AgentRegistration {
            image: Some("http://127.0.0.1:7411/logo.png".into()),
            ..weather()
        }))
        .unwrap();

        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&ours), keys(&example));
        for i in 0..2 {
            assert_eq!(
                keys(&ours["services"][i]),
                keys(&example["services"][i]),
                "service {i}"
            );
            assert_eq!(ours["services"][i]["name"], example["services"][i]["name"]);
        }
        assert_eq!(
            keys(&ours["registrations"][0]),
            keys(&example["registrations"][0])
        );
        assert_eq!(ours["type"], example["type"]);
        assert_eq!(ours["supportedTrust"], example["supportedTrust"]);
        assert_eq!(ours["x402Support"], true);
        assert_eq!(ours["active"], true);
        assert_eq!(ours["registrations"][0]["agentId"], 0);
        assert!(
            ours["registrations"][0]["agentId"].is_u64(),
            "a JSON number"
        );

        assert_eq!(
            ours["services"],
            serde_json::json!([
                {"name": "A2A", "endpoint": "http://127.0.0.1:7411/.well-known/agent-card.json", "version": "1.0"},
                {"name": "agentWallet", "endpoint": "eip155:1337:0x70997970C51812dc3A010C7d01b50e0d17dc79C8"},
                {"name": "x402", "endpoint": "http://127.0.0.1:7411/x402/weather.forecast", "version": "2"}
            ])
        );
        assert_eq!(
            ours["registrations"],
            serde_json::json!([{"agentId": 0, "agentRegistry": "eip155:1337:0x5FbDB2315678afecb367f032d93F642f64180aa3"}])
        );
    }

    #[test]
    fn without_an_id_or_x402() {
        let file = registration_file(&AgentRegistration {
            agent_id: None,
            x402_skills: vec![],
            active: false,
            ..weather()
        });
        assert!(file.registrations.is_empty());
        assert!(!file.x402_support);
        assert!(!file.active);
        assert_eq!(file.services.len(), 2);
        let json = serde_json::to_value(&file).unwrap();
        assert!(json.get("image").is_none(), "no image key: {json}");
    }

    #[test]
    fn an_agent_without_a2a_lists_only_its_wallet() {
        let file = registration_file(&AgentRegistration {
            a2a: false,
            x402_skills: vec![],
            ..weather()
        });
        let names: Vec<&str> = file.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["agentWallet"]);
    }

    #[test]
    fn data_uri_round_trips_and_keeps_unknown_fields() {
        let mut file = registration_file(&weather());
        file.extra
            .insert("endpoints".into(), serde_json::json!([{"name": "old"}]));
        let uri = file.to_data_uri().unwrap();
        assert!(uri.starts_with("data:application/json;base64,eyJ"), "{uri}");
        assert_eq!(RegistrationFile::from_data_uri(&uri).unwrap(), file);
        assert!(matches!(
            RegistrationFile::from_data_uri("https://a/agent.json"),
            Err(RegistrationError::NotDataUri)
        ));
        assert!(matches!(
            RegistrationFile::from_data_uri("data:application/json;base64,!!"),
            Err(RegistrationError::Base64(_))
        ));
    }
}
