//! Test support (feature `test-utils`): the real x402 clients, with the scripts in
//! `skills/x402/tests/interop/`: the Python package from the venv that
//! `bash .ci/prereqs` installs (`AGORA_X402_VENV`, default
//! `/var/cache/agora/venv-x402`), and the TypeScript packages it installs in
//! `skills/x402/tests/interop/npm/node_modules`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};

/// The venv's python.
///
/// # Panics
/// When the venv is missing or incomplete, saying how to install it.
pub fn python() -> PathBuf {
    venv_python(
        "AGORA_X402_VENV",
        "/var/cache/agora/venv-x402",
        "x402, flask, requests, eth_account",
        "skills/x402/tests/interop/requirements.txt",
    )
}

/// The python of the venv named by the environment variable `var` (default `default`),
/// checked to import `modules`: the runner of every protocol's Python interop tests.
///
/// # Panics
/// When the venv is missing or incomplete, saying that `bash .ci/prereqs` installs
/// `requirements` there.
pub fn venv_python(var: &str, default: &str, modules: &str, requirements: &str) -> PathBuf {
    let venv = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    let python = venv.join("bin").join("python");
    let ready = std::process::Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ready,
        "the interop tests run real Python clients ({modules}) from the venv {} ({var}), \
         which is missing or incomplete: run `bash .ci/prereqs` (it installs {requirements} \
         there)",
        venv.display()
    );
    python
}

/// The interop script `name` (`pay_seller.py`, `buyer.py`, `seller.py`).
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
        .join(name)
}

/// Collects a child's stderr in the background, for failure messages.
pub fn drain(stderr: tokio::process::ChildStderr) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    log
}

/// The directory of the TypeScript client (`skills/x402/tests/interop/npm`) with its
/// packages installed.
///
/// # Panics
/// When `node` or the packages are missing, saying how to install them.
pub fn node_client() -> PathBuf {
    node_dir(script("npm"), "@x402/fetch")
}

/// `dir`, a directory of interop scripts with npm packages installed, checked to hold
/// `package` and `node` to run them.
///
/// # Panics
/// When `node` or the package is missing, saying how to install them.
pub fn node_dir(dir: PathBuf, package: &str) -> PathBuf {
    let ready = dir.join("node_modules").join(package).is_dir()
        && std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        ready,
        "the interop tests run the real TypeScript client ({package}) from {}, which is not \
         installed: run `bash .ci/prereqs` (npm ci of its package-lock.json)",
        dir.display()
    );
    dir
}

/// An interop script serving HTTP: its process (killed when this drops), the URL it
/// serves and its stderr so far.
#[derive(Debug)]
pub struct Served {
    /// The process.
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its stderr.
    pub log: Arc<Mutex<String>>,
}

/// Starts the Python interop script `name` with `args` and `env`, and waits (at most
/// two minutes) for the `listening <url>` line it prints once it serves.
///
/// # Panics
/// When it cannot start, exits or does not say it listens, with its stderr.
pub async fn serve_script(
    python: &Path,
    name: &str,
    args: &[String],
    env: &[(&str, String)],
) -> Served {
    let mut child = tokio::process::Command::new(python)
        .arg(script(name))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let log = drain(child.stderr.take().unwrap());
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(120), out.next_line())
        .await
        .unwrap_or_else(|_| panic!("{name} did not start: {}", log.lock().unwrap()));
    let Some(url) = line
        .ok()
        .flatten()
        .and_then(|l| l.strip_prefix("listening ").map(str::to_owned))
    else {
        panic!("{name} exited: {}", log.lock().unwrap());
    };
    Served { child, url, log }
}

/// Runs the Python script `name` with `args`, the buyer's key (`BUYER_KEY`, hex) in
/// its environment, to its end (at most five minutes), and parses the JSON line it
/// prints.
///
/// # Panics
/// When it fails, hangs or prints something else, with its output.
pub async fn run_buyer(python: &Path, name: &str, args: &[String], buyer_key: &[u8]) -> Value {
    run(python, &script(name), args, buyer_key).await
}

/// [`run_buyer`] for the TypeScript script `name` of [`node_client`]'s directory.
///
/// # Panics
/// As [`run_buyer`].
pub async fn run_node_buyer(name: &str, args: &[String], buyer_key: &[u8]) -> Value {
    run(
        Path::new("node"),
        &node_client().join(name),
        args,
        buyer_key,
    )
    .await
}

/// Runs `program script args`, the buyer's key (`BUYER_KEY`, hex) in its environment,
/// to its end (at most five minutes), and parses the JSON line it prints: the runner
/// of [`run_buyer`], for other protocols' interop scripts too.
///
/// # Panics
/// When it fails, hangs or prints something else, with its output.
pub async fn run(program: &Path, script: &Path, args: &[String], buyer_key: &[u8]) -> Value {
    let name = script.display();
    let mut child = tokio::process::Command::new(program)
        .arg(script)
        .args(args)
        .env("BUYER_KEY", hex::encode(buyer_key))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} {name}: {e}", program.display()));
    let log = drain(child.stderr.take().unwrap());
    let mut stdout = String::new();
    let mut out_pipe = child.stdout.take().unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(300), async {
        out_pipe.read_to_string(&mut stdout).await.unwrap();
        child.wait().await.unwrap()
    })
    .await;
    let status = finished.unwrap_or_else(|_| panic!("{name} hung: {}", log.lock().unwrap()));
    assert!(
        status.success(),
        "{name} failed: {stdout}\n{}",
        log.lock().unwrap()
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{name} printed {stdout:?} ({e}); {}", log.lock().unwrap()))
}
