//! Where a deployment keeps its state, and what a running `agora up` tells other
//! commands.
//!
//! State directory layout (default `.agora` beside the config file):
//!
//! ```text
//! chain/                  embedded chain data, chain/addresses.json the deployment
//! agents/NAME/host/       the agent's host store (dialogues, nonces)
//! agents/NAME/journal     its payment journal
//! agents/NAME/policy      its spending-policy ledger (buyers)
//! agents/NAME/mandates    what its principals commissioned and spent
//! agents/NAME/discovery/  its registry discovery cache
//! agents/NAME/pid         the running child's process id
//! discovery/              the supervisor's discovery cache
//! up.json                 what `agora plan` needs: RPC URL, chain id, agents' endpoints
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use registry::chain::Addresses;
use serde::{Deserialize, Serialize};
use wallets::{Address, KeystoreFile, Wallet};

use crate::config::AgentConfig;
use crate::{Error, Result};

/// The directory a deployment's relative paths start from: the config file's.
pub fn base_dir(config: &Path) -> PathBuf {
    config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// The state directory: `dir` when given, else `.agora` beside the config file.
pub fn state_dir(config: &Path, dir: Option<&Path>) -> PathBuf {
    dir.map_or_else(|| base_dir(config).join(".agora"), Path::to_owned)
}

/// An agent's own directory in the state directory.
pub fn agent_dir(state: &Path, name: &str) -> PathBuf {
    state.join("agents").join(name)
}

/// What a running `agora up` tells other commands (`agora plan`), in DIR/up.json.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpState {
    /// JSON-RPC URL of the chain.
    pub rpc_url: String,
    /// Chain id.
    pub chain_id: u64,
    /// The deployment's addresses file.
    pub addresses: PathBuf,
    /// The supervisor's process id.
    pub pid: u32,
    /// Agents by name.
    pub agents: BTreeMap<String, UpAgent>,
}

/// One agent in [`UpState`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpAgent {
    /// Its wallet address.
    pub address: Address,
    /// Its WebSocket endpoint, once it listens.
    pub endpoint: Option<String>,
    /// Its skills.
    pub skills: Vec<String>,
}

impl UpState {
    /// The file in state directory `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("up.json")
    }

    /// Reads the state of the `agora up` running with state directory `dir`.
    ///
    /// # Errors
    /// [`Error::BadFile`] when there is no such file (no `agora up` is running there)
    /// or it is not an up.json.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::BadFile {
            path: path.clone(),
            reason: format!("{e} (is `agora up` running with this state directory?)"),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::BadFile {
            path,
            reason: format!("not an up.json: {e}"),
        })
    }

    /// Writes the state atomically (a temporary file, then a rename).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        write_json_atomically(&path, self)
    }
}

/// Writes `value` as pretty JSON to `path` through a temporary file and a rename, so a
/// reader never sees half a file.
pub(crate) fn write_json_atomically(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::BadFile {
        path: path.to_owned(),
        reason: format!("does not serialize: {e}"),
    })? + "\n";
    std::fs::write(&tmp, text).map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("writing", path, e))
}

/// Reads a deployment's addresses file.
///
/// # Errors
/// [`Error::Io`] when it cannot be read, [`Error::BadFile`] when it is not one.
pub fn read_addresses(path: &Path) -> Result<Addresses> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::BadFile {
        path: path.to_owned(),
        reason: format!("not an addresses file: {e}"),
    })
}

/// Checks that the variable holding `agent`'s keystore password is set and not
/// empty, and returns the password.
///
/// # Errors
/// [`Error::Password`] naming the agent and the variable.
pub fn agent_password(agent: &AgentConfig) -> Result<zeroize::Zeroizing<String>> {
    let problem = match std::env::var(&agent.password_env) {
        Ok(pw) if !pw.is_empty() => return Ok(zeroize::Zeroizing::new(pw)),
        Ok(_) => "empty",
        Err(_) => "not set",
    };
    Err(Error::Password {
        agent: agent.name.clone(),
        var: agent.password_env.clone(),
        problem,
    })
}

/// Decrypts an agent's keystore (relative to the directory of `config_path`) with the
/// password from its `password_env` variable. The scrypt work runs on a blocking
/// thread.
///
/// # Errors
/// [`Error::Password`] when the variable is not set, [`Error::Keystore`] when the
/// keystore does not open, [`Error::KeystoreAddress`] when it states another address
/// than the key it holds.
pub async fn agent_wallet(config_path: &Path, agent: &AgentConfig) -> Result<Arc<Wallet>> {
    let password = agent_password(agent)?;
    let path = base_dir(config_path).join(&agent.keystore);
    let keystore_error = |source| Error::Keystore {
        agent: agent.name.clone(),
        path: path.clone(),
        var: agent.password_env.clone(),
        source: Box::new(source),
    };
    let p = path.clone();
    let wallet =
        tokio::task::spawn_blocking(move || wallets::keystore::load(&p, password.as_bytes()))
            .await
            .map_err(|e| Error::Composition {
                agent: agent.name.clone(),
                reason: format!("the keystore task failed: {e}"),
            })?
            .map_err(keystore_error)?;
    if let Ok(Some(stated)) = KeystoreFile::read(&path).and_then(|f| f.address(&path)) {
        if stated != wallet.address() {
            return Err(Error::KeystoreAddress {
                agent: agent.name.clone(),
                path,
                stated,
                actual: wallet.address(),
            });
        }
    }
    Ok(Arc::new(wallet))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_defaults_beside_the_config() {
        assert_eq!(
            state_dir(Path::new("x/agents.toml"), None),
            Path::new("x/.agora")
        );
        assert_eq!(
            state_dir(Path::new("agents.toml"), None),
            Path::new("./.agora")
        );
        assert_eq!(
            state_dir(Path::new("agents.toml"), Some(Path::new("/tmp/s"))),
            Path::new("/tmp/s")
        );
    }

    #[test]
    fn up_state_round_trips_and_a_missing_one_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let err = UpState::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is `agora up` running"), "{err}");
        let mut state = UpState {
            rpc_url: "http://127.0.0.1:8545".into(),
            chain_id: 31337,
            ..UpState::default()
        };
        state.agents.insert(
            "travel".into(),
            UpAgent {
                address: Address::ZERO,
                endpoint: Some("ws://127.0.0.1:1".into()),
                skills: vec!["travel".into()],
            },
        );
        state.save(dir.path()).unwrap();
        let back = UpState::load(dir.path()).unwrap();
        assert_eq!(back.chain_id, 31337);
        assert_eq!(
            back.agents["travel"].endpoint.as_deref(),
            Some("ws://127.0.0.1:1")
        );
        std::fs::write(UpState::path(dir.path()), "{").unwrap();
        let err = UpState::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not an up.json"), "{err}");
    }
}
