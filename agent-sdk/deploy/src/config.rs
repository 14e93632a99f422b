//! `agents.toml`: the deployment's network and agents.
//!
//! Two phases, as ripgrep does with its arguments: the file is parsed into a
//! `RawConfig` (serde, unknown keys refused, every value with its byte span), then
//! validation turns it into a typed [`Config`] ([`Config::parse`]). Every error names the
//! file, the line and column, and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use wallets::{Address, Amount, Limits, Mandate};

/// Skills an agent can run.
pub const KNOWN_SKILLS: &[&str] = &["llm", "travel", "weather"];

/// The services of the `llm` skill an agent can sell (one of them).
pub const LLM_SERVICES: &[&str] = &["llm.complete", "llm.extract"];

/// A configuration error: where and what.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// 1-based column (0 when the file could not be read).
    pub column: usize,
    /// The key, dotted (`agents.travel.policy.daily`), or `(file)`, `(top level)`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.key,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    network: Spanned<RawNetwork>,
    #[serde(default)]
    agents: BTreeMap<Spanned<String>, Spanned<RawAgent>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    chain_id: Option<Spanned<u64>>,
    data_dir: Option<Spanned<String>>,
    max_tx_fee_gwei: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    keystore: Spanned<String>,
    password_env: Spanned<String>,
    listen: Spanned<String>,
    skills: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    services: Vec<Spanned<RawService>>,
    #[serde(default)]
    policy: Option<Spanned<RawPolicy>>,
    #[serde(default)]
    principals: BTreeMap<Spanned<String>, Spanned<RawPrincipal>>,
    model: Option<Spanned<String>>,
    oracle: Option<Spanned<bool>>,
}

/// A principal of an agent: who may commission paid work, under which mandate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    address: Spanned<String>,
    skills: Spanned<Vec<Spanned<String>>>,
    max_per_request: Spanned<String>,
    daily: Option<Spanned<String>>,
    valid_from: Option<Spanned<String>>,
    valid_until: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    skill: Spanned<String>,
    price: Spanned<String>,
    unit: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    per_deal: Option<Spanned<String>>,
    per_peer_daily: Option<Spanned<String>>,
    daily: Option<Spanned<String>>,
    allow: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    valid_from: Option<Spanned<String>>,
    valid_until: Option<Spanned<String>>,
    max_payments_daily: Option<Spanned<u32>>,
}

/// Which chain the agents use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    /// The in-process devnet, persisted under `data_dir`.
    Embedded {
        /// Chain data directory.
        data_dir: PathBuf,
        /// Chain id.
        chain_id: u64,
    },
    /// A node by URL.
    Rpc {
        /// JSON-RPC URL.
        url: String,
        /// The chain id the node must report.
        chain_id: u64,
    },
}

/// A service an agent sells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The request kind it sells, e.g. `weather.forecast`.
    pub skill: String,
    /// Its listed price.
    pub price: Amount,
    /// What one purchase buys, e.g. `forecast`.
    pub unit: String,
}

/// One agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// Its name: the key of its `[agents.NAME]` table.
    pub name: String,
    /// Its keystore, relative to the config file's directory.
    pub keystore: PathBuf,
    /// The environment variable that holds the keystore's password.
    pub password_env: String,
    /// Where its host listens.
    pub listen: SocketAddr,
    /// Its skill families (among [`KNOWN_SKILLS`]).
    pub skills: BTreeSet<String>,
    /// What it sells, at which price.
    pub services: Vec<ServiceConfig>,
    /// Its spending policy's limits.
    pub policy: Limits,
    /// Who may commission paid work from this agent (by address), under which mandate.
    pub principals: BTreeMap<Address, Mandate>,
    /// Its model file (relative to the config file's directory), for LLM skills.
    pub model: Option<PathBuf>,
    /// Whether it fulfils the `InferenceOracle`'s requests for its model (an LLM
    /// seller only).
    pub oracle: bool,
}

/// A validated `agents.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The chain.
    pub network: Network,
    /// The most one transaction of an agent may cost in fees (`max_fee_per_gas ×
    /// gas_limit`), in wei; `network.max_tx_fee_gwei`, else the registry's default.
    pub max_tx_fee_wei: u128,
    /// The agents, by name.
    pub agents: Vec<AgentConfig>,
}

