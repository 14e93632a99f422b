//! Test support (feature `test-utils`): the real A2A clients, with the scripts in
//! `skills/a2a/tests/interop/`: the Python SDK (and the x402 package's signer) from the
//! venv that `bash .ci/prereqs` installs (`AGORA_A2A_VENV`, default
//! `/var/cache/agora/venv-a2a`), and the TypeScript SDK it installs in
//! `skills/a2a/tests/interop/npm/node_modules`.

use std::path::PathBuf;

/// The venv's python, with the A2A client and the x402 package's EVM signer.
///
/// # Panics
/// When the venv is missing or incomplete, saying how to install it.
pub fn python() -> PathBuf {
    x402::test_utils::venv_python(
        "AGORA_A2A_VENV",
        "/var/cache/agora/venv-a2a",
        "a2a.client, httpx, x402.mechanisms.evm.exact",
        "skills/a2a/tests/interop/requirements.txt",
    )
}

/// The interop script `name` (`client.py`, `pay_agent.py`, `npm`).
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
        .join(name)
}

/// The directory of the TypeScript client (`skills/a2a/tests/interop/npm`) with its
/// packages installed.
///
/// # Panics
/// When `node` or the packages are missing, saying how to install them.
pub fn node_client() -> PathBuf {
    x402::test_utils::node_dir(script("npm"), "@a2a-js/sdk")
}
