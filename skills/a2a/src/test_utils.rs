//! Test support (feature `test-utils`): the real A2A Python client, with the scripts in
//! `skills/a2a/tests/interop/`, from the venv that `bash .ci/prereqs` installs
//! (`AGORA_A2A_VENV`, default `/var/cache/agora/venv-a2a`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

/// The venv's python, with the A2A client and the x402 package's EVM signer.
///
/// # Panics
/// When the venv is missing or incomplete, saying how to install it.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("AGORA_A2A_VENV")
        .map_or_else(|| PathBuf::from("/var/cache/agora/venv-a2a"), PathBuf::from);
    let python = venv.join("bin").join("python");
    let ready = std::process::Command::new(&python)
        .args(["-c", "import a2a.client, httpx, x402.mechanisms.evm.exact"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ready,
        "the A2A interop tests run the real Python client from the venv {} (AGORA_A2A_VENV), \
         which is missing or incomplete: run `bash .ci/prereqs` (it installs \
         skills/a2a/tests/interop/requirements.txt there)",
        venv.display()
    );
    python
}

/// The interop script `name` (`client.py`, `pay_agent.py`).
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
    let dir = script("npm");
    let ready = dir.join("node_modules/@a2a-js/sdk").is_dir()
        && std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        ready,
        "the A2A interop test runs the real TypeScript client (@a2a-js/sdk) from {}, which \
         is not installed: run `bash .ci/prereqs` (npm ci of its package-lock.json)",
        dir.display()
    );
    dir
}