/// Turns byte spans into line/column errors for one file.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let before = self.text.get(..span.start).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }

    /// The key written on the line of `span`, for parse errors that carry none: the
    /// key of a `key = value` line, the table of a `[table]` line, and for any other
    /// line (blank, a comment, the end of the file) the table it is in, or
    /// `(top level)`.
    fn key_on_line(&self, span: &Range<usize>) -> String {
        let start = self
            .text
            .get(..span.start)
            .and_then(|b| b.rfind('\n'))
            .map_or(0, |i| i + 1);
        let line = self
            .text
            .get(start..)
            .and_then(|l| l.lines().next())
            .unwrap_or_default()
            .trim();
        let table = |header: &str| {
            let name = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default();
            Some(name.trim().to_owned()).filter(|n| !n.is_empty())
        };
        let key = if line.starts_with('#') {
            None
        } else if line.starts_with('[') {
            table(line)
        } else {
            line.split_once('=')
                .map(|(key, _)| key.trim().to_owned())
                .filter(|k| !k.is_empty())
        };
        key.or_else(|| {
            let before = self.text.get(..start).unwrap_or_default();
            before
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| l.starts_with('['))
                .and_then(table)
        })
        .unwrap_or_else(|| "(top level)".to_owned())
    }

    /// What to say about a parse error that toml gives no message for (a character
    /// it does not allow, in a comment for example): the character at `span`.
    fn unexpected(&self, span: &Range<usize>) -> String {
        match self
            .text
            .get(span.start..)
            .and_then(|rest| rest.chars().next())
        {
            Some(c) => format!("{c:?} is not valid TOML here"),
            None => "the file ends where TOML expects more".to_owned(),
        }
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            key: "(file)".into(),
            message: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text` as the contents of `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let src = Source { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let key = src.key_on_line(&span);
            let message = match e.message().trim() {
                "" => src.unexpected(&span),
                m => m.to_owned(),
            };
            src.error(span, key, message)
        })?;
        Self::validate(&src, raw)
    }

    fn validate(src: &Source<'_>, raw: RawConfig) -> Result<Self, ConfigError> {
        let net = raw.network.get_ref();
        let network = match net.kind.get_ref().as_str() {
            "embedded" => {
                if let Some(url) = &net.url {
                    return Err(src.error(
                        url.span(),
                        "network.url",
                        "an embedded network takes no url; use kind = \"rpc\" for a node",
                    ));
                }
                Network::Embedded {
                    data_dir: net.data_dir.as_ref().map_or_else(
                        || PathBuf::from(".agora/chain"),
                        |d| PathBuf::from(d.get_ref()),
                    ),
                    chain_id: net
                        .chain_id
                        .as_ref()
                        .map_or(registry_default_chain_id(), |c| *c.get_ref()),
                }
            }
            "rpc" => {
                let url = net.url.as_ref().ok_or_else(|| {
                    src.error(
                        raw.network.span(),
                        "network.url",
                        "kind = \"rpc\" needs a url",
                    )
                })?;
                let u = url.get_ref();
                if !(u.starts_with("http://")
                    || u.starts_with("https://")
                    || u.starts_with("ws://")
                    || u.starts_with("wss://"))
                {
                    return Err(src.error(
                        url.span(),
                        "network.url",
                        format!("{u:?} is not an http(s) or ws(s) URL"),
                    ));
                }
                let chain_id = net.chain_id.as_ref().ok_or_else(|| {
                    src.error(
                        raw.network.span(),
                        "network.chain_id",
                        "kind = \"rpc\" needs the chain_id the node must report",
                    )
                })?;
                if *chain_id.get_ref() == 0 {
                    return Err(src.error(
                        chain_id.span(),
                        "network.chain_id",
                        "chain id 0 is not a chain",
                    ));
                }
                Network::Rpc {
                    url: u.clone(),
                    chain_id: *chain_id.get_ref(),
                }
            }
            other => {
                return Err(src.error(
                    net.kind.span(),
                    "network.kind",
                    format!("{other:?} is not a network kind; expected \"embedded\" or \"rpc\""),
                ))
            }
        };

        let max_tx_fee_wei = match &net.max_tx_fee_gwei {
            None => registry::chain::DEFAULT_MAX_TX_FEE_WEI,
            Some(g) if *g.get_ref() == 0 => {
                return Err(src.error(
                    g.span(),
                    "network.max_tx_fee_gwei",
                    "a fee cap of zero allows no transaction",
                ))
            }
            Some(g) => u128::from(*g.get_ref()) * 1_000_000_000,
        };
        if raw.agents.is_empty() {
            return Err(src.error(
                0..0,
                "agents",
                "no agents are declared; add an [agents.NAME] table",
            ));
        }
        let mut agents = Vec::new();
        let mut listens: BTreeMap<SocketAddr, String> = BTreeMap::new();
        for (name, agent) in raw.agents {
            let key = |k: &str| format!("agents.{}.{k}", name.get_ref());
            if name.get_ref().is_empty()
                || !name
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(src.error(
                    name.span(),
                    format!("agents.{}", name.get_ref()),
                    "agent names use letters, digits, '-' and '_'",
                ));
            }
            let a = agent.into_inner();
            if a.keystore.get_ref().trim().is_empty() {
                return Err(src.error(
                    a.keystore.span(),
                    key("keystore"),
                    "the keystore path is empty",
                ));
            }
            let env = a.password_env.get_ref();
            if env.is_empty()
                || !env
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(src.error(a.password_env.span(), key("password_env"), format!("{env:?} is not an environment variable name (A-Z, 0-9, _); the password itself never goes in this file")));
            }
            let listen: SocketAddr = a.listen.get_ref().parse().map_err(|_| {
                src.error(
                    a.listen.span(),
                    key("listen"),
                    format!(
                        "{:?} is not an address like 127.0.0.1:7401",
                        a.listen.get_ref()
                    ),
                )
            })?;
            if let Some(other) = listens.insert(listen, name.get_ref().clone()) {
                if listen.port() != 0 {
                    return Err(src.error(
                        a.listen.span(),
                        key("listen"),
                        format!("{listen} is also agent {other:?}'s address"),
                    ));
                }
            }
            let mut skills = BTreeSet::new();
            for s in a.skills.get_ref() {
                if !KNOWN_SKILLS.contains(&s.get_ref().as_str()) {
                    return Err(src.error(
                        s.span(),
                        key("skills"),
                        format!(
                            "unknown skill {:?}; known: {}",
                            s.get_ref(),
                            KNOWN_SKILLS.join(", ")
                        ),
                    ));
                }
                skills.insert(s.get_ref().clone());
            }
            if skills.is_empty() {
                return Err(src.error(
                    a.skills.span(),
                    key("skills"),
                    "an agent needs at least one skill",
                ));
            }
            let mut services: Vec<ServiceConfig> = Vec::new();
            for s in a.services {
                let s = s.into_inner();
                let tag = s.skill.get_ref();
                let family = tag.split('.').next().unwrap_or_default();
                if tag.is_empty() || tag.len() > 32 {
                    return Err(src.error(
                        s.skill.span(),
                        key("services.skill"),
                        format!("{tag:?} must be 1 to 32 bytes"),
                    ));
                }
                if !skills.contains(family) {
                    return Err(src.error(
                        s.skill.span(),
                        key("services.skill"),
                        format!(
                            "{tag:?} needs the {family:?} skill, which this agent does not run"
                        ),
                    ));
                }
                if family == "llm" && !LLM_SERVICES.contains(&tag.as_str()) {
                    return Err(src.error(
                        s.skill.span(),
                        key("services.skill"),
                        format!(
                            "{tag:?} is not an LLM service; sell one of {}",
                            LLM_SERVICES.join(", ")
                        ),
                    ));
                }
                if let Some(first) = services.first() {
                    return Err(src.error(
                        s.skill.span(),
                        key("services.skill"),
                        format!(
                            "an agent sells one service (it already sells {:?}); run another \
                             agent for {tag:?}",
                            first.skill
                        ),
                    ));
                }
                let price: Amount = s.price.get_ref().parse().map_err(|e: wallets::Error| {
                    src.error(s.price.span(), key("services.price"), e.to_string())
                })?;
                if price.is_zero() {
                    return Err(src.error(
                        s.price.span(),
                        key("services.price"),
                        "a price of zero; give the service a price",
                    ));
                }
                if s.unit.get_ref().trim().is_empty() {
                    return Err(src.error(
                        s.unit.span(),
                        key("services.unit"),
                        "the unit is empty (e.g. \"forecast\")",
                    ));
                }
                services.push(ServiceConfig {
                    skill: tag.clone(),
                    price,
                    unit: s.unit.get_ref().clone(),
                });
            }
            let policy = match a.policy {
                None => Limits::default(),
                Some(p) => policy(src, &key("policy"), p.into_inner())?,
            };
            let mut principals = BTreeMap::new();
            for (pname, p) in a.principals {
                let pkey = key(&format!("principals.{}", pname.get_ref()));
                let (address, mandate) = principal(src, &pkey, p.into_inner())?;
                if principals.insert(address, mandate).is_some() {
                    return Err(src.error(
                        pname.span(),
                        pkey,
                        format!("{address} is listed as a principal twice"),
                    ));
                }
            }
            let oracle = match a.oracle {
                Some(o) if *o.get_ref() => {
                    if !services.iter().any(|s| s.skill.starts_with("llm.")) {
                        return Err(src.error(
                            o.span(),
                            key("oracle"),
                            "only an agent that sells an LLM service (llm.complete or \
                             llm.extract) serves the oracle",
                        ));
                    }
                    true
                }
                _ => false,
            };
            agents.push(AgentConfig {
                name: name.into_inner(),
                keystore: PathBuf::from(a.keystore.into_inner()),
                password_env: a.password_env.into_inner(),
                listen,
                skills,
                services,
                policy,
                principals,
                model: a.model.map(|m| PathBuf::from(m.into_inner())),
                oracle,
            });
        }
        Ok(Self {
            network,
            max_tx_fee_wei,
            agents,
        })
    }
}

fn registry_default_chain_id() -> u64 {
    registry::devnet::DEFAULT_CHAIN_ID
}

fn policy(src: &Source<'_>, key: &str, p: RawPolicy) -> Result<Limits, ConfigError> {
    let amount = |v: &Option<Spanned<String>>, name: &str| -> Result<Option<Amount>, ConfigError> {
        v.as_ref()
            .map(|s| {
                s.get_ref()
                    .parse::<Amount>()
                    .map_err(|e| src.error(s.span(), format!("{key}.{name}"), e.to_string()))
            })
            .transpose()
    };
    let address = |s: &Spanned<String>, name: &str| {
        Address::parse(s.get_ref())
            .map_err(|e| src.error(s.span(), format!("{key}.{name}"), e.to_string()))
    };
    let per_deal = amount(&p.per_deal, "per_deal")?;
    let per_peer_daily = amount(&p.per_peer_daily, "per_peer_daily")?;
    let daily = amount(&p.daily, "daily")?;
    if let (Some(deal), Some(day), Some(span)) =
        (per_deal, daily, p.per_deal.as_ref().map(Spanned::span))
    {
        if deal > day {
            return Err(src.error(
                span,
                format!("{key}.per_deal"),
                format!("{deal} per deal can never be spent within the daily limit of {day}"),
            ));
        }
    }
    let allow = match &p.allow {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|s| address(s, "allow"))
                .collect::<Result<BTreeSet<_>, _>>()?,
        ),
    };
    let mut deny = BTreeSet::new();
    for s in &p.deny {
        let a = address(s, "deny")?;
        if allow.as_ref().is_some_and(|al| al.contains(&a)) {
            return Err(src.error(
                s.span(),
                format!("{key}.deny"),
                format!("{a} is on both the allow-list and the deny-list"),
            ));
        }
        deny.insert(a);
    }
    let valid_from = time(src, key, "valid_from", p.valid_from.as_ref())?;
    let valid_until = time(src, key, "valid_until", p.valid_until.as_ref())?;
    window(src, key, valid_from, valid_until, p.valid_until.as_ref())?;
    Ok(Limits {
        per_deal,
        per_peer_daily,
        daily,
        allow,
        deny,
        valid_from,
        valid_until,
        max_payments_daily: p.max_payments_daily.map(Spanned::into_inner),
    })
}

/// An optional RFC 3339 time (`2027-01-01T00:00:00Z`) as unix seconds.
fn time(
    src: &Source<'_>,
    key: &str,
    name: &str,
    value: Option<&Spanned<String>>,
) -> Result<Option<u64>, ConfigError> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v.get_ref())
                .ok()
                .and_then(|t| u64::try_from(t.timestamp()).ok())
                .ok_or_else(|| {
                    src.error(
                        v.span(),
                        format!("{key}.{name}"),
                        format!(
                            "{:?} is not an RFC 3339 time like 2027-01-01T00:00:00Z",
                            v.get_ref()
                        ),
                    )
                })
        })
        .transpose()
}

/// A validity window must not end before it starts.
fn window(
    src: &Source<'_>,
    key: &str,
    from: Option<u64>,
    until: Option<u64>,
    until_span: Option<&Spanned<String>>,
) -> Result<(), ConfigError> {
    match (from, until, until_span) {
        (Some(from), Some(until), Some(span)) if until < from => Err(src.error(
            span.span(),
            format!("{key}.valid_until"),
            "the validity window ends before it starts",
        )),
        _ => Ok(()),
    }
}

/// A principal's address and mandate.
fn principal(
    src: &Source<'_>,
    key: &str,
    p: RawPrincipal,
) -> Result<(Address, Mandate), ConfigError> {
    let address = Address::parse(p.address.get_ref())
        .map_err(|e| src.error(p.address.span(), format!("{key}.address"), e.to_string()))?;
    let amount = |v: &Spanned<String>, name: &str| {
        v.get_ref()
            .parse::<Amount>()
            .map_err(|e| src.error(v.span(), format!("{key}.{name}"), e.to_string()))
    };
    let mut skills = BTreeSet::new();
    for s in p.skills.get_ref() {
        let tag = s.get_ref();
        if tag.is_empty() || !tag.contains('.') {
            return Err(src.error(
                s.span(),
                format!("{key}.skills"),
                format!("{tag:?} is not a request kind like \"travel.Plan\""),
            ));
        }
        skills.insert(tag.clone());
    }
    if skills.is_empty() {
        return Err(src.error(
            p.skills.span(),
            format!("{key}.skills"),
            "a mandate that allows no skill allows nothing; list the request kinds",
        ));
    }
    let max_per_request = amount(&p.max_per_request, "max_per_request")?;
    if max_per_request.is_zero() {
        return Err(src.error(
            p.max_per_request.span(),
            format!("{key}.max_per_request"),
            "a mandate of zero per request allows nothing",
        ));
    }
    let daily = p.daily.as_ref().map(|d| amount(d, "daily")).transpose()?;
    if let (Some(day), Some(span)) = (daily, p.daily.as_ref()) {
        if day < max_per_request {
            return Err(src.error(
                span.span(),
                format!("{key}.daily"),
                format!("a daily budget of {day} is below max_per_request ({max_per_request})"),
            ));
        }
    }
    let valid_from = time(src, key, "valid_from", p.valid_from.as_ref())?;
    let valid_until = time(src, key, "valid_until", p.valid_until.as_ref())?;
    window(src, key, valid_from, valid_until, p.valid_until.as_ref())?;
    Ok((
        address,
        Mandate {
            skills,
            max_per_request,
            daily,
            valid_from,
            valid_until,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuzz_support::proptest::prelude::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("agents.toml"), text)
    }

    const GOOD: &str = r#"
[network]
kind = "embedded"

[agents.travel]
keystore = ".agora/keystores/travel.json"
password_env = "AGORA_TRAVEL_PASSWORD"
listen = "127.0.0.1:7401"
skills = ["travel", "llm"]

[agents.travel.policy]
per_deal = "5 USDC"
daily = "25 USDC"

[agents.weather-a]
keystore = "w.json"
password_env = "AGORA_WEATHER_PASSWORD"
listen = "127.0.0.1:7411"
skills = ["weather"]
services = [{ skill = "weather.forecast", price = "1.20 USDC", unit = "forecast" }]
"#;

    #[test]
    fn the_repository_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents.toml");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.agents.len(), 5);
        let scribe = config.agents.iter().find(|a| a.name == "scribe").unwrap();
        assert!(scribe.oracle);
        assert_eq!(scribe.services[0].skill, "llm.complete");
        let travel = config.agents.iter().find(|a| a.name == "travel").unwrap();
        assert_eq!(travel.policy.per_deal, Some("5 USDC".parse().unwrap()));
        let weather: Vec<_> = config
            .agents
            .iter()
            .filter(|a| a.skills.contains("weather"))
            .collect();
        assert_eq!(weather.len(), 3);
    }

    #[test]
    fn a_good_file_parses() {
        let c = parse(GOOD).unwrap();
        assert!(matches!(
            c.network,
            Network::Embedded { chain_id: 1337, .. }
        ));
        assert_eq!(c.agents[1].services[0].price, "1.20".parse().unwrap());
    }

    /// Replaces `from` with `to` in the good file and returns the error.
    fn broken(from: &str, to: &str) -> ConfigError {
        assert!(GOOD.contains(from), "{from}");
        parse(&GOOD.replacen(from, to, 1)).unwrap_err()
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = broken(
            "per_deal = \"5 USDC\"",
            "per_deal = \"5 USDC\"\nper_dael = \"1 USDC\"",
        );
        assert_eq!(e.file, Path::new("agents.toml"));
        assert_eq!(e.line, line_of(GOOD, "per_deal") + 1);
        assert_eq!(e.key, "per_dael");
        assert!(e.message.contains("unknown field `per_dael`"), "{e}");
        assert!(e.to_string().starts_with("agents.toml:13:"), "{e}");
    }

    #[test]
    fn llm_sellers_sell_one_known_service_and_only_they_serve_the_oracle() {
        let llm = |extra: &str| {
            format!(
                "{GOOD}\n[agents.scribe]\nkeystore = \"s.json\"\npassword_env = \"P\"\n\
                 listen = \"127.0.0.1:7421\"\nskills = [\"llm\"]\n{extra}\n"
            )
        };
        let ok = llm("oracle = true\nservices = [{ skill = \"llm.extract\", price = \"0.03 USDC\", unit = \"extraction\" }]");
        let config = Config::parse(Path::new("agents.toml"), &ok).unwrap();
        let scribe = config.agents.iter().find(|a| a.name == "scribe").unwrap();
        assert!(scribe.oracle);
        for (extra, key, says) in [
            (
                "services = [{ skill = \"llm.summarize\", price = \"0.03 USDC\", unit = \"job\" }]",
                "agents.scribe.services.skill",
                "not an LLM service",
            ),
            (
                "services = [{ skill = \"llm.complete\", price = \"0.02 USDC\", unit = \"job\" }, \
                 { skill = \"llm.extract\", price = \"0.03 USDC\", unit = \"job\" }]",
                "agents.scribe.services.skill",
                "sells one service",
            ),
            (
                "oracle = true",
                "agents.scribe.oracle",
                "only an agent that sells",
            ),
        ] {
            let e = Config::parse(Path::new("agents.toml"), &llm(extra)).unwrap_err();
            assert_eq!(e.key, key, "{extra}: {e}");
            assert!(e.message.contains(says), "{extra}: {e}");
        }
        // `oracle = false` is the default, allowed anywhere.
        let off = GOOD.replace(
            "skills = [\"weather\"]",
            "skills = [\"weather\"]\noracle = false",
        );
        assert!(Config::parse(Path::new("agents.toml"), &off).is_ok());
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = broken("listen = \"127.0.0.1:7401\"", "listen = 7401");
        assert_eq!(e.line, line_of(GOOD, "7401"));
        assert_eq!(e.key, "listen");
        assert!(e.message.contains("invalid type"), "{e}");
    }

    #[test]
    fn impossible_values_name_their_key() {
        for (from, to, key, says) in [
            (
                "kind = \"embedded\"",
                "kind = \"ganache\"",
                "network.kind",
                "not a network kind",
            ),
            (
                "\"1.20 USDC\"",
                "\"1.20 EUR\"",
                "agents.weather-a.services.price",
                "unknown unit",
            ),
            (
                "\"1.20 USDC\"",
                "\"0 USDC\"",
                "agents.weather-a.services.price",
                "zero",
            ),
            (
                "127.0.0.1:7411",
                "127.0.0.1:7401",
                "agents.weather-a.listen",
                "also agent",
            ),
            (
                "127.0.0.1:7411",
                "localhost",
                "agents.weather-a.listen",
                "not an address",
            ),
            (
                "skills = [\"weather\"]",
                "skills = [\"wether\"]",
                "agents.weather-a.skills",
                "unknown skill",
            ),
            (
                "skill = \"weather.forecast\"",
                "skill = \"travel.plan\"",
                "agents.weather-a.services.skill",
                "does not run",
            ),
            (
                "daily = \"25 USDC\"",
                "daily = \"2 USDC\"",
                "agents.travel.policy.per_deal",
                "never be spent",
            ),
            (
                "AGORA_WEATHER_PASSWORD",
                "hunter2 is my password",
                "agents.weather-a.password_env",
                "not an environment variable",
            ),
        ] {
            let e = broken(from, to);
            assert_eq!(e.key, key, "{from} -> {to}: {e}");
            assert!(e.message.contains(says), "{from} -> {to}: {e}");
            // The error points at the edited value (or, for the per-deal limit, at it).
            let at = GOOD.find(from).unwrap();
            let expected_line = if key.ends_with("per_deal") {
                line_of(GOOD, "per_deal")
            } else {
                GOOD[..at].matches('\n').count() + 1
            };
            assert_eq!(e.line, expected_line, "{from} -> {to}: {e}");
        }
    }

    #[test]
    fn rpc_networks_need_url_and_chain_id() {
        let e = broken("kind = \"embedded\"", "kind = \"rpc\"");
        assert_eq!(e.key, "network.url");
        let e = broken(
            "kind = \"embedded\"",
            "kind = \"rpc\"\nurl = \"http://127.0.0.1:8545\"",
        );
        assert_eq!(e.key, "network.chain_id");
        let ok = parse(&GOOD.replacen(
            "kind = \"embedded\"",
            "kind = \"rpc\"\nurl = \"http://127.0.0.1:8545\"\nchain_id = 31337",
            1,
        ))
        .unwrap();
        assert_eq!(
            ok.network,
            Network::Rpc {
                url: "http://127.0.0.1:8545".into(),
                chain_id: 31337
            }
        );
    }

    const PRINCIPAL: &str = r#"
[agents.travel.principals.owner]
address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
skills = ["travel.Plan"]
max_per_request = "2 USDC"
daily = "10 USDC"
valid_until = "2030-01-01T00:00:00Z"
"#;

    #[test]
    fn principals_and_their_mandates_parse() {
        let text = GOOD.replace(
            "[agents.weather-a]",
            &format!("{PRINCIPAL}\n[agents.weather-a]"),
        );
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let owner: Address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
            .parse()
            .unwrap();
        let m = &c.agents[0].principals[&owner];
        assert_eq!(m.max_per_request, "2 USDC".parse().unwrap());
        assert_eq!(m.daily, Some("10 USDC".parse().unwrap()));
        assert_eq!(m.valid_until, Some(1_893_456_000));
        assert!(m.skills.contains("travel.Plan"));
        assert!(c.agents[1].principals.is_empty());

        for (from, to, key, says) in [
            (
                "daily = \"10 USDC\"",
                "daily = \"1 USDC\"",
                "daily",
                "below max_per_request",
            ),
            (
                "skills = [\"travel.Plan\"]\nmax",
                "skills = []\nmax",
                "skills",
                "allows nothing",
            ),
            (
                "\"2030-01-01T00:00:00Z\"",
                "\"tomorrow\"",
                "valid_until",
                "RFC 3339",
            ),
            (
                "max_per_request = \"2 USDC\"",
                "max_per_request = \"2\"",
                "max_per_request",
                "ambiguous",
            ),
        ] {
            assert!(text.contains(from), "{from}");
            let e = parse(&text.replacen(from, to, 1)).unwrap_err();
            assert_eq!(
                e.key,
                format!("agents.travel.principals.owner.{key}"),
                "{e}"
            );
            assert!(e.message.contains(says), "{e}");
        }
    }

    /// Regression (found by `fuzz_agents_toml`): a parse error on a blank line, a
    /// comment or at the end of the file named an empty key or the comment's text,
    /// and toml gives some errors (a control character in a comment) no message.
    #[test]
    fn parse_errors_always_name_a_key_and_say_what_is_wrong() {
        for (text, key, says) in [
            ("", "(top level)", "missing field `network`"),
            (
                "#\u{7f} a comment\n",
                "(top level)",
                "'\\u{7f}' is not valid TOML here",
            ),
            (
                "[network]\nkind = \"embedded\"\n[agents.a]\nkeystore = '''x\n",
                "agents.a",
                "invalid multiline literal string",
            ),
            (
                "[network]  # the chain\nkind = \"embedded\"\n# kind = \u{7f}\n",
                "network",
                "is not valid TOML here",
            ),
            ("[network\n", "network", "invalid table header"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.key, key, "{text:?}: {e}");
            assert!(e.message.contains(says), "{text:?}: {e}");
        }
    }

    const TOML_TOKENS: &[&str] = &[
        "[network]",
        "[agents.x]",
        "[[agents]]",
        "[agents.travel.policy]",
        "[agents.travel.principals.owner]",
        "kind",
        "\"embedded\"",
        "\"rpc\"",
        "url",
        "chain_id",
        "max_tx_fee_gwei",
        "keystore",
        "password_env",
        "listen",
        "skills",
        "services",
        "policy",
        "principals",
        "model",
        "oracle",
        "\"llm.complete\"",
        "per_deal",
        "allow",
        "deny",
        "valid_from",
        "\"1.20 USDC\"",
        "\"0\"",
        "\"127.0.0.1:0\"",
        "\"[::1]:7401\"",
        "\"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\"",
        "\"2027-01-01T00:00:00Z\"",
        "1979-05-27T07:32:00Z",
        " = ",
        "=",
        ".",
        "\"",
        "'''",
        "\"\"\"",
        "[",
        "]",
        "{",
        "}",
        ",",
        "#",
        "\n",
        "\r\n",
        "\\u0000",
        "\u{e9}",
        "18446744073709551615",
        "18446744073709551616",
        "-1",
        "nan",
        "inf",
        "1e400",
        "true",
    ];

    /// A TOML value: strings, integers at the edges, floats, booleans, dates, arrays,
    /// inline tables, or a token.
    fn toml_value() -> BoxedStrategy<String> {
        let leaf = prop_oneof![
            any::<String>().prop_map(|s| format!("{s:?}")),
            "\\PC{0,20}".prop_map(|s| format!("'{s}'")),
            fuzz_support::edge_u64().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            any::<bool>().prop_map(|b| b.to_string()),
            Just("1979-05-27T07:32:00Z".to_owned()),
            fuzz_support::token(TOML_TOKENS).prop_map(String::from),
            "\"[0-9. ]{0,12}(USDC|usdc|ETH)?\"",
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(", "))),
                prop::collection::vec(("[a-z_]{1,10}", inner), 0..4).prop_map(|kv| {
                    let kv: Vec<String> =
                        kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                    format!("{{ {} }}", kv.join(", "))
                }),
            ]
        })
        .boxed()
    }

    /// `text` with the value of one `key = value` line replaced by `value`.
    fn replace_value(text: &str, which: prop::sample::Index, value: &str) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let assignments: Vec<usize> = (0..lines.len())
            .filter(|i| lines[*i].contains(" = "))
            .collect();
        if !assignments.is_empty() {
            let i = *which.get(&assignments);
            let key = lines[i].split(" = ").next().unwrap_or_default().to_owned();
            lines[i] = format!("{key} = {value}");
        }
        lines.join("\n")
    }

    /// Deep nesting: arrays, inline tables, dotted keys and table headers.
    fn deep_toml() -> BoxedStrategy<String> {
        (1usize..3000, 0u8..4)
            .prop_map(|(depth, shape)| match shape {
                0 => format!("a = {}1{}", "[".repeat(depth), "]".repeat(depth)),
                1 => format!("a = {}1{}", "{b = ".repeat(depth), "}".repeat(depth)),
                2 => format!("{} = 1", vec!["a"; depth].join(".")),
                _ => format!(
                    "[network]\nkind = \"embedded\"\n[{}]",
                    vec!["agents"; depth].join(".")
                ),
            })
            .boxed()
    }

    /// `Config::parse` on the repository's and the tests' files, mutated (a value
    /// replaced by an arbitrary TOML value, bytes cut, inserted or repeated), deeply
    /// nested TOML and arbitrary text. Every error names a key, a line and a column
    /// in the file, and says what is wrong.
    #[test]
    fn fuzz_agents_toml() {
        use fuzz_support::proptest::strategy::Union;
        use fuzz_support::{arbitrary_text, explained, fuzz, mutate_text, Case};

        const REPO: &str = include_str!("../../../agents.toml");
        let files = vec![
            GOOD.to_owned(),
            REPO.to_owned(),
            GOOD.replace(
                "[agents.weather-a]",
                &format!("{PRINCIPAL}\n[agents.weather-a]"),
            ),
        ];
        let valid = (
            prop::sample::select(files.clone()),
            1u64..u64::MAX,
            // Above the ports the files use, so no two agents share one.
            8000u16..u16::MAX,
        )
            .prop_map(|(text, units, port)| {
                let price = Amount::from_base_units(u128::from(units));
                text.replacen("\"1.20 USDC\"", &format!("\"{price}\""), 1)
                    .replacen("127.0.0.1:7411", &format!("127.0.0.1:{port}"), 1)
            });
        let replaced = (
            prop::sample::select(files.clone()),
            any::<prop::sample::Index>(),
            toml_value(),
        )
            .prop_map(|(text, i, v)| replace_value(&text, i, &v));
        let mutated = Union::new(files.into_iter().map(|t| mutate_text(t, TOML_TOKENS)));
        let cases = prop_oneof![
            1 => valid.prop_map(Case::Valid),
            4 => replaced.prop_map(Case::Fuzzed),
            3 => mutated.prop_map(Case::Fuzzed),
            1 => deep_toml().prop_map(Case::Fuzzed),
            1 => arbitrary_text().prop_map(Case::Fuzzed),
        ];
        fuzz("fuzz_agents_toml", 1000, cases, |case| {
            let (Case::Valid(text) | Case::Fuzzed(text)) = case;
            let parsed = parse(text);
            explained(&parsed)?;
            match (case, parsed) {
                (Case::Valid(_), Err(e)) => Err(format!("a valid file was refused: {e}")),
                (_, Err(e)) if e.message.trim().is_empty() || e.key.trim().is_empty() => {
                    Err(format!("an error without a key or message: {e}"))
                }
                (_, Err(e))
                    if e.line == 0 || e.column == 0 || e.line > text.lines().count() + 1 =>
                {
                    Err(format!("an error outside the file: {e}"))
                }
                _ => Ok(()),
            }
        });
    }
}
